//! Device nodes in the container's /dev, and the device cgroup rules that let
//! the container use them.
//!
//! Mechanism: `mknodat(2)` + `fchownat(2)` for each node (mode bits exact: the
//! init runs with umask 0). In a new user namespace the kernel refuses
//! `mknod`, so the host's node is bind-mounted onto an empty file instead.
//! `symlinkat(2)` for /dev/fd, /dev/std{in,out,err} and /dev/ptmx.
//!
//! The default set is the OCI spec's: null, zero, full, random, urandom, tty
//! (and ptmx -> pts/ptmx; console is the terminal's, see [`crate::terminal`]).

use std::path::{Path, PathBuf};

use nix::sys::stat::{Mode, SFlag};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceCgroup, LinuxDeviceType, Mount};

use crate::beneath;
use crate::error::{Error, Result};
use crate::syscall::{Create, Rootfs, Source, Syscall};

/// A device node to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Device {
    fn char(path: &str, major: u64, minor: u64) -> Device {
        Device {
            path: PathBuf::from(path),
            kind: SFlag::S_IFCHR,
            major,
            minor,
            mode: 0o666,
            uid: 0,
            gid: 0,
        }
    }

    /// A device from config.json's `linux.devices`.
    pub fn from_spec(d: &LinuxDevice) -> Result<Device> {
        let bad = |why: String| Error::InvalidConfig {
            file: "config.json".into(),
            message: format!("linux.devices {}: {why}", d.path().display()),
        };
        let kind = match d.typ() {
            LinuxDeviceType::C | LinuxDeviceType::U => SFlag::S_IFCHR,
            LinuxDeviceType::B => SFlag::S_IFBLK,
            LinuxDeviceType::P => SFlag::S_IFIFO,
            LinuxDeviceType::A => return Err(bad("type \"a\" is only for cgroup rules".into())),
        };
        if !d.path().starts_with("/dev/") {
            return Err(bad("device paths must be under /dev/".into()));
        }
        if beneath::normal_components(d.path()).is_err() {
            return Err(bad("path must not contain '..'".into()));
        }
        let number = |n: i64, what: &str| {
            u64::try_from(n).map_err(|_| bad(format!("{what} number {n} is negative")))
        };
        Ok(Device {
            path: d.path().clone(),
            kind,
            major: number(d.major(), "major")?,
            minor: number(d.minor(), "minor")?,
            mode: d.file_mode().unwrap_or(0o666) & 0o7777,
            uid: d.uid().unwrap_or(0),
            gid: d.gid().unwrap_or(0),
        })
    }
}

/// The devices every container gets (OCI runtime spec, "Default Devices").
pub fn default_devices() -> Vec<Device> {
    vec![
        Device::char("/dev/null", 1, 3),
        Device::char("/dev/zero", 1, 5),
        Device::char("/dev/full", 1, 7),
        Device::char("/dev/random", 1, 8),
        Device::char("/dev/urandom", 1, 9),
        Device::char("/dev/tty", 5, 0),
    ]
}

/// The default devices plus config.json's, a config entry replacing a default
/// one at the same path.
pub fn all_devices(spec_devices: &[LinuxDevice]) -> Result<Vec<Device>> {
    let extra: Vec<Device> = spec_devices
        .iter()
        .map(Device::from_spec)
        .collect::<Result<_>>()?;
    let mut devices: Vec<Device> = default_devices()
        .into_iter()
        .filter(|d| !extra.iter().any(|e| e.path == d.path))
        .collect();
    devices.extend(extra);
    Ok(devices)
}

/// Does the runtime populate /dev? Not when config.json bind-mounts a /dev
/// (then the caller provided it), as runc decides.
pub fn needs_dev_setup(mounts: &[Mount]) -> bool {
    !mounts.iter().any(|m| {
        m.destination() == Path::new("/dev")
            && m.options()
                .as_ref()
                .is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
    })
}

/// Create the nodes; `bind_from_host` in a user namespace (no mknod there).
pub fn create_devices(
    sys: &dyn Syscall,
    root: &Rootfs,
    devices: &[Device],
    bind_from_host: bool,
) -> Result<()> {
    for device in devices {
        if bind_from_host {
            bind_device(sys, root, device)?;
        } else {
            make_node(sys, root, device)?;
        }
    }
    Ok(())
}

fn make_node(sys: &dyn Syscall, root: &Rootfs, device: &Device) -> Result<()> {
    let step = format!("mknod {}", device.path.display());
    let (parent, name) = beneath::split_last(&device.path).map_err(|e| Error::io(&step, e))?;
    let dir = sys
        .resolve(root, &Path::new("/").join(&parent), Create::Dir)
        .map_err(|e| Error::io(&step, e))?;
    // An image may ship its own /dev entries; the configured node wins.
    sys.unlink(&dir, name).map_err(|e| Error::io(&step, e))?;
    let dev = nix::sys::stat::makedev(device.major, device.minor);
    sys.mknod(
        &dir,
        name,
        device.kind,
        Mode::from_bits_truncate(device.mode),
        dev,
    )
    .map_err(|e| Error::io(&step, e))?;
    sys.chown(&dir, name, device.uid, device.gid)
        .map_err(|e| Error::io(format!("chown {}", device.path.display()), e))
}

fn bind_device(sys: &dyn Syscall, root: &Rootfs, device: &Device) -> Result<()> {
    let step = format!("bind host {} into the container", device.path.display());
    let target = sys
        .resolve(root, &device.path, Create::File)
        .map_err(|e| Error::io(&step, e))?;
    sys.mount(
        Source::Host(&device.path),
        &target,
        None,
        nix::mount::MsFlags::MS_BIND,
        None,
    )
    .map_err(|e| Error::io(&step, e))
}

/// /dev/fd, /dev/stdin, /dev/stdout, /dev/stderr and /dev/ptmx.
pub fn create_dev_symlinks(sys: &dyn Syscall, root: &Rootfs) -> Result<()> {
    let dir = sys
        .resolve(root, Path::new("/dev"), Create::Dir)
        .map_err(|e| Error::io("open /dev", e))?;
    let links = [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
        ("ptmx", "pts/ptmx"),
    ];
    for (name, points_to) in links {
        let step = format!("symlink /dev/{name} -> {points_to}");
        sys.unlink(&dir, name.as_ref())
            .map_err(|e| Error::io(&step, e))?;
        sys.symlink(Path::new(points_to), &dir, name.as_ref())
            .map_err(|e| Error::io(&step, e))?;
    }
    Ok(())
}

/// The device cgroup rules for a container: config.json's, then an allow rule
/// for each device the runtime creates (as runc does), so that a config with
/// only "deny all" still leaves /dev/null usable — except for a device that
/// config.json has a rule of its own for: that rule says what is allowed
/// (`docker run --device /dev/sda:/dev/xvda:r` must stay read-only).
pub fn cgroup_rules(
    spec_rules: &[LinuxDeviceCgroup],
    devices: &[Device],
) -> Vec<LinuxDeviceCgroup> {
    let mut rules = spec_rules.to_vec();
    let allow = |typ: LinuxDeviceType, major: Option<i64>, minor: Option<i64>| {
        let mut rule = LinuxDeviceCgroup::default();
        rule.set_allow(true);
        rule.set_typ(Some(typ));
        rule.set_major(major);
        rule.set_minor(minor);
        rule.set_access(Some("rwm".to_string()));
        rule
    };
    for d in devices {
        let typ = if d.kind == SFlag::S_IFBLK {
            LinuxDeviceType::B
        } else if d.kind == SFlag::S_IFIFO {
            LinuxDeviceType::P
        } else {
            LinuxDeviceType::C
        };
        let has_own_rule = spec_rules.iter().any(|r| {
            r.typ() == Some(typ)
                && r.major() == Some(d.major as i64)
                && r.minor() == Some(d.minor as i64)
        });
        if !has_own_rule {
            rules.push(allow(typ, Some(d.major as i64), Some(d.minor as i64)));
        }
    }
    // /dev/pts/* and /dev/ptmx (the pty of a terminal).
    rules.push(allow(LinuxDeviceType::C, Some(136), None));
    rules.push(allow(LinuxDeviceType::C, Some(5), Some(2)));
    rules
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::syscall::recording::{Call, RecordingSyscall};

    #[test]
    fn config_devices_replace_defaults_at_the_same_path() {
        let mut fuse = LinuxDevice::default();
        fuse.set_path("/dev/fuse".into());
        fuse.set_typ(LinuxDeviceType::C);
        fuse.set_major(10);
        fuse.set_minor(229);
        let mut null = LinuxDevice::default();
        null.set_path("/dev/null".into());
        null.set_typ(LinuxDeviceType::C);
        null.set_major(1);
        null.set_minor(3);
        null.set_file_mode(Some(0o600));
        let all = all_devices(&[fuse, null]).unwrap();
        assert_eq!(all.len(), 7);
        let null = all
            .iter()
            .find(|d| d.path == Path::new("/dev/null"))
            .unwrap();
        assert_eq!(null.mode, 0o600);
    }

    #[test]
    fn devices_outside_dev_are_refused() {
        let mut d = LinuxDevice::default();
        d.set_path("/etc/evil".into());
        d.set_typ(LinuxDeviceType::C);
        assert!(Device::from_spec(&d).is_err());
        d.set_path("/dev/../etc/evil".into());
        assert!(Device::from_spec(&d).is_err());
    }

    #[test]
    fn nodes_are_made_and_owned_or_bound_in_a_user_namespace() {
        let sys = RecordingSyscall::new();
        let root = sys.open_rootfs(Path::new("/r")).unwrap();
        create_devices(&sys, &root, &default_devices()[..1], false).unwrap();
        assert_eq!(
            sys.calls(),
            vec![
                Call::Unlink("/dev/null".into()),
                Call::Mknod {
                    path: "/dev/null".into(),
                    kind: SFlag::S_IFCHR,
                    perm: Mode::from_bits_truncate(0o666),
                    dev: nix::sys::stat::makedev(1, 3),
                },
                Call::Chown {
                    path: "/dev/null".into(),
                    uid: 0,
                    gid: 0
                },
            ]
        );
        let sys = RecordingSyscall::new();
        create_devices(&sys, &root, &default_devices()[..1], true).unwrap();
        match &sys.calls()[0] {
            Call::Mount { source, target, .. } => {
                assert_eq!(source.as_deref(), Some(Path::new("/dev/null")));
                assert_eq!(target, Path::new("/dev/null"));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn deny_all_rules_still_allow_the_created_devices() {
        let mut deny = LinuxDeviceCgroup::default();
        deny.set_allow(false);
        deny.set_access(Some("rwm".into()));
        let rules = cgroup_rules(&[deny], &default_devices());
        assert!(!rules[0].allow());
        assert!(rules
            .iter()
            .any(|r| r.allow() && r.major() == Some(1) && r.minor() == Some(3)));
    }

    /// Regression (found by tests/tests/escape_syscalls.rs): `--device
    /// HOST:CONTAINER:r` became read-write, the automatic "rwm" rule of the
    /// created node coming after the read-only one.
    #[test]
    fn a_device_with_its_own_rule_keeps_that_rule() {
        let mut read_only = LinuxDeviceCgroup::default();
        read_only.set_allow(true);
        read_only.set_typ(Some(LinuxDeviceType::B));
        read_only.set_major(Some(254));
        read_only.set_minor(Some(0));
        read_only.set_access(Some("r".into()));
        let disk = Device {
            path: PathBuf::from("/dev/xdisk"),
            kind: SFlag::S_IFBLK,
            major: 254,
            minor: 0,
            mode: 0o600,
            uid: 0,
            gid: 0,
        };
        let rules = cgroup_rules(&[read_only], &[disk]);
        let for_disk: Vec<_> = rules
            .iter()
            .filter(|r| r.major() == Some(254) && r.minor() == Some(0))
            .collect();
        assert_eq!(for_disk.len(), 1);
        assert_eq!(for_disk[0].access().as_deref(), Some("r"));
    }
}
