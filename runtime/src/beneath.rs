//! Path resolution confined to a root directory, by file descriptor.
//!
//! Mechanism: `openat2(2)` with `RESOLVE_IN_ROOT`, which makes the kernel treat
//! the given directory fd as `/` for the whole lookup: `..` cannot climb above
//! it and an absolute symlink restarts at it, exactly like a lookup inside a
//! chroot. `RESOLVE_NO_MAGICLINKS` also refuses `/proc/self/fd/N`-style links.
//! Everything here works on fds and `*at` syscalls (`mkdirat`), so a symlink
//! planted by an image can redirect a lookup only *within* the root, never onto
//! the host. String checks on paths are not used for safety, only for errors.
//!
//! Used by the layer unpacker (every tar entry) and by the runtime's rootfs
//! setup (every mount target).

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{openat2, Mode, OFlags, ResolveFlags};

/// How lookups beneath the root resolve: inside the root, no magic links.
const RESOLVE: ResolveFlags = ResolveFlags::IN_ROOT.union(ResolveFlags::NO_MAGICLINKS);

/// Stricter lookups for writers that must never be redirected (the layer
/// unpacker): any symlink along the path fails with `ELOOP`, any escape with
/// `EXDEV`, instead of being followed inside the root.
pub const RESOLVE_NO_SYMLINKS: ResolveFlags = ResolveFlags::BENEATH
    .union(ResolveFlags::NO_SYMLINKS)
    .union(ResolveFlags::NO_MAGICLINKS);

/// Open `path` (relative or absolute; absolute means "from the root") beneath
/// `root` with `flags`. Symlinks along the way are followed but stay in `root`.
pub fn open_beneath(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
) -> io::Result<OwnedFd> {
    open_beneath_with(root, path, flags, mode, RESOLVE)
}

/// [`open_beneath`] with explicit resolve flags (e.g. [`RESOLVE_NO_SYMLINKS`]).
pub fn open_beneath_with(
    root: BorrowedFd<'_>,
    path: &Path,
    flags: OFlags,
    mode: Mode,
    resolve: ResolveFlags,
) -> io::Result<OwnedFd> {
    let relative = relative_form(path);
    retry_on_eagain(|| openat2(root, &relative, flags | OFlags::CLOEXEC, mode, resolve))
}

/// Open the directory `path` beneath `root` as an `O_PATH` fd usable as the
/// dirfd of `*at` syscalls (and for `/proc/self/fd/N` mounts).
pub fn open_dir_beneath(root: BorrowedFd<'_>, path: &Path) -> io::Result<OwnedFd> {
    open_beneath(root, path, OFlags::PATH | OFlags::DIRECTORY, Mode::empty())
}

/// Make every missing directory of `path` beneath `root` (mode `mode`, before
/// umask) and return an `O_PATH` fd of the last one. An existing non-directory
/// along the way is an error (`ENOTDIR`), never replaced.
pub fn mkdir_all_beneath(root: BorrowedFd<'_>, path: &Path, mode: Mode) -> io::Result<OwnedFd> {
    mkdir_all_beneath_with(root, path, mode, RESOLVE)
}

/// [`mkdir_all_beneath`] with explicit resolve flags: with
/// [`RESOLVE_NO_SYMLINKS`] a symlink anywhere along `path` is an error
/// (`ELOOP`) rather than followed.
pub fn mkdir_all_beneath_with(
    root: BorrowedFd<'_>,
    path: &Path,
    mode: Mode,
    resolve: ResolveFlags,
) -> io::Result<OwnedFd> {
    let open_dir = |p: &Path| {
        open_beneath_with(
            root,
            p,
            OFlags::PATH | OFlags::DIRECTORY,
            Mode::empty(),
            resolve,
        )
    };
    let mut current = root_dir_fd(root)?;
    let mut prefix = PathBuf::new();
    for name in normal_components(path)? {
        prefix.push(name);
        current = match open_dir(&prefix) {
            Ok(fd) => fd,
            Err(err) if err.kind() == io::ErrorKind::NotFound => {
                // `current` is a real directory inside the root, and mkdirat
                // never follows a symlink in its last component.
                match rustix::fs::mkdirat(&current, name, mode) {
                    Ok(()) => {}
                    Err(rustix::io::Errno::EXIST) => {} // created meanwhile
                    Err(e) => return Err(e.into()),
                }
                open_dir(&prefix)?
            }
            Err(err) => return Err(err),
        };
    }
    Ok(current)
}

/// Split `path` into the directory that will contain it and its last name,
/// rejecting paths with no last name (`/`, `..`, empty).
pub fn split_last(path: &Path) -> io::Result<(PathBuf, &OsStr)> {
    let components = normal_components(path)?;
    let (last, parents) = components.split_last().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{}: path names the root itself", path.display()),
        )
    })?;
    Ok((parents.iter().collect(), last))
}

/// The `Normal` components of `path`; `..` is refused (callers of this module
/// give paths that must not climb, even though the kernel would confine them).
pub fn normal_components(path: &Path) -> io::Result<Vec<&OsStr>> {
    let mut names = Vec::new();
    for component in path.components() {
        match component {
            Component::Normal(name) => names.push(name),
            Component::RootDir | Component::CurDir => {}
            Component::ParentDir | Component::Prefix(_) => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!("{}: path must not contain '..'", path.display()),
                ))
            }
        }
    }
    Ok(names)
}

/// `path` with leading `/` removed, `.` for the root itself.
fn relative_form(path: &Path) -> PathBuf {
    let trimmed = path
        .as_os_str()
        .as_bytes()
        .iter()
        .position(|&b| b != b'/')
        .map(|start| Path::new(OsStr::from_bytes(&path.as_os_str().as_bytes()[start..])))
        .unwrap_or(Path::new("."));
    trimmed.to_path_buf()
}

fn root_dir_fd(root: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    root.as_fd().try_clone_to_owned()
}

/// openat2 returns EAGAIN when a concurrent rename raced the lookup; retry.
fn retry_on_eagain<T>(mut f: impl FnMut() -> rustix::io::Result<T>) -> io::Result<T> {
    for _ in 0..64 {
        match f() {
            Err(rustix::io::Errno::AGAIN) => continue,
            other => return other.map_err(io::Error::from),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::WouldBlock,
        "path lookup kept racing with concurrent renames",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::symlink;

    fn open_root(dir: &Path) -> OwnedFd {
        rustix::fs::open(dir, OFlags::PATH | OFlags::DIRECTORY, Mode::empty()).unwrap()
    }

    #[test]
    fn absolute_symlink_is_resolved_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir_all(root.join("etc")).unwrap();
        fs::write(root.join("etc/target"), "inside").unwrap();
        fs::write(outer.path().join("target"), "outside").unwrap();
        // A link that, followed on the host, would leave the root.
        symlink("/etc", root.join("link")).unwrap();
        symlink("../../target", root.join("etc/climb")).unwrap();
        let fd = open_root(&root);
        let file = open_beneath(
            fd.as_fd(),
            Path::new("/link/target"),
            OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        assert_eq!(
            fs::read_to_string(format!(
                "/proc/self/fd/{}",
                rustix::fd::AsRawFd::as_raw_fd(&file)
            ))
            .unwrap(),
            "inside"
        );
        let err = open_beneath(
            fd.as_fd(),
            Path::new("etc/climb"),
            OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap_err();
        assert_eq!(
            err.kind(),
            io::ErrorKind::NotFound,
            "'..' stops at the root: /target does not exist inside"
        );
    }

    #[test]
    fn mkdir_all_through_a_symlink_stays_inside_the_root() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        let host_dir = outer.path().join("host");
        fs::create_dir_all(&host_dir).unwrap();
        // The same absolute path exists inside the root: the link resolves there.
        let rerooted = root.join(host_dir.strip_prefix("/").unwrap());
        fs::create_dir_all(&rerooted).unwrap();
        symlink(&host_dir, root.join("escape")).unwrap();
        let fd = open_root(&root);
        mkdir_all_beneath(
            fd.as_fd(),
            Path::new("escape/a/b"),
            Mode::from_raw_mode(0o755),
        )
        .unwrap();
        assert!(
            !host_dir.join("a").exists(),
            "nothing was created on the host side"
        );
        assert!(
            rerooted.join("a/b").is_dir(),
            "the directories were made inside the root"
        );
    }

    #[test]
    fn mkdir_all_through_a_dangling_symlink_fails_without_touching_the_host() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir_all(&root).unwrap();
        let host_dir = outer.path().join("host");
        fs::create_dir_all(&host_dir).unwrap();
        symlink(&host_dir, root.join("escape")).unwrap();
        let fd = open_root(&root);
        let result = mkdir_all_beneath(
            fd.as_fd(),
            Path::new("escape/a"),
            Mode::from_raw_mode(0o755),
        );
        assert!(
            result.is_err(),
            "a dangling link cannot be made into a directory"
        );
        assert!(
            !host_dir.join("a").exists(),
            "nothing was created on the host side"
        );
    }

    #[test]
    fn strict_resolution_refuses_any_symlink_along_the_path() {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        fs::create_dir_all(root.join("real")).unwrap();
        symlink("real", root.join("link")).unwrap();
        let fd = open_root(&root);
        let err = mkdir_all_beneath_with(
            fd.as_fd(),
            Path::new("link/a"),
            Mode::from_raw_mode(0o755),
            RESOLVE_NO_SYMLINKS,
        )
        .unwrap_err();
        assert_eq!(
            err.raw_os_error(),
            Some(libc::ELOOP),
            "a symlink is refused"
        );
        assert!(
            !root.join("real/a").exists(),
            "nothing was created through it"
        );
        mkdir_all_beneath_with(
            fd.as_fd(),
            Path::new("real/a/b"),
            Mode::from_raw_mode(0o755),
            RESOLVE_NO_SYMLINKS,
        )
        .unwrap();
        assert!(root.join("real/a/b").is_dir());
    }

    #[test]
    fn parent_components_are_refused() {
        assert!(normal_components(Path::new("a/../b")).is_err());
        let (dir, last) = split_last(Path::new("/a/b/c")).unwrap();
        assert_eq!(dir, PathBuf::from("a/b"));
        assert_eq!(last, OsStr::new("c"));
        assert!(split_last(Path::new("/")).is_err());
    }
}
