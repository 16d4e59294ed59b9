//! The OCI bundle of a container: its `config.json` next to the `rootfs`
//! overlay mount, written by the monitor right before each start.
//!
//! This is where the image's USER meets the image's files: the user is
//! resolved by parsing the rootfs's /etc/passwd and /etc/group (never with
//! libc lookups, which would consult the host), and a missing WORKDIR is
//! created inside the rootfs (resolved beneath it by fd, so a symlink in the
//! image cannot send it elsewhere).

use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use berth_runtime::beneath;
use rustix::fs::{Mode, OFlags};

use super::overlay::OverlayDirs;
use super::record::ContainerRecord;
use super::runtime_bridge;
use super::spec::{runtime_spec, StartContext};
use crate::fsutil::replace_file;
use crate::paths::Roots;

/// The cgroup every container of this berth gets, relative to each hierarchy.
pub fn cgroups_path(id: &str) -> String {
    format!("/berth/{id}")
}

/// What the monitor prepared for a start beyond the record: the volume,
/// bind, tmpfs and /etc file mounts, and the network namespace to join.
#[derive(Debug, Default, Clone)]
pub struct Prepared {
    pub mounts: Vec<serde_json::Value>,
    pub netns_path: Option<String>,
}

/// Write `<bundle>/config.json` for the next start of `record`.
pub fn write_bundle(
    _roots: &Roots,
    record: &ContainerRecord,
    dirs: &OverlayDirs,
    bundle: &Path,
    prepared: &Prepared,
) -> Result<(), String> {
    let rootfs = &dirs.merged;
    let (uid, gid, additional_gids, home) =
        runtime_bridge::resolve_user(rootfs, &record.config.user)?;
    create_workdir(rootfs, &record.config.working_dir)?;
    let init = if record.host.init {
        Some(find_init_binary()?)
    } else {
        None
    };
    let ctx = StartContext {
        rootfs,
        uid,
        gid,
        additional_gids,
        home,
        cgroups_path: cgroups_path(&record.id),
        init_binary: init.as_deref(),
        extra_mounts: prepared.mounts.clone(),
        netns_path: prepared.netns_path.clone(),
    };
    let spec = runtime_spec(record, &ctx).map_err(|e| format!("building the OCI spec: {e}"))?;
    let path = bundle.join("config.json");
    // Rebuilt before every start: replaced atomically, but not fsync'ed.
    let json = serde_json::to_vec_pretty(&spec).map_err(|e| format!("{}: {e}", path.display()))?;
    replace_file(&path, &json).map_err(|e| format!("{}: {e}", path.display()))?;
    tracing::debug!(step = "bundle", config = %path.display(), uid, gid,
        "wrote the OCI bundle's {} (process uid {uid}, gid {gid}) for the runtime", path.display());
    Ok(())
}

/// docker creates a missing WORKDIR (owned by root) before the process starts.
fn create_workdir(rootfs: &Path, workdir: &str) -> Result<(), String> {
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| format!("open rootfs {}: {e}", rootfs.display()))?;
    beneath::mkdir_all_beneath(root.as_fd(), Path::new(workdir), Mode::from_raw_mode(0o755))
        .map(drop)
        .map_err(|e| format!("create working directory {workdir}: {e}"))
}

/// berth-init: `$BERTH_INIT`, else next to the running berth binary, else in
/// /usr/libexec/berth. It must be statically linked: it runs inside images
/// that may have no C library at all.
pub fn find_init_binary() -> Result<PathBuf, String> {
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(path) = std::env::var_os("BERTH_INIT") {
        candidates.push(PathBuf::from(path));
    }
    if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
        if let Some(dir) = exe.parent() {
            candidates.push(dir.join("berth-init"));
        }
    }
    candidates.push(PathBuf::from("/usr/libexec/berth/berth-init"));
    candidates.push(PathBuf::from("/usr/local/libexec/berth/berth-init"));
    let found = candidates
        .iter()
        .find(|p| p.is_file())
        .ok_or_else(|| "--init needs berth-init, which was not found next to berth or in /usr/libexec/berth: build it with ./build.sh".to_string())?;
    if is_dynamically_linked(found) {
        return Err(format!(
            "{} is dynamically linked and cannot run inside images without a C library: build it with ./build.sh (static)",
            found.display()
        ));
    }
    Ok(found.clone())
}

/// An ELF file with a PT_INTERP program header needs a dynamic loader.
fn is_dynamically_linked(path: &Path) -> bool {
    let Ok(data) = std::fs::read(path) else {
        return true;
    };
    if data.len() < 64 || &data[..4] != b"\x7fELF" || data[4] != 2 {
        return true;
    }
    let u16_at = |o: usize| u16::from_le_bytes([data[o], data[o + 1]]) as usize;
    let u64_at = |o: usize| u64::from_le_bytes(data[o..o + 8].try_into().unwrap()) as usize;
    let (phoff, phentsize, phnum) = (u64_at(32), u16_at(54), u16_at(56));
    (0..phnum).any(|i| {
        let off = phoff + i * phentsize;
        off + 4 <= data.len() && u32::from_le_bytes(data[off..off + 4].try_into().unwrap()) == 3
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_shell_is_seen_as_dynamically_linked() {
        assert!(is_dynamically_linked(Path::new("/bin/sh")));
        assert!(
            is_dynamically_linked(Path::new("/etc/passwd")),
            "not an ELF file at all"
        );
    }

    #[test]
    fn a_static_binary_is_recognised() {
        // Debian's busybox-static is the static binary every test machine has.
        assert!(!is_dynamically_linked(Path::new("/bin/busybox")));
    }

    #[test]
    fn workdir_is_created_inside_the_rootfs_even_through_a_symlink() {
        let dir = tempfile::tempdir().unwrap();
        let rootfs = dir.path().join("rootfs");
        std::fs::create_dir_all(&rootfs).unwrap();
        std::os::unix::fs::symlink("/", rootfs.join("up")).unwrap();
        create_workdir(&rootfs, "/up/srv/app").unwrap();
        assert!(rootfs.join("srv/app").is_dir());
    }
}
