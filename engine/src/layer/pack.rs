//! Packing: a layer directory in overlayfs form becomes a layer tar.
//!
//! The reverse of unpacking, used by `berth build` (an upper directory after
//! a step) and by the fixture builder. Mechanism: a depth-first walk by fd
//! (`openat(O_NOFOLLOW)`, `getdents64`, `fstatat(AT_SYMLINK_NOFOLLOW)`,
//! `readlinkat`, `flistxattr`/`fgetxattr`), names sorted so the same tree
//! always gives the same bytes. overlayfs' markers become the OCI tar form:
//! a character device 0/0 becomes an empty `.wh.NAME` file, a directory with
//! `trusted.overlay.opaque=y` gets a `.wh..wh..opq` entry. Files with several
//! links are written once and then as hardlink entries. Extended attributes
//! travel as PAX `SCHILY.xattr.*` records, except overlayfs' own and
//! `security.selinux` (a host label, meaningless elsewhere).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use tar::{EntryType, Header};

use super::lower::{get_xattr, list_xattrs};
use super::unpack::{list_dir, LayerError, OPAQUE_MARKER, OPAQUE_XATTR, WHITEOUT_PREFIX};

/// Write the tar of the layer directory `dir` to `out`; returns `out`.
pub fn write_layer_tar<W: Write>(dir: &Path, out: W) -> Result<W, LayerError> {
    let root = rustix::fs::open(
        dir,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Other {
        context: format!("opening layer directory {}", dir.display()),
        cause: e.into(),
    })?;
    let mut packer = Packer {
        builder: tar::Builder::new(out),
        links: HashMap::new(),
    };
    packer.walk(&root, Path::new(""))?;
    packer
        .builder
        .into_inner()
        .map_err(|e| write_error("finishing the tar", e))
}

struct Packer<W: Write> {
    builder: tar::Builder<W>,
    /// (device, inode) of multiply-linked files already written -> their path.
    links: HashMap<(u64, u64), PathBuf>,
}

fn write_error(what: &str, cause: io::Error) -> LayerError {
    LayerError::Other {
        context: format!("writing layer tar: {what}"),
        cause,
    }
}

fn read_error(path: &Path, op: &'static str, cause: io::Error) -> LayerError {
    LayerError::Io {
        entry: path.display().to_string(),
        op,
        cause,
    }
}

impl<W: Write> Packer<W> {
    fn walk(&mut self, dir: &OwnedFd, rel: &Path) -> Result<(), LayerError> {
        let mut names = list_dir(dir).map_err(|e| read_error(rel, "listing directory", e))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            self.entry(dir, rel, &name)?;
        }
        Ok(())
    }

    fn entry(&mut self, dir: &OwnedFd, rel: &Path, name: &OsStr) -> Result<(), LayerError> {
        let path = rel.join(name);
        let stat = rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| read_error(&path, "fstatat", e.into()))?;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let child = rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(|e| read_error(&path, "opening directory", e.into()))?;
                let xattrs =
                    xattrs_to_keep(&child).map_err(|e| read_error(&path, "reading xattrs", e))?;
                let opaque = has_opaque_marker(&child);
                let mut header = header_for(&stat, EntryType::Directory, 0);
                self.append(&mut header, &dir_name(&path), &xattrs, io::empty())?;
                if opaque {
                    let mut marker = whiteout_header(&stat);
                    self.append(&mut marker, &path.join(OPAQUE_MARKER), &[], io::empty())?;
                }
                self.walk(&child, &path)
            }
            FileType::CharacterDevice if stat.st_rdev == 0 => {
                let mut header = whiteout_header(&stat);
                let mut whiteout = WHITEOUT_PREFIX.as_bytes().to_vec();
                whiteout.extend_from_slice(name.as_bytes());
                self.append(
                    &mut header,
                    &rel.join(OsStr::from_bytes(&whiteout)),
                    &[],
                    io::empty(),
                )
            }
            FileType::RegularFile => self.regular(dir, name, &path, &stat),
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(dir, name, Vec::new())
                    .map_err(|e| read_error(&path, "readlinkat", e.into()))?;
                let mut header = header_for(&stat, EntryType::Symlink, 0);
                let target = PathBuf::from(OsString::from(OsStr::from_bytes(target.as_bytes())));
                self.builder
                    .append_link(&mut header, &path, &target)
                    .map_err(|e| write_error("symlink", e))
            }
            kind @ (FileType::CharacterDevice | FileType::BlockDevice | FileType::Fifo) => {
                let entry_type = match kind {
                    FileType::CharacterDevice => EntryType::Char,
                    FileType::BlockDevice => EntryType::Block,
                    _ => EntryType::Fifo,
                };
                let mut header = header_for(&stat, entry_type, 0);
                let rdev = stat.st_rdev;
                header
                    .set_device_major(rustix::fs::major(rdev))
                    .and_then(|_| header.set_device_minor(rustix::fs::minor(rdev)))
                    .map_err(|e| write_error("device numbers", e))?;
                self.append(&mut header, &path, &[], io::empty())
            }
            _ => {
                tracing::warn!(path = %path.display(), "sockets cannot be stored in a layer tar; skipped");
                Ok(())
            }
        }
    }

    fn regular(
        &mut self,
        dir: &OwnedFd,
        name: &OsStr,
        path: &Path,
        stat: &Stat,
    ) -> Result<(), LayerError> {
        if stat.st_nlink > 1 {
            let key = (stat.st_dev, stat.st_ino);
            if let Some(first) = self.links.get(&key) {
                let mut header = header_for(stat, EntryType::Link, 0);
                let first = first.clone();
                return self
                    .builder
                    .append_link(&mut header, path, &first)
                    .map_err(|e| write_error("hardlink", e));
            }
            self.links.insert(key, path.to_path_buf());
        }
        let fd = rustix::fs::openat(
            dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| read_error(path, "opening file", e.into()))?;
        let xattrs = xattrs_to_keep(&fd).map_err(|e| read_error(path, "reading xattrs", e))?;
        let mut header = header_for(stat, EntryType::Regular, stat.st_size as u64);
        let file = File::from(fd);
        // A file that shrinks while being read would make the tar lie.
        self.append(
            &mut header,
            path,
            &xattrs,
            io::Read::take(file, stat.st_size as u64),
        )
    }

    fn append(
        &mut self,
        header: &mut Header,
        path: &Path,
        xattrs: &[(String, Vec<u8>)],
        data: impl io::Read,
    ) -> Result<(), LayerError> {
        if !xattrs.is_empty() {
            let records: Vec<(String, &[u8])> = xattrs
                .iter()
                .map(|(name, value)| (format!("SCHILY.xattr.{name}"), value.as_slice()))
                .collect();
            self.builder
                .append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v)))
                .map_err(|e| write_error("xattr records", e))?;
        }
        self.builder
            .append_data(header, path, data)
            .map_err(|e| write_error(&path.display().to_string(), e))
    }
}

fn dir_name(path: &Path) -> PathBuf {
    let mut bytes = path.as_os_str().as_bytes().to_vec();
    bytes.push(b'/');
    PathBuf::from(OsStr::from_bytes(&bytes))
}

fn header_for(stat: &Stat, entry_type: EntryType, size: u64) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(entry_type);
    header.set_mode(stat.st_mode & 0o7777);
    header.set_uid(stat.st_uid as u64);
    header.set_gid(stat.st_gid as u64);
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(size);
    header
}

fn whiteout_header(stat: &Stat) -> Header {
    let mut header = Header::new_gnu();
    header.set_entry_type(EntryType::Regular);
    header.set_mode(0o600);
    header.set_uid(0);
    header.set_gid(0);
    header.set_mtime(stat.st_mtime.max(0) as u64);
    header.set_size(0);
    header
}

fn has_opaque_marker(dir: &impl AsFd) -> bool {
    matches!(get_xattr(dir, OsStr::new(OPAQUE_XATTR)), Ok(value) if value == b"y")
}

/// The xattrs worth carrying in a layer (UTF-8 names only, as PAX requires).
fn xattrs_to_keep(fd: &impl AsFd) -> io::Result<Vec<(String, Vec<u8>)>> {
    let mut kept = Vec::new();
    for name in list_xattrs(fd)? {
        if name.starts_with(b"trusted.overlay.") || name == b"security.selinux" {
            continue;
        }
        let Ok(name) = String::from_utf8(name) else {
            continue;
        };
        let value = get_xattr(fd, OsStr::new(&name))?;
        kept.push((name, value));
    }
    kept.sort();
    Ok(kept)
}
