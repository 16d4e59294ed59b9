//! From a compose service to what `berth create` would have been given:
//! the [`CreateRequest`] of its container, with docker compose's labels.
//!
//! No kernel mechanism here: names and paths are resolved (relative bind
//! sources against the project directory, volume keys to their real names,
//! the service name as a network alias so others reach it by name), and the
//! rest maps one to one onto `run`'s flags.

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use sha2::{Digest as _, Sha256};

use super::model::{Service, ServiceVolume, VolumeKind};
use super::project::{self, Project};
use super::{dotenv, ComposeError};
use crate::container::lifecycle::CreateRequest;
use crate::container::spec::{ImageDefaults, RunRequest};
use crate::container::{HostConfig, RestartPolicy};
use crate::network::NetworkMode;
use crate::volume::{spec, MountKind, MountSpec};

/// The image a service's container is created from.
#[derive(Debug, Clone)]
pub struct ServiceImage {
    /// As the service names it (shown by `ps`).
    pub reference: String,
    pub id: String,
    pub defaults: ImageDefaults,
}

/// A fingerprint of what the container would be: `up` recreates a
/// container whose label differs (docker compose's config-hash).
pub fn config_hash(service: &Service, image: &ServiceImage) -> String {
    let mut hasher = Sha256::new();
    hasher.update(serde_json::to_vec(service).unwrap_or_default());
    hasher.update(image.id.as_bytes());
    hex::encode(hasher.finalize())
}

/// The create request of container number `number` of `service`.
pub fn create_request(
    project: &Project,
    service: &Service,
    number: u32,
    image: &ServiceImage,
) -> Result<CreateRequest, ComposeError> {
    let invalid = |e: String| ComposeError::Invalid(format!("service {:?}: {e}", service.name));
    let mut labels = service.labels.clone();
    labels.extend(compose_labels(project, service, number, image));
    let (entrypoint, mut command) = match &service.entrypoint {
        // docker's --entrypoint takes one word; the others lead the command.
        Some(words) => match words.split_first() {
            Some((first, rest)) => (Some(first.clone()), rest.to_vec()),
            None => (Some(String::new()), Vec::new()),
        },
        None => (None, Vec::new()),
    };
    command.extend(service.command.clone().unwrap_or_default());
    let run = RunRequest {
        entrypoint,
        command,
        env: environment(project, service)?,
        working_dir: service.working_dir.clone(),
        user: service.user.clone(),
        hostname: service.hostname.clone(),
        labels,
        stop_signal: service.stop_signal.clone(),
        stop_timeout: service.stop_grace_period,
        tty: service.tty,
        open_stdin: service.stdin_open,
        healthcheck: service.healthcheck.clone(),
    };
    let (network_mode, network_aliases) = match project.service_network(service) {
        Some((key, aliases)) => {
            let mut names = vec![service.name.clone()];
            names.extend(aliases);
            (project.network_name(&key), names)
        }
        None => {
            let mode = service.network_mode.as_deref().unwrap_or("bridge");
            (
                NetworkMode::parse(mode)
                    .map_err(|e| invalid(e.to_string()))?
                    .as_string(),
                Vec::new(),
            )
        }
    };
    let mut port_bindings = Vec::new();
    for text in &service.ports {
        port_bindings.extend(crate::network::ports::parse_publish(text).map_err(invalid)?);
    }
    let restart_policy = match &service.restart {
        Some(text) => RestartPolicy::parse(text).map_err(invalid)?,
        None => RestartPolicy::No,
    };
    let host = HostConfig {
        restart_policy,
        network_mode,
        network_aliases,
        mounts: mounts(project, service).map_err(invalid)?,
        port_bindings,
        init: service.init,
        read_only_rootfs: service.read_only,
        pids_limit: service.pids_limit,
        nano_cpus: service.nano_cpus.unwrap_or(0),
        ..HostConfig::default()
    };
    Ok(CreateRequest {
        image: image.reference.clone(),
        image_id: image.id.clone(),
        image_defaults: image.defaults.clone(),
        run,
        host,
        name: Some(project.container_name(service, number)),
        volumes_from: Vec::new(),
    })
}

fn compose_labels(
    project: &Project,
    service: &Service,
    number: u32,
    image: &ServiceImage,
) -> BTreeMap<String, String> {
    BTreeMap::from([
        (project::LABEL_PROJECT.to_string(), project.name.clone()),
        (project::LABEL_SERVICE.to_string(), service.name.clone()),
        (project::LABEL_NUMBER.to_string(), number.to_string()),
        (project::LABEL_ONEOFF.to_string(), "False".to_string()),
        (
            project::LABEL_CONFIG_HASH.to_string(),
            config_hash(service, image),
        ),
        (
            project::LABEL_WORKING_DIR.to_string(),
            project.dir.display().to_string(),
        ),
        (
            project::LABEL_CONFIG_FILES.to_string(),
            project
                .files
                .iter()
                .map(|f| f.display().to_string())
                .collect::<Vec<_>>()
                .join(","),
        ),
    ])
}

/// `env_file:` entries, then `environment:` (a later key wins); a key
/// without a value takes the variable's value from the environment or `.env`.
fn environment(project: &Project, service: &Service) -> Result<Vec<String>, ComposeError> {
    let lookup = |name: &str| project.lookup(name);
    let mut env = Vec::new();
    for file in &service.env_file {
        let path = resolve_host_path(&project.dir, &file.path);
        if !file.required && !path.exists() {
            continue;
        }
        let pairs = dotenv::read(&path, &lookup).map_err(|e| {
            ComposeError::Invalid(format!("service {:?}: env_file: {e}", service.name))
        })?;
        env.extend(pairs.into_iter().map(|(k, v)| format!("{k}={v}")));
    }
    for (key, value) in &service.environment {
        match value.clone().or_else(|| project.lookup(key)) {
            Some(value) => env.push(format!("{key}={value}")),
            None => continue,
        }
    }
    Ok(env)
}

/// `volumes:` and `tmpfs:` as the engine's mounts.
fn mounts(project: &Project, service: &Service) -> Result<Vec<MountSpec>, String> {
    let mut mounts = Vec::new();
    for volume in &service.volumes {
        mounts.push(mount(project, volume)?);
    }
    for text in &service.tmpfs {
        mounts.push(spec::parse_tmpfs_flag(text)?);
    }
    spec::check_duplicates(&mounts)?;
    Ok(mounts)
}

fn mount(project: &Project, volume: &ServiceVolume) -> Result<MountSpec, String> {
    let target = spec::clean_target(&volume.target)?;
    let mut mount = MountSpec {
        kind: MountKind::Volume,
        source: String::new(),
        target,
        read_only: volume.read_only,
        propagation: None,
        options: Vec::new(),
        no_copy: volume.nocopy,
        anonymous: false,
        create_source: false,
    };
    match volume.kind {
        VolumeKind::Bind => {
            let source = volume.source.as_deref().unwrap_or_default();
            mount.kind = MountKind::Bind;
            mount.source = resolve_host_path(&project.dir, source)
                .display()
                .to_string();
            mount.create_source = volume.create_host_path;
        }
        VolumeKind::Volume => match &volume.source {
            Some(key) => mount.source = project.volume_name(key),
            None => mount.anonymous = true,
        },
        VolumeKind::Tmpfs => {
            mount.kind = MountKind::Tmpfs;
            mount.options = volume.tmpfs_options.clone();
        }
    }
    Ok(mount)
}

/// A host path from the file: `~/x` in HOME, relative ones in the project
/// directory; `.` and `..` resolved lexically.
pub fn resolve_host_path(dir: &Path, text: &str) -> PathBuf {
    let joined = if let Some(rest) = text.strip_prefix("~/") {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into())).join(rest)
    } else if text == "~" {
        PathBuf::from(std::env::var("HOME").unwrap_or_else(|_| "/root".into()))
    } else {
        dir.join(text)
    };
    let mut clean = PathBuf::from("/");
    for component in joined.components() {
        match component {
            Component::Normal(name) => clean.push(name),
            Component::ParentDir => {
                clean.pop();
            }
            _ => {}
        }
    }
    clean
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::compose::project::{load, LoadOptions};

    #[test]
    fn a_service_becomes_a_create_request() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("shop");
        std::fs::create_dir(&dir).unwrap();
        std::fs::write(dir.join("web.env"), "FROM_FILE=1\nBOTH=file\n").unwrap();
        std::fs::write(
            dir.join("compose.yaml"),
            "services:\n  web:\n    image: busybox\n    entrypoint: [sh, -c]\n    command: [\"echo hi\"]\n    env_file: web.env\n    environment: {BOTH: env}\n    volumes: [data:/data:ro, ./site:/www, /anon]\n    ports: [\"8080:80\"]\n    restart: on-failure:3\n    stop_signal: SIGINT\n    stop_grace_period: 3s\n    networks: {back: {aliases: [shop]}}\nvolumes: {data: {}}\nnetworks: {back: {}}\n",
        )
        .unwrap();
        let project = load(&LoadOptions {
            working_dir: dir.clone(),
            ..Default::default()
        })
        .unwrap();
        let image = ServiceImage {
            reference: "busybox".into(),
            id: "sha256:x".into(),
            defaults: ImageDefaults::default(),
        };
        let request = create_request(&project, project.service("web").unwrap(), 1, &image).unwrap();
        assert_eq!(request.name.as_deref(), Some("shop-web-1"));
        assert_eq!(request.run.entrypoint.as_deref(), Some("sh"));
        assert_eq!(request.run.command, vec!["-c", "echo hi"]);
        assert_eq!(
            request.run.env,
            vec!["FROM_FILE=1", "BOTH=file", "BOTH=env"]
        );
        assert_eq!(request.run.labels[project::LABEL_PROJECT], "shop");
        assert_eq!(request.run.labels[project::LABEL_SERVICE], "web");
        assert_eq!(
            (request.run.stop_signal.as_deref(), request.run.stop_timeout),
            (Some("SIGINT"), Some(3))
        );
        assert_eq!(request.host.network_mode, "shop_back");
        assert_eq!(request.host.network_aliases, vec!["web", "shop"]);
        assert_eq!(
            request.host.restart_policy,
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        let m = &request.host.mounts;
        assert_eq!(
            (m[0].kind, m[0].source.as_str(), m[0].read_only),
            (MountKind::Volume, "shop_data", true)
        );
        assert_eq!(
            (m[1].kind, m[1].source.clone()),
            (MountKind::Bind, dir.join("site").display().to_string())
        );
        assert!(m[2].anonymous);
        assert_eq!(request.host.port_bindings.len(), 1);
    }
}
