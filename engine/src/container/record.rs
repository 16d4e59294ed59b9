//! The container record: everything berth knows about one container, kept in
//! `<root>/containers/<id>/container.json` and replaced atomically on every
//! change (see [`crate::fsutil::atomic_write_json`]).
//!
//! The record has three parts, as docker's inspect output does: what to run
//! (`config`), how the host runs it (`host`), and what happened (`state`).

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// A container's lifecycle status, with docker's names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Made but never started (or its start failed before the process ran).
    Created,
    Running,
    Paused,
    /// Exited and waiting for the restart policy to start it again.
    Restarting,
    Exited,
    /// Could not be cleaned up; shown so the user can `rm -f` it.
    Dead,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Restarting => "restarting",
            Status::Exited => "exited",
            Status::Dead => "dead",
        }
    }

    /// Whether a process of the container may be alive (a monitor owns it).
    pub fn is_active(self) -> bool {
        matches!(self, Status::Running | Status::Paused | Status::Restarting)
    }
}

/// What to run: the merge of the image config and the `run` flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// The executable and its arguments (entrypoint + cmd, joined as docker does).
    pub path: String,
    pub args: Vec<String>,
    /// The image's ENTRYPOINT and CMD after `--entrypoint` and the command
    /// line were applied, kept separately for `inspect`.
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub env: Vec<String>,
    pub working_dir: String,
    /// The user as given (`name`, `uid`, `name:group`, `uid:gid`), resolved
    /// against the image's /etc/passwd at start.
    pub user: String,
    pub hostname: String,
    pub labels: BTreeMap<String, String>,
    /// Signal name for `stop` (`SIGTERM` unless the image or `--stop-signal` say otherwise).
    pub stop_signal: String,
    /// Seconds `stop` waits before SIGKILL (None: the default, 10).
    pub stop_timeout: Option<u32>,
    pub tty: bool,
    pub open_stdin: bool,
    pub attach_stdin: bool,
    pub attach_stdout: bool,
    pub attach_stderr: bool,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// The healthcheck (image HEALTHCHECK merged with compose's); None: none.
    #[serde(default)]
    pub healthcheck: Option<super::health::Healthcheck>,
}

/// The restart policy (`--restart`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(tag = "name", rename_all = "kebab-case")]
pub enum RestartPolicy {
    #[default]
    No,
    /// Restart when the exit code is not 0, at most `max_retries` times (0: no limit).
    OnFailure {
        max_retries: u32,
    },
    Always,
    UnlessStopped,
}

impl RestartPolicy {
    /// Parse docker's syntax: `no`, `on-failure[:N]`, `always`, `unless-stopped`.
    pub fn parse(text: &str) -> Result<RestartPolicy, String> {
        let (name, count) = match text.split_once(':') {
            Some((name, count)) => (name, Some(count)),
            None => (text, None),
        };
        let policy = match (name, count) {
            ("no" | "", None) => RestartPolicy::No,
            ("always", None) => RestartPolicy::Always,
            ("unless-stopped", None) => RestartPolicy::UnlessStopped,
            ("on-failure", None) => RestartPolicy::OnFailure { max_retries: 0 },
            ("on-failure", Some(n)) => RestartPolicy::OnFailure {
                max_retries: n.parse().map_err(|_| {
                    format!(
                        "invalid restart policy {text:?}: the retry count must be a whole number"
                    )
                })?,
            },
            (_, Some(_)) => {
                return Err(format!(
                    "invalid restart policy {text:?}: only on-failure takes a retry count"
                ))
            }
            _ => {
                return Err(format!(
                "invalid restart policy {text:?}: use no, on-failure[:N], always or unless-stopped"
            ))
            }
        };
        Ok(policy)
    }

    pub fn name(self) -> &'static str {
        match self {
            RestartPolicy::No => "no",
            RestartPolicy::OnFailure { .. } => "on-failure",
            RestartPolicy::Always => "always",
            RestartPolicy::UnlessStopped => "unless-stopped",
        }
    }

    /// Should a container that exited with `exit_code` be started again?
    /// `restarts` is how many times it was restarted already, and
    /// `stopped_by_user` whether `stop`/`kill` ended it (docker never restarts those).
    pub fn should_restart(self, exit_code: i32, restarts: u32, stopped_by_user: bool) -> bool {
        if stopped_by_user {
            return false;
        }
        match self {
            RestartPolicy::No => false,
            RestartPolicy::Always | RestartPolicy::UnlessStopped => true,
            RestartPolicy::OnFailure { max_retries } => {
                exit_code != 0 && (max_retries == 0 || restarts < max_retries)
            }
        }
    }
}

/// How the host runs the container: limits and policies from the `run` flags.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct HostConfig {
    /// `-m`: memory limit in bytes (0: none).
    pub memory: i64,
    /// `--memory-swap`: memory + swap in bytes (-1: unlimited, 0: unset).
    pub memory_swap: i64,
    /// `--cpus` as nano CPUs (1.5 CPUs = 1_500_000_000).
    pub nano_cpus: i64,
    /// `--cpu-shares` (0: unset).
    pub cpu_shares: u64,
    /// `--pids-limit` (None: unset; -1 unlimited).
    pub pids_limit: Option<i64>,
    pub read_only_rootfs: bool,
    /// `--init`: run berth-init as PID 1.
    pub init: bool,
    pub restart_policy: RestartPolicy,
    /// `--rm`: remove the container when it exits.
    pub auto_remove: bool,
    /// `--network` mode (`none`, `host`, `bridge`, `container:NAME`, a user network).
    pub network_mode: String,
    /// `-v`, `--mount`, `--tmpfs`, `--volumes-from` and the image's VOLUMEs,
    /// with every volume named (anonymous ones get a random name at create).
    #[serde(default)]
    pub mounts: Vec<crate::volume::MountSpec>,
    /// `-p` (and `-P`, expanded at create from the image's EXPOSE).
    #[serde(default)]
    pub port_bindings: Vec<crate::network::PortSpec>,
    /// `-P` as given (shown by inspect).
    #[serde(default)]
    pub publish_all: bool,
    /// `--network-alias`: more names on a user network.
    #[serde(default)]
    pub network_aliases: Vec<String>,
    /// `--privileged`, `--cap-add/--cap-drop`, `--security-opt`, `--device`
    /// (see crate::security).
    #[serde(default)]
    pub security: crate::security::SecurityConfig,
}

/// What happened to the container.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct State {
    pub status: Status,
    /// Host pid of the container's PID 1 while it runs.
    pub pid: Option<i32>,
    /// Its start time (field 22 of /proc/PID/stat), to tell a reused pid apart.
    pub pid_start_time: Option<u64>,
    /// Host pid of the monitor while it lives.
    pub monitor_pid: Option<i32>,
    pub exit_code: i32,
    pub oom_killed: bool,
    /// Why the last start failed, as shown by `inspect` (State.Error).
    pub error: String,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub restart_count: u32,
    /// Set by `stop`/`kill`: the restart policy must not bring it back.
    pub stopped_by_user: bool,
    /// The address, ports and namespace while it runs (docker's
    /// NetworkSettings); empty when it is not running.
    #[serde(default)]
    pub network: crate::network::NetworkSettings,
    /// docker's State.Health, while a healthcheck is configured.
    #[serde(default)]
    pub health: Option<super::health::Health>,
}

impl Default for State {
    fn default() -> Self {
        State {
            status: Status::Created,
            pid: None,
            pid_start_time: None,
            monitor_pid: None,
            exit_code: 0,
            oom_killed: false,
            error: String::new(),
            started_at: None,
            finished_at: None,
            restart_count: 0,
            stopped_by_user: false,
            network: Default::default(),
            health: None,
        }
    }
}

/// One container, as stored in `container.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ContainerRecord {
    /// 64 hex characters.
    pub id: String,
    /// Unique name, without docker's leading `/`.
    pub name: String,
    pub created: DateTime<Utc>,
    /// The image as the user named it (shown in `ps`).
    pub image: String,
    /// The image's id, `sha256:<hex>` (the store refuses `rmi` while used).
    pub image_id: String,
    pub config: RunConfig,
    pub host: HostConfig,
    pub state: State,
}

impl ContainerRecord {
    /// The 12-character id shown in tables.
    pub fn short_id(&self) -> &str {
        &self.id[..12.min(self.id.len())]
    }

    /// The command as `ps` shows it: path and args joined by spaces.
    pub fn command_line(&self) -> String {
        std::iter::once(self.config.path.as_str())
            .chain(self.config.args.iter().map(String::as_str))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restart_policies_parse_as_docker_spells_them() {
        assert_eq!(RestartPolicy::parse("no").unwrap(), RestartPolicy::No);
        assert_eq!(
            RestartPolicy::parse("on-failure:3").unwrap(),
            RestartPolicy::OnFailure { max_retries: 3 }
        );
        assert_eq!(
            RestartPolicy::parse("always").unwrap(),
            RestartPolicy::Always
        );
        assert!(RestartPolicy::parse("sometimes").is_err());
        assert!(RestartPolicy::parse("always:2").is_err());
        assert!(RestartPolicy::parse("on-failure:x").is_err());
    }

    #[test]
    fn on_failure_counts_retries_and_ignores_success() {
        let policy = RestartPolicy::OnFailure { max_retries: 2 };
        assert!(policy.should_restart(1, 0, false));
        assert!(policy.should_restart(1, 1, false));
        assert!(!policy.should_restart(1, 2, false), "retries exhausted");
        assert!(
            !policy.should_restart(0, 0, false),
            "success is not a failure"
        );
        assert!(
            !RestartPolicy::Always.should_restart(1, 0, true),
            "stopped by user"
        );
    }
}
