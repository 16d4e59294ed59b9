//! A fake cgroupfs in a temporary directory, for unit tests without root.
//!
//! Mechanism: plain directories and files laid out like /sys/fs/cgroup. The
//! kernel fills a new cgroup directory with interface files on mkdir; the
//! drivers' mkdir hook does the same here, so a driver's writes land in real
//! files that the tests read back (and `fsio::recorder` keeps their order).

use std::path::{Path, PathBuf};

use tempfile::TempDir;

use super::host::{CgroupHost, V1Hierarchy};

const V2_CONTROLLERS: &str = "cpuset cpu io memory hugetlb pids";
const V1_UNLIMITED: &str = "9223372036854771712";

pub(crate) struct FakeCgroupfs {
    dir: TempDir,
    pub(crate) host: CgroupHost,
}

fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (name, content) in files {
        std::fs::write(dir.join(name), content).unwrap();
    }
}

/// The files of a cgroup v2 directory with these controllers available.
fn populate_v2(dir: &Path, controllers: &str) {
    write_files(
        dir,
        &[
            ("cgroup.controllers", controllers),
            ("cgroup.subtree_control", ""),
            ("cgroup.procs", ""),
            ("cgroup.events", "populated 0\nfrozen 0\n"),
            ("cgroup.freeze", "0"),
            ("cgroup.kill", ""),
            ("cpu.stat", "usage_usec 0\n"),
        ],
    );
    for controller in controllers.split_whitespace() {
        let files: &[(&str, &str)] = match controller {
            "memory" => &[
                ("memory.max", "max"),
                ("memory.low", "0"),
                ("memory.high", "max"),
                ("memory.swap.max", "max"),
                ("memory.current", "0"),
                ("memory.events", "oom 0\noom_kill 0\n"),
            ],
            "cpu" => &[
                ("cpu.weight", "100"),
                ("cpu.max", "max 100000"),
                ("cpu.max.burst", "0"),
                ("cpu.idle", "0"),
            ],
            "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
            "pids" => &[("pids.max", "max"), ("pids.current", "0")],
            "io" => &[("io.weight", "default 100"), ("io.max", "")],
            "hugetlb" => &[
                ("hugetlb.2MB.max", "max"),
                ("hugetlb.2MB.rsvd.max", "max"),
                ("hugetlb.1GB.max", "max"),
                ("hugetlb.1GB.rsvd.max", "max"),
            ],
            other => panic!("fake cgroupfs has no files for {other}"),
        };
        write_files(dir, files);
    }
}

/// The files of a cgroup v1 directory in a hierarchy with these controllers.
fn populate_v1(dir: &Path, controllers: &[String]) {
    write_files(dir, &[("cgroup.procs", ""), ("tasks", "")]);
    for controller in controllers {
        let files: &[(&str, &str)] = match controller.as_str() {
            "cpu" => &[
                ("cpu.shares", "1024"),
                ("cpu.cfs_period_us", "100000"),
                ("cpu.cfs_quota_us", "-1"),
                ("cpu.cfs_burst_us", "0"),
                ("cpu.rt_period_us", "1000000"),
                ("cpu.rt_runtime_us", "0"),
                ("cpu.idle", "0"),
            ],
            "cpuacct" => &[("cpuacct.usage", "0")],
            "cpuset" => &[("cpuset.cpus", ""), ("cpuset.mems", "")],
            "memory" => &[
                ("memory.limit_in_bytes", V1_UNLIMITED),
                ("memory.memsw.limit_in_bytes", V1_UNLIMITED),
                ("memory.soft_limit_in_bytes", V1_UNLIMITED),
                ("memory.swappiness", "60"),
                (
                    "memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 0\n",
                ),
                ("memory.usage_in_bytes", "0"),
            ],
            "devices" => &[
                ("devices.allow", ""),
                ("devices.deny", ""),
                ("devices.list", "a *:* rwm"),
            ],
            "freezer" => &[("freezer.state", "THAWED")],
            "blkio" => &[
                ("blkio.throttle.read_bps_device", ""),
                ("blkio.throttle.write_bps_device", ""),
                ("blkio.throttle.read_iops_device", ""),
                ("blkio.throttle.write_iops_device", ""),
            ],
            "pids" => &[("pids.max", "max"), ("pids.current", "0")],
            "hugetlb" => &[
                ("hugetlb.2MB.limit_in_bytes", V1_UNLIMITED),
                ("hugetlb.1GB.limit_in_bytes", V1_UNLIMITED),
            ],
            other => panic!("fake cgroupfs has no files for {other}"),
        };
        write_files(dir, files);
    }
}

/// v1 hierarchies as mounted on a classic host (cpu and cpuacct comounted).
fn v1_hierarchies(root: &Path, with_hugetlb: bool) -> Vec<V1Hierarchy> {
    let mut names = vec![
        "cpu,cpuacct",
        "cpuset",
        "memory",
        "devices",
        "freezer",
        "blkio",
        "pids",
    ];
    if with_hugetlb {
        names.push("hugetlb");
    }
    names
        .into_iter()
        .map(|name| {
            let controllers: Vec<&str> = name.split(',').collect();
            let mount = root.join(name);
            std::fs::create_dir(&mount).unwrap();
            let h = V1Hierarchy::new(&controllers, mount);
            populate_v1(&h.mount_point, &h.controllers);
            h
        })
        .collect()
}

impl FakeCgroupfs {
    pub(crate) fn v2() -> Self {
        Self::v2_with_controllers(V2_CONTROLLERS)
    }

    /// A pure v2 host whose root offers `controllers` (space separated).
    pub(crate) fn v2_with_controllers(controllers: &'static str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        populate_v2(dir.path(), controllers);
        let host = CgroupHost::v2(dir.path()).with_mkdir_hook(move |d| populate_v2(d, controllers));
        Self { dir, host }
    }

    pub(crate) fn v1() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hierarchies = v1_hierarchies(dir.path(), true);
        write_files(
            &dir.path().join("cpuset"),
            &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")],
        );
        let host = CgroupHost::v1(hierarchies.clone())
            .with_mkdir_hook(move |d| populate_v1_for(d, &hierarchies));
        Self { dir, host }
    }

    /// v1 controllers without hugetlb, plus `unified/` offering only hugetlb
    /// (this project's test machine).
    pub(crate) fn hybrid() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let hierarchies = v1_hierarchies(dir.path(), false);
        write_files(
            &dir.path().join("cpuset"),
            &[("cpuset.cpus", "0-1"), ("cpuset.mems", "0")],
        );
        let unified = dir.path().join("unified");
        std::fs::create_dir(&unified).unwrap();
        populate_v2(&unified, "hugetlb");
        let unified_for_hook = unified.clone();
        let host = CgroupHost::hybrid(hierarchies.clone(), &unified).with_mkdir_hook(move |d| {
            if d.starts_with(&unified_for_hook) {
                populate_v2(d, "hugetlb");
            } else {
                populate_v1_for(d, &hierarchies);
            }
        });
        Self { dir, host }
    }

    pub(crate) fn root(&self) -> &Path {
        self.dir.path()
    }

    /// A file's content, relative to the fake /sys/fs/cgroup.
    pub(crate) fn read(&self, relative: &str) -> String {
        let path: PathBuf = self.root().join(relative);
        std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
            .trim_end()
            .to_string()
    }

    /// Remove the interface files of a directory, so rmdir can succeed as it
    /// does on cgroupfs.
    pub(crate) fn empty_dir(&self, relative: &str) {
        for entry in std::fs::read_dir(self.root().join(relative))
            .unwrap()
            .flatten()
        {
            if entry.file_type().unwrap().is_file() {
                std::fs::remove_file(entry.path()).unwrap();
            }
        }
    }
}

fn populate_v1_for(dir: &Path, hierarchies: &[V1Hierarchy]) {
    let h = hierarchies
        .iter()
        .find(|h| dir.starts_with(&h.mount_point))
        .unwrap_or_else(|| panic!("{} is in no fake hierarchy", dir.display()));
    populate_v1(dir, &h.controllers);
}
