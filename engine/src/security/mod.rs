//! A container's security settings: capabilities, seccomp, no_new_privs,
//! masked paths, devices — docker's defaults and docker's flags to change
//! them (`--cap-add`, `--cap-drop`, `--privileged`, `--security-opt`,
//! `--device`).
//!
//! Mechanism: this module decides; the kernel enforces through the runtime.
//! [`SecurityConfig`] is what `create` records (in the container's
//! HostConfig); [`apply`] writes it into the OCI spec at every start:
//! - `process.capabilities` — `capset(2)` and the bounding set;
//! - `process.noNewPrivileges` — `prctl(PR_SET_NO_NEW_PRIVS)`: setuid bits
//!   and file capabilities grant nothing after it;
//! - `linux.seccomp` — a BPF filter on system calls (`seccomp(2)`), the
//!   default one an allow-list ([`default_seccomp`], docs/seccomp.md);
//! - `linux.maskedPaths` / `linux.readonlyPaths` — /proc and /sys files the
//!   runtime hides (bind-mounts /dev/null or an empty tmpfs over) or makes
//!   read-only;
//! - `linux.devices` and `linux.resources.devices` — device nodes and the
//!   device cgroup rules that let them be opened.
//!
//! `--privileged` undoes all of it, as docker's does: every capability, no
//! seccomp, nothing masked, /sys and /sys/fs/cgroup writable, every host
//! device. docs/security.md lists each threat and the test that proves the
//! defense.

pub mod capabilities;
pub mod default_seccomp;
pub mod devices;
pub mod inheritance;
/// The CVE-2019-5736 defense lives in the runtime crate, so that the
/// `berth-runtime` binary uses it too.
pub use berth_runtime::sealed_exe;
pub mod seccomp_profile;

use std::path::PathBuf;

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

pub use devices::DeviceMapping;

#[derive(Debug, thiserror::Error)]
pub enum SecurityError {
    #[error("unknown capability {0:?}: names look like NET_ADMIN or CAP_NET_ADMIN, or ALL")]
    UnknownCapability(String),
    #[error("invalid --security-opt {opt:?}: {why}")]
    BadSecurityOpt { opt: String, why: String },
    #[error("opening seccomp profile {path}: {error}")]
    SeccompFile {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("invalid seccomp profile {path}: {why}")]
    SeccompFileInvalid { path: PathBuf, why: String },
    #[error("invalid seccomp profile: {0}")]
    BadSeccompProfile(String),
    #[error("invalid --device {text:?}: {why}")]
    BadDevice { text: String, why: String },
    #[error("error gathering device information while adding custom device {path:?}: {error}")]
    DeviceLookup {
        path: PathBuf,
        error: std::io::Error,
    },
    #[error("cannot add {0}: berth itself does not hold it (it is not in berth's capability bounding set)")]
    CapabilityNotHeld(String),
    #[error("{0:?} is not a device node: --device takes a character or block device, or a directory of them")]
    NotADevice(PathBuf),
}

/// Which seccomp filter the container runs under.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(tag = "mode", rename_all = "lowercase")]
pub enum SeccompChoice {
    /// berth's default profile.
    #[default]
    Default,
    /// `seccomp=unconfined`: no filter.
    Unconfined,
    /// `seccomp=PROFILE.json`: the file's text, read at `create` (the
    /// container does not depend on the file afterwards, as in docker).
    Custom { source: String, profile: String },
}

/// The security part of a container's HostConfig, as recorded at `create`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct SecurityConfig {
    pub privileged: bool,
    /// Normalized names (`CAP_NET_ADMIN`) or `ALL`.
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    /// The `--security-opt` values as given (shown by `inspect`).
    pub security_opt: Vec<String>,
    pub no_new_privileges: bool,
    pub seccomp: SeccompChoice,
    /// `systempaths=unconfined`: no masked or read-only /proc and /sys paths.
    pub unmask_system_paths: bool,
    pub devices: Vec<DeviceMapping>,
}

/// The security flags of `run`/`create`, as typed.
#[derive(Debug, Clone, Default)]
pub struct SecurityFlags {
    pub privileged: bool,
    pub cap_add: Vec<String>,
    pub cap_drop: Vec<String>,
    pub security_opt: Vec<String>,
    pub devices: Vec<String>,
}

impl SecurityConfig {
    /// Check and record the flags: capability names, security options (a
    /// seccomp profile is read and compiled now), host devices.
    pub fn from_flags(flags: &SecurityFlags) -> Result<SecurityConfig, SecurityError> {
        let mut config = SecurityConfig {
            privileged: flags.privileged,
            cap_add: capabilities::normalize_all(&flags.cap_add)?,
            cap_drop: capabilities::normalize_all(&flags.cap_drop)?,
            security_opt: flags.security_opt.clone(),
            ..Default::default()
        };
        for cap in &config.cap_add {
            if cap != capabilities::ALL && !capabilities::is_held(cap) {
                return Err(SecurityError::CapabilityNotHeld(cap.clone()));
            }
        }
        for opt in &flags.security_opt {
            apply_security_opt(&mut config, opt)?;
        }
        for text in &flags.devices {
            let mapping = devices::parse_device(text)?;
            devices::host_nodes(
                std::path::Path::new(&mapping.path_on_host),
                std::path::Path::new(&mapping.path_in_container),
            )?;
            config.devices.push(mapping);
        }
        if let SeccompChoice::Custom { source, profile } = &config.seccomp {
            let parsed = parse_custom(source, profile)?;
            let target = seccomp_profile::Target::host(config.capabilities());
            seccomp_profile::check_compiles(&parsed, &target).map_err(|e| {
                SecurityError::SeccompFileInvalid {
                    path: source.into(),
                    why: e.to_string(),
                }
            })?;
        }
        Ok(config)
    }

    /// The capabilities the container's process gets.
    pub fn capabilities(&self) -> Vec<String> {
        capabilities::tweak(
            &crate::container::spec::DEFAULT_CAPABILITIES,
            &self.cap_add,
            &self.cap_drop,
            self.privileged,
            &capabilities::kernel_capabilities(),
        )
    }

    /// The `linux.seccomp` section, or None for no filter.
    pub fn seccomp_section(&self) -> Result<Option<Value>, SecurityError> {
        if self.privileged {
            return Ok(None);
        }
        let target = seccomp_profile::Target::host(self.capabilities());
        match &self.seccomp {
            SeccompChoice::Unconfined => Ok(None),
            SeccompChoice::Default => Ok(Some(seccomp_profile::to_oci(
                &default_seccomp::default_profile(),
                &target,
            ))),
            SeccompChoice::Custom { source, profile } => {
                let parsed = parse_custom(source, profile)?;
                Ok(Some(seccomp_profile::to_oci(&parsed, &target)))
            }
        }
    }

    /// What docker shows as `SecurityOpt` in `inspect`.
    pub fn security_opt_for_inspect(&self) -> Option<Vec<String>> {
        if self.security_opt.is_empty() {
            None
        } else {
            Some(self.security_opt.clone())
        }
    }
}

fn parse_custom(source: &str, profile: &str) -> Result<seccomp_profile::Profile, SecurityError> {
    seccomp_profile::parse(profile).map_err(|why| SecurityError::SeccompFileInvalid {
        path: source.into(),
        why,
    })
}

/// One `--security-opt`: `no-new-privileges[=true|false]`,
/// `seccomp=unconfined|PROFILE.json`, `systempaths=unconfined`; docker's
/// legacy `key:value` spelling too. `apparmor=unconfined` and
/// `label=disable` ask to relax confinement berth does not apply, so they
/// are accepted; any other AppArmor/SELinux request is refused rather than
/// silently ignored.
fn apply_security_opt(config: &mut SecurityConfig, opt: &str) -> Result<(), SecurityError> {
    let bad = |why: &str| SecurityError::BadSecurityOpt {
        opt: opt.to_string(),
        why: why.to_string(),
    };
    let (key, value) = match opt.split_once(['=', ':']) {
        Some((k, v)) => (k, Some(v)),
        None => (opt, None),
    };
    match (key, value) {
        ("no-new-privileges", None | Some("true")) => config.no_new_privileges = true,
        ("no-new-privileges", Some("false")) => config.no_new_privileges = false,
        ("no-new-privileges", Some(_)) => return Err(bad("the value must be true or false")),
        ("seccomp", Some("unconfined")) => config.seccomp = SeccompChoice::Unconfined,
        ("seccomp", Some("builtin" | "default")) => config.seccomp = SeccompChoice::Default,
        ("seccomp", Some(path)) if !path.is_empty() => {
            let text =
                std::fs::read_to_string(path).map_err(|error| SecurityError::SeccompFile {
                    path: path.into(),
                    error,
                })?;
            config.seccomp = SeccompChoice::Custom {
                source: path.to_string(),
                profile: text,
            };
        }
        ("seccomp", _) => return Err(bad("use seccomp=unconfined or seccomp=PROFILE.json")),
        ("systempaths", Some("unconfined")) => config.unmask_system_paths = true,
        ("systempaths", _) => return Err(bad("the only value is systempaths=unconfined")),
        ("apparmor", Some("unconfined")) | ("label", Some("disable")) => {}
        ("apparmor" | "label", _) => {
            return Err(bad(
                "berth applies no AppArmor or SELinux profile; only apparmor=unconfined and label=disable are accepted",
            ))
        }
        _ => {
            return Err(bad(
                "berth knows no-new-privileges, seccomp=unconfined|PROFILE.json and systempaths=unconfined",
            ))
        }
    }
    Ok(())
}

/// Write `config` into an OCI spec built with docker's defaults (see
/// `container::spec::runtime_spec`): capabilities, no_new_privs, seccomp,
/// masked paths, devices, and for `--privileged` writable /sys.
pub fn apply(config: &SecurityConfig, spec: &mut Value) -> Result<(), SecurityError> {
    let caps = config.capabilities();
    spec["process"]["capabilities"] = json!({
        "bounding": caps, "effective": caps, "permitted": caps,
    });
    spec["process"]["noNewPrivileges"] = json!(config.no_new_privileges);
    match config.seccomp_section()? {
        Some(seccomp) => spec["linux"]["seccomp"] = seccomp,
        None => {
            if let Some(linux) = spec["linux"].as_object_mut() {
                linux.remove("seccomp");
            }
        }
    }
    if config.privileged || config.unmask_system_paths {
        spec["linux"]["maskedPaths"] = json!([]);
        spec["linux"]["readonlyPaths"] = json!([]);
    }
    let mut nodes = Vec::new();
    if config.privileged {
        make_writable(spec, &["/sys", "/sys/fs/cgroup"]);
        nodes = devices::all_host_devices();
        spec["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    }
    for mapping in &config.devices {
        let found = devices::host_nodes(
            std::path::Path::new(&mapping.path_on_host),
            std::path::Path::new(&mapping.path_in_container),
        )?;
        for node in found {
            if !config.privileged {
                push(
                    spec,
                    "/linux/resources/devices",
                    node.cgroup_rule(&mapping.cgroup_permissions),
                );
            }
            nodes.retain(|n| n.path != node.path);
            nodes.push(node);
        }
    }
    for node in &nodes {
        push(spec, "/linux/devices", node.spec_entry());
    }
    Ok(())
}

/// Append `value` to the array at `pointer`, creating it if needed.
fn push(spec: &mut Value, pointer: &str, value: Value) {
    let mut target = &mut *spec;
    for key in pointer.trim_start_matches('/').split('/') {
        if target.get(key).is_none() {
            target[key] = Value::Null;
        }
        target = &mut target[key];
    }
    if !target.is_array() {
        *target = json!([]);
    }
    if let Some(array) = target.as_array_mut() {
        array.push(value);
    }
}

/// Remove `ro` from the options of the mounts at `destinations`.
fn make_writable(spec: &mut Value, destinations: &[&str]) {
    let Some(mounts) = spec["mounts"].as_array_mut() else {
        return;
    };
    for mount in mounts {
        let is_target = mount["destination"]
            .as_str()
            .is_some_and(|d| destinations.contains(&d));
        if !is_target {
            continue;
        }
        if let Some(options) = mount["options"].as_array_mut() {
            options.retain(|o| o != "ro");
            options.push(json!("rw"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn flags() -> SecurityFlags {
        SecurityFlags::default()
    }

    fn base_spec() -> Value {
        json!({
            "process": {"capabilities": {}, "noNewPrivileges": false},
            "mounts": [
                {"destination": "/sys", "type": "sysfs", "options": ["nosuid", "ro"]},
                {"destination": "/sys/fs/cgroup", "type": "cgroup", "options": ["ro", "nosuid"]},
                {"destination": "/proc", "type": "proc", "options": ["nosuid"]},
            ],
            "linux": {
                "maskedPaths": ["/proc/kcore"], "readonlyPaths": ["/proc/sys"],
                "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            },
        })
    }

    #[test]
    fn a_default_container_gets_the_default_profile_and_14_caps() {
        let config = SecurityConfig::from_flags(&flags()).unwrap();
        let mut spec = base_spec();
        apply(&config, &mut spec).unwrap();
        assert_eq!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len(),
            14
        );
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ERRNO");
        assert_eq!(spec["linux"]["maskedPaths"][0], "/proc/kcore");
        assert_eq!(spec["mounts"][0]["options"], json!(["nosuid", "ro"]));
        let typed: Result<oci_spec::runtime::LinuxSeccomp, _> =
            serde_json::from_value(spec["linux"]["seccomp"].clone());
        assert!(typed.is_ok(), "the OCI crate reads it: {typed:?}");
    }

    #[test]
    fn security_opts_parse_in_both_spellings() {
        let config = SecurityConfig::from_flags(&SecurityFlags {
            security_opt: vec![
                "no-new-privileges".into(),
                "seccomp:unconfined".into(),
                "systempaths=unconfined".into(),
                "apparmor=unconfined".into(),
            ],
            ..flags()
        })
        .unwrap();
        assert!(config.no_new_privileges && config.unmask_system_paths);
        assert_eq!(config.seccomp, SeccompChoice::Unconfined);
        let mut spec = base_spec();
        apply(&config, &mut spec).unwrap();
        assert!(spec["linux"].get("seccomp").is_none());
        assert_eq!(spec["process"]["noNewPrivileges"], true);
        assert_eq!(spec["linux"]["maskedPaths"], json!([]));

        for bad in [
            "no-new-privileges=maybe",
            "seccomp=",
            "apparmor=docker-default",
            "fly=yes",
        ] {
            let err = SecurityConfig::from_flags(&SecurityFlags {
                security_opt: vec![bad.into()],
                ..flags()
            })
            .unwrap_err()
            .to_string();
            assert!(err.contains(bad), "{bad}: {err}");
        }
    }

    #[test]
    fn a_profile_file_is_read_checked_and_recorded() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("p.json");
        std::fs::write(
            &good,
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["chmod"], "action": "SCMP_ACT_ERRNO"}]}"#,
        )
        .unwrap();
        let config = SecurityConfig::from_flags(&SecurityFlags {
            security_opt: vec![format!("seccomp={}", good.display())],
            ..flags()
        })
        .unwrap();
        std::fs::remove_file(&good).unwrap();
        let mut spec = base_spec();
        apply(&config, &mut spec).unwrap();
        assert_eq!(spec["linux"]["seccomp"]["defaultAction"], "SCMP_ACT_ALLOW");

        let missing = SecurityConfig::from_flags(&SecurityFlags {
            security_opt: vec![format!("seccomp={}", good.display())],
            ..flags()
        })
        .unwrap_err()
        .to_string();
        assert!(missing.contains("p.json"), "{missing}");
        let broken = dir.path().join("broken.json");
        std::fs::write(&broken, r#"{"defaultAction": "SCMP_ACT_NOPE"}"#).unwrap();
        let err = SecurityConfig::from_flags(&SecurityFlags {
            security_opt: vec![format!("seccomp={}", broken.display())],
            ..flags()
        })
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("broken.json") && err.contains("SCMP_ACT_NOPE"),
            "{err}"
        );
    }

    #[test]
    fn privileged_opens_everything() {
        let config = SecurityConfig::from_flags(&SecurityFlags {
            privileged: true,
            ..flags()
        })
        .unwrap();
        let mut spec = base_spec();
        apply(&config, &mut spec).unwrap();
        assert!(spec["linux"].get("seccomp").is_none());
        assert_eq!(spec["linux"]["maskedPaths"], json!([]));
        assert_eq!(
            spec["linux"]["resources"]["devices"],
            json!([{"allow": true, "access": "rwm"}])
        );
        assert!(!spec["mounts"][0]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
        assert!(!spec["mounts"][1]["options"]
            .as_array()
            .unwrap()
            .contains(&json!("ro")));
        let devices = spec["linux"]["devices"].as_array().unwrap();
        assert!(devices.iter().any(|d| d["path"] == "/dev/null"));
        assert!(
            spec["process"]["capabilities"]["bounding"]
                .as_array()
                .unwrap()
                .len()
                >= 38
        );
    }

    #[test]
    fn a_device_flag_adds_the_node_and_its_cgroup_rule() {
        let config = SecurityConfig::from_flags(&SecurityFlags {
            devices: vec!["/dev/null:/dev/mynull:r".into()],
            cap_drop: vec!["all".into()],
            cap_add: vec!["kill".into()],
            ..flags()
        })
        .unwrap();
        let mut spec = base_spec();
        apply(&config, &mut spec).unwrap();
        assert_eq!(spec["linux"]["devices"][0]["path"], "/dev/mynull");
        let rules = spec["linux"]["resources"]["devices"].as_array().unwrap();
        assert_eq!(rules.last().unwrap()["access"], "r");
        assert_eq!(rules.last().unwrap()["major"], 1);
        assert_eq!(
            spec["process"]["capabilities"]["bounding"],
            json!(["CAP_KILL"])
        );
        let err = SecurityConfig::from_flags(&SecurityFlags {
            devices: vec!["/dev/nope".into()],
            ..flags()
        })
        .unwrap_err()
        .to_string();
        assert!(err.contains("/dev/nope"), "{err}");
    }

    #[test]
    fn old_records_without_security_load_with_the_defaults() {
        let config: SecurityConfig = serde_json::from_str("{}").unwrap();
        assert_eq!(config, SecurityConfig::default());
        assert_eq!(config.capabilities().len(), 14);
    }
}
