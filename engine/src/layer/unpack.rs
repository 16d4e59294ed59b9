//! Layer unpacking: a layer tar stream becomes a directory, every entry
//! confined to it.
//!
//! Mechanism: for each tar entry, the *parent* directory is opened by fd with
//! `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` relative to the layer
//! directory (created with `mkdirat` when missing), so a symlink planted by an
//! earlier entry can never redirect a later one, and `..` or an absolute name
//! is refused before any syscall. The last name is then acted on with `*at`
//! syscalls that never follow it: `openat(O_CREAT|O_EXCL|O_NOFOLLOW)`,
//! `mkdirat`, `symlinkat`, `linkat` (no `AT_SYMLINK_FOLLOW`), `mknodat`,
//! `unlinkat`, `fchownat`/`utimensat` with `AT_SYMLINK_NOFOLLOW`. Metadata
//! order matters: owner first (chown clears setuid bits and file
//! capabilities), then mode, then xattrs (`fsetxattr`), then times
//! (`futimens`); directory times last of all, after their contents.
//!
//! Whiteouts (`.wh.NAME`, `.wh..wh..opq`) have two targets:
//! - [`Whiteouts::Overlay`]: the layer is kept as its own directory, to be
//!   stacked by overlayfs, so whiteouts take overlayfs' form: a character
//!   device 0/0 named NAME, and the xattr `trusted.overlay.opaque=y` on a
//!   directory whose lower content is hidden.
//! - [`Whiteouts::Apply`]: layers are applied one over another into a single
//!   directory (for hosts without overlayfs), so whiteouts delete what the
//!   layers below put there.

use std::collections::HashSet;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::rc::Rc;

use berth_runtime::beneath::{self, RESOLVE_NO_SYMLINKS};
use rustix::fs::{AtFlags, Dev, FileType, Mode, OFlags, Timespec, Timestamps, XattrFlags};
use rustix::io::Errno;
use rustix::process::{Gid, Uid};
use tar::EntryType;

/// The xattr overlayfs reads to hide the lower content of a directory.
pub const OPAQUE_XATTR: &str = "trusted.overlay.opaque";
/// Prefix of whiteout entries in layer tars (OCI image spec, from AUFS).
pub const WHITEOUT_PREFIX: &str = ".wh.";
/// The entry that marks its directory opaque.
pub const OPAQUE_MARKER: &str = ".wh..wh..opq";

/// What whiteout entries turn into; see the module comment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Whiteouts {
    Overlay,
    Apply,
}

/// What unpacking a layer found and wrote.
#[derive(Debug, Default, Clone)]
pub struct UnpackSummary {
    /// Tar entries processed.
    pub entries: u64,
    /// Bytes of regular file content written.
    pub content_bytes: u64,
    /// Hardlinks whose target is not in this layer (a file of a lower
    /// layer); see [`resolve_deferred_links`]. Only in overlay mode.
    pub deferred_links: Vec<DeferredLink>,
}

/// A hardlink to a path this layer does not contain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeferredLink {
    pub link: PathBuf,
    pub target: PathBuf,
}

/// Why a layer could not be unpacked. Every variant names the entry.
#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error("entry {entry:?} refused: {reason}")]
    Refused { entry: String, reason: String },
    #[error("entry {entry:?}: {op}: {cause}")]
    Io {
        entry: String,
        op: &'static str,
        cause: io::Error,
    },
    #[error("reading the layer tar: {0}")]
    Tar(io::Error),
    #[error("{context}: {cause}")]
    Other { context: String, cause: io::Error },
}

fn refused(entry: &str, reason: impl Into<String>) -> LayerError {
    LayerError::Refused {
        entry: entry.to_string(),
        reason: reason.into(),
    }
}

fn io_err<'a>(entry: &'a str, op: &'static str) -> impl FnOnce(Errno) -> LayerError + 'a {
    move |errno| LayerError::Io {
        entry: entry.to_string(),
        op,
        cause: errno.into(),
    }
}

/// Unpack the layer tar read from `reader` into the directory `dest`
/// (which must exist; normally a fresh, empty staging directory). The
/// stream is read to its very end (so a hashing reader below sees every
/// byte, including the padding after the tar's end marker).
pub fn unpack<R: Read>(
    reader: R,
    dest: &Path,
    mode: Whiteouts,
) -> Result<UnpackSummary, LayerError> {
    let root = rustix::fs::open(
        dest,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| LayerError::Other {
        context: format!("opening layer directory {}", dest.display()),
        cause: e.into(),
    })?;
    let mut unpacker = Unpacker {
        root,
        mode,
        parent_cache: None,
        dir_times: Vec::new(),
        created: HashSet::new(),
        summary: UnpackSummary::default(),
        buf: vec![0; 256 * 1024],
    };
    let mut archive = tar::Archive::new(reader);
    for entry in archive.entries().map_err(LayerError::Tar)? {
        let mut entry = entry.map_err(LayerError::Tar)?;
        unpacker.entry(&mut entry)?;
        unpacker.summary.entries += 1;
    }
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(LayerError::Tar)?;
    unpacker.set_directory_times();
    Ok(unpacker.summary)
}

/// Ownership, permissions, times and xattrs of one entry.
struct Meta {
    uid: Uid,
    gid: Gid,
    mode: Mode,
    mtime: Timespec,
    xattrs: Vec<(OsString, Vec<u8>)>,
}

struct Unpacker {
    root: OwnedFd,
    mode: Whiteouts,
    /// The last parent directory used (tars list a directory's entries
    /// together): saves an `openat2` per entry. Dropped whenever a directory
    /// is removed, so it can never point at a replaced path.
    parent_cache: Option<(PathBuf, Rc<OwnedFd>)>,
    dir_times: Vec<(PathBuf, Timespec)>,
    /// Apply mode: what this layer created, which an opaque marker keeps.
    created: HashSet<PathBuf>,
    summary: UnpackSummary,
    buf: Vec<u8>,
}

impl Unpacker {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw_path = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw_path).into_owned();
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            EntryType::XGlobalHeader
                | EntryType::XHeader
                | EntryType::GNULongName
                | EntryType::GNULongLink
        ) {
            return Ok(());
        }
        let path = clean_entry_path(&raw_path).map_err(|reason| refused(&shown, reason))?;
        let meta = read_meta(entry, &shown)?;
        let Some(name) = path.file_name().map(OsStr::to_os_string) else {
            return self.root_entry(&shown, kind, &meta);
        };
        let parent = path.parent().unwrap_or(Path::new("")).to_path_buf();
        if let Some(hidden) = name.as_bytes().strip_prefix(WHITEOUT_PREFIX.as_bytes()) {
            return self.whiteout(&shown, &parent, &name, hidden);
        }
        let parent_fd = self.parent(&shown, &parent)?;
        let parent_fd = parent_fd.as_fd();
        match kind {
            EntryType::Directory => self.directory(&shown, parent_fd, &name, &path, &meta)?,
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.regular_file(entry, &shown, parent_fd, &name, &meta)?
            }
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&shown, "symlink without a target"))?
                    .into_owned();
                self.symlink(&shown, parent_fd, &name, &target, &meta)?
            }
            EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&shown, "hardlink without a target"))?
                    .into_owned();
                self.hardlink(&shown, parent_fd, &name, &path, &target)?
            }
            EntryType::Char | EntryType::Block | EntryType::Fifo => {
                let (file_type, dev) = device_of(entry, kind, &shown)?;
                self.special(&shown, parent_fd, &name, file_type, dev, &meta)?
            }
            other => {
                return Err(refused(
                    &shown,
                    format!("unsupported tar entry type {:?}", other.as_byte() as char),
                ))
            }
        }
        if self.mode == Whiteouts::Apply {
            self.created.insert(path);
        }
        Ok(())
    }

    /// `./` itself: only a directory entry makes sense; it sets the root's metadata.
    fn root_entry(&mut self, shown: &str, kind: EntryType, meta: &Meta) -> Result<(), LayerError> {
        if kind != EntryType::Directory {
            return Err(refused(
                shown,
                "entry names the layer root but is not a directory",
            ));
        }
        let fd = self.open_dir(shown, Path::new(""))?;
        apply_owner_mode_xattrs(&fd, shown, meta)?;
        self.dir_times.push((PathBuf::new(), meta.mtime));
        Ok(())
    }

    /// An fd for `parent` (made, with mode 0755, where missing).
    fn parent(&mut self, shown: &str, parent: &Path) -> Result<Rc<OwnedFd>, LayerError> {
        if let Some((cached, fd)) = &self.parent_cache {
            if cached == parent {
                return Ok(Rc::clone(fd));
            }
        }
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let resolve = self.resolve_flags();
        let root = self.root.as_fd();
        let fd = match beneath::open_beneath_with(root, parent, flags, Mode::empty(), resolve) {
            Ok(fd) => fd,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                beneath::mkdir_all_beneath_with(root, parent, Mode::from_raw_mode(0o755), resolve)
                    .map_err(|e| parent_error(shown, parent, e))?
            }
            Err(e) => return Err(parent_error(shown, parent, e)),
        };
        let fd = Rc::new(fd);
        self.parent_cache = Some((parent.to_path_buf(), Rc::clone(&fd)));
        Ok(fd)
    }

    /// Overlay layers never follow a symlink; applying onto a full rootfs
    /// follows them, confined to the root (the lower layers' `/bin -> usr/bin`
    /// must work there, as it does through an overlay mount).
    fn resolve_flags(&self) -> rustix::fs::ResolveFlags {
        match self.mode {
            Whiteouts::Overlay => RESOLVE_NO_SYMLINKS,
            Whiteouts::Apply => {
                rustix::fs::ResolveFlags::IN_ROOT | rustix::fs::ResolveFlags::NO_MAGICLINKS
            }
        }
    }

    /// A readable fd of the directory `path` inside the layer.
    fn open_dir(&self, shown: &str, path: &Path) -> Result<OwnedFd, LayerError> {
        let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
        beneath::open_beneath_with(
            self.root.as_fd(),
            path,
            flags,
            Mode::empty(),
            self.resolve_flags(),
        )
        .map_err(|e| parent_error(shown, path, e))
    }

    /// Make room for a new entry named `name`: remove what is there (a
    /// later entry replaces an earlier one, as tar does), except a directory
    /// when a directory comes again. Returns true when a directory was kept.
    fn clear_slot(
        &mut self,
        shown: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        keep_directory: bool,
    ) -> Result<bool, LayerError> {
        let stat = match rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(stat) => stat,
            Err(Errno::NOENT) => return Ok(false),
            Err(e) => return Err(io_err(shown, "stat existing entry")(e)),
        };
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            if keep_directory {
                return Ok(true);
            }
            self.parent_cache = None;
            remove_tree(parent, name).map_err(|e| LayerError::Io {
                entry: shown.to_string(),
                op: "removing the directory it replaces",
                cause: e,
            })?;
        } else {
            rustix::fs::unlinkat(parent, name, AtFlags::empty())
                .map_err(io_err(shown, "removing the file it replaces"))?;
        }
        Ok(false)
    }

    fn directory(
        &mut self,
        shown: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        if !self.clear_slot(shown, parent, name, true)? {
            rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                .map_err(io_err(shown, "mkdirat"))?;
        }
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(shown, "opening the new directory"))?;
        apply_owner_mode_xattrs(&fd, shown, meta)?;
        self.dir_times.push((path.to_path_buf(), meta.mtime));
        Ok(())
    }

    fn regular_file<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        shown: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        self.clear_slot(shown, parent, name, false)?;
        let fd = rustix::fs::openat(
            parent,
            name,
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )
        .map_err(io_err(shown, "creating file"))?;
        let mut file = File::from(fd);
        let declared = entry.header().entry_size().map_err(LayerError::Tar)?;
        let sparse = entry.header().entry_type() == EntryType::GNUSparse;
        let written = copy_data(entry, &mut file, &mut self.buf).map_err(|e| match e {
            CopyError::Read(e) => LayerError::Tar(e),
            CopyError::Write(e) => LayerError::Io {
                entry: shown.to_string(),
                op: "writing file data",
                cause: e,
            },
        })?;
        if !sparse && written != declared {
            return Err(refused(
                shown,
                format!("truncated: its header says {declared} bytes but the archive ends after {written}"),
            ));
        }
        apply_owner_mode_xattrs(&file, shown, meta)?;
        let times = timestamps(meta.mtime);
        rustix::fs::futimens(&file, &times).map_err(io_err(shown, "futimens"))?;
        self.summary.content_bytes += written;
        Ok(())
    }

    fn symlink(
        &mut self,
        shown: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        target: &[u8],
        meta: &Meta,
    ) -> Result<(), LayerError> {
        self.clear_slot(shown, parent, name, false)?;
        // The target is stored, never followed by berth: any value is safe.
        rustix::fs::symlinkat(OsStr::from_bytes(target), parent, name)
            .map_err(io_err(shown, "symlinkat"))?;
        chown_nofollow(parent, name, shown, meta)?;
        finish_nofollow(parent, name, shown, meta)
    }

    fn hardlink(
        &mut self,
        shown: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        path: &Path,
        raw_target: &[u8],
    ) -> Result<(), LayerError> {
        let target = clean_entry_path(raw_target)
            .map_err(|reason| refused(shown, format!("hardlink target: {reason}")))?;
        if target == path {
            return Ok(());
        }
        let (Some(target_name), Some(target_parent)) = (target.file_name(), target.parent()) else {
            return Err(refused(shown, "hardlink to the layer root"));
        };
        let flags = OFlags::PATH | OFlags::DIRECTORY;
        let target_dir = beneath::open_beneath_with(
            self.root.as_fd(),
            target_parent,
            flags,
            Mode::empty(),
            self.resolve_flags(),
        );
        let target_dir = match target_dir {
            Ok(fd) => Some(fd),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(parent_error(shown, target_parent, e)),
        };
        let exists = match &target_dir {
            Some(dir) => match rustix::fs::statat(dir, target_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(stat) if FileType::from_raw_mode(stat.st_mode) == FileType::Directory => {
                    return Err(refused(shown, "hardlink to a directory"))
                }
                Ok(_) => true,
                Err(Errno::NOENT) => false,
                Err(e) => return Err(io_err(shown, "stat hardlink target")(e)),
            },
            None => false,
        };
        let Some(target_dir) = target_dir.filter(|_| exists) else {
            return match self.mode {
                Whiteouts::Overlay => {
                    self.summary.deferred_links.push(DeferredLink {
                        link: path.to_path_buf(),
                        target,
                    });
                    Ok(())
                }
                Whiteouts::Apply => Err(refused(
                    shown,
                    format!("hardlink target {} does not exist", target.display()),
                )),
            };
        };
        self.clear_slot(shown, parent, name, false)?;
        // No AT_SYMLINK_FOLLOW: a link to a symlink links the symlink itself.
        rustix::fs::linkat(&target_dir, target_name, parent, name, AtFlags::empty())
            .map_err(io_err(shown, "linkat"))
    }

    fn special(
        &mut self,
        shown: &str,
        parent: BorrowedFd<'_>,
        name: &OsStr,
        file_type: FileType,
        dev: Dev,
        meta: &Meta,
    ) -> Result<(), LayerError> {
        self.clear_slot(shown, parent, name, false)?;
        rustix::fs::mknodat(parent, name, file_type, Mode::from_raw_mode(0o600), dev)
            .map_err(io_err(shown, "mknodat"))?;
        chown_nofollow(parent, name, shown, meta)?;
        // fchmodat cannot refuse to follow a symlink; go through an O_PATH
        // fd of the node itself instead (its /proc/self/fd link is the node).
        let node = rustix::fs::openat(
            parent,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err(shown, "opening the new node"))?;
        rustix::fs::chmod(proc_fd_path(&node), meta.mode).map_err(io_err(shown, "chmod"))?;
        finish_nofollow(parent, name, shown, meta)
    }

    /// `.wh.NAME` and `.wh..wh..opq` entries.
    fn whiteout(
        &mut self,
        shown: &str,
        parent: &Path,
        full_name: &OsStr,
        hidden: &[u8],
    ) -> Result<(), LayerError> {
        if full_name == OPAQUE_MARKER {
            return self.opaque(shown, parent);
        }
        if hidden.starts_with(WHITEOUT_PREFIX.as_bytes()) {
            // Other `.wh..wh.` names are AUFS bookkeeping, meaningless here.
            return Ok(());
        }
        if hidden.is_empty() || hidden == b"." || hidden == b".." {
            return Err(refused(
                shown,
                "whiteout names no file (.wh. followed by nothing, '.' or '..')",
            ));
        }
        let hidden = OsStr::from_bytes(hidden);
        match self.mode {
            Whiteouts::Overlay => {
                let parent_fd = self.parent(shown, parent)?;
                self.clear_slot(shown, parent_fd.as_fd(), hidden, false)?;
                rustix::fs::mknodat(
                    parent_fd.as_fd(),
                    hidden,
                    FileType::CharacterDevice,
                    Mode::empty(),
                    rustix::fs::makedev(0, 0),
                )
                .map_err(io_err(shown, "mknodat whiteout"))
            }
            Whiteouts::Apply => {
                let Some(parent_fd) = self.existing_dir(shown, parent)? else {
                    return Ok(()); // nothing below to hide
                };
                self.clear_slot(shown, parent_fd.as_fd(), hidden, false)?;
                Ok(())
            }
        }
    }

    /// `.wh..wh..opq`: the directory's lower content is hidden.
    fn opaque(&mut self, shown: &str, dir: &Path) -> Result<(), LayerError> {
        match self.mode {
            Whiteouts::Overlay => {
                self.parent(shown, dir)?;
                let fd = self.open_dir(shown, dir)?;
                rustix::fs::fsetxattr(&fd, OPAQUE_XATTR, b"y", XattrFlags::empty())
                    .map_err(io_err(shown, "setting trusted.overlay.opaque"))
            }
            Whiteouts::Apply => {
                let Some(fd) = self.existing_dir(shown, dir)? else {
                    return Ok(());
                };
                for child in list_dir(&fd).map_err(|e| LayerError::Io {
                    entry: shown.to_string(),
                    op: "listing the opaque directory",
                    cause: e,
                })? {
                    if !self.created.contains(&dir.join(&child)) {
                        self.parent_cache = None;
                        remove_tree(fd.as_fd(), &child).map_err(|e| LayerError::Io {
                            entry: shown.to_string(),
                            op: "removing lower content of an opaque directory",
                            cause: e,
                        })?;
                    }
                }
                Ok(())
            }
        }
    }

    /// The directory `path` if it exists (apply mode: whiteouts never create).
    fn existing_dir(&self, shown: &str, path: &Path) -> Result<Option<OwnedFd>, LayerError> {
        match self.open_dir(shown, path) {
            Ok(fd) => Ok(Some(fd)),
            Err(LayerError::Io { cause, .. }) if cause.kind() == io::ErrorKind::NotFound => {
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn set_directory_times(&self) {
        for (path, mtime) in self.dir_times.iter().rev() {
            let flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW;
            // A directory removed by a later entry has no time to set.
            if let Ok(fd) = beneath::open_beneath_with(
                self.root.as_fd(),
                path,
                flags,
                Mode::empty(),
                self.resolve_flags(),
            ) {
                if let Err(e) = rustix::fs::futimens(&fd, &timestamps(*mtime)) {
                    tracing::warn!(path = %path.display(), error = %e, "cannot set directory time");
                }
            }
        }
    }
}

/// The relative, normalized form of an entry name; `..` and absolute names
/// are refused (string checks only decide *errors*; confinement itself is
/// the kernel's `RESOLVE_BENEATH`).
pub fn clean_entry_path(raw: &[u8]) -> Result<PathBuf, String> {
    if raw.first() == Some(&b'/') {
        return Err("absolute path: names in a layer must be relative to its root".to_string());
    }
    let mut path = PathBuf::new();
    for component in raw.split(|&b| b == b'/') {
        match component {
            b"" | b"." => {}
            b".." => {
                return Err("path contains '..': entries must stay inside the layer".to_string())
            }
            name => path.push(OsStr::from_bytes(name)),
        }
    }
    Ok(path)
}

fn parent_error(shown: &str, parent: &Path, err: io::Error) -> LayerError {
    let reason = match err.raw_os_error() {
        Some(libc::ELOOP) => Some(format!(
            "its directory {} goes through a symlink (berth never writes through a symlink while unpacking)",
            parent.display()
        )),
        Some(libc::EXDEV) => Some(format!("its directory {} escapes the layer", parent.display())),
        Some(libc::ENOTDIR) => Some(format!("a component of {} is not a directory", parent.display())),
        _ => None,
    };
    match reason {
        Some(reason) => refused(shown, reason),
        None => LayerError::Io {
            entry: shown.to_string(),
            op: "opening its directory",
            cause: err,
        },
    }
}

fn read_meta<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<Meta, LayerError> {
    let header = entry.header();
    let mut uid = header.uid().map_err(LayerError::Tar)?;
    let mut gid = header.gid().map_err(LayerError::Tar)?;
    let mode = header.mode().map_err(LayerError::Tar)? & 0o7777;
    let mut mtime = Timespec {
        tv_sec: header.mtime().map_err(LayerError::Tar)? as i64,
        tv_nsec: 0,
    };
    let mut xattrs = Vec::new();
    if let Some(extensions) = entry.pax_extensions().map_err(LayerError::Tar)? {
        for extension in extensions {
            let extension = extension.map_err(LayerError::Tar)?;
            let key = extension.key_bytes();
            let value = extension.value_bytes();
            if let Some(name) = key.strip_prefix(b"SCHILY.xattr.") {
                xattrs.push((OsString::from_vec(name.to_vec()), value.to_vec()));
            } else if key == b"uid" {
                uid = parse_pax_number(value).ok_or_else(|| refused(shown, "bad PAX uid"))?;
            } else if key == b"gid" {
                gid = parse_pax_number(value).ok_or_else(|| refused(shown, "bad PAX gid"))?;
            } else if key == b"mtime" {
                mtime = parse_pax_time(value).ok_or_else(|| refused(shown, "bad PAX mtime"))?;
            }
        }
    }
    let check_id = |id: u64, what: &str| {
        u32::try_from(id)
            .ok()
            .filter(|&id| id != u32::MAX)
            .ok_or_else(|| refused(shown, format!("{what} {id} is out of range")))
    };
    Ok(Meta {
        uid: Uid::from_raw(check_id(uid, "uid")?),
        gid: Gid::from_raw(check_id(gid, "gid")?),
        mode: Mode::from_raw_mode(mode),
        mtime,
        xattrs,
    })
}

fn parse_pax_number(value: &[u8]) -> Option<u64> {
    std::str::from_utf8(value).ok()?.trim().parse().ok()
}

/// PAX times are decimal seconds with an optional fraction: `1700000000.5`.
fn parse_pax_time(value: &[u8]) -> Option<Timespec> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    let tv_sec: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let tv_nsec = if digits.is_empty() {
        0
    } else {
        format!("{digits:0<9}").parse().ok()?
    };
    Some(Timespec { tv_sec, tv_nsec })
}

fn device_of<R: Read>(
    entry: &tar::Entry<'_, R>,
    kind: EntryType,
    shown: &str,
) -> Result<(FileType, Dev), LayerError> {
    let file_type = match kind {
        EntryType::Char => FileType::CharacterDevice,
        EntryType::Block => FileType::BlockDevice,
        EntryType::Fifo => return Ok((FileType::Fifo, 0)),
        _ => return Err(refused(shown, "not a device")),
    };
    let header = entry.header();
    let major = header.device_major().map_err(LayerError::Tar)?.unwrap_or(0);
    let minor = header.device_minor().map_err(LayerError::Tar)?.unwrap_or(0);
    Ok((file_type, rustix::fs::makedev(major, minor)))
}

fn timestamps(mtime: Timespec) -> Timestamps {
    Timestamps {
        last_access: mtime,
        last_modification: mtime,
    }
}

/// Owner, then mode, then xattrs, on an open fd (chown would clear setuid
/// bits and `security.capability` if done later).
fn apply_owner_mode_xattrs(fd: &impl AsFd, shown: &str, meta: &Meta) -> Result<(), LayerError> {
    rustix::fs::fchown(fd, Some(meta.uid), Some(meta.gid)).map_err(io_err(shown, "fchown"))?;
    rustix::fs::fchmod(fd, meta.mode).map_err(io_err(shown, "fchmod"))?;
    for (name, value) in meta.xattrs.iter().filter(|(n, _)| xattr_allowed(n)) {
        let result = rustix::fs::fsetxattr(fd, name.as_os_str(), value, XattrFlags::empty());
        tolerate_unsupported_xattr(result, shown, name)?;
    }
    Ok(())
}

/// The owner of a node that must not be followed (symlink, device, fifo):
/// `fchownat(AT_SYMLINK_NOFOLLOW)`.
fn chown_nofollow(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shown: &str,
    meta: &Meta,
) -> Result<(), LayerError> {
    rustix::fs::chownat(
        parent,
        name,
        Some(meta.uid),
        Some(meta.gid),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err(shown, "fchownat"))
}

/// The last steps for such a node: its xattrs, then its mtime
/// (`utimensat(AT_SYMLINK_NOFOLLOW)`).
fn finish_nofollow(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shown: &str,
    meta: &Meta,
) -> Result<(), LayerError> {
    set_xattrs_nofollow(parent, name, shown, meta)?;
    rustix::fs::utimensat(
        parent,
        name,
        &timestamps(meta.mtime),
        AtFlags::SYMLINK_NOFOLLOW,
    )
    .map_err(io_err(shown, "utimensat"))
}

/// Xattrs on a node that cannot be opened for writing (symlink, device,
/// fifo): through `/proc/self/fd/N` of an `O_PATH` fd of the node itself.
fn set_xattrs_nofollow(
    parent: BorrowedFd<'_>,
    name: &OsStr,
    shown: &str,
    meta: &Meta,
) -> Result<(), LayerError> {
    let wanted: Vec<_> = meta
        .xattrs
        .iter()
        .filter(|(n, _)| xattr_allowed(n))
        .collect();
    if wanted.is_empty() {
        return Ok(());
    }
    let node = rustix::fs::openat(
        parent,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(io_err(shown, "opening node for xattrs"))?;
    let path = proc_fd_path(&node);
    for (xattr, value) in wanted {
        let result = rustix::fs::lsetxattr(&path, xattr.as_os_str(), value, XattrFlags::empty());
        tolerate_unsupported_xattr(result, shown, xattr)?;
    }
    Ok(())
}

/// overlayfs' own xattrs are never taken from an image: whiteouts and
/// opaque directories are expressed by the tar's `.wh.` entries only.
fn xattr_allowed(name: &OsStr) -> bool {
    !name.as_bytes().starts_with(b"trusted.overlay.")
}

/// Like docker: an xattr the filesystem does not support is skipped with a
/// warning rather than failing the whole image.
fn tolerate_unsupported_xattr(
    result: rustix::io::Result<()>,
    shown: &str,
    name: &OsStr,
) -> Result<(), LayerError> {
    match result {
        Ok(()) => Ok(()),
        Err(e @ (Errno::NOTSUP | Errno::PERM)) => {
            tracing::warn!(entry = shown, xattr = %name.to_string_lossy(), error = %e, "xattr not supported here, skipped");
            Ok(())
        }
        Err(e) => Err(io_err(shown, "setxattr")(e)),
    }
}

pub(crate) fn proc_fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

fn copy_data(mut from: impl Read, to: &mut File, buf: &mut [u8]) -> Result<u64, CopyError> {
    let mut total = 0u64;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        to.write_all(&buf[..n]).map_err(CopyError::Write)?;
        total += n as u64;
    }
}

/// The names in a directory (without `.` and `..`).
pub(crate) fn list_dir(dir: &impl AsFd) -> io::Result<Vec<OsString>> {
    let mut names = Vec::new();
    let mut reader = rustix::fs::Dir::read_from(dir)?;
    while let Some(entry) = reader.read() {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(OsString::from_vec(name.to_vec()));
        }
    }
    Ok(names)
}

/// Remove `name` in `parent` and everything below it, never following a
/// symlink (each level is opened with `O_NOFOLLOW` and emptied by fd).
pub fn remove_tree(parent: BorrowedFd<'_>, name: &OsStr) -> io::Result<()> {
    match rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR) {
        Ok(()) | Err(Errno::NOENT) => return Ok(()),
        Err(Errno::NOTDIR) => return Ok(rustix::fs::unlinkat(parent, name, AtFlags::empty())?),
        Err(Errno::NOTEMPTY | Errno::EXIST) => {}
        Err(e) => return Err(e.into()),
    }
    let dir = rustix::fs::openat(
        parent,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    for child in list_dir(&dir)? {
        let stat = rustix::fs::statat(&dir, &child, AtFlags::SYMLINK_NOFOLLOW)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            remove_tree(dir.as_fd(), &child)?;
        } else {
            rustix::fs::unlinkat(&dir, &child, AtFlags::empty())?;
        }
    }
    Ok(rustix::fs::unlinkat(parent, name, AtFlags::REMOVEDIR)?)
}
