//! Which capabilities a container keeps: docker's 14 defaults, changed by
//! `--cap-add`, `--cap-drop` and `--privileged`.
//!
//! Mechanism: none here — this is bookkeeping. The runtime applies the result
//! with `prctl(PR_CAPBSET_DROP)` and `capset(2)` (see
//! `runtime/src/capabilities.rs`). What matters is that the arithmetic is
//! docker's (moby `oci/caps`), so a flag means the same on both engines:
//! - names are case-insensitive and may omit `CAP_` (`net_admin`);
//! - `ALL` in `--cap-add` starts from every capability the kernel knows,
//!   minus the `--cap-drop` list;
//! - `ALL` in `--cap-drop` starts from nothing, plus the `--cap-add` list;
//! - otherwise: the defaults, minus the drops, plus the adds;
//! - `--privileged` grants every capability the kernel knows.

use super::SecurityError;

/// Every capability name with its number (linux/capability.h).
pub const ALL_CAPABILITIES: [(&str, u8); 41] = [
    ("CAP_CHOWN", 0),
    ("CAP_DAC_OVERRIDE", 1),
    ("CAP_DAC_READ_SEARCH", 2),
    ("CAP_FOWNER", 3),
    ("CAP_FSETID", 4),
    ("CAP_KILL", 5),
    ("CAP_SETGID", 6),
    ("CAP_SETUID", 7),
    ("CAP_SETPCAP", 8),
    ("CAP_LINUX_IMMUTABLE", 9),
    ("CAP_NET_BIND_SERVICE", 10),
    ("CAP_NET_BROADCAST", 11),
    ("CAP_NET_ADMIN", 12),
    ("CAP_NET_RAW", 13),
    ("CAP_IPC_LOCK", 14),
    ("CAP_IPC_OWNER", 15),
    ("CAP_SYS_MODULE", 16),
    ("CAP_SYS_RAWIO", 17),
    ("CAP_SYS_CHROOT", 18),
    ("CAP_SYS_PTRACE", 19),
    ("CAP_SYS_PACCT", 20),
    ("CAP_SYS_ADMIN", 21),
    ("CAP_SYS_BOOT", 22),
    ("CAP_SYS_NICE", 23),
    ("CAP_SYS_RESOURCE", 24),
    ("CAP_SYS_TIME", 25),
    ("CAP_SYS_TTY_CONFIG", 26),
    ("CAP_MKNOD", 27),
    ("CAP_LEASE", 28),
    ("CAP_AUDIT_WRITE", 29),
    ("CAP_AUDIT_CONTROL", 30),
    ("CAP_SETFCAP", 31),
    ("CAP_MAC_OVERRIDE", 32),
    ("CAP_MAC_ADMIN", 33),
    ("CAP_SYSLOG", 34),
    ("CAP_WAKE_ALARM", 35),
    ("CAP_BLOCK_SUSPEND", 36),
    ("CAP_AUDIT_READ", 37),
    ("CAP_PERFMON", 38),
    ("CAP_BPF", 39),
    ("CAP_CHECKPOINT_RESTORE", 40),
];

/// The word that means "every capability" in `--cap-add`/`--cap-drop`.
pub const ALL: &str = "ALL";

/// `net_admin`, `NET_ADMIN`, `cap_net_admin` -> `CAP_NET_ADMIN`; `all` -> `ALL`.
/// An unknown name is an error: a typo must not silently change privileges.
pub fn normalize(name: &str) -> Result<String, SecurityError> {
    let upper = name.trim().to_ascii_uppercase();
    if upper == ALL {
        return Ok(upper);
    }
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    if ALL_CAPABILITIES.iter().any(|(known, _)| *known == full) {
        Ok(full)
    } else {
        Err(SecurityError::UnknownCapability(name.to_string()))
    }
}

/// Normalize a whole flag list, keeping the user's order and dropping repeats.
pub fn normalize_all(names: &[String]) -> Result<Vec<String>, SecurityError> {
    let mut out: Vec<String> = Vec::new();
    for name in names {
        let normal = normalize(name)?;
        if !out.contains(&normal) {
            out.push(normal);
        }
    }
    Ok(out)
}

/// Every capability berth can grant: known to the running kernel (numbers
/// up to /proc/sys/kernel/cap_last_cap) and in berth's own bounding set (a
/// process cannot give what it does not hold — root in a container, or on
/// a host that dropped CAP_SYS_RESOURCE, holds less than everything). In
/// number order; this is what `ALL` and `--privileged` mean.
pub fn kernel_capabilities() -> Vec<String> {
    let last = berth_runtime::capabilities::last_cap();
    let held = bounding_set();
    ALL_CAPABILITIES
        .iter()
        .filter(|(_, number)| *number <= last && held & (1u64 << number) != 0)
        .map(|(name, _)| name.to_string())
        .collect()
}

/// Whether berth holds `name` (a normalized `CAP_...`) in its bounding set.
pub fn is_held(name: &str) -> bool {
    ALL_CAPABILITIES
        .iter()
        .find(|(known, _)| *known == name)
        .is_some_and(|(_, number)| bounding_set() & (1u64 << number) != 0)
}

/// The `CapBnd:` mask of /proc/self/status (all ones if unreadable).
fn bounding_set() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("CapBnd:"))
                .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        })
        .unwrap_or(u64::MAX)
}

/// docker's capability arithmetic (see the module docs). `adds` and `drops`
/// must be normalized; `everything` is what `ALL` and `--privileged` mean.
pub fn tweak(
    defaults: &[&str],
    adds: &[String],
    drops: &[String],
    privileged: bool,
    everything: &[String],
) -> Vec<String> {
    if privileged {
        return everything.to_vec();
    }
    let has_all = |list: &[String]| list.iter().any(|c| c == ALL);
    let mut caps: Vec<String> = if has_all(adds) {
        everything
            .iter()
            .filter(|c| !drops.contains(c))
            .cloned()
            .collect()
    } else if has_all(drops) {
        adds.to_vec()
    } else {
        defaults
            .iter()
            .map(|c| c.to_string())
            .filter(|c| !drops.contains(c))
            .chain(adds.iter().cloned())
            .collect()
    };
    let mut seen = std::collections::BTreeSet::new();
    caps.retain(|c| c != ALL && seen.insert(c.clone()));
    caps
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::spec::DEFAULT_CAPABILITIES;

    fn everything() -> Vec<String> {
        ALL_CAPABILITIES
            .iter()
            .map(|(n, _)| n.to_string())
            .collect()
    }

    fn s(list: &[&str]) -> Vec<String> {
        list.iter().map(|c| c.to_string()).collect()
    }

    #[test]
    fn names_are_normalized_as_docker_does() {
        assert_eq!(normalize("net_admin").unwrap(), "CAP_NET_ADMIN");
        assert_eq!(normalize("CAP_SYS_ADMIN").unwrap(), "CAP_SYS_ADMIN");
        assert_eq!(normalize("all").unwrap(), "ALL");
        let err = normalize("fly").unwrap_err().to_string();
        assert!(err.contains("\"fly\""), "{err}");
        assert_eq!(
            normalize_all(&s(&["chown", "CAP_CHOWN", "kill"])).unwrap(),
            s(&["CAP_CHOWN", "CAP_KILL"])
        );
    }

    #[test]
    fn defaults_minus_drops_plus_adds() {
        let caps = tweak(
            &DEFAULT_CAPABILITIES,
            &s(&["CAP_NET_ADMIN"]),
            &s(&["CAP_CHOWN"]),
            false,
            &everything(),
        );
        assert_eq!(caps.len(), 14);
        assert!(caps.contains(&"CAP_NET_ADMIN".to_string()));
        assert!(!caps.contains(&"CAP_CHOWN".to_string()));
    }

    #[test]
    fn drop_all_keeps_only_the_adds_and_add_all_keeps_all_but_the_drops() {
        let caps = tweak(
            &DEFAULT_CAPABILITIES,
            &s(&["CAP_KILL"]),
            &s(&["ALL"]),
            false,
            &everything(),
        );
        assert_eq!(caps, s(&["CAP_KILL"]));
        let caps = tweak(
            &DEFAULT_CAPABILITIES,
            &s(&["ALL"]),
            &s(&["CAP_SYS_ADMIN"]),
            false,
            &everything(),
        );
        assert_eq!(caps.len(), 40);
        assert!(!caps.contains(&"CAP_SYS_ADMIN".to_string()));
    }

    #[test]
    fn privileged_gets_everything_whatever_the_flags() {
        let caps = tweak(
            &DEFAULT_CAPABILITIES,
            &[],
            &s(&["ALL"]),
            true,
            &everything(),
        );
        assert_eq!(caps.len(), 41);
    }

    #[test]
    fn the_grantable_list_is_what_the_kernel_knows_and_we_hold() {
        let caps = kernel_capabilities();
        assert_eq!(caps[0], "CAP_CHOWN");
        assert!(caps.len() >= 30, "{caps:?}");
        for cap in &caps {
            assert!(is_held(cap), "{cap}");
        }
        let held_by_status = std::fs::read_to_string("/proc/self/status").unwrap();
        let mask = held_by_status
            .lines()
            .find_map(|l| l.strip_prefix("CapBnd:"))
            .map(|h| u64::from_str_radix(h.trim(), 16).unwrap())
            .unwrap();
        assert_eq!(caps.len() as u32, mask.count_ones());
    }
}
