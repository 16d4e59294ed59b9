//! Reading and writing cgroupfs files, creating and removing cgroup
//! directories, and waiting for the kernel to reach a state.
//!
//! Mechanism: plain open/read/write/mkdir/rmdir on cgroupfs, where every file
//! is one value and one `write(2)` is one request to the kernel (so values are
//! written in a single write, never appended). Waiting uses `poll(2)` with
//! POLLPRI on `cgroup.events` (kernfs wakes pollers when the file changes);
//! v1 files have no such notification and are re-read with a short backoff.
//!
//! Every write is logged at debug level ("wrote 104857600 to
//! .../memory.limit_in_bytes"): that is the learner's view of a container's
//! limits. A refused write becomes [`CgroupError::Write`] naming the file, the
//! value, and what the errno means for that file.

use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::unistd::Pid;

use super::host::MkdirHook;
use super::CgroupError;

/// Write `value` to `dir/file` in one write(2), logging it.
pub(crate) fn write(dir: &Path, file: &str, value: &str) -> Result<(), CgroupError> {
    let path = dir.join(file);
    #[cfg(test)]
    recorder::record(&path, value);
    let result = OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(&path)
        .and_then(|mut f| f.write_all(value.as_bytes()));
    match result {
        Ok(()) => {
            tracing::debug!(step = "cgroup.write", path = %path.display(), value, "wrote {value} to {}", path.display());
            Ok(())
        }
        Err(source) => {
            let hint = hint_for(dir, file, &source);
            Err(CgroupError::Write {
                path,
                value: value.to_string(),
                source,
                hint,
            })
        }
    }
}

/// What a refused write means, for the files where the errno alone is cryptic.
fn hint_for(dir: &Path, file: &str, err: &std::io::Error) -> String {
    let errno = err.raw_os_error().map(Errno::from_raw);
    // "PARENT/FILE = VALUE" for the first of `names` the parent has.
    let parent_value = |names: &[&str]| {
        let parent = dir.parent().unwrap_or(dir);
        names
            .iter()
            .find_map(|name| {
                let value = read(parent, name).ok()?;
                Some(format!("{}/{name} = {:?}", parent.display(), value.trim()))
            })
            .unwrap_or_else(|| format!("see {}", parent.display()))
    };
    let hint = match (file, errno) {
        (_, _) if err.kind() == ErrorKind::NotFound => {
            "no such file: the controller is not enabled for this cgroup, or this kernel lacks the feature".to_string()
        }
        ("memory.limit_in_bytes" | "memory.memsw.limit_in_bytes", Some(Errno::EBUSY)) => {
            "the limit is below the memory the cgroup already uses".to_string()
        }
        ("memory.limit_in_bytes" | "memory.memsw.limit_in_bytes", Some(Errno::EINVAL)) => {
            "memory+swap (memory.memsw.limit_in_bytes) must be at least the memory limit".to_string()
        }
        ("cpuset.cpus" | "cpuset.mems", Some(Errno::EINVAL | Errno::ERANGE | Errno::EACCES | Errno::EPERM)) => {
            // v1 names the parent's usable set cpuset.effective_cpus, v2 cpuset.cpus.effective.
            let names: &[&str] = if file == "cpuset.cpus" {
                &["cpuset.effective_cpus", "cpuset.cpus.effective"]
            } else {
                &["cpuset.effective_mems", "cpuset.mems.effective"]
            };
            format!("it must name existing CPUs/memory nodes within the parent's ({})", parent_value(names))
        }
        ("cpu.rt_runtime_us" | "cpu.rt_period_us", Some(Errno::EINVAL | Errno::EBUSY)) => format!(
            "the parent has no real-time budget to hand out ({}); raise it there first",
            parent_value(&["cpu.rt_runtime_us"])
        ),
        ("cpu.cfs_quota_us" | "cpu.cfs_period_us" | "cpu.max", Some(Errno::EINVAL)) => {
            "quota must be at least 1000 µs and the period between 1000 µs and 1 s".to_string()
        }
        ("cgroup.subtree_control", Some(Errno::EBUSY)) => {
            "this cgroup has processes of its own, and cgroup v2 only enables controllers for cgroups without them (no internal processes rule)".to_string()
        }
        ("devices.allow", Some(Errno::EPERM)) => "a cgroup cannot allow a device its parent denies".to_string(),
        ("cgroup.procs", Some(Errno::ESRCH)) => "no such process".to_string(),
        (_, Some(Errno::EINVAL)) => "the kernel rejected the value".to_string(),
        _ => return String::new(),
    };
    format!("; {hint}")
}

/// The contents of `dir/file`.
pub(crate) fn read(dir: &Path, file: &str) -> Result<String, CgroupError> {
    let path = dir.join(file);
    std::fs::read_to_string(&path).map_err(|source| CgroupError::Io {
        op: "read",
        path,
        source,
    })
}

/// The contents of `dir/file`, or `None` when the file does not exist.
pub(crate) fn read_optional(dir: &Path, file: &str) -> Result<Option<String>, CgroupError> {
    match std::fs::read_to_string(dir.join(file)) {
        Ok(text) => Ok(Some(text)),
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
        Err(source) => Err(CgroupError::Io {
            op: "read",
            path: dir.join(file),
            source,
        }),
    }
}

pub(crate) fn exists(dir: &Path, file: &str) -> bool {
    dir.join(file).exists()
}

/// A number file (`pids.current`); `None` when missing, "max" or not a number.
pub(crate) fn read_number(dir: &Path, file: &str) -> Option<u64> {
    read_optional(dir, file).ok().flatten()?.trim().parse().ok()
}

/// The value of `key` in a flat keyed file (`cgroup.events`, `memory.events`,
/// `cpu.stat`, `memory.oom_control`): lines of `key value`.
pub(crate) fn keyed_value(text: &str, key: &str) -> Option<u64> {
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(' ')?;
        (k == key).then(|| v.trim().parse().ok()).flatten()
    })
}

/// Create `mount/relative` one component at a time. Existing ancestors are
/// fine; the last component must be new (see [`CgroupError::Exists`]).
/// Returns the directories this call created, top-down, so the caller can
/// remove exactly those. On error, whatever it created is removed again.
pub(crate) fn create_dirs(
    mount: &Path,
    relative: &Path,
    hook: &MkdirHook,
) -> Result<Vec<PathBuf>, CgroupError> {
    // A concurrent destroy of a sibling container may rmdir a shared parent
    // between our checks; ENOENT on the next level means "walk again".
    const ATTEMPTS: usize = 3;
    let mut attempt = 0;
    loop {
        attempt += 1;
        let mut created = Vec::new();
        match create_dirs_once(mount, relative, hook, &mut created) {
            Ok(()) => return Ok(created),
            Err(err) => {
                remove_created(&created);
                let raced = matches!(&err, CgroupError::Io { source, .. } if source.kind() == ErrorKind::NotFound);
                if !raced || attempt == ATTEMPTS {
                    return Err(err);
                }
            }
        }
    }
}

fn create_dirs_once(
    mount: &Path,
    relative: &Path,
    hook: &MkdirHook,
    created: &mut Vec<PathBuf>,
) -> Result<(), CgroupError> {
    let components: Vec<_> = relative.components().collect();
    let mut dir = mount.to_path_buf();
    for (index, component) in components.iter().enumerate() {
        dir.push(component);
        let is_leaf = index + 1 == components.len();
        match std::fs::create_dir(&dir) {
            Ok(()) => {
                tracing::debug!(step = "cgroup.mkdir", path = %dir.display(), "created cgroup {}", dir.display());
                hook.after_mkdir(&dir);
                created.push(dir.clone());
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists && !is_leaf => {}
            Err(e) if e.kind() == ErrorKind::AlreadyExists => {
                return Err(CgroupError::Exists { path: dir })
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "mkdir",
                    path: dir,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// rmdir the given directories in reverse order (deepest first), ignoring
/// those already gone or still in use by someone else.
pub(crate) fn remove_created(created: &[PathBuf]) {
    for dir in created.iter().rev() {
        match rmdir(dir) {
            Ok(_) => {}
            Err(err) => {
                tracing::debug!(path = %dir.display(), %err, "left cgroup {} in place", dir.display())
            }
        }
    }
}

/// What an rmdir did.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Removed {
    Now,
    AlreadyGone,
}

/// rmdir one cgroup (ENOENT counts as done).
pub(crate) fn rmdir(dir: &Path) -> Result<Removed, std::io::Error> {
    match std::fs::remove_dir(dir) {
        Ok(()) => {
            tracing::debug!(path = %dir.display(), "removed cgroup {}", dir.display());
            Ok(Removed::Now)
        }
        Err(e) if e.kind() == ErrorKind::NotFound => Ok(Removed::AlreadyGone),
        Err(e) => Err(e),
    }
}

/// Every cgroup directory at and below `leaf`, deepest first (a container
/// with a writable cgroupfs may have made sub-cgroups of its own).
pub(crate) fn subtree_deepest_first(leaf: &Path) -> Vec<PathBuf> {
    let mut ordered = Vec::new();
    collect_dirs(leaf, &mut ordered);
    ordered
}

fn collect_dirs(dir: &Path, out: &mut Vec<PathBuf>) {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                collect_dirs(&entry.path(), out);
            }
        }
    }
    out.push(dir.to_path_buf());
}

/// Remove `leaf` and its sub-cgroups. On EBUSY, waits until `deadline` for
/// the kernel to finish taking exiting processes out: `wait_empty(dir,
/// time_left)` says whether the cgroup emptied in time.
pub(crate) fn remove_tree(
    leaf: &Path,
    deadline: Instant,
    mut wait_empty: impl FnMut(&Path, Duration) -> bool,
) -> Result<(), CgroupError> {
    for dir in subtree_deepest_first(leaf) {
        match rmdir(&dir) {
            Ok(_) => continue,
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {}
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "rmdir",
                    path: dir,
                    source,
                })
            }
        }
        // EBUSY: processes (or their exit) are still in there.
        if !wait_empty(&dir, deadline.saturating_duration_since(Instant::now())) {
            return Err(CgroupError::Busy { path: dir });
        }
        match rmdir(&dir) {
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(CgroupError::Busy { path: dir })
            }
            Err(source) => {
                return Err(CgroupError::Io {
                    op: "rmdir",
                    path: dir,
                    source,
                })
            }
        }
    }
    Ok(())
}

/// The pids in `dir/cgroup.procs`, and in every sub-cgroup below `dir`.
pub(crate) fn read_pids_recursive(dir: &Path) -> Result<Vec<Pid>, CgroupError> {
    let mut pids = Vec::new();
    for sub in subtree_deepest_first(dir) {
        match read_optional(&sub, "cgroup.procs")? {
            Some(text) => pids.extend(
                text.lines()
                    .filter_map(|l| l.trim().parse().ok())
                    .map(Pid::from_raw),
            ),
            None if sub == dir => {
                return Err(CgroupError::Io {
                    op: "read",
                    path: dir.join("cgroup.procs"),
                    source: ErrorKind::NotFound.into(),
                })
            }
            None => {}
        }
    }
    Ok(pids)
}

/// Call `check` until it says yes or `timeout` passes, re-reading with a
/// short backoff (for v1 files, which have no change notification).
pub(crate) fn poll_until(
    timeout: Duration,
    mut check: impl FnMut() -> Result<bool, CgroupError>,
) -> Result<bool, CgroupError> {
    let deadline = Instant::now() + timeout;
    let mut pause = Duration::from_micros(500);
    loop {
        if check()? {
            return Ok(true);
        }
        if Instant::now() >= deadline {
            return Ok(false);
        }
        std::thread::sleep(pause);
        pause = (pause * 2).min(Duration::from_millis(20));
    }
}

/// Wait until `dir/cgroup.events` shows `key value` (e.g. `frozen 1`,
/// `populated 0`), sleeping in poll(2) between changes. Returns whether it
/// happened within `timeout`.
pub(crate) fn wait_for_event(
    dir: &Path,
    key: &str,
    value: u64,
    timeout: Duration,
) -> Result<bool, CgroupError> {
    let path = dir.join("cgroup.events");
    let io_err = |op, source| CgroupError::Io {
        op,
        path: path.clone(),
        source,
    };
    let file = File::open(&path).map_err(|e| io_err("open", e))?;
    let deadline = Instant::now() + timeout;
    let mut buf = [0u8; 256];
    loop {
        // Reading re-arms kernfs' notification for this open file.
        let n = file.read_at(&mut buf, 0).map_err(|e| io_err("read", e))?;
        let text = String::from_utf8_lossy(&buf[..n]);
        if keyed_value(&text, key) == Some(value) {
            return Ok(true);
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Ok(false);
        }
        let mut fds = [PollFd::new(file.as_fd(), PollFlags::POLLPRI)];
        let wait_ms = u16::try_from(left.as_millis().max(1)).unwrap_or(u16::MAX);
        match poll(&mut fds, PollTimeout::from(wait_ms)) {
            Ok(_) | Err(Errno::EINTR) => {}
            Err(errno) => return Err(io_err("poll", errno.into())),
        }
    }
}

/// Records every write in tests, in order, per thread: the unit tests assert
/// on the sequence of writes (devices rules, swap ordering), which a plain
/// temporary directory cannot show.
#[cfg(test)]
pub(crate) mod recorder {
    use std::cell::RefCell;
    use std::path::{Path, PathBuf};

    thread_local! {
        static WRITES: RefCell<Vec<(PathBuf, String)>> = const { RefCell::new(Vec::new()) };
    }

    pub(crate) fn record(path: &Path, value: &str) {
        WRITES.with(|w| w.borrow_mut().push((path.to_path_buf(), value.to_string())));
    }

    /// The writes since the last call: (path, value).
    pub(crate) fn take() -> Vec<(PathBuf, String)> {
        WRITES.with(|w| std::mem::take(&mut *w.borrow_mut()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_logs_value_and_refusal_names_file_and_value() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pids.max"), "max").unwrap();
        write(dir.path(), "pids.max", "42").unwrap();
        assert_eq!(read(dir.path(), "pids.max").unwrap(), "42");

        let err = write(dir.path(), "memory.max", "1").unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("memory.max")
                && text.contains("\"1\"")
                && text.contains("controller is not enabled"),
            "{text}"
        );
    }

    #[test]
    fn keyed_files_are_parsed_by_key() {
        let events = "populated 1\nfrozen 0\n";
        assert_eq!(keyed_value(events, "populated"), Some(1));
        assert_eq!(keyed_value(events, "frozen"), Some(0));
        assert_eq!(keyed_value(events, "froze"), None);
    }

    #[test]
    fn create_dirs_reports_only_what_it_created_and_refuses_existing_leaf() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir(root.path().join("berth")).unwrap();
        let created =
            create_dirs(root.path(), Path::new("berth/a/b"), &MkdirHook::default()).unwrap();
        assert_eq!(
            created,
            vec![root.path().join("berth/a"), root.path().join("berth/a/b")]
        );

        let err =
            create_dirs(root.path(), Path::new("berth/a/b"), &MkdirHook::default()).unwrap_err();
        assert!(matches!(err, CgroupError::Exists { .. }), "{err}");

        remove_created(&created);
        assert!(
            root.path().join("berth").exists(),
            "a parent we did not create stays"
        );
        assert!(!root.path().join("berth/a").exists());
    }

    #[test]
    fn subtree_is_listed_deepest_first() {
        let root = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(root.path().join("leaf/x/y")).unwrap();
        let order = subtree_deepest_first(&root.path().join("leaf"));
        assert_eq!(
            order,
            vec![
                root.path().join("leaf/x/y"),
                root.path().join("leaf/x"),
                root.path().join("leaf")
            ]
        );
    }
}
