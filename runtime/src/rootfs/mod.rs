//! The container's root filesystem: mounts, /dev, masked and read-only paths,
//! sysctls, then `pivot_root`.
//!
//! Mechanism: in the container's new mount namespace, `mount(2)` with
//! `MS_REC|MS_SLAVE` on `/` (so nothing done here propagates to the host),
//! a recursive bind of the rootfs onto itself (pivot_root needs a mount
//! point), every config.json mount onto a target resolved beneath the rootfs
//! by fd (see [`crate::beneath`]), device nodes, then `pivot_root(".", ".")`
//! and a lazy `umount2(".", MNT_DETACH)` of the old root stacked underneath.
//! With `--no-pivot`, `MS_MOVE` plus `chroot(2)` instead.
//!
//! The order, as runc and crun do it:
//! 1. [`prepare`] (still seeing the host): propagation, rootfs bind, mounts in
//!    config order, devices and /dev links, sysctls, masked paths,
//!    read-only paths;
//! 2. (the runtime runs createRuntime and createContainer hooks here)
//! 3. [`pivot`];
//! 4. [`remount_root_readonly`] when `root.readonly`.

pub mod cgroupfs;
pub mod options;

use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use oci_spec::runtime::Mount;

use crate::devices::{self, Device};
use crate::error::{Error, Result};
use crate::syscall::{Create, Rootfs, Source, Syscall};
use cgroupfs::HostCgroups;
use options::MountOptions;

/// Everything the rootfs steps need, taken from config.json by the caller.
#[derive(Debug, Clone, Default)]
pub struct RootfsPlan {
    /// Host path of the rootfs (absolute).
    pub rootfs: PathBuf,
    /// Bundle directory, against which relative bind sources resolve.
    pub bundle: PathBuf,
    pub mounts: Vec<Mount>,
    /// `linux.rootfsPropagation` (`private`, `rslave`, `shared`, ...).
    pub propagation: Option<String>,
    /// Device nodes to create, when `setup_dev`.
    pub devices: Vec<Device>,
    pub setup_dev: bool,
    pub masked_paths: Vec<String>,
    pub readonly_paths: Vec<String>,
    /// `linux.sysctl`, already validated (see [`crate::sysctl`]).
    pub sysctl: Vec<(String, String)>,
    /// The container has its own user namespace (no mknod; locked flags).
    pub user_ns: bool,
    /// The container has its own cgroup namespace.
    pub cgroup_ns: bool,
    /// The container has its own network namespace (sysfs can be mounted).
    pub net_ns: bool,
    /// The host's cgroup layout for `cgroup` mounts; `None`: ask the
    /// `cgroups_ready` callback of [`prepare`] when the first one comes.
    pub host_cgroups: Option<HostCgroups>,
}

/// Called by [`prepare`] right before the first `cgroup` mount: must return
/// only once the process is in its cgroups (and its cgroup namespace), with
/// the host's layout. The init uses it to overlap the (slow, RCU-bound)
/// cgroup v1 joins done by the parent with the mounts before that point.
pub type CgroupsReady<'a> = &'a mut dyn FnMut() -> Result<HostCgroups>;

/// Steps 1: everything done while the host's root is still visible.
pub fn prepare(
    sys: &dyn Syscall,
    plan: &RootfsPlan,
    cgroups_ready: CgroupsReady<'_>,
) -> Result<Rootfs> {
    set_root_propagation(sys, plan)?;
    sys.mount_path(
        Some(&plan.rootfs),
        &plan.rootfs,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| {
        Error::io(
            format!("bind rootfs {} onto itself", plan.rootfs.display()),
            e,
        )
    })?;
    let root = sys
        .open_rootfs(&plan.rootfs)
        .map_err(|e| Error::io(format!("open rootfs {}", plan.rootfs.display()), e))?;
    for mount in &plan.mounts {
        mount_one(sys, &root, plan, mount, cgroups_ready)?;
    }
    if plan.setup_dev {
        devices::create_devices(sys, &root, &plan.devices, plan.user_ns)?;
        devices::create_dev_symlinks(sys, &root)?;
        let nodes: Vec<String> = plan
            .devices
            .iter()
            .map(|d| d.path.display().to_string())
            .collect();
        let how = if plan.user_ns {
            "bind-mounted from the host"
        } else {
            "mknod"
        };
        tracing::debug!(
            step = "devices",
            count = nodes.len(),
            "device nodes ({how}): {}",
            nodes.join(" ")
        );
    }
    for (key, value) in &plan.sysctl {
        write_sysctl(sys, &root, key, value)?;
    }
    if !plan.masked_paths.is_empty() {
        mask_paths(sys, &root, &plan.masked_paths)?;
        tracing::debug!(
            step = "mask",
            count = plan.masked_paths.len(),
            "masked (/dev/null or an empty read-only tmpfs mounted over them): {}",
            plan.masked_paths.join(" ")
        );
    }
    for path in &plan.readonly_paths {
        make_readonly(sys, &root, Path::new(path))?;
    }
    if !plan.readonly_paths.is_empty() {
        tracing::debug!(
            step = "readonly",
            count = plan.readonly_paths.len(),
            "bind-mounted read-only onto themselves: {}",
            plan.readonly_paths.join(" ")
        );
    }
    Ok(root)
}

fn set_root_propagation(sys: &dyn Syscall, plan: &RootfsPlan) -> Result<()> {
    let flags = match plan.propagation.as_deref() {
        None | Some("") => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        Some(name) => {
            let parsed = options::parse(&[name.to_string()]).map_err(|m| Error::InvalidConfig {
                file: "config.json".into(),
                message: format!("linux.rootfsPropagation: {m}"),
            })?;
            match parsed.propagation.as_slice() {
                [one] => *one | MsFlags::MS_REC,
                _ => {
                    return Err(Error::InvalidConfig {
                        file: "config.json".into(),
                        message: format!(
                            "linux.rootfsPropagation {name:?} is not a propagation mode (private, slave, shared, unbindable)"
                        ),
                    })
                }
            }
        }
    };
    sys.mount_path(None, Path::new("/"), None, flags, None)
        .map_err(|e| Error::io("make / propagation private to the container", e))?;
    if flags.contains(MsFlags::MS_SHARED) {
        // pivot_root refuses a new root whose parent mount is shared.
        let parent = sys
            .mount_point_of(&plan.rootfs)
            .map_err(|e| Error::io("find the mount holding the rootfs", e))?;
        sys.mount_path(None, &parent, None, MsFlags::MS_PRIVATE, None)
            .map_err(|e| Error::io(format!("make {} private", parent.display()), e))?;
    }
    Ok(())
}

fn config_error(message: String) -> Error {
    Error::InvalidConfig {
        file: "config.json".into(),
        message,
    }
}

fn mount_one(
    sys: &dyn Syscall,
    root: &Rootfs,
    plan: &RootfsPlan,
    m: &Mount,
    cgroups_ready: CgroupsReady<'_>,
) -> Result<()> {
    let dest = Path::new("/").join(m.destination());
    let options = m.options().clone().unwrap_or_default();
    let opts = options::parse(&options)
        .map_err(|msg| config_error(format!("mount {}: {msg}", dest.display())))?;
    let fstype = m.typ().as_deref().unwrap_or("none");
    let source = m.source().as_deref().unwrap_or(Path::new("none")).display();
    tracing::debug!(step = "mount", destination = %dest.display(), fstype, %source, ?options,
        "mount {source} on {} (type {fstype}, options {})", dest.display(), options.join(","));
    if let Some(recursive) = opts.bind {
        return bind_mount(sys, root, plan, m, &dest, &opts, recursive);
    }
    match fstype {
        "cgroup" | "cgroup2" => {
            let host = match &plan.host_cgroups {
                Some(host) => host.clone(),
                None => cgroups_ready()?,
            };
            cgroupfs::mount_cgroups(sys, root, &dest, opts.flags, &host, plan.cgroup_ns)?;
        }
        _ => {
            let target = sys
                .resolve(root, &dest, Create::Dir)
                .map_err(|e| Error::io(format!("create mount point {}", dest.display()), e))?;
            if matches!(fstype, "proc" | "sysfs") {
                refuse_symlinked_target(sys, root, &target, &dest, fstype)?;
            }
            let source_name = m
                .source()
                .as_ref()
                .and_then(|s| s.to_str())
                .unwrap_or(fstype)
                .to_string();
            let data = opts.data_string();
            let result = sys.mount(
                Source::Name(&source_name),
                &target,
                Some(fstype),
                opts.flags,
                data.as_deref(),
            );
            match result {
                Ok(()) => {}
                // Without its own network (or ipc) namespace a container may not
                // mount a new sysfs (or mqueue): show the host's, as runc does.
                Err(e)
                    if e.raw_os_error() == Some(libc::EPERM)
                        && (fstype == "sysfs" || fstype == "mqueue") =>
                {
                    let host = if fstype == "sysfs" {
                        "/sys"
                    } else {
                        "/dev/mqueue"
                    };
                    tracing::debug!(fstype, "mount refused, binding the host's {host}");
                    bind_host_path(
                        sys,
                        root,
                        Path::new(host),
                        &dest,
                        true,
                        opts.bind_remount_flags(),
                    )?;
                }
                Err(e) => {
                    return Err(Error::io(
                        format!("mount {fstype} on {}", dest.display()),
                        e,
                    ))
                }
            }
        }
    }
    apply_propagation(sys, root, &dest, &opts)
}

/// /proc and /sys must be real directories of the image: a symlink there
/// would put a fresh procfs somewhere the masked paths do not cover.
fn refuse_symlinked_target(
    sys: &dyn Syscall,
    root: &Rootfs,
    target: &crate::syscall::Target,
    dest: &Path,
    fstype: &str,
) -> Result<()> {
    let real = sys
        .path_in_root(root, target)
        .map_err(|e| Error::io(format!("check mount point {}", dest.display()), e))?;
    if real != dest {
        return Err(Error::step(
            format!("mount {fstype} on {}", dest.display()),
            format!(
                "the mount point is a symlink (to {}) in the image; refusing",
                real.display()
            ),
        ));
    }
    Ok(())
}

fn bind_mount(
    sys: &dyn Syscall,
    root: &Rootfs,
    plan: &RootfsPlan,
    m: &Mount,
    dest: &Path,
    opts: &MountOptions,
    recursive: bool,
) -> Result<()> {
    let source = m
        .source()
        .as_ref()
        .ok_or_else(|| config_error(format!("bind mount {} has no source", dest.display())))?;
    let source = if source.is_absolute() {
        source.clone()
    } else {
        plan.bundle.join(source)
    };
    bind_host_path(
        sys,
        root,
        &source,
        dest,
        recursive,
        opts.bind_remount_flags(),
    )?;
    apply_propagation(sys, root, dest, opts)
}

/// Bind the host path `source` onto `dest` in the container, then apply the
/// per-mount flags with a remount (a bind mount ignores them on creation).
fn bind_host_path(
    sys: &dyn Syscall,
    root: &Rootfs,
    source: &Path,
    dest: &Path,
    recursive: bool,
    remount_flags: MsFlags,
) -> Result<()> {
    let step = format!("bind {} on {}", source.display(), dest.display());
    let is_dir = sys.host_is_dir(source).map_err(|e| Error::io(&step, e))?;
    let create = if is_dir { Create::Dir } else { Create::File };
    let target = sys
        .resolve(root, dest, create)
        .map_err(|e| Error::io(format!("create mount point {}", dest.display()), e))?;
    let mut flags = MsFlags::MS_BIND;
    if recursive {
        flags |= MsFlags::MS_REC;
    }
    sys.mount(Source::Host(source), &target, None, flags, None)
        .map_err(|e| Error::io(&step, e))?;
    if !remount_flags.is_empty() {
        remount_bind(sys, root, dest, remount_flags)?;
    }
    Ok(())
}

/// `MS_REMOUNT|MS_BIND` with `flags`, keeping the flags the mount already has
/// that a user namespace would lock (nosuid, nodev, noexec, rdonly).
fn remount_bind(sys: &dyn Syscall, root: &Rootfs, dest: &Path, flags: MsFlags) -> Result<()> {
    let step = format!("remount {}", dest.display());
    // Reopen: the earlier fd is on the directory *under* the new mount.
    let mounted = sys
        .resolve(root, dest, Create::Nothing)
        .map_err(|e| Error::io(&step, e))?;
    let current = sys.mount_flags(&mounted).map_err(|e| Error::io(&step, e))?;
    let kept = current
        & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RDONLY);
    let atime = MsFlags::MS_NOATIME | MsFlags::MS_RELATIME | MsFlags::MS_STRICTATIME;
    let kept_atime = if flags.intersects(atime) {
        MsFlags::empty()
    } else {
        current & (atime | MsFlags::MS_NODIRATIME)
    };
    sys.mount(
        Source::Name("none"),
        &mounted,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | flags | kept | kept_atime,
        None,
    )
    .map_err(|e| Error::io(step, e))
}

fn apply_propagation(
    sys: &dyn Syscall,
    root: &Rootfs,
    dest: &Path,
    opts: &MountOptions,
) -> Result<()> {
    for flags in &opts.propagation {
        let step = format!("set propagation of {}", dest.display());
        let mounted = sys
            .resolve(root, dest, Create::Nothing)
            .map_err(|e| Error::io(&step, e))?;
        sys.mount(Source::Name("none"), &mounted, None, *flags, None)
            .map_err(|e| Error::io(&step, e))?;
    }
    Ok(())
}

fn write_sysctl(sys: &dyn Syscall, root: &Rootfs, key: &str, value: &str) -> Result<()> {
    let path = crate::sysctl::proc_path(key);
    let step = format!("sysctl {key}={value}");
    let target = sys
        .resolve(root, &path, Create::Nothing)
        .map_err(|e| Error::io(&step, e))?;
    sys.write_file(&target, value)
        .map_err(|e| Error::io(step, e))
}

/// Cover each masked path: directories with an empty read-only tmpfs, files
/// with the host's /dev/null, checked to really be the 1:3 character device
/// (a bind of anything else would expose it).
fn mask_paths(sys: &dyn Syscall, root: &Rootfs, paths: &[String]) -> Result<()> {
    let null = sys
        .resolve_host(Path::new("/dev/null"))
        .map_err(|e| Error::io("open /dev/null", e))?;
    match sys.is_char_device(&null, 1, 3) {
        Ok(true) => {}
        Ok(false) => {
            return Err(Error::step(
                "mask paths",
                "/dev/null is not the null device (1:3); refusing to bind it over masked paths",
            ))
        }
        Err(e) => return Err(Error::io("check /dev/null", e)),
    }
    for path in paths {
        let dest = Path::new("/").join(path);
        let step = format!("mask {}", dest.display());
        let target = match sys.resolve(root, &dest, Create::Nothing) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(Error::io(step, e)),
        };
        let is_dir = sys.is_dir(&target).map_err(|e| Error::io(&step, e))?;
        let result = if is_dir {
            sys.mount(
                Source::Name("tmpfs"),
                &target,
                Some("tmpfs"),
                MsFlags::MS_RDONLY,
                None,
            )
        } else {
            sys.mount(Source::Target(&null), &target, None, MsFlags::MS_BIND, None)
        };
        result.map_err(|e| Error::io(step, e))?;
    }
    Ok(())
}

/// Bind a path onto itself and remount it read-only; a missing path is skipped.
fn make_readonly(sys: &dyn Syscall, root: &Rootfs, path: &Path) -> Result<()> {
    let dest = Path::new("/").join(path);
    let step = format!("make {} read-only", dest.display());
    let target = match sys.resolve(root, &dest, Create::Nothing) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(Error::io(step, e)),
    };
    sys.mount(
        Source::Target(&target),
        &target,
        None,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        None,
    )
    .map_err(|e| Error::io(&step, e))?;
    remount_bind(sys, root, &dest, MsFlags::MS_RDONLY)
}

/// Step 3: make the rootfs `/` and drop the host's root.
pub fn pivot(sys: &dyn Syscall, rootfs: &Path, no_pivot: bool) -> Result<()> {
    sys.chdir(rootfs)
        .map_err(|e| Error::io(format!("chdir {}", rootfs.display()), e))?;
    if no_pivot {
        sys.mount_path(Some(rootfs), Path::new("/"), None, MsFlags::MS_MOVE, None)
            .map_err(|e| Error::io("move rootfs to /", e))?;
        sys.chroot(Path::new("."))
            .map_err(|e| Error::io("chroot", e))?;
        tracing::debug!(step = "pivot_root", rootfs = %rootfs.display(),
            "--no-pivot: MS_MOVE {} onto / and chroot into it (the host's root stays reachable to a privileged process)", rootfs.display());
    } else {
        // pivot_root(".", "."): the old root ends up stacked under the new
        // one at "/", from where a lazy unmount removes it; no put_old
        // directory is needed in the image.
        sys.pivot_root(Path::new("."), Path::new("."))
            .map_err(|e| Error::io("pivot_root", e))?;
        tracing::debug!(step = "pivot_root", rootfs = %rootfs.display(),
            "pivot_root into {}: it becomes /; the host's root, stacked under it, is unmounted (MNT_DETACH)", rootfs.display());
        // Keep the unmount of the old root from propagating to the host.
        sys.mount_path(
            None,
            Path::new("."),
            None,
            MsFlags::MS_SLAVE | MsFlags::MS_REC,
            None,
        )
        .map_err(|e| Error::io("make the old root a slave", e))?;
        sys.umount2(Path::new("."), MntFlags::MNT_DETACH)
            .map_err(|e| Error::io("unmount the old root", e))?;
    }
    sys.chdir(Path::new("/"))
        .map_err(|e| Error::io("chdir /", e))
}

/// Step 4: `root.readonly`.
pub fn remount_root_readonly(sys: &dyn Syscall) -> Result<()> {
    let root = sys
        .resolve_host(Path::new("/"))
        .map_err(|e| Error::io("open /", e))?;
    let current = sys
        .mount_flags(&root)
        .map_err(|e| Error::io("statvfs /", e))?;
    let kept = current & (MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC);
    sys.mount_path(
        None,
        Path::new("/"),
        None,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | kept,
        None,
    )
    .map_err(|e| Error::io("remount / read-only", e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::recording::{Call, RecordingSyscall};
    use oci_spec::runtime::get_default_mounts;

    fn plan() -> RootfsPlan {
        RootfsPlan {
            rootfs: "/bundle/rootfs".into(),
            bundle: "/bundle".into(),
            mounts: get_default_mounts(),
            devices: devices::default_devices(),
            setup_dev: true,
            masked_paths: vec!["/proc/kcore".into(), "/proc/acpi".into()],
            readonly_paths: vec!["/proc/sys".into()],
            net_ns: true,
            cgroup_ns: true,
            host_cgroups: Some(HostCgroups::from_tables(
                "33 25 0:29 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n",
                "0::/berth/c1\n",
            )),
            ..Default::default()
        }
    }

    fn position(calls: &[Call], pred: impl Fn(&Call) -> bool) -> usize {
        calls
            .iter()
            .position(pred)
            .unwrap_or_else(|| panic!("call not found in {calls:#?}"))
    }

    fn is_mount_on(call: &Call, path: &str, fs: Option<&str>) -> bool {
        matches!(call, Call::Mount { target, fstype, .. }
            if target == Path::new(path) && fstype.as_deref() == fs)
    }

    #[test]
    fn the_sequence_is_propagation_bind_mounts_devices_masks_then_pivot() {
        let sys = RecordingSyscall::new();
        sys.set_file("/proc/kcore");
        let p = plan();
        prepare(&sys, &p, &mut HostCgroups::none).unwrap();
        pivot(&sys, &p.rootfs, false).unwrap();
        let calls = sys.calls();
        assert_eq!(
            calls[0],
            Call::Mount {
                source: None,
                target: "/".into(),
                fstype: None,
                flags: MsFlags::MS_SLAVE | MsFlags::MS_REC,
                data: None
            }
        );
        assert_eq!(
            calls[1],
            Call::Mount {
                source: Some("/bundle/rootfs".into()),
                target: "/bundle/rootfs".into(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None
            }
        );
        let proc_mount = position(&calls, |c| is_mount_on(c, "/proc", Some("proc")));
        let dev_mount = position(&calls, |c| is_mount_on(c, "/dev", Some("tmpfs")));
        let pts_mount = position(&calls, |c| is_mount_on(c, "/dev/pts", Some("devpts")));
        let null_node = position(
            &calls,
            |c| matches!(c, Call::Mknod { path, .. } if path == Path::new("/dev/null")),
        );
        let kcore_mask = position(&calls, |c| {
            matches!(c, Call::Mount { source: Some(s), target, .. }
                if target == Path::new("/proc/kcore") && s == Path::new("/dev/null"))
        });
        let acpi_mask = position(&calls, |c| is_mount_on(c, "/proc/acpi", Some("tmpfs")));
        let pivot_at = position(&calls, |c| matches!(c, Call::PivotRoot { .. }));
        assert!(
            proc_mount < dev_mount && dev_mount < pts_mount,
            "config order"
        );
        assert!(pts_mount < null_node, "devices after the /dev tmpfs");
        assert!(null_node < kcore_mask && kcore_mask < acpi_mask);
        assert!(acpi_mask < pivot_at, "everything before pivot_root");
        assert_eq!(
            &calls[pivot_at..],
            &[
                Call::PivotRoot {
                    new_root: ".".into(),
                    put_old: ".".into()
                },
                Call::Mount {
                    source: None,
                    target: ".".into(),
                    fstype: None,
                    flags: MsFlags::MS_SLAVE | MsFlags::MS_REC,
                    data: None
                },
                Call::Umount {
                    target: ".".into(),
                    flags: MntFlags::MNT_DETACH
                },
                Call::Chdir("/".into()),
            ]
        );
    }

    #[test]
    fn tmpfs_options_become_flags_and_data() {
        let sys = RecordingSyscall::new();
        prepare(&sys, &plan(), &mut HostCgroups::none).unwrap();
        let dev = sys
            .mounts()
            .into_iter()
            .find(|c| is_mount_on(c, "/dev", Some("tmpfs")))
            .unwrap();
        assert_eq!(
            dev,
            Call::Mount {
                source: Some("tmpfs".into()),
                target: "/dev".into(),
                fstype: Some("tmpfs".into()),
                flags: MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME,
                data: Some("mode=755,size=65536k".into())
            }
        );
    }

    #[test]
    fn read_only_bind_mounts_are_remounted_and_missing_masks_skipped() {
        let sys = RecordingSyscall::new();
        sys.set_missing("/proc/acpi");
        let mut p = plan();
        p.mounts = vec![serde_json::from_value(serde_json::json!({
            "destination": "/data", "type": "bind", "source": "data", "options": ["rbind", "ro"]
        }))
        .unwrap()];
        p.setup_dev = false;
        prepare(&sys, &p, &mut HostCgroups::none).unwrap();
        let mounts = sys.mounts();
        assert_eq!(
            mounts[2],
            Call::Mount {
                source: Some("/bundle/data".into()),
                target: "/data".into(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REC,
                data: None
            }
        );
        assert_eq!(
            mounts[3],
            Call::Mount {
                source: Some("none".into()),
                target: "/data".into(),
                fstype: None,
                flags: MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
                data: None
            }
        );
        assert!(!mounts
            .iter()
            .any(|c| is_mount_on(c, "/proc/acpi", Some("tmpfs"))));
    }

    #[test]
    fn a_failing_mount_names_the_step_and_the_errno() {
        let sys = RecordingSyscall::new();
        sys.fail_on("target: \"/proc\"", nix::errno::Errno::EPERM);
        let err = prepare(&sys, &plan(), &mut HostCgroups::none).unwrap_err();
        assert_eq!(
            err.to_string(),
            "mount proc on /proc: Operation not permitted"
        );
    }

    #[test]
    fn no_pivot_moves_and_chroots() {
        let sys = RecordingSyscall::new();
        pivot(&sys, Path::new("/r"), true).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::Chdir("/r".into()),
                Call::Mount {
                    source: Some("/r".into()),
                    target: "/".into(),
                    fstype: None,
                    flags: MsFlags::MS_MOVE,
                    data: None
                },
                Call::Chroot(".".into()),
                Call::Chdir("/".into()),
            ]
        );
    }
}
