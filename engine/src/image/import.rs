//! Images from parts: a layer tar at a time, then a config (for `berth
//! build`, which commits each step's upper directory as a layer).
//!
//! Mechanism: [`ImageStore::import_layer_tar`] compresses the tar to a gzip
//! blob while hashing both streams (diff_id and blob digest in one pass),
//! unpacks it like any loaded layer and commits blob and layer by rename.
//! [`ImageStore::add_image`] writes the config (with `rootfs.diff_ids`
//! filled in) and an OCI manifest, then the image record and tags. Hold a
//! [`super::StoreHold`] from the first import to `add_image`, so that an
//! `rmi` in between does not collect the still unreferenced layers.

use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;

use super::config::{ImageConfig, RootFs};
use super::digest::{chain_id, chain_ids, Digest, HashingReader, HashingWriter};
use super::error::ImageError;
use super::manifest::{Descriptor, Manifest, OCI_CONFIG, OCI_LAYER_GZIP, OCI_MANIFEST};
use super::reference::Reference;
use super::store::{Commit, Image, ImageRecord, ImageStore, LayerRecord};
use crate::layer::blob::read_layer_blob;
use crate::layer::lower::resolve_deferred_links;
use crate::layer::unpack::Whiteouts;

/// A layer in the store, ready to be part of an image.
#[derive(Debug, Clone, PartialEq)]
pub struct LayerDescriptor {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// The gzip blob as stored (media type, digest, size).
    pub blob: Descriptor,
}

impl ImageStore {
    /// Store one layer given as an uncompressed tar stream. `below` are the
    /// diff_ids of the layers under it, lowest first (empty for a base layer).
    pub fn import_layer_tar(
        &self,
        tar: impl Read,
        below: &[Digest],
    ) -> Result<LayerDescriptor, ImageError> {
        let _hold = self.gc_shared()?;
        let staging = self.new_staging()?;
        let below_chains = chain_ids(below);
        for chain in &below_chains {
            if !self.has_layer(chain) {
                return Err(ImageError::invalid(
                    format!("layer {chain}"),
                    "the layer below is not in the store",
                ));
            }
        }
        // 1. tar -> gzip blob, hashing both sides.
        let blob_path = staging.dir.join("blob");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&blob_path)
            .map_err(ImageError::io(format!("creating {}", blob_path.display())))?;
        let mut tar = HashingReader::new(tar);
        let mut gzip =
            flate2::write::GzEncoder::new(HashingWriter::new(file), flate2::Compression::default());
        io::copy(&mut tar, &mut gzip).map_err(ImageError::io("compressing the layer tar"))?;
        let (file, blob_digest, blob_size) = gzip
            .finish()
            .map_err(ImageError::io("compressing the layer tar"))?
            .finish();
        drop(file);
        let (diff_id, tar_size) = tar.finish();
        let chain = chain_id(below_chains.last(), &diff_id);
        let descriptor = LayerDescriptor {
            diff_id: diff_id.clone(),
            chain_id: chain.clone(),
            blob: Descriptor::new(OCI_LAYER_GZIP, blob_digest.clone(), blob_size),
        };
        let mut commit = Commit::default();
        commit.blobs.insert(blob_digest.clone(), blob_path.clone());
        // 2. unpack it, unless the store has this very layer already.
        if !self.has_layer(&chain) {
            let layer_dir = staging.dir.join("layer");
            let diff = layer_dir.join("diff");
            std::fs::create_dir_all(&diff)
                .map_err(ImageError::io(format!("creating {}", diff.display())))?;
            let blob = File::open(&blob_path).map_err(ImageError::io("reopening the blob"))?;
            let report = read_layer_blob(
                blob,
                Some(&blob_digest),
                None,
                Some(&diff),
                Whiteouts::Overlay,
                &|_| {},
            )
            .map_err(|e| ImageError::Layer {
                layer: diff_id.to_string(),
                cause: e,
            })?;
            let summary = report.unpacked.unwrap_or_default();
            let lowers: Vec<_> = below_chains
                .iter()
                .rev()
                .map(|c| self.layer_dir(c))
                .collect();
            resolve_deferred_links(&diff, &lowers, &summary.deferred_links).map_err(|e| {
                ImageError::Layer {
                    layer: diff_id.to_string(),
                    cause: e.into(),
                }
            })?;
            let record = LayerRecord {
                chain_id: chain.clone(),
                diff_id: diff_id.clone(),
                parent: below_chains.last().cloned(),
                size: summary.content_bytes,
                tar_size,
            };
            super::store::write_json(&layer_dir.join("layer.json"), &record)
                .map_err(ImageError::io("writing layer.json"))?;
            commit.layers.insert(chain.clone(), layer_dir);
        }
        commit.sync_staged()?;
        self.commit(commit)?;
        tracing::info!(diff_id = %diff_id, chain = %chain, "layer imported");
        Ok(descriptor)
    }

    /// Make an image of `layers` (lowest first) with `config` (whose
    /// `rootfs` is filled in here) and tag it with `tags`.
    pub fn add_image(
        &self,
        mut config: ImageConfig,
        layers: &[LayerDescriptor],
        tags: &[&str],
    ) -> Result<Image, ImageError> {
        let tags: Vec<Reference> = tags
            .iter()
            .map(|t| Reference::parse(t).map(Reference::with_default_tag))
            .collect::<Result<_, _>>()?;
        let _hold = self.gc_shared()?;
        let diff_ids: Vec<Digest> = layers.iter().map(|l| l.diff_id.clone()).collect();
        for (layer, chain) in layers.iter().zip(chain_ids(&diff_ids)) {
            if layer.chain_id != chain
                || !self.has_layer(&chain)
                || !self.blob_path(&layer.blob.digest).exists()
            {
                return Err(ImageError::invalid(
                    format!("layer {}", layer.diff_id),
                    "not in the store on top of the layers listed before it (import it with import_layer_tar)",
                ));
            }
        }
        config.rootfs = RootFs {
            kind: "layers".to_string(),
            diff_ids,
        };
        let config_bytes = serde_json::to_vec(&config)
            .map_err(|e| ImageError::invalid("config", e.to_string()))?;
        let id = Digest::of(&config_bytes);
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config: Descriptor::new(OCI_CONFIG, id.clone(), config_bytes.len() as u64),
            layers: layers.iter().map(|l| l.blob.clone()).collect(),
            annotations: None,
        };
        let manifest_bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::invalid("manifest", e.to_string()))?;
        let manifest_digest = Digest::of(&manifest_bytes);
        let staging = self.new_staging()?;
        let mut commit = Commit::default();
        for (name, bytes, digest) in [
            ("config", &config_bytes, &id),
            ("manifest", &manifest_bytes, &manifest_digest),
        ] {
            let path = staging.dir.join(name);
            std::fs::write(&path, bytes)
                .map_err(ImageError::io(format!("writing {}", path.display())))?;
            commit.blobs.insert(digest.clone(), path);
        }
        commit.images.push((
            ImageRecord {
                id: id.clone(),
                manifest: manifest_digest,
                manifest_from_source: false,
                loaded: chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true),
            },
            tags,
        ));
        commit.sync_staged()?;
        self.commit(commit)?;
        tracing::info!(image = %id, "image added");
        self.image(&id)
    }
}
