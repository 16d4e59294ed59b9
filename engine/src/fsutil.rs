//! Crash-safe file primitives shared by every store.
//!
//! Mechanism: write to a temporary name in the same directory, `fsync` it,
//! `rename(2)` it over the final name, then `fsync` the directory so the rename
//! itself is durable. A reader therefore sees the old file or the new one,
//! never half of one. Files rebuilt before every use skip the two `fsync`s
//! ([`replace_file`]): still never torn, but a crash may lose them. Mutations
//! are serialised with `flock(2)` on a lock file, which the kernel releases
//! by itself when the holder dies.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use rustix::fs::{flock, FlockOperation};

/// Write `data` to `path` atomically (temp file, fsync, rename, fsync dir).
pub fn atomic_write(path: &Path, data: &[u8]) -> io::Result<()> {
    let dir = parent_dir(path);
    let tmp = temp_sibling(path);
    let result = (|| {
        let mut file = File::create(&tmp)?;
        file.write_all(data)?;
        file.sync_all()?;
        fs::rename(&tmp, path)?;
        fsync_dir(dir)
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Replace `path` with `data` atomically but without `fsync`: a reader sees
/// the old file or the new one, and a crash may lose the new one. For files
/// rebuilt before every use (a bundle's `config.json`), where two `fsync`s
/// would only add latency to a container's start.
pub fn replace_file(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = temp_sibling(path);
    let result = fs::write(&tmp, data).and_then(|()| fs::rename(&tmp, path));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

/// Serialise `value` as pretty JSON and write it atomically.
pub fn atomic_write_json<T: serde::Serialize>(path: &Path, value: &T) -> io::Result<()> {
    let data = serde_json::to_vec_pretty(value).map_err(io::Error::other)?;
    atomic_write(path, &data)
}

/// `fsync` a directory, making renames and creations inside it durable.
pub fn fsync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

fn parent_dir(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// A unique temporary name next to `path` (same directory, so rename is atomic).
pub fn temp_sibling(path: &Path) -> PathBuf {
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let unique: u64 = rand::random();
    parent_dir(path).join(format!(".{name}.tmp-{}-{unique:016x}", std::process::id()))
}

/// An exclusive or shared `flock` on a lock file, released on drop (or when
/// the process dies, even by SIGKILL).
#[derive(Debug)]
pub struct FileLock {
    _file: File,
    path: PathBuf,
}

impl FileLock {
    /// Block until the exclusive lock on `path` is held (creating the file).
    pub fn exclusive(path: &Path) -> io::Result<FileLock> {
        Self::acquire(path, FlockOperation::LockExclusive)
    }

    /// Block until a shared lock on `path` is held (creating the file).
    pub fn shared(path: &Path) -> io::Result<FileLock> {
        Self::acquire(path, FlockOperation::LockShared)
    }

    fn acquire(path: &Path, op: FlockOperation) -> io::Result<FileLock> {
        if let Some(dir) = path.parent() {
            fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)?;
        flock(file.as_fd(), op)?;
        Ok(FileLock {
            _file: file,
            path: path.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atomic_write_replaces_content_and_leaves_no_temp_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        atomic_write(&path, b"one").unwrap();
        atomic_write(&path, b"two").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"two");
        let names: Vec<_> = fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(names.len(), 1, "only the final file remains");
    }

    #[test]
    fn exclusive_lock_blocks_a_second_holder_until_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("lock");
        let first = FileLock::exclusive(&path).unwrap();
        let other = File::open(&path).unwrap();
        let try_second = flock(other.as_fd(), FlockOperation::NonBlockingLockExclusive);
        assert!(
            try_second.is_err(),
            "second exclusive lock must not be granted"
        );
        drop(first);
        flock(other.as_fd(), FlockOperation::NonBlockingLockExclusive).unwrap();
    }
}
