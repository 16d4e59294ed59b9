//! `berth pull`: an image from a registry into the image store.
//!
//! Mechanism:
//! 1. `GET /v2/<name>/manifests/<tag|digest>` with an `Accept` header listing
//!    docker schema2 and OCI manifests and indexes. A manifest list / OCI
//!    index is resolved to the entry for the platform asked for (`--platform
//!    os/arch[/variant]`, default the host's) and that manifest fetched by
//!    digest. Manifests are verified against the digest they were asked by
//!    (or the `Docker-Content-Digest` the registry sent).
//! 2. the config blob, verified;
//! 3. the layer blobs the store does not have, a few at a time in parallel
//!    threads, each hashed as it streams to `<root>/tmp/downloads/<hex>.partial`
//!    under an exclusive `flock(2)`. A connection that breaks mid-blob is
//!    resumed with `Range: bytes=<have>-` (up to 5 times in one pull; a
//!    partial file left by an interrupted pull is resumed by the next one).
//!    A blob whose digest does not match is deleted and the pull fails;
//! 4. the verified blobs are arranged as an OCI image layout (hard links)
//!    and loaded by [`ImageStore::load`], which unpacks and verifies the
//!    layers (diff_ids) and commits everything at once: a pull that fails at
//!    any point leaves the store unchanged.

use std::collections::BTreeMap;
use std::fs::{self, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Mutex;

use sha2::{Digest as _, Sha256};

use super::client::{header, read_body, Client, Payload};
use super::{CredentialStore, RegistryError};
use crate::image::manifest::{
    check_config_media_type, check_layer_media_type, host_architecture, manifest_kind, Descriptor,
    Index, Manifest, ManifestKind, ANNOTATION_IMAGE_NAME, DOCKER_MANIFEST, OCI_INDEX,
    OCI_LAYOUT_VERSION, OCI_MANIFEST,
};
use crate::image::{Digest, ImageConfig, ImageStore, LoadSource, Reference};
use crate::paths::Roots;
use crate::progress::Progress;

/// How many blobs download at once (docker's default).
const PARALLEL_DOWNLOADS: usize = 3;
/// Resumes of one blob within one pull before giving up.
const MAX_RESUMES: usize = 5;
/// Largest manifest or config accepted.
const MAX_DOCUMENT: u64 = 4 << 20;

/// `--platform` and `--insecure`.
#[derive(Debug, Clone, Default)]
pub struct PullOptions {
    pub insecure: bool,
    /// `os/arch[/variant]`; `None`: the host's.
    pub platform: Option<String>,
}

/// What a pull brought.
#[derive(Debug, Clone)]
pub struct PullResult {
    pub id: Digest,
    /// The digest of the image manifest stored.
    pub manifest_digest: Digest,
    /// False when the image was in the store already.
    pub downloaded: bool,
    /// The full reference (`localhost:5000/app:v1`).
    pub name: String,
}

/// Pull `reference` into the store, narrating docker-style to `out`.
pub fn pull(
    roots: &Roots,
    reference: &str,
    options: &PullOptions,
    credentials: &CredentialStore,
    out: &mut dyn Write,
    progress: &Progress,
) -> Result<PullResult, RegistryError> {
    let reference = Reference::parse(reference)
        .map_err(|e| RegistryError::Invalid(e.to_string()))?
        .with_default_tag();
    let store = ImageStore::open(roots)?;
    let scope = format!("repository:{}:pull", reference.path);
    let client = Client::connect(&reference.domain, &scope, options.insecure, credentials)?;
    let wanted = match (&reference.digest, &reference.tag) {
        (Some(digest), _) => digest.to_string(),
        (None, Some(tag)) => tag.clone(),
        (None, None) => "latest".to_string(),
    };
    let _ = writeln!(out, "{wanted}: Pulling from {}", familiar_path(&reference));
    let (manifest_bytes, manifest_digest, media_type) =
        fetch_image_manifest(&client, &reference, &wanted, options)?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| RegistryError::Protocol(format!("manifest {manifest_digest}: {e}")))?;
    check_config_media_type(manifest.config.media_type())
        .map_err(|r| RegistryError::Invalid(format!("{}: {r}", reference.familiar())))?;
    for layer in &manifest.layers {
        check_layer_media_type(layer.media_type())
            .map_err(|r| RegistryError::Invalid(format!("{}: {r}", reference.familiar())))?;
        if layer.urls.as_ref().is_some_and(|u| !u.is_empty())
            && layer.media_type().contains("foreign")
        {
            return Err(RegistryError::Invalid(format!(
                "{}: layer {} is a foreign (non-distributable) layer, which berth does not download",
                reference.familiar(),
                layer.digest
            )));
        }
    }
    let config_bytes = fetch_small_blob(&client, &reference.path, &manifest.config)?;
    let config = ImageConfig::parse(&config_bytes)
        .map_err(|e| RegistryError::Protocol(format!("config {}: {e}", manifest.config.digest)))?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(RegistryError::Protocol(format!(
            "manifest {manifest_digest} lists {} layers but its config has {} diff_ids",
            manifest.layers.len(),
            config.rootfs.diff_ids.len()
        )));
    }
    let id = manifest.config.digest.clone();
    let already = store.has_image(&id);

    // Layers: what the store has is linked, the rest downloaded.
    let _hold = store.hold()?;
    let downloads = roots.tmp().join("downloads");
    fs::create_dir_all(&downloads).map_err(io_err(&downloads, "creating"))?;
    let mut needed = Vec::new();
    for layer in &manifest.layers {
        if store.blob_path(&layer.digest).exists() {
            let _ = writeln!(out, "{}: Already exists", layer.digest.short());
        } else if !needed.iter().any(|d: &Descriptor| d.digest == layer.digest) {
            needed.push(layer.clone());
        }
    }
    if !already {
        for layer in &needed {
            let _ = writeln!(out, "{}: Pulling fs layer", layer.digest.short());
        }
    }
    let fetched = if already {
        BTreeMap::new()
    } else {
        download_all(&client, &reference.path, &needed, &downloads, progress)?
    };
    for layer in &needed {
        if fetched.contains_key(&layer.digest) {
            let _ = writeln!(out, "{}: Download complete", layer.digest.short());
        }
    }

    // Hand the verified blobs to the store as an OCI layout.
    let layout = Layout::create(roots)?;
    layout.write_blob(&manifest_digest, &manifest_bytes)?;
    layout.write_blob(&manifest.config.digest, &config_bytes)?;
    for layer in &manifest.layers {
        let source = fetched
            .get(&layer.digest)
            .cloned()
            .unwrap_or_else(|| store.blob_path(&layer.digest));
        if source.exists() {
            layout.link_blob(&layer.digest, &source)?;
        }
    }
    let mut entry = Descriptor::new(
        &media_type,
        manifest_digest.clone(),
        manifest_bytes.len() as u64,
    );
    if reference.digest.is_none() {
        entry.annotations = Some(BTreeMap::from([(
            ANNOTATION_IMAGE_NAME.to_string(),
            reference.full(),
        )]));
    }
    layout.write_index(entry)?;
    let loaded = store.load(LoadSource::Path(layout.dir.clone()), &Progress::hidden())?;
    drop(layout);
    for path in fetched.values() {
        let _ = fs::remove_file(path);
    }
    let id = loaded.first().map(|l| l.id.clone()).unwrap_or(id);
    if reference.digest.is_some() {
        store.add_digest_reference(&reference, &id)?;
    }
    for layer in &manifest.layers {
        if fetched.contains_key(&layer.digest) {
            let _ = writeln!(out, "{}: Pull complete", layer.digest.short());
        }
    }
    let name = reference.full();
    let _ = writeln!(out, "Digest: {manifest_digest}");
    if already {
        let _ = writeln!(
            out,
            "Status: Image is up to date for {}",
            reference.familiar()
        );
    } else {
        let _ = writeln!(
            out,
            "Status: Downloaded newer image for {}",
            reference.familiar()
        );
    }
    Ok(PullResult {
        id,
        manifest_digest,
        downloaded: !already,
        name,
    })
}

fn io_err(path: &Path, op: &str) -> impl FnOnce(io::Error) -> RegistryError {
    let context = format!("{op} {}", path.display());
    move |error| RegistryError::Io { context, error }
}

/// `library/busybox` for Docker Hub, else the path.
fn familiar_path(reference: &Reference) -> String {
    reference.path.clone()
}

/// Everything a registry may answer for a manifest request.
const MANIFEST_ACCEPT: &str = "application/vnd.oci.image.index.v1+json, application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json";

/// Fetch the manifest of `wanted` (tag or digest), resolving an index to
/// the platform's manifest. Returns its bytes, digest and media type.
fn fetch_image_manifest(
    client: &Client,
    reference: &Reference,
    wanted: &str,
    options: &PullOptions,
) -> Result<(Vec<u8>, Digest, String), RegistryError> {
    let expected = Digest::parse(wanted).ok();
    let (bytes, digest, media_type) = fetch_manifest(client, reference, wanted, expected.as_ref())?;
    let kind = manifest_kind(
        Some(&media_type)
            .filter(|m| !m.is_empty())
            .map(String::as_str),
        &bytes,
    )
    .map_err(|r| RegistryError::Invalid(format!("{}: {r}", reference.familiar())))?;
    match kind {
        ManifestKind::Manifest => Ok((bytes, digest, media_type_or(&media_type, OCI_MANIFEST))),
        ManifestKind::Index => {
            let index: Index = serde_json::from_slice(&bytes)
                .map_err(|e| RegistryError::Protocol(format!("index {digest}: {e}")))?;
            let chosen = choose(&index.manifests, options.platform.as_deref())
                .map_err(|r| RegistryError::NotFound(format!("{}: {r}", reference.familiar())))?;
            tracing::info!(index = %digest, manifest = %chosen.digest, "platform manifest chosen from the index");
            let (bytes, digest, media_type) = fetch_manifest(
                client,
                reference,
                chosen.digest.as_str(),
                Some(&chosen.digest),
            )?;
            match manifest_kind(
                Some(&media_type)
                    .filter(|m| !m.is_empty())
                    .map(String::as_str),
                &bytes,
            ) {
                Ok(ManifestKind::Manifest) => Ok((
                    bytes,
                    digest,
                    media_type_or(&media_type, chosen.media_type()),
                )),
                Ok(ManifestKind::Index) => Err(RegistryError::Invalid(format!(
                    "{}: nested indexes are not supported",
                    reference.familiar()
                ))),
                Err(r) => Err(RegistryError::Invalid(format!(
                    "{}: {r}",
                    reference.familiar()
                ))),
            }
        }
    }
}

fn media_type_or(media_type: &str, fallback: &str) -> String {
    match media_type {
        OCI_MANIFEST | DOCKER_MANIFEST => media_type.to_string(),
        _ if fallback.is_empty() => OCI_MANIFEST.to_string(),
        _ => fallback.to_string(),
    }
}

fn fetch_manifest(
    client: &Client,
    reference: &Reference,
    wanted: &str,
    expected: Option<&Digest>,
) -> Result<(Vec<u8>, Digest, String), RegistryError> {
    let path = format!("/v2/{}/manifests/{wanted}", reference.path);
    let response = client.request(
        "GET",
        &path,
        &[("Accept", MANIFEST_ACCEPT.to_string())],
        &Payload::Empty,
    )?;
    if !response.status().is_success() {
        let what = format!("manifest for {}", reference.familiar());
        return Err(match client.error_from(&what, response) {
            RegistryError::NotFound(m) => {
                RegistryError::NotFound(format!("{m} (no such repository, tag or digest)"))
            }
            other => other,
        });
    }
    let media_type = header(&response, "content-type")
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_string();
    let announced = Digest::parse(&header(&response, "docker-content-digest")).ok();
    let bytes = read_body(
        response,
        MAX_DOCUMENT,
        &format!("reading manifest {wanted}"),
    )?;
    let actual = Digest::of(&bytes);
    if let Some(expected) = expected.or(announced.as_ref()) {
        if &actual != expected {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest of {}", reference.familiar()),
                expected: expected.clone(),
                actual,
            });
        }
    }
    Ok((bytes, actual, media_type))
}

/// The index entry for `platform` (`os/arch[/variant]`) or the host.
fn choose<'a>(entries: &'a [Descriptor], platform: Option<&str>) -> Result<&'a Descriptor, String> {
    let host = format!("linux/{}", host_architecture());
    let wanted = platform.unwrap_or(&host);
    let mut parts = wanted.split('/');
    let (os, arch, variant) = (
        parts.next().unwrap_or(""),
        parts.next().unwrap_or(""),
        parts.next(),
    );
    if os.is_empty() || arch.is_empty() {
        return Err(format!(
            "invalid platform {wanted:?}: use os/arch[/variant], e.g. linux/amd64"
        ));
    }
    entries
        .iter()
        .find(|d| {
            d.platform.as_ref().is_some_and(|p| {
                p.os == os
                    && p.architecture == arch
                    && variant.is_none_or(|v| p.variant.as_deref() == Some(v))
            })
        })
        .ok_or_else(|| {
            let available: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .filter(|p| p.os != "unknown")
                .map(|p| match &p.variant {
                    Some(v) => format!("{}/{}/{v}", p.os, p.architecture),
                    None => format!("{}/{}", p.os, p.architecture),
                })
                .collect();
            format!(
                "no matching manifest for {wanted} in the manifest list (it has: {})",
                available.join(", ")
            )
        })
}

/// A config (small blob) fetched and verified.
fn fetch_small_blob(
    client: &Client,
    path: &str,
    desc: &Descriptor,
) -> Result<Vec<u8>, RegistryError> {
    if desc.size > MAX_DOCUMENT {
        return Err(RegistryError::Protocol(format!(
            "config {} is {} bytes: too large",
            desc.digest, desc.size
        )));
    }
    let response = client.request(
        "GET",
        &format!("/v2/{path}/blobs/{}", desc.digest),
        &[],
        &Payload::Empty,
    )?;
    if !response.status().is_success() {
        return Err(client.error_from(&format!("config blob {}", desc.digest), response));
    }
    let bytes = read_body(
        response,
        MAX_DOCUMENT,
        &format!("reading config {}", desc.digest),
    )?;
    let actual = Digest::of(&bytes);
    if actual != desc.digest {
        return Err(RegistryError::DigestMismatch {
            what: format!("config blob {}", desc.digest),
            expected: desc.digest.clone(),
            actual,
        });
    }
    Ok(bytes)
}

/// Download `layers` in parallel; returns digest -> verified file.
fn download_all(
    client: &Client,
    path: &str,
    layers: &[Descriptor],
    dir: &Path,
    progress: &Progress,
) -> Result<BTreeMap<Digest, PathBuf>, RegistryError> {
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let results: Mutex<Vec<(Digest, Result<PathBuf, RegistryError>)>> = Mutex::new(Vec::new());
    let workers = PARALLEL_DOWNLOADS.min(layers.len());
    std::thread::scope(|scope| {
        for _ in 0..workers {
            scope.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::SeqCst);
                if i >= layers.len() || failed.load(Ordering::SeqCst) {
                    break;
                }
                let layer = &layers[i];
                let result = download_blob(client, path, layer, dir, progress);
                if result.is_err() {
                    failed.store(true, Ordering::SeqCst);
                }
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((layer.digest.clone(), result));
            });
        }
    });
    let mut done = BTreeMap::new();
    for (digest, result) in results.into_inner().unwrap_or_else(|e| e.into_inner()) {
        done.insert(digest, result?);
    }
    Ok(done)
}

/// Download one blob to `dir/<hex>` (verified), resuming a partial file.
pub fn download_blob(
    client: &Client,
    path: &str,
    desc: &Descriptor,
    dir: &Path,
    progress: &Progress,
) -> Result<PathBuf, RegistryError> {
    let final_path = dir.join(desc.digest.hex());
    let partial_path = dir.join(format!("{}.partial", desc.digest.hex()));
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&partial_path)
        .map_err(io_err(&partial_path, "opening"))?;
    // One writer per blob, even across concurrent pulls.
    rustix::fs::flock(file.as_fd(), rustix::fs::FlockOperation::LockExclusive)
        .map_err(|e| io_err(&partial_path, "locking")(e.into()))?;
    if final_path.exists() {
        let _ = fs::remove_file(&partial_path);
        return Ok(final_path);
    }
    let bar = progress.bar(desc.digest.short(), desc.size);
    let mut hasher = Sha256::new();
    let mut have = file
        .metadata()
        .map_err(io_err(&partial_path, "stat"))?
        .len();
    if have > desc.size {
        file.set_len(0)
            .map_err(io_err(&partial_path, "truncating"))?;
        have = 0;
    }
    if have > 0 {
        // Resume: the bytes already here count for the digest too.
        file.seek(SeekFrom::Start(0))
            .map_err(io_err(&partial_path, "seeking"))?;
        let mut prefix = (&mut file).take(have);
        io::copy(&mut prefix, &mut HashWriter(&mut hasher))
            .map_err(io_err(&partial_path, "reading"))?;
        tracing::info!(blob = %desc.digest, have, "resuming a partial download");
        bar.advance(have);
    }
    let url = format!("/v2/{path}/blobs/{}", desc.digest);
    let mut interruptions = 0;
    let mut buf = vec![0u8; 256 * 1024];
    while have < desc.size || desc.size == 0 {
        let mut headers = Vec::new();
        if have > 0 {
            headers.push(("Range", format!("bytes={have}-")));
        }
        let response = client.request("GET", &url, &headers, &Payload::Empty)?;
        let status = response.status().as_u16();
        match status {
            206 if have > 0 => {
                let range = header(&response, "content-range");
                let start = range
                    .strip_prefix("bytes ")
                    .and_then(|r| r.split('-').next())
                    .and_then(|s| s.parse::<u64>().ok());
                if start != Some(have) {
                    return Err(RegistryError::Protocol(format!(
                        "blob {}: the registry answered the range request with {range:?}",
                        desc.digest
                    )));
                }
            }
            200 => {
                if have > 0 {
                    // The registry ignored the Range header: start over.
                    tracing::info!(blob = %desc.digest, "registry does not resume; downloading from the start");
                    file.set_len(0)
                        .map_err(io_err(&partial_path, "truncating"))?;
                    hasher = Sha256::new();
                    have = 0;
                }
            }
            416 => {
                file.set_len(0)
                    .map_err(io_err(&partial_path, "truncating"))?;
                hasher = Sha256::new();
                have = 0;
                continue;
            }
            _ => return Err(client.error_from(&format!("blob {}", desc.digest), response)),
        }
        file.seek(SeekFrom::Start(have))
            .map_err(io_err(&partial_path, "seeking"))?;
        let mut body = response.into_body().into_reader();
        let interrupted = loop {
            match body.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => {
                    if have + n as u64 > desc.size {
                        let _ = fs::remove_file(&partial_path);
                        return Err(RegistryError::Protocol(format!(
                            "blob {}: the registry sent more than the {} bytes the manifest lists",
                            desc.digest, desc.size
                        )));
                    }
                    file.write_all(&buf[..n])
                        .map_err(io_err(&partial_path, "writing"))?;
                    hasher.update(&buf[..n]);
                    have += n as u64;
                    bar.advance(n as u64);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Some(e),
            }
        };
        if desc.size == 0 {
            break;
        }
        if let Some(e) = interrupted.or_else(|| {
            (have < desc.size)
                .then(|| io::Error::new(io::ErrorKind::UnexpectedEof, "connection closed early"))
        }) {
            interruptions += 1;
            tracing::warn!(blob = %desc.digest, have, size = desc.size, error = %e, "download interrupted");
            if interruptions > MAX_RESUMES {
                let _ = file.sync_all();
                return Err(RegistryError::Transport {
                    url: client.url(&url),
                    message: format!(
                        "download interrupted {interruptions} times ({have} of {} bytes kept: run the pull again to resume)",
                        desc.size
                    ),
                });
            }
        }
    }
    file.sync_all().map_err(io_err(&partial_path, "fsync"))?;
    let actual = Digest::from_hex(&hex::encode(hasher.finalize()))
        .map_err(|e| RegistryError::Protocol(e.to_string()))?;
    if actual != desc.digest {
        let _ = fs::remove_file(&partial_path);
        bar.finish("corrupted");
        return Err(RegistryError::DigestMismatch {
            what: format!("layer blob {}", desc.digest),
            expected: desc.digest.clone(),
            actual,
        });
    }
    fs::rename(&partial_path, &final_path).map_err(io_err(&final_path, "renaming"))?;
    bar.finish("done");
    Ok(final_path)
}

struct HashWriter<'a>(&'a mut Sha256);

impl Write for HashWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.update(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// A temporary OCI image layout under `<root>/tmp`, removed on drop.
struct Layout {
    dir: PathBuf,
}

impl Layout {
    fn create(roots: &Roots) -> Result<Layout, RegistryError> {
        let dir = roots
            .tmp()
            .join(format!("pull-{:016x}", rand::random::<u64>()));
        let blobs = dir.join("blobs").join("sha256");
        fs::create_dir_all(&blobs).map_err(io_err(&blobs, "creating"))?;
        let layout = Layout { dir };
        let marker = layout.dir.join("oci-layout");
        fs::write(
            &marker,
            format!("{{\"imageLayoutVersion\":\"{OCI_LAYOUT_VERSION}\"}}"),
        )
        .map_err(io_err(&marker, "writing"))?;
        Ok(layout)
    }

    fn blob(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs").join("sha256").join(digest.hex())
    }

    fn write_blob(&self, digest: &Digest, bytes: &[u8]) -> Result<(), RegistryError> {
        let path = self.blob(digest);
        fs::write(&path, bytes).map_err(io_err(&path, "writing"))
    }

    fn link_blob(&self, digest: &Digest, source: &Path) -> Result<(), RegistryError> {
        let path = self.blob(digest);
        if path.exists() {
            return Ok(());
        }
        fs::hard_link(source, &path)
            .or_else(|_| fs::copy(source, &path).map(drop))
            .map_err(io_err(&path, "linking"))
    }

    fn write_index(&self, entry: Descriptor) -> Result<(), RegistryError> {
        let mut index = Index::new(vec![entry]);
        index.media_type = Some(OCI_INDEX.to_string());
        let path = self.dir.join("index.json");
        let bytes =
            serde_json::to_vec(&index).map_err(|e| RegistryError::Protocol(e.to_string()))?;
        fs::write(&path, bytes).map_err(io_err(&path, "writing"))
    }
}

impl Drop for Layout {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

impl ImageStore {
    /// Remember that `reference` (`name@sha256:<manifest>`) names image `id`,
    /// so that a pull by digest can be run by that digest (docker keeps such
    /// references as the image's RepoDigests). Stored as a key of
    /// repositories.json, which `resolve` and `rmi` already understand.
    pub fn add_digest_reference(
        &self,
        reference: &Reference,
        id: &Digest,
    ) -> Result<(), crate::image::ImageError> {
        let _index = self.index_lock()?;
        let mut repositories = self.read_repositories()?;
        let key = format!(
            "{}@{}",
            reference.repository(),
            reference
                .digest
                .as_ref()
                .map(Digest::as_str)
                .unwrap_or_default()
        );
        repositories.insert(key, id.clone());
        self.write_repositories(&repositories)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::manifest::Platform;

    fn entry(os: &str, arch: &str, variant: Option<&str>) -> Descriptor {
        let mut d = Descriptor::new(
            OCI_MANIFEST,
            Digest::of(format!("{os}{arch}{variant:?}").as_bytes()),
            1,
        );
        d.platform = Some(Platform {
            architecture: arch.into(),
            os: os.into(),
            variant: variant.map(str::to_string),
            os_version: None,
        });
        d
    }

    #[test]
    fn platform_choice() {
        let entries = vec![
            entry("linux", "arm", Some("v6")),
            entry("linux", "arm", Some("v7")),
            entry("linux", host_architecture(), None),
            entry("unknown", "unknown", None),
        ];
        assert_eq!(
            choose(&entries, None)
                .unwrap()
                .platform
                .as_ref()
                .unwrap()
                .architecture,
            host_architecture()
        );
        let v7 = choose(&entries, Some("linux/arm/v7")).unwrap();
        assert_eq!(v7.platform.as_ref().unwrap().variant.as_deref(), Some("v7"));
        let err = choose(&entries, Some("linux/s390x")).unwrap_err();
        assert!(
            err.contains("linux/arm/v6") && !err.contains("unknown"),
            "{err}"
        );
        assert!(choose(&entries, Some("linux"))
            .unwrap_err()
            .contains("invalid platform"));
    }
}
