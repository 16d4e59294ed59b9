//! The hybrid driver: v1 hierarchies for resources plus the same path in a
//! cgroup2 mount (usually /sys/fs/cgroup/unified), as systemd's "hybrid"
//! mode and this project's test machine set up.
//!
//! Mechanism: both drivers at once. The container gets a directory in every
//! v1 hierarchy *and* in the unified hierarchy, and each process is written
//! to both. The unified directory is what makes the container one unit:
//! - `clone3(CLONE_INTO_CGROUP)` takes only cgroup2 directories;
//! - `cgroup.kill` kills the whole tree atomically (v1 has no such file);
//! - freezing uses `cgroup.freeze`, not the v1 freezer: the kernel reports
//!   completion through `cgroup.events` (no re-read loop), the v2 freezer
//!   does not stall in FREEZING, and a task frozen this way still dies of
//!   SIGKILL, so `delete --force` of a paused container works.
//!
//! Limits go to the hierarchy that has the controller: the v1 one when
//! mounted, else the unified one when it offers it (on this machine hugetlb
//! is a cgroup2 controller, so hugepage limits are written there).
//! `linux.resources.unified` goes to the unified directory. Devices use the
//! v1 devices controller when mounted, else the eBPF filter on the unified
//! directory.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::LinuxResources;

use super::resources::{self, Controller};
use super::v1::V1Manager;
use super::v2::V2Manager;
use super::{CgroupError, CgroupManager, CgroupStats, SelfJoinFile, REMOVE_TIMEOUT};

#[derive(Debug)]
pub struct HybridManager {
    v1: V1Manager,
    unified: V2Manager,
}

impl HybridManager {
    pub fn new(v1: V1Manager, unified: V2Manager) -> Self {
        Self { v1, unified }
    }

    /// The v1 half (resources).
    pub fn v1(&self) -> &V1Manager {
        &self.v1
    }

    /// The unified half (tracking, kill, freeze, clone3).
    pub fn unified(&self) -> &V2Manager {
        &self.unified
    }

    /// Which hierarchy enforces each requested controller.
    fn route(
        &self,
        controllers: &[Controller],
    ) -> Result<(Vec<Controller>, Vec<Controller>), CgroupError> {
        let (mut on_v1, mut on_v2) = (Vec::new(), Vec::new());
        for &c in controllers {
            if self.v1.has(c) {
                on_v1.push(c);
            } else if self.unified.has(c) {
                on_v2.push(c);
            } else {
                let unified_name = c.v2_name().unwrap_or("(none)");
                return Err(CgroupError::MissingController {
                    controller: c.v1_name().into(),
                    hint: format!(
                        "neither a v1 hierarchy nor the unified hierarchy ({}) offers it (v2 name: {unified_name})",
                        self.unified.paths()[0].display()
                    ),
                });
            }
        }
        Ok((on_v1, on_v2))
    }
}

impl CgroupManager for HybridManager {
    fn create(&self) -> Result<(), CgroupError> {
        self.v1.create()?;
        if let Err(err) = self.unified.create() {
            let _ = self.v1.destroy();
            return Err(err);
        }
        Ok(())
    }

    fn apply_resources(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        resources::refuse_rdma(r, "hybrid")?;
        let (on_v1, on_v2) = self.route(&resources::requested(r))?;
        self.v1.check(&on_v1, r)?;
        self.unified.check(&on_v2, r)?;
        tracing::debug!(
            ?on_v1,
            ?on_v2,
            "hybrid host: limits split between v1 and the unified hierarchy"
        );
        self.v1.write(&on_v1, r)?;
        self.unified.write(&on_v2, r)
    }

    fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        self.v1.add_process(pid)?;
        self.unified.add_process(pid)
    }

    fn clone_into_fd(&self) -> Option<OwnedFd> {
        self.unified.clone_into_fd()
    }

    fn self_join_files(&self) -> Result<Vec<SelfJoinFile>, CgroupError> {
        self.v1.self_join_files()
    }

    fn join_remaining(&self, pid: Pid) -> Result<(), CgroupError> {
        self.unified.join_remaining(pid)
    }

    fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        self.unified.pids()
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.unified.freeze()
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.unified.thaw()
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        self.unified.is_frozen()
    }

    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        self.unified.kill_all(signal)
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let v1 = self.v1.stats()?;
        let v2 = self.unified.stats()?;
        Ok(CgroupStats {
            memory_usage_bytes: v1.memory_usage_bytes.or(v2.memory_usage_bytes),
            memory_limit_bytes: v1.memory_limit_bytes.or(v2.memory_limit_bytes),
            pids_current: v1.pids_current.or(v2.pids_current),
            pids_limit: v1.pids_limit.or(v2.pids_limit),
            cpu_usage_ns: v1.cpu_usage_ns.or(v2.cpu_usage_ns),
            oom_kills: v1.oom_kills.or(v2.oom_kills),
        })
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        // Unified first: once it is empty every process has exited, and the
        // v1 directories empty at the same moment.
        // One deadline for both halves: a live process makes both busy.
        let deadline = Instant::now() + REMOVE_TIMEOUT;
        let unified = self.unified.destroy_by(deadline);
        let v1 = self.v1.destroy_by(deadline);
        unified.and(v1)
    }

    fn paths(&self) -> Vec<PathBuf> {
        let mut paths = self.v1.paths();
        paths.extend(self.unified.paths());
        paths
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fake::FakeCgroupfs;
    use crate::cgroups::fsio::recorder;
    use crate::cgroups::CgroupPath;
    use oci_spec::runtime::*;

    #[test]
    fn hugetlb_goes_to_the_unified_side_and_memory_to_v1() {
        let fake = FakeCgroupfs::hybrid();
        let m = fake.host.manager(None, "c1").unwrap();
        m.create().unwrap();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(104_857_600)
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
        assert_eq!(
            fake.read("memory/berth/c1/memory.limit_in_bytes"),
            "104857600"
        );
        assert_eq!(fake.read("unified/berth/c1/hugetlb.2MB.max"), "2097152");
        assert_eq!(fake.read("unified/cgroup.subtree_control"), "+hugetlb");
        assert!(!fake.root().join("unified/berth/c1/memory.max").exists());
    }

    #[test]
    fn processes_go_to_both_sides_and_paths_list_both() {
        let fake = FakeCgroupfs::hybrid();
        let host = fake.host.clone();
        let m = HybridManager::new(
            host.v1_manager(CgroupPath::resolve(None, "c1").unwrap()),
            host.v2_manager(CgroupPath::resolve(None, "c1").unwrap()),
        );
        m.create().unwrap();
        recorder::take();
        m.add_process(Pid::from_raw(4242)).unwrap();
        let targets: Vec<_> = recorder::take()
            .into_iter()
            .map(|(p, v)| (p.strip_prefix(fake.root()).unwrap().to_path_buf(), v))
            .collect();
        assert!(targets.contains(&(PathBuf::from("memory/berth/c1/cgroup.procs"), "4242".into())));
        assert!(targets.contains(&(
            PathBuf::from("unified/berth/c1/cgroup.procs"),
            "4242".into()
        )));
        assert!(m.paths().contains(&fake.root().join("unified/berth/c1")));
        assert!(m.clone_into_fd().is_some());
    }

    #[test]
    fn realtime_cpu_goes_to_v1_and_is_not_refused_as_a_v2_limit() {
        let fake = FakeCgroupfs::hybrid();
        let m = fake.host.manager(None, "c1").unwrap();
        m.create().unwrap();
        let cpu = LinuxCpuBuilder::default()
            .realtime_period(1_000_000u64)
            .realtime_runtime(5000)
            .build()
            .unwrap();
        let r = LinuxResourcesBuilder::default().cpu(cpu).build().unwrap();
        m.apply_resources(&r).unwrap();
        assert_eq!(
            fake.read("cpu,cpuacct/berth/c1/cpu.rt_period_us"),
            "1000000"
        );
        assert_eq!(fake.read("cpu,cpuacct/berth/c1/cpu.rt_runtime_us"), "5000");
    }

    #[test]
    fn a_controller_on_neither_side_is_refused() {
        let fake = FakeCgroupfs::hybrid();
        let m = fake.host.manager(None, "c1").unwrap();
        m.create().unwrap();
        let r = LinuxResourcesBuilder::default()
            .network(
                LinuxNetworkBuilder::default()
                    .class_id(1u32)
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
    }
}
