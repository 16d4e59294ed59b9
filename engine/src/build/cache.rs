//! The build cache: which result a step had, the last time it ran on the
//! same parent.
//!
//! Mechanism: one small JSON file per step result under
//! `<root>/build-cache/<key>.json`, written atomically. The key is
//! `sha256(parent state id + "\n" + the step's history line)`, where the
//! parent state id is the digest of the image config after the previous
//! step (for FROM: the base image's id), and the history line carries
//! everything the step's result depends on: the instruction after variable
//! substitution, the build arguments a RUN sees, the `--chown`/`--chmod`
//! flags, and for COPY/ADD the content hash of the copied files. An entry
//! holds the config after the step and the layers (by diff_id, chain_id and
//! blob). A hit is used only if every layer is still in the image store
//! (`rmi` may have collected it); otherwise the step runs again.

use std::fs;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::fsutil::atomic_write_json;
use crate::image::manifest::Descriptor;
use crate::image::{Digest, ImageConfig, ImageStore, LayerDescriptor};
use crate::paths::Roots;

/// The build cache of one berth root.
pub struct BuildCache {
    dir: PathBuf,
}

#[derive(Serialize, Deserialize)]
struct Entry {
    config: serde_json::Value,
    layers: Vec<CachedLayer>,
}

#[derive(Serialize, Deserialize)]
struct CachedLayer {
    diff_id: Digest,
    chain_id: Digest,
    blob: Descriptor,
}

impl BuildCache {
    pub fn open(roots: &Roots) -> BuildCache {
        BuildCache {
            dir: roots.root.join("build-cache"),
        }
    }

    /// The cache key of a step.
    pub fn key(parent: &Digest, history_line: &str) -> String {
        Digest::of(format!("{parent}\n{history_line}").as_bytes())
            .hex()
            .to_string()
    }

    /// The result cached under `key`, if its layers are all still stored.
    pub fn get(
        &self,
        store: &ImageStore,
        key: &str,
    ) -> Option<(ImageConfig, Vec<LayerDescriptor>)> {
        let bytes = fs::read(self.dir.join(format!("{key}.json"))).ok()?;
        let entry: Entry = serde_json::from_slice(&bytes).ok()?;
        let config: ImageConfig = serde_json::from_value(entry.config).ok()?;
        let mut layers = Vec::with_capacity(entry.layers.len());
        for layer in entry.layers {
            if !store.has_layer(&layer.chain_id) || !store.blob_path(&layer.blob.digest).exists() {
                tracing::debug!(key, layer = %layer.chain_id, "cache entry refers to a collected layer");
                return None;
            }
            layers.push(LayerDescriptor {
                diff_id: layer.diff_id,
                chain_id: layer.chain_id,
                blob: layer.blob,
            });
        }
        if config.rootfs.diff_ids != layers.iter().map(|l| l.diff_id.clone()).collect::<Vec<_>>() {
            return None;
        }
        Some((config, layers))
    }

    /// Remember a step's result (best effort: a failure only costs a rebuild).
    pub fn put(&self, key: &str, config: &ImageConfig, layers: &[LayerDescriptor]) {
        let entry = Entry {
            config: match serde_json::to_value(config) {
                Ok(v) => v,
                Err(_) => return,
            },
            layers: layers
                .iter()
                .map(|l| CachedLayer {
                    diff_id: l.diff_id.clone(),
                    chain_id: l.chain_id.clone(),
                    blob: l.blob.clone(),
                })
                .collect(),
        };
        let result = fs::create_dir_all(&self.dir)
            .and_then(|_| atomic_write_json(&self.dir.join(format!("{key}.json")), &entry));
        if let Err(e) = result {
            tracing::warn!(error = %e, "cannot write the build cache");
        }
    }
}
