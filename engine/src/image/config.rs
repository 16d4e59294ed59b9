//! The image configuration: the JSON blob whose digest is the image id.
//!
//! Mechanism: serde over the OCI image-spec `config` format, which is also
//! the format docker writes (`application/vnd.docker.container.image.v1+json`).
//! Field names inside `config` are docker's PascalCase (`Env`, `Cmd`, ...).
//! Docker-only fields (`Healthcheck`, `OnBuild`, `Shell`, `container_config`,
//! `docker_version`, ...) are kept, not dropped: unknown keys land in the
//! `extra` maps and are written back unchanged, so a config that berth loads
//! and saves keeps its digest (berth never re-serializes a loaded config: the
//! store keeps the original bytes).

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

use super::digest::Digest;

/// The whole image configuration (OCI `application/vnd.oci.image.config.v1+json`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ImageConfig {
    /// RFC 3339 creation time, as written by the builder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, deserialize_with = "null_as_default")]
    pub architecture: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// What a container of this image runs with.
    #[serde(default, deserialize_with = "null_as_default")]
    pub config: ContainerConfig,
    pub rootfs: RootFs,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub history: Vec<History>,
    /// Everything else (`docker_version`, `container_config`, `os.version`, ...).
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The runtime defaults of the image, in docker's field names.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub user: String,
    /// `"80/tcp": {}` entries.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub exposed_ports: BTreeMap<String, Value>,
    /// `KEY=value` entries.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "Vec::is_empty"
    )]
    pub env: Vec<String>,
    /// `None` when the image sets no entrypoint (not the same as `Some([])`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
    /// `"/data": {}` entries.
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub volumes: BTreeMap<String, Value>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub working_dir: String,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "BTreeMap::is_empty"
    )]
    pub labels: BTreeMap<String, String>,
    #[serde(
        default,
        deserialize_with = "null_as_default",
        skip_serializing_if = "String::is_empty"
    )]
    pub stop_signal: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub healthcheck: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_build: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shell: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub args_escaped: Option<bool>,
    /// Docker's other keys (`Hostname`, `Tty`, `Image`, ...), kept as they are.
    #[serde(flatten)]
    pub extra: Map<String, Value>,
}

/// The layers of the image, by the digests of their uncompressed tars.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default, deserialize_with = "null_as_default")]
    pub diff_ids: Vec<Digest>,
}

/// One build step, as `docker history` shows it.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub empty_layer: bool,
}

impl ImageConfig {
    /// Parse a config blob; `what` names it in the error (`config sha256:…`).
    pub fn parse(bytes: &[u8]) -> Result<ImageConfig, String> {
        let config: ImageConfig = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
        if config.rootfs.kind != "layers" {
            return Err(format!(
                "rootfs.type is {:?}, expected \"layers\"",
                config.rootfs.kind
            ));
        }
        Ok(config)
    }

    /// A minimal config for the host platform, for images built from parts.
    pub fn new_for_host() -> ImageConfig {
        ImageConfig {
            architecture: super::manifest::host_architecture().to_string(),
            os: "linux".to_string(),
            rootfs: RootFs {
                kind: "layers".to_string(),
                diff_ids: Vec::new(),
            },
            ..ImageConfig::default()
        }
    }

    /// `created` parsed, when it is a valid RFC 3339 time.
    pub fn created_time(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        let text = self.created.as_deref()?;
        chrono::DateTime::parse_from_rfc3339(text)
            .ok()
            .map(|t| t.with_timezone(&chrono::Utc))
    }
}

/// Accept an explicit JSON `null` where a default value is meant (docker
/// writes `"Env": null`, `"Labels": null`, ...).
fn null_as_default<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: Default + Deserialize<'de>,
{
    Ok(Option::<T>::deserialize(deserializer)?.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docker_config_with_nulls_and_extra_fields_parses() {
        let json = br#"{
            "architecture": "amd64", "os": "linux", "docker_version": "24.0.7",
            "created": "2024-01-02T03:04:05.123456789Z",
            "config": {"Hostname": "", "Env": ["PATH=/bin"], "Cmd": ["sh"], "Entrypoint": null,
                       "Labels": null, "ExposedPorts": {"80/tcp": {}}, "Volumes": null,
                       "Healthcheck": {"Test": ["CMD", "true"]}, "OnBuild": null},
            "rootfs": {"type": "layers", "diff_ids": []},
            "history": [{"created_by": "/bin/sh", "empty_layer": true}]
        }"#;
        let config = ImageConfig::parse(json).unwrap();
        assert_eq!(config.config.env, vec!["PATH=/bin"]);
        assert_eq!(config.config.cmd.as_deref(), Some(&["sh".to_string()][..]));
        assert_eq!(config.config.entrypoint, None);
        assert!(config.config.exposed_ports.contains_key("80/tcp"));
        assert!(config.config.healthcheck.is_some());
        assert_eq!(config.extra["docker_version"], "24.0.7");
        assert!(config.config.extra.contains_key("Hostname"));
        assert!(config.created_time().is_some());
        assert!(config.history[0].empty_layer);
    }

    #[test]
    fn wrong_rootfs_type_is_refused() {
        let json =
            br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"other","diff_ids":[]}}"#;
        assert!(ImageConfig::parse(json)
            .unwrap_err()
            .contains("rootfs.type"));
    }
}
