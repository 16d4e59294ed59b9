//! Manifests, indexes and descriptors: how an image's blobs are listed.
//!
//! Mechanism: serde over the OCI image-spec JSON (and docker's schema2, which
//! has the same shape with other media types). An *index* (or docker manifest
//! list) lists one manifest per platform; a *manifest* names the config blob
//! and the layer blobs, each by a *descriptor* (media type, digest, size).
//! Which media types berth accepts is decided here, in one place.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::digest::Digest;

pub const OCI_LAYOUT_VERSION: &str = "1.0.0";

pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const OCI_LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const OCI_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const OCI_LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_CONFIG: &str = "application/vnd.docker.container.image.v1+json";

/// The annotation holding a tag (or a full name) in an OCI layout's index.
pub const ANNOTATION_REF_NAME: &str = "org.opencontainers.image.ref.name";
/// The annotation containerd and Docker 25+ use for the full image name.
pub const ANNOTATION_IMAGE_NAME: &str = "io.containerd.image.name";

/// A pointer to a blob: what it is, its digest and its size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: Some(media_type.to_string()),
            digest,
            size,
            annotations: None,
            platform: None,
            urls: None,
        }
    }

    pub fn media_type(&self) -> &str {
        self.media_type.as_deref().unwrap_or("")
    }

    pub fn annotation(&self, key: &str) -> Option<&str> {
        self.annotations.as_ref()?.get(key).map(String::as_str)
    }
}

/// The platform an index entry was built for.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    #[serde(
        rename = "os.version",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub os_version: Option<String>,
}

/// An image manifest (OCI or docker schema2).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (OCI) or manifest list (docker), also an OCI layout's
/// `index.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Index {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

impl Index {
    pub fn new(manifests: Vec<Descriptor>) -> Index {
        Index {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests,
            annotations: None,
        }
    }
}

/// What a manifest-ish blob is, from its media type or, when that is
/// missing (it is optional in OCI layouts), from its content.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ManifestKind {
    Manifest,
    Index,
}

/// Classify a blob reached through an index entry.
pub fn manifest_kind(media_type: Option<&str>, bytes: &[u8]) -> Result<ManifestKind, String> {
    let declared = media_type.filter(|m| !m.is_empty()).map(str::to_string);
    let sniffed = || -> Option<String> {
        let value: serde_json::Value = serde_json::from_slice(bytes).ok()?;
        if let Some(m) = value.get("mediaType").and_then(|m| m.as_str()) {
            return Some(m.to_string());
        }
        if value.get("manifests").is_some() {
            return Some(OCI_INDEX.to_string());
        }
        if value.get("layers").is_some() {
            return Some(OCI_MANIFEST.to_string());
        }
        None
    };
    match declared.or_else(sniffed).as_deref() {
        Some(OCI_MANIFEST | DOCKER_MANIFEST) => Ok(ManifestKind::Manifest),
        Some(OCI_INDEX | DOCKER_MANIFEST_LIST) => Ok(ManifestKind::Index),
        Some("application/vnd.docker.distribution.manifest.v1+json")
        | Some("application/vnd.docker.distribution.manifest.v1+prettyjws") => Err(
            "docker schema1 manifests are obsolete and unsupported: re-save the image with a current tool"
                .to_string(),
        ),
        Some(other) => Err(format!("unsupported manifest media type {other:?}")),
        None => Err("cannot tell what this blob is (no mediaType, no layers or manifests)".to_string()),
    }
}

/// Accept only configs of container images (not e.g. Helm charts or other
/// OCI artifacts, which share the manifest format).
pub fn check_config_media_type(media_type: &str) -> Result<(), String> {
    match media_type {
        OCI_CONFIG | DOCKER_CONFIG | "" => Ok(()),
        other => Err(format!(
            "config media type {other:?} is not a container image (an OCI artifact?)"
        )),
    }
}

/// Accept the layer media types of OCI and docker; compression itself is
/// detected from the bytes (some tools mislabel it), so only encrypted or
/// otherwise foreign encodings are refused here.
pub fn check_layer_media_type(media_type: &str) -> Result<(), String> {
    const ACCEPTED: &[&str] = &[
        OCI_LAYER_TAR,
        OCI_LAYER_GZIP,
        OCI_LAYER_ZSTD,
        "application/vnd.oci.image.layer.nondistributable.v1.tar",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip",
        "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar.zstd",
        "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip",
        "",
    ];
    if ACCEPTED.contains(&media_type) {
        Ok(())
    } else {
        Err(format!("unsupported layer media type {media_type:?}"))
    }
}

/// The OCI name of the host CPU architecture (`amd64`, `arm64`, ...).
pub fn host_architecture() -> &'static str {
    match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "arm" => "arm",
        "powerpc64" => "ppc64le",
        "s390x" => "s390x",
        "riscv64" => "riscv64",
        other => other,
    }
}

/// Pick the entry of a multi-platform index that runs here: `linux` and the
/// host architecture. Attestations (`unknown/unknown`) never match.
pub fn choose_platform(entries: &[Descriptor]) -> Result<&Descriptor, String> {
    let arch = host_architecture();
    if let [only] = entries {
        if only.platform.is_none() {
            return Ok(only);
        }
    }
    entries
        .iter()
        .find(|d| {
            d.platform
                .as_ref()
                .is_some_and(|p| p.os == "linux" && p.architecture == arch)
        })
        .ok_or_else(|| {
            let available: Vec<String> = entries
                .iter()
                .filter_map(|d| d.platform.as_ref())
                .map(|p| format!("{}/{}", p.os, p.architecture))
                .collect();
            format!(
                "no image for linux/{arch} in the index (it has: {})",
                if available.is_empty() {
                    "no platforms".to_string()
                } else {
                    available.join(", ")
                }
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(os: &str, arch: &str) -> Descriptor {
        let mut d = Descriptor::new(OCI_MANIFEST, Digest::of(arch.as_bytes()), 1);
        d.platform = Some(Platform {
            architecture: arch.to_string(),
            os: os.to_string(),
            variant: None,
            os_version: None,
        });
        d
    }

    #[test]
    fn chooses_the_host_platform_and_skips_attestations() {
        let entries = vec![
            entry("unknown", "unknown"),
            entry("linux", "s390x"),
            entry("linux", host_architecture()),
        ];
        let chosen = choose_platform(&entries).unwrap();
        assert_eq!(
            chosen.platform.as_ref().unwrap().architecture,
            host_architecture()
        );
        let err = choose_platform(&entries[..2]).unwrap_err();
        assert!(err.contains("linux/s390x"), "{err}");
    }

    #[test]
    fn kind_is_sniffed_when_the_media_type_is_missing() {
        assert_eq!(
            manifest_kind(None, br#"{"schemaVersion":2,"manifests":[]}"#).unwrap(),
            ManifestKind::Index
        );
        assert_eq!(
            manifest_kind(None, br#"{"schemaVersion":2,"layers":[]}"#).unwrap(),
            ManifestKind::Manifest
        );
        assert!(manifest_kind(Some("application/x-foo"), b"{}").is_err());
    }

    #[test]
    fn encrypted_layers_are_refused() {
        assert!(check_layer_media_type(OCI_LAYER_ZSTD).is_ok());
        assert!(
            check_layer_media_type("application/vnd.oci.image.layer.v1.tar+gzip+encrypted")
                .is_err()
        );
    }
}
