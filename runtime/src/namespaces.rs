//! Namespaces: which kernel views the container gets of its own, and which it
//! shares by joining an existing one.
//!
//! Mechanism: `clone3(2)` flags (`CLONE_NEWNS`, `CLONE_NEWUTS`,
//! `CLONE_NEWIPC`, `CLONE_NEWNET`, `CLONE_NEWPID`, `CLONE_NEWUSER`) create new
//! namespaces for the child; `unshare(2)` creates the cgroup and time
//! namespaces *after* the child joined its cgroup (a cgroup namespace is
//! rooted where the process is when it is created) and after the time
//! offsets can be written (`/proc/self/timens_offsets`, before any process
//! is in the new time namespace — execve moves the process into it);
//! `setns(2)` on an fd of `/proc/PID/ns/TYPE` (or a bind-mounted copy) joins
//! an existing one. `/proc/PID/uid_map` and `gid_map` (written by the parent)
//! give a new user namespace its ids.
//!
//! Joining pid, user and time namespaces only affects the *children* of the
//! caller (pid, time) or must precede creating the others (user), so when
//! any of those is joined — or a new user namespace must own namespaces that
//! are joined — an intermediate process joins everything first and then
//! clones the init (see [`crate::process::spawn`]). Otherwise the init joins
//! the paths itself after the clone.

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};

use nix::sched::CloneFlags;
use oci_spec::runtime::{LinuxIdMapping, LinuxNamespace, LinuxNamespaceType};

use crate::error::{Error, Result};

/// `CLONE_NEWTIME` (Linux 5.6); not in nix's flag set.
pub const CLONE_NEWTIME: CloneFlags = CloneFlags::from_bits_retain(0x80);

/// The flag for a namespace type.
pub fn flag_of(t: LinuxNamespaceType) -> CloneFlags {
    match t {
        LinuxNamespaceType::Mount => CloneFlags::CLONE_NEWNS,
        LinuxNamespaceType::Cgroup => CloneFlags::CLONE_NEWCGROUP,
        LinuxNamespaceType::Uts => CloneFlags::CLONE_NEWUTS,
        LinuxNamespaceType::Ipc => CloneFlags::CLONE_NEWIPC,
        LinuxNamespaceType::User => CloneFlags::CLONE_NEWUSER,
        LinuxNamespaceType::Pid => CloneFlags::CLONE_NEWPID,
        LinuxNamespaceType::Network => CloneFlags::CLONE_NEWNET,
        LinuxNamespaceType::Time => CLONE_NEWTIME,
    }
}

/// The /proc/PID/ns file name of a namespace type.
pub fn proc_name(t: LinuxNamespaceType) -> &'static str {
    match t {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Pid => "pid",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Time => "time",
    }
}

/// A namespace to join: its type and an open fd of it.
#[derive(Debug)]
pub struct Join {
    pub kind: LinuxNamespaceType,
    pub path: PathBuf,
    pub fd: OwnedFd,
}

/// What to do about namespaces, decided from config.json before the clone.
#[derive(Debug)]
pub struct NamespacePlan {
    /// New namespaces created by the clone itself.
    pub clone_flags: CloneFlags,
    /// New namespaces the init unshares after `Go` (cgroup, time).
    pub unshare_later: CloneFlags,
    /// Namespaces to join, in the order to join them (user first).
    pub joins: Vec<Join>,
    /// Join in an intermediate process before the clone (else: in the init).
    pub join_before_clone: bool,
    pub new_user: bool,
    /// Namespace types the container has apart from the host's (new or joined).
    pub own: Vec<LinuxNamespaceType>,
}

impl NamespacePlan {
    pub fn has(&self, t: LinuxNamespaceType) -> bool {
        self.own.contains(&t)
    }

    /// Make the plan; opens the fds of the namespaces to join.
    pub fn from_spec(
        namespaces: &[LinuxNamespace],
        uid_mappings: &[LinuxIdMapping],
        gid_mappings: &[LinuxIdMapping],
    ) -> Result<NamespacePlan> {
        let mut plan = NamespacePlan {
            clone_flags: CloneFlags::empty(),
            unshare_later: CloneFlags::empty(),
            joins: Vec::new(),
            join_before_clone: false,
            new_user: false,
            own: Vec::new(),
        };
        let config_error = |message: String| Error::InvalidConfig {
            file: "config.json".into(),
            message,
        };
        for ns in namespaces {
            let t = ns.typ();
            if plan.own.contains(&t) {
                return Err(config_error(format!(
                    "linux.namespaces lists {} twice",
                    proc_name(t)
                )));
            }
            plan.own.push(t);
            match ns.path() {
                Some(path) if !path.as_os_str().is_empty() => {
                    plan.joins.push(open_namespace(t, path)?);
                }
                _ => match t {
                    LinuxNamespaceType::Cgroup | LinuxNamespaceType::Time => {
                        plan.unshare_later |= flag_of(t)
                    }
                    _ => plan.clone_flags |= flag_of(t),
                },
            }
        }
        if plan.has(LinuxNamespaceType::Time) && !time_namespaces_supported() {
            return Err(Error::Unsupported(
                "this kernel has no time namespaces (/proc/self/ns/time is missing); remove the time namespace from config.json".into(),
            ));
        }
        plan.new_user = plan.clone_flags.contains(CloneFlags::CLONE_NEWUSER);
        let has_maps = !uid_mappings.is_empty() || !gid_mappings.is_empty();
        if plan.new_user && (uid_mappings.is_empty() || gid_mappings.is_empty()) {
            return Err(config_error(
                "a new user namespace needs linux.uidMappings and linux.gidMappings".into(),
            ));
        }
        if has_maps && !plan.new_user {
            return Err(config_error(
                "linux.uidMappings/gidMappings are given but no new user namespace is asked for"
                    .into(),
            ));
        }
        // User first: the other joins then happen with its privileges.
        plan.joins
            .sort_by_key(|j| j.kind != LinuxNamespaceType::User);
        let joins_pre_clone_kind = plan.joins.iter().any(|j| {
            matches!(
                j.kind,
                LinuxNamespaceType::User | LinuxNamespaceType::Pid | LinuxNamespaceType::Time
            )
        });
        plan.join_before_clone = joins_pre_clone_kind || (plan.new_user && !plan.joins.is_empty());
        Ok(plan)
    }
}

fn open_namespace(t: LinuxNamespaceType, path: &Path) -> Result<Join> {
    let fd = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        Error::sys(
            format!("open {} namespace {}", proc_name(t), path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })?;
    Ok(Join {
        kind: t,
        path: path.to_path_buf(),
        fd,
    })
}

/// Join each namespace of `joins` with `setns(2)`.
pub fn join_all(joins: &[Join]) -> Result<()> {
    for j in joins {
        nix::sched::setns(&j.fd, flag_of(j.kind)).map_err(|e| {
            Error::sys(
                format!("setns {} namespace {}", proc_name(j.kind), j.path.display()),
                e,
            )
        })?;
        tracing::debug!(step = "setns", namespace = proc_name(j.kind), path = %j.path.display(),
            "setns into the {} namespace {} (an existing one, joined rather than created)", proc_name(j.kind), j.path.display());
    }
    Ok(())
}

pub fn time_namespaces_supported() -> bool {
    Path::new("/proc/self/ns/time").exists()
}

/// The text of a uid_map/gid_map file: `container host size` per line.
pub fn id_map_text(mappings: &[LinuxIdMapping]) -> String {
    mappings
        .iter()
        .map(|m| format!("{} {} {}\n", m.container_id(), m.host_id(), m.size()))
        .collect()
}

/// Write the id maps of the process `pid` (the parent's job: a process cannot
/// map ids it does not own from inside).
pub fn write_id_maps(pid: i32, uids: &[LinuxIdMapping], gids: &[LinuxIdMapping]) -> Result<()> {
    let write = |file: &str, text: String| {
        let path = format!("/proc/{pid}/{file}");
        std::fs::write(&path, text.as_bytes())
            .map_err(|e| Error::io(format!("write {path} ({})", text.trim()), e))
    };
    write("uid_map", id_map_text(uids))?;
    write("gid_map", id_map_text(gids))
}

/// `/proc/self/timens_offsets` text for `linux.timeOffsets`.
pub fn time_offsets_text(
    offsets: &std::collections::HashMap<String, oci_spec::runtime::LinuxTimeOffset>,
) -> Result<String> {
    let mut lines = Vec::new();
    let mut keys: Vec<&String> = offsets.keys().collect();
    keys.sort();
    for clock in keys {
        let o = &offsets[clock];
        if !matches!(clock.as_str(), "monotonic" | "boottime") {
            return Err(Error::InvalidConfig {
                file: "config.json".into(),
                message: format!(
                    "linux.timeOffsets: clock {clock:?} cannot be offset (only monotonic and boottime)"
                ),
            });
        }
        lines.push(format!(
            "{clock} {} {}\n",
            o.secs().unwrap_or(0),
            o.nanosecs().unwrap_or(0)
        ));
    }
    Ok(lines.concat())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(json: serde_json::Value) -> Vec<LinuxNamespace> {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn new_namespaces_become_clone_flags_cgroup_and_time_later() {
        let plan = NamespacePlan::from_spec(
            &ns(serde_json::json!([
                {"type": "pid"}, {"type": "mount"}, {"type": "network"},
                {"type": "ipc"}, {"type": "uts"}, {"type": "cgroup"}
            ])),
            &[],
            &[],
        )
        .unwrap();
        assert_eq!(
            plan.clone_flags,
            CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWNET
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS
        );
        assert_eq!(plan.unshare_later, CloneFlags::CLONE_NEWCGROUP);
        assert!(!plan.join_before_clone);
    }

    #[test]
    fn joining_a_pid_namespace_needs_the_intermediate_and_user_joins_first() {
        let plan = NamespacePlan::from_spec(
            &ns(serde_json::json!([
                {"type": "network", "path": "/proc/self/ns/net"},
                {"type": "pid", "path": "/proc/self/ns/pid"},
                {"type": "mount"}
            ])),
            &[],
            &[],
        )
        .unwrap();
        assert!(plan.join_before_clone);
        assert_eq!(plan.joins.len(), 2);
        let only_net = NamespacePlan::from_spec(
            &ns(serde_json::json!([{"type": "network", "path": "/proc/self/ns/net"}])),
            &[],
            &[],
        )
        .unwrap();
        assert!(!only_net.join_before_clone);
    }

    #[test]
    fn bad_combinations_are_refused() {
        let twice = NamespacePlan::from_spec(
            &ns(serde_json::json!([{"type": "pid"}, {"type": "pid"}])),
            &[],
            &[],
        );
        assert!(twice.unwrap_err().to_string().contains("twice"));
        let user_without_maps =
            NamespacePlan::from_spec(&ns(serde_json::json!([{"type": "user"}])), &[], &[]);
        assert!(user_without_maps
            .unwrap_err()
            .to_string()
            .contains("uidMappings"));
        let missing = NamespacePlan::from_spec(
            &ns(serde_json::json!([{"type": "network", "path": "/nonexistent/ns"}])),
            &[],
            &[],
        );
        assert_eq!(
            missing.unwrap_err().to_string(),
            "open net namespace /nonexistent/ns: No such file or directory"
        );
    }

    #[test]
    fn id_maps_and_offsets_are_formatted_for_the_kernel() {
        let maps: Vec<LinuxIdMapping> = serde_json::from_value(serde_json::json!([
            {"containerID": 0, "hostID": 100000, "size": 65536}
        ]))
        .unwrap();
        assert_eq!(id_map_text(&maps), "0 100000 65536\n");
        let offsets = serde_json::from_value(serde_json::json!({
            "monotonic": {"secs": 3600}, "boottime": {"secs": 1, "nanosecs": 5}
        }))
        .unwrap();
        assert_eq!(
            time_offsets_text(&offsets).unwrap(),
            "boottime 1 5\nmonotonic 3600 0\n"
        );
    }
}
