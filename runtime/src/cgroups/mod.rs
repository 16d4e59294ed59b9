//! Control groups: limit and account the resources of a container's processes.
//!
//! Mechanism: cgroupfs. A cgroup is a directory; limits are files written in it
//! (`memory.max`, `pids.max`, ...); a process joins by having its pid written to
//! `cgroup.procs` (or by being born there with `clone3(CLONE_INTO_CGROUP)`).
//! Kernel interfaces used: mkdir/rmdir/read/write under /sys/fs/cgroup, statfs
//! (to tell cgroup v1 from v2), and on v2 `cgroup.kill` and `cgroup.freeze`.
//!
//! One small trait, [`CgroupManager`], with one driver per host layout:
//! - `v1`: one hierarchy per controller (`/sys/fs/cgroup/memory/...`);
//! - `v2`: the unified hierarchy (`/sys/fs/cgroup/...`);
//! - hybrid hosts (v1 controllers plus a cgroup2 mount at
//!   `/sys/fs/cgroup/unified`) use the v1 driver for resources and also place
//!   the container in the unified hierarchy, where `cgroup.kill` and
//!   `cgroup.freeze` work even without controllers.
//!
//! The rest of the runtime only sees the trait; [`detect`] picks the driver.

// The contract below is shared by the process/lifecycle code and the drivers.
// Drivers live in `v1.rs`, `v2.rs` (and `hybrid.rs` if it needs its own type).

use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

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
    fn create(&self) -> Result<(), CgroupError>;
    /// Write the limits from the OCI `linux.resources` section.
    fn apply_resources(&self, resources: &LinuxResources) -> Result<(), CgroupError>;
    /// Move a process into the cgroup (writes `cgroup.procs` in each hierarchy).
    fn add_process(&self, pid: Pid) -> Result<(), CgroupError>;
    /// An fd of the unified-hierarchy directory for `clone3(CLONE_INTO_CGROUP)`,
    /// when there is one; the caller still calls [`CgroupManager::add_process`]
    /// for v1 hierarchies.
    fn clone_into_fd(&self) -> Option<OwnedFd>;
    /// The pids in the cgroup (`cgroup.procs`), host pid namespace.
    fn pids(&self) -> Result<Vec<Pid>, CgroupError>;
    /// Freeze every process (v1 freezer / v2 `cgroup.freeze`), waiting until frozen.
    fn freeze(&self) -> Result<(), CgroupError>;
    /// Undo [`CgroupManager::freeze`].
    fn thaw(&self) -> Result<(), CgroupError>;
    /// Send `signal` to every process in the cgroup. For SIGKILL on v2 (or the
    /// unified part of a hybrid host) this is `cgroup.kill`, which also catches
    /// processes forked during the kill; otherwise freeze, signal each pid, thaw.
    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError>;
    /// Current usage and limits.
    fn stats(&self) -> Result<CgroupStats, CgroupError>;
    /// Remove the cgroup directories. Fails with [`CgroupError::Busy`] while
    /// processes remain; removing an already removed cgroup is not an error.
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
    #[error("cgroup controller {controller} is not available on this host: {hint}")]
    MissingController { controller: String, hint: String },
    #[error("cgroup resource {what} is not supported by the {driver} driver: {hint}")]
    Unsupported {
        what: String,
        driver: &'static str,
        hint: String,
    },
    #[error("invalid cgroups path {path:?}: {why}")]
    InvalidPath { path: String, why: String },
}
