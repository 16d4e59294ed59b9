//! What the runtime remembers about a container between commands.
//!
//! Mechanism: one directory per container under the state root (like runc's
//! `--root`): `<root>/<id>/state.json` (written to a temporary name, fsynced
//! and renamed), `<root>/<id>/exec.fifo` while the container is created but
//! not started, and `flock(2)` on the directory so that two commands on the
//! same container do not interleave.
//!
//! The status is never stored, it is observed: the init's `/proc/PID/stat`
//! start time must match the one recorded at create (a reused pid is a
//! different process: the container is stopped), a zombie is stopped, the
//! fifo means created, the recorded pause means paused, else running.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::Spec;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";
/// The OCI runtime spec version this runtime implements.
pub const OCI_VERSION: &str = "1.2.0";

/// The container's lifecycle status (the spec's four plus runc's `paused`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        })
    }
}

/// state.json.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Record {
    pub id: String,
    /// Host pid of the init process; 0 while creating.
    pub pid: i32,
    /// Start time of the init (clock ticks since boot, /proc/PID/stat field
    /// 22): with the pid, identifies the process even if the pid is reused.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: chrono::DateTime<chrono::Utc>,
    pub paused: bool,
    /// config.json as it was at create (the bundle may change or vanish).
    pub config: Spec,
}

/// The OCI state of a container, with the extras runc also reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ContainerState {
    pub oci_version: String,
    pub id: String,
    pub status: Status,
    /// 0 when stopped (as runc reports).
    pub pid: i32,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    pub created: chrono::DateTime<chrono::Utc>,
    pub owner: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    /// The init's start time in clock ticks after boot (PID reuse check).
    pub init_start_time: u64,
}

impl ContainerState {
    /// The spec's state object, as hooks receive it on stdin.
    pub fn hook_json(&self) -> String {
        let mut value = serde_json::json!({
            "ociVersion": self.oci_version,
            "id": self.id,
            "status": self.status,
            "bundle": self.bundle,
        });
        if self.pid > 0 {
            value["pid"] = self.pid.into();
        }
        if !self.annotations.is_empty() {
            value["annotations"] = serde_json::to_value(&self.annotations).unwrap_or_default();
        }
        value.to_string()
    }
}

/// Check a container id: one path component of safe characters, so it can
/// name a directory and never climb out of the state root.
pub fn validate_id(id: &str) -> Result<()> {
    let bad = |why| Error::InvalidId {
        id: id.to_string(),
        why,
    };
    if id.is_empty() {
        return Err(bad("it is empty"));
    }
    if id.len() > 1024 {
        return Err(bad("it is longer than 1024 characters"));
    }
    if id == "." || id == ".." {
        return Err(bad("it names a directory"));
    }
    if !id
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+'))
    {
        return Err(bad("use only letters, digits and _ - . +"));
    }
    Ok(())
}

/// The directory of one container, locked for the lifetime of this value.
#[derive(Debug)]
pub struct StateDir {
    pub path: PathBuf,
    pub id: String,
    lock: OwnedFd,
}

impl StateDir {
    /// Make the directory for a new container; fails if the id is taken.
    pub fn create(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o711)
            .create(root)
            .map_err(|e| Error::io(format!("create state root {}", root.display()), e))?;
        let path = root.join(id);
        match fs::DirBuilder::new().mode(0o711).create(&path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Err(Error::AlreadyExists(id.to_string()))
            }
            Err(e) => return Err(Error::io(format!("create {}", path.display()), e)),
        }
        let lock = lock_dir(&path)?;
        Ok(StateDir {
            path,
            id: id.to_string(),
            lock,
        })
    }

    /// The fd holding the directory's lock (a process cloned from the
    /// holder must close its copy, or it keeps the lock: see `create`).
    pub fn lock_fd(&self) -> std::os::fd::RawFd {
        std::os::fd::AsRawFd::as_raw_fd(&self.lock)
    }

    /// Open and lock an existing container's directory.
    pub fn open(root: &Path, id: &str) -> Result<StateDir> {
        validate_id(id)?;
        let path = root.join(id);
        let lock = match lock_dir(&path) {
            Ok(lock) => lock,
            Err(Error::Syscall {
                errno: nix::errno::Errno::ENOENT,
                ..
            }) => return Err(Error::NotFound(id.to_string())),
            Err(e) => return Err(e),
        };
        // Deleted while we waited for the lock?
        if !path.join(STATE_FILE).exists() {
            return Err(Error::NotFound(id.to_string()));
        }
        Ok(StateDir {
            path,
            id: id.to_string(),
            lock,
        })
    }

    pub fn fifo_path(&self) -> PathBuf {
        self.path.join(EXEC_FIFO)
    }

    pub fn read(&self) -> Result<Record> {
        let file = self.path.join(STATE_FILE);
        let text = fs::read(&file).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => Error::NotFound(self.id.clone()),
            _ => Error::io(format!("read {}", file.display()), e),
        })?;
        serde_json::from_slice(&text).map_err(|e| Error::InvalidConfig {
            file,
            message: format!("corrupt state: {e}"),
        })
    }

    pub fn write(&self, record: &Record) -> Result<()> {
        let json =
            serde_json::to_vec(record).map_err(|e| Error::step("encode state", e.to_string()))?;
        write_atomically(&self.path.join(STATE_FILE), &json)
    }

    /// Remove the directory and everything in it.
    pub fn remove(self) -> Result<()> {
        match fs::remove_dir_all(&self.path) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io(format!("remove {}", self.path.display()), e)),
        }
    }
}

impl Drop for StateDir {
    fn drop(&mut self) {
        // Unlock explicitly: a child cloned while we held the lock shares
        // the open file description (and so the flock) until it execs.
        let _ = rustix::fs::flock(&self.lock, rustix::fs::FlockOperation::Unlock);
    }
}

fn lock_dir(path: &Path) -> Result<OwnedFd> {
    let dir = rustix::fs::open(
        path,
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| {
        Error::sys(
            format!("open {}", path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })?;
    rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive).map_err(|e| {
        Error::sys(
            format!("lock {}", path.display()),
            nix::errno::Errno::from_raw(e.raw_os_error()),
        )
    })?;
    Ok(dir)
}

/// Write `bytes` to `path` through a temporary file, fsync and rename, so a
/// reader sees the old or the new content, never half of one.
pub fn write_atomically(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let step = format!("write {}", path.display());
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o644)
        .open(&tmp)
        .map_err(|e| Error::io(&step, e))?;
    file.write_all(bytes).map_err(|e| Error::io(&step, e))?;
    file.sync_all().map_err(|e| Error::io(&step, e))?;
    fs::rename(&tmp, path).map_err(|e| {
        let _ = fs::remove_file(&tmp);
        Error::io(&step, e)
    })
}

/// What /proc/PID/stat says about a process: its state letter and start time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

/// Read /proc/PID/stat; `None` when there is no such process.
pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    parse_proc_stat(&text)
}

/// Parse the fields after the command name (which may contain spaces and
/// parentheses, so split at the *last* ')').
pub fn parse_proc_stat(text: &str) -> Option<ProcStat> {
    let after = &text[text.rfind(')')? + 1..];
    let fields: Vec<&str> = after.split_whitespace().collect();
    Some(ProcStat {
        state: fields.first()?.chars().next()?,
        // Field 22 of the line is the 20th after the command (state is 3rd).
        start_time: fields.get(19)?.parse().ok()?,
    })
}

impl Record {
    /// Is the recorded init process still the one alive?
    pub fn init_alive(&self) -> bool {
        if self.pid <= 0 {
            return false;
        }
        match proc_stat(self.pid) {
            Some(stat) => {
                stat.start_time == self.init_start_time && !matches!(stat.state, 'Z' | 'X')
            }
            None => false,
        }
    }

    pub fn status(&self, dir: &Path) -> Status {
        if self.pid <= 0 {
            return Status::Creating;
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        if dir.join(EXEC_FIFO).exists() {
            return Status::Created;
        }
        if self.paused {
            return Status::Paused;
        }
        Status::Running
    }

    pub fn state(&self, dir: &Path) -> ContainerState {
        let status = self.status(dir);
        ContainerState {
            oci_version: OCI_VERSION.to_string(),
            id: self.id.clone(),
            status,
            pid: if status == Status::Stopped {
                0
            } else {
                self.pid
            },
            bundle: self.bundle.clone(),
            rootfs: self.rootfs.clone(),
            created: self.created,
            owner: String::new(),
            annotations: self
                .config
                .annotations()
                .clone()
                .unwrap_or_default()
                .into_iter()
                .collect(),
            init_start_time: self.init_start_time,
        }
    }
}

/// The ids under a state root (directories holding a state.json).
pub fn list_ids(root: &Path) -> Result<Vec<String>> {
    let entries = match fs::read_dir(root) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io(format!("read {}", root.display()), e)),
    };
    let mut ids: Vec<String> = entries
        .flatten()
        .filter(|e| e.path().join(STATE_FILE).exists())
        .filter_map(|e| e.file_name().to_str().map(str::to_string))
        .collect();
    ids.sort();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_single_safe_names() {
        assert!(validate_id("abc-123_x.y+z").is_ok());
        for bad in ["", ".", "..", "a/b", "a b", "../x"] {
            assert!(validate_id(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn proc_stat_survives_odd_command_names() {
        let line =
            "1234 (a) b (c)) S 1 1234 1234 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 987654 1000 10";
        let stat = parse_proc_stat(line).unwrap();
        assert_eq!(stat.state, 'S');
        assert_eq!(stat.start_time, 987654);
        let me = proc_stat(std::process::id() as i32).unwrap();
        assert!(me.start_time > 0);
        assert!(proc_stat(i32::MAX).is_none(), "no such process");
    }

    #[test]
    fn a_second_create_of_the_same_id_fails_and_open_of_a_missing_one_says_does_not_exist() {
        let root = tempfile::tempdir().unwrap();
        let dir = StateDir::create(root.path(), "c1").unwrap();
        drop(dir);
        assert!(matches!(
            StateDir::create(root.path(), "c1"),
            Err(Error::AlreadyExists(_))
        ));
        let err = StateDir::open(root.path(), "nope").unwrap_err();
        assert_eq!(err.to_string(), "container \"nope\" does not exist");
    }
}
