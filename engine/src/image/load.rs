//! `berth load`: images from `docker save` archives and OCI image layouts.
//!
//! Accepted inputs (detected by content, never by file name):
//! - `docker save` archives, classic (`<id>/layer.tar`, docker <= 24) and
//!   Docker 25+ (`blobs/sha256/...` plus an OCI index): driven by
//!   `manifest.json`, which carries the tags;
//! - OCI image layouts (`oci-layout` + `index.json`), as a directory or a tar,
//!   with nested indexes resolved to the host's platform;
//! - several images per archive; gzip, zstd or uncompressed layers; the whole
//!   archive itself optionally gzip/zstd compressed; stdin.
//!
//! Mechanism: (1) plan — read the small JSON files, verify the config and
//! manifest digests, compute each layer's chain id; (2) unpack the layers
//! the store lacks, in parallel, each verified in the same pass (blob digest
//! and size against the manifest, diff_id against the config); (3) commit
//! by rename under the index lock. Everything before (3) happens in a staging
//! directory, so a failure at any point leaves the store as it was.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use serde::Deserialize;

use super::config::ImageConfig;
use super::digest::{chain_ids, Digest};
use super::error::ImageError;
use super::manifest::{
    check_config_media_type, check_layer_media_type, choose_platform, manifest_kind, Descriptor,
    Index, Manifest, ManifestKind, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG,
    OCI_MANIFEST,
};
use super::reference::Reference;
use super::source::{Input, LoadSource};
use super::store::{Commit, ImageRecord, ImageStore, LayerRecord, Staging};
use crate::layer::blob::{read_layer_blob, BlobReport};
use crate::layer::compression::{self, Compression};
use crate::layer::lower::resolve_deferred_links;
use crate::layer::unpack::{DeferredLink, Whiteouts};
use crate::progress::Progress;

/// One image a load brought in.
#[derive(Debug, Clone)]
pub struct LoadedImage {
    pub id: Digest,
    /// Familiar names (`busybox:latest`); empty for an untagged image.
    pub tags: Vec<String>,
}

/// An image as the input describes it, verified except for its layers.
struct Planned {
    config_bytes: Vec<u8>,
    id: Digest,
    /// The source's own manifest (OCI layouts); `None` for docker archives.
    manifest: Option<(Vec<u8>, Digest)>,
    layers: Vec<PlannedLayer>,
    tags: Vec<Reference>,
}

struct PlannedLayer {
    /// On-disk path of the blob in the input.
    path: PathBuf,
    /// How errors name it (`blobs/sha256/ab…`, `ab…/layer.tar`).
    name: String,
    /// The blob digest and size the manifest promises, when it has one.
    digest: Option<Digest>,
    size: Option<u64>,
    diff_id: Digest,
    chain_id: Digest,
}

/// Work for one layer the store lacks (or whose blob it lacks).
struct Job<'a> {
    layer: &'a PlannedLayer,
    parent: Option<Digest>,
    /// False: the layer directory exists, only the blob is new (verify only).
    unpack: bool,
}

/// What a job produced, in staging.
struct Done {
    report: BlobReport,
    /// The staged blob file (or the input's own file, when owned).
    blob_file: PathBuf,
    /// The staged `layers/<chain>` directory, when unpacked.
    layer_dir: Option<PathBuf>,
    deferred: Vec<DeferredLink>,
}

impl ImageStore {
    /// Load every image of `source`; see the module comment.
    pub fn load(
        &self,
        source: LoadSource,
        progress: &Progress,
    ) -> Result<Vec<LoadedImage>, ImageError> {
        let _hold = self.gc_shared()?;
        let staging = self.new_staging()?;
        let input = Input::open(source, &staging, progress)?;
        let planned = plan(&input)?;
        tracing::info!(input = %input.name, images = planned.len(), "load planned");
        let jobs = self.jobs_for(&planned);
        let done = self.run_jobs(&jobs, &input, &staging, progress)?;
        self.complete_deferred_links(&planned, &done)?;
        let commit = self.prepare_commit(&planned, &done, &staging)?;
        commit.sync_staged()?;
        self.commit(commit)?;
        Ok(planned
            .iter()
            .map(|image| LoadedImage {
                id: image.id.clone(),
                tags: image.tags.iter().map(Reference::familiar).collect(),
            })
            .collect())
    }

    /// One job per distinct layer whose directory or blob is missing, for
    /// the images not in the store yet.
    fn jobs_for<'a>(&self, planned: &'a [Planned]) -> Vec<Job<'a>> {
        let mut jobs: BTreeMap<Digest, Job<'a>> = BTreeMap::new();
        for image in planned.iter().filter(|image| !self.has_image(&image.id)) {
            let mut parent = None;
            for layer in &image.layers {
                let have_layer = self.has_layer(&layer.chain_id);
                let have_blob = layer
                    .digest
                    .as_ref()
                    .is_some_and(|d| self.blob_path(d).exists());
                let complete = have_layer && have_blob;
                if !complete && !jobs.contains_key(&layer.chain_id) {
                    jobs.insert(
                        layer.chain_id.clone(),
                        Job {
                            layer,
                            parent: parent.clone(),
                            unpack: !have_layer,
                        },
                    );
                }
                parent = Some(layer.chain_id.clone());
            }
        }
        let mut jobs: Vec<Job<'a>> = jobs.into_values().collect();
        // Biggest first: the base layer starts at once, small ones fill in.
        jobs.sort_by_key(|j| {
            std::cmp::Reverse(fs::metadata(&j.layer.path).map(|m| m.len()).unwrap_or(0))
        });
        jobs
    }

    /// Run the jobs on a few worker threads (each job itself uses two).
    fn run_jobs(
        &self,
        jobs: &[Job<'_>],
        input: &Input,
        staging: &Staging,
        progress: &Progress,
    ) -> Result<HashMap<Digest, Done>, ImageError> {
        for dir in ["blobs", "layers"] {
            fs::create_dir_all(staging.dir.join(dir))
                .map_err(ImageError::io("creating staging"))?;
        }
        let workers = std::thread::available_parallelism()
            .map_or(2, |n| n.get())
            .min(jobs.len());
        let next = AtomicUsize::new(0);
        let failed = AtomicBool::new(false);
        let results: Mutex<Vec<(Digest, Result<Done, ImageError>)>> = Mutex::new(Vec::new());
        std::thread::scope(|scope| {
            for _ in 0..workers {
                scope.spawn(|| loop {
                    let i = next.fetch_add(1, Ordering::SeqCst);
                    if i >= jobs.len() || failed.load(Ordering::SeqCst) {
                        break;
                    }
                    let job = &jobs[i];
                    let result = self.run_job(job, i, input, staging, progress);
                    if result.is_err() {
                        failed.store(true, Ordering::SeqCst);
                    }
                    results
                        .lock()
                        .expect("results lock")
                        .push((job.layer.chain_id.clone(), result));
                });
            }
        });
        let mut done = HashMap::new();
        for (chain, result) in results.into_inner().expect("results lock") {
            done.insert(chain, result?);
        }
        Ok(done)
    }

    fn run_job(
        &self,
        job: &Job<'_>,
        index: usize,
        input: &Input,
        staging: &Staging,
        progress: &Progress,
    ) -> Result<Done, ImageError> {
        let layer = job.layer;
        let _span =
            tracing::info_span!("layer", blob = %layer.name, chain = %layer.chain_id.short())
                .entered();
        let source = File::open(&layer.path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => ImageError::MissingBlob {
                what: format!("layer {}", layer.diff_id),
                blob: layer.name.clone(),
                input: input.name.clone(),
            },
            _ => ImageError::io(format!("{}: opening {}", input.name, layer.name))(e),
        })?;
        let total = source.metadata().map(|m| m.len()).unwrap_or(0);
        let (blob_file, mut copy) = if input.owned {
            (layer.path.clone(), None)
        } else {
            let path = staging.dir.join("blobs").join(format!("layer-{index}"));
            let file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&path)
                .map_err(ImageError::io(format!("creating {}", path.display())))?;
            (path, Some(file))
        };
        let layer_dir = job
            .unpack
            .then(|| staging.dir.join("layers").join(layer.chain_id.hex()));
        let diff_dir = layer_dir.as_ref().map(|d| d.join("diff"));
        if let Some(diff) = &diff_dir {
            fs::create_dir_all(diff)
                .map_err(ImageError::io(format!("creating {}", diff.display())))?;
        }
        let label = layer
            .digest
            .as_ref()
            .unwrap_or(&layer.diff_id)
            .short()
            .to_string();
        let bar = progress.bar(&label, total);
        tracing::debug!(unpack = job.unpack, "reading layer blob");
        let report = read_layer_blob(
            source,
            layer.digest.as_ref(),
            copy.as_mut(),
            diff_dir.as_deref(),
            Whiteouts::Overlay,
            &|n| bar.advance(n),
        )
        .map_err(|e| ImageError::Layer {
            layer: format!("{} ({})", layer.name, input.name),
            cause: e,
        })?;
        // Not fsynced here: an fsync commits the filesystem journal, which
        // would stall the other layers' file creation. See `sync_staged`.
        drop(copy);
        verify_layer(layer, &report, &input.name)?;
        bar.finish(if job.unpack { "unpacked" } else { "verified" });
        let deferred = report
            .unpacked
            .as_ref()
            .map(|u| u.deferred_links.clone())
            .unwrap_or_default();
        if let (Some(dir), Some(summary)) = (&layer_dir, &report.unpacked) {
            let record = LayerRecord {
                chain_id: layer.chain_id.clone(),
                diff_id: layer.diff_id.clone(),
                parent: job.parent.clone(),
                size: summary.content_bytes,
                tar_size: report.tar_size,
            };
            let path = dir.join("layer.json");
            super::store::write_json(&path, &record)
                .map_err(ImageError::io(format!("writing {}", path.display())))?;
            tracing::info!(
                entries = summary.entries,
                bytes = summary.content_bytes,
                "layer unpacked"
            );
        }
        Ok(Done {
            report,
            blob_file,
            layer_dir,
            deferred,
        })
    }

    /// Hardlinks to files of lower layers, completed bottom-up once every
    /// layer directory exists (in the store or in staging).
    fn complete_deferred_links(
        &self,
        planned: &[Planned],
        done: &HashMap<Digest, Done>,
    ) -> Result<(), ImageError> {
        let dir_of = |chain: &Digest| -> PathBuf {
            match done.get(chain).and_then(|d| d.layer_dir.as_ref()) {
                Some(staged) => staged.join("diff"),
                None => self.layer_dir(chain),
            }
        };
        let mut finished = std::collections::HashSet::new();
        for image in planned {
            for (i, layer) in image.layers.iter().enumerate() {
                let Some(job) = done.get(&layer.chain_id) else {
                    continue;
                };
                if job.deferred.is_empty() || !finished.insert(layer.chain_id.clone()) {
                    continue;
                }
                let lowers: Vec<PathBuf> = image.layers[..i]
                    .iter()
                    .rev()
                    .map(|l| dir_of(&l.chain_id))
                    .collect();
                resolve_deferred_links(&dir_of(&layer.chain_id), &lowers, &job.deferred).map_err(
                    |e| ImageError::Layer {
                        layer: layer.name.clone(),
                        cause: e.into(),
                    },
                )?;
            }
        }
        Ok(())
    }

    /// Stage configs and manifests, and gather what the commit moves.
    fn prepare_commit(
        &self,
        planned: &[Planned],
        done: &HashMap<Digest, Done>,
        staging: &Staging,
    ) -> Result<Commit, ImageError> {
        let mut commit = Commit::default();
        for job in done.values() {
            commit
                .blobs
                .entry(job.report.blob_digest.clone())
                .or_insert_with(|| job.blob_file.clone());
            if let Some(dir) = &job.layer_dir {
                commit.layers.insert(dir_chain(dir)?, dir.clone());
            }
        }
        let loaded = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Nanos, true);
        for (n, image) in planned.iter().enumerate() {
            if self.has_image(&image.id) {
                // Present already (perhaps from another format): only the tags are new.
                commit
                    .images
                    .push((self.read_record(&image.id)?, image.tags.clone()));
                continue;
            }
            let (manifest_bytes, manifest_digest, from_source) = match &image.manifest {
                Some((bytes, digest)) => (bytes.clone(), digest.clone(), true),
                None => {
                    let bytes = self.synthesize_manifest(image, done)?;
                    let digest = Digest::of(&bytes);
                    (bytes, digest, false)
                }
            };
            for (bytes, digest, what) in [
                (&image.config_bytes, &image.id, "config"),
                (&manifest_bytes, &manifest_digest, "manifest"),
            ] {
                let path = staging.dir.join("blobs").join(format!("{what}-{n}"));
                fs::write(&path, bytes)
                    .map_err(ImageError::io(format!("writing {}", path.display())))?;
                commit.blobs.entry(digest.clone()).or_insert(path);
            }
            commit.images.push((
                ImageRecord {
                    id: image.id.clone(),
                    manifest: manifest_digest,
                    manifest_from_source: from_source,
                    loaded: loaded.clone(),
                },
                image.tags.clone(),
            ));
        }
        Ok(commit)
    }

    /// An OCI manifest for an image that came without one (docker archives),
    /// describing the blobs exactly as stored.
    fn synthesize_manifest(
        &self,
        image: &Planned,
        done: &HashMap<Digest, Done>,
    ) -> Result<Vec<u8>, ImageError> {
        let mut layers = Vec::with_capacity(image.layers.len());
        for layer in &image.layers {
            let (digest, size, compression) = match done.get(&layer.chain_id) {
                Some(job) => (
                    job.report.blob_digest.clone(),
                    job.report.blob_size,
                    job.report.compression,
                ),
                None => {
                    // Skipped: the store has both layer and blob already.
                    let digest = layer.digest.clone().ok_or_else(|| {
                        ImageError::invalid(
                            layer.name.clone(),
                            "layer skipped without a known blob digest",
                        )
                    })?;
                    let path = self.blob_path(&digest);
                    let size = fs::metadata(&path)
                        .map_err(ImageError::io(format!("reading {}", path.display())))?
                        .len();
                    let mut head = Vec::new();
                    File::open(&path)
                        .and_then(|f| f.take(6).read_to_end(&mut head))
                        .map_err(ImageError::io(format!("reading {}", path.display())))?;
                    let compression = compression::detect(&head).unwrap_or(Compression::None);
                    (digest, size, compression)
                }
            };
            layers.push(Descriptor::new(compression.oci_media_type(), digest, size));
        }
        let manifest = Manifest {
            schema_version: 2,
            media_type: Some(OCI_MANIFEST.to_string()),
            config: Descriptor::new(
                OCI_CONFIG,
                image.id.clone(),
                image.config_bytes.len() as u64,
            ),
            layers,
            annotations: None,
        };
        serde_json::to_vec(&manifest).map_err(|e| ImageError::invalid("manifest", e.to_string()))
    }
}

fn dir_chain(dir: &Path) -> Result<Digest, ImageError> {
    let hex = dir.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    Digest::from_hex(hex).map_err(|e| ImageError::invalid(dir.display().to_string(), e.to_string()))
}

/// The blob is what the manifest promised and unpacks to what the config says.
fn verify_layer(layer: &PlannedLayer, report: &BlobReport, input: &str) -> Result<(), ImageError> {
    let what = format!("{input}: layer blob {}", layer.name);
    if let Some(expected) = &layer.digest {
        if &report.blob_digest != expected {
            return Err(ImageError::DigestMismatch {
                what,
                expected: expected.clone(),
                actual: report.blob_digest.clone(),
            });
        }
    }
    if let Some(expected) = layer.size {
        if report.blob_size != expected {
            return Err(ImageError::SizeMismatch {
                what,
                expected,
                actual: report.blob_size,
            });
        }
    }
    if report.diff_id != layer.diff_id {
        return Err(ImageError::DigestMismatch {
            what: format!("{what}: uncompressed content (diff_id)"),
            expected: layer.diff_id.clone(),
            actual: report.diff_id.clone(),
        });
    }
    Ok(())
}

// ---- planning --------------------------------------------------------------

/// Decide the input's format and describe its images.
fn plan(input: &Input) -> Result<Vec<Planned>, ImageError> {
    let planned = if input.exists("manifest.json") {
        plan_docker_archive(input)?
    } else if input.exists("index.json") {
        plan_oci_layout(input)?
    } else {
        return Err(ImageError::invalid(
            &input.name,
            "neither a docker save archive nor an OCI image layout (no manifest.json, no index.json)",
        ));
    };
    if planned.is_empty() {
        return Err(ImageError::invalid(
            &input.name,
            "the archive contains no image",
        ));
    }
    Ok(planned)
}

/// One entry of a docker archive's `manifest.json`.
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct DockerManifestEntry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

fn plan_docker_archive(input: &Input) -> Result<Vec<Planned>, ImageError> {
    let bytes = input.read_json_member("manifest.json", "the archive")?;
    let entries: Vec<DockerManifestEntry> = serde_json::from_slice(&bytes).map_err(|e| {
        ImageError::invalid(format!("{}: manifest.json", input.name), e.to_string())
    })?;
    let mut planned: Vec<Planned> = Vec::new();
    for entry in entries {
        let config_bytes = input.read_json_member(&entry.config, "manifest.json")?;
        let id = Digest::of(&config_bytes);
        if let Some(expected) = digest_in_name(&entry.config) {
            if expected != id {
                return Err(ImageError::DigestMismatch {
                    what: format!("{}: config {}", input.name, entry.config),
                    expected,
                    actual: id,
                });
            }
        }
        let config = parse_config(
            &config_bytes,
            &format!("{}: config {}", input.name, entry.config),
        )?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != entry.layers.len() {
            return Err(ImageError::invalid(
                format!("{}: manifest.json", input.name),
                format!(
                    "lists {} layers but config {} has {} diff_ids",
                    entry.layers.len(),
                    entry.config,
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for ((name, diff_id), chain_id) in
            entry.layers.iter().zip(diff_ids).zip(chain_ids(diff_ids))
        {
            layers.push(PlannedLayer {
                path: input.path(name)?,
                name: name.clone(),
                digest: digest_in_name(name),
                size: None,
                diff_id: diff_id.clone(),
                chain_id,
            });
        }
        let tags = parse_tags(
            entry
                .repo_tags
                .unwrap_or_default()
                .iter()
                .map(String::as_str),
            &input.name,
        )?;
        merge_or_push(
            &mut planned,
            Planned {
                config_bytes,
                id,
                manifest: None,
                layers,
                tags,
            },
        );
    }
    Ok(planned)
}

fn plan_oci_layout(input: &Input) -> Result<Vec<Planned>, ImageError> {
    let bytes = input.read_json_member("index.json", "the OCI layout")?;
    let index: Index = serde_json::from_slice(&bytes)
        .map_err(|e| ImageError::invalid(format!("{}: index.json", input.name), e.to_string()))?;
    let mut planned: Vec<Planned> = Vec::new();
    for entry in &index.manifests {
        let tags = names_of(entry, &input.name)?;
        let (manifest_bytes, manifest_desc) = manifest_for(input, entry, 0)?;
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            ImageError::invalid(
                format!("{}: manifest {}", input.name, manifest_desc.digest),
                e.to_string(),
            )
        })?;
        let what = format!("{}: manifest {}", input.name, manifest_desc.digest);
        check_config_media_type(manifest.config.media_type())
            .map_err(|r| ImageError::invalid(&what, r))?;
        let config_bytes = read_blob(input, &manifest.config, &what)?;
        let id = manifest.config.digest.clone();
        let config = parse_config(&config_bytes, &format!("{}: config {id}", input.name))?;
        let diff_ids = &config.rootfs.diff_ids;
        if diff_ids.len() != manifest.layers.len() {
            return Err(ImageError::invalid(
                &what,
                format!(
                    "lists {} layers but the config has {} diff_ids",
                    manifest.layers.len(),
                    diff_ids.len()
                ),
            ));
        }
        let mut layers = Vec::new();
        for ((desc, diff_id), chain_id) in manifest
            .layers
            .iter()
            .zip(diff_ids)
            .zip(chain_ids(diff_ids))
        {
            check_layer_media_type(desc.media_type()).map_err(|r| ImageError::invalid(&what, r))?;
            let name = blob_name(&desc.digest);
            layers.push(PlannedLayer {
                path: input.path(&name)?,
                name,
                digest: Some(desc.digest.clone()),
                size: Some(desc.size),
                diff_id: diff_id.clone(),
                chain_id,
            });
        }
        merge_or_push(
            &mut planned,
            Planned {
                config_bytes,
                id,
                manifest: Some((manifest_bytes, manifest_desc.digest.clone())),
                layers,
                tags,
            },
        );
    }
    Ok(planned)
}

/// Follow an index entry down to an image manifest (choosing the host's
/// platform in multi-platform indexes).
fn manifest_for(
    input: &Input,
    entry: &Descriptor,
    depth: usize,
) -> Result<(Vec<u8>, Descriptor), ImageError> {
    let what = format!("{}: index entry {}", input.name, entry.digest);
    if depth > 4 {
        return Err(ImageError::invalid(what, "indexes nested too deeply"));
    }
    let bytes = read_blob(input, entry, &what)?;
    match manifest_kind(entry.media_type.as_deref(), &bytes)
        .map_err(|r| ImageError::invalid(&what, r))?
    {
        ManifestKind::Manifest => Ok((bytes, entry.clone())),
        ManifestKind::Index => {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| ImageError::invalid(&what, e.to_string()))?;
            let chosen =
                choose_platform(&index.manifests).map_err(|r| ImageError::invalid(&what, r))?;
            manifest_for(input, chosen, depth + 1)
        }
    }
}

/// Read a small blob of an OCI layout and check its digest and size.
fn read_blob(input: &Input, desc: &Descriptor, what: &str) -> Result<Vec<u8>, ImageError> {
    let name = blob_name(&desc.digest);
    let bytes = input.read_json_member(&name, what)?;
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(ImageError::DigestMismatch {
            what: format!("{}: blob {name}", input.name),
            expected: desc.digest.clone(),
            actual,
        });
    }
    if bytes.len() as u64 != desc.size {
        return Err(ImageError::SizeMismatch {
            what: format!("{}: blob {name}", input.name),
            expected: desc.size,
            actual: bytes.len() as u64,
        });
    }
    Ok(bytes)
}

fn blob_name(digest: &Digest) -> String {
    format!("blobs/sha256/{}", digest.hex())
}

/// `blobs/sha256/<hex>` or `<hex>.json` name their digest; trust but verify.
fn digest_in_name(name: &str) -> Option<Digest> {
    let file = name.rsplit('/').next()?;
    let hex = file.strip_suffix(".json").unwrap_or(file);
    let in_blobs = name.contains("sha256/") || file.ends_with(".json");
    if in_blobs {
        Digest::from_hex(hex).ok()
    } else {
        None
    }
}

fn parse_config(bytes: &[u8], what: &str) -> Result<ImageConfig, ImageError> {
    ImageConfig::parse(bytes).map_err(|reason| ImageError::invalid(what, reason))
}

fn parse_tags<'a>(
    tags: impl Iterator<Item = &'a str>,
    input: &str,
) -> Result<Vec<Reference>, ImageError> {
    tags.map(|tag| {
        let reference = Reference::parse(tag)
            .map_err(|e| ImageError::invalid(format!("{input}: tag {tag:?}"), e.reason.clone()))?;
        if reference.digest.is_some() {
            return Err(ImageError::invalid(
                format!("{input}: tag {tag:?}"),
                "a tag cannot carry a digest",
            ));
        }
        Ok(reference.with_default_tag())
    })
    .collect()
}

/// An OCI index entry's name: `io.containerd.image.name` (a full name), or
/// `org.opencontainers.image.ref.name` when it is a full reference rather
/// than a bare tag (a bare tag names no repository: the image loads untagged).
fn names_of(entry: &Descriptor, input: &str) -> Result<Vec<Reference>, ImageError> {
    if let Some(name) = entry.annotation(ANNOTATION_IMAGE_NAME) {
        return parse_tags(std::iter::once(name), input);
    }
    match entry.annotation(ANNOTATION_REF_NAME) {
        Some(name) if name.contains(['/', ':', '@']) => parse_tags(std::iter::once(name), input),
        _ => Ok(Vec::new()),
    }
}

/// The same image twice (two tags in an OCI index): one image, both tags.
fn merge_or_push(planned: &mut Vec<Planned>, image: Planned) {
    if let Some(existing) = planned.iter_mut().find(|p| p.id == image.id) {
        for tag in image.tags {
            if !existing.tags.contains(&tag) {
                existing.tags.push(tag);
            }
        }
    } else {
        planned.push(image);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_are_recognised_in_member_names() {
        let hex = "a".repeat(64);
        assert!(digest_in_name(&format!("blobs/sha256/{hex}")).is_some());
        assert!(digest_in_name(&format!("{hex}.json")).is_some());
        assert!(digest_in_name(&format!("{hex}/layer.tar")).is_none());
    }
}
