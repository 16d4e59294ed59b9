//! Which cgroup hierarchies this host has and where they are mounted.
//!
//! Mechanism: `statfs(2)` on /sys/fs/cgroup and /sys/fs/cgroup/unified tells
//! the layout apart by filesystem magic (CGROUP2_SUPER_MAGIC means the unified
//! hierarchy, TMPFS_MAGIC means a tmpfs holding v1 mounts), then
//! /proc/self/mountinfo gives each v1 hierarchy's mount point and controllers
//! (several controllers can share one hierarchy: `cpu,cpuacct`).
//!
//! [`CgroupHost`] holds the result. It can also be built by hand around a
//! temporary directory, which is how the unit tests run the drivers against a
//! fake cgroupfs.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::sys::statfs::{statfs, CGROUP2_SUPER_MAGIC, CGROUP_SUPER_MAGIC, TMPFS_MAGIC};

use super::hybrid::HybridManager;
use super::path::CgroupPath;
use super::v1::V1Manager;
use super::v2::V2Manager;
use super::{CgroupError, CgroupLayout, CgroupManager};

/// Where the kernel's cgroup filesystems are mounted by convention.
pub const CGROUP_ROOT: &str = "/sys/fs/cgroup";
/// Where hybrid hosts (systemd's "hybrid" mode) mount cgroup2.
pub const HYBRID_UNIFIED: &str = "/sys/fs/cgroup/unified";

/// The resource controllers a v1 hierarchy can carry. Anything else in a
/// cgroup mount's options (`rw`, `xattr`, `name=systemd`, ...) is not one.
const V1_CONTROLLERS: &[&str] = &[
    "cpu",
    "cpuacct",
    "cpuset",
    "memory",
    "devices",
    "freezer",
    "net_cls",
    "net_prio",
    "blkio",
    "perf_event",
    "hugetlb",
    "pids",
    "rdma",
    "misc",
];

/// The lines of a /proc/PID/cgroup text (`ID:CONTROLLERS:PATH`) as
/// `(controllers, path)`; the unified hierarchy's line (`0::/path`) has
/// empty controllers. Paths are as the reader's cgroup namespace shows them.
pub fn parse_proc_cgroup(text: &str) -> Vec<(String, PathBuf)> {
    text.lines()
        .filter_map(|line| {
            let mut parts = line.splitn(3, ':');
            let _id = parts.next()?;
            let controllers = parts.next()?.to_string();
            let path = PathBuf::from(parts.next()?);
            Some((controllers, path))
        })
        .collect()
}

/// The layout of this host, from `statfs` alone (two syscalls).
pub fn detect() -> Result<CgroupLayout, CgroupError> {
    detect_at(Path::new(CGROUP_ROOT), Path::new(HYBRID_UNIFIED))
}

fn detect_at(root: &Path, unified: &Path) -> Result<CgroupLayout, CgroupError> {
    let fs_type = statfs(root)
        .map_err(|errno| CgroupError::Io {
            op: "statfs",
            path: root.into(),
            source: errno.into(),
        })?
        .filesystem_type();
    let layout = if fs_type == CGROUP2_SUPER_MAGIC {
        CgroupLayout::V2
    } else if fs_type == TMPFS_MAGIC {
        match statfs(unified) {
            Ok(st) if st.filesystem_type() == CGROUP2_SUPER_MAGIC => CgroupLayout::Hybrid {
                unified: unified.into(),
            },
            _ => CgroupLayout::V1,
        }
    } else if fs_type == CGROUP_SUPER_MAGIC {
        CgroupLayout::V1
    } else {
        return Err(CgroupError::NoCgroupfs {
            path: root.into(),
            found: format!("filesystem magic {:#x}", fs_type.0),
        });
    };
    tracing::debug!(
        step = "cgroup.layout",
        ?layout,
        "statfs on {} detected the cgroup layout: {layout:?}",
        root.display()
    );
    Ok(layout)
}

/// One cgroup filesystem mount from /proc/self/mountinfo.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupMount {
    pub kind: MountKind,
    /// Where it is mounted (`/sys/fs/cgroup/memory`).
    pub mount_point: PathBuf,
    /// Which cgroup of the hierarchy appears at the mount point (`/` unless
    /// a sub-cgroup was bind mounted or a cgroup namespace is in use).
    pub root: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountKind {
    /// A v1 hierarchy: its controllers (empty for a named hierarchy such as
    /// `name=systemd`, which has none) and its name, if any.
    V1 {
        controllers: Vec<String>,
        name: Option<String>,
    },
    /// The unified (cgroup2) hierarchy.
    V2,
}

/// The cgroup and cgroup2 mounts listed in a mountinfo text.
///
/// Format (proc(5)): `ID PARENT MAJ:MIN ROOT MOUNTPOINT OPTS [OPTIONAL...] -
/// FSTYPE SOURCE SUPEROPTS`; paths escape space, tab, newline and backslash
/// as `\ooo` octal.
pub fn parse_mountinfo(text: &str) -> Vec<CgroupMount> {
    text.lines().filter_map(parse_mountinfo_line).collect()
}

fn parse_mountinfo_line(line: &str) -> Option<CgroupMount> {
    let fields: Vec<&str> = line.split(' ').collect();
    let dash = fields.iter().skip(6).position(|f| *f == "-")? + 6;
    let (root, mount_point) = (fields.get(3)?, fields.get(4)?);
    let (fs_type, super_options) = (fields.get(dash + 1)?, fields.get(dash + 3)?);
    let kind = match *fs_type {
        "cgroup2" => MountKind::V2,
        "cgroup" => {
            let options: Vec<&str> = super_options.split(',').collect();
            MountKind::V1 {
                controllers: options
                    .iter()
                    .filter(|o| V1_CONTROLLERS.contains(o))
                    .map(|o| o.to_string())
                    .collect(),
                name: options
                    .iter()
                    .find_map(|o| o.strip_prefix("name="))
                    .map(str::to_string),
            }
        }
        _ => return None,
    };
    Some(CgroupMount {
        kind,
        mount_point: PathBuf::from(unescape_octal(mount_point)),
        root: PathBuf::from(unescape_octal(root)),
    })
}

/// Undo mountinfo's `\040`-style escapes.
fn unescape_octal(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|d| d.iter().all(|b| (b'0'..=b'7').contains(b)));
        match (bytes[i], octal) {
            (b'\\', Some(digits)) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A mounted v1 hierarchy that carries resource controllers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V1Hierarchy {
    /// e.g. `["cpu", "cpuacct"]` for a comounted hierarchy.
    pub controllers: Vec<String>,
    pub mount_point: PathBuf,
}

impl V1Hierarchy {
    pub fn new(controllers: &[&str], mount_point: impl Into<PathBuf>) -> Self {
        Self {
            controllers: controllers.iter().map(|c| c.to_string()).collect(),
            mount_point: mount_point.into(),
        }
    }
}

/// Called after every mkdir so a fake cgroupfs can create the files the
/// kernel would (only set by unit tests).
#[derive(Clone, Default)]
pub(crate) struct MkdirHook(pub(crate) Option<Arc<PopulateFn>>);

type PopulateFn = dyn Fn(&Path) + Send + Sync;

impl MkdirHook {
    pub(crate) fn after_mkdir(&self, dir: &Path) {
        if let Some(hook) = &self.0 {
            hook(dir);
        }
    }
}

impl fmt::Debug for MkdirHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(if self.0.is_some() {
            "MkdirHook(set)"
        } else {
            "MkdirHook(none)"
        })
    }
}

/// The cgroup mounts of a host: what the drivers work on. Build it with
/// [`CgroupHost::detect`] on a real host, or by hand (any directories) for
/// tests.
#[derive(Debug, Clone)]
pub struct CgroupHost {
    layout: CgroupLayout,
    v1: Vec<V1Hierarchy>,
    unified: Option<PathBuf>,
    pub(crate) mkdir_hook: MkdirHook,
}

impl CgroupHost {
    /// This host: statfs for the layout; on v1 and hybrid hosts also
    /// /proc/self/mountinfo for the v1 mount points.
    pub fn detect() -> Result<Self, CgroupError> {
        let layout = detect()?;
        if layout == CgroupLayout::V2 {
            return Ok(Self::v2(CGROUP_ROOT));
        }
        let mountinfo =
            std::fs::read_to_string("/proc/self/mountinfo").map_err(|source| CgroupError::Io {
                op: "read",
                path: "/proc/self/mountinfo".into(),
                source,
            })?;
        let hierarchies = v1_hierarchies(&parse_mountinfo(&mountinfo));
        Ok(match layout {
            CgroupLayout::Hybrid { unified } => Self::hybrid(hierarchies, unified),
            _ => Self::v1(hierarchies),
        })
    }

    /// The layout and mounts described by a mountinfo text alone: cgroup2
    /// mounted at `cgroup_root` means v2; v1 mounts plus a cgroup2 mount
    /// elsewhere mean hybrid; v1 mounts only mean v1.
    pub fn from_mountinfo(mountinfo: &str, cgroup_root: &Path) -> Result<Self, CgroupError> {
        let mounts = parse_mountinfo(mountinfo);
        let hierarchies = v1_hierarchies(&mounts);
        let unified = mounts
            .iter()
            .find(|m| m.kind == MountKind::V2)
            .map(|m| m.mount_point.clone());
        match unified {
            Some(u) if u == cgroup_root => Ok(Self::v2(u)),
            Some(u) if !hierarchies.is_empty() => Ok(Self::hybrid(hierarchies, u)),
            Some(u) => Ok(Self::v2(u)),
            None if !hierarchies.is_empty() => Ok(Self::v1(hierarchies)),
            None => Err(CgroupError::NoCgroupfs {
                path: cgroup_root.into(),
                found: "no cgroup or cgroup2 mount in mountinfo".into(),
            }),
        }
    }

    /// A pure v2 host with the unified hierarchy mounted at `mount`.
    pub fn v2(mount: impl Into<PathBuf>) -> Self {
        Self {
            layout: CgroupLayout::V2,
            v1: Vec::new(),
            unified: Some(mount.into()),
            mkdir_hook: MkdirHook::default(),
        }
    }

    /// A pure v1 host.
    pub fn v1(hierarchies: Vec<V1Hierarchy>) -> Self {
        Self {
            layout: CgroupLayout::V1,
            v1: hierarchies,
            unified: None,
            mkdir_hook: MkdirHook::default(),
        }
    }

    /// v1 hierarchies plus a cgroup2 mount.
    pub fn hybrid(hierarchies: Vec<V1Hierarchy>, unified: impl Into<PathBuf>) -> Self {
        let unified = unified.into();
        Self {
            layout: CgroupLayout::Hybrid {
                unified: unified.clone(),
            },
            v1: hierarchies,
            unified: Some(unified),
            mkdir_hook: MkdirHook::default(),
        }
    }

    pub fn layout(&self) -> &CgroupLayout {
        &self.layout
    }

    pub fn v1_hierarchies(&self) -> &[V1Hierarchy] {
        &self.v1
    }

    /// The cgroup2 mount point (v2 and hybrid hosts).
    pub fn unified(&self) -> Option<&Path> {
        self.unified.as_deref()
    }

    /// The manager for one container: resolves `cgroups_path` (OCI
    /// `linux.cgroupsPath`, `None` when absent) and picks the driver.
    pub fn manager(
        &self,
        cgroups_path: Option<&Path>,
        container_id: &str,
    ) -> Result<Box<dyn CgroupManager>, CgroupError> {
        let path = CgroupPath::resolve(cgroups_path, container_id)?;
        Ok(self.manager_at(path))
    }

    /// The manager for an already resolved path.
    pub fn manager_at(&self, path: CgroupPath) -> Box<dyn CgroupManager> {
        match &self.layout {
            CgroupLayout::V1 => Box::new(self.v1_manager(path)),
            CgroupLayout::V2 => Box::new(self.v2_manager(path)),
            CgroupLayout::Hybrid { .. } => Box::new(HybridManager::new(
                self.v1_manager(path.clone()),
                self.v2_manager(path),
            )),
        }
    }

    /// The v1 driver over this host's v1 hierarchies (on a hybrid host: the
    /// v1 half alone).
    pub fn v1_manager(&self, path: CgroupPath) -> V1Manager {
        V1Manager::new(self.v1.clone(), path, self.mkdir_hook.clone())
    }

    /// The v2 driver over this host's cgroup2 mount (on a hybrid host: the
    /// unified half alone). Panics on a pure v1 host, which has none.
    pub fn v2_manager(&self, path: CgroupPath) -> V2Manager {
        let mount = self
            .unified
            .clone()
            .expect("v2_manager needs a host with a cgroup2 mount");
        V2Manager::new(mount, path, self.mkdir_hook.clone())
    }

    #[cfg(test)]
    pub(crate) fn with_mkdir_hook(mut self, hook: impl Fn(&Path) + Send + Sync + 'static) -> Self {
        self.mkdir_hook = MkdirHook(Some(Arc::new(hook)));
        self
    }
}

/// The v1 hierarchies with controllers, one per controller set (a hierarchy
/// mounted twice is used at its first mount point). Named hierarchies without
/// controllers (`name=systemd`) are skipped: they limit nothing, and the
/// unified hierarchy already tracks the container on hybrid hosts.
fn v1_hierarchies(mounts: &[CgroupMount]) -> Vec<V1Hierarchy> {
    let mut hierarchies: Vec<V1Hierarchy> = Vec::new();
    for mount in mounts {
        let MountKind::V1 { controllers, .. } = &mount.kind else {
            continue;
        };
        if controllers.is_empty() || hierarchies.iter().any(|h| &h.controllers == controllers) {
            continue;
        }
        hierarchies.push(V1Hierarchy {
            controllers: controllers.clone(),
            mount_point: mount.mount_point.clone(),
        });
    }
    hierarchies
}

#[cfg(test)]
mod tests {
    use super::*;

    /// This VM's mountinfo (hybrid: v1 controllers + cgroup2 with hugetlb).
    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";

    /// A classic v1 host (Debian 10 style): comounted cpu,cpuacct with
    /// symlinks, optional fields before the separator.
    const V1: &str = "\
25 18 0:22 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,nosuid shared:11 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/pids rw,nosuid shared:12 - cgroup cgroup rw,pids
30 25 0:27 / /sys/fs/cgroup/net_cls,net_prio rw shared:13 master:2 - cgroup cgroup rw,net_cls,net_prio
";

    const V2: &str = "\
24 18 0:22 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate,memory_recursiveprot
26 20 0:23 / /proc rw - proc proc rw
";

    #[test]
    fn parses_v1_controllers_names_and_comounts() {
        let mounts = parse_mountinfo(V1);
        assert_eq!(mounts.len(), 3);
        assert_eq!(
            mounts[0],
            CgroupMount {
                kind: MountKind::V1 {
                    controllers: vec!["cpu".into(), "cpuacct".into()],
                    name: None
                },
                mount_point: "/sys/fs/cgroup/cpu,cpuacct".into(),
                root: "/".into(),
            }
        );
        let named = &parse_mountinfo(HYBRID)[3];
        assert_eq!(
            named.kind,
            MountKind::V1 {
                controllers: vec![],
                name: Some("systemd".into())
            }
        );
    }

    #[test]
    fn hybrid_mountinfo_gives_hybrid_layout_without_named_hierarchy() {
        let host = CgroupHost::from_mountinfo(HYBRID, Path::new(CGROUP_ROOT)).unwrap();
        assert_eq!(
            host.layout(),
            &CgroupLayout::Hybrid {
                unified: "/sys/fs/cgroup/unified".into()
            }
        );
        let names: Vec<_> = host
            .v1_hierarchies()
            .iter()
            .map(|h| h.controllers.join(","))
            .collect();
        assert_eq!(names, ["cpu", "cpuacct", "memory"]);
        assert_eq!(
            host.v1_hierarchies()[2].mount_point,
            Path::new("/sys/fs/cgroup/memory")
        );
    }

    #[test]
    fn v1_and_v2_mountinfo_layouts() {
        let v1 = CgroupHost::from_mountinfo(V1, Path::new(CGROUP_ROOT)).unwrap();
        assert_eq!(v1.layout(), &CgroupLayout::V1);
        assert_eq!(v1.unified(), None);
        assert_eq!(
            v1.v1_hierarchies()[0],
            V1Hierarchy::new(&["cpu", "cpuacct"], "/sys/fs/cgroup/cpu,cpuacct")
        );

        let v2 = CgroupHost::from_mountinfo(V2, Path::new(CGROUP_ROOT)).unwrap();
        assert_eq!(v2.layout(), &CgroupLayout::V2);
        assert_eq!(v2.unified(), Some(Path::new("/sys/fs/cgroup")));
        assert!(v2.v1_hierarchies().is_empty());
    }

    #[test]
    fn no_cgroup_mount_is_a_clear_error() {
        let err = CgroupHost::from_mountinfo(
            "26 20 0:23 / /proc rw - proc proc rw\n",
            Path::new(CGROUP_ROOT),
        )
        .unwrap_err();
        assert!(err.to_string().contains("no cgroup"), "{err}");
    }

    #[test]
    fn escaped_mount_points_are_unescaped() {
        let line = "40 31 0:37 / /mnt/my\\040cgroups rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            parse_mountinfo(line)[0].mount_point,
            Path::new("/mnt/my cgroups")
        );
        assert_eq!(unescape_octal("a\\134b\\9"), "a\\b\\9");
    }

    #[test]
    fn statfs_detection_agrees_with_this_hosts_mountinfo() {
        // Whatever this machine is, the two detection paths must agree.
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let from_mountinfo =
            CgroupHost::from_mountinfo(&mountinfo, Path::new(CGROUP_ROOT)).unwrap();
        assert_eq!(&detect().unwrap(), from_mountinfo.layout());
    }

    #[test]
    fn statfs_on_another_filesystem_is_not_a_cgroupfs() {
        let err = detect_at(Path::new("/proc"), Path::new("/proc")).unwrap_err();
        assert!(matches!(err, CgroupError::NoCgroupfs { .. }), "{err}");
    }
}
