//! Hardlinks to files of lower layers, and lookups through a layer stack.
//!
//! Mechanism: a layer unpacked on its own (for overlayfs) cannot hold a
//! hardlink to an inode of another layer's directory. overlayfs itself
//! solves this by *copying up*: linking a lower file first copies it into the
//! upper layer. Unpacking does the same: the target is looked up through the
//! lower layer directories top-down, honouring whiteouts (char device 0/0)
//! and opaque directories (`trusted.overlay.opaque=y`), copied into this
//! layer (`copy_file_range` via `std::io::copy`, then `fchown`, `fchmod`,
//! `fsetxattr`, `futimens`), and linked with `linkat`. Every lookup is by fd
//! with `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)`.

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use berth_runtime::beneath::{self, RESOLVE_NO_SYMLINKS};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps, XattrFlags};
use rustix::io::Errno;

use super::unpack::{remove_tree, DeferredLink, LayerError, OPAQUE_XATTR};

/// What a path is in one layer directory.
enum Found {
    /// A regular file, opened for reading.
    File(OwnedFd),
    /// Deleted (a whiteout) or shadowed by a non-directory above it.
    Hidden,
    /// Not in this layer; `opaque` when a directory on the way hides lower layers.
    Absent { opaque: bool },
}

/// Complete the hardlinks of `layer_dir` whose targets live in lower layers
/// (`lowers_top_first`: the directories of the layers below, nearest first).
pub fn resolve_deferred_links(
    layer_dir: &Path,
    lowers_top_first: &[PathBuf],
    links: &[DeferredLink],
) -> Result<(), LayerError> {
    if links.is_empty() {
        return Ok(());
    }
    let root = open_root(layer_dir)?;
    for link in links {
        let shown = link.link.display().to_string();
        // A later entry of the same layer may have created the target.
        let in_layer =
            find(&root, &link.target).map_err(|e| io_error(&shown, "looking up target", e))?;
        match in_layer {
            Found::File(_) => {}
            Found::Hidden | Found::Absent { opaque: true } => {
                return Err(missing_target(&shown, &link.target));
            }
            Found::Absent { opaque: false } => {
                let source = find_below(lowers_top_first, &link.target, &shown)?;
                copy_up(&root, &source, &link.target, &shown)?;
            }
        }
        make_link(&root, &link.target, &link.link, &shown)?;
    }
    Ok(())
}

fn find_below(
    lowers_top_first: &[PathBuf],
    target: &Path,
    shown: &str,
) -> Result<OwnedFd, LayerError> {
    for lower in lowers_top_first {
        let root = open_root(lower)?;
        match find(&root, target).map_err(|e| io_error(shown, "looking up target below", e))? {
            Found::File(fd) => return Ok(fd),
            Found::Hidden | Found::Absent { opaque: true } => break,
            Found::Absent { opaque: false } => continue,
        }
    }
    Err(missing_target(shown, target))
}

fn missing_target(shown: &str, target: &Path) -> LayerError {
    LayerError::Refused {
        entry: shown.to_string(),
        reason: format!(
            "hardlink target {} is in neither this layer nor a layer below",
            target.display()
        ),
    }
}

fn io_error(shown: &str, op: &'static str, cause: io::Error) -> LayerError {
    LayerError::Io {
        entry: shown.to_string(),
        op,
        cause,
    }
}

fn open_root(dir: &Path) -> Result<OwnedFd, LayerError> {
    rustix::fs::open(
        dir,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Other {
        context: format!("opening layer directory {}", dir.display()),
        cause: e.into(),
    })
}

/// Walk `path` component by component inside one layer directory.
fn find(root: &OwnedFd, path: &Path) -> io::Result<Found> {
    let names = beneath::normal_components(path)?;
    let Some((last, parents)) = names.split_last() else {
        return Ok(Found::Hidden);
    };
    let mut dir = rustix::fs::openat(
        root,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut opaque = false;
    for name in parents {
        match lookup(&dir, name)? {
            None => return Ok(Found::Absent { opaque }),
            Some(FileType::Directory) => {}
            Some(_) => return Ok(Found::Hidden),
        }
        dir = rustix::fs::openat(
            &dir,
            *name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        opaque |= is_opaque(&dir);
    }
    match lookup(&dir, last)? {
        None => Ok(Found::Absent { opaque }),
        Some(FileType::RegularFile) => {
            let fd = rustix::fs::openat(
                &dir,
                *last,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            Ok(Found::File(fd))
        }
        Some(_) => Ok(Found::Hidden),
    }
}

/// The type of `name` in `dir`; a whiteout reads as "hidden" (`Some(CharacterDevice)`).
fn lookup(dir: &OwnedFd, name: &OsStr) -> io::Result<Option<FileType>> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(stat) => Ok(Some(FileType::from_raw_mode(stat.st_mode))),
        Err(Errno::NOENT) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

fn is_opaque(dir: &OwnedFd) -> bool {
    let mut value = [0u8; 4];
    matches!(rustix::fs::fgetxattr(dir, OPAQUE_XATTR, &mut value), Ok(1) if value[0] == b'y')
}

/// Copy the lower file `source` to `target` inside the layer, keeping owner,
/// mode, xattrs and times, as overlayfs' copy-up does.
fn copy_up(root: &OwnedFd, source: &OwnedFd, target: &Path, shown: &str) -> Result<(), LayerError> {
    let (parent, name) =
        beneath::split_last(target).map_err(|e| io_error(shown, "target path", e))?;
    let parent_fd = beneath::mkdir_all_beneath_with(
        root.as_fd(),
        &parent,
        Mode::from_raw_mode(0o755),
        RESOLVE_NO_SYMLINKS,
    )
    .map_err(|e| io_error(shown, "creating the target's directory", e))?;
    let stat =
        rustix::fs::fstat(source).map_err(|e| io_error(shown, "fstat lower file", e.into()))?;
    let created = rustix::fs::openat(
        &parent_fd,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| io_error(shown, "creating the copied-up file", e.into()))?;
    let mut to = File::from(created);
    let mut from = File::from(source.try_clone().map_err(|e| io_error(shown, "dup", e))?);
    io::copy(&mut from, &mut to).map_err(|e| io_error(shown, "copying lower file", e))?;
    rustix::fs::fchown(
        &to,
        Some(rustix::process::Uid::from_raw(stat.st_uid)),
        Some(rustix::process::Gid::from_raw(stat.st_gid)),
    )
    .map_err(|e| io_error(shown, "fchown", e.into()))?;
    rustix::fs::fchmod(&to, Mode::from_raw_mode(stat.st_mode & 0o7777))
        .map_err(|e| io_error(shown, "fchmod", e.into()))?;
    copy_xattrs(source, &to).map_err(|e| io_error(shown, "copying xattrs", e))?;
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: stat.st_atime,
            tv_nsec: stat.st_atime_nsec as _,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: stat.st_mtime,
            tv_nsec: stat.st_mtime_nsec as _,
        },
    };
    rustix::fs::futimens(&to, &times).map_err(|e| io_error(shown, "futimens", e.into()))
}

/// Copy every xattr but overlayfs' own from one open file to another.
pub(crate) fn copy_xattrs(from: &impl AsFd, to: &impl AsFd) -> io::Result<()> {
    for name in list_xattrs(from)? {
        if name.starts_with(b"trusted.overlay.") {
            continue;
        }
        let name = OsStr::new(std::str::from_utf8(&name).map_err(io::Error::other)?);
        let value = get_xattr(from, name)?;
        rustix::fs::fsetxattr(to, name, &value, XattrFlags::empty())?;
    }
    Ok(())
}

/// The names of the xattrs of an open file.
pub(crate) fn list_xattrs(fd: &impl AsFd) -> io::Result<Vec<Vec<u8>>> {
    let mut buf = vec![0u8; 1024];
    loop {
        match rustix::fs::flistxattr(fd, &mut buf[..]) {
            Ok(n) => {
                return Ok(buf[..n]
                    .split(|&b| b == 0)
                    .filter(|n| !n.is_empty())
                    .map(<[u8]>::to_vec)
                    .collect())
            }
            Err(Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(Errno::NOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        }
    }
}

/// The value of one xattr of an open file.
pub(crate) fn get_xattr(fd: &impl AsFd, name: &OsStr) -> io::Result<Vec<u8>> {
    let mut buf = vec![0u8; 256];
    loop {
        match rustix::fs::fgetxattr(fd, name, &mut buf[..]) {
            Ok(n) => {
                buf.truncate(n);
                return Ok(buf);
            }
            Err(Errno::RANGE) => buf.resize(buf.len() * 4, 0),
            Err(e) => return Err(e.into()),
        }
    }
}

fn make_link(root: &OwnedFd, target: &Path, link: &Path, shown: &str) -> Result<(), LayerError> {
    let open_parent = |path: &Path| -> Result<(OwnedFd, PathBuf), LayerError> {
        let (parent, name) = beneath::split_last(path).map_err(|e| io_error(shown, "path", e))?;
        let fd = beneath::mkdir_all_beneath_with(
            root.as_fd(),
            &parent,
            Mode::from_raw_mode(0o755),
            RESOLVE_NO_SYMLINKS,
        )
        .map_err(|e| io_error(shown, "opening directory", e))?;
        Ok((fd, PathBuf::from(name)))
    };
    let (target_dir, target_name) = open_parent(target)?;
    let (link_dir, link_name) = open_parent(link)?;
    remove_tree(link_dir.as_fd(), link_name.as_os_str())
        .map_err(|e| io_error(shown, "clearing link path", e))?;
    rustix::fs::linkat(
        &target_dir,
        &target_name,
        &link_dir,
        &link_name,
        AtFlags::empty(),
    )
    .map_err(|e| io_error(shown, "linkat", e.into()))
}
