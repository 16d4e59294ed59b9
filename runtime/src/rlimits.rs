//! `process.rlimits`: per-process resource limits (open files, processes...).
//!
//! Mechanism: `prlimit(2)` on the calling process, in the container's init
//! (or exec) process before execve; limits are inherited across it.
//!
//! Raising a *hard* limit above the current one needs CAP_SYS_RESOURCE, which
//! a runtime does not always have (root on this project's CI lacks it: the
//! hard nofile limit there is 20000). The runtime never insists: such a
//! limit is lowered to what the host allows, with a warning ([`fit_to_host`]).
//! Requests that cannot mean anything (soft above hard, a limit given twice)
//! are refused before the container is created.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType};

use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rlimit {
    pub name: &'static str,
    pub resource: libc::__rlimit_resource_t,
    pub soft: u64,
    pub hard: u64,
}

fn resource_of(t: PosixRlimitType) -> (&'static str, libc::__rlimit_resource_t) {
    use PosixRlimitType::*;
    match t {
        RlimitCpu => ("RLIMIT_CPU", libc::RLIMIT_CPU),
        RlimitFsize => ("RLIMIT_FSIZE", libc::RLIMIT_FSIZE),
        RlimitData => ("RLIMIT_DATA", libc::RLIMIT_DATA),
        RlimitStack => ("RLIMIT_STACK", libc::RLIMIT_STACK),
        RlimitCore => ("RLIMIT_CORE", libc::RLIMIT_CORE),
        RlimitRss => ("RLIMIT_RSS", libc::RLIMIT_RSS),
        RlimitNproc => ("RLIMIT_NPROC", libc::RLIMIT_NPROC),
        RlimitNofile => ("RLIMIT_NOFILE", libc::RLIMIT_NOFILE),
        RlimitMemlock => ("RLIMIT_MEMLOCK", libc::RLIMIT_MEMLOCK),
        RlimitAs => ("RLIMIT_AS", libc::RLIMIT_AS),
        RlimitLocks => ("RLIMIT_LOCKS", libc::RLIMIT_LOCKS),
        RlimitSigpending => ("RLIMIT_SIGPENDING", libc::RLIMIT_SIGPENDING),
        RlimitMsgqueue => ("RLIMIT_MSGQUEUE", libc::RLIMIT_MSGQUEUE),
        RlimitNice => ("RLIMIT_NICE", libc::RLIMIT_NICE),
        RlimitRtprio => ("RLIMIT_RTPRIO", libc::RLIMIT_RTPRIO),
        RlimitRttime => ("RLIMIT_RTTIME", libc::RLIMIT_RTTIME),
    }
}

/// Convert and check config.json's list: no duplicates, soft <= hard.
pub fn from_spec(list: &[PosixRlimit]) -> Result<Vec<Rlimit>> {
    let mut out: Vec<Rlimit> = Vec::new();
    for r in list {
        let (name, resource) = resource_of(r.typ());
        let bad = |why: String| Error::InvalidConfig {
            file: "config.json".into(),
            message: format!("process.rlimits {name}: {why}"),
        };
        if out.iter().any(|o| o.resource == resource) {
            return Err(bad("given twice".into()));
        }
        if r.soft() > r.hard() {
            return Err(bad(format!(
                "soft limit {} is above the hard limit {}",
                r.soft(),
                r.hard()
            )));
        }
        out.push(Rlimit {
            name,
            resource,
            soft: r.soft(),
            hard: r.hard(),
        });
    }
    Ok(out)
}

/// The calling process's (soft, hard) limit.
pub fn current(resource: libc::__rlimit_resource_t) -> Result<(u64, u64)> {
    let mut now = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `now` is a valid out-pointer for the duration of the call.
    let rc = unsafe { libc::getrlimit(resource, &mut now) };
    if rc != 0 {
        return Err(Error::sys("getrlimit", nix::errno::Errno::last()));
    }
    Ok((now.rlim_cur, now.rlim_max))
}

/// Without CAP_SYS_RESOURCE a process may lower its hard limits but never
/// raise them: a limit above the host's hard limit is lowered to it (soft
/// too, if it was above), with a warning naming both numbers, rather than
/// failing the container. (podman asks for nofile and nproc = 1048576 as
/// root, which a host like this project's CI cannot grant.)
pub fn fit_to_host(limits: &[Rlimit]) -> Result<Vec<Rlimit>> {
    let can_raise = caps::has_cap(
        None,
        caps::CapSet::Effective,
        caps::Capability::CAP_SYS_RESOURCE,
    )
    .unwrap_or(false);
    if can_raise {
        return Ok(limits.to_vec());
    }
    let mut fitted = Vec::with_capacity(limits.len());
    for limit in limits {
        let (_, host_hard) = current(limit.resource)?;
        let mut fit = *limit;
        if limit.hard > host_hard {
            fit.hard = host_hard;
            fit.soft = limit.soft.min(host_hard);
            tracing::warn!(
                "process.rlimits {}: soft={} hard={} asked, but this host's hard limit is {} and berth-runtime lacks CAP_SYS_RESOURCE to raise it; using soft={} hard={}",
                limit.name,
                fmt_limit(limit.soft),
                fmt_limit(limit.hard),
                fmt_limit(host_hard),
                fmt_limit(fit.soft),
                fmt_limit(fit.hard)
            );
        }
        fitted.push(fit);
    }
    Ok(fitted)
}

fn fmt_limit(v: u64) -> String {
    if v == libc::RLIM_INFINITY {
        "unlimited".into()
    } else {
        v.to_string()
    }
}

/// Set every limit on the calling process.
pub fn apply(limits: &[Rlimit]) -> Result<()> {
    for limit in limits {
        let value = libc::rlimit {
            rlim_cur: limit.soft,
            rlim_max: limit.hard,
        };
        // SAFETY: `value` is a valid rlimit for the duration of the call.
        let rc = unsafe { libc::setrlimit(limit.resource, &value) };
        if rc != 0 {
            return Err(Error::sys(
                format!(
                    "setrlimit {} soft={} hard={}",
                    limit.name,
                    fmt_limit(limit.soft),
                    fmt_limit(limit.hard)
                ),
                nix::errno::Errno::last(),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rl(json: serde_json::Value) -> Vec<PosixRlimit> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn duplicates_and_inverted_limits_are_refused() {
        let err = from_spec(&rl(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10},
            {"type": "RLIMIT_NOFILE", "soft": 10, "hard": 10}
        ])))
        .unwrap_err();
        assert!(err.to_string().contains("given twice"));
        let err = from_spec(&rl(serde_json::json!([
            {"type": "RLIMIT_NPROC", "soft": 11, "hard": 10}
        ])))
        .unwrap_err();
        assert!(err.to_string().contains("above the hard limit"), "{err}");
    }

    #[test]
    fn a_limit_above_the_host_hard_limit_is_lowered_without_cap_sys_resource() {
        let has = caps::has_cap(
            None,
            caps::CapSet::Effective,
            caps::Capability::CAP_SYS_RESOURCE,
        )
        .unwrap();
        let (_, hard) = current(libc::RLIMIT_NOFILE).unwrap();
        if hard == libc::RLIM_INFINITY {
            return; // nothing is above unlimited
        }
        let limits = from_spec(&rl(serde_json::json!([
            {"type": "RLIMIT_NOFILE", "soft": hard + 5, "hard": hard + 10},
            {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
        ])))
        .unwrap();
        let fitted = fit_to_host(&limits).unwrap();
        if has {
            assert_eq!(fitted, limits, "with CAP_SYS_RESOURCE nothing changes");
        } else {
            assert_eq!((fitted[0].soft, fitted[0].hard), (hard, hard));
        }
        assert_eq!(fitted[1], limits[1], "a limit within the host's is kept");
    }
}
