//! The OCI bundle: a directory with `config.json` and (usually) `rootfs/`.
//!
//! Mechanism: plain reads and JSON (serde + the `oci-spec` types). Checks
//! that need no kernel happen here, so that a bad config is reported before
//! anything is created: capability names, the process, the root, the mount
//! namespace the runtime needs.

use std::path::{Path, PathBuf};

use oci_spec::runtime::{Process, Spec};

use crate::error::{Error, Result};

/// Read and check `<bundle>/config.json`.
pub fn load_config(bundle: &Path) -> Result<Spec> {
    let file = bundle.join("config.json");
    let text = std::fs::read(&file).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => Error::InvalidConfig {
            file: file.clone(),
            message: format!(
                "no such file: is {} an OCI bundle? (`berth-runtime spec` writes a config.json)",
                bundle.display()
            ),
        },
        _ => Error::io(format!("read {}", file.display()), e),
    })?;
    parse_config(&text, &file)
}

/// Parse config.json text; `file` is for messages.
pub fn parse_config(text: &[u8], file: &Path) -> Result<Spec> {
    let invalid = |message: String| Error::InvalidConfig {
        file: file.to_path_buf(),
        message,
    };
    let value: serde_json::Value =
        serde_json::from_slice(text).map_err(|e| invalid(format!("not valid JSON: {e}")))?;
    if let Some(process) = value.get("process") {
        crate::capabilities::validate_names(process, file)?;
    }
    let spec: Spec = serde_json::from_value(value).map_err(|e| invalid(e.to_string()))?;
    check(&spec, file)?;
    Ok(spec)
}

/// Read an exec `process.json` (the `process` object of config.json).
pub fn load_process(file: &Path) -> Result<Process> {
    let text = std::fs::read(file).map_err(|e| Error::io(format!("read {}", file.display()), e))?;
    let value: serde_json::Value =
        serde_json::from_slice(&text).map_err(|e| Error::InvalidConfig {
            file: file.to_path_buf(),
            message: format!("not valid JSON: {e}"),
        })?;
    crate::capabilities::validate_names(&value, file)?;
    serde_json::from_value(value).map_err(|e| Error::InvalidConfig {
        file: file.to_path_buf(),
        message: e.to_string(),
    })
}

fn check(spec: &Spec, file: &Path) -> Result<()> {
    let invalid = |message: &str| Error::InvalidConfig {
        file: file.to_path_buf(),
        message: message.to_string(),
    };
    let process = spec
        .process()
        .as_ref()
        .ok_or_else(|| invalid("no \"process\": nothing to run"))?;
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(invalid("process.args is empty: nothing to run"));
    }
    if spec.root().is_none() {
        return Err(invalid("no \"root\": give root.path (usually \"rootfs\")"));
    }
    let linux = spec
        .linux()
        .as_ref()
        .ok_or_else(|| invalid("no \"linux\" section"))?;
    let has_mount_ns = linux
        .namespaces()
        .iter()
        .flatten()
        .any(|n| n.typ() == oci_spec::runtime::LinuxNamespaceType::Mount);
    if !has_mount_ns {
        return Err(invalid(
            "berth-runtime needs a mount namespace: add {\"type\": \"mount\"} to linux.namespaces",
        ));
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return Err(invalid(&format!(
                "mount destination {:?} must be an absolute path",
                m.destination().display()
            )));
        }
        if crate::beneath::normal_components(m.destination()).is_err() {
            return Err(invalid(&format!(
                "mount destination {:?} must not contain '..'",
                m.destination().display()
            )));
        }
    }
    Ok(())
}

/// The rootfs as an absolute host path.
pub fn rootfs_path(spec: &Spec, bundle: &Path) -> Result<PathBuf> {
    let root = spec
        .root()
        .as_ref()
        .map(|r| r.path().clone())
        .unwrap_or_default();
    let path = if root.is_absolute() {
        root
    } else {
        bundle.join(root)
    };
    let canonical = std::fs::canonicalize(&path)
        .map_err(|e| Error::io(format!("rootfs {}", path.display()), e))?;
    if !canonical.is_dir() {
        return Err(Error::InvalidConfig {
            file: bundle.join("config.json"),
            message: format!("root.path {} is not a directory", canonical.display()),
        });
    }
    Ok(canonical)
}

/// The config.json `berth-runtime spec` writes: runc's default, a shell in a
/// read-only busybox-like rootfs with the usual namespaces and protections.
pub fn default_spec_json() -> serde_json::Value {
    serde_json::json!({
        // The version runc's `spec` writes: older runtimes (crun 1.8) refuse later ones.
        "ociVersion": "1.0.2-dev",
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": [
                "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                "TERM=xterm"
            ],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "berth",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs",
             "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts",
             "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm",
             "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue",
             "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs",
             "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup",
             "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [
                {"type": "pid"}, {"type": "network"}, {"type": "ipc"},
                {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}
            ],
            "maskedPaths": [
                "/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys",
                "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats",
                "/proc/sched_debug", "/sys/firmware", "/proc/scsi", "/sys/devices/virtual/powercap"
            ],
            "readonlyPaths": [
                "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"
            ]
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_spec_parses_and_passes_the_checks() {
        let text = serde_json::to_vec(&default_spec_json()).unwrap();
        let spec = parse_config(&text, Path::new("config.json")).unwrap();
        assert_eq!(spec.hostname().as_deref(), Some("berth"));
    }

    #[test]
    fn configs_without_a_program_or_mount_namespace_are_refused() {
        let mut v = default_spec_json();
        v["process"]["args"] = serde_json::json!([]);
        let err =
            parse_config(&serde_json::to_vec(&v).unwrap(), Path::new("config.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json: process.args is empty: nothing to run"
        );
        let mut v = default_spec_json();
        v["linux"]["namespaces"] = serde_json::json!([{"type": "pid"}]);
        let err =
            parse_config(&serde_json::to_vec(&v).unwrap(), Path::new("config.json")).unwrap_err();
        assert!(err.to_string().contains("needs a mount namespace"), "{err}");
    }

    #[test]
    fn unknown_capabilities_are_refused_by_name() {
        let mut v = default_spec_json();
        v["process"]["capabilities"]["effective"] = serde_json::json!(["CAP_KILL", "CAP_MAGIC"]);
        let err = parse_config(
            &serde_json::to_vec(&v).unwrap(),
            Path::new("/b/config.json"),
        )
        .unwrap_err();
        assert!(
            err.to_string().contains("unknown capability \"CAP_MAGIC\""),
            "{err}"
        );
    }
}
