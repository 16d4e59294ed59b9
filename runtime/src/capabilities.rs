//! The five capability sets of the container's process.
//!
//! Mechanism: `prctl(PR_CAPBSET_DROP)` for the bounding set (needs
//! CAP_SETPCAP, so before the uid changes), `capset(2)` for effective,
//! permitted and inheritable in one call (after the uid change; the process
//! keeps its permitted set across setuid thanks to `PR_SET_KEEPCAPS`), and
//! `prctl(PR_CAP_AMBIENT)` for the ambient set, which is what lets a non-root
//! process keep capabilities across execve.
//!
//! Names are checked when config.json is loaded: an unknown name is refused
//! (a typo must not silently grant or drop a privilege). A known name the
//! running kernel does not have yet is skipped with a warning, as runc does.

use std::collections::BTreeSet;

use caps::Capability as Cap;
use oci_spec::runtime::{Capabilities, Capability, LinuxCapabilities};

use crate::error::{Error, Result};

/// The sets as capability numbers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapabilitySets {
    pub bounding: BTreeSet<u8>,
    pub effective: BTreeSet<u8>,
    pub permitted: BTreeSet<u8>,
    pub inheritable: BTreeSet<u8>,
    pub ambient: BTreeSet<u8>,
}

/// Every name config.json may use, for the error message and validation.
pub fn is_known_name(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    let full = if upper.starts_with("CAP_") {
        upper
    } else {
        format!("CAP_{upper}")
    };
    full.parse::<Cap>().is_ok()
}

/// Check the capability names in the raw JSON of a `process` object before
/// it is typed, so that an unknown one is reported by name and set.
pub fn validate_names(process: &serde_json::Value, file: &std::path::Path) -> Result<()> {
    let Some(sets) = process.get("capabilities").and_then(|c| c.as_object()) else {
        return Ok(());
    };
    for (set, names) in sets {
        for name in names.as_array().into_iter().flatten() {
            let text = name.as_str().unwrap_or_default();
            if !is_known_name(text) {
                return Err(Error::InvalidConfig {
                    file: file.to_path_buf(),
                    message: format!(
                        "process.capabilities.{set}: unknown capability {name}; names look like \"CAP_NET_ADMIN\""
                    ),
                });
            }
        }
    }
    Ok(())
}

fn number_of(cap: &Capability) -> Option<u8> {
    let name = serde_json::to_value(cap).ok()?;
    let cap: Cap = name.as_str()?.parse().ok()?;
    Some(cap.index())
}

/// The names of capability numbers (`CAP_CHOWN`, ...), for messages.
pub fn names(set: &BTreeSet<u8>) -> Vec<String> {
    set.iter()
        .map(|n| {
            caps::all()
                .into_iter()
                .find(|c| c.index() == *n)
                .map(|c| c.to_string())
                .unwrap_or_else(|| format!("CAP_{n}"))
        })
        .collect()
}

/// The highest capability number this kernel knows (/proc/sys/kernel/cap_last_cap).
pub fn last_cap() -> u8 {
    std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40)
}

impl CapabilitySets {
    /// From config.json; names the kernel lacks are dropped with a warning.
    pub fn from_spec(c: &LinuxCapabilities) -> CapabilitySets {
        let last = last_cap();
        let convert = |set: &Option<Capabilities>, which: &str| -> BTreeSet<u8> {
            let mut out = BTreeSet::new();
            for cap in set.iter().flatten() {
                match number_of(cap) {
                    Some(n) if n <= last => {
                        out.insert(n);
                    }
                    _ => tracing::warn!(
                        capability = %cap,
                        set = which,
                        "capability not supported by this kernel; ignoring it"
                    ),
                }
            }
            out
        };
        CapabilitySets {
            bounding: convert(c.bounding(), "bounding"),
            effective: convert(c.effective(), "effective"),
            permitted: convert(c.permitted(), "permitted"),
            inheritable: convert(c.inheritable(), "inheritable"),
            ambient: convert(c.ambient(), "ambient"),
        }
    }

    /// Drop from the bounding set every capability not listed. Call while
    /// still holding CAP_SETPCAP (before changing uid).
    pub fn drop_bounding(&self) -> Result<()> {
        for cap in 0..=last_cap() {
            if self.bounding.contains(&cap) {
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
            if rc != 0 {
                let errno = nix::errno::Errno::last();
                // EINVAL: the kernel does not know this number; nothing to drop.
                if errno != nix::errno::Errno::EINVAL {
                    return Err(Error::sys(
                        format!("drop capability {cap} from the bounding set"),
                        errno,
                    ));
                }
            }
        }
        Ok(())
    }

    /// Set effective, permitted and inheritable, then the ambient set.
    pub fn apply(&self) -> Result<()> {
        capset(&self.effective, &self.permitted, &self.inheritable)?;
        // SAFETY: prctl with integer arguments only.
        let rc = unsafe {
            libc::prctl(
                libc::PR_CAP_AMBIENT,
                libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
                0,
                0,
                0,
            )
        };
        if rc != 0 {
            return Err(Error::sys(
                "clear ambient capabilities",
                nix::errno::Errno::last(),
            ));
        }
        for cap in &self.ambient {
            // The kernel raises an ambient capability only if it is also
            // permitted and inheritable. `runc spec` and `crun spec` write
            // configs that list ambient capabilities without inheritable
            // ones, and both runtimes then skip them with a warning: so do we.
            if !(self.permitted.contains(cap) && self.inheritable.contains(cap)) {
                tracing::warn!(
                    cap,
                    "ambient capability {cap} skipped: it must also be permitted and inheritable"
                );
                continue;
            }
            // SAFETY: prctl with integer arguments only.
            let rc = unsafe {
                libc::prctl(
                    libc::PR_CAP_AMBIENT,
                    libc::PR_CAP_AMBIENT_RAISE as libc::c_ulong,
                    *cap as libc::c_ulong,
                    0,
                    0,
                )
            };
            if rc != 0 {
                return Err(Error::sys(
                    format!("raise ambient capability {cap}"),
                    nix::errno::Errno::last(),
                ));
            }
        }
        Ok(())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capset(2)` with the three sets in two 32-bit words each (version 3).
fn capset(
    effective: &BTreeSet<u8>,
    permitted: &BTreeSet<u8>,
    inheritable: &BTreeSet<u8>,
) -> Result<()> {
    let mut data = [CapData::default(); 2];
    let mut put = |set: &BTreeSet<u8>, pick: fn(&mut CapData) -> &mut u32| {
        for cap in set {
            let word = (*cap / 32) as usize;
            if word < 2 {
                *pick(&mut data[word]) |= 1 << (cap % 32);
            }
        }
    };
    put(effective, |d| &mut d.effective);
    put(permitted, |d| &mut d.permitted);
    put(inheritable, |d| &mut d.inheritable);
    let mut header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    // SAFETY: header and data are valid, properly laid out (#[repr(C)])
    // structures of the sizes capset(2) expects for version 3.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_capset,
            &mut header as *mut CapHeader,
            data.as_ptr(),
        )
    };
    if rc != 0 {
        return Err(Error::sys(
            "capset (effective must be within permitted)",
            nix::errno::Errno::last(),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked_with_or_without_prefix() {
        assert!(is_known_name("CAP_NET_ADMIN"));
        assert!(is_known_name("net_admin"));
        assert!(!is_known_name("CAP_FLY"));
        let process = serde_json::json!({"capabilities": {"bounding": ["CAP_CHOWN", "CAP_FLY"]}});
        let err = validate_names(&process, std::path::Path::new("config.json")).unwrap_err();
        assert_eq!(
            err.to_string(),
            "config.json: process.capabilities.bounding: unknown capability \"CAP_FLY\"; names look like \"CAP_NET_ADMIN\""
        );
    }

    #[test]
    fn spec_sets_become_numbers() {
        let c: LinuxCapabilities = serde_json::from_value(serde_json::json!({
            "bounding": ["CAP_CHOWN", "CAP_KILL"],
            "effective": ["CAP_KILL"]
        }))
        .unwrap();
        let sets = CapabilitySets::from_spec(&c);
        assert_eq!(sets.bounding, BTreeSet::from([0, 5]));
        assert_eq!(sets.effective, BTreeSet::from([5]));
        assert!(sets.ambient.is_empty());
    }
}
