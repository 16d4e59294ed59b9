//! Where berth keeps its state.
//!
//! Two directories, both overridable so tests run in isolated temporary roots:
//! - `root` (`--root`, `BERTH_ROOT`, default `/var/lib/berth`): what survives a
//!   reboot: images, layers, containers, volumes;
//! - `state` (`--state`, `BERTH_STATE`, default `/run/berth`): what dies with the
//!   boot: pids, sockets, runtime state.

use std::path::{Path, PathBuf};

pub const DEFAULT_ROOT: &str = "/var/lib/berth";
pub const DEFAULT_STATE: &str = "/run/berth";

/// The two state directories of one berth installation.
#[derive(Debug, Clone)]
pub struct Roots {
    pub root: PathBuf,
    pub state: PathBuf,
}

impl Roots {
    pub fn new(root: impl Into<PathBuf>, state: impl Into<PathBuf>) -> Self {
        Roots {
            root: root.into(),
            state: state.into(),
        }
    }

    /// `<root>/images`: the content-addressed image store.
    pub fn images(&self) -> PathBuf {
        self.root.join("images")
    }

    /// `<root>/containers`: one directory per container record.
    pub fn containers(&self) -> PathBuf {
        self.root.join("containers")
    }

    /// `<root>/volumes`: named and anonymous volumes.
    pub fn volumes(&self) -> PathBuf {
        self.root.join("volumes")
    }

    /// `<root>/tmp`: staging area on the same filesystem as the store, so a
    /// finished item can be renamed into place atomically.
    pub fn tmp(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// `<state>/containers`: per-boot state of running containers (pids, sockets).
    pub fn run_containers(&self) -> PathBuf {
        self.state.join("containers")
    }

    /// `<state>/runtime`: berth-runtime's own state directory (like runc's `--root`).
    pub fn runtime(&self) -> PathBuf {
        self.state.join("runtime")
    }

    pub fn root(&self) -> &Path {
        &self.root
    }
}
