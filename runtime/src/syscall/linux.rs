//! The real [`Syscall`]: each method is the kernel call it names.
//!
//! Lookups inside the container's root use `openat2(RESOLVE_IN_ROOT)` via
//! [`crate::beneath`]; mounts onto such a target pass `/proc/self/fd/N`, which
//! the kernel resolves to the open file itself rather than re-walking a name.

use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};
use nix::sys::statvfs::FsFlags;
use rustix::fs::{Mode as RMode, OFlags};

use super::{Create, Rootfs, Source, Syscall, Target};
use crate::beneath;

/// The kernel, for real.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSyscall;

fn errno_to_io(e: nix::errno::Errno) -> io::Error {
    io::Error::from_raw_os_error(e as i32)
}

impl LinuxSyscall {
    fn open_path(path: &Path) -> io::Result<std::os::fd::OwnedFd> {
        rustix::fs::open(path, OFlags::PATH | OFlags::CLOEXEC, RMode::empty()).map_err(Into::into)
    }
}

impl Syscall for LinuxSyscall {
    fn open_rootfs(&self, path: &Path) -> io::Result<Rootfs> {
        let fd = rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            RMode::empty(),
        )?;
        Ok(Rootfs::new(path.to_path_buf(), Some(fd)))
    }

    fn resolve(&self, root: &Rootfs, path: &Path, create: Create) -> io::Result<Target> {
        let root_fd = root
            .fd()
            .ok_or_else(|| io::Error::other("rootfs is not open"))?;
        let open_existing = || {
            beneath::open_beneath(root_fd, path, OFlags::PATH, RMode::empty())
                .map(|fd| Target::new(path.to_path_buf(), Some(fd)))
        };
        match (open_existing(), create) {
            (Ok(target), _) => Ok(target),
            (Err(e), Create::Nothing) => Err(e),
            (Err(e), _) if e.kind() != io::ErrorKind::NotFound => Err(e),
            (Err(_), Create::Dir) => {
                let fd = beneath::mkdir_all_beneath(root_fd, path, RMode::from_raw_mode(0o755))?;
                Ok(Target::new(path.to_path_buf(), Some(fd)))
            }
            (Err(_), Create::File) => {
                let (parent, name) = beneath::split_last(path)?;
                let dir =
                    beneath::mkdir_all_beneath(root_fd, &parent, RMode::from_raw_mode(0o755))?;
                // O_EXCL|O_NOFOLLOW: never write through a (dangling) symlink.
                match rustix::fs::openat(
                    &dir,
                    name,
                    OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::WRONLY
                        | OFlags::CLOEXEC,
                    RMode::from_raw_mode(0o644),
                ) {
                    Ok(_) | Err(rustix::io::Errno::EXIST) => {}
                    Err(e) => return Err(e.into()),
                }
                open_existing()
            }
        }
    }

    fn resolve_host(&self, path: &Path) -> io::Result<Target> {
        Ok(Target::new(
            path.to_path_buf(),
            Some(Self::open_path(path)?),
        ))
    }

    fn host_is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(std::fs::metadata(path)?.is_dir())
    }

    fn path_in_root(&self, root: &Rootfs, target: &Target) -> io::Result<PathBuf> {
        let real = std::fs::read_link(target.proc_path())?;
        match real.strip_prefix(&root.path) {
            Ok(inside) => Ok(Path::new("/").join(inside)),
            Err(_) if real == root.path => Ok(PathBuf::from("/")),
            Err(_) => Err(io::Error::other(format!(
                "{} resolved outside the container root, to {}",
                target.path.display(),
                real.display()
            ))),
        }
    }

    fn mount_point_of(&self, path: &Path) -> io::Result<PathBuf> {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo")?;
        let best = crate::mountinfo::parse(&mountinfo)
            .into_iter()
            .map(|m| m.mount_point)
            .filter(|point| path.starts_with(point))
            .max_by_key(|point| point.components().count());
        best.ok_or_else(|| io::Error::other(format!("no mount contains {}", path.display())))
    }

    fn is_dir(&self, target: &Target) -> io::Result<bool> {
        let fd = target
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        let stat = rustix::fs::fstat(fd)?;
        Ok(rustix::fs::FileType::from_raw_mode(stat.st_mode) == rustix::fs::FileType::Directory)
    }

    fn is_char_device(&self, target: &Target, major: u64, minor: u64) -> io::Result<bool> {
        let fd = target
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        let stat = rustix::fs::fstat(fd)?;
        let is_char = rustix::fs::FileType::from_raw_mode(stat.st_mode)
            == rustix::fs::FileType::CharacterDevice;
        let rdev = stat.st_rdev;
        Ok(is_char
            && u64::from(rustix::fs::major(rdev)) == major
            && u64::from(rustix::fs::minor(rdev)) == minor)
    }

    fn mount_flags(&self, target: &Target) -> io::Result<MsFlags> {
        let fd = target
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        let stat = nix::sys::statvfs::fstatvfs(fd).map_err(errno_to_io)?;
        let flags = stat.flags();
        let mut out = MsFlags::empty();
        let pairs = [
            (FsFlags::ST_RDONLY, MsFlags::MS_RDONLY),
            (FsFlags::ST_NOSUID, MsFlags::MS_NOSUID),
            (FsFlags::ST_NODEV, MsFlags::MS_NODEV),
            (FsFlags::ST_NOEXEC, MsFlags::MS_NOEXEC),
            (FsFlags::ST_NOATIME, MsFlags::MS_NOATIME),
            (FsFlags::ST_NODIRATIME, MsFlags::MS_NODIRATIME),
            (FsFlags::ST_RELATIME, MsFlags::MS_RELATIME),
        ];
        for (st, ms) in pairs {
            if flags.contains(st) {
                out |= ms;
            }
        }
        Ok(out)
    }

    fn mount(
        &self,
        source: Source<'_>,
        target: &Target,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let source_path = match source {
            Source::Name(name) => Path::new(name).to_path_buf(),
            Source::Host(path) => path.to_path_buf(),
            Source::Target(t) => t.proc_path(),
        };
        nix::mount::mount(
            Some(source_path.as_path()),
            target.proc_path().as_path(),
            fstype,
            flags,
            data,
        )
        .map_err(errno_to_io)
    }

    fn mount_path(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        nix::mount::mount(source, target, fstype, flags, data).map_err(errno_to_io)
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        nix::mount::umount2(target, flags).map_err(errno_to_io)
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        nix::unistd::pivot_root(new_root, put_old).map_err(errno_to_io)
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chroot(path).map_err(errno_to_io)
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        nix::unistd::chdir(path).map_err(errno_to_io)
    }

    fn mknod(
        &self,
        dir: &Target,
        name: &OsStr,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> io::Result<()> {
        let fd = dir
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        nix::sys::stat::mknodat(fd, name, kind, perm, dev).map_err(errno_to_io)
    }

    fn chown(&self, dir: &Target, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        let fd = dir
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        nix::unistd::fchownat(
            fd,
            name,
            Some(nix::unistd::Uid::from_raw(uid)),
            Some(nix::unistd::Gid::from_raw(gid)),
            nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW,
        )
        .map_err(errno_to_io)
    }

    fn symlink(&self, points_to: &Path, dir: &Target, name: &OsStr) -> io::Result<()> {
        let fd = dir
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        nix::unistd::symlinkat(points_to, fd, name).map_err(errno_to_io)
    }

    fn unlink(&self, dir: &Target, name: &OsStr) -> io::Result<()> {
        let fd = dir
            .fd()
            .ok_or_else(|| io::Error::other("target not open"))?;
        match nix::unistd::unlinkat(fd, name, nix::unistd::UnlinkatFlags::NoRemoveDir) {
            Ok(()) | Err(nix::errno::Errno::ENOENT) => Ok(()),
            Err(e) => Err(errno_to_io(e)),
        }
    }

    fn write_file(&self, target: &Target, value: &str) -> io::Result<()> {
        // Reopen the O_PATH fd for writing through /proc/self/fd: same inode.
        std::fs::OpenOptions::new()
            .write(true)
            .open(target.proc_path())
            .and_then(|mut f| io::Write::write_all(&mut f, value.as_bytes()))
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        nix::unistd::sethostname(name).map_err(errno_to_io)
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        // SAFETY: the pointer and length describe `name`'s bytes, which
        // outlive the call; the kernel copies them.
        let rc = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
        if rc == 0 {
            Ok(())
        } else {
            Err(io::Error::last_os_error())
        }
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        nix::sched::unshare(flags).map_err(errno_to_io)
    }
}
