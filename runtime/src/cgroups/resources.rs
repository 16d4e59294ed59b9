//! Which controllers an OCI `linux.resources` section needs, and the small
//! value conversions both drivers share.
//!
//! Mechanism: none (pure functions). The drivers use [`requested`] to check
//! up front that every controller is there, before writing anything, so that
//! a refused request leaves no half-applied limits behind.

use oci_spec::runtime::{LinuxCpu, LinuxMemory, LinuxResources};

use super::CgroupError;

/// A group of limits that one controller enforces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Controller {
    Memory,
    /// shares/weight, quota/period, realtime, idle, burst.
    Cpu,
    /// `cpus` and `mems` of `linux.resources.cpu`.
    Cpuset,
    Pids,
    /// `blockIO` (v1 `blkio`, v2 `io`).
    Io,
    Hugetlb,
    Devices,
    NetCls,
    NetPrio,
}

impl Controller {
    /// The v1 controller (and hierarchy option) name.
    pub(crate) fn v1_name(self) -> &'static str {
        match self {
            Self::Memory => "memory",
            Self::Cpu => "cpu",
            Self::Cpuset => "cpuset",
            Self::Pids => "pids",
            Self::Io => "blkio",
            Self::Hugetlb => "hugetlb",
            Self::Devices => "devices",
            Self::NetCls => "net_cls",
            Self::NetPrio => "net_prio",
        }
    }

    /// The v2 controller name; `None` when v2 has no controller for it
    /// (devices are an eBPF program, net_cls/net_prio do not exist).
    pub(crate) fn v2_name(self) -> Option<&'static str> {
        match self {
            Self::Memory => Some("memory"),
            Self::Cpu => Some("cpu"),
            Self::Cpuset => Some("cpuset"),
            Self::Pids => Some("pids"),
            Self::Io => Some("io"),
            Self::Hugetlb => Some("hugetlb"),
            Self::Devices | Self::NetCls | Self::NetPrio => None,
        }
    }
}

fn set<T: Default + PartialEq>(value: Option<T>) -> bool {
    value.is_some_and(|v| v != T::default())
}

fn memory_requested(m: &LinuxMemory) -> bool {
    set(m.limit())
        || set(m.reservation())
        || set(m.swap())
        || m.swappiness().is_some()
        || m.disable_oom_killer().is_some()
}

fn cpu_requested(c: &LinuxCpu) -> bool {
    set(c.shares())
        || set(c.quota())
        || set(c.period())
        || set(c.realtime_runtime())
        || set(c.realtime_period())
        || c.idle().is_some()
        || c.burst().is_some()
}

fn cpuset_requested(c: &LinuxCpu) -> bool {
    c.cpus().as_deref().is_some_and(|s| !s.is_empty())
        || c.mems().as_deref().is_some_and(|s| !s.is_empty())
}

/// The controllers `resources` asks for, in the order they are applied.
/// Zero values mean "unset" as in runc (a memory limit of 0 is no limit).
pub(crate) fn requested(r: &LinuxResources) -> Vec<Controller> {
    let mut out = Vec::new();
    if r.memory().as_ref().is_some_and(memory_requested) {
        out.push(Controller::Memory);
    }
    if r.cpu().as_ref().is_some_and(cpu_requested) {
        out.push(Controller::Cpu);
    }
    if r.cpu().as_ref().is_some_and(cpuset_requested) {
        out.push(Controller::Cpuset);
    }
    if r.pids().is_some() {
        out.push(Controller::Pids);
    }
    if let Some(io) = r.block_io() {
        let lists = [
            io.weight_device().as_ref().map(Vec::len),
            io.throttle_read_bps_device().as_ref().map(Vec::len),
            io.throttle_write_bps_device().as_ref().map(Vec::len),
            io.throttle_read_iops_device().as_ref().map(Vec::len),
            io.throttle_write_iops_device().as_ref().map(Vec::len),
        ];
        if io.weight().is_some()
            || io.leaf_weight().is_some()
            || lists.iter().any(|n| n.unwrap_or(0) > 0)
        {
            out.push(Controller::Io);
        }
    }
    if r.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty()) {
        out.push(Controller::Hugetlb);
    }
    if r.devices().as_ref().is_some_and(|d| !d.is_empty()) {
        out.push(Controller::Devices);
    }
    if let Some(net) = r.network() {
        if net.class_id().is_some() {
            out.push(Controller::NetCls);
        }
        if net.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            out.push(Controller::NetPrio);
        }
    }
    out
}

/// `rdma` is not implemented by any driver: refuse it rather than ignore it.
pub(crate) fn refuse_rdma(r: &LinuxResources, driver: &'static str) -> Result<(), CgroupError> {
    match r.rdma() {
        Some(map) if !map.is_empty() => Err(CgroupError::Unsupported {
            what: "rdma".into(),
            driver,
            hint: "remove linux.resources.rdma; berth does not manage the rdma controller".into(),
        }),
        _ => Ok(()),
    }
}

/// OCI `swap` is the memory+swap total. Checks it against the memory limit
/// (both drivers) and returns nothing when valid.
pub(crate) fn check_memory_swap(limit: Option<i64>, swap: Option<i64>) -> Result<(), CgroupError> {
    let (limit, swap) = (limit.unwrap_or(0), swap.unwrap_or(0));
    let bad = |why: String| {
        Err(CgroupError::InvalidResource {
            what: "memory.swap".into(),
            why,
        })
    };
    if swap > 0 && limit <= 0 {
        return bad(format!("swap {swap} is a memory+swap total and needs a memory limit too (memory.limit is {limit})"));
    }
    if swap > 0 && swap < limit {
        return bad(format!(
            "swap {swap} is the memory+swap total and must be at least memory.limit {limit}"
        ));
    }
    Ok(())
}

/// The hugepage size in a file name (`2MB` in `hugetlb.2MB.max`): digits and
/// a unit, nothing that could name another file.
pub(crate) fn check_page_size(size: &str) -> Result<(), CgroupError> {
    let digits = size.trim_end_matches(['K', 'M', 'G', 'B']);
    let unit = &size[digits.len()..];
    if digits.is_empty()
        || !digits.bytes().all(|b| b.is_ascii_digit())
        || !["KB", "MB", "GB"].contains(&unit)
    {
        return Err(CgroupError::InvalidResource {
            what: format!("hugepageLimits pageSize {size:?}"),
            why: "expected a size like 2MB or 1GB".into(),
        });
    }
    Ok(())
}

/// The hugepage sizes a cgroup offers, from its `hugetlb.<size>.<suffix>` files.
pub(crate) fn hugepage_sizes(dir: &std::path::Path, suffix: &str) -> Vec<String> {
    let mut sizes: Vec<String> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let size = name.strip_prefix("hugetlb.")?.strip_suffix(suffix)?;
            (!size.contains('.')).then(|| size.to_string())
        })
        .collect();
    sizes.sort();
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;
    use oci_spec::runtime::{
        LinuxCpuBuilder, LinuxMemoryBuilder, LinuxPidsBuilder, LinuxResourcesBuilder,
    };

    #[test]
    fn requested_lists_only_sections_with_values() {
        let r = LinuxResourcesBuilder::default()
            .memory(LinuxMemoryBuilder::default().limit(0).build().unwrap())
            .cpu(LinuxCpuBuilder::default().cpus("0").build().unwrap())
            .pids(LinuxPidsBuilder::default().limit(10).build().unwrap())
            .build()
            .unwrap();
        assert_eq!(requested(&r), vec![Controller::Cpuset, Controller::Pids]);
        assert!(requested(&LinuxResources::default()).is_empty());
    }

    #[test]
    fn swap_must_be_a_total_at_least_the_limit() {
        assert!(check_memory_swap(Some(100), Some(200)).is_ok());
        assert!(check_memory_swap(Some(100), Some(-1)).is_ok());
        assert!(check_memory_swap(None, None).is_ok());
        let err = check_memory_swap(Some(200), Some(100))
            .unwrap_err()
            .to_string();
        assert!(err.contains("at least"), "{err}");
        let err = check_memory_swap(None, Some(100)).unwrap_err().to_string();
        assert!(err.contains("needs a memory limit"), "{err}");
    }

    #[test]
    fn page_sizes_cannot_name_other_files() {
        assert!(check_page_size("2MB").is_ok());
        assert!(check_page_size("1GB").is_ok());
        for bad in ["", "MB", "2M", "../2MB", "2MB.max", "2mb"] {
            assert!(check_page_size(bad).is_err(), "{bad}");
        }
    }
}
