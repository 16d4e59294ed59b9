//! A container record's network, as its monitor sets it up and tears it
//! down: the glue between the record (`--network`, `-p`, aliases) and
//! [`super::endpoint`].
//!
//! Besides the attachment itself, the monitor writes what it set up to
//! `<state>/containers/<id>/network.json` (atomically) and deletes that file
//! once everything is undone. A file still there when no monitor lives
//! means a monitor died before undoing it: [`cleanup_leftovers`] (called by
//! `reconcile`, `rm` and the next start) removes what the kernel did not.

use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::endpoint::{
    self, AttachRequest, Attachment, JoinTarget, Namespace, NetworkMode, NetworkSettings,
};
use super::etcfiles;
use super::{NetworkError, NetworkOptions};
use crate::container::{procinfo, ContainerRecord, ContainerStore};
use crate::fsutil::atomic_write_json;
use crate::paths::Roots;
use crate::volume::MountSpec;

/// The file that survives a monitor crash.
pub const LEFTOVER_FILE: &str = "network.json";

/// The network of a running container, owned by its monitor.
#[derive(Debug)]
pub struct ContainerNetwork {
    attachment: Attachment,
    leftover: PathBuf,
}

impl ContainerNetwork {
    pub fn settings(&self) -> &NetworkSettings {
        &self.attachment.settings
    }

    /// The namespace path for the runtime (the host's own for `--network host`).
    pub fn netns_path(&self) -> String {
        match self.attachment.namespace() {
            Namespace::Join(path) => path.clone(),
            Namespace::Host => format!("/proc/{}/ns/net", std::process::id()),
        }
    }

    /// The bind mounts of /etc/hosts, /etc/resolv.conf and /etc/hostname,
    /// except where the user mounts something of their own.
    pub fn etc_mounts(&self, user: &[MountSpec]) -> Vec<Value> {
        [
            (etcfiles::HOSTS, "/etc/hosts"),
            (etcfiles::RESOLV_CONF, "/etc/resolv.conf"),
            (etcfiles::HOSTNAME, "/etc/hostname"),
        ]
        .into_iter()
        .filter(|(_, target)| !user.iter().any(|m| m.target == *target))
        .map(|(file, target)| {
            json!({
                "destination": target,
                "type": "bind",
                "source": self.attachment.etc_dir.join(file),
                "options": ["rbind", "rprivate"],
            })
        })
        .collect()
    }

    /// Give back at once what others can see (ports, address, peers'
    /// hosts entries); the veth and namespace follow in [`ContainerNetwork::disconnect`].
    pub fn release(&mut self) {
        self.attachment.release();
    }

    /// Undo everything, then forget the leftover file.
    pub fn disconnect(mut self) {
        self.attachment.release();
        self.attachment.finish();
        let _ = fs::remove_file(&self.leftover);
    }
}

/// Set up `record`'s network. `state_dir` is the container's per-boot
/// directory, `container_dir` where its /etc files are written.
pub fn connect(
    roots: &Roots,
    record: &ContainerRecord,
    state_dir: &Path,
    container_dir: &Path,
) -> Result<ContainerNetwork, NetworkError> {
    let options = NetworkOptions::from_env()?;
    cleanup_leftovers(roots, &options, &record.id, state_dir);
    let mode = NetworkMode::parse(&record.host.network_mode)?;
    let join = match &mode {
        NetworkMode::Container(target) => Some(join_target(roots, target)?),
        _ => None,
    };
    let ports = match mode {
        NetworkMode::Bridge(_) => record.host.port_bindings.clone(),
        _ => Vec::new(),
    };
    let attachment = endpoint::attach(AttachRequest {
        roots,
        options: &options,
        container_id: &record.id,
        name: &record.name,
        hostname: &record.config.hostname,
        mode,
        aliases: record.host.network_aliases.clone(),
        ports,
        container_dir,
        join,
    })?;
    let leftover = state_dir.join(LEFTOVER_FILE);
    if let Err(source) = atomic_write_json(&leftover, &attachment.settings) {
        attachment.detach();
        return Err(NetworkError::Io {
            path: leftover,
            source,
        });
    }
    Ok(ContainerNetwork {
        attachment,
        leftover,
    })
}

/// Check `--network` at create, as docker does: the network must exist; a
/// container's network cannot be combined with published ports or a
/// hostname of one's own.
pub fn validate_mode(
    roots: &Roots,
    mode_text: &str,
    publishes: bool,
    own_hostname: bool,
) -> Result<(), NetworkError> {
    match NetworkMode::parse(mode_text)? {
        NetworkMode::Bridge(name) => {
            let options = NetworkOptions::from_env()?;
            super::NetworkStore::open(roots, &options)?.find(&name)?;
        }
        NetworkMode::Container(target) => {
            if publishes {
                return Err(NetworkError::Invalid(
                    "conflicting options: port publishing and the container type network mode"
                        .into(),
                ));
            }
            if own_hostname {
                return Err(NetworkError::Invalid(
                    "conflicting options: hostname and the network mode".into(),
                ));
            }
            let store =
                ContainerStore::open(roots).map_err(|e| NetworkError::Invalid(e.to_string()))?;
            store.find(&target).map_err(|e| {
                NetworkError::Invalid(format!(
                    "cannot join the network of container {target}: {e}"
                ))
            })?;
        }
        NetworkMode::None | NetworkMode::Host => {}
    }
    Ok(())
}

/// `--network container:NAME`: the running container's namespace and files.
fn join_target(roots: &Roots, reference: &str) -> Result<JoinTarget, NetworkError> {
    let store = ContainerStore::open(roots).map_err(|e| NetworkError::Invalid(e.to_string()))?;
    let other = store.find(reference).map_err(|e| {
        NetworkError::Invalid(format!(
            "cannot join the network of container {reference}: {e}"
        ))
    })?;
    let running = match (other.state.pid, other.state.pid_start_time) {
        (Some(pid), Some(start)) if procinfo::is_running(pid, start) => Some(pid),
        _ => None,
    };
    let pid = running.ok_or_else(|| {
        NetworkError::Invalid(format!(
            "cannot join the network of container {reference}: it is not running"
        ))
    })?;
    Ok(JoinTarget {
        netns_path: format!("/proc/{pid}/ns/net"),
        etc_dir: store.dir(&other.id),
    })
}

/// If a monitor died before undoing `id`'s network, undo what is left.
pub fn cleanup_leftovers(roots: &Roots, options: &NetworkOptions, id: &str, state_dir: &Path) {
    let path = state_dir.join(LEFTOVER_FILE);
    let Ok(text) = fs::read_to_string(&path) else {
        return;
    };
    match serde_json::from_str::<NetworkSettings>(&text) {
        Ok(settings) => {
            tracing::info!(id, "cleaning up the network a dead monitor left behind");
            endpoint::cleanup_after_crash(roots, options, id, &settings);
        }
        Err(err) => tracing::warn!(%err, path = %path.display(), "unreadable network leftovers"),
    }
    let _ = fs::remove_file(&path);
}

/// [`cleanup_leftovers`] with the settings from the environment (for
/// `reconcile` and `rm`, which know no network options of their own).
pub fn cleanup_leftovers_from_env(roots: &Roots, id: &str, state_dir: &Path) {
    let options = NetworkOptions::from_env().unwrap_or_default();
    cleanup_leftovers(roots, &options, id, state_dir);
}
