//! The cgroup v1 driver: one hierarchy per controller (or per group of
//! comounted controllers), so a container has one directory in each.
//!
//! Mechanism: mkdir/rmdir under every mounted v1 hierarchy
//! (/sys/fs/cgroup/memory/berth/ID, /sys/fs/cgroup/cpu/berth/ID, ...); limits
//! in `memory.limit_in_bytes`, `cpu.cfs_quota_us`, `pids.max`, ...; the
//! devices controller's `devices.allow`/`devices.deny`; the freezer's
//! `freezer.state`. v1 files have no change notification, so waiting (for
//! FROZEN, for an empty cgroup) re-reads them with a short backoff.
//!
//! v1 quirks handled here:
//! - a new cpuset cgroup starts with empty `cpuset.cpus`/`cpuset.mems` and
//!   refuses tasks (ENOSPC) until they are set: every empty level down to the
//!   container's directory gets its parent's, including a shared parent that
//!   a concurrent start made a moment ago and has not filled yet;
//! - `memory.memsw.limit_in_bytes` (memory+swap) must stay >= the memory
//!   limit at every moment: the two are written in whichever order keeps that;
//! - `devices.allow` with type `a` means every device whatever follows it,
//!   so `a 1:3 r` is written as `c 1:3 r` and `b 1:3 r`.
//!
//! Named hierarchies without controllers (`name=systemd`) are not used (see
//! host.rs).

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{
    LinuxBlockIo, LinuxCpu, LinuxDeviceCgroup, LinuxMemory, LinuxNetwork, LinuxResources,
};

use super::devices_bpf::{self, ACC_MKNOD, ACC_READ, ACC_WRITE, DEV_BLOCK};
use super::host::{MkdirHook, V1Hierarchy};
use super::path::CgroupPath;
use super::resources::{self, Controller};
use super::v2::warn_ignored_memory;
use super::{
    fsio, signal_each, CgroupError, CgroupManager, CgroupStats, SelfJoinFile, FREEZE_TIMEOUT,
    REMOVE_TIMEOUT,
};

/// What v1 memory files report for "no limit" (LONG_MAX rounded down to a
/// page); anything this large is shown as unlimited.
const V1_UNLIMITED: u64 = 0x7FFF_FFFF_FFFF_0000;

/// The container's directory in one hierarchy.
#[derive(Debug, Clone)]
struct V1Dir {
    controllers: Vec<String>,
    mount: PathBuf,
    dir: PathBuf,
}

#[derive(Debug)]
pub struct V1Manager {
    dirs: Vec<V1Dir>,
    path: CgroupPath,
    /// Directories `create` made, in creation order: only those are removed.
    created: Mutex<Vec<PathBuf>>,
    hook: MkdirHook,
}

/// A v1 value: negative means unlimited, which v1 spells -1.
fn v1_value(v: i64) -> String {
    if v < 0 {
        "-1".into()
    } else {
        v.to_string()
    }
}

/// The `devices.allow`/`devices.deny` writes for one OCI rule.
pub(crate) fn device_writes(
    rule: &LinuxDeviceCgroup,
) -> Result<Vec<(&'static str, String)>, CgroupError> {
    let Some(r) = devices_bpf::to_rule(rule)? else {
        return Ok(Vec::new()); // fifo: never checked by the kernel
    };
    let file = if r.allow {
        "devices.allow"
    } else {
        "devices.deny"
    };
    if r.dev_type.is_none()
        && r.major.is_none()
        && r.minor.is_none()
        && r.access == ACC_READ | ACC_WRITE | ACC_MKNOD
    {
        return Ok(vec![(file, "a".to_string())]);
    }
    let number = |n: Option<i32>| n.map_or("*".to_string(), |n| n.to_string());
    let access: String = [(ACC_READ, 'r'), (ACC_WRITE, 'w'), (ACC_MKNOD, 'm')]
        .iter()
        .filter(|(bit, _)| r.access & bit != 0)
        .map(|(_, c)| *c)
        .collect();
    let types: &[char] = match r.dev_type {
        None => &['c', 'b'],
        Some(DEV_BLOCK) => &['b'],
        Some(_) => &['c'],
    };
    Ok(types
        .iter()
        .map(|t| {
            (
                file,
                format!("{t} {}:{} {access}", number(r.major), number(r.minor)),
            )
        })
        .collect())
}

impl V1Manager {
    pub(crate) fn new(hierarchies: Vec<V1Hierarchy>, path: CgroupPath, hook: MkdirHook) -> Self {
        let dirs = hierarchies
            .into_iter()
            .map(|h| V1Dir {
                dir: path.under(&h.mount_point),
                controllers: h.controllers,
                mount: h.mount_point,
            })
            .collect();
        Self {
            dirs,
            path,
            created: Mutex::new(Vec::new()),
            hook,
        }
    }

    /// The container's directory in the hierarchy carrying `controller`.
    pub fn dir_of(&self, controller: &str) -> Option<&Path> {
        self.dirs
            .iter()
            .find(|d| d.controllers.iter().any(|c| c == controller))
            .map(|d| d.dir.as_path())
    }

    pub(crate) fn has(&self, controller: Controller) -> bool {
        self.dir_of(controller.v1_name()).is_some()
    }

    fn require(&self, controller: &str) -> Result<&Path, CgroupError> {
        self.dir_of(controller).ok_or_else(|| {
            let mounted: Vec<String> = self.dirs.iter().map(|d| d.controllers.join(",")).collect();
            CgroupError::MissingController {
                controller: controller.into(),
                hint: format!(
                    "no v1 hierarchy carries it (mounted: [{}])",
                    mounted.join(" ")
                ),
            }
        })
    }

    /// Everything that can be checked before the first write.
    pub(crate) fn check(
        &self,
        controllers: &[Controller],
        r: &LinuxResources,
    ) -> Result<(), CgroupError> {
        for c in controllers {
            self.require(c.v1_name())?;
        }
        let mine = |c| controllers.contains(&c);
        if let (true, Some(m)) = (mine(Controller::Memory), r.memory()) {
            resources::check_memory_swap(m.limit(), m.swap())?;
            if let Some(s) = m.swappiness().filter(|s| *s > 100) {
                return Err(CgroupError::InvalidResource {
                    what: format!("memory.swappiness {s}"),
                    why: "must be between 0 and 100".into(),
                });
            }
        }
        if mine(Controller::Hugetlb) {
            for limit in r.hugepage_limits().iter().flatten() {
                resources::check_page_size(limit.page_size())?;
            }
        }
        if mine(Controller::Devices) {
            for rule in r.devices().iter().flatten() {
                device_writes(rule)?;
            }
        }
        Ok(())
    }

    /// Write the limits of `controllers` (already checked).
    pub(crate) fn write(
        &self,
        controllers: &[Controller],
        r: &LinuxResources,
    ) -> Result<(), CgroupError> {
        for &c in controllers {
            let dir = self.require(c.v1_name())?;
            match c {
                Controller::Memory => write_memory(dir, r.memory().as_ref().expect("requested")),
                Controller::Cpu => write_cpu(dir, r.cpu().as_ref().expect("requested")),
                Controller::Cpuset => write_cpuset(dir, r.cpu().as_ref().expect("requested")),
                Controller::Pids => {
                    let limit = r.pids().as_ref().expect("requested").limit();
                    fsio::write(
                        dir,
                        "pids.max",
                        &if limit > 0 {
                            limit.to_string()
                        } else {
                            "max".into()
                        },
                    )
                }
                Controller::Io => write_blkio(dir, r.block_io().as_ref().expect("requested")),
                Controller::Hugetlb => write_hugetlb(dir, r),
                Controller::Devices => {
                    write_devices(dir, r.devices().as_deref().unwrap_or_default())
                }
                Controller::NetCls | Controller::NetPrio => {
                    write_network(dir, c, r.network().as_ref().expect("requested"))
                }
            }?;
        }
        Ok(())
    }

    /// A new cpuset cgroup has no CPUs and memory nodes, and the kernel
    /// refuses to move tasks into it (ENOSPC). Fill every level from the
    /// mount down to the container's directory with its parent's set when
    /// empty — not only the levels this call made: a shared parent such as
    /// /berth may have just been made by a concurrent start that has not
    /// filled it yet, and copying its empty set would leave ours empty too.
    fn init_cpuset(&self, d: &V1Dir) -> Result<(), CgroupError> {
        let mut dir = d.mount.clone();
        for component in self.path.relative().components() {
            dir.push(component);
            for file in ["cpuset.cpus", "cpuset.mems"] {
                if fsio::read(&dir, file)?.trim().is_empty() {
                    let parent = dir.parent().expect("below the mount");
                    fsio::write(&dir, file, fsio::read(parent, file)?.trim())?;
                }
            }
        }
        Ok(())
    }

    fn create_all(&self, created: &mut Vec<PathBuf>) -> Result<(), CgroupError> {
        for d in &self.dirs {
            let new = fsio::create_dirs(&d.mount, self.path.relative(), &self.hook)?;
            created.extend(new.iter().cloned());
            if d.controllers.iter().any(|c| c == "cpuset") {
                self.init_cpuset(d)?;
            }
        }
        Ok(())
    }

    /// Where the processes are listed: the freezer's directory (the one
    /// kill_all freezes), else any.
    fn procs_dir(&self) -> Option<&Path> {
        self.dir_of("freezer")
            .or(self.dirs.first().map(|d| d.dir.as_path()))
    }

    fn freezer_state(&self) -> Result<String, CgroupError> {
        Ok(fsio::read(self.require("freezer")?, "freezer.state")?
            .trim()
            .to_string())
    }

    /// Write `freezer.state` and re-read until the kernel reports it. While
    /// FREEZING, FROZEN is written again now and then: the v1 freezer can
    /// stall on a task that was busy (e.g. in vfork) at the first attempt.
    fn set_freezer_state(&self, state: &'static str) -> Result<(), CgroupError> {
        let dir = self.require("freezer")?;
        fsio::write(dir, "freezer.state", state)?;
        let mut checks = 0u32;
        let reached = fsio::poll_until(FREEZE_TIMEOUT, || {
            checks += 1;
            let now = fsio::read(dir, "freezer.state")?;
            if now.trim() == "FREEZING" && checks % 8 == 0 {
                fsio::write(dir, "freezer.state", state)?;
            }
            Ok(now.trim() == state)
        })?;
        if !reached {
            return Err(CgroupError::Timeout {
                path: dir.join("freezer.state"),
                what: state,
                waited_ms: FREEZE_TIMEOUT.as_millis(),
            });
        }
        Ok(())
    }
}

fn write_memory(dir: &Path, m: &LinuxMemory) -> Result<(), CgroupError> {
    const LIMIT: &str = "memory.limit_in_bytes";
    const MEMSW: &str = "memory.memsw.limit_in_bytes";
    let limit = m.limit().filter(|l| *l != 0).map(v1_value);
    let mut swap = m.swap().filter(|s| *s != 0).map(v1_value);
    if swap.is_some() && !fsio::exists(dir, MEMSW) {
        tracing::warn!(
            "swap limit ignored: {} has no {MEMSW} (swap accounting is off)",
            dir.display()
        );
        swap = None;
    }
    match (limit, swap) {
        (Some(limit), Some(swap)) => match fsio::write(dir, LIMIT, &limit) {
            Ok(()) => fsio::write(dir, MEMSW, &swap)?,
            // Raising the limit above the current memory+swap: raise that first.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) =>
            {
                fsio::write(dir, MEMSW, &swap)?;
                fsio::write(dir, LIMIT, &limit)?;
            }
            Err(e) => return Err(e),
        },
        (Some(limit), None) => fsio::write(dir, LIMIT, &limit)?,
        (None, Some(swap)) => fsio::write(dir, MEMSW, &swap)?,
        (None, None) => {}
    }
    if let Some(reservation) = m.reservation().filter(|r| *r != 0) {
        fsio::write(dir, "memory.soft_limit_in_bytes", &v1_value(reservation))?;
    }
    if let Some(swappiness) = m.swappiness() {
        fsio::write(dir, "memory.swappiness", &swappiness.to_string())?;
    }
    if let Some(disable) = m.disable_oom_killer() {
        fsio::write(dir, "memory.oom_control", if disable { "1" } else { "0" })?;
    }
    warn_ignored_memory(m, "v1");
    Ok(())
}

fn write_cpu(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
        fsio::write(dir, "cpu.shares", &shares.to_string())?;
    }
    let quota = cpu.quota().filter(|q| *q != 0).map(v1_value);
    let mut quota_written = false;
    if let Some(period) = cpu.period().filter(|p| *p != 0) {
        match fsio::write(dir, "cpu.cfs_period_us", &period.to_string()) {
            Ok(()) => {}
            // A shorter period can conflict with the current quota: quota first.
            Err(CgroupError::Write { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && quota.is_some() =>
            {
                fsio::write(dir, "cpu.cfs_quota_us", quota.as_deref().expect("checked"))?;
                quota_written = true;
                fsio::write(dir, "cpu.cfs_period_us", &period.to_string())?;
            }
            Err(e) => return Err(e),
        }
    }
    if let (Some(quota), false) = (&quota, quota_written) {
        fsio::write(dir, "cpu.cfs_quota_us", quota)?;
    }
    // The period before the runtime, which must fit in it.
    if let Some(period) = cpu.realtime_period().filter(|p| *p != 0) {
        fsio::write(dir, "cpu.rt_period_us", &period.to_string())?;
    }
    if let Some(runtime) = cpu.realtime_runtime().filter(|r| *r != 0) {
        fsio::write(dir, "cpu.rt_runtime_us", &v1_value(runtime))?;
    }
    if let Some(burst) = cpu.burst() {
        fsio::write(dir, "cpu.cfs_burst_us", &burst.to_string())?;
    }
    if let Some(idle) = cpu.idle() {
        fsio::write(dir, "cpu.idle", &idle.to_string())?;
    }
    Ok(())
}

fn write_cpuset(dir: &Path, cpu: &LinuxCpu) -> Result<(), CgroupError> {
    if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
        fsio::write(dir, "cpuset.cpus", cpus)?;
    }
    if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
        fsio::write(dir, "cpuset.mems", mems)?;
    }
    Ok(())
}

fn write_blkio(dir: &Path, io: &LinuxBlockIo) -> Result<(), CgroupError> {
    // CFQ's blkio.weight is gone from current kernels; BFQ offers blkio.bfq.weight.
    let weight_file = ["blkio.weight", "blkio.bfq.weight"]
        .into_iter()
        .find(|f| fsio::exists(dir, f));
    let needs_weight = io.weight().is_some()
        || io
            .weight_device()
            .iter()
            .flatten()
            .any(|d| d.weight().is_some());
    let weight_file = match (weight_file, needs_weight) {
        (Some(f), _) => f,
        (None, false) => "blkio.weight",
        (None, true) => {
            return Err(CgroupError::Unsupported {
                what: "blockIO weight".into(),
                driver: "v1",
                hint: format!(
                    "{} has neither blkio.weight nor blkio.bfq.weight: select the bfq I/O scheduler for the disk, or drop the weight",
                    dir.display()
                ),
            })
        }
    };
    if let Some(weight) = io.weight() {
        fsio::write(dir, weight_file, &weight.to_string())?;
    }
    if let Some(leaf) = io.leaf_weight() {
        if fsio::exists(dir, "blkio.leaf_weight") {
            fsio::write(dir, "blkio.leaf_weight", &leaf.to_string())?;
        } else {
            tracing::warn!(
                "blockIO.leafWeight ignored: {} has no blkio.leaf_weight",
                dir.display()
            );
        }
    }
    let device_file = format!("{weight_file}_device");
    for device in io.weight_device().iter().flatten() {
        if let Some(weight) = device.weight() {
            fsio::write(
                dir,
                &device_file,
                &format!("{}:{} {weight}", device.major(), device.minor()),
            )?;
        }
    }
    let throttles = [
        (
            "blkio.throttle.read_bps_device",
            io.throttle_read_bps_device(),
        ),
        (
            "blkio.throttle.write_bps_device",
            io.throttle_write_bps_device(),
        ),
        (
            "blkio.throttle.read_iops_device",
            io.throttle_read_iops_device(),
        ),
        (
            "blkio.throttle.write_iops_device",
            io.throttle_write_iops_device(),
        ),
    ];
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            fsio::write(
                dir,
                file,
                &format!("{}:{} {}", t.major(), t.minor(), t.rate()),
            )?;
        }
    }
    Ok(())
}

fn write_hugetlb(dir: &Path, r: &LinuxResources) -> Result<(), CgroupError> {
    for limit in r.hugepage_limits().iter().flatten() {
        let size = limit.page_size();
        let file = format!("hugetlb.{size}.limit_in_bytes");
        if !fsio::exists(dir, &file) {
            return Err(CgroupError::InvalidResource {
                what: format!("hugepageLimits pageSize {size}"),
                why: format!(
                    "this host has hugepages of [{}]",
                    resources::hugepage_sizes(dir, ".limit_in_bytes").join(" ")
                ),
            });
        }
        let value = v1_value(limit.limit());
        fsio::write(dir, &file, &value)?;
        let reserved = format!("hugetlb.{size}.rsvd.limit_in_bytes");
        if fsio::exists(dir, &reserved) {
            fsio::write(dir, &reserved, &value)?;
        }
    }
    Ok(())
}

/// The rules in order: the usual list starts with "deny a" (nothing allowed)
/// and then allows the container's devices one by one.
fn write_devices(dir: &Path, rules: &[LinuxDeviceCgroup]) -> Result<(), CgroupError> {
    for rule in rules {
        for (file, line) in device_writes(rule)? {
            fsio::write(dir, file, &line)?;
        }
    }
    Ok(())
}

fn write_network(
    dir: &Path,
    controller: Controller,
    net: &LinuxNetwork,
) -> Result<(), CgroupError> {
    match controller {
        Controller::NetCls => fsio::write(
            dir,
            "net_cls.classid",
            &net.class_id().expect("requested").to_string(),
        ),
        _ => {
            for p in net.priorities().iter().flatten() {
                fsio::write(
                    dir,
                    "net_prio.ifpriomap",
                    &format!("{} {}", p.name(), p.priority()),
                )?;
            }
            Ok(())
        }
    }
}

impl CgroupManager for V1Manager {
    fn create(&self) -> Result<(), CgroupError> {
        let mut created = Vec::new();
        match self.create_all(&mut created) {
            Ok(()) => {
                self.created
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .extend(created);
                Ok(())
            }
            Err(err) => {
                fsio::remove_created(&created);
                Err(err)
            }
        }
    }

    fn apply_resources(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        resources::refuse_rdma(r, "v1")?;
        if r.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Unsupported {
                what: "linux.resources.unified".into(),
                driver: "v1",
                hint: "unified entries are cgroup v2 files; this host has only v1 hierarchies"
                    .into(),
            });
        }
        let controllers = resources::requested(r);
        self.check(&controllers, r)?;
        self.write(&controllers, r)
    }

    fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        for d in &self.dirs {
            fsio::write(&d.dir, "cgroup.procs", &pid.to_string())?;
        }
        Ok(())
    }

    fn clone_into_fd(&self) -> Option<OwnedFd> {
        None // CLONE_INTO_CGROUP only takes cgroup2 directories
    }

    fn self_join_files(&self) -> Result<Vec<SelfJoinFile>, CgroupError> {
        self.dirs
            .iter()
            .map(|d| SelfJoinFile::open(&d.dir))
            .collect()
    }

    fn join_remaining(&self, _pid: Pid) -> Result<(), CgroupError> {
        Ok(()) // every v1 hierarchy has a self-join file
    }

    fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        match self.procs_dir() {
            Some(dir) => fsio::read_pids_recursive(dir),
            None => Ok(Vec::new()),
        }
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_freezer_state("FROZEN")
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_freezer_state("THAWED")
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(self.freezer_state()? == "FROZEN")
    }

    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        let Some(dir) = self.procs_dir() else {
            return Ok(());
        };
        if !dir.exists() {
            return Ok(()); // already destroyed: nothing left to signal
        }
        if self.dir_of("freezer").is_none() {
            tracing::warn!("no v1 freezer: signalling without freezing, a process forked meanwhile may survive");
            return signal_each(&self.pids()?, signal, dir);
        }
        let was_frozen = self.is_frozen()?;
        self.freeze()?;
        let result = self.pids().and_then(|pids| signal_each(&pids, signal, dir));
        // Frozen v1 tasks act on no signal, not even SIGKILL, until thawed.
        if !was_frozen || signal == Signal::SIGKILL {
            self.thaw()?;
        }
        result
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let mut stats = CgroupStats::default();
        if let Some(dir) = self.dir_of("memory") {
            stats.memory_usage_bytes = fsio::read_number(dir, "memory.usage_in_bytes");
            stats.memory_limit_bytes =
                fsio::read_number(dir, "memory.limit_in_bytes").filter(|l| *l < V1_UNLIMITED);
            stats.oom_kills = fsio::read_optional(dir, "memory.oom_control")?
                .and_then(|t| fsio::keyed_value(&t, "oom_kill"));
        }
        if let Some(dir) = self.dir_of("pids") {
            stats.pids_current = fsio::read_number(dir, "pids.current");
            stats.pids_limit = fsio::read_number(dir, "pids.max");
        }
        if let Some(dir) = self.dir_of("cpuacct") {
            stats.cpu_usage_ns = fsio::read_number(dir, "cpuacct.usage");
        }
        Ok(stats)
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        self.destroy_by(Instant::now() + REMOVE_TIMEOUT)
    }

    fn paths(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.dir.clone()).collect()
    }
}

impl V1Manager {
    /// [`CgroupManager::destroy`], waiting for exiting processes at most
    /// until `deadline` (one deadline for all hierarchies).
    pub(crate) fn destroy_by(&self, deadline: Instant) -> Result<(), CgroupError> {
        let mut first_error = None;
        for d in &self.dirs {
            let result = fsio::remove_tree(&d.dir, deadline, |dir, timeout| {
                fsio::poll_until(timeout, || {
                    Ok(fsio::read(dir, "cgroup.procs")?.trim().is_empty())
                })
                .unwrap_or(false)
            });
            if let Err(err) = result {
                first_error.get_or_insert(err);
            }
        }
        if let Some(err) = first_error {
            return Err(err);
        }
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        fsio::remove_created(&created);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::devices_bpf::tests::rule;
    use crate::cgroups::fake::FakeCgroupfs;
    use crate::cgroups::fsio::recorder;
    use oci_spec::runtime::*;

    fn manager(fake: &FakeCgroupfs) -> V1Manager {
        let m = fake
            .host
            .v1_manager(CgroupPath::resolve(None, "c1").unwrap());
        m.create().unwrap();
        recorder::take();
        m
    }

    #[test]
    fn create_makes_one_dir_per_hierarchy_and_initialises_cpuset() {
        let fake = FakeCgroupfs::v1();
        let m = manager(&fake);
        let names: Vec<_> = m
            .paths()
            .iter()
            .map(|p| p.strip_prefix(fake.root()).unwrap().to_path_buf())
            .collect();
        for h in [
            "cpu,cpuacct/berth/c1",
            "cpuset/berth/c1",
            "memory/berth/c1",
            "devices/berth/c1",
            "freezer/berth/c1",
            "pids/berth/c1",
        ] {
            assert!(names.contains(&PathBuf::from(h)), "{h} in {names:?}");
            assert!(fake.root().join(h).is_dir());
        }
        // Copied from the root cpuset into /berth, then into /berth/c1.
        assert_eq!(fake.read("cpuset/berth/cpuset.cpus"), "0-1");
        assert_eq!(fake.read("cpuset/berth/c1/cpuset.cpus"), "0-1");
        assert_eq!(fake.read("cpuset/berth/c1/cpuset.mems"), "0");
        assert_eq!(m.dir_of("cpuacct"), m.dir_of("cpu"), "comounted");
    }

    #[test]
    fn create_fills_a_shared_parent_a_concurrent_start_left_empty() {
        let fake = FakeCgroupfs::v1();
        // Another start made /berth but has not copied the cpuset into it yet.
        let berth = fake.root().join("cpuset/berth");
        std::fs::create_dir(&berth).unwrap();
        std::fs::write(berth.join("cpuset.cpus"), "").unwrap();
        std::fs::write(berth.join("cpuset.mems"), "").unwrap();
        let m = manager(&fake);
        assert_eq!(fake.read("cpuset/berth/cpuset.cpus"), "0-1");
        assert_eq!(fake.read("cpuset/berth/c1/cpuset.cpus"), "0-1");
        assert_eq!(fake.read("cpuset/berth/c1/cpuset.mems"), "0");
        let created = m.created.lock().unwrap();
        assert!(
            !created.contains(&berth),
            "a parent this start did not make is not removed with it: {created:?}"
        );
    }

    #[test]
    fn writes_v1_limit_files() {
        let fake = FakeCgroupfs::v1();
        let m = manager(&fake);
        let throttle = LinuxThrottleDeviceBuilder::default()
            .major(8)
            .minor(0)
            .rate(1_048_576u64)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(104_857_600)
                    .swap(209_715_200)
                    .reservation(52_428_800)
                    .swappiness(10u64)
                    .disable_oom_killer(true)
                    .kernel(1)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .cpus("1")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(32).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .throttle_read_bps_device(vec![throttle])
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(2_097_152)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        m.apply_resources(&r).unwrap();
        for (file, value) in [
            ("memory/berth/c1/memory.limit_in_bytes", "104857600"),
            ("memory/berth/c1/memory.memsw.limit_in_bytes", "209715200"),
            ("memory/berth/c1/memory.soft_limit_in_bytes", "52428800"),
            ("memory/berth/c1/memory.swappiness", "10"),
            ("memory/berth/c1/memory.oom_control", "1"),
            ("cpu,cpuacct/berth/c1/cpu.shares", "512"),
            ("cpu,cpuacct/berth/c1/cpu.cfs_period_us", "100000"),
            ("cpu,cpuacct/berth/c1/cpu.cfs_quota_us", "50000"),
            ("cpuset/berth/c1/cpuset.cpus", "1"),
            ("pids/berth/c1/pids.max", "32"),
            (
                "blkio/berth/c1/blkio.throttle.read_bps_device",
                "8:0 1048576",
            ),
            ("hugetlb/berth/c1/hugetlb.2MB.limit_in_bytes", "2097152"),
        ] {
            assert_eq!(fake.read(file), value, "{file}");
        }
        // Kernel memory is not written anywhere.
        assert!(!recorder::take()
            .iter()
            .any(|(p, _)| p.to_string_lossy().contains("kmem")));
    }

    #[test]
    fn device_rules_are_written_in_order() {
        let fake = FakeCgroupfs::v1();
        let m = manager(&fake);
        let r = LinuxResourcesBuilder::default()
            .devices(vec![
                rule(false, LinuxDeviceType::A, None, None, "rwm"),
                rule(true, LinuxDeviceType::C, Some(1), Some(3), "rwm"),
                rule(true, LinuxDeviceType::C, Some(136), None, "rw"),
                rule(false, LinuxDeviceType::A, Some(5), Some(1), "w"),
                rule(true, LinuxDeviceType::P, None, None, "rwm"),
            ])
            .build()
            .unwrap();
        m.apply_resources(&r).unwrap();
        let writes: Vec<_> = recorder::take()
            .into_iter()
            .map(|(p, v)| (p.file_name().unwrap().to_string_lossy().into_owned(), v))
            .collect();
        let expected = [
            ("devices.deny", "a"),
            ("devices.allow", "c 1:3 rwm"),
            ("devices.allow", "c 136:* rw"),
            ("devices.deny", "c 5:1 w"),
            ("devices.deny", "b 5:1 w"),
        ];
        let expected: Vec<_> = expected
            .iter()
            .map(|(f, v)| (f.to_string(), v.to_string()))
            .collect();
        assert_eq!(writes, expected);
    }

    #[test]
    fn missing_controller_and_unified_are_refused_before_writing() {
        let fake = FakeCgroupfs::v1();
        let m = manager(&fake);
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .network(
                LinuxNetworkBuilder::default()
                    .class_id(0x100001u32)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = m.apply_resources(&r).unwrap_err();
        assert!(
            matches!(err, CgroupError::MissingController { ref controller, .. } if controller == "net_cls"),
            "{err}"
        );
        assert!(recorder::take().is_empty());

        let r = LinuxResourcesBuilder::default()
            .unified(std::collections::HashMap::from([(
                "memory.high".into(),
                "1".into(),
            )]))
            .build()
            .unwrap();
        assert!(matches!(
            m.apply_resources(&r),
            Err(CgroupError::Unsupported { .. })
        ));
    }

    #[test]
    fn stats_treat_the_huge_v1_limit_as_unlimited() {
        let fake = FakeCgroupfs::v1();
        let m = manager(&fake);
        let mem = m.dir_of("memory").unwrap();
        std::fs::write(mem.join("memory.usage_in_bytes"), "8192\n").unwrap();
        std::fs::write(mem.join("memory.limit_in_bytes"), "9223372036854771712\n").unwrap();
        std::fs::write(
            mem.join("memory.oom_control"),
            "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
        )
        .unwrap();
        std::fs::write(
            m.dir_of("cpuacct").unwrap().join("cpuacct.usage"),
            "123456\n",
        )
        .unwrap();
        std::fs::write(m.dir_of("pids").unwrap().join("pids.current"), "2\n").unwrap();
        let stats = m.stats().unwrap();
        assert_eq!(stats.memory_usage_bytes, Some(8192));
        assert_eq!(stats.memory_limit_bytes, None);
        assert_eq!(stats.oom_kills, Some(2));
        assert_eq!(stats.cpu_usage_ns, Some(123_456));
        assert_eq!(stats.pids_current, Some(2));
        assert_eq!(stats.pids_limit, None, "\"max\"");
    }

    #[test]
    fn swappiness_above_100_is_refused() {
        let fake = FakeCgroupfs::v1();
        let m = manager(&fake);
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .swappiness(101u64)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = m.apply_resources(&r).unwrap_err().to_string();
        assert!(err.contains("swappiness 101"), "{err}");
    }
}
