//! The content-addressed image store on disk, and how it stays consistent.
//!
//! Layout under `<root>/images` (see docs/images.md):
//!
//! ```text
//! gc.lock, index.lock           flock(2) files (see below)
//! repositories.json             {"docker.io/library/busybox:latest": "sha256:<image id>", ...}
//! blobs/sha256/<hex>            configs, manifests and layer blobs, named by digest
//! layers/<chain hex>/diff/      a layer unpacked in overlayfs form (a lowerdir)
//! layers/<chain hex>/layer.json {diff_id, chain_id, parent, size, tar_size}
//! records/<image id hex>.json   {id, manifest, manifest_from_source, loaded}
//! ```
//!
//! Mechanism: everything is built in a staging directory under
//! `<root>/tmp/image-staging-*` and then `rename(2)`d into place, so a reader
//! (or a crash, even SIGKILL) sees a layer or blob entirely or not at all.
//! An image becomes visible only when its record is written, after all its
//! blobs and layers are in place; JSON files are replaced atomically
//! (write, fsync, rename). Two `flock(2)` locks order concurrent processes:
//! - `gc.lock`: held *shared* by everything that creates or uses layers
//!   (load, build, a container being created), *exclusive* by what deletes
//!   them (`rmi`'s garbage collection, the sweep of dead staging dirs). So a
//!   layer is never deleted under someone about to use it, and a staging dir
//!   is swept only when no process that could own it is alive.
//! - `index.lock`: exclusive around every read-modify-write of the metadata
//!   (commits, tags, removals). Readers need no lock: every file they read is
//!   replaced atomically.

use std::collections::{BTreeMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};
use serde::{Deserialize, Serialize};

use super::config::ImageConfig;
use super::digest::{chain_ids, is_lower_hex, Digest};
use super::error::ImageError;
use super::manifest::Manifest;
use super::reference::Reference;
use crate::fsutil::{atomic_write_json, fsync_dir, FileLock};
use crate::paths::Roots;

const STAGING_PREFIX: &str = "image-staging-";
const TRASH_PREFIX: &str = "image-trash-";
/// Largest JSON document (manifest, config, index) berth will read.
pub(crate) const MAX_JSON: u64 = 32 << 20;

/// The image store of one berth root.
#[derive(Debug, Clone)]
pub struct ImageStore {
    roots: Roots,
    dir: PathBuf,
}

/// An image, as the rest of berth sees it.
#[derive(Debug, Clone)]
pub struct Image {
    /// `sha256:<hex>` of the config blob.
    pub id: Digest,
    /// The parsed configuration (`config.config` holds Env, Cmd, ...).
    pub config: ImageConfig,
    /// Familiar names: `busybox:latest`, `localhost:5000/app:1`.
    pub repo_tags: Vec<String>,
    /// `busybox@sha256:<manifest>` for images whose manifest came from the
    /// source (OCI layouts, later registries); empty for docker archives.
    pub repo_digests: Vec<String>,
    pub manifest_digest: Digest,
    pub manifest: Manifest,
    /// Lowest layer first.
    pub layers: Vec<ImageLayer>,
    /// When the image entered this store (RFC 3339).
    pub loaded: String,
}

/// One layer of an image.
#[derive(Debug, Clone)]
pub struct ImageLayer {
    pub diff_id: Digest,
    pub chain_id: Digest,
    /// The stored blob (as received: compressed or not).
    pub blob: super::manifest::Descriptor,
    /// The unpacked directory, usable as an overlayfs lowerdir.
    pub dir: PathBuf,
    /// Bytes of file content.
    pub size: u64,
    /// Bytes of the uncompressed tar.
    pub tar_size: u64,
}

impl Image {
    /// The unpacked layer directories, lowest first. overlayfs wants them the
    /// other way round: `lowerdir=top:...:bottom`.
    pub fn layer_dirs(&self) -> Vec<PathBuf> {
        self.layers.iter().map(|l| l.dir.clone()).collect()
    }

    /// The 12-digit id docker shows.
    pub fn short_id(&self) -> &str {
        self.id.short()
    }

    /// Content size of all layers, what `docker images` shows.
    pub fn size(&self) -> u64 {
        self.layers.iter().map(|l| l.size).sum()
    }

    /// The layers' diff_ids, lowest first.
    pub fn diff_ids(&self) -> Vec<Digest> {
        self.layers.iter().map(|l| l.diff_id.clone()).collect()
    }

    /// The build steps, newest first, as `docker history` lists them: each
    /// history entry that made a layer (not `empty_layer`) is paired with the
    /// next layer from the bottom, and shows its size; the others show 0.
    pub fn history(&self) -> Vec<HistoryStep> {
        let mut layers = self.layers.iter();
        let mut steps: Vec<HistoryStep> = self
            .config
            .history
            .iter()
            .map(|h| HistoryStep {
                created: h
                    .created
                    .as_deref()
                    .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
                    .map(|t| t.with_timezone(&chrono::Utc)),
                created_by: h.created_by.clone().unwrap_or_default(),
                comment: h.comment.clone().unwrap_or_default(),
                size: if h.empty_layer {
                    0
                } else {
                    layers.next().map_or(0, |l| l.size)
                },
            })
            .collect();
        steps.reverse();
        steps
    }
}

/// One line of `docker history`.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryStep {
    pub created: Option<chrono::DateTime<chrono::Utc>>,
    pub created_by: String,
    pub comment: String,
    /// Bytes of file content of the layer the step made (0 for metadata).
    pub size: u64,
}

/// `layers/<chain>/layer.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct LayerRecord {
    pub chain_id: Digest,
    pub diff_id: Digest,
    pub parent: Option<Digest>,
    /// Bytes of file content.
    pub size: u64,
    /// Bytes of the uncompressed tar (needed to write it back out).
    pub tar_size: u64,
}

/// `records/<id>.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct ImageRecord {
    pub id: Digest,
    pub manifest: Digest,
    /// True when the manifest is the source's own (OCI layout, registry),
    /// false when berth wrote it (docker archives have none).
    pub manifest_from_source: bool,
    pub loaded: String,
}

/// How a reference named an image (decides what `rmi` removes).
#[derive(Debug, Clone)]
pub(crate) enum Named {
    /// By tag: the full `domain/path:tag` key of repositories.json.
    Tag(Reference),
    /// By `name@sha256:<manifest>`.
    Digest(Reference),
    /// By id or id prefix.
    Id,
}

/// A shared hold on the store's layers: while it lives, no `rmi` garbage
/// collection runs, so layers looked up now stay on disk. Hold it from
/// resolving an image until the container record naming it is written.
#[derive(Debug)]
pub struct StoreHold {
    _lock: FileLock,
}

/// A staging directory under `<root>/tmp`, removed when dropped (what was
/// committed has been renamed out of it by then).
pub(crate) struct Staging {
    pub dir: PathBuf,
}

impl Drop for Staging {
    fn drop(&mut self) {
        if let Err(e) = fs::remove_dir_all(&self.dir) {
            if e.kind() != io::ErrorKind::NotFound {
                tracing::warn!(dir = %self.dir.display(), error = %e, "cannot remove staging directory");
            }
        }
    }
}

/// What a commit moves into the store.
#[derive(Default)]
pub(crate) struct Commit {
    /// Staged files, by the digest they were verified to have.
    pub blobs: BTreeMap<Digest, PathBuf>,
    /// Staged `layers/<chain>` directories (holding `diff/` and `layer.json`).
    pub layers: BTreeMap<Digest, PathBuf>,
    pub images: Vec<(ImageRecord, Vec<Reference>)>,
}

impl Commit {
    /// Make the staged blobs and layer records durable (`fsync`), once all
    /// the unpacking is done and before the index lock is taken. Unpacked
    /// layer files are not fsynced (see docs/images.md).
    pub(crate) fn sync_staged(&self) -> Result<(), ImageError> {
        let records = self.layers.values().map(|dir| dir.join("layer.json"));
        for path in self.blobs.values().cloned().chain(records) {
            File::open(&path)
                .and_then(|f| f.sync_all())
                .map_err(ImageError::io(format!("fsync {}", path.display())))?;
        }
        Ok(())
    }
}

impl ImageStore {
    /// Open (creating if needed) the store under `roots`, sweeping staging
    /// directories left by processes that died mid-way.
    pub fn open(roots: &Roots) -> Result<ImageStore, ImageError> {
        let store = ImageStore {
            roots: roots.clone(),
            dir: roots.images(),
        };
        for dir in [
            store.dir.clone(),
            store.blob_dir(),
            store.layers_dir(),
            store.records_dir(),
            roots.tmp(),
        ] {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(&dir)
                .map_err(ImageError::io(format!("creating {}", dir.display())))?;
        }
        // The lock files exist from the start: the store's shape never
        // depends on which commands ran.
        for lock in ["gc.lock", "index.lock"] {
            let path = store.dir.join(lock);
            OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(ImageError::io(format!("creating {}", path.display())))?;
        }
        store.sweep_dead_staging()?;
        Ok(store)
    }

    pub fn roots(&self) -> &Roots {
        &self.roots
    }

    /// `<root>/images`.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub(crate) fn blob_dir(&self) -> PathBuf {
        self.dir.join("blobs").join("sha256")
    }

    pub(crate) fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.blob_dir().join(digest.hex())
    }

    pub(crate) fn layers_dir(&self) -> PathBuf {
        self.dir.join("layers")
    }

    /// `layers/<chain hex>`: holds `diff/` and `layer.json`.
    pub(crate) fn layer_path(&self, chain_id: &Digest) -> PathBuf {
        self.layers_dir().join(chain_id.hex())
    }

    /// The unpacked directory of the layer `chain_id` (an overlayfs lowerdir).
    pub fn layer_dir(&self, chain_id: &Digest) -> PathBuf {
        self.layer_path(chain_id).join("diff")
    }

    fn records_dir(&self) -> PathBuf {
        self.dir.join("records")
    }

    fn record_path(&self, id: &Digest) -> PathBuf {
        self.records_dir().join(format!("{}.json", id.hex()))
    }

    fn repositories_path(&self) -> PathBuf {
        self.dir.join("repositories.json")
    }

    /// Keep layers from being garbage-collected while the hold lives (see
    /// [`StoreHold`]). Never call `remove` while holding one: it would wait
    /// for itself.
    pub fn hold(&self) -> Result<StoreHold, ImageError> {
        Ok(StoreHold {
            _lock: self.gc_shared()?,
        })
    }

    pub(crate) fn gc_shared(&self) -> Result<FileLock, ImageError> {
        let path = self.dir.join("gc.lock");
        FileLock::shared(&path).map_err(ImageError::io(format!("locking {}", path.display())))
    }

    fn gc_exclusive(&self) -> Result<FileLock, ImageError> {
        let path = self.dir.join("gc.lock");
        FileLock::exclusive(&path).map_err(ImageError::io(format!("locking {}", path.display())))
    }

    pub(crate) fn index_lock(&self) -> Result<FileLock, ImageError> {
        let path = self.dir.join("index.lock");
        FileLock::exclusive(&path).map_err(ImageError::io(format!("locking {}", path.display())))
    }

    /// A new staging directory. Call with a `gc_shared` lock held: that is
    /// what keeps the sweep away from it.
    pub(crate) fn new_staging(&self) -> Result<Staging, ImageError> {
        let name = format!("{STAGING_PREFIX}{:016x}", rand::random::<u64>());
        let dir = self.roots.tmp().join(name);
        fs::DirBuilder::new()
            .mode(0o700)
            .create(&dir)
            .map_err(ImageError::io(format!(
                "creating staging directory {}",
                dir.display()
            )))?;
        tracing::debug!(dir = %dir.display(), "staging directory created");
        Ok(Staging { dir })
    }

    /// Remove staging and trash directories whose owners are gone. Owners
    /// hold `gc.lock` (shared) for their whole life, so if an exclusive lock
    /// can be taken *without waiting*, no owner is alive.
    fn sweep_dead_staging(&self) -> Result<(), ImageError> {
        let leftovers: Vec<PathBuf> = match fs::read_dir(self.roots.tmp()) {
            Ok(entries) => entries
                .filter_map(Result::ok)
                .filter(|e| {
                    let name = e.file_name();
                    let name = name.to_string_lossy();
                    name.starts_with(STAGING_PREFIX) || name.starts_with(TRASH_PREFIX)
                })
                .map(|e| e.path())
                .collect(),
            Err(_) => return Ok(()),
        };
        if leftovers.is_empty() {
            return Ok(());
        }
        let path = self.dir.join("gc.lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .map_err(ImageError::io(format!("opening {}", path.display())))?;
        if flock(file.as_fd(), FlockOperation::NonBlockingLockExclusive).is_err() {
            tracing::debug!("store in use; staging leftovers swept another time");
            return Ok(());
        }
        for dir in leftovers {
            tracing::info!(dir = %dir.display(), "removing staging left by a process that died");
            if let Err(e) = fs::remove_dir_all(&dir) {
                tracing::warn!(dir = %dir.display(), error = %e, "cannot remove leftover staging");
            }
        }
        Ok(())
    }

    // ---- reading -------------------------------------------------------

    /// Find an image by `busybox`, `busybox:latest`,
    /// `docker.io/library/busybox`, `name@sha256:<manifest>`, a full id
    /// `sha256:<hex>` (or bare hex), or a unique id prefix.
    pub fn resolve(&self, reference: &str) -> Result<Image, ImageError> {
        let (id, _) = self.resolve_id(reference)?;
        self.image(&id)
    }

    /// The id an input names, and how it named it.
    pub(crate) fn resolve_id(&self, input: &str) -> Result<(Digest, Named), ImageError> {
        let hex_part = input.strip_prefix("sha256:");
        if let Some(hex) = hex_part.or_else(|| Some(input).filter(|s| s.len() == 64)) {
            if hex.len() == 64 && is_lower_hex(hex) {
                let id =
                    Digest::from_hex(hex).map_err(|e| ImageError::invalid(input, e.to_string()))?;
                return if self.record_path(&id).exists() {
                    Ok((id, Named::Id))
                } else {
                    Err(ImageError::NotFound(input.to_string()))
                };
            }
            if hex_part.is_some() {
                return self.resolve_prefix(input, hex_part.unwrap_or_default());
            }
        }
        let looks_like_prefix = is_lower_hex(input);
        match Reference::parse(input) {
            Ok(reference) => {
                if let Some(found) = self.lookup_reference(&reference)? {
                    return Ok(found);
                }
                if looks_like_prefix {
                    return self.resolve_prefix(input, input);
                }
                Err(ImageError::NotFound(
                    reference.with_default_tag().familiar(),
                ))
            }
            Err(_) if looks_like_prefix => self.resolve_prefix(input, input),
            Err(e) => Err(e.into()),
        }
    }

    fn lookup_reference(
        &self,
        reference: &Reference,
    ) -> Result<Option<(Digest, Named)>, ImageError> {
        let repositories = self.read_repositories()?;
        if let Some(digest) = &reference.digest {
            let repo = reference.repository();
            for (key, id) in &repositories {
                let Ok(tagged) = Reference::parse(key) else {
                    continue;
                };
                if tagged.repository() == repo && &self.read_record(id)?.manifest == digest {
                    return Ok(Some((id.clone(), Named::Digest(reference.clone()))));
                }
            }
            return Ok(None);
        }
        let reference = reference.clone().with_default_tag();
        Ok(repositories
            .get(&reference.full())
            .map(|id| (id.clone(), Named::Tag(reference))))
    }

    fn resolve_prefix(&self, input: &str, prefix: &str) -> Result<(Digest, Named), ImageError> {
        if prefix.is_empty() {
            return Err(ImageError::NotFound(input.to_string()));
        }
        let mut matches = self
            .image_ids()?
            .into_iter()
            .filter(|id| id.hex().starts_with(prefix));
        match (matches.next(), matches.next()) {
            (Some(id), None) => Ok((id, Named::Id)),
            (None, _) => Err(ImageError::NotFound(input.to_string())),
            (Some(_), Some(_)) => Err(ImageError::Ambiguous(input.to_string())),
        }
    }

    /// The ids of every image in the store.
    pub fn image_ids(&self) -> Result<Vec<Digest>, ImageError> {
        let dir = self.records_dir();
        let entries =
            fs::read_dir(&dir).map_err(ImageError::io(format!("listing {}", dir.display())))?;
        let mut ids = Vec::new();
        for entry in entries {
            let entry = entry.map_err(ImageError::io(format!("listing {}", dir.display())))?;
            let name = entry.file_name();
            let Some(hex) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if let Ok(id) = Digest::from_hex(hex) {
                ids.push(id);
            }
        }
        ids.sort();
        Ok(ids)
    }

    /// Every image in the store (images removed meanwhile are skipped).
    pub fn list(&self) -> Result<Vec<Image>, ImageError> {
        let mut images = Vec::new();
        for id in self.image_ids()? {
            match self.image(&id) {
                Ok(image) => images.push(image),
                Err(e) if !self.record_path(&id).exists() => {
                    tracing::debug!(id = %id, error = %e, "image removed while listing");
                }
                Err(e) => return Err(e),
            }
        }
        Ok(images)
    }

    /// Read one image by id.
    pub fn image(&self, id: &Digest) -> Result<Image, ImageError> {
        let record = self.read_record(id)?;
        let damaged = |what: String| {
            move |e: io::Error| ImageError::Io {
                context: format!(
                    "image {}: {what} (the store is damaged: remove and load the image again)",
                    id.short()
                ),
                cause: e,
            }
        };
        let manifest_bytes = read_limited(&self.blob_path(&record.manifest))
            .map_err(damaged(format!("reading manifest {}", record.manifest)))?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            ImageError::invalid(format!("manifest {}", record.manifest), e.to_string())
        })?;
        let config_bytes =
            read_limited(&self.blob_path(id)).map_err(damaged(format!("reading config {id}")))?;
        let config = ImageConfig::parse(&config_bytes)
            .map_err(|e| ImageError::invalid(format!("config {id}"), e))?;
        let chains = chain_ids(&config.rootfs.diff_ids);
        if manifest.layers.len() != chains.len() {
            return Err(ImageError::invalid(
                format!("image {}", id.short()),
                "manifest and config disagree on the number of layers",
            ));
        }
        let mut layers = Vec::with_capacity(chains.len());
        for ((chain_id, diff_id), blob) in chains
            .iter()
            .zip(&config.rootfs.diff_ids)
            .zip(&manifest.layers)
        {
            let record = self
                .read_layer_record(chain_id)
                .map_err(damaged(format!("reading layer {chain_id}")))?;
            layers.push(ImageLayer {
                diff_id: diff_id.clone(),
                chain_id: chain_id.clone(),
                blob: blob.clone(),
                dir: self.layer_dir(chain_id),
                size: record.size,
                tar_size: record.tar_size,
            });
        }
        let repositories = self.read_repositories()?;
        let mut repo_tags = Vec::new();
        let mut repo_digests = Vec::new();
        for (key, tagged) in &repositories {
            if tagged != id {
                continue;
            }
            let Ok(reference) = Reference::parse(key) else {
                continue;
            };
            if reference.digest.is_none() {
                repo_tags.push(reference.familiar());
            }
            if record.manifest_from_source {
                let digest_ref = format!("{}@{}", reference.familiar_repository(), record.manifest);
                if !repo_digests.contains(&digest_ref) {
                    repo_digests.push(digest_ref);
                }
            }
        }
        Ok(Image {
            id: id.clone(),
            config,
            repo_tags,
            repo_digests,
            manifest_digest: record.manifest,
            manifest,
            layers,
            loaded: record.loaded,
        })
    }

    pub(crate) fn read_record(&self, id: &Digest) -> Result<ImageRecord, ImageError> {
        let path = self.record_path(id);
        let bytes = match fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(ImageError::NotFound(id.to_string()))
            }
            Err(e) => return Err(ImageError::io(format!("reading {}", path.display()))(e)),
        };
        serde_json::from_slice(&bytes)
            .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string()))
    }

    pub(crate) fn read_layer_record(&self, chain_id: &Digest) -> io::Result<LayerRecord> {
        let bytes = fs::read(self.layer_path(chain_id).join("layer.json"))?;
        serde_json::from_slice(&bytes).map_err(io::Error::other)
    }

    /// True when the image `id` is in the store (its record is written last).
    pub(crate) fn has_image(&self, id: &Digest) -> bool {
        self.record_path(id).exists()
    }

    /// True when the layer `chain_id` is complete in the store.
    pub(crate) fn has_layer(&self, chain_id: &Digest) -> bool {
        self.layer_path(chain_id).join("layer.json").exists()
    }

    pub(crate) fn read_repositories(&self) -> Result<BTreeMap<String, Digest>, ImageError> {
        let path = self.repositories_path();
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(path.display().to_string(), e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(BTreeMap::new()),
            Err(e) => Err(ImageError::io(format!("reading {}", path.display()))(e)),
        }
    }

    pub(crate) fn write_repositories(
        &self,
        repositories: &BTreeMap<String, Digest>,
    ) -> Result<(), ImageError> {
        let path = self.repositories_path();
        atomic_write_json(&path, repositories)
            .map_err(ImageError::io(format!("writing {}", path.display())))
    }

    // ---- writing -------------------------------------------------------

    /// Move staged blobs and layers into place, then write records and tags.
    /// Takes `index.lock`; the caller holds `gc.lock` shared.
    pub(crate) fn commit(&self, commit: Commit) -> Result<(), ImageError> {
        let _index = self.index_lock()?;
        for (digest, staged) in &commit.blobs {
            let target = self.blob_path(digest);
            if !target.exists() {
                fs::rename(staged, &target).map_err(ImageError::io(format!(
                    "moving blob {digest} into the store"
                )))?;
            }
        }
        for (chain_id, staged) in &commit.layers {
            let target = self.layer_path(chain_id);
            if !target.exists() {
                fs::rename(staged, &target).map_err(ImageError::io(format!(
                    "moving layer {chain_id} into the store"
                )))?;
                tracing::debug!(layer = %chain_id, "layer committed");
            }
        }
        for dir in [self.blob_dir(), self.layers_dir()] {
            fsync_dir(&dir).map_err(ImageError::io(format!("fsync {}", dir.display())))?;
        }
        if commit.images.is_empty() {
            return Ok(());
        }
        let mut repositories = self.read_repositories()?;
        for (record, tags) in &commit.images {
            self.check_complete(record)?;
            let path = self.record_path(&record.id);
            if !path.exists() {
                atomic_write_json(&path, record)
                    .map_err(ImageError::io(format!("writing {}", path.display())))?;
            }
            for tag in tags {
                repositories.insert(tag.full(), record.id.clone());
            }
        }
        self.write_repositories(&repositories)
    }

    /// Refuse to publish an image record whose blobs or layers are missing.
    fn check_complete(&self, record: &ImageRecord) -> Result<(), ImageError> {
        let missing = |what: String| ImageError::Io {
            context: format!(
                "image {}: {what} is missing after commit",
                record.id.short()
            ),
            cause: io::Error::from(io::ErrorKind::NotFound),
        };
        for blob in [&record.id, &record.manifest] {
            if !self.blob_path(blob).exists() {
                return Err(missing(format!("blob {blob}")));
            }
        }
        let manifest: Manifest = serde_json::from_slice(
            &read_limited(&self.blob_path(&record.manifest))
                .map_err(ImageError::io("reading manifest"))?,
        )
        .map_err(|e| ImageError::invalid(format!("manifest {}", record.manifest), e.to_string()))?;
        let config = ImageConfig::parse(
            &read_limited(&self.blob_path(&record.id)).map_err(ImageError::io("reading config"))?,
        )
        .map_err(|e| ImageError::invalid(format!("config {}", record.id), e))?;
        for layer in &manifest.layers {
            if !self.blob_path(&layer.digest).exists() {
                return Err(missing(format!("layer blob {}", layer.digest)));
            }
        }
        for chain in chain_ids(&config.rootfs.diff_ids) {
            if !self.has_layer(&chain) {
                return Err(missing(format!("layer {chain}")));
            }
        }
        Ok(())
    }

    /// Tag the image `source` as `target` (docker's `tag SOURCE TARGET`).
    pub fn tag(&self, source: &str, target: &str) -> Result<Reference, ImageError> {
        let target = Reference::parse(target)?;
        if target.digest.is_some() {
            return Err(ImageError::invalid(
                target.familiar(),
                "refusing to create a tag with a digest reference",
            ));
        }
        let target = target.with_default_tag();
        let _index = self.index_lock()?;
        let (id, _) = self.resolve_id(source)?;
        let mut repositories = self.read_repositories()?;
        repositories.insert(target.full(), id.clone());
        self.write_repositories(&repositories)?;
        tracing::info!(image = %id, tag = %target, "tagged");
        Ok(target)
    }

    /// Untag or delete an image, as `docker rmi` does; see [`Removal`].
    pub fn remove(&self, reference: &str, force: bool) -> Result<Vec<Removal>, ImageError> {
        let _gc = self.gc_exclusive()?;
        let _index = self.index_lock()?;
        let (id, named) = self.resolve_id(reference)?;
        let users = crate::container::users_of_image(&self.roots, id.as_str())
            .map_err(ImageError::io("reading container records"))?;
        let mut repositories = self.read_repositories()?;
        let tags: Vec<String> = repositories
            .iter()
            .filter(|(_, v)| **v == id)
            .map(|(k, _)| k.clone())
            .collect();
        let mut events = Vec::new();
        let untag =
            |repositories: &mut BTreeMap<String, Digest>, key: &str, events: &mut Vec<Removal>| {
                repositories.remove(key);
                let shown = Reference::parse(key)
                    .map(|r| r.familiar())
                    .unwrap_or_else(|_| key.to_string());
                events.push(Removal::Untagged(shown));
            };
        match &named {
            Named::Tag(reference) => {
                let key = reference.full();
                let last = tags.len() == 1;
                if last && !users.is_empty() && !force {
                    return Err(ImageError::Conflict(format!(
                        "unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image {}",
                        reference.familiar(),
                        short(&users[0]),
                        id.short()
                    )));
                }
                untag(&mut repositories, &key, &mut events);
            }
            Named::Digest(reference) => {
                let repo = reference.repository();
                let keys: Vec<&String> = tags
                    .iter()
                    .filter(|k| Reference::parse(k).is_ok_and(|r| r.repository() == repo))
                    .collect();
                if keys.len() == tags.len() && !users.is_empty() && !force {
                    return Err(ImageError::Conflict(format!(
                        "unable to remove repository reference \"{}\" (must force) - container {} is using its referenced image {}",
                        reference.familiar(),
                        short(&users[0]),
                        id.short()
                    )));
                }
                for key in keys {
                    untag(&mut repositories, key, &mut events);
                }
            }
            Named::Id => {
                if !users.is_empty() {
                    return Err(ImageError::Conflict(format!(
                        "unable to delete {} (cannot be forced) - image is being used by container {}",
                        id.short(),
                        short(&users[0])
                    )));
                }
                if tags.len() > 1 && !force {
                    return Err(ImageError::Conflict(format!(
                        "unable to delete {} (must be forced) - image is referenced in multiple repositories",
                        id.short()
                    )));
                }
                for key in &tags {
                    untag(&mut repositories, key, &mut events);
                }
            }
        }
        self.write_repositories(&repositories)?;
        let still_tagged = repositories.values().any(|v| *v == id);
        if !still_tagged && users.is_empty() {
            let path = self.record_path(&id);
            fs::remove_file(&path)
                .map_err(ImageError::io(format!("removing {}", path.display())))?;
            fsync_dir(&self.records_dir()).map_err(ImageError::io("fsync records"))?;
            events.push(Removal::Deleted(id.to_string()));
            for layer in self.collect_garbage()? {
                events.push(Removal::Deleted(layer.to_string()));
            }
        }
        Ok(events)
    }

    /// Delete every layer and blob no image references. Called with both
    /// locks held exclusively. Returns the chain ids of removed layers.
    fn collect_garbage(&self) -> Result<Vec<Digest>, ImageError> {
        let mut blobs = HashSet::new();
        let mut chains = HashSet::new();
        for id in self.image_ids()? {
            let record = self.read_record(&id)?;
            blobs.insert(record.id.clone());
            blobs.insert(record.manifest.clone());
            if let Ok(bytes) = read_limited(&self.blob_path(&record.manifest)) {
                if let Ok(manifest) = serde_json::from_slice::<Manifest>(&bytes) {
                    blobs.extend(manifest.layers.into_iter().map(|l| l.digest));
                }
            }
            if let Ok(bytes) = read_limited(&self.blob_path(&record.id)) {
                if let Ok(config) = ImageConfig::parse(&bytes) {
                    chains.extend(chain_ids(&config.rootfs.diff_ids));
                }
            }
        }
        let trash = self
            .roots
            .tmp()
            .join(format!("{TRASH_PREFIX}{:016x}", rand::random::<u64>()));
        fs::create_dir(&trash).map_err(ImageError::io(format!("creating {}", trash.display())))?;
        let mut removed = Vec::new();
        for hex in dir_names(&self.layers_dir())? {
            let Ok(chain) = Digest::from_hex(&hex) else {
                continue;
            };
            if !chains.contains(&chain) {
                // Renamed away first: the layer disappears in one step.
                fs::rename(self.layer_path(&chain), trash.join(&hex))
                    .map_err(ImageError::io(format!("removing layer {chain}")))?;
                removed.push(chain);
            }
        }
        for hex in dir_names(&self.blob_dir())? {
            let Ok(digest) = Digest::from_hex(&hex) else {
                continue;
            };
            if !blobs.contains(&digest) {
                fs::remove_file(self.blob_path(&digest))
                    .map_err(ImageError::io(format!("removing blob {digest}")))?;
            }
        }
        fsync_dir(&self.layers_dir()).map_err(ImageError::io("fsync layers"))?;
        fs::remove_dir_all(&trash)
            .map_err(ImageError::io(format!("removing {}", trash.display())))?;
        tracing::debug!(layers = removed.len(), "garbage collected");
        Ok(removed)
    }
}

/// What `remove` did, in docker's output words.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// `Untagged: busybox:latest`
    Untagged(String),
    /// `Deleted: sha256:…` (the image, then each layer removed)
    Deleted(String),
}

fn short(id: &str) -> &str {
    &id[..id.len().min(12)]
}

fn dir_names(dir: &Path) -> Result<Vec<String>, ImageError> {
    let entries =
        fs::read_dir(dir).map_err(ImageError::io(format!("listing {}", dir.display())))?;
    Ok(entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().into_string().ok())
        .collect())
}

/// Read a (JSON) file, refusing anything absurdly large.
pub(crate) fn read_limited(path: &Path) -> io::Result<Vec<u8>> {
    use io::Read;
    let file = File::open(path)?;
    let mut bytes = Vec::new();
    file.take(MAX_JSON + 1).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > MAX_JSON {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{} is larger than {} MiB: not a manifest or config",
                path.display(),
                MAX_JSON >> 20
            ),
        ));
    }
    Ok(bytes)
}

/// Write JSON into a staging file (made durable later by `Commit::sync_staged`).
pub(crate) fn write_json<T: Serialize>(path: &Path, value: &T) -> io::Result<()> {
    fs::write(
        path,
        serde_json::to_vec_pretty(value).map_err(io::Error::other)?,
    )
}
