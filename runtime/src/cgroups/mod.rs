//! Control groups: limit and account the resources of a container's processes.
//!
//! Mechanism: cgroupfs. A cgroup is a directory; limits are files written in it
//! (`memory.max`, `pids.max`, ...); a process joins by having its pid written to
//! `cgroup.procs` (or by being born there with `clone3(CLONE_INTO_CGROUP)`).
//! Kernel interfaces used: mkdir/rmdir/read/write under /sys/fs/cgroup, statfs
//! (to tell cgroup v1 from v2), /proc/self/mountinfo (v1 mount points), poll
//! on `cgroup.events`, and on v2 `cgroup.kill`, `cgroup.freeze` and bpf(2)
//! for the device filter.
//!
//! One small trait, [`CgroupManager`], with one driver per host layout:
//! - `v1`: one hierarchy per controller (`/sys/fs/cgroup/memory/...`);
//! - `v2`: the unified hierarchy (`/sys/fs/cgroup/...`);
//! - hybrid hosts (v1 controllers plus a cgroup2 mount at
//!   `/sys/fs/cgroup/unified`) use the v1 driver for resources and also place
//!   the container in the unified hierarchy, where `cgroup.kill` and
//!   `cgroup.freeze` work even without controllers.
//!
//! The rest of the runtime only sees the trait: [`manager_for`] detects the
//! host and picks the driver. docs/cgroups.md explains the whole module.

// The contract below is shared by the process/lifecycle code and the drivers.
// Drivers live in `v1.rs`, `v2.rs` and `hybrid.rs`; `host.rs` finds the
// mount points (statfs + /proc/self/mountinfo), `path.rs` turns the OCI
// `cgroupsPath` into a safe relative path, `self_join.rs` lets a new
// process move itself into v1 hierarchies, `fsio.rs` does the file writes
// (each one logged), `devices_bpf.rs` builds the v2 device filter.

mod devices_bpf;
mod fsio;
mod host;
mod hybrid;
mod path;
mod resources;
mod self_join;
mod v1;
mod v2;

#[cfg(test)]
mod fake;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

pub use host::{
    detect, parse_mountinfo, parse_proc_cgroup, CgroupHost, CgroupMount, MountKind, V1Hierarchy,
};
pub use hybrid::HybridManager;
pub use path::{CgroupPath, DEFAULT_PARENT};
pub use self_join::{join_self, SelfJoinFile};
pub use v1::V1Manager;
pub use v2::{blkio_weight_to_io_weight, cpu_shares_to_weight, V2Manager};

/// How long `freeze`/`thaw` wait for the kernel to report the new state.
/// Tasks in uninterruptible sleep (e.g. stuck NFS I/O) delay freezing.
pub const FREEZE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long `destroy` waits for exiting processes to leave the cgroup before
/// reporting [`CgroupError::Busy`].
pub const REMOVE_TIMEOUT: Duration = Duration::from_secs(2);

/// The manager for one container's cgroup on this host: detects the layout
/// ([`detect`]) and resolves `cgroups_path` (the OCI `linux.cgroupsPath`,
/// `None` when the config has none) with [`CgroupPath::resolve`].
///
/// Nothing is created yet; call [`CgroupManager::create`]. Cheap enough to
/// call from every `berth-runtime` verb (two statfs and, on v1/hybrid hosts,
/// one read of /proc/self/mountinfo).
pub fn manager_for(
    cgroups_path: Option<&Path>,
    container_id: &str,
) -> Result<Box<dyn CgroupManager>, CgroupError> {
    CgroupHost::detect()?.manager(cgroups_path, container_id)
}

/// What to do when `controller` is missing: which limits need it (docker's
/// flags), and how to make the kernel offer it.
pub fn enable_controller_hint(controller: &str) -> String {
    let flags = match controller {
        "memory" => "-m/--memory, --memory-swap",
        "cpu" | "cpuacct" => "--cpus, --cpu-shares",
        "pids" => "--pids-limit",
        "cpuset" => "--cpuset-cpus, --cpuset-mems",
        "blkio" | "io" => "--blkio-weight",
        "hugetlb" => "hugetlb limits",
        "devices" => "device rules (--device)",
        _ => "the limit that needs it",
    };
    format!(
        "run without {flags}, or enable the controller: on cgroup v2 `echo +{controller} > /sys/fs/cgroup/cgroup.subtree_control`; \
         on v1 `mkdir /sys/fs/cgroup/{controller} && mount -t cgroup -o {controller} cgroup /sys/fs/cgroup/{controller}`; \
         if the kernel disabled it, add cgroup_enable={controller} to its command line and reboot"
    )
}

/// What kind of cgroup host this is, found by `statfs` on the mount points.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CgroupLayout {
    /// Every controller on its own v1 hierarchy; no cgroup2 mount.
    V1,
    /// Only the unified hierarchy (mounted at the cgroup root).
    V2,
    /// v1 controllers plus a cgroup2 mount (usually `/sys/fs/cgroup/unified`).
    Hybrid { unified: PathBuf },
}

/// Resource usage read back from a cgroup (for `berth stats`, `inspect --kernel`).
/// `None` when the host does not account it, or for a limit: unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct CgroupStats {
    pub memory_usage_bytes: Option<u64>,
    pub memory_limit_bytes: Option<u64>,
    pub pids_current: Option<u64>,
    pub pids_limit: Option<u64>,
    pub cpu_usage_ns: Option<u64>,
    /// Number of times the memory limit was hit and the OOM killer ran.
    pub oom_kills: Option<u64>,
}

/// The operations the runtime needs on one container's cgroup.
///
/// Implementations must only ever create, modify and remove directories that
/// they created themselves (the path given at construction).
pub trait CgroupManager: std::fmt::Debug + Send + Sync {
    /// Create the cgroup directories (in every hierarchy the driver uses).
    /// Missing parents are created too; the container's own directory must
    /// not exist yet ([`CgroupError::Exists`]). On failure nothing is left.
    fn create(&self) -> Result<(), CgroupError>;
    /// Write the limits from the OCI `linux.resources` section.
    ///
    /// Only the values present are written, so calling it again on a running
    /// container is how `berth-runtime update --resources` changes limits.
    /// Everything is validated first (controllers present, values sane), so a
    /// refused request normally writes nothing.
    fn apply_resources(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Move a process into the cgroup (writes `cgroup.procs` in each hierarchy).
    fn add_process(&self, pid: Pid) -> Result<(), CgroupError>;
    /// An fd of the unified-hierarchy directory for `clone3(CLONE_INTO_CGROUP)`,
    /// when there is one; the v1 hierarchies are joined with
    /// [`CgroupManager::self_join_files`] or [`CgroupManager::add_process`].
    fn clone_into_fd(&self) -> Option<OwnedFd>;
    /// For a new process to move itself into the v1 hierarchies: their
    /// `tasks` files, opened here (see [`join_self`]). Empty on v2.
    fn self_join_files(&self) -> Result<Vec<SelfJoinFile>, CgroupError> {
        Ok(Vec::new())
    }
    /// After [`join_self`]: move `pid` into the hierarchies the files did not
    /// cover (the unified one), unless it is there already (born there with
    /// `clone3(CLONE_INTO_CGROUP)`).
    fn join_remaining(&self, pid: Pid) -> Result<(), CgroupError>;
    /// The pids in the cgroup and in any sub-cgroups the container made
    /// (`cgroup.procs`), host pid namespace.
    fn pids(&self) -> Result<Vec<Pid>, CgroupError>;
    /// Freeze every process (v1 freezer / v2 `cgroup.freeze`), waiting until frozen.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Undo [`CgroupManager::freeze`].
    fn thaw(&self) -> Result<(), CgroupError>;
    /// Whether the cgroup is frozen (for `state` to report "paused"): v2
    /// `cgroup.freeze` is 1, v1 `freezer.state` is FROZEN.
    fn is_frozen(&self) -> Result<bool, CgroupError>;
    /// Send `signal` to every process in the cgroup. For SIGKILL on v2 (or the
    /// unified part of a hybrid host) this is `cgroup.kill`, which also catches
    /// processes forked during the kill; otherwise freeze, signal each pid, thaw
    /// (a cgroup that was frozen before stays frozen, except for SIGKILL on v1).
    /// A cgroup that no longer exists has nothing to signal: `Ok(())`.
    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError>;
    /// Current usage and limits.
    fn stats(&self) -> Result<CgroupStats, CgroupError>;
    /// Remove the cgroup directories. Fails with [`CgroupError::Busy`] while
    /// processes remain (after waiting up to [`REMOVE_TIMEOUT`] for exiting
    /// ones to leave); removing an already removed cgroup is not an error.
    /// Sub-cgroups the container made are removed too; parent directories
    /// only if this same manager created them.
    fn destroy(&self) -> Result<(), CgroupError>;
    /// The paths this manager owns, for messages and `--explain`.
    fn paths(&self) -> Vec<PathBuf>;
}

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {path}: {op}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cgroup {path} still has processes; kill them first")]
    Busy { path: PathBuf },
    #[error(
        "cgroup controller {controller} is not available on this host: {hint}; {}",
        enable_controller_hint(controller)
    )]
    MissingController { controller: String, hint: String },
    #[error("cgroup resource {what} is not supported by the {driver} driver: {hint}")]
    Unsupported {
        what: String,
        driver: &'static str,
        hint: String,
    },
    /// Neither cgroup v1 nor cgroup2 is mounted where expected.
    #[error("no cgroup filesystem at {path} ({found}): mount cgroup2 there, or tmpfs with the v1 controllers below it")]
    NoCgroupfs { path: PathBuf, found: String },
    #[error("invalid cgroups path {path:?}: {why}")]
    InvalidPath { path: String, why: String },
    /// A limit file refused a value (or is missing): names the file, the
    /// value and what the errno means for that file.
    #[error("cannot write {value:?} to {path}: {source}{hint}")]
    Write {
        path: PathBuf,
        value: String,
        #[source]
        source: std::io::Error,
        /// Empty, or "; " followed by an explanation.
        hint: String,
    },
    /// The container's own cgroup directory is already there. berth only
    /// uses (and later removes) a cgroup it created itself.
    #[error("cgroup {path} already exists: remove it (rmdir, after stopping its processes) or choose another cgroupsPath")]
    Exists { path: PathBuf },
    /// A value in `linux.resources` that cannot be right on any host.
    #[error("invalid cgroup resource {what}: {why}")]
    InvalidResource { what: String, why: String },
    /// The kernel did not reach the state we asked for in time.
    #[error("cgroup {path}: timed out after {waited_ms} ms waiting for {what}")]
    Timeout {
        path: PathBuf,
        what: &'static str,
        waited_ms: u128,
    },
    /// Loading or attaching the cgroup v2 device filter (eBPF) failed.
    #[error("cgroup {path}: device filter: {op}: {source}{verifier_log}")]
    Bpf {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
        /// Empty, or the kernel verifier's log (when loading failed).
        verifier_log: String,
    },
}

/// Send `signal` to each pid; a process that exited meanwhile is fine.
pub(crate) fn signal_each(pids: &[Pid], signal: Signal, cgroup: &Path) -> Result<(), CgroupError> {
    for &pid in pids {
        match nix::sys::signal::kill(pid, signal) {
            Ok(()) | Err(nix::errno::Errno::ESRCH) => {}
            Err(errno) => {
                return Err(CgroupError::Io {
                    op: "kill",
                    path: cgroup.join("cgroup.procs"),
                    source: errno.into(),
                })
            }
        }
    }
    tracing::debug!(count = pids.len(), %signal, "sent {signal} to {} processes of {}", pids.len(), cgroup.display());
    Ok(())
}

#[cfg(test)]
mod hint_tests {
    use super::CgroupError;

    #[test]
    fn a_missing_controller_says_which_flags_need_it_and_how_to_enable_it() {
        let err = CgroupError::MissingController {
            controller: "memory".into(),
            hint: "no v1 hierarchy carries it".into(),
        };
        let text = err.to_string();
        assert!(
            text.contains("no v1 hierarchy carries it; run without -m/--memory"),
            "{text}"
        );
        assert!(
            text.contains("echo +memory > /sys/fs/cgroup/cgroup.subtree_control"),
            "{text}"
        );
        assert!(text.contains("cgroup_enable=memory"), "{text}");
    }
}
