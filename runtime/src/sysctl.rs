//! `linux.sysctl`: kernel parameters set for the container.
//!
//! Mechanism: a write to `/proc/sys/<key with dots as slashes>` through the
//! container's /proc. Only parameters that belong to a namespace the
//! container owns may be set (as runc checks): `net.*` needs its own network
//! namespace, the System V IPC and mqueue ones its own IPC namespace,
//! `kernel.hostname`/`kernel.domainname` its own UTS namespace. Anything else
//! would change the host for everyone and is refused.

use std::path::PathBuf;

use crate::error::{Error, Result};

/// Which of the container's namespaces exist (new or joined, not the host's).
#[derive(Debug, Clone, Copy, Default)]
pub struct OwnNamespaces {
    pub net: bool,
    pub ipc: bool,
    pub uts: bool,
}

const IPC_KEYS: &[&str] = &[
    "kernel.msgmax",
    "kernel.msgmnb",
    "kernel.msgmni",
    "kernel.sem",
    "kernel.shmall",
    "kernel.shmmax",
    "kernel.shmmni",
    "kernel.shm_rmid_forced",
];

/// Check every key; return them sorted (a stable order for the writes).
pub fn validate(
    sysctl: &std::collections::HashMap<String, String>,
    own: OwnNamespaces,
) -> Result<Vec<(String, String)>> {
    let mut out = Vec::new();
    for (key, value) in sysctl {
        let refuse = |why: &str| Error::InvalidConfig {
            file: "config.json".into(),
            message: format!("linux.sysctl {key:?}: {why}"),
        };
        if key.is_empty()
            || key.contains("..")
            || key.starts_with(['.', '/'])
            || !key
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
        {
            return Err(refuse("not a sysctl name"));
        }
        let needs = if IPC_KEYS.contains(&key.as_str()) || key.starts_with("fs.mqueue.") {
            ("ipc", own.ipc)
        } else if key.starts_with("net.") {
            ("network", own.net)
        } else if key == "kernel.hostname" || key == "kernel.domainname" {
            ("uts", own.uts)
        } else {
            return Err(refuse(
                "not namespaced: setting it would change the host for everyone",
            ));
        };
        if !needs.1 {
            return Err(refuse(&format!(
                "needs the container to have its own {} namespace",
                needs.0
            )));
        }
        out.push((key.clone(), value.clone()));
    }
    out.sort();
    Ok(out)
}

/// `/proc/sys/net/ipv4/ip_forward` for `net.ipv4.ip_forward`.
pub fn proc_path(key: &str) -> PathBuf {
    PathBuf::from("/proc/sys").join(key.replace('.', "/"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn map(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn namespaced_keys_need_their_namespace() {
        let all = OwnNamespaces {
            net: true,
            ipc: true,
            uts: true,
        };
        let ok = validate(
            &map(&[("net.ipv4.ip_forward", "1"), ("kernel.shmmax", "1000")]),
            all,
        )
        .unwrap();
        assert_eq!(ok[0].0, "kernel.shmmax");
        let err = validate(
            &map(&[("net.ipv4.ip_forward", "1")]),
            OwnNamespaces::default(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("own network namespace"), "{err}");
        let err = validate(&map(&[("vm.swappiness", "1")]), all).unwrap_err();
        assert!(err.to_string().contains("not namespaced"), "{err}");
        assert!(validate(&map(&[("net/../../x", "1")]), all).is_err());
    }

    #[test]
    fn dots_become_slashes() {
        assert_eq!(
            proc_path("net.ipv4.ip_forward"),
            PathBuf::from("/proc/sys/net/ipv4/ip_forward")
        );
    }
}
