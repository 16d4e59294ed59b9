//! The input of `berth load`: a directory, a tar file or a stream.
//!
//! A directory (an OCI image layout, or an unpacked `docker save`) is read in
//! place. A tar file or stdin (optionally gzip- or zstd-compressed, detected
//! by content) is first extracted into the load's staging directory, because
//! its members come in any order (a `manifest.json` often comes last) and the
//! blobs then move into the store by `rename(2)`, with no second copy.
//!
//! Mechanism: the outer archive is untrusted like any layer. Only regular
//! files and directories are written (with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS)` parents and `O_CREAT|O_EXCL|O_NOFOLLOW` files);
//! symlinks and hardlinks, which `docker save` uses for shared layers, are
//! never created on disk but remembered and resolved by name, inside the
//! archive, when a file is looked up.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use berth_runtime::beneath::{self, RESOLVE_NO_SYMLINKS};
use rustix::fs::{Mode, OFlags};
use tar::EntryType;

use super::error::ImageError;
use super::store::{read_limited, Staging};
use crate::layer::compression;
use crate::layer::unpack::clean_entry_path;
use crate::progress::Progress;

/// Where `berth load` reads from.
pub enum LoadSource {
    /// A file (tar, possibly compressed) or a directory.
    Path(PathBuf),
    /// A stream (stdin): a tar, possibly compressed.
    Reader(Box<dyn Read + Send>),
}

/// A link recorded while extracting an archive.
#[derive(Debug, Clone)]
enum Link {
    /// Target relative to the link's own directory (or to the archive root if absolute).
    Symbolic(PathBuf),
    /// Target relative to the archive root.
    Hard(PathBuf),
}

/// The input, as a directory to read files from.
pub(crate) struct Input {
    root: PathBuf,
    /// True when the files are berth's own (extracted into staging): they can
    /// be renamed into the store instead of copied.
    pub owned: bool,
    /// How errors name the input (`busybox.tar`, `stdin`).
    pub name: String,
    links: HashMap<PathBuf, Link>,
}

impl Input {
    pub fn open(
        source: LoadSource,
        staging: &Staging,
        progress: &Progress,
    ) -> Result<Input, ImageError> {
        match source {
            LoadSource::Path(path) => {
                let name = path.display().to_string();
                let meta =
                    std::fs::metadata(&path).map_err(ImageError::io(format!("opening {name}")))?;
                if meta.is_dir() {
                    return Ok(Input {
                        root: path,
                        owned: false,
                        name,
                        links: HashMap::new(),
                    });
                }
                let file = File::open(&path).map_err(ImageError::io(format!("opening {name}")))?;
                let bar = progress.bar("reading", meta.len());
                let reader = Counting {
                    inner: file,
                    bar: &bar,
                };
                let input = extract(reader, staging, name)?;
                bar.finish("done");
                Ok(input)
            }
            LoadSource::Reader(reader) => extract(reader, staging, "stdin".to_string()),
        }
    }

    /// True if `rel` names a file of the input.
    pub fn exists(&self, rel: &str) -> bool {
        self.path(rel).is_ok_and(|p| p.is_file())
    }

    /// The on-disk path of the member `rel`, links resolved inside the archive.
    pub fn path(&self, rel: &str) -> Result<PathBuf, ImageError> {
        let clean = clean_entry_path(rel.as_bytes()).map_err(|reason| {
            ImageError::invalid(format!("{}: member {rel:?}", self.name), reason)
        })?;
        let resolved = self.resolve_links(&clean, rel)?;
        Ok(self.root.join(resolved))
    }

    /// Read a small member (a JSON document) completely.
    pub fn read_json_member(&self, rel: &str, what: &str) -> Result<Vec<u8>, ImageError> {
        let path = self.path(rel)?;
        match read_limited(&path) {
            Ok(bytes) => Ok(bytes),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Err(ImageError::MissingBlob {
                what: what.to_string(),
                blob: rel.to_string(),
                input: self.name.clone(),
            }),
            Err(e) => Err(ImageError::io(format!("{}: reading {rel}", self.name))(e)),
        }
    }

    /// Follow recorded links along `path` (each prefix may be a link).
    fn resolve_links(&self, path: &Path, shown: &str) -> Result<PathBuf, ImageError> {
        if self.links.is_empty() {
            return Ok(path.to_path_buf());
        }
        let mut current = path.to_path_buf();
        'restart: for _ in 0..40 {
            let mut prefix = PathBuf::new();
            let components: Vec<_> = current.components().collect();
            for (i, component) in components.iter().enumerate() {
                prefix.push(component);
                let Some(link) = self.links.get(&prefix) else {
                    continue;
                };
                let rest: PathBuf = components[i + 1..].iter().collect();
                let target = match link {
                    Link::Hard(target) => target.clone(),
                    Link::Symbolic(target) => {
                        let base = prefix.parent().unwrap_or(Path::new("")).to_path_buf();
                        normalize_within(&base, target).ok_or_else(|| {
                            ImageError::invalid(
                                format!("{}: member {shown:?}", self.name),
                                "a symlink in the archive points outside it",
                            )
                        })?
                    }
                };
                current = target.join(rest);
                continue 'restart;
            }
            return Ok(current);
        }
        Err(ImageError::invalid(
            format!("{}: member {shown:?}", self.name),
            "too many levels of links in the archive",
        ))
    }
}

/// `base/target` normalized, `None` if it climbs out of the archive root.
fn normalize_within(base: &Path, target: &Path) -> Option<PathBuf> {
    let start = if target.is_absolute() {
        PathBuf::new()
    } else {
        base.to_path_buf()
    };
    let mut parts: Vec<&OsStr> = start.iter().collect();
    for component in target.components() {
        match component {
            std::path::Component::Normal(name) => parts.push(name),
            std::path::Component::ParentDir => {
                parts.pop()?;
            }
            _ => {}
        }
    }
    Some(parts.iter().collect())
}

/// Unpack the outer archive into `staging/input`.
fn extract(reader: impl Read + Send, staging: &Staging, name: String) -> Result<Input, ImageError> {
    let root = staging.dir.join("input");
    std::fs::create_dir(&root).map_err(ImageError::io(format!("creating {}", root.display())))?;
    let root_fd = rustix::fs::open(
        &root,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| ImageError::io(format!("opening {}", root.display()))(e.into()))?;
    let (_, decoded) =
        compression::decompress(reader).map_err(ImageError::io(format!("reading {name}")))?;
    // Tar headers are read 512 bytes at a time: buffer them.
    let mut archive = tar::Archive::new(io::BufReader::with_capacity(COPY_BUFFER, decoded));
    let mut buffer = vec![0u8; COPY_BUFFER];
    let mut links = HashMap::new();
    let mut members = 0usize;
    let bad = |reason: String| ImageError::invalid(name.clone(), reason);
    let entries = archive
        .entries()
        .map_err(|e| bad(format!("not a tar archive: {e}")))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| bad(format!("not a valid tar archive: {e}")))?;
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            continue;
        }
        let path =
            clean_entry_path(&raw).map_err(|reason| bad(format!("member {shown:?}: {reason}")))?;
        if path.as_os_str().is_empty() {
            continue;
        }
        match kind {
            EntryType::Directory => {
                beneath::mkdir_all_beneath_with(
                    root_fd.as_fd(),
                    &path,
                    Mode::from_raw_mode(0o700),
                    RESOLVE_NO_SYMLINKS,
                )
                .map_err(|e| bad(format!("member {shown:?}: {e}")))?;
            }
            EntryType::Regular | EntryType::Continuous => {
                let size = entry
                    .header()
                    .entry_size()
                    .map_err(|e| bad(format!("member {shown:?}: {e}")))?;
                write_member(&root_fd, &path, &mut entry, size, &mut buffer)
                    .map_err(|e| bad(format!("member {shown:?}: {e}")))?;
                members += 1;
            }
            EntryType::Symlink | EntryType::Link => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| bad(format!("member {shown:?}: link without target")))?;
                let target = PathBuf::from(OsStr::from_bytes(&target));
                let link = if kind == EntryType::Link {
                    let clean =
                        clean_entry_path(target.as_os_str().as_bytes()).map_err(|reason| {
                            bad(format!("member {shown:?}: hardlink target: {reason}"))
                        })?;
                    Link::Hard(clean)
                } else {
                    Link::Symbolic(target)
                };
                links.insert(path, link);
            }
            other => {
                return Err(bad(format!(
                    "member {shown:?}: unexpected entry type {:?} in an image archive",
                    other.as_byte() as char
                )))
            }
        }
    }
    if members == 0 {
        return Err(bad(
            "empty archive: no files in it (is this an image archive?)".to_string(),
        ));
    }
    tracing::debug!(members, links = links.len(), "archive extracted");
    Ok(Input {
        root,
        owned: true,
        name,
        links,
    })
}

const COPY_BUFFER: usize = 1 << 20;

fn write_member(
    root: &OwnedFd,
    path: &Path,
    data: &mut impl Read,
    size: u64,
    buffer: &mut [u8],
) -> io::Result<()> {
    let (parent, name) = beneath::split_last(path)?;
    let dir = beneath::mkdir_all_beneath_with(
        root.as_fd(),
        &parent,
        Mode::from_raw_mode(0o700),
        RESOLVE_NO_SYMLINKS,
    )?;
    let fd = rustix::fs::openat(
        &dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(|e| {
        if e == rustix::io::Errno::EXIST {
            io::Error::new(
                io::ErrorKind::AlreadyExists,
                "the archive has this member twice",
            )
        } else {
            e.into()
        }
    })?;
    let mut file = File::from(fd);
    let mut copied = 0u64;
    loop {
        let n = match data.read(buffer) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        file.write_all(&buffer[..n])?;
        copied += n as u64;
    }
    if copied != size {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            format!("truncated archive: the member should have {size} bytes but the archive ends after {copied}"),
        ));
    }
    Ok(())
}

/// Counts bytes read for a progress bar.
struct Counting<'a, R> {
    inner: R,
    bar: &'a crate::progress::Bar,
}

impl<R: Read> Read for Counting<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.bar.advance(n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_resolve_inside_the_archive_only() {
        assert_eq!(
            normalize_within(Path::new("abc"), Path::new("../def/layer.tar")),
            Some(PathBuf::from("def/layer.tar"))
        );
        assert_eq!(
            normalize_within(Path::new("abc"), Path::new("../../etc/shadow")),
            None
        );
        assert_eq!(
            normalize_within(Path::new("abc"), Path::new("/blobs/x")),
            Some(PathBuf::from("blobs/x"))
        );
    }
}
