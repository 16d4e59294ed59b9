//! COPY and ADD: files from the build context (or another stage) into the
//! rootfs of a build step.
//!
//! Mechanism: everything by file descriptor. The source root (the context
//! directory, or a read-only overlay of another stage) is opened once; each
//! source is looked up beneath it with `openat2(RESOLVE_IN_ROOT)`, so `..`
//! and symlinks can never reach outside it, and a source written as
//! `../secret` is refused before any lookup. Directory trees are walked with
//! `openat(O_NOFOLLOW)` + `getdents64` + `fstatat(AT_SYMLINK_NOFOLLOW)`:
//! symlinks inside a copied directory are copied as symlinks, never
//! followed. The destination is resolved beneath the step's rootfs the same
//! way, and written with `mkdirat`, `openat(O_CREAT|O_EXCL)`, `symlinkat`,
//! `fchown`, `fchmod`, `futimens`.
//!
//! Two passes: [`SourceSet::collect`] lists what will be copied (applying
//! `.dockerignore`) and can hash it for the build cache; [`SourceSet::copy_into`]
//! copies. Ownership is root (0:0) unless `--chown`; modes and mtimes come
//! from the source (or `--chmod`).

use std::collections::HashMap;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::io::{self, Read};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_runtime::beneath;
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use sha2::{Digest as _, Sha256};

use super::ignore::{self, IgnoreMatcher};
use crate::layer::unpack::{list_dir, remove_tree};

/// Why a COPY or ADD failed; messages follow docker's where it has them.
#[derive(Debug, thiserror::Error)]
pub enum CopyError {
    #[error("forbidden path outside the build context: {0}")]
    OutsideContext(String),
    #[error(
        "file not found in {root} or excluded by .dockerignore: stat {path}: file does not exist"
    )]
    NotFound { root: String, path: String },
    #[error("no source files were specified")]
    NoSources,
    #[error("When using {0} with more than one source file, the destination must be a directory and end with a /")]
    DestNotDir(&'static str),
    #[error("{path}: {op}: {error}")]
    Io {
        path: String,
        op: &'static str,
        error: io::Error,
    },
}

fn io_err(path: impl AsRef<Path>, op: &'static str) -> impl FnOnce(io::Error) -> CopyError {
    let path = path.as_ref().display().to_string();
    move |error| CopyError::Io { path, op, error }
}

fn errno(path: impl AsRef<Path>, op: &'static str) -> impl FnOnce(rustix::io::Errno) -> CopyError {
    let f = io_err(path, op);
    move |e| f(e.into())
}

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Dir,
    File,
    Symlink,
    /// fifo, socket, device: skipped with a warning (docker's classic builder
    /// cannot send them either).
    Other,
}

/// One entry to copy, relative to its source (empty path = the source itself).
#[derive(Debug, Clone)]
struct Item {
    path: PathBuf,
    kind: Kind,
    mode: u32,
    size: u64,
    mtime: Timespec,
    link: Option<OsString>,
}

/// One source of a COPY: a file or a directory tree.
struct Source {
    /// Relative to the source root, `/`-separated (as written, cleaned).
    rel: String,
    /// The source itself (a file or directory), opened beneath the root.
    fd: OwnedFd,
    top: Item,
    /// Everything below a directory source, parents before children.
    items: Vec<Item>,
}

/// Where sources are read from: the build context or another stage's rootfs.
pub struct SourceRoot<'a> {
    pub dir: &'a Path,
    /// `.dockerignore` (context only).
    pub ignore: Option<&'a IgnoreMatcher>,
    /// How errors name it: `build context`, `stage build`.
    pub name: String,
}

/// The resolved sources of one COPY/ADD.
pub struct SourceSet {
    sources: Vec<Source>,
    root_name: String,
}

/// What the sources were, for the history line (`file:`, `dir:`, `multi:`).
impl SourceSet {
    /// Resolve `patterns` (globs allowed) beneath `root` and list everything
    /// that will be copied.
    pub fn collect(root: &SourceRoot<'_>, patterns: &[String]) -> Result<SourceSet, CopyError> {
        let root_fd = rustix::fs::open(
            root.dir,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(root.dir, "opening"))?;
        let mut rels = Vec::new();
        for pattern in patterns {
            let cleaned = ignore::clean(pattern);
            if cleaned == ".." || cleaned.starts_with("../") {
                return Err(CopyError::OutsideContext(pattern.clone()));
            }
            let matches = if ignore::has_wildcards(&cleaned) {
                glob(root_fd.as_fd(), &cleaned)?
            } else {
                vec![cleaned.clone()]
            };
            let matches: Vec<String> = matches
                .into_iter()
                .filter(|m| m.is_empty() || !root.ignore.is_some_and(|i| i.is_excluded(m)))
                .collect();
            if matches.is_empty() && ignore::has_wildcards(&cleaned) {
                continue;
            }
            if matches.is_empty() {
                return Err(CopyError::NotFound {
                    root: root.name.clone(),
                    path: pattern.clone(),
                });
            }
            rels.extend(matches);
        }
        if rels.is_empty() {
            return Err(CopyError::NoSources);
        }
        let mut sources = Vec::new();
        for rel in rels {
            sources.push(open_source(root, root_fd.as_fd(), rel)?);
        }
        Ok(SourceSet {
            sources,
            root_name: root.name.clone(),
        })
    }

    /// How many sources matched.
    pub fn len(&self) -> usize {
        self.sources.len()
    }

    pub fn is_empty(&self) -> bool {
        self.sources.is_empty()
    }

    /// The single source when it is a regular file: its path beneath the root
    /// (ADD checks it for a tar archive).
    pub fn single_file(&self) -> Option<&str> {
        match self.sources.as_slice() {
            [only] if only.top.kind == Kind::File => Some(&only.rel),
            _ => None,
        }
    }

    /// `file`, `dir` or `multi`, as docker names COPY sources in history.
    pub fn kind_word(&self) -> &'static str {
        match self.sources.as_slice() {
            [only] if only.top.kind == Kind::Dir => "dir",
            [_] => "file",
            _ => "multi",
        }
    }

    /// The content hash of everything to be copied: names, types, modes,
    /// sizes, link targets and file contents (not mtimes or owners, as
    /// docker's cache ignores them).
    pub fn content_hash(&self) -> Result<String, CopyError> {
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        for source in &self.sources {
            hasher.update(source.rel.as_bytes());
            hasher.update([0]);
            for item in std::iter::once(&source.top).chain(&source.items) {
                hasher.update(item.path.as_os_str().as_bytes());
                hasher.update(
                    format!("\0{:?}\0{:o}\0{}\0", item.kind, item.mode, item.size).as_bytes(),
                );
                if let Some(link) = &item.link {
                    hasher.update(link.as_bytes());
                }
                hasher.update([0]);
                if item.kind == Kind::File {
                    let mut file = open_item(source, &item.path)?;
                    loop {
                        let n = file.read(&mut buf).map_err(io_err(&item.path, "reading"))?;
                        if n == 0 {
                            break;
                        }
                        hasher.update(&buf[..n]);
                    }
                }
            }
        }
        Ok(hex::encode(hasher.finalize()))
    }

    /// Read the single file source (ADD's archive detection and extraction).
    pub fn open_single_file(&self) -> Result<File, CopyError> {
        let source = self.sources.first().ok_or(CopyError::NoSources)?;
        open_item(source, Path::new(""))
    }

    /// Copy into the rootfs at `rootfs`, to `dest` (absolute inside it).
    /// `dest_is_dir`: the destination was written with a trailing `/`.
    pub fn copy_into(
        &self,
        instruction: &'static str,
        rootfs: &Path,
        dest: &str,
        dest_is_dir: bool,
        options: &CopyOptions,
    ) -> Result<(), CopyError> {
        let root = rustix::fs::open(
            rootfs,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(errno(rootfs, "opening rootfs"))?;
        let dest_is_dir = dest_is_dir || self.sources.len() > 1;
        if self.sources.len() > 1 && !dest.ends_with('/') {
            return Err(CopyError::DestNotDir(instruction));
        }
        let mut writer = Writer {
            options,
            buf: vec![0; 256 * 1024],
            dir_times: Vec::new(),
        };
        for source in &self.sources {
            match source.top.kind {
                Kind::Dir => {
                    let target = writer.ensure_dir(root.as_fd(), Path::new(dest))?;
                    writer.copy_tree(source, target)?;
                }
                Kind::File | Kind::Symlink | Kind::Other => {
                    let name = Path::new(&source.rel)
                        .file_name()
                        .map(OsStr::to_os_string)
                        .unwrap_or_else(|| OsString::from("file"));
                    let (parent, name) = if dest_is_dir || is_dir_beneath(root.as_fd(), dest) {
                        (writer.ensure_dir(root.as_fd(), Path::new(dest))?, name)
                    } else {
                        let (parent, last) = beneath::split_last(Path::new(dest))
                            .map_err(io_err(dest, "destination"))?;
                        let last = last.to_os_string();
                        (writer.ensure_dir(root.as_fd(), &parent)?, last)
                    };
                    writer.write_item(source, &source.top, parent.as_fd(), &name)?;
                }
            }
        }
        writer.apply_dir_times();
        tracing::debug!(sources = self.sources.len(), dest, from = %self.root_name, "copied");
        Ok(())
    }
}

/// `--chown` and `--chmod`, resolved.
#[derive(Debug, Clone, Default)]
pub struct CopyOptions {
    pub owner: Option<(u32, u32)>,
    pub chmod: Option<u32>,
}

fn is_dir_beneath(root: BorrowedFd<'_>, path: &str) -> bool {
    beneath::open_dir_beneath(root, Path::new(path)).is_ok()
}

/// Expand a glob beneath the root, one path component at a time.
fn glob(root: BorrowedFd<'_>, pattern: &str) -> Result<Vec<String>, CopyError> {
    let mut current: Vec<String> = vec![String::new()];
    for segment in pattern.split('/') {
        let mut next = Vec::new();
        for base in &current {
            if !ignore::has_wildcards(segment) {
                next.push(join(base, segment));
                continue;
            }
            let Ok(dir) = beneath::open_beneath(
                root,
                Path::new(if base.is_empty() { "." } else { base }),
                OFlags::RDONLY | OFlags::DIRECTORY,
                Mode::empty(),
            ) else {
                continue;
            };
            let mut names: Vec<OsString> = list_dir(&dir).map_err(io_err(base, "listing"))?;
            names.sort();
            for name in names {
                if let Some(name) = name.to_str() {
                    if ignore::fnmatch(segment, name) {
                        next.push(join(base, name));
                    }
                }
            }
        }
        current = next;
    }
    // Literal components may name nothing: keep only what exists.
    Ok(current
        .into_iter()
        .filter(|rel| {
            beneath::open_beneath(root, Path::new(rel), OFlags::PATH, Mode::empty()).is_ok()
        })
        .collect())
}

fn join(base: &str, name: &str) -> String {
    if base.is_empty() {
        name.to_string()
    } else {
        format!("{base}/{name}")
    }
}

fn item_of(path: PathBuf, stat: &Stat, link: Option<OsString>) -> Item {
    let kind = match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => Kind::Dir,
        FileType::RegularFile => Kind::File,
        FileType::Symlink => Kind::Symlink,
        _ => Kind::Other,
    };
    Item {
        path,
        kind,
        mode: stat.st_mode & 0o7777,
        size: if kind == Kind::File {
            stat.st_size as u64
        } else {
            0
        },
        mtime: Timespec {
            tv_sec: stat.st_mtime,
            tv_nsec: stat.st_mtime_nsec as _,
        },
        link,
    }
}

fn open_source(
    root: &SourceRoot<'_>,
    root_fd: BorrowedFd<'_>,
    rel: String,
) -> Result<Source, CopyError> {
    let lookup = if rel.is_empty() {
        ".".to_string()
    } else {
        rel.clone()
    };
    // The named source itself may be a symlink: it is followed, inside the root.
    let fd = match beneath::open_beneath(
        root_fd,
        Path::new(&lookup),
        OFlags::RDONLY | OFlags::NONBLOCK,
        Mode::empty(),
    ) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(CopyError::NotFound {
                root: root.name.clone(),
                path: rel,
            })
        }
        Err(e) => return Err(io_err(&lookup, "opening source")(e)),
    };
    let stat = rustix::fs::fstat(&fd).map_err(errno(&lookup, "fstat"))?;
    let top = item_of(PathBuf::new(), &stat, None);
    let mut items = Vec::new();
    if top.kind == Kind::Dir {
        let mut pending = Vec::new();
        walk(
            &fd,
            Path::new(""),
            &rel,
            root.ignore,
            &mut items,
            &mut pending,
        )?;
    }
    Ok(Source {
        rel,
        fd,
        top,
        items,
    })
}

/// List a directory tree (no symlink followed), parents before children,
/// applying `.dockerignore` with paths relative to the context root.
/// `pending` holds excluded directories walked only because an exception
/// might re-include something below them: they are listed only then.
fn walk(
    dir: &OwnedFd,
    rel: &Path,
    context_rel: &str,
    ignore: Option<&IgnoreMatcher>,
    items: &mut Vec<Item>,
    pending: &mut Vec<Item>,
) -> Result<(), CopyError> {
    let mut names = list_dir(dir).map_err(io_err(rel, "listing directory"))?;
    names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
    for name in names {
        let path = rel.join(&name);
        let stat = rustix::fs::statat(dir, &name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(errno(&path, "fstatat"))?;
        let context_path = join(context_rel, &path.to_string_lossy());
        let excluded = ignore.is_some_and(|i| i.is_excluded(&context_path));
        let is_dir = FileType::from_raw_mode(stat.st_mode) == FileType::Directory;
        if excluded && !(is_dir && ignore.is_some_and(IgnoreMatcher::has_exceptions)) {
            continue;
        }
        let link = if FileType::from_raw_mode(stat.st_mode) == FileType::Symlink {
            let target = rustix::fs::readlinkat(dir, &name, Vec::new())
                .map_err(errno(&path, "readlinkat"))?;
            Some(OsString::from(OsStr::from_bytes(target.as_bytes())))
        } else {
            None
        };
        let item = item_of(path.clone(), &stat, link);
        if is_dir {
            let child = rustix::fs::openat(
                dir,
                &name,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(errno(&path, "opening directory"))?;
            if excluded {
                pending.push(item);
            } else {
                flush_pending(pending, items);
                items.push(item);
            }
            walk(&child, &path, context_rel, ignore, items, pending)?;
            if excluded {
                // Nothing below was re-included: forget the directory.
                if pending.last().is_some_and(|p| p.path == path) {
                    pending.pop();
                }
            }
        } else {
            flush_pending(pending, items);
            items.push(item);
        }
    }
    Ok(())
}

fn flush_pending(pending: &mut Vec<Item>, items: &mut Vec<Item>) {
    items.append(pending);
}

/// Open a regular file of a source for reading, never through a symlink.
fn open_item(source: &Source, path: &Path) -> Result<File, CopyError> {
    if path.as_os_str().is_empty() {
        let fd = rustix::fs::openat(
            &source.fd,
            ".",
            OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        );
        // `source.fd` is the file itself: reopen it through /proc to get an
        // independent offset.
        return match fd {
            Ok(fd) => Ok(File::from(fd)),
            Err(_) => {
                let proc = crate::layer::unpack::proc_fd_path(&source.fd);
                File::open(&proc).map_err(io_err(&source.rel, "opening"))
            }
        };
    }
    let fd = beneath::open_beneath_with(
        source.fd.as_fd(),
        path,
        OFlags::RDONLY | OFlags::NOFOLLOW,
        Mode::empty(),
        beneath::RESOLVE_NO_SYMLINKS,
    )
    .map_err(io_err(path, "opening"))?;
    Ok(File::from(fd))
}

struct Writer<'a> {
    options: &'a CopyOptions,
    buf: Vec<u8>,
    /// Directories whose mtime is set last (writing into them changes it).
    dir_times: Vec<(OwnedFd, Timespec)>,
}

impl Writer<'_> {
    fn owner(&self) -> (Option<rustix::fs::Uid>, Option<rustix::fs::Gid>) {
        let (uid, gid) = self.options.owner.unwrap_or((0, 0));
        (
            Some(rustix::fs::Uid::from_raw(uid)),
            Some(rustix::fs::Gid::from_raw(gid)),
        )
    }

    /// Open (making what is missing, owned as `--chown` says) the directory
    /// `path` beneath `root`. Symlinks on the way are followed inside it.
    fn ensure_dir(&self, root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, CopyError> {
        let mut current = root.try_clone_to_owned().map_err(io_err(path, "dup"))?;
        let mut prefix = PathBuf::from("/");
        for name in beneath::normal_components(path).map_err(io_err(path, "destination"))? {
            prefix.push(name);
            let open = || {
                beneath::open_beneath(
                    root,
                    &prefix,
                    OFlags::PATH | OFlags::DIRECTORY,
                    Mode::empty(),
                )
            };
            current = match open() {
                Ok(fd) => fd,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    match rustix::fs::mkdirat(&current, name, Mode::from_raw_mode(0o755)) {
                        Ok(()) => {
                            let (uid, gid) = self.owner();
                            rustix::fs::chownat(
                                &current,
                                name,
                                uid,
                                gid,
                                AtFlags::SYMLINK_NOFOLLOW,
                            )
                            .map_err(errno(&prefix, "chown"))?;
                            rustix::fs::chmodat(
                                &current,
                                name,
                                Mode::from_raw_mode(0o755),
                                AtFlags::empty(),
                            )
                            .map_err(errno(&prefix, "chmod"))?;
                        }
                        Err(rustix::io::Errno::EXIST) => {}
                        Err(e) => return Err(errno(&prefix, "mkdir")(e)),
                    }
                    open().map_err(io_err(&prefix, "opening"))?
                }
                Err(e) => return Err(io_err(&prefix, "opening destination directory")(e)),
            };
        }
        Ok(current)
    }

    fn copy_tree(&mut self, source: &Source, target: OwnedFd) -> Result<(), CopyError> {
        let mut dirs: HashMap<PathBuf, OwnedFd> = HashMap::new();
        dirs.insert(PathBuf::new(), target);
        for item in &source.items {
            let parent_path = item.path.parent().unwrap_or(Path::new("")).to_path_buf();
            let Some(name) = item.path.file_name().map(OsStr::to_os_string) else {
                continue;
            };
            let Some(parent) = dirs.get(&parent_path) else {
                continue;
            };
            let parent = parent.try_clone().map_err(io_err(&item.path, "dup"))?;
            if let Some(dir) = self.write_item(source, item, parent.as_fd(), &name)? {
                dirs.insert(item.path.clone(), dir);
            }
        }
        Ok(())
    }

    /// Make one entry; returns the new directory's fd for a directory.
    fn write_item(
        &mut self,
        source: &Source,
        item: &Item,
        parent: BorrowedFd<'_>,
        name: &OsStr,
    ) -> Result<Option<OwnedFd>, CopyError> {
        let shown = item.path.join(name);
        let existing = rustix::fs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW).ok();
        let existing_is_dir =
            existing.is_some_and(|s| FileType::from_raw_mode(s.st_mode) == FileType::Directory);
        if existing.is_some() && !(item.kind == Kind::Dir && existing_is_dir) {
            remove_tree(parent, name).map_err(io_err(&shown, "replacing"))?;
        }
        let (uid, gid) = self.owner();
        let mode = Mode::from_raw_mode(self.options.chmod.unwrap_or(item.mode));
        let times = Timestamps {
            last_access: item.mtime,
            last_modification: item.mtime,
        };
        match item.kind {
            Kind::Dir => {
                if !existing_is_dir {
                    rustix::fs::mkdirat(parent, name, Mode::from_raw_mode(0o700))
                        .map_err(errno(&shown, "mkdir"))?;
                }
                let dir = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )
                .map_err(errno(&shown, "opening directory"))?;
                rustix::fs::fchown(&dir, uid, gid).map_err(errno(&shown, "chown"))?;
                rustix::fs::fchmod(&dir, mode).map_err(errno(&shown, "chmod"))?;
                let keep = dir.try_clone().map_err(io_err(&shown, "dup"))?;
                self.dir_times.push((keep, item.mtime));
                Ok(Some(dir))
            }
            Kind::File => {
                let mut from = open_item(source, &item.path)?;
                let to = rustix::fs::openat(
                    parent,
                    name,
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )
                .map_err(errno(&shown, "creating"))?;
                let mut to = File::from(to);
                copy_data(&mut from, &mut to, &mut self.buf).map_err(io_err(&shown, "copying"))?;
                rustix::fs::fchown(&to, uid, gid).map_err(errno(&shown, "chown"))?;
                rustix::fs::fchmod(&to, mode).map_err(errno(&shown, "chmod"))?;
                rustix::fs::futimens(&to, &times).map_err(errno(&shown, "futimens"))?;
                Ok(None)
            }
            Kind::Symlink => {
                let target = item.link.clone().unwrap_or_default();
                rustix::fs::symlinkat(target.as_os_str(), parent, name)
                    .map_err(errno(&shown, "symlink"))?;
                rustix::fs::chownat(parent, name, uid, gid, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno(&shown, "chown"))?;
                rustix::fs::utimensat(parent, name, &times, AtFlags::SYMLINK_NOFOLLOW)
                    .map_err(errno(&shown, "utimensat"))?;
                Ok(None)
            }
            Kind::Other => {
                tracing::warn!(path = %shown.display(), "skipping a fifo, socket or device node in the copy source");
                Ok(None)
            }
        }
    }

    fn apply_dir_times(&mut self) {
        for (dir, mtime) in self.dir_times.drain(..).rev() {
            let times = Timestamps {
                last_access: mtime,
                last_modification: mtime,
            };
            if let Err(e) = rustix::fs::futimens(&dir, &times) {
                tracing::debug!(error = %e, "cannot set a directory's mtime");
            }
        }
    }
}

fn copy_data(from: &mut File, to: &mut File, buf: &mut [u8]) -> io::Result<u64> {
    use io::Write;
    let mut total = 0;
    loop {
        let n = match from.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..n])?;
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::{symlink, MetadataExt, PermissionsExt};

    fn context() -> tempfile::TempDir {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path();
        fs::create_dir_all(p.join("src/sub")).unwrap();
        fs::write(p.join("src/a.txt"), "a").unwrap();
        fs::write(p.join("src/sub/b.txt"), "b").unwrap();
        fs::write(p.join("src/skip.log"), "log").unwrap();
        fs::write(p.join("top.sh"), "#!/bin/sh\n").unwrap();
        fs::set_permissions(p.join("top.sh"), fs::Permissions::from_mode(0o755)).unwrap();
        symlink("a.txt", p.join("src/link")).unwrap();
        symlink("/etc/passwd", p.join("escape")).unwrap();
        dir
    }

    fn collect(
        ctx: &Path,
        ignore: Option<&IgnoreMatcher>,
        patterns: &[&str],
    ) -> Result<SourceSet, CopyError> {
        let root = SourceRoot {
            dir: ctx,
            ignore,
            name: "build context".into(),
        };
        SourceSet::collect(
            &root,
            &patterns.iter().map(|s| s.to_string()).collect::<Vec<_>>(),
        )
    }

    #[test]
    fn copies_files_directories_and_symlinks_with_owner_and_mode() {
        let ctx = context();
        let rootfs = tempfile::tempdir().unwrap();
        let ignore = IgnoreMatcher::parse("*.log\nsrc/*.log\n").unwrap();
        let set = collect(ctx.path(), Some(&ignore), &["src"]).unwrap();
        assert_eq!(set.kind_word(), "dir");
        let options = CopyOptions {
            owner: Some((1000, 1001)),
            chmod: None,
        };
        set.copy_into("COPY", rootfs.path(), "/app", false, &options)
            .unwrap();
        let app = rootfs.path().join("app");
        assert_eq!(fs::read_to_string(app.join("a.txt")).unwrap(), "a");
        assert_eq!(fs::read_to_string(app.join("sub/b.txt")).unwrap(), "b");
        assert!(!app.join("skip.log").exists(), ".dockerignore applies");
        assert_eq!(fs::read_link(app.join("link")).unwrap(), Path::new("a.txt"));
        let meta = fs::metadata(app.join("sub/b.txt")).unwrap();
        assert_eq!((meta.uid(), meta.gid()), (1000, 1001));
        assert_eq!(
            fs::metadata(&app).unwrap().uid(),
            1000,
            "created destination is chowned too"
        );

        let one = collect(ctx.path(), None, &["top.sh"]).unwrap();
        one.copy_into(
            "COPY",
            rootfs.path(),
            "/usr/local/bin/",
            true,
            &CopyOptions::default(),
        )
        .unwrap();
        let copied = rootfs.path().join("usr/local/bin/top.sh");
        assert_eq!(fs::metadata(&copied).unwrap().mode() & 0o7777, 0o755);
        // Into an existing directory without a trailing slash.
        one.copy_into(
            "COPY",
            rootfs.path(),
            "/app",
            false,
            &CopyOptions::default(),
        )
        .unwrap();
        assert!(app.join("top.sh").is_file());
        // Renamed file.
        one.copy_into(
            "COPY",
            rootfs.path(),
            "/renamed",
            false,
            &CopyOptions {
                owner: None,
                chmod: Some(0o600),
            },
        )
        .unwrap();
        assert_eq!(
            fs::metadata(rootfs.path().join("renamed")).unwrap().mode() & 0o7777,
            0o600
        );
    }

    #[test]
    fn globs_and_multiple_sources_need_a_directory_destination() {
        let ctx = context();
        let rootfs = tempfile::tempdir().unwrap();
        let set = collect(ctx.path(), None, &["src/*.txt", "top.*"]).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(set.kind_word(), "multi");
        assert!(matches!(
            set.copy_into("COPY", rootfs.path(), "/x", false, &CopyOptions::default()),
            Err(CopyError::DestNotDir("COPY"))
        ));
        set.copy_into("COPY", rootfs.path(), "/x/", true, &CopyOptions::default())
            .unwrap();
        assert!(rootfs.path().join("x/a.txt").is_file());
        assert!(rootfs.path().join("x/top.sh").is_file());
        assert!(matches!(
            collect(ctx.path(), None, &["*.nothing"]),
            Err(CopyError::NoSources)
        ));
    }

    #[test]
    fn sources_outside_the_context_are_refused() {
        let ctx = context();
        for bad in ["../etc/passwd", "src/../../x", ".."] {
            assert!(
                matches!(
                    collect(ctx.path(), None, &[bad]),
                    Err(CopyError::OutsideContext(_))
                ),
                "{bad}"
            );
        }
        // A symlink to /etc/passwd resolves inside the context, where it does not exist.
        assert!(matches!(
            collect(ctx.path(), None, &["escape"]),
            Err(CopyError::NotFound { .. })
        ));
        assert!(matches!(
            collect(ctx.path(), None, &["missing"]),
            Err(CopyError::NotFound { .. })
        ));
        let ignore = IgnoreMatcher::parse("top.sh\n").unwrap();
        assert!(matches!(
            collect(ctx.path(), Some(&ignore), &["top.sh"]),
            Err(CopyError::NotFound { .. })
        ));
    }

    #[test]
    fn destination_symlinks_cannot_escape_the_rootfs() {
        let ctx = context();
        let rootfs = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        symlink(outside.path(), rootfs.path().join("out")).unwrap();
        let set = collect(ctx.path(), None, &["top.sh"]).unwrap();
        // The link's target does not exist inside the rootfs: an error, as
        // docker's MkdirAll gives, and nothing written on the host.
        assert!(set
            .copy_into(
                "COPY",
                rootfs.path(),
                "/out/",
                true,
                &CopyOptions::default()
            )
            .is_err());
        assert!(
            !outside.path().join("top.sh").exists(),
            "nothing written outside the rootfs"
        );
        // Once it exists inside the rootfs, the link leads there.
        let inside = rootfs
            .path()
            .join(outside.path().strip_prefix("/").unwrap());
        fs::create_dir_all(&inside).unwrap();
        set.copy_into(
            "COPY",
            rootfs.path(),
            "/out/",
            true,
            &CopyOptions::default(),
        )
        .unwrap();
        assert!(
            !outside.path().join("top.sh").exists(),
            "nothing written outside the rootfs"
        );
        assert!(inside.join("top.sh").exists());
    }

    #[test]
    fn the_content_hash_follows_content_not_mtime() {
        let ctx = context();
        let h1 = collect(ctx.path(), None, &["src"])
            .unwrap()
            .content_hash()
            .unwrap();
        let h2 = collect(ctx.path(), None, &["src"])
            .unwrap()
            .content_hash()
            .unwrap();
        assert_eq!(h1, h2);
        let f = File::options()
            .write(true)
            .open(ctx.path().join("src/a.txt"))
            .unwrap();
        f.set_modified(std::time::SystemTime::UNIX_EPOCH).unwrap();
        assert_eq!(
            collect(ctx.path(), None, &["src"])
                .unwrap()
                .content_hash()
                .unwrap(),
            h1
        );
        fs::write(ctx.path().join("src/sub/b.txt"), "B").unwrap();
        assert_ne!(
            collect(ctx.path(), None, &["src"])
                .unwrap()
                .content_hash()
                .unwrap(),
            h1
        );
    }

    #[test]
    fn exceptions_reinclude_below_excluded_directories() {
        let ctx = context();
        let rootfs = tempfile::tempdir().unwrap();
        let ignore = IgnoreMatcher::parse("src\n!src/sub/b.txt\n").unwrap();
        let set = collect(ctx.path(), Some(&ignore), &["."]).unwrap();
        set.copy_into("COPY", rootfs.path(), "/c", false, &CopyOptions::default())
            .unwrap();
        assert!(rootfs.path().join("c/src/sub/b.txt").is_file());
        assert!(!rootfs.path().join("c/src/a.txt").exists());
        assert!(rootfs.path().join("c/top.sh").is_file());
    }
}
