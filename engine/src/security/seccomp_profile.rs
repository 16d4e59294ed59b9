//! Docker's seccomp profile format, and its translation into the OCI
//! runtime spec's `linux.seccomp` section.
//!
//! Mechanism: none at this level — seccomp itself (`seccomp(2)` with a BPF
//! program) is installed by the runtime (`runtime/src/seccomp.rs`). A
//! docker profile is a *template*: entries can depend on the container's
//! capabilities (`includes.caps`, `excludes.caps`), on the CPU architecture
//! (`includes.arches`, `excludes.arches`) and on the kernel version
//! (`includes.minKernel`). The translation resolves every condition for one
//! container, as moby's `profiles/seccomp` does, and leaves a flat list of
//! rules the runtime can compile:
//! - an entry is kept when every cap in `includes.caps` is held, no cap in
//!   `excludes.caps` is held, the architecture is in `includes.arches` (when
//!   given) and not in `excludes.arches`, and the kernel is at least
//!   `includes.minKernel`;
//! - `architectures` (old style) or the `archMap` entry of the native
//!   architecture (new style) give the list of ABIs;
//! - `name` (old style, one syscall) and `names` are both accepted.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SecurityError;

/// A docker seccomp profile (`--security-opt seccomp=PROFILE.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Profile {
    pub default_action: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_errno_ret: Option<u32>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub architectures: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arch_map: Vec<ArchMap>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub listener_metadata: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub flags: Vec<String>,
    #[serde(default)]
    pub syscalls: Vec<SyscallRule>,
}

/// The ABIs filtered for one native architecture.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ArchMap {
    pub architecture: String,
    #[serde(default)]
    pub sub_architectures: Vec<String>,
}

/// One entry of `syscalls`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SyscallRule {
    /// Old style: a single name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub names: Vec<String>,
    pub action: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub args: Vec<Arg>,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub comment: String,
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub includes: Filter,
    #[serde(default, skip_serializing_if = "Filter::is_empty")]
    pub excludes: Filter,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub errno_ret: Option<u32>,
}

/// A condition on one syscall argument.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Arg {
    pub index: u32,
    pub value: u64,
    #[serde(default)]
    pub value_two: u64,
    pub op: String,
}

/// `includes`/`excludes`: when an entry applies.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Filter {
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub caps: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub arches: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_kernel: Option<String>,
}

impl Filter {
    pub fn is_empty(&self) -> bool {
        self.caps.is_empty() && self.arches.is_empty() && self.min_kernel.is_none()
    }
}

/// What the translation needs to know about the container and the host.
#[derive(Debug, Clone)]
pub struct Target {
    /// The container's capabilities (`CAP_...`), after --cap-add/--cap-drop.
    pub capabilities: Vec<String>,
    /// Docker's (Go) name of the architecture: `amd64`, `arm64`, ...
    pub arch: String,
    /// The running kernel's (major, minor).
    pub kernel: (u32, u32),
}

impl Target {
    /// This host, for a container with `capabilities`.
    pub fn host(capabilities: Vec<String>) -> Target {
        Target {
            capabilities,
            arch: go_arch(std::env::consts::ARCH).to_string(),
            kernel: kernel_version(),
        }
    }
}

/// Rust's architecture name -> the name docker profiles use (Go's GOARCH).
pub fn go_arch(rust_arch: &str) -> &str {
    match rust_arch {
        "x86_64" => "amd64",
        "x86" => "386",
        "aarch64" => "arm64",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        "mips64" => "mips64le",
        other => other,
    }
}

/// Rust's architecture name -> libseccomp's (`SCMP_ARCH_X86_64`).
pub fn scmp_arch(rust_arch: &str) -> String {
    let name = match rust_arch {
        "x86_64" => "X86_64",
        "x86" => "X86",
        "aarch64" => "AARCH64",
        "arm" => "ARM",
        "powerpc64" => "PPC64LE",
        "s390x" => "S390X",
        "riscv64" => "RISCV64",
        "loongarch64" => "LOONGARCH64",
        "mips64" => "MIPSEL64",
        other => return format!("SCMP_ARCH_{}", other.to_ascii_uppercase()),
    };
    format!("SCMP_ARCH_{name}")
}

/// (major, minor) of `uname -r`, e.g. `6.18.44-foo` -> (6, 18).
pub fn kernel_version() -> (u32, u32) {
    let release = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    parse_kernel_version(&release).unwrap_or((0, 0))
}

/// `4.8`, `5.15.0-91-generic` -> (major, minor).
pub fn parse_kernel_version(text: &str) -> Option<(u32, u32)> {
    let mut parts = text.split(|c: char| !c.is_ascii_digit());
    let major = parts.next()?.parse().ok()?;
    let minor = parts.next().unwrap_or("0").parse().unwrap_or(0);
    Some((major, minor))
}

/// Parse a profile file's text; the error names what is wrong.
pub fn parse(text: &str) -> Result<Profile, String> {
    let profile: Profile = serde_json::from_str(text).map_err(|e| e.to_string())?;
    if !profile.architectures.is_empty() && !profile.arch_map.is_empty() {
        return Err("use either architectures or archMap, not both".into());
    }
    if profile
        .listener_path
        .as_deref()
        .is_some_and(|p| !p.is_empty())
    {
        return Err(
            "listenerPath (a seccomp notify agent) is not supported by berth; remove it".into(),
        );
    }
    for (i, rule) in profile.syscalls.iter().enumerate() {
        match (&rule.name, rule.names.is_empty()) {
            (Some(_), false) => {
                return Err(format!("syscalls[{i}]: use either name or names, not both"))
            }
            (None, true) => return Err(format!("syscalls[{i}]: names is empty")),
            _ => {}
        }
        if let Some(min) = &rule.includes.min_kernel {
            if parse_kernel_version(min).is_none() {
                return Err(format!(
                    "syscalls[{i}]: minKernel {min:?} is not a kernel version like \"4.8\""
                ));
            }
        }
    }
    Ok(profile)
}

/// Resolve `profile` for `target` into the OCI `linux.seccomp` JSON.
pub fn to_oci(profile: &Profile, target: &Target) -> Value {
    let native = scmp_arch(std::env::consts::ARCH);
    let architectures: Vec<String> = if !profile.arch_map.is_empty() {
        profile
            .arch_map
            .iter()
            .filter(|m| m.architecture == native)
            .flat_map(|m| {
                std::iter::once(m.architecture.clone()).chain(m.sub_architectures.clone())
            })
            .collect()
    } else {
        profile.architectures.clone()
    };
    let syscalls: Vec<Value> = profile
        .syscalls
        .iter()
        .filter(|rule| applies(rule, target))
        .map(|rule| {
            let names: Vec<&String> = rule.name.iter().chain(rule.names.iter()).collect();
            let mut entry = json!({"names": names, "action": rule.action});
            if let Some(errno) = rule.errno_ret {
                entry["errnoRet"] = json!(errno);
            }
            if !rule.args.is_empty() {
                entry["args"] = json!(rule
                    .args
                    .iter()
                    .map(|a| json!({"index": a.index, "value": a.value, "valueTwo": a.value_two, "op": a.op}))
                    .collect::<Vec<_>>());
            }
            entry
        })
        .collect();
    let mut seccomp = json!({
        "defaultAction": profile.default_action,
        "architectures": architectures,
        "syscalls": syscalls,
    });
    if let Some(errno) = profile.default_errno_ret {
        seccomp["defaultErrnoRet"] = json!(errno);
    }
    if !profile.flags.is_empty() {
        seccomp["flags"] = json!(profile.flags);
    }
    seccomp
}

/// Whether one entry applies to the container (see the module docs).
fn applies(rule: &SyscallRule, target: &Target) -> bool {
    let holds = |cap: &String| target.capabilities.contains(cap);
    if rule.excludes.arches.contains(&target.arch) || rule.excludes.caps.iter().any(holds) {
        return false;
    }
    if !rule.includes.arches.is_empty() && !rule.includes.arches.contains(&target.arch) {
        return false;
    }
    if !rule.includes.caps.iter().all(holds) {
        return false;
    }
    match rule
        .includes
        .min_kernel
        .as_deref()
        .and_then(parse_kernel_version)
    {
        Some(min) => target.kernel >= min,
        None => true,
    }
}

/// Translate and check that the runtime can compile the result: a bad
/// profile is refused at `create`, not at every `start`.
pub fn check_compiles(profile: &Profile, target: &Target) -> Result<Value, SecurityError> {
    let oci = to_oci(profile, target);
    let typed: oci_spec::runtime::LinuxSeccomp = serde_json::from_value(oci.clone())
        .map_err(|e| SecurityError::BadSeccompProfile(e.to_string()))?;
    berth_runtime::seccomp::compile(&typed)
        .map_err(|e| SecurityError::BadSeccompProfile(e.to_string()))?;
    Ok(oci)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(caps: &[&str]) -> Target {
        Target {
            capabilities: caps.iter().map(|c| c.to_string()).collect(),
            arch: "amd64".into(),
            kernel: (5, 4),
        }
    }

    const PROFILE: &str = r#"{
        "defaultAction": "SCMP_ACT_ERRNO",
        "defaultErrnoRet": 1,
        "archMap": [
            {"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86", "SCMP_ARCH_X32"]},
            {"architecture": "SCMP_ARCH_AARCH64", "subArchitectures": ["SCMP_ARCH_ARM"]}
        ],
        "syscalls": [
            {"names": ["read", "write"], "action": "SCMP_ACT_ALLOW"},
            {"name": "getpid", "action": "SCMP_ACT_ALLOW"},
            {"names": ["mount"], "action": "SCMP_ACT_ALLOW", "includes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["clone"], "action": "SCMP_ACT_ALLOW",
             "args": [{"index": 0, "value": 2114060288, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}],
             "excludes": {"caps": ["CAP_SYS_ADMIN"]}},
            {"names": ["arch_prctl"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["amd64"]}},
            {"names": ["sync_file_range2"], "action": "SCMP_ACT_ALLOW", "includes": {"arches": ["ppc64le"]}},
            {"names": ["ptrace"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "4.8"}},
            {"names": ["newer"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "7.1"}},
            {"names": ["clone3"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38}
        ]
    }"#;

    fn names(oci: &Value) -> Vec<String> {
        oci["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|s| s["names"].as_array().unwrap().clone())
            .map(|n| n.as_str().unwrap().to_string())
            .collect()
    }

    #[test]
    fn conditions_are_resolved_for_the_container() {
        let profile = parse(PROFILE).unwrap();
        let plain = to_oci(&profile, &target(&["CAP_CHOWN"]));
        let n = names(&plain);
        assert!(n.contains(&"getpid".to_string()), "old-style name kept");
        assert!(!n.contains(&"mount".to_string()), "needs CAP_SYS_ADMIN");
        assert!(
            n.contains(&"clone".to_string()),
            "masked clone without SYS_ADMIN"
        );
        assert!(n.contains(&"arch_prctl".to_string()));
        assert!(!n.contains(&"sync_file_range2".to_string()), "other arch");
        assert!(n.contains(&"ptrace".to_string()), "5.4 >= 4.8");
        assert!(!n.contains(&"newer".to_string()), "5.4 < 7.1");
        assert_eq!(plain["defaultErrnoRet"], 1);

        let admin = to_oci(&profile, &target(&["CAP_SYS_ADMIN"]));
        let n = names(&admin);
        assert!(n.contains(&"mount".to_string()));
        assert!(!n.contains(&"clone".to_string()), "excluded with SYS_ADMIN");
    }

    #[test]
    fn the_native_arch_map_entry_gives_the_architectures() {
        let profile = parse(PROFILE).unwrap();
        let oci = to_oci(&profile, &target(&[]));
        let arches = oci["architectures"].as_array().unwrap();
        let native = scmp_arch(std::env::consts::ARCH);
        assert_eq!(arches[0], native.as_str());
    }

    #[test]
    fn the_translation_compiles_and_keeps_errno_and_args() {
        let profile = parse(PROFILE).unwrap();
        let oci = check_compiles(&profile, &target(&[])).unwrap();
        let clone3 = oci["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"][0] == "clone3")
            .unwrap();
        assert_eq!(clone3["errnoRet"], 38);
        let clone = oci["syscalls"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["names"][0] == "clone")
            .unwrap();
        assert_eq!(clone["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    }

    #[test]
    fn bad_profiles_are_refused_with_the_reason() {
        assert!(parse("{").is_err());
        let unknown_field =
            parse(r#"{"defaultAction": "SCMP_ACT_ALLOW", "sycalls": []}"#).unwrap_err();
        assert!(unknown_field.contains("sycalls"), "{unknown_field}");
        let both = parse(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"name": "a", "names": ["b"], "action": "SCMP_ACT_ALLOW"}]}"#,
        )
        .unwrap_err();
        assert!(both.contains("syscalls[0]"), "{both}");
        let notify = parse(r#"{"defaultAction": "SCMP_ACT_ALLOW", "listenerPath": "/run/x.sock"}"#)
            .unwrap_err();
        assert!(notify.contains("listenerPath"), "{notify}");
        let bad_action = parse(r#"{"defaultAction": "SCMP_ACT_MAYBE", "syscalls": []}"#).unwrap();
        let err = check_compiles(&bad_action, &target(&[]))
            .unwrap_err()
            .to_string();
        assert!(err.contains("SCMP_ACT_MAYBE"), "{err}");
        let bad_kernel = parse(
            r#"{"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["a"], "action": "SCMP_ACT_ALLOW", "includes": {"minKernel": "new"}}]}"#,
        )
        .unwrap_err();
        assert!(bad_kernel.contains("minKernel"), "{bad_kernel}");
    }

    #[test]
    fn kernel_versions_parse_from_uname_and_profiles() {
        assert_eq!(parse_kernel_version("6.18.44-fc-v1252"), Some((6, 18)));
        assert_eq!(parse_kernel_version("4.8"), Some((4, 8)));
        assert_eq!(parse_kernel_version("5"), Some((5, 0)));
        assert_eq!(parse_kernel_version("x"), None);
        assert!(kernel_version().0 >= 3);
    }
}
