//! The cgroup v2 driver: one unified hierarchy where a cgroup is one
//! directory and controllers are switched on per level.
//!
//! Mechanism: mkdir/rmdir under the cgroup2 mount; `+memory +pids` written to
//! each ancestor's `cgroup.subtree_control` (a controller's files appear in a
//! child only when its parent enables it, and only controllers listed in
//! `cgroup.controllers` can be enabled); limits in `memory.max`, `cpu.max`,
//! ...; `cgroup.freeze` and `cgroup.kill` (kernel 5.14+), with `cgroup.events`
//! polled (POLLPRI) for "frozen 1" and "populated 0"; devices via an eBPF
//! program (see `devices_bpf.rs`).
//!
//! OCI values are v1-shaped, so some are converted:
//! - `cpu.shares` (2..262144, default 1024) -> `cpu.weight` (1..10000,
//!   default 100) with [`cpu_shares_to_weight`];
//! - `memory.swap` is memory+swap, `memory.swap.max` is swap alone:
//!   `swap - limit`;
//! - `blockIO.weight` (10..1000) -> `io.weight` (1..10000) with
//!   [`blkio_weight_to_io_weight`], or as is to `io.bfq.weight` (1..1000)
//!   when the BFQ scheduler provides it.

use std::collections::BTreeMap;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Instant;

use nix::sys::signal::Signal;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxBlockIo, LinuxCpu, LinuxMemory, LinuxResources};
use rustix::fs::{Mode, OFlags};

use super::host::MkdirHook;
use super::path::CgroupPath;
use super::resources::{self, Controller};
use super::{
    devices_bpf, fsio, signal_each, CgroupError, CgroupManager, CgroupStats, FREEZE_TIMEOUT,
    REMOVE_TIMEOUT,
};

/// `cpu.shares` to `cpu.weight`, as crun (1.x) and runc (1.3+) convert it:
/// a quadratic in log2 space that maps the ends of the ranges onto each
/// other (2 -> 1, 262144 -> 10000) and the default onto the default
/// (1024 -> 100):
///
/// ```text
/// l = log2(shares);  weight = ceil(10 ^ ((l² + 125·l) / 612 − 7/34))
/// ```
///
/// (The older linear formula `1 + (shares − 2) · 9999 / 262142` turned the
/// default 1024 into 39, starving containers that never asked for less.)
/// 0 means unset and stays 0.
pub fn cpu_shares_to_weight(shares: u64) -> u64 {
    match shares {
        0 => 0,
        1..=2 => 1,
        262_144.. => 10_000,
        _ => {
            let l = (shares as f64).log2();
            let exponent = (l * l + 125.0 * l) / 612.0 - 7.0 / 34.0;
            10f64.powf(exponent).ceil() as u64
        }
    }
}

/// v1 `blkio.weight` (10..1000) to v2 `io.weight` (1..10000), linear as runc.
pub fn blkio_weight_to_io_weight(weight: u16) -> u64 {
    let w = u64::from(weight.clamp(10, 1000));
    1 + (w - 10) * 9999 / 990
}

/// -1 (or any negative) means unlimited.
fn value_or_max(v: i64) -> String {
    if v < 0 {
        "max".into()
    } else {
        v.to_string()
    }
}

/// `memory.swap.max` from the OCI memory+swap total (checked beforehand
/// with `resources::check_memory_swap`).
pub(crate) fn swap_max(limit: Option<i64>, swap: Option<i64>) -> Option<String> {
    match (limit.unwrap_or(0), swap?) {
        (_, 0) => None,
        (_, s) if s < 0 => Some("max".into()),
        (l, s) => Some((s - l.max(0)).to_string()),
    }
}

/// `cpu.max` ("QUOTA PERIOD", QUOTA "max" for none). A period alone keeps
/// the current quota (`current` is the file's present content).
pub(crate) fn cpu_max(quota: Option<i64>, period: Option<u64>, current: &str) -> Option<String> {
    let period = period.filter(|p| *p > 0);
    let quota = match quota.filter(|q| *q != 0) {
        Some(q) if q > 0 => q.to_string(),
        Some(_) => "max".to_string(),
        None if period.is_some() => current
            .split_whitespace()
            .next()
            .unwrap_or("max")
            .to_string(),
        None => return None,
    };
    Some(match period {
        Some(p) => format!("{quota} {p}"),
        None => quota,
    })
}

/// Keys of `linux.resources.unified` become file names in the container's
/// cgroup: one plain name, and not the files that move processes or
/// reconfigure the tree.
pub(crate) fn check_unified_key(key: &str) -> Result<(), CgroupError> {
    let bad = |why: &str| {
        Err(CgroupError::InvalidResource {
            what: format!("unified key {key:?}"),
            why: why.into(),
        })
    };
    if key.is_empty() || key == "." || key == ".." || key.contains(['/', '\0']) {
        return bad("must be a file name in the cgroup (no '/', not '.' or '..')");
    }
    if !key.contains('.') {
        return bad("must be a cgroup interface file such as memory.high");
    }
    if [
        "cgroup.procs",
        "cgroup.threads",
        "cgroup.subtree_control",
        "cgroup.type",
    ]
    .contains(&key)
    {
        return bad("is managed by the runtime and cannot be set through linux.resources.unified");
    }
    Ok(())
}

#[derive(Debug)]
pub struct V2Manager {
    mount: PathBuf,
    path: CgroupPath,
    dir: PathBuf,
    /// Directories `create` made (top-down): only those are removed.
    created: Mutex<Vec<PathBuf>>,
    hook: MkdirHook,
}

impl V2Manager {
    pub(crate) fn new(mount: PathBuf, path: CgroupPath, hook: MkdirHook) -> Self {
        let dir = path.under(&mount);
        Self {
            mount,
            path,
            dir,
            created: Mutex::new(Vec::new()),
            hook,
        }
    }

    /// The container's cgroup directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether `pid` is in this cgroup: its unified line (`0::/path`) in
    /// /proc/PID/cgroup, as this process's cgroup namespace shows it.
    fn has_member(&self, pid: Pid) -> bool {
        let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/cgroup")) else {
            return false;
        };
        let ours = Path::new("/").join(self.path.relative());
        super::parse_proc_cgroup(&text)
            .iter()
            .any(|(controllers, path)| controllers.is_empty() && *path == ours)
    }

    /// Controllers the hierarchy offers (the root's `cgroup.controllers`).
    fn available(&self) -> Vec<String> {
        fsio::read_optional(&self.mount, "cgroup.controllers")
            .ok()
            .flatten()
            .map(|s| s.split_whitespace().map(str::to_string).collect())
            .unwrap_or_default()
    }

    /// Whether this hierarchy can enforce `controller`.
    pub(crate) fn has(&self, controller: Controller) -> bool {
        match controller.v2_name() {
            Some(name) => self.available().iter().any(|c| c == name),
            None => controller == Controller::Devices,
        }
    }

    fn missing(&self, name: &str) -> CgroupError {
        CgroupError::MissingController {
            controller: name.into(),
            hint: format!(
                "{}/cgroup.controllers offers only [{}]; on a hybrid host the other controllers live on v1 hierarchies",
                self.mount.display(),
                self.available().join(" ")
            ),
        }
    }

    /// Everything that can be checked before the first write, for the
    /// sections in `controllers` and `linux.resources.unified`.
    pub(crate) fn check(
        &self,
        controllers: &[Controller],
        r: &LinuxResources,
    ) -> Result<(), CgroupError> {
        for &c in controllers {
            if !self.has(c) {
                return Err(match c.v2_name() {
                    Some(name) => self.missing(name),
                    None => CgroupError::Unsupported {
                        what: format!("linux.resources.network ({})", c.v1_name()),
                        driver: "v2",
                        hint: "cgroup v2 has no net_cls/net_prio; use eBPF or nftables socket cgroup matching instead".into(),
                    },
                });
            }
        }
        // Only the sections this driver will write (on a hybrid host the
        // rest goes to v1 and is checked there).
        let mine = |c| controllers.contains(&c);
        if let (true, Some(m)) = (mine(Controller::Memory), r.memory()) {
            resources::check_memory_swap(m.limit(), m.swap())?;
        }
        if let (true, Some(cpu)) = (mine(Controller::Cpu), r.cpu()) {
            let rt_runtime = cpu.realtime_runtime().is_some_and(|v| v != 0);
            if rt_runtime || cpu.realtime_period().is_some_and(|v| v != 0) {
                return Err(CgroupError::Unsupported {
                    what: "cpu.realtimeRuntime/realtimePeriod".into(),
                    driver: "v2",
                    hint: "cgroup v2 has no real-time CPU budget per cgroup; remove them".into(),
                });
            }
        }
        if mine(Controller::Hugetlb) {
            for limit in r.hugepage_limits().iter().flatten() {
                resources::check_page_size(limit.page_size())?;
            }
        }
        if let (true, Some(devices)) = (mine(Controller::Devices), r.devices()) {
            devices_bpf::effective_rules(devices)?;
        }
        for key in r.unified().iter().flat_map(|m| m.keys()) {
            check_unified_key(key)?;
        }
        Ok(())
    }

    /// The controllers to switch on for `controllers` and the unified keys.
    fn needed(&self, controllers: &[Controller], r: &LinuxResources) -> Vec<String> {
        let available = self.available();
        let mut needed: Vec<String> = controllers
            .iter()
            .filter_map(|c| c.v2_name())
            .map(str::to_string)
            .collect();
        for key in r.unified().iter().flat_map(|m| m.keys()) {
            let prefix = key.split('.').next().unwrap_or_default();
            if available.iter().any(|a| a == prefix) {
                needed.push(prefix.to_string());
            }
        }
        needed.sort();
        needed.dedup();
        needed
    }

    /// Switch `needed` on in every ancestor's `cgroup.subtree_control`, from
    /// the root down to the container's parent (the container's own cgroup
    /// holds processes and must not enable any). Written only where missing;
    /// this is the one write outside our own directories, and it is never undone.
    fn enable(&self, needed: &[String]) -> Result<(), CgroupError> {
        if needed.is_empty() {
            return Ok(());
        }
        let mut dir = self.mount.clone();
        let ancestors: Vec<_> = self.path.relative().components().collect();
        for (depth, component) in std::iter::once(None)
            .chain(ancestors.iter().map(Some))
            .enumerate()
        {
            if let Some(c) = component {
                dir.push(c);
            }
            if depth == ancestors.len() {
                break; // the leaf itself
            }
            let enabled = fsio::read(&dir, "cgroup.subtree_control")?;
            let enabled: Vec<&str> = enabled
                .split_whitespace()
                .map(|c| c.trim_start_matches('+'))
                .collect();
            let missing: Vec<&String> = needed
                .iter()
                .filter(|n| !enabled.contains(&n.as_str()))
                .collect();
            if missing.is_empty() {
                continue;
            }
            let offered = fsio::read(&dir, "cgroup.controllers")?;
            if let Some(absent) = missing
                .iter()
                .find(|m| !offered.split_whitespace().any(|o| o == m.as_str()))
            {
                return Err(CgroupError::MissingController {
                    controller: absent.to_string(),
                    hint: format!(
                        "{}/cgroup.controllers offers only [{}]",
                        dir.display(),
                        offered.trim()
                    ),
                });
            }
            let value = missing
                .iter()
                .map(|m| format!("+{m}"))
                .collect::<Vec<_>>()
                .join(" ");
            fsio::write(&dir, "cgroup.subtree_control", &value)?;
        }
        Ok(())
    }

    /// Write the limits of `controllers`, then `linux.resources.unified`
    /// (already checked).
    pub(crate) fn write(
        &self,
        controllers: &[Controller],
        r: &LinuxResources,
    ) -> Result<(), CgroupError> {
        self.enable(&self.needed(controllers, r))?;
        for c in controllers {
            match c {
                Controller::Memory => self.write_memory(r.memory().as_ref().expect("requested")),
                Controller::Cpu => self.write_cpu(r.cpu().as_ref().expect("requested")),
                Controller::Cpuset => self.write_cpuset(r.cpu().as_ref().expect("requested")),
                Controller::Pids => {
                    let limit = r.pids().as_ref().expect("requested").limit();
                    fsio::write(&self.dir, "pids.max", &pids_value(limit))
                }
                Controller::Io => self.write_io(r.block_io().as_ref().expect("requested")),
                Controller::Hugetlb => self.write_hugetlb(r),
                Controller::Devices => {
                    devices_bpf::install(&self.dir, r.devices().as_deref().unwrap_or_default())
                }
                Controller::NetCls | Controller::NetPrio => unreachable!("refused by check"),
            }?;
        }
        self.write_unified(r)
    }

    fn write_memory(&self, m: &LinuxMemory) -> Result<(), CgroupError> {
        let dir = &self.dir;
        if let Some(limit) = m.limit().filter(|l| *l != 0) {
            if m.check_before_update() == Some(true) && limit > 0 {
                let current = fsio::read_number(dir, "memory.current").unwrap_or(0);
                if current > limit as u64 {
                    return Err(CgroupError::InvalidResource {
                        what: format!("memory.limit {limit}"),
                        why: format!(
                            "{}/memory.current is {current}, above the new limit",
                            dir.display()
                        ),
                    });
                }
            }
            fsio::write(dir, "memory.max", &value_or_max(limit))?;
        }
        if let Some(reservation) = m.reservation().filter(|r| *r != 0) {
            fsio::write(dir, "memory.low", &value_or_max(reservation))?;
        }
        if let Some(swap) = swap_max(m.limit(), m.swap()) {
            if fsio::exists(dir, "memory.swap.max") {
                fsio::write(dir, "memory.swap.max", &swap)?;
            } else {
                tracing::warn!(
                    "swap limit ignored: {} has no memory.swap.max (swap accounting is off)",
                    dir.display()
                );
            }
        }
        warn_ignored_memory(m, "v2");
        if m.swappiness().is_some() {
            tracing::warn!("memory.swappiness ignored: cgroup v2 has no per-cgroup swappiness");
        }
        if m.disable_oom_killer() == Some(true) {
            tracing::warn!("memory.disableOOMKiller ignored: cgroup v2 cannot disable the OOM killer per cgroup");
        }
        Ok(())
    }

    fn write_cpu(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        let dir = &self.dir;
        if let Some(shares) = cpu.shares().filter(|s| *s != 0) {
            fsio::write(dir, "cpu.weight", &cpu_shares_to_weight(shares).to_string())?;
        }
        let current = fsio::read_optional(dir, "cpu.max")?.unwrap_or_default();
        if let Some(max) = cpu_max(cpu.quota(), cpu.period(), &current) {
            fsio::write(dir, "cpu.max", &max)?;
        }
        if let Some(burst) = cpu.burst() {
            fsio::write(dir, "cpu.max.burst", &burst.to_string())?;
        }
        if let Some(idle) = cpu.idle() {
            fsio::write(dir, "cpu.idle", &idle.to_string())?;
        }
        Ok(())
    }

    fn write_cpuset(&self, cpu: &LinuxCpu) -> Result<(), CgroupError> {
        if let Some(cpus) = cpu.cpus().as_deref().filter(|s| !s.is_empty()) {
            fsio::write(&self.dir, "cpuset.cpus", cpus)?;
        }
        if let Some(mems) = cpu.mems().as_deref().filter(|s| !s.is_empty()) {
            fsio::write(&self.dir, "cpuset.mems", mems)?;
        }
        Ok(())
    }

    fn write_io(&self, io: &LinuxBlockIo) -> Result<(), CgroupError> {
        let dir = &self.dir;
        // BFQ's own weight file takes blkio's range unchanged.
        let bfq = fsio::exists(dir, "io.bfq.weight");
        let (file, convert): (&str, fn(u16) -> u64) = if bfq {
            ("io.bfq.weight", u64::from)
        } else {
            ("io.weight", blkio_weight_to_io_weight)
        };
        if let Some(weight) = io.weight() {
            fsio::write(dir, file, &convert(weight).to_string())?;
        }
        if io.leaf_weight().is_some() {
            tracing::warn!("blockIO.leafWeight ignored: cgroup v2 has no leaf weight");
        }
        for device in io.weight_device().iter().flatten() {
            if let Some(weight) = device.weight() {
                let line = format!("{}:{} {}", device.major(), device.minor(), convert(weight));
                fsio::write(dir, file, &line)?;
            }
        }
        // One io.max line per device, with every limit for that device.
        let mut per_device: BTreeMap<(i64, i64), Vec<String>> = BTreeMap::new();
        let throttles = [
            ("rbps", io.throttle_read_bps_device()),
            ("wbps", io.throttle_write_bps_device()),
            ("riops", io.throttle_read_iops_device()),
            ("wiops", io.throttle_write_iops_device()),
        ];
        for (key, list) in throttles {
            for t in list.iter().flatten() {
                let rate = if t.rate() == 0 {
                    "max".to_string()
                } else {
                    t.rate().to_string()
                };
                per_device
                    .entry((t.major(), t.minor()))
                    .or_default()
                    .push(format!("{key}={rate}"));
            }
        }
        for ((major, minor), limits) in per_device {
            fsio::write(
                dir,
                "io.max",
                &format!("{major}:{minor} {}", limits.join(" ")),
            )?;
        }
        Ok(())
    }

    fn write_hugetlb(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        for limit in r.hugepage_limits().iter().flatten() {
            let size = limit.page_size();
            let file = format!("hugetlb.{size}.max");
            if !fsio::exists(&self.dir, &file) {
                return Err(CgroupError::InvalidResource {
                    what: format!("hugepageLimits pageSize {size}"),
                    why: format!(
                        "this host has hugepages of [{}]",
                        resources::hugepage_sizes(&self.dir, ".max").join(" ")
                    ),
                });
            }
            let value = value_or_max(limit.limit());
            fsio::write(&self.dir, &file, &value)?;
            // The spec asks for reservation limits where the kernel has them.
            let reserved = format!("hugetlb.{size}.rsvd.max");
            if fsio::exists(&self.dir, &reserved) {
                fsio::write(&self.dir, &reserved, &value)?;
            }
        }
        Ok(())
    }

    /// `linux.resources.unified`, written last so it overrides the rest.
    fn write_unified(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        let mut entries: Vec<_> = r.unified().iter().flatten().collect();
        entries.sort();
        for (key, value) in entries {
            if !fsio::exists(&self.dir, key) {
                let prefix = key.split('.').next().unwrap_or_default();
                return Err(CgroupError::InvalidResource {
                    what: format!("unified key {key:?}"),
                    why: format!(
                        "{} has no such file (is the {prefix} controller available? {}/cgroup.controllers offers [{}])",
                        self.dir.display(),
                        self.mount.display(),
                        self.available().join(" ")
                    ),
                });
            }
            fsio::write(&self.dir, key, value)?;
        }
        Ok(())
    }

    /// [`CgroupManager::destroy`], waiting for exiting processes at most
    /// until `deadline` ("populated 0" in `cgroup.events`).
    pub(crate) fn destroy_by(&self, deadline: Instant) -> Result<(), CgroupError> {
        fsio::remove_tree(&self.dir, deadline, |dir, timeout| {
            fsio::wait_for_event(dir, "populated", 0, timeout).unwrap_or(false)
        })?;
        let created = std::mem::take(&mut *self.created.lock().unwrap_or_else(|e| e.into_inner()));
        fsio::remove_created(&created);
        Ok(())
    }

    /// Write `cgroup.freeze` and wait for `cgroup.events` to agree.
    fn set_frozen(&self, frozen: bool) -> Result<(), CgroupError> {
        let value = u64::from(frozen);
        fsio::write(&self.dir, "cgroup.freeze", &value.to_string())?;
        if !fsio::wait_for_event(&self.dir, "frozen", value, FREEZE_TIMEOUT)? {
            return Err(CgroupError::Timeout {
                path: self.dir.join("cgroup.events"),
                what: if frozen { "frozen 1" } else { "frozen 0" },
                waited_ms: FREEZE_TIMEOUT.as_millis(),
            });
        }
        Ok(())
    }

    /// Signal every process with the cgroup frozen, so none can fork a
    /// child that escapes the signal.
    fn signal_frozen(&self, signal: Signal) -> Result<(), CgroupError> {
        let was_frozen = self.is_frozen()?;
        self.set_frozen(true)?;
        let result = self
            .pids()
            .and_then(|pids| signal_each(&pids, signal, &self.dir));
        // A frozen v2 task still dies of SIGKILL, but other signals are only
        // handled once it runs: thaw unless it was paused before.
        if !was_frozen {
            self.set_frozen(false)?;
        }
        result
    }
}

fn pids_value(limit: i64) -> String {
    // The kernel has no "0 tasks" limit: 0 and negative mean unlimited (as runc).
    if limit > 0 {
        limit.to_string()
    } else {
        "max".into()
    }
}

pub(crate) fn warn_ignored_memory(m: &LinuxMemory, driver: &str) {
    if m.kernel().is_some() {
        tracing::warn!("memory.kernel ignored by the {driver} driver: kernel memory limits are deprecated (kernel memory is counted in the memory limit)");
    }
    if m.kernel_tcp().is_some() {
        tracing::warn!("memory.kernelTCP ignored by the {driver} driver: TCP buffer memory is counted in the memory limit");
    }
}

impl CgroupManager for V2Manager {
    fn create(&self) -> Result<(), CgroupError> {
        let created = fsio::create_dirs(&self.mount, self.path.relative(), &self.hook)?;
        self.created
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .extend(created);
        Ok(())
    }

    fn apply_resources(&self, r: &LinuxResources) -> Result<(), CgroupError> {
        resources::refuse_rdma(r, "v2")?;
        let controllers = resources::requested(r);
        self.check(&controllers, r)?;
        self.write(&controllers, r)
    }

    fn add_process(&self, pid: Pid) -> Result<(), CgroupError> {
        fsio::write(&self.dir, "cgroup.procs", &pid.to_string())
    }

    fn join_remaining(&self, pid: Pid) -> Result<(), CgroupError> {
        // A needless write would still take the kernel's migration lock
        // (and wait for an RCU grace period): skip it when born here.
        if self.has_member(pid) {
            return Ok(());
        }
        self.add_process(pid)
    }

    fn clone_into_fd(&self) -> Option<OwnedFd> {
        // O_PATH is enough for clone3(CLONE_INTO_CGROUP) and grants no I/O.
        match rustix::fs::open(
            &self.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => Some(fd),
            Err(errno) => {
                tracing::warn!(path = %self.dir.display(), %errno, "cannot open the cgroup for CLONE_INTO_CGROUP");
                None
            }
        }
    }

    fn pids(&self) -> Result<Vec<Pid>, CgroupError> {
        fsio::read_pids_recursive(&self.dir)
    }

    fn freeze(&self) -> Result<(), CgroupError> {
        self.set_frozen(true)
    }

    fn thaw(&self) -> Result<(), CgroupError> {
        self.set_frozen(false)
    }

    fn is_frozen(&self) -> Result<bool, CgroupError> {
        Ok(fsio::read(&self.dir, "cgroup.freeze")?.trim() == "1")
    }

    fn kill_all(&self, signal: Signal) -> Result<(), CgroupError> {
        if !self.dir.exists() {
            return Ok(()); // already destroyed: nothing left to signal
        }
        if signal == Signal::SIGKILL && fsio::exists(&self.dir, "cgroup.kill") {
            // The kernel kills the whole subtree, including processes forked meanwhile.
            return fsio::write(&self.dir, "cgroup.kill", "1");
        }
        self.signal_frozen(signal)
    }

    fn stats(&self) -> Result<CgroupStats, CgroupError> {
        let dir = &self.dir;
        let keyed = |file: &str, key: &str| {
            fsio::read_optional(dir, file)
                .ok()
                .flatten()
                .and_then(|t| fsio::keyed_value(&t, key))
        };
        if !dir.exists() {
            return Err(CgroupError::Io {
                op: "stat",
                path: dir.clone(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
        Ok(CgroupStats {
            memory_usage_bytes: fsio::read_number(dir, "memory.current"),
            memory_limit_bytes: fsio::read_number(dir, "memory.max"),
            pids_current: fsio::read_number(dir, "pids.current"),
            pids_limit: fsio::read_number(dir, "pids.max"),
            cpu_usage_ns: keyed("cpu.stat", "usage_usec").map(|us| us * 1000),
            oom_kills: keyed("memory.events", "oom_kill"),
        })
    }

    fn destroy(&self) -> Result<(), CgroupError> {
        self.destroy_by(Instant::now() + REMOVE_TIMEOUT)
    }

    fn paths(&self) -> Vec<PathBuf> {
        vec![self.dir.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::fake::FakeCgroupfs;
    use crate::cgroups::fsio::recorder;
    use oci_spec::runtime::*;
    use std::collections::HashMap;

    /// The driver of container `c1`, its cgroup created on `fake`.
    fn created_c1(fake: &FakeCgroupfs) -> V2Manager {
        let m = fake
            .host
            .v2_manager(CgroupPath::resolve(None, "c1").unwrap());
        m.create().unwrap();
        m
    }

    #[test]
    fn shares_to_weight_maps_ends_and_default() {
        assert_eq!(cpu_shares_to_weight(0), 0);
        assert_eq!(cpu_shares_to_weight(2), 1);
        assert_eq!(cpu_shares_to_weight(1024), 100);
        assert_eq!(cpu_shares_to_weight(262_144), 10_000);
        assert_eq!(cpu_shares_to_weight(512), 59);
        assert_eq!(cpu_shares_to_weight(2048), 174);
        // Monotonic over the whole range.
        let mut last = 0;
        for shares in (2..262_144).step_by(97) {
            let w = cpu_shares_to_weight(shares);
            assert!(w >= last && (1..=10_000).contains(&w), "{shares} -> {w}");
            last = w;
        }
    }

    #[test]
    fn blkio_weight_conversion() {
        assert_eq!(blkio_weight_to_io_weight(10), 1);
        assert_eq!(blkio_weight_to_io_weight(1000), 10_000);
        assert_eq!(blkio_weight_to_io_weight(500), 4950);
    }

    #[test]
    fn swap_is_converted_from_a_total() {
        assert_eq!(swap_max(Some(100), Some(300)).as_deref(), Some("200"));
        assert_eq!(swap_max(Some(100), Some(100)).as_deref(), Some("0"));
        assert_eq!(swap_max(Some(100), Some(-1)).as_deref(), Some("max"));
        assert_eq!(swap_max(Some(100), None), None);
    }

    #[test]
    fn cpu_max_values() {
        assert_eq!(
            cpu_max(Some(50_000), Some(100_000), "max 100000").as_deref(),
            Some("50000 100000")
        );
        assert_eq!(cpu_max(Some(-1), None, "").as_deref(), Some("max"));
        assert_eq!(
            cpu_max(None, Some(20_000), "5000 100000").as_deref(),
            Some("5000 20000")
        );
        assert_eq!(cpu_max(None, None, "max 100000"), None);
    }

    fn resources() -> LinuxResources {
        let throttle = |major: i64, minor: i64, rate: u64| {
            LinuxThrottleDeviceBuilder::default()
                .major(major)
                .minor(minor)
                .rate(rate)
                .build()
                .unwrap()
        };
        LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(104_857_600)
                    .reservation(50_000_000)
                    .swap(209_715_200)
                    .build()
                    .unwrap(),
            )
            .cpu(
                LinuxCpuBuilder::default()
                    .shares(512u64)
                    .quota(50_000)
                    .period(100_000u64)
                    .cpus("0-1")
                    .mems("0")
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(64).build().unwrap())
            .block_io(
                LinuxBlockIoBuilder::default()
                    .weight(500u16)
                    .throttle_read_bps_device(vec![throttle(8, 0, 1_048_576)])
                    .throttle_write_iops_device(vec![throttle(8, 0, 100)])
                    .build()
                    .unwrap(),
            )
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("2MB")
                .limit(4_194_304)
                .build()
                .unwrap()])
            .unified(HashMap::from([(
                "memory.high".to_string(),
                "90000000".to_string(),
            )]))
            .build()
            .unwrap()
    }

    #[test]
    fn writes_every_limit_file_with_converted_values() {
        let fake = FakeCgroupfs::v2();
        let m = created_c1(&fake);
        recorder::take();
        m.apply_resources(&resources()).unwrap();

        assert_eq!(fake.read("berth/c1/memory.max"), "104857600");
        assert_eq!(fake.read("berth/c1/memory.low"), "50000000");
        assert_eq!(fake.read("berth/c1/memory.swap.max"), "104857600");
        assert_eq!(fake.read("berth/c1/cpu.weight"), "59");
        assert_eq!(fake.read("berth/c1/cpu.max"), "50000 100000");
        assert_eq!(fake.read("berth/c1/cpuset.cpus"), "0-1");
        assert_eq!(fake.read("berth/c1/cpuset.mems"), "0");
        assert_eq!(fake.read("berth/c1/pids.max"), "64");
        assert_eq!(fake.read("berth/c1/io.weight"), "4950");
        assert_eq!(fake.read("berth/c1/io.max"), "8:0 rbps=1048576 wiops=100");
        assert_eq!(fake.read("berth/c1/hugetlb.2MB.max"), "4194304");
        assert_eq!(fake.read("berth/c1/hugetlb.2MB.rsvd.max"), "4194304");
        assert_eq!(fake.read("berth/c1/memory.high"), "90000000");

        // Controllers are switched on in the root and in /berth, in one write
        // each, and never in the container's own cgroup.
        let writes = recorder::take();
        let enabled: Vec<_> = writes
            .iter()
            .filter(|(p, _)| p.ends_with("cgroup.subtree_control"))
            .map(|(p, v)| {
                (
                    p.strip_prefix(fake.root()).unwrap().to_path_buf(),
                    v.clone(),
                )
            })
            .collect();
        let all = "+cpu +cpuset +hugetlb +io +memory +pids".to_string();
        assert_eq!(
            enabled,
            vec![
                (PathBuf::from("cgroup.subtree_control"), all.clone()),
                (PathBuf::from("berth/cgroup.subtree_control"), all)
            ]
        );
    }

    #[test]
    fn only_missing_controllers_are_enabled() {
        let fake = FakeCgroupfs::v2();
        std::fs::write(fake.root().join("cgroup.subtree_control"), "memory pids").unwrap();
        let m = fake
            .host
            .v2_manager(CgroupPath::resolve(Some(Path::new("/c2")), "x").unwrap());
        m.create().unwrap();
        recorder::take();
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(1 << 20)
                    .build()
                    .unwrap(),
            )
            .cpu(LinuxCpuBuilder::default().shares(1024u64).build().unwrap())
            .build()
            .unwrap();
        m.apply_resources(&r).unwrap();
        let writes = recorder::take();
        assert_eq!(
            writes[0],
            (
                fake.root().join("cgroup.subtree_control"),
                "+cpu".to_string()
            )
        );
        assert_eq!(fake.read("c2/cpu.weight"), "100");
    }

    #[test]
    fn a_missing_controller_is_refused_before_any_write() {
        let fake = FakeCgroupfs::v2_with_controllers("hugetlb");
        let m = created_c1(&fake);
        recorder::take();
        let err = m.apply_resources(&resources()).unwrap_err();
        assert!(
            matches!(err, CgroupError::MissingController { ref controller, .. } if controller == "memory"),
            "{err}"
        );
        assert!(err.to_string().contains("offers only [hugetlb]"), "{err}");
        assert!(recorder::take().is_empty(), "nothing written");
    }

    #[test]
    fn unified_keys_are_validated() {
        for key in [
            "../memory.max",
            "a/b.c",
            "..",
            "memoryhigh",
            "cgroup.procs",
            "cgroup.subtree_control",
            "",
        ] {
            assert!(check_unified_key(key).is_err(), "{key:?}");
        }
        check_unified_key("memory.high").unwrap();
        check_unified_key("cgroup.freeze").unwrap();

        let fake = FakeCgroupfs::v2();
        let m = created_c1(&fake);
        let r = LinuxResourcesBuilder::default()
            .unified(HashMap::from([(
                "memory.nonexistent".to_string(),
                "1".to_string(),
            )]))
            .build()
            .unwrap();
        let err = m.apply_resources(&r).unwrap_err().to_string();
        assert!(
            err.contains("memory.nonexistent") && err.contains("no such file"),
            "{err}"
        );
    }

    #[test]
    fn realtime_and_network_are_refused_on_v2() {
        let fake = FakeCgroupfs::v2();
        let m = created_c1(&fake);
        let r = LinuxResourcesBuilder::default()
            .cpu(
                LinuxCpuBuilder::default()
                    .realtime_runtime(1000)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        assert!(matches!(
            m.apply_resources(&r),
            Err(CgroupError::Unsupported { .. })
        ));
        let r = LinuxResourcesBuilder::default()
            .network(
                LinuxNetworkBuilder::default()
                    .class_id(1u32)
                    .build()
                    .unwrap(),
            )
            .build()
            .unwrap();
        let err = m.apply_resources(&r).unwrap_err().to_string();
        assert!(err.contains("net_cls"), "{err}");
    }

    #[test]
    fn unlimited_values_and_unknown_page_sizes() {
        let fake = FakeCgroupfs::v2();
        let m = created_c1(&fake);
        let r = LinuxResourcesBuilder::default()
            .memory(
                LinuxMemoryBuilder::default()
                    .limit(-1)
                    .swap(-1)
                    .build()
                    .unwrap(),
            )
            .pids(LinuxPidsBuilder::default().limit(0).build().unwrap())
            .build()
            .unwrap();
        m.apply_resources(&r).unwrap();
        assert_eq!(fake.read("berth/c1/memory.max"), "max");
        assert_eq!(fake.read("berth/c1/memory.swap.max"), "max");
        assert_eq!(fake.read("berth/c1/pids.max"), "max");

        let r = LinuxResourcesBuilder::default()
            .hugepage_limits(vec![LinuxHugepageLimitBuilder::default()
                .page_size("64KB")
                .limit(1)
                .build()
                .unwrap()])
            .build()
            .unwrap();
        let err = m.apply_resources(&r).unwrap_err().to_string();
        assert!(err.contains("64KB") && err.contains("1GB 2MB"), "{err}");
    }

    #[test]
    fn stats_read_back_usage_and_limits() {
        let fake = FakeCgroupfs::v2();
        let m = created_c1(&fake);
        std::fs::write(m.dir().join("memory.current"), "4096\n").unwrap();
        std::fs::write(m.dir().join("memory.max"), "max\n").unwrap();
        std::fs::write(m.dir().join("pids.current"), "3\n").unwrap();
        std::fs::write(
            m.dir().join("cpu.stat"),
            "usage_usec 1500\nuser_usec 1000\n",
        )
        .unwrap();
        std::fs::write(
            m.dir().join("memory.events"),
            "low 0\nmax 2\noom 1\noom_kill 1\n",
        )
        .unwrap();
        let stats = m.stats().unwrap();
        assert_eq!(
            stats,
            CgroupStats {
                memory_usage_bytes: Some(4096),
                memory_limit_bytes: None,
                pids_current: Some(3),
                pids_limit: None,
                cpu_usage_ns: Some(1_500_000),
                oom_kills: Some(1),
            }
        );
    }

    #[test]
    fn destroy_removes_what_create_made_and_is_idempotent() {
        let fake = FakeCgroupfs::v2();
        let m = fake
            .host
            .v2_manager(CgroupPath::resolve(Some(Path::new("/a/b/c")), "x").unwrap());
        m.create().unwrap();
        // rmdir of a fake directory fails while it has files: empty it as the kernel would.
        for dir in ["a/b/c", "a/b", "a"] {
            fake.empty_dir(dir);
        }
        m.destroy().unwrap();
        assert!(!fake.root().join("a").exists());
        m.destroy().unwrap();
    }
}
