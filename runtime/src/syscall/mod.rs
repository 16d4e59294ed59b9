//! The kernel calls that build a container's filesystem and identity, behind
//! one trait so their order and arguments can be tested without root.
//!
//! Mechanism: `mount(2)`, `umount2(2)`, `pivot_root(2)`, `chroot(2)`,
//! `mknodat(2)`, `symlinkat(2)`, `fchownat(2)`, `unlinkat(2)`, `openat2(2)`
//! (through [`crate::beneath`]), `sethostname(2)`, `setdomainname(2)`,
//! `unshare(2)`, `setns(2)`.
//!
//! [`linux::LinuxSyscall`] performs them; [`recording::RecordingSyscall`]
//! only writes them down, so unit tests can assert "proc was mounted on /proc
//! before pivot_root" anywhere. The trait deals in [`Target`]s: places inside
//! the container's root resolved *by file descriptor* (never by a path string
//! that a symlink in the image could redirect onto the host). A mount onto a
//! target goes through `/proc/self/fd/N` of that descriptor.

pub mod linux;
pub mod recording;

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

/// What to create if a target does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    /// It must exist.
    Nothing,
    /// Make it (and missing parents) a directory.
    Dir,
    /// Make missing parents directories and it an empty regular file (a bind
    /// mount of a file needs a file to cover).
    File,
}

/// The container's root directory, held open so every lookup is relative to it.
#[derive(Debug)]
pub struct Rootfs {
    /// Host path of the root, for messages and for the mounts that need a path.
    pub path: PathBuf,
    fd: Option<OwnedFd>,
}

impl Rootfs {
    pub fn new(path: PathBuf, fd: Option<OwnedFd>) -> Rootfs {
        Rootfs { path, fd }
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }
}

/// A file or directory inside the container's root, resolved by fd.
#[derive(Debug)]
pub struct Target {
    /// The path as the container will see it (for messages and recordings).
    pub path: PathBuf,
    fd: Option<OwnedFd>,
}

impl Target {
    pub fn new(path: PathBuf, fd: Option<OwnedFd>) -> Target {
        Target { path, fd }
    }

    pub fn fd(&self) -> Option<BorrowedFd<'_>> {
        self.fd.as_ref().map(|fd| fd.as_fd())
    }

    /// The path that names exactly this inode for path-taking syscalls:
    /// `/proc/self/fd/N` (resolved by the kernel to the open file, not by name).
    pub fn proc_path(&self) -> PathBuf {
        match &self.fd {
            Some(fd) => PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd())),
            None => self.path.clone(),
        }
    }
}

/// The source of a mount.
#[derive(Debug, Clone, Copy)]
pub enum Source<'a> {
    /// A name with no meaning to the kernel (`proc`, `tmpfs`, ...).
    Name(&'a str),
    /// A host path (bind mounts of host directories).
    Host(&'a Path),
    /// An already resolved and verified file (e.g. the checked /dev/null).
    Target(&'a Target),
}

/// The calls; see the module comment.
pub trait Syscall {
    /// Open the container's root directory.
    fn open_rootfs(&self, path: &Path) -> io::Result<Rootfs>;
    /// Resolve `path` beneath `root` (creating it as asked) to a [`Target`].
    fn resolve(&self, root: &Rootfs, path: &Path, create: Create) -> io::Result<Target>;
    /// Resolve an absolute host path (sources checked before use, like /dev/null).
    fn resolve_host(&self, path: &Path) -> io::Result<Target>;
    /// Is `path` on the host a directory? (A bind mount target mirrors its source.)
    fn host_is_dir(&self, path: &Path) -> io::Result<bool>;
    /// Where `target` really is, as a path inside `root` (readlink of its fd):
    /// differs from `target.path` when a symlink was followed on the way.
    fn path_in_root(&self, root: &Rootfs, target: &Target) -> io::Result<PathBuf>;
    /// The mount point of the mount that contains the host path `path`.
    fn mount_point_of(&self, path: &Path) -> io::Result<PathBuf>;
    /// Is the target a directory?
    fn is_dir(&self, target: &Target) -> io::Result<bool>;
    /// Is the target the character device `major:minor`?
    fn is_char_device(&self, target: &Target, major: u64, minor: u64) -> io::Result<bool>;
    /// The flags (`MS_RDONLY`, `MS_NOSUID`, ...) of the mount the target is on,
    /// which a bind remount must keep (they may be locked by a user namespace).
    fn mount_flags(&self, target: &Target) -> io::Result<MsFlags>;

    /// `mount(2)` onto a resolved target.
    fn mount(
        &self,
        source: Source<'_>,
        target: &Target,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    /// `mount(2)` onto a plain path: only for `/`, `.` and the rootfs itself,
    /// which are not inside the container's root or are the root.
    fn mount_path(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()>;
    fn umount2(&self, target: &Path, flags: MntFlags) -> io::Result<()>;
    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()>;
    fn chroot(&self, path: &Path) -> io::Result<()>;
    fn chdir(&self, path: &Path) -> io::Result<()>;

    /// `mknodat(2)` of `name` in the directory `dir`.
    fn mknod(
        &self,
        dir: &Target,
        name: &OsStr,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> io::Result<()>;
    fn chown(&self, dir: &Target, name: &OsStr, uid: u32, gid: u32) -> io::Result<()>;
    /// `symlinkat(2)`: make `name` in `dir` a link to `points_to`.
    fn symlink(&self, points_to: &Path, dir: &Target, name: &OsStr) -> io::Result<()>;
    /// Remove a non-directory `name` in `dir`; a missing one is not an error.
    fn unlink(&self, dir: &Target, name: &OsStr) -> io::Result<()>;
    /// Write `value` to an existing file (sysctls under /proc/sys).
    fn write_file(&self, target: &Target, value: &str) -> io::Result<()>;

    fn sethostname(&self, name: &str) -> io::Result<()>;
    fn setdomainname(&self, name: &str) -> io::Result<()>;
    fn unshare(&self, flags: CloneFlags) -> io::Result<()>;
}

/// The real implementation, for code that is not under test.
pub fn real() -> linux::LinuxSyscall {
    linux::LinuxSyscall
}
