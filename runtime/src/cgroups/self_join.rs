//! A new container process moves *itself* into its cgroup v1 hierarchies.
//!
//! Mechanism: a write to a v1 `cgroup.procs` moves a whole process and takes
//! the kernel's global `cgroup_threadgroup_rwsem` for writing. Taking it
//! from idle waits for an RCU grace period (`rcu_sync_enter` calls
//! `synchronize_rcu`): 6 to 30 ms on an idle host, more than the rest of a
//! container's start. But a thread that writes `0` ("myself") to a v1
//! `tasks` file moves only itself, and recent kernels skip the global lock
//! for that case (it cannot exit or exec under the kernel's hands): about
//! 0.1 ms, measured on Linux 6.18. A process fresh from `clone3` has one
//! thread, so moving that thread moves the process.
//!
//! So the parent opens each hierarchy's `tasks` file before the clone
//! ([`CgroupManager::self_join_files`](super::CgroupManager::self_join_files))
//! and the new process writes `0` to each copy first thing ([`join_self`]),
//! then closes them. The parent still moves it into what the files do not
//! cover ([`CgroupManager::join_remaining`](super::CgroupManager::join_remaining)):
//! the unified hierarchy, unless the process was born there with
//! `clone3(CLONE_INTO_CGROUP)`.
//!
//! A process in a new user namespace cannot do this (it is not root in the
//! namespace that owns cgroupfs); the parent moves it with `cgroup.procs`.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{Mode, OFlags};

use super::CgroupError;

/// One hierarchy's `tasks` file, open for writing.
#[derive(Debug)]
pub struct SelfJoinFile {
    path: PathBuf,
    file: OwnedFd,
}

impl SelfJoinFile {
    /// Open `dir/tasks` for writing (close-on-exec).
    pub(crate) fn open(dir: &Path) -> Result<Self, CgroupError> {
        let path = dir.join("tasks");
        let file = rustix::fs::open(&path, OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())
            .map_err(|errno| CgroupError::Io {
                op: "open",
                path: path.clone(),
                source: errno.into(),
            })?;
        Ok(Self { path, file })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// In the new, single-threaded process: move into each hierarchy by writing
/// `0` to its `tasks` file; the files are closed on return.
pub fn join_self(files: Vec<SelfJoinFile>) -> Result<(), CgroupError> {
    for join in files {
        rustix::io::write(join.file.as_fd(), b"0").map_err(|errno| CgroupError::Write {
            path: join.path.clone(),
            value: "0".into(),
            source: errno.into(),
            hint: String::new(),
        })?;
        tracing::debug!(step = "cgroup.write", path = %join.path.display(), value = "0",
            "wrote 0 to {}: the process moved itself (a thread moving itself skips the kernel's global migration lock)",
            join.path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_zero_to_every_file_and_names_the_one_that_fails() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        for d in [&a, &b] {
            std::fs::create_dir(d).unwrap();
            std::fs::write(d.join("tasks"), "").unwrap();
        }
        let files = vec![
            SelfJoinFile::open(&a).unwrap(),
            SelfJoinFile::open(&b).unwrap(),
        ];
        join_self(files).unwrap();
        assert_eq!(std::fs::read_to_string(a.join("tasks")).unwrap(), "0");
        assert_eq!(std::fs::read_to_string(b.join("tasks")).unwrap(), "0");

        let missing = SelfJoinFile::open(&dir.path().join("gone")).unwrap_err();
        assert!(missing.to_string().contains("gone/tasks"), "{missing}");
    }
}
