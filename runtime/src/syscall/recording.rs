//! A [`Syscall`] that performs nothing and records every call, in order.
//!
//! Unit tests run the rootfs and namespace code against it and assert on the
//! sequence: which mounts, with which flags, onto which container paths, and
//! that `pivot_root` came after them. Paths in the record are the paths the
//! container will see (`/proc`, `/dev/null`), never `/proc/self/fd/N`.

use std::cell::RefCell;
use std::collections::HashSet;
use std::ffi::OsStr;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{MntFlags, MsFlags};
use nix::sched::CloneFlags;
use nix::sys::stat::{Mode, SFlag};

use super::{Create, Rootfs, Source, Syscall, Target};

/// One recorded call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Call {
    Mount {
        source: Option<PathBuf>,
        target: PathBuf,
        fstype: Option<String>,
        flags: MsFlags,
        data: Option<String>,
    },
    Umount {
        target: PathBuf,
        flags: MntFlags,
    },
    PivotRoot {
        new_root: PathBuf,
        put_old: PathBuf,
    },
    Chroot(PathBuf),
    Chdir(PathBuf),
    Mknod {
        path: PathBuf,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    },
    Chown {
        path: PathBuf,
        uid: u32,
        gid: u32,
    },
    Symlink {
        path: PathBuf,
        points_to: PathBuf,
    },
    Unlink(PathBuf),
    WriteFile {
        path: PathBuf,
        value: String,
    },
    Create {
        path: PathBuf,
        create: Create,
    },
    SetHostname(String),
    SetDomainname(String),
    Unshare(CloneFlags),
}

/// The recorder. Configure which paths "exist" and which are files; by
/// default every path exists and host paths are directories.
#[derive(Debug, Default)]
pub struct RecordingSyscall {
    calls: RefCell<Vec<Call>>,
    /// Paths inside the root that do not exist (resolve with Create::Nothing fails).
    missing: RefCell<HashSet<PathBuf>>,
    /// Host paths that are regular files rather than directories.
    host_files: RefCell<HashSet<PathBuf>>,
    /// Paths inside the root that are files (not directories).
    files: RefCell<HashSet<PathBuf>>,
    /// Calls that fail, by a substring of their Debug form, with this errno.
    failures: RefCell<Vec<(String, i32)>>,
}

impl RecordingSyscall {
    pub fn new() -> RecordingSyscall {
        RecordingSyscall::default()
    }

    /// Every call so far.
    pub fn calls(&self) -> Vec<Call> {
        self.calls.borrow().clone()
    }

    /// Only the mounts, as (source, target, fstype, flags, data).
    pub fn mounts(&self) -> Vec<Call> {
        self.calls()
            .into_iter()
            .filter(|c| matches!(c, Call::Mount { .. }))
            .collect()
    }

    pub fn set_missing(&self, path: impl Into<PathBuf>) {
        self.missing.borrow_mut().insert(path.into());
    }

    pub fn set_host_file(&self, path: impl Into<PathBuf>) {
        self.host_files.borrow_mut().insert(path.into());
    }

    pub fn set_file(&self, path: impl Into<PathBuf>) {
        self.files.borrow_mut().insert(path.into());
    }

    /// Make the first call whose Debug text contains `needle` fail with `errno`.
    pub fn fail_on(&self, needle: &str, errno: nix::errno::Errno) {
        self.failures
            .borrow_mut()
            .push((needle.to_string(), errno as i32));
    }

    fn record(&self, call: Call) -> io::Result<()> {
        let text = format!("{call:?}");
        let mut failures = self.failures.borrow_mut();
        if let Some(pos) = failures.iter().position(|(n, _)| text.contains(n.as_str())) {
            let (_, errno) = failures.remove(pos);
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.calls.borrow_mut().push(call);
        Ok(())
    }
}

fn absolute(path: &Path) -> PathBuf {
    Path::new("/").join(path)
}

impl Syscall for RecordingSyscall {
    fn open_rootfs(&self, path: &Path) -> io::Result<Rootfs> {
        Ok(Rootfs::new(path.to_path_buf(), None))
    }

    fn resolve(&self, _root: &Rootfs, path: &Path, create: Create) -> io::Result<Target> {
        let path = absolute(path);
        if self.missing.borrow().contains(&path) {
            if create == Create::Nothing {
                return Err(io::Error::from_raw_os_error(libc::ENOENT));
            }
            self.missing.borrow_mut().remove(&path);
            if create == Create::File {
                self.files.borrow_mut().insert(path.clone());
            }
            self.record(Call::Create {
                path: path.clone(),
                create,
            })?;
        }
        Ok(Target::new(path, None))
    }

    fn resolve_host(&self, path: &Path) -> io::Result<Target> {
        Ok(Target::new(path.to_path_buf(), None))
    }

    fn host_is_dir(&self, path: &Path) -> io::Result<bool> {
        Ok(!self.host_files.borrow().contains(path))
    }

    fn path_in_root(&self, _root: &Rootfs, target: &Target) -> io::Result<PathBuf> {
        Ok(target.path.clone())
    }

    fn mount_point_of(&self, _path: &Path) -> io::Result<PathBuf> {
        Ok(PathBuf::from("/"))
    }

    fn is_dir(&self, target: &Target) -> io::Result<bool> {
        Ok(!self.files.borrow().contains(&target.path))
    }

    fn is_char_device(&self, _target: &Target, _major: u64, _minor: u64) -> io::Result<bool> {
        Ok(true)
    }

    fn mount_flags(&self, _target: &Target) -> io::Result<MsFlags> {
        Ok(MsFlags::empty())
    }

    fn mount(
        &self,
        source: Source<'_>,
        target: &Target,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        let source = match source {
            Source::Name(name) => PathBuf::from(name),
            Source::Host(path) => path.to_path_buf(),
            Source::Target(t) => t.path.clone(),
        };
        self.record(Call::Mount {
            source: Some(source),
            target: target.path.clone(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn mount_path(
        &self,
        source: Option<&Path>,
        target: &Path,
        fstype: Option<&str>,
        flags: MsFlags,
        data: Option<&str>,
    ) -> io::Result<()> {
        self.record(Call::Mount {
            source: source.map(Path::to_path_buf),
            target: target.to_path_buf(),
            fstype: fstype.map(str::to_string),
            flags,
            data: data.map(str::to_string),
        })
    }

    fn umount2(&self, target: &Path, flags: MntFlags) -> io::Result<()> {
        self.record(Call::Umount {
            target: target.to_path_buf(),
            flags,
        })
    }

    fn pivot_root(&self, new_root: &Path, put_old: &Path) -> io::Result<()> {
        self.record(Call::PivotRoot {
            new_root: new_root.to_path_buf(),
            put_old: put_old.to_path_buf(),
        })
    }

    fn chroot(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chroot(path.to_path_buf()))
    }

    fn chdir(&self, path: &Path) -> io::Result<()> {
        self.record(Call::Chdir(path.to_path_buf()))
    }

    fn mknod(
        &self,
        dir: &Target,
        name: &OsStr,
        kind: SFlag,
        perm: Mode,
        dev: u64,
    ) -> io::Result<()> {
        self.record(Call::Mknod {
            path: dir.path.join(name),
            kind,
            perm,
            dev,
        })
    }

    fn chown(&self, dir: &Target, name: &OsStr, uid: u32, gid: u32) -> io::Result<()> {
        self.record(Call::Chown {
            path: dir.path.join(name),
            uid,
            gid,
        })
    }

    fn symlink(&self, points_to: &Path, dir: &Target, name: &OsStr) -> io::Result<()> {
        self.record(Call::Symlink {
            path: dir.path.join(name),
            points_to: points_to.to_path_buf(),
        })
    }

    fn unlink(&self, dir: &Target, name: &OsStr) -> io::Result<()> {
        self.record(Call::Unlink(dir.path.join(name)))
    }

    fn write_file(&self, target: &Target, value: &str) -> io::Result<()> {
        self.record(Call::WriteFile {
            path: target.path.clone(),
            value: value.to_string(),
        })
    }

    fn sethostname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetHostname(name.to_string()))
    }

    fn setdomainname(&self, name: &str) -> io::Result<()> {
        self.record(Call::SetDomainname(name.to_string()))
    }

    fn unshare(&self, flags: CloneFlags) -> io::Result<()> {
        self.record(Call::Unshare(flags))
    }
}
