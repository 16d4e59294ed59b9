//! `berth save`: images out of the store, as docker or OCI archives.
//!
//! - docker format (the default): what Docker 25+ writes — uncompressed layer
//!   tars named by diff_id, the config, an OCI manifest and index, and
//!   `manifest.json` with the tags. Older docker, podman, skopeo and berth
//!   itself all read it.
//! - OCI format: an OCI image layout with the blobs exactly as stored (so the
//!   manifest digest survives a save/load round trip unchanged).
//!
//! Mechanism: stored blobs are streamed, never held in memory; for the docker
//! format each layer is decompressed on the fly and its diff_id re-verified
//! while it is written, so a store damaged on disk cannot produce a bad archive.

use std::io::{self, Read};

use super::digest::{Digest, HashingReader};
use super::error::ImageError;
use super::layout::{open_blob, DockerManifestEntry, LayoutWriter, Sink};
use super::manifest::{
    Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG,
    OCI_LAYER_TAR, OCI_MANIFEST,
};
use super::reference::Reference;
use super::store::{read_limited, Image, ImageStore};
use crate::layer::compression;
use crate::progress::Progress;

/// The archive format of `berth save`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaveFormat {
    Docker,
    Oci,
}

/// One image to save and the names to record for it.
#[derive(Debug, Clone)]
pub struct SaveItem {
    pub image: Image,
    pub tags: Vec<Reference>,
}

impl ImageStore {
    /// Resolve what `berth save NAME...` names. An image named by tag is
    /// saved with that tag only; by id, with no tag (as docker does).
    pub fn save_items(&self, names: &[String]) -> Result<Vec<SaveItem>, ImageError> {
        let mut items: Vec<SaveItem> = Vec::new();
        for name in names {
            let (id, named) = self.resolve_id(name)?;
            let tag = match named {
                super::store::Named::Tag(reference) => Some(reference),
                _ => None,
            };
            if let Some(existing) = items.iter_mut().find(|i| i.image.id == id) {
                existing.tags.extend(tag);
                continue;
            }
            items.push(SaveItem {
                image: self.image(&id)?,
                tags: tag.into_iter().collect(),
            });
        }
        Ok(items)
    }

    /// Write `items` to `sink` in `format`; returns the sink.
    pub fn save<S: Sink>(
        &self,
        items: &[SaveItem],
        format: SaveFormat,
        sink: S,
        progress: &Progress,
    ) -> Result<S, ImageError> {
        let _hold = self.gc_shared()?;
        let mut writer = LayoutWriter::new(sink);
        let mut index_entries = Vec::new();
        let mut docker_entries = Vec::new();
        for item in items {
            let image = &item.image;
            let config_bytes = read_limited(&self.blob_path(&image.id))
                .map_err(ImageError::io(format!("reading config {}", image.id)))?;
            writer
                .blob_bytes(&image.id, &config_bytes)
                .map_err(ImageError::io("writing the archive"))?;
            let manifest_desc = match format {
                SaveFormat::Oci => self.write_stored_blobs(&mut writer, image, progress)?,
                SaveFormat::Docker => {
                    let desc = self.write_uncompressed_layers(
                        &mut writer,
                        image,
                        config_bytes.len() as u64,
                        progress,
                    )?;
                    docker_entries.push(DockerManifestEntry {
                        config: LayoutWriter::<S>::blob_path(&image.id),
                        repo_tags: item.tags.iter().map(Reference::familiar).collect(),
                        layers: image
                            .layers
                            .iter()
                            .map(|l| LayoutWriter::<S>::blob_path(&l.diff_id))
                            .collect(),
                    });
                    desc
                }
            };
            index_entries.extend(index_entries_for(&manifest_desc, &item.tags));
        }
        let index = Index::new(index_entries);
        let sink = match format {
            SaveFormat::Oci => writer.finish_oci(&index),
            SaveFormat::Docker => writer.finish_docker(&index, &docker_entries),
        }
        .map_err(ImageError::io("writing the archive"))?;
        Ok(sink)
    }

    /// OCI format: the stored manifest and layer blobs as they are.
    fn write_stored_blobs<S: Sink>(
        &self,
        writer: &mut LayoutWriter<S>,
        image: &Image,
        progress: &Progress,
    ) -> Result<Descriptor, ImageError> {
        let manifest_path = self.blob_path(&image.manifest_digest);
        let manifest_bytes =
            read_limited(&manifest_path).map_err(ImageError::io("reading manifest"))?;
        for layer in &image.layers {
            if writer.has(&layer.blob.digest) {
                continue;
            }
            let path = self.blob_path(&layer.blob.digest);
            let file = open_blob(&path).map_err(ImageError::io("reading the store"))?;
            let bar = progress.bar(layer.blob.digest.short(), layer.blob.size);
            let mut hashed = HashingReader::new(ProgressReader {
                inner: file,
                bar: &bar,
            });
            writer
                .blob_stream(&layer.blob.digest, layer.blob.size, &mut hashed)
                .map_err(ImageError::io("writing the archive"))?;
            let (actual, _) = hashed.finish();
            check_digest(&layer.blob.digest, &actual, "stored layer blob")?;
            bar.finish("saved");
        }
        writer
            .blob_bytes(&image.manifest_digest, &manifest_bytes)
            .map_err(ImageError::io("writing the archive"))?;
        let media_type = image
            .manifest
            .media_type
            .clone()
            .unwrap_or_else(|| OCI_MANIFEST.to_string());
        Ok(Descriptor::new(
            &media_type,
            image.manifest_digest.clone(),
            manifest_bytes.len() as u64,
        ))
    }

    /// Docker format: each layer as its uncompressed tar, then a manifest
    /// describing exactly those tars.
    fn write_uncompressed_layers<S: Sink>(
        &self,
        writer: &mut LayoutWriter<S>,
        image: &Image,
        config_size: u64,
        progress: &Progress,
    ) -> Result<Descriptor, ImageError> {
        let mut layers = Vec::new();
        for layer in &image.layers {
            layers.push(Descriptor::new(
                OCI_LAYER_TAR,
                layer.diff_id.clone(),
                layer.tar_size,
            ));
            if writer.has(&layer.diff_id) {
                continue;
            }
            let path = self.blob_path(&layer.blob.digest);
            let file = open_blob(&path).map_err(ImageError::io("reading the store"))?;
            let bar = progress.bar(layer.diff_id.short(), layer.blob.size);
            let (_, decoded) = compression::decompress(ProgressReader {
                inner: file,
                bar: &bar,
            })
            .map_err(ImageError::io(format!("reading {}", path.display())))?;
            let mut hashed = HashingReader::new(decoded);
            writer
                .blob_stream(&layer.diff_id, layer.tar_size, &mut hashed)
                .map_err(ImageError::io(format!("writing layer {}", layer.diff_id)))?;
            let (actual, _) = hashed.finish();
            check_digest(&layer.diff_id, &actual, "stored layer (uncompressed)")?;
            bar.finish("saved");
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config: Descriptor::new(OCI_CONFIG, image.id.clone(), config_size),
            layers,
            annotations: None,
        };
        let bytes = serde_json::to_vec(&manifest)
            .map_err(|e| ImageError::invalid("manifest", e.to_string()))?;
        let digest = Digest::of(&bytes);
        writer
            .blob_bytes(&digest, &bytes)
            .map_err(ImageError::io("writing the archive"))?;
        Ok(Descriptor::new(OCI_MANIFEST, digest, bytes.len() as u64))
    }
}

/// One index entry per tag (annotated as Docker 25+ does), or one untagged.
fn index_entries_for(manifest: &Descriptor, tags: &[Reference]) -> Vec<Descriptor> {
    if tags.is_empty() {
        return vec![manifest.clone()];
    }
    tags.iter()
        .map(|tag| {
            let mut entry = manifest.clone();
            let mut annotations = std::collections::BTreeMap::new();
            annotations.insert(ANNOTATION_IMAGE_NAME.to_string(), tag.full());
            if let Some(t) = &tag.tag {
                annotations.insert(ANNOTATION_REF_NAME.to_string(), t.clone());
            }
            entry.annotations = Some(annotations);
            entry
        })
        .collect()
}

fn check_digest(expected: &Digest, actual: &Digest, what: &str) -> Result<(), ImageError> {
    if expected == actual {
        Ok(())
    } else {
        Err(ImageError::DigestMismatch {
            what: format!("{what} in the store (the store is damaged)"),
            expected: expected.clone(),
            actual: actual.clone(),
        })
    }
}

struct ProgressReader<'a, R> {
    inner: R,
    bar: &'a crate::progress::Bar,
}

impl<R: Read> Read for ProgressReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.advance(n as u64);
        Ok(n)
    }
}
