//! `berth push`: an image of the store to a registry.
//!
//! Mechanism, per blob (each layer, then the config):
//! 1. `HEAD /v2/<name>/blobs/<digest>`: 200 means the registry has it in
//!    this repository already ("Layer already exists");
//! 2. otherwise, when the image is also tagged in another repository of the
//!    same registry, a cross-repository mount:
//!    `POST /v2/<name>/blobs/uploads/?mount=<digest>&from=<other>`. 201 means
//!    mounted without sending a byte; 202 means "not possible, here is an
//!    upload session instead";
//! 3. a monolithic upload: `POST /v2/<name>/blobs/uploads/` opens a session
//!    (202 + `Location`), `PUT <Location>&digest=<digest>` sends the blob
//!    file with its `Content-Length`; the registry verifies the digest.
//!
//! Finally `PUT /v2/<name>/manifests/<tag>` with the manifest's exact bytes
//! (so its digest — what `pull NAME@sha256:…` uses — is the one the store
//! has) and its media type.

use std::io::Write;

use super::client::{header, Client, Payload};
use super::{CredentialStore, RegistryError};
use crate::image::manifest::{Manifest, OCI_MANIFEST};
use crate::image::{Digest, ImageError, ImageStore, Reference};
use crate::paths::Roots;

/// `--insecure`.
#[derive(Debug, Clone, Default)]
pub struct PushOptions {
    pub insecure: bool,
}

/// What a push did.
#[derive(Debug, Clone)]
pub struct PushResult {
    /// The manifest digest in the registry.
    pub digest: Digest,
    pub size: u64,
}

/// Push `reference` (a tag in the store) to its registry.
pub fn push(
    roots: &Roots,
    reference: &str,
    options: &PushOptions,
    credentials: &CredentialStore,
    out: &mut dyn Write,
) -> Result<PushResult, RegistryError> {
    let reference = Reference::parse(reference)
        .map_err(|e| RegistryError::Invalid(e.to_string()))?
        .with_default_tag();
    if reference.digest.is_some() {
        return Err(RegistryError::Invalid(format!(
            "cannot push a digest reference ({}): push a tag",
            reference.familiar()
        )));
    }
    let tag = reference.tag.clone().unwrap_or_else(|| "latest".into());
    let store = ImageStore::open(roots)?;
    let _hold = store.hold()?;
    let image = store.resolve(&reference.full()).map_err(|e| match e {
        ImageError::NotFound(_) => RegistryError::NotFound(format!(
            "An image does not exist locally with the tag: {}",
            reference.familiar_repository()
        )),
        other => other.into(),
    })?;
    let manifest_bytes =
        std::fs::read(store.blob_path(&image.manifest_digest)).map_err(|e| RegistryError::Io {
            context: format!("reading manifest {}", image.manifest_digest),
            error: e,
        })?;
    let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
        .map_err(|e| RegistryError::Protocol(format!("manifest {}: {e}", image.manifest_digest)))?;
    let media_type = manifest
        .media_type
        .clone()
        .unwrap_or_else(|| OCI_MANIFEST.to_string());

    // Other repositories of the same registry holding this image: blobs can
    // be mounted from them.
    let mut mount_from: Vec<String> = Vec::new();
    for name in image.repo_tags.iter().chain(&image.repo_digests) {
        if let Ok(other) = Reference::parse(name) {
            if other.domain == reference.domain
                && other.path != reference.path
                && !mount_from.contains(&other.path)
            {
                mount_from.push(other.path);
            }
        }
    }
    let mut scope = format!("repository:{}:pull,push", reference.path);
    for from in &mount_from {
        scope.push_str(&format!(" repository:{from}:pull"));
    }
    let client = Client::connect(&reference.domain, &scope, options.insecure, credentials)?;
    let _ = writeln!(
        out,
        "The push refers to repository [{}]",
        reference.repository()
    );

    let blobs = manifest
        .layers
        .iter()
        .chain(std::iter::once(&manifest.config));
    for blob in blobs {
        let path = store.blob_path(&blob.digest);
        if !path.exists() {
            return Err(RegistryError::Image(ImageError::MissingBlob {
                what: format!("image {}", image.id.short()),
                blob: blob.digest.to_string(),
                input: "the image store".into(),
            }));
        }
        let status = push_blob(&client, &reference.path, &blob.digest, &path, &mount_from)?;
        if blob.digest != manifest.config.digest {
            let _ = writeln!(out, "{}: {status}", blob.digest.short());
        }
    }
    let url = format!("/v2/{}/manifests/{tag}", reference.path);
    let response = client.request(
        "PUT",
        &url,
        &[("Content-Type", media_type)],
        &Payload::Bytes(&manifest_bytes),
    )?;
    if !response.status().is_success() {
        return Err(client.error_from(
            &format!("pushing the manifest of {}", reference.familiar()),
            response,
        ));
    }
    let digest = Digest::of(&manifest_bytes);
    if let Ok(announced) = Digest::parse(&header(&response, "docker-content-digest")) {
        if announced != digest {
            return Err(RegistryError::DigestMismatch {
                what: format!("manifest pushed to {}", reference.familiar()),
                expected: digest,
                actual: announced,
            });
        }
    }
    let size = manifest_bytes.len() as u64;
    let _ = writeln!(out, "{tag}: digest: {digest} size: {size}");
    Ok(PushResult { digest, size })
}

/// Make sure the registry has one blob; returns docker's status word.
fn push_blob(
    client: &Client,
    repo: &str,
    digest: &Digest,
    file: &std::path::Path,
    mount_from: &[String],
) -> Result<String, RegistryError> {
    let head = client.request(
        "HEAD",
        &format!("/v2/{repo}/blobs/{digest}"),
        &[],
        &Payload::Empty,
    )?;
    if head.status().is_success() {
        return Ok("Layer already exists".into());
    }
    let mut session: Option<String> = None;
    for from in mount_from {
        let url = format!("/v2/{repo}/blobs/uploads/?mount={digest}&from={from}");
        let response = client.request(
            "POST",
            &url,
            &[("Content-Length", "0".into())],
            &Payload::Empty,
        )?;
        match response.status().as_u16() {
            201 => return Ok(format!("Mounted from {from}")),
            202 => {
                session = Some(header(&response, "location"));
                break;
            }
            _ => tracing::debug!(
                from,
                status = response.status().as_u16(),
                "cross-repository mount refused"
            ),
        }
    }
    let location = match session.filter(|l| !l.is_empty()) {
        Some(location) => location,
        None => {
            let response = client.request(
                "POST",
                &format!("/v2/{repo}/blobs/uploads/"),
                &[("Content-Length", "0".into())],
                &Payload::Empty,
            )?;
            if response.status().as_u16() != 202 {
                return Err(
                    client.error_from(&format!("starting the upload of {digest}"), response)
                );
            }
            header(&response, "location")
        }
    };
    if location.is_empty() {
        return Err(RegistryError::Protocol(format!(
            "upload of {digest}: the registry gave no Location"
        )));
    }
    let separator = if location.contains('?') { '&' } else { '?' };
    let url = format!("{location}{separator}digest={digest}");
    let size = std::fs::metadata(file)
        .map_err(|e| RegistryError::Io {
            context: format!("reading {}", file.display()),
            error: e,
        })?
        .len();
    let response = client.request(
        "PUT",
        &url,
        &[
            ("Content-Type", "application/octet-stream".into()),
            ("Content-Length", size.to_string()),
        ],
        &Payload::File(file),
    )?;
    if response.status().as_u16() != 201 {
        return Err(client.error_from(&format!("uploading blob {digest}"), response));
    }
    tracing::info!(blob = %digest, size, "blob pushed");
    Ok("Pushed".into())
}
