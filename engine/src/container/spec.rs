//! From image config and `run` flags to an OCI runtime spec (`config.json`).
//!
//! Two steps, as docker takes them:
//! 1. at `create`: merge the image's ENTRYPOINT/CMD/ENV/WORKDIR/USER/STOPSIGNAL
//!    with the flags into a [`RunConfig`] (what `inspect` shows);
//! 2. at `start`: turn the record into the spec the runtime executes, with
//!    docker's defaults: the 14 capabilities, masked and read-only /proc paths,
//!    the standard mounts of /proc, /dev, /sys, the device cgroup rules, and
//!    the resource limits. The template below is written as the JSON a learner
//!    would read in `config.json`.

use std::collections::BTreeMap;
use std::path::Path;

use oci_spec::runtime::Spec;
use serde_json::{json, Value};

use super::record::{ContainerRecord, RunConfig};

/// The PATH docker gives a container whose image sets none.
pub const DEFAULT_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Docker's default capability set (moby `oci/caps/defaults.go`).
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Paths hidden from the container (bound over with /dev/null or an empty tmpfs).
pub const MASKED_PATHS: [&str; 11] = [
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];

/// Paths the container may read but not write.
pub const READONLY_PATHS: [&str; 5] = [
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The image's defaults that `run` starts from (the `config` part of an image config).
#[derive(Debug, Clone, Default)]
pub struct ImageDefaults {
    pub env: Vec<String>,
    pub entrypoint: Vec<String>,
    pub cmd: Vec<String>,
    pub working_dir: String,
    pub user: String,
    pub stop_signal: String,
    pub labels: BTreeMap<String, String>,
    pub exposed_ports: Vec<String>,
    pub volumes: Vec<String>,
    /// HEALTHCHECK.
    pub healthcheck: Option<super::health::Healthcheck>,
}

impl ImageDefaults {
    /// The `config` part of an image's config, as a container starts from it.
    pub fn of(image: &crate::image::Image) -> ImageDefaults {
        let c = &image.config.config;
        ImageDefaults {
            env: c.env.clone(),
            entrypoint: c.entrypoint.clone().unwrap_or_default(),
            cmd: c.cmd.clone().unwrap_or_default(),
            working_dir: c.working_dir.clone(),
            user: c.user.clone(),
            stop_signal: c.stop_signal.clone(),
            labels: c.labels.clone(),
            exposed_ports: c.exposed_ports.keys().cloned().collect(),
            volumes: c.volumes.keys().cloned().collect(),
            healthcheck: c
                .healthcheck
                .as_ref()
                .and_then(super::health::Healthcheck::from_image_config),
        }
    }
}

/// What the `run`/`create` flags ask for, before merging with the image.
#[derive(Debug, Clone, Default)]
pub struct RunRequest {
    /// `--entrypoint`: `Some("")` clears the image's entrypoint.
    pub entrypoint: Option<String>,
    /// The COMMAND and ARGs after the image name.
    pub command: Vec<String>,
    /// `-e` and `--env-file` entries, already expanded to `KEY=VALUE`.
    pub env: Vec<String>,
    pub working_dir: Option<String>,
    pub user: Option<String>,
    pub hostname: Option<String>,
    pub labels: BTreeMap<String, String>,
    pub stop_signal: Option<String>,
    pub stop_timeout: Option<u32>,
    pub tty: bool,
    pub open_stdin: bool,
    /// Overrides of the image's HEALTHCHECK (zero fields inherit it).
    pub healthcheck: Option<super::health::Healthcheck>,
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SpecError {
    #[error("No command specified")]
    NoCommand,
    #[error("invalid environment entry {0:?}: use KEY=VALUE")]
    BadEnv(String),
    #[error("invalid working directory {0:?}: it must be an absolute path")]
    RelativeWorkdir(String),
}

/// Merge the image defaults with the flags, as docker does.
///
/// ENTRYPOINT/CMD: `--entrypoint` replaces the image's entrypoint and drops
/// its CMD; a command on the command line replaces CMD. The process runs
/// `entrypoint + cmd`. ENV: the image's, then each flag, a later key
/// replacing an earlier one in place. HOSTNAME is set, and PATH when the
/// image has none.
pub fn merge_run_config(
    image: &ImageDefaults,
    request: &RunRequest,
    id: &str,
) -> Result<RunConfig, SpecError> {
    let (entrypoint, image_cmd) = match &request.entrypoint {
        Some(e) if e.is_empty() => (Vec::new(), Vec::new()),
        Some(e) => (vec![e.clone()], Vec::new()),
        None => (image.entrypoint.clone(), image.cmd.clone()),
    };
    let cmd = if request.command.is_empty() {
        image_cmd
    } else {
        request.command.clone()
    };
    let mut argv = entrypoint.iter().chain(cmd.iter()).cloned();
    let path = argv.next().ok_or(SpecError::NoCommand)?;
    let args: Vec<String> = argv.collect();

    let hostname = request
        .hostname
        .clone()
        .unwrap_or_else(|| id[..12.min(id.len())].to_string());
    let env = merge_env(&image.env, &request.env, &hostname, request.tty)?;

    let working_dir = request
        .working_dir
        .clone()
        .filter(|w| !w.is_empty())
        .or_else(|| Some(image.working_dir.clone()).filter(|w| !w.is_empty()))
        .unwrap_or_else(|| "/".to_string());
    if !working_dir.starts_with('/') {
        return Err(SpecError::RelativeWorkdir(working_dir));
    }

    let mut labels = image.labels.clone();
    labels.extend(request.labels.clone());

    Ok(RunConfig {
        path,
        args,
        entrypoint,
        cmd,
        env,
        working_dir,
        user: request.user.clone().unwrap_or_else(|| image.user.clone()),
        hostname,
        labels,
        stop_signal: request
            .stop_signal
            .clone()
            .filter(|s| !s.is_empty())
            .or_else(|| Some(image.stop_signal.clone()).filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "SIGTERM".to_string()),
        stop_timeout: request.stop_timeout,
        tty: request.tty,
        open_stdin: request.open_stdin,
        attach_stdin: request.open_stdin,
        attach_stdout: true,
        attach_stderr: true,
        exposed_ports: image.exposed_ports.clone(),
        volumes: image.volumes.clone(),
        healthcheck: super::health::merge(image.healthcheck.as_ref(), request.healthcheck.as_ref()),
    })
}

/// Image env, then flags (later keys replace earlier ones in place), then
/// HOSTNAME, PATH and TERM where docker adds them.
fn merge_env(
    image: &[String],
    flags: &[String],
    hostname: &str,
    tty: bool,
) -> Result<Vec<String>, SpecError> {
    let mut env: Vec<String> = Vec::new();
    let hostname_entry = format!("HOSTNAME={hostname}");
    for entry in std::iter::once(&hostname_entry).chain(image).chain(flags) {
        let Some((key, _)) = entry.split_once('=') else {
            return Err(SpecError::BadEnv(entry.clone()));
        };
        if key.is_empty() {
            return Err(SpecError::BadEnv(entry.clone()));
        }
        let prefix = format!("{key}=");
        match env.iter_mut().find(|e| e.starts_with(&prefix)) {
            Some(existing) => *existing = entry.clone(),
            None => env.push(entry.clone()),
        }
    }
    if !env.iter().any(|e| e.starts_with("PATH=")) {
        env.insert(0, DEFAULT_PATH.to_string());
    }
    if tty && !env.iter().any(|e| e.starts_with("TERM=")) {
        env.push("TERM=xterm".to_string());
    }
    Ok(env)
}

/// Everything the start step knows that the record does not: where the
/// rootfs is mounted, who the user resolved to, where the cgroup goes.
#[derive(Debug, Clone)]
pub struct StartContext<'a> {
    pub rootfs: &'a Path,
    pub uid: u32,
    pub gid: u32,
    pub additional_gids: Vec<u32>,
    /// HOME from the image's /etc/passwd, used when the env has none.
    pub home: String,
    pub cgroups_path: String,
    /// The host path of berth-init when `--init` was asked for.
    pub init_binary: Option<&'a Path>,
    /// Extra mounts (volumes, /etc/hosts ...) appended after the defaults.
    pub extra_mounts: Vec<Value>,
    /// Path of a network namespace to join, or None for a new one.
    pub netns_path: Option<String>,
}

/// Where berth-init appears inside the container.
pub const INIT_PATH_IN_CONTAINER: &str = "/sbin/berth-init";

/// Build the OCI runtime spec for `record`.
pub fn runtime_spec(
    record: &ContainerRecord,
    ctx: &StartContext<'_>,
) -> Result<Spec, serde_json::Error> {
    let config = &record.config;
    let mut args: Vec<String> = Vec::new();
    let mut mounts = default_mounts();
    if let Some(init) = ctx.init_binary {
        args.extend([INIT_PATH_IN_CONTAINER.to_string(), "--".to_string()]);
        mounts.push(json!({
            "destination": INIT_PATH_IN_CONTAINER, "type": "bind",
            "source": init, "options": ["bind", "ro", "nosuid", "nodev"]
        }));
    }
    args.push(config.path.clone());
    args.extend(config.args.iter().cloned());
    mounts.extend(ctx.extra_mounts.iter().cloned());

    let mut env = config.env.clone();
    if !env.iter().any(|e| e.starts_with("HOME=")) {
        env.push(format!(
            "HOME={}",
            if ctx.home.is_empty() { "/" } else { &ctx.home }
        ));
    }
    let caps = DEFAULT_CAPABILITIES.to_vec();
    let network_ns = match &ctx.netns_path {
        Some(path) => json!({"type": "network", "path": path}),
        None => json!({"type": "network"}),
    };

    let mut template = json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": config.tty,
            "user": {"uid": ctx.uid, "gid": ctx.gid, "additionalGids": ctx.additional_gids},
            "args": args,
            "env": env,
            "cwd": config.working_dir,
            "capabilities": {
                "bounding": caps, "effective": caps, "permitted": caps,
            },
            "noNewPrivileges": false,
        },
        "root": {"path": ctx.rootfs, "readonly": record.host.read_only_rootfs},
        "hostname": config.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": [
                {"type": "pid"}, {"type": "ipc"}, {"type": "uts"},
                {"type": "mount"}, {"type": "cgroup"}, network_ns,
            ],
            "cgroupsPath": ctx.cgroups_path,
            "resources": resources(record),
            "maskedPaths": MASKED_PATHS,
            "readonlyPaths": READONLY_PATHS,
        },
    });
    // Capabilities, seccomp, no_new_privs, masked paths, devices, privileged.
    crate::security::apply(&record.host.security, &mut template)
        .map_err(<serde_json::Error as serde::de::Error>::custom)?;
    serde_json::from_value(template)
}

/// The standard filesystems every container gets (docker's defaults).
fn default_mounts() -> Vec<Value> {
    vec![
        json!({"destination": "/proc", "type": "proc", "source": "proc",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
               "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]}),
        json!({"destination": "/dev/pts", "type": "devpts", "source": "devpts",
               "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]}),
        json!({"destination": "/sys", "type": "sysfs", "source": "sysfs",
               "options": ["nosuid", "noexec", "nodev", "ro"]}),
        json!({"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
               "options": ["ro", "nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
               "options": ["nosuid", "noexec", "nodev"]}),
        json!({"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
               "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]}),
    ]
}

/// `linux.resources`: the device rules every container gets, and the limits
/// from `-m`, `--memory-swap`, `--cpus`, `--cpu-shares`, `--pids-limit`.
fn resources(record: &ContainerRecord) -> Value {
    let host = &record.host;
    let mut resources = json!({ "devices": default_device_rules() });
    if host.memory > 0 {
        // Docker: with -m and no --memory-swap, swap may be as large as memory.
        let swap = match host.memory_swap {
            0 => host.memory * 2,
            other => other,
        };
        resources["memory"] = json!({"limit": host.memory, "swap": swap});
    }
    if host.nano_cpus > 0 || host.cpu_shares > 0 {
        let mut cpu = json!({});
        if host.nano_cpus > 0 {
            let period: i64 = 100_000;
            cpu["period"] = json!(period);
            cpu["quota"] = json!(host.nano_cpus * period / 1_000_000_000);
        }
        if host.cpu_shares > 0 {
            cpu["shares"] = json!(host.cpu_shares);
        }
        resources["cpu"] = cpu;
    }
    if let Some(limit) = host.pids_limit {
        resources["pids"] = json!({ "limit": if limit <= 0 { -1 } else { limit } });
    }
    resources
}

/// Deny every device, then allow the ones a container needs (docker's list).
fn default_device_rules() -> Vec<Value> {
    let allow = |kind: &str, major: i64, minor: Option<i64>, access: &str| {
        let mut rule = json!({"allow": true, "type": kind, "major": major, "access": access});
        if let Some(minor) = minor {
            rule["minor"] = json!(minor);
        }
        rule
    };
    vec![
        json!({"allow": false, "access": "rwm"}),
        json!({"allow": true, "type": "c", "access": "m"}),
        json!({"allow": true, "type": "b", "access": "m"}),
        allow("c", 1, Some(3), "rwm"),    // /dev/null
        allow("c", 1, Some(5), "rwm"),    // /dev/zero
        allow("c", 1, Some(7), "rwm"),    // /dev/full
        allow("c", 1, Some(8), "rwm"),    // /dev/random
        allow("c", 1, Some(9), "rwm"),    // /dev/urandom
        allow("c", 5, Some(0), "rwm"),    // /dev/tty
        allow("c", 5, Some(1), "rwm"),    // /dev/console
        allow("c", 5, Some(2), "rwm"),    // /dev/ptmx
        allow("c", 136, None, "rwm"),     // /dev/pts/*
        allow("c", 10, Some(200), "rwm"), // /dev/net/tun
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image() -> ImageDefaults {
        ImageDefaults {
            env: vec!["PATH=/usr/bin:/bin".into(), "LANG=C.UTF-8".into()],
            entrypoint: vec!["/entry.sh".into()],
            cmd: vec!["serve".into(), "--port=80".into()],
            working_dir: "/srv".into(),
            user: "app".into(),
            stop_signal: "SIGQUIT".into(),
            ..Default::default()
        }
    }

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    #[test]
    fn entrypoint_and_cmd_join_as_docker_does() {
        let c = merge_run_config(&image(), &RunRequest::default(), ID).unwrap();
        assert_eq!(
            (c.path.as_str(), c.args.clone()),
            (
                "/entry.sh",
                vec!["serve".to_string(), "--port=80".to_string()]
            )
        );

        let args = RunRequest {
            command: vec!["debug".into()],
            ..Default::default()
        };
        let c = merge_run_config(&image(), &args, ID).unwrap();
        assert_eq!(
            (c.path.as_str(), c.args.clone()),
            ("/entry.sh", vec!["debug".to_string()])
        );

        let entry = RunRequest {
            entrypoint: Some("/bin/sh".into()),
            ..Default::default()
        };
        let c = merge_run_config(&image(), &entry, ID).unwrap();
        assert_eq!(
            (c.path.as_str(), c.args.len()),
            ("/bin/sh", 0),
            "--entrypoint drops the image CMD"
        );

        let cleared = RunRequest {
            entrypoint: Some(String::new()),
            command: vec!["ls".into()],
            ..Default::default()
        };
        let c = merge_run_config(&image(), &cleared, ID).unwrap();
        assert_eq!(c.path, "ls");
    }

    #[test]
    fn nothing_to_run_is_docker_no_command_error() {
        let empty = ImageDefaults::default();
        assert_eq!(
            merge_run_config(&empty, &RunRequest::default(), ID).unwrap_err(),
            SpecError::NoCommand
        );
    }

    #[test]
    fn env_flags_replace_image_keys_in_place() {
        let req = RunRequest {
            env: vec!["LANG=de_DE".into(), "NEW=1".into()],
            ..Default::default()
        };
        let c = merge_run_config(&image(), &req, ID).unwrap();
        assert_eq!(
            c.env,
            vec![
                "HOSTNAME=0123456789ab",
                "PATH=/usr/bin:/bin",
                "LANG=de_DE",
                "NEW=1"
            ]
        );
        let bad = RunRequest {
            env: vec!["=x".into()],
            ..Default::default()
        };
        assert!(merge_run_config(&image(), &bad, ID).is_err());
    }

    #[test]
    fn defaults_fill_path_workdir_and_stop_signal() {
        let c = merge_run_config(
            &ImageDefaults {
                cmd: vec!["true".into()],
                ..Default::default()
            },
            &RunRequest {
                tty: true,
                ..Default::default()
            },
            ID,
        )
        .unwrap();
        assert_eq!(c.env[0], DEFAULT_PATH);
        assert!(c.env.contains(&"TERM=xterm".to_string()));
        assert_eq!(c.working_dir, "/");
        assert_eq!(c.stop_signal, "SIGTERM");
        assert_eq!(c.hostname, "0123456789ab");
        let c = merge_run_config(
            &image(),
            &RunRequest {
                stop_signal: Some("SIGINT".into()),
                working_dir: Some("/tmp".into()),
                ..Default::default()
            },
            ID,
        )
        .unwrap();
        assert_eq!(
            (
                c.stop_signal.as_str(),
                c.working_dir.as_str(),
                c.user.as_str()
            ),
            ("SIGINT", "/tmp", "app")
        );
    }

    #[test]
    fn runtime_spec_carries_dockers_defaults_and_limits() {
        let config = merge_run_config(&image(), &RunRequest::default(), ID).unwrap();
        let record = ContainerRecord {
            id: ID.into(),
            name: "t".into(),
            created: chrono::Utc::now(),
            image: "img".into(),
            image_id: "sha256:x".into(),
            config,
            host: super::super::HostConfig {
                memory: 64 << 20,
                nano_cpus: 1_500_000_000,
                pids_limit: Some(50),
                ..Default::default()
            },
            state: Default::default(),
        };
        let ctx = StartContext {
            rootfs: Path::new("/r"),
            uid: 1000,
            gid: 1000,
            additional_gids: vec![],
            home: "/home/app".into(),
            cgroups_path: "/berth/x".into(),
            init_binary: None,
            extra_mounts: vec![],
            netns_path: None,
        };
        let spec = runtime_spec(&record, &ctx).unwrap();
        let process = spec.process().as_ref().unwrap();
        assert_eq!(process.args().as_ref().unwrap()[0], "/entry.sh");
        assert!(process
            .env()
            .as_ref()
            .unwrap()
            .contains(&"HOME=/home/app".to_string()));
        let caps = process.capabilities().as_ref().unwrap();
        assert_eq!(caps.bounding().as_ref().unwrap().len(), 14);
        assert!(caps.inheritable().is_none() || caps.inheritable().as_ref().unwrap().is_empty());
        let linux = spec.linux().as_ref().unwrap();
        let res = linux.resources().as_ref().unwrap();
        assert_eq!(res.memory().as_ref().unwrap().limit(), Some(64 << 20));
        assert_eq!(res.memory().as_ref().unwrap().swap(), Some(128 << 20));
        assert_eq!(res.cpu().as_ref().unwrap().quota(), Some(150_000));
        assert_eq!(res.pids().as_ref().unwrap().limit(), 50);
        assert_eq!(
            linux.masked_paths().as_ref().unwrap().len(),
            MASKED_PATHS.len()
        );
    }
}
