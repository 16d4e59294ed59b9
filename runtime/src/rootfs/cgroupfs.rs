//! The `cgroup` mount of config.json: the container's view of /sys/fs/cgroup.
//!
//! Mechanism: with a private cgroup namespace (`unshare(CLONE_NEWCGROUP)`
//! after the process joined its cgroup), a fresh `mount -t cgroup -o memory`
//! or `mount -t cgroup2` shows the container's own cgroup as the root of the
//! hierarchy. Without one (or where the kernel refuses, e.g. cgroup v1 in a
//! user namespace), the container's own cgroup directory is bind-mounted
//! instead. On v1 and hybrid hosts the hierarchies sit in a tmpfs, as on the
//! host; the host's co-mount symlinks (`cpu -> cpu,cpuacct`) are recreated.
//!
//! The host layout is read from /proc/self/mountinfo and /proc/self/cgroup by
//! [`HostCgroups::read`] before the cgroup namespace is unshared.

use std::path::{Path, PathBuf};

use nix::mount::MsFlags;

use crate::error::{Error, Result};
use crate::mountinfo;
use crate::syscall::{Create, Rootfs, Source, Syscall};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Version {
    V1,
    V2,
}

/// One cgroup hierarchy as the host mounts it, and where this process is in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    /// `/sys/fs/cgroup/memory`, `/sys/fs/cgroup/unified`, `/sys/fs/cgroup`.
    pub mount_point: PathBuf,
    pub version: Version,
    /// v1 mount options naming the hierarchy (`memory`, `cpu,cpuacct`, `name=systemd`).
    pub options: String,
    /// This process's cgroup in the hierarchy (from /proc/self/cgroup).
    pub own_path: PathBuf,
}

/// The host's cgroup mounts below `root` (usually /sys/fs/cgroup).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostCgroups {
    pub root: PathBuf,
    pub hierarchies: Vec<Hierarchy>,
    /// Symlinks directly in `root` (`cpu -> cpu,cpuacct`), name and target.
    pub symlinks: Vec<(String, PathBuf)>,
}

impl HostCgroups {
    /// Read the layout the calling process sees (call before unsharing the
    /// cgroup namespace: the paths must be the host's).
    pub fn read() -> Result<HostCgroups> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::io("read /proc/self/mountinfo", e))?;
        let own = std::fs::read_to_string("/proc/self/cgroup")
            .map_err(|e| Error::io("read /proc/self/cgroup", e))?;
        let mut host = Self::from_tables(&mountinfo, &own);
        if let Ok(entries) = std::fs::read_dir(&host.root) {
            for entry in entries.flatten() {
                if let Ok(target) = std::fs::read_link(entry.path()) {
                    host.symlinks
                        .push((entry.file_name().to_string_lossy().into_owned(), target));
                }
            }
        }
        host.symlinks.sort();
        Ok(host)
    }

    /// The layout from the text of /proc/self/mountinfo and /proc/self/cgroup.
    pub fn from_tables(mountinfo_text: &str, proc_cgroup: &str) -> HostCgroups {
        let memberships = crate::cgroups::parse_proc_cgroup(proc_cgroup);
        let mut hierarchies = Vec::new();
        for m in mountinfo::parse(mountinfo_text) {
            let version = match m.fstype.as_str() {
                "cgroup" => Version::V1,
                "cgroup2" => Version::V2,
                _ => continue,
            };
            let options: Vec<&str> = m
                .super_options
                .split(',')
                .filter(|o| !matches!(*o, "rw" | "ro" | "" | "xattr" | "nsdelegate"))
                .filter(|o| !o.starts_with("release_agent=") && !o.starts_with("memory_"))
                .collect();
            let options = options.join(",");
            let own_path = memberships
                .iter()
                .find(|(controllers, _)| match version {
                    Version::V2 => controllers.is_empty(),
                    Version::V1 => same_controllers(controllers, &options),
                })
                .map(|(_, p)| p.clone())
                .unwrap_or_else(|| PathBuf::from("/"));
            hierarchies.push(Hierarchy {
                mount_point: m.mount_point,
                version,
                options,
                own_path,
            });
        }
        let root = common_root(&hierarchies);
        HostCgroups {
            root,
            hierarchies,
            symlinks: Vec::new(),
        }
    }

    /// For callers that know no cgroup mount will be asked for (tests).
    pub fn none() -> Result<HostCgroups> {
        Err(Error::step("cgroup mount", "no cgroup layout available"))
    }

    /// A pure v2 host: one cgroup2 mount at the root.
    fn is_unified_only(&self) -> bool {
        self.hierarchies.len() == 1
            && self.hierarchies[0].version == Version::V2
            && self.hierarchies[0].mount_point == self.root
    }
}

fn same_controllers(a: &str, b: &str) -> bool {
    let mut a: Vec<&str> = a.split(',').collect();
    let mut b: Vec<&str> = b.split(',').collect();
    a.sort_unstable();
    b.sort_unstable();
    a == b
}

/// /sys/fs/cgroup for the usual layouts: the parent of v1 hierarchies, or the
/// v2 mount point itself.
fn common_root(hierarchies: &[Hierarchy]) -> PathBuf {
    if let [only] = hierarchies {
        if only.version == Version::V2 {
            return only.mount_point.clone();
        }
    }
    hierarchies
        .iter()
        .find(|h| h.version == Version::V1)
        .and_then(|h| h.mount_point.parent())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("/sys/fs/cgroup"))
}

/// Mount the container's cgroup filesystem view at `dest`.
pub fn mount_cgroups(
    sys: &dyn Syscall,
    root: &Rootfs,
    dest: &Path,
    flags: MsFlags,
    host: &HostCgroups,
    cgroup_ns: bool,
) -> Result<()> {
    let step = |what: &str| format!("mount {what} on {}", dest.display());
    if host.is_unified_only() {
        let h = &host.hierarchies[0];
        return mount_hierarchy(sys, root, dest, flags, h, cgroup_ns);
    }
    let target = sys
        .resolve(root, dest, Create::Dir)
        .map_err(|e| Error::io(step("cgroup tmpfs"), e))?;
    sys.mount(
        Source::Name("tmpfs"),
        &target,
        Some("tmpfs"),
        (flags & !MsFlags::MS_RDONLY) | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
        Some("mode=755"),
    )
    .map_err(|e| Error::io(step("tmpfs"), e))?;
    for h in &host.hierarchies {
        let Ok(sub) = h.mount_point.strip_prefix(&host.root) else {
            continue;
        };
        mount_hierarchy(sys, root, &dest.join(sub), flags, h, cgroup_ns)?;
    }
    if !host.symlinks.is_empty() {
        let dir = sys
            .resolve(root, dest, Create::Nothing)
            .map_err(|e| Error::io(step("cgroup tmpfs"), e))?;
        for (name, points_to) in &host.symlinks {
            sys.symlink(points_to, &dir, name.as_ref())
                .map_err(|e| Error::io(format!("symlink {}/{name}", dest.display()), e))?;
        }
    }
    if flags.contains(MsFlags::MS_RDONLY) {
        let again = sys
            .resolve(root, dest, Create::Nothing)
            .map_err(|e| Error::io(step("cgroup tmpfs"), e))?;
        sys.mount(
            Source::Name("tmpfs"),
            &again,
            Some("tmpfs"),
            MsFlags::MS_REMOUNT
                | flags
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            Some("mode=755"),
        )
        .map_err(|e| Error::io(step("read-only cgroup tmpfs"), e))?;
    }
    Ok(())
}

fn mount_hierarchy(
    sys: &dyn Syscall,
    root: &Rootfs,
    dest: &Path,
    flags: MsFlags,
    h: &Hierarchy,
    cgroup_ns: bool,
) -> Result<()> {
    let target = sys
        .resolve(root, dest, Create::Dir)
        .map_err(|e| Error::io(format!("create {}", dest.display()), e))?;
    let flags = flags | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    if cgroup_ns {
        let (fstype, data) = match h.version {
            Version::V1 => ("cgroup", Some(h.options.as_str())),
            Version::V2 => ("cgroup2", None),
        };
        match sys.mount(Source::Name(fstype), &target, Some(fstype), flags, data) {
            Ok(()) => return Ok(()),
            // cgroup v1 cannot be mounted from a user namespace: bind instead.
            Err(e) if e.raw_os_error() == Some(libc::EPERM) => {
                tracing::debug!(dest = %dest.display(), "cgroup mount refused, binding the container's cgroup instead");
            }
            Err(e) => {
                return Err(Error::io(
                    format!("mount {fstype} on {}", dest.display()),
                    e,
                ))
            }
        }
    }
    let source = h
        .mount_point
        .join(h.own_path.strip_prefix("/").unwrap_or(&h.own_path));
    sys.mount(
        Source::Host(&source),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| {
        Error::io(
            format!("bind {} on {}", source.display(), dest.display()),
            e,
        )
    })?;
    let again = sys
        .resolve(root, dest, Create::Nothing)
        .map_err(|e| Error::io(format!("reopen {}", dest.display()), e))?;
    sys.mount(
        Source::Name("none"),
        &again,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags,
        None,
    )
    .map_err(|e| Error::io(format!("remount {}", dest.display()), e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::recording::{Call, RecordingSyscall};

    const HYBRID_MOUNTINFO: &str = "\
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec - tmpfs tmpfs rw,mode=755
31 30 0:27 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
32 30 0:28 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
33 30 0:29 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
";
    const HYBRID_CGROUP: &str = "4:memory:/berth/c1\n9:name=systemd:/\n0::/berth/c1\n";

    #[test]
    fn reads_a_hybrid_layout() {
        let host = HostCgroups::from_tables(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        assert_eq!(host.root, PathBuf::from("/sys/fs/cgroup"));
        assert_eq!(host.hierarchies.len(), 3);
        assert_eq!(host.hierarchies[0].options, "memory");
        assert_eq!(host.hierarchies[0].own_path, PathBuf::from("/berth/c1"));
        assert_eq!(host.hierarchies[1].options, "name=systemd");
        assert_eq!(host.hierarchies[2].version, Version::V2);
        assert_eq!(host.hierarchies[2].own_path, PathBuf::from("/berth/c1"));
    }

    #[test]
    fn with_a_cgroup_namespace_each_hierarchy_is_mounted_fresh() {
        let host = HostCgroups::from_tables(HYBRID_MOUNTINFO, HYBRID_CGROUP);
        let sys = RecordingSyscall::new();
        let root = sys.open_rootfs(Path::new("/bundle/rootfs")).unwrap();
        mount_cgroups(
            &sys,
            &root,
            Path::new("/sys/fs/cgroup"),
            MsFlags::MS_RDONLY,
            &host,
            true,
        )
        .unwrap();
        let mounts: Vec<(PathBuf, Option<String>, Option<String>)> = sys
            .mounts()
            .into_iter()
            .map(|c| match c {
                Call::Mount {
                    target,
                    fstype,
                    data,
                    ..
                } => (target, fstype, data),
                _ => unreachable!(),
            })
            .collect();
        assert_eq!(
            mounts,
            vec![
                (
                    "/sys/fs/cgroup".into(),
                    Some("tmpfs".into()),
                    Some("mode=755".into())
                ),
                (
                    "/sys/fs/cgroup/memory".into(),
                    Some("cgroup".into()),
                    Some("memory".into())
                ),
                (
                    "/sys/fs/cgroup/systemd".into(),
                    Some("cgroup".into()),
                    Some("name=systemd".into())
                ),
                (
                    "/sys/fs/cgroup/unified".into(),
                    Some("cgroup2".into()),
                    None
                ),
                (
                    "/sys/fs/cgroup".into(),
                    Some("tmpfs".into()),
                    Some("mode=755".into())
                ),
            ]
        );
    }

    #[test]
    fn without_a_cgroup_namespace_the_own_cgroup_is_bound() {
        let mi = "33 25 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        let host = HostCgroups::from_tables(mi, "0::/berth/c1\n");
        let sys = RecordingSyscall::new();
        let root = sys.open_rootfs(Path::new("/r")).unwrap();
        mount_cgroups(
            &sys,
            &root,
            Path::new("/sys/fs/cgroup"),
            MsFlags::empty(),
            &host,
            false,
        )
        .unwrap();
        match &sys.mounts()[0] {
            Call::Mount { source, flags, .. } => {
                assert_eq!(
                    source.as_deref(),
                    Some(Path::new("/sys/fs/cgroup/berth/c1"))
                );
                assert!(flags.contains(MsFlags::MS_BIND));
            }
            other => panic!("{other:?}"),
        }
    }
}
