//! A container's mounts at start: from [`MountSpec`]s to the OCI `mounts`
//! entries the runtime performs.
//!
//! Run by the container's monitor, inside its private mount namespace, after
//! the overlay rootfs is mounted and before the bundle is written:
//! - a bind's missing host directory is created (`-v`) or is an error
//!   (`--mount type=bind`);
//! - a volume is seeded with the image's content on first use (see
//!   [`super::seed`]);
//! - a *read-only* bind is made read-only recursively. A plain
//!   `MS_BIND|MS_REMOUNT|MS_RDONLY` only covers the top mount: a host
//!   directory with other filesystems mounted below it would stay writable
//!   there. So the monitor binds the host path recursively onto a staging
//!   directory (`mount(MS_BIND|MS_REC)`), applies
//!   `mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)` to the whole tree, and
//!   gives the runtime the staging path: a recursive bind of a read-only tree
//!   is read-only all the way down (the runtime's `rbind` copies each mount's
//!   flags). The staging mounts live in the monitor's mount namespace and
//!   vanish with it.
//!
//! The *targets* are not touched here: the runtime resolves each one beneath
//! the rootfs by fd (`openat2(RESOLVE_IN_ROOT)`) and creates it there if
//! missing, so an image's symlink cannot send a mount onto the host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use super::seed;
use super::spec::{MountKind, MountSpec};
use super::{VolumeError, VolumeStore};
use crate::fsutil::FileLock;

/// Where a container's read-only binds are staged: `<state dir>/mounts/<n>`.
pub const STAGING_DIR: &str = "mounts";

/// The OCI mounts for `mounts`, in an order where a mount inside another's
/// target comes after it. `rootfs` is the mounted overlay (for seeding);
/// `state_dir` the container's per-boot directory (for staging).
pub fn prepare(
    store: &VolumeStore,
    mounts: &[MountSpec],
    rootfs: &Path,
    state_dir: &Path,
) -> Result<Vec<Value>, VolumeError> {
    let mut ordered: Vec<&MountSpec> = mounts.iter().collect();
    ordered.sort_by_key(|m| Path::new(&m.target).components().count());
    let mut oci = Vec::new();
    for (n, mount) in ordered.into_iter().enumerate() {
        let entry = match mount.kind {
            MountKind::Bind => bind_entry(mount, &state_dir.join(STAGING_DIR).join(n.to_string()))?,
            MountKind::Volume => volume_entry(store, mount, rootfs)?,
            MountKind::Tmpfs => tmpfs_entry(mount),
        };
        tracing::debug!(target = %mount.target, kind = mount.kind.as_str(), "mount prepared");
        oci.push(entry);
    }
    Ok(oci)
}

fn bind_options(mount: &MountSpec) -> Vec<String> {
    vec![
        "rbind".to_string(),
        if mount.read_only { "ro" } else { "rw" }.to_string(),
        mount
            .propagation
            .clone()
            .unwrap_or_else(|| "rprivate".to_string()),
    ]
}

fn bind_entry(mount: &MountSpec, staging: &Path) -> Result<Value, VolumeError> {
    let source = Path::new(&mount.source);
    match fs::symlink_metadata(source) {
        Ok(_) => {}
        Err(err) if err.kind() == io::ErrorKind::NotFound && mount.create_source => {
            tracing::debug!(path = %source.display(), "creating the missing host directory (-v)");
            fs::create_dir_all(source).map_err(|e| VolumeError::Io {
                path: source.to_path_buf(),
                source: e,
            })?;
        }
        Err(err) if err.kind() == io::ErrorKind::NotFound => {
            return Err(VolumeError::Invalid(format!(
                "invalid mount config for type \"bind\": bind source path does not exist: {}",
                source.display()
            )))
        }
        Err(err) => {
            return Err(VolumeError::Io {
                path: source.to_path_buf(),
                source: err,
            })
        }
    }
    let effective = if mount.read_only {
        stage_read_only(source, staging)?
    } else {
        source.to_path_buf()
    };
    Ok(json!({
        "destination": mount.target,
        "type": "bind",
        "source": effective,
        "options": bind_options(mount),
    }))
}

fn volume_entry(
    store: &VolumeStore,
    mount: &MountSpec,
    rootfs: &Path,
) -> Result<Value, VolumeError> {
    store.get(&mount.source)?;
    let data = store.mountpoint(&mount.source);
    if !mount.no_copy {
        seed_once(&data, rootfs, &mount.target)?;
    }
    Ok(json!({
        "destination": mount.target,
        "type": "bind",
        "source": data,
        "options": bind_options(mount),
    }))
}

/// Copy the image's files into the volume if it is still empty, under the
/// volume's lock (two containers starting at once copy once).
fn seed_once(data: &Path, rootfs: &Path, target: &str) -> Result<(), VolumeError> {
    let io_err = |source| VolumeError::Io {
        path: data.to_path_buf(),
        source,
    };
    let lock_path = data.parent().unwrap_or(data).join("lock");
    let _lock = FileLock::exclusive(&lock_path).map_err(io_err)?;
    if !seed::is_empty_dir(data).map_err(io_err)? {
        return Ok(());
    }
    let copied = seed::seed_from_image(rootfs, target, data).map_err(|e| VolumeError::Io {
        path: PathBuf::from(target),
        source: io::Error::new(
            e.kind(),
            format!("copying the image's content into the volume: {e}"),
        ),
    })?;
    tracing::debug!(target, copied, "volume seeded from the image");
    Ok(())
}

fn tmpfs_entry(mount: &MountSpec) -> Value {
    // docker's defaults for a tmpfs; the user's options come after and win.
    let mut options: Vec<String> = ["nosuid", "nodev", "noexec"].map(String::from).to_vec();
    if mount.read_only {
        options.push("ro".into());
    }
    options.extend(mount.options.iter().cloned());
    json!({
        "destination": mount.target,
        "type": "tmpfs",
        "source": "tmpfs",
        "options": options,
    })
}

/// Bind `source` recursively onto `staging` and make the whole tree
/// read-only; the staging path to bind into the container.
fn stage_read_only(source: &Path, staging: &Path) -> Result<PathBuf, VolumeError> {
    let err = |what: &str, e: io::Error| VolumeError::Io {
        path: staging.to_path_buf(),
        source: io::Error::new(e.kind(), format!("{what}: {e}")),
    };
    if let Some(parent) = staging.parent() {
        fs::create_dir_all(parent).map_err(|e| err("create the staging directory", e))?;
    }
    let _ = nix::mount::umount2(staging, nix::mount::MntFlags::MNT_DETACH);
    if fs::metadata(source).map(|m| m.is_dir()).unwrap_or(false) {
        fs::create_dir_all(staging).map_err(|e| err("create the staging directory", e))?;
    } else {
        fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(staging)
            .map_err(|e| err("create the staging file", e))?;
    }
    nix::mount::mount(
        Some(source),
        staging,
        None::<&str>,
        nix::mount::MsFlags::MS_BIND | nix::mount::MsFlags::MS_REC,
        None::<&str>,
    )
    .map_err(|e| {
        err(
            &format!("bind {} (recursively)", source.display()),
            e.into(),
        )
    })?;
    if let Err(e) = make_tree_read_only(staging) {
        let _ = nix::mount::umount2(staging, nix::mount::MntFlags::MNT_DETACH);
        return Err(err("mount_setattr(AT_RECURSIVE, MOUNT_ATTR_RDONLY)", e));
    }
    tracing::debug!(source = %source.display(), staging = %staging.display(), "read-only bind staged (recursively)");
    Ok(staging.to_path_buf())
}

/// `struct mount_attr` of mount_setattr(2).
#[repr(C)]
struct MountAttr {
    attr_set: u64,
    attr_clr: u64,
    propagation: u64,
    userns_fd: u64,
}

const MOUNT_ATTR_RDONLY: u64 = 0x1;
const AT_RECURSIVE: libc::c_uint = 0x8000;

/// `mount_setattr(path, AT_RECURSIVE, {attr_set: MOUNT_ATTR_RDONLY})`
/// (Linux 5.12): every mount of the tree at `path` becomes read-only.
fn make_tree_read_only(path: &Path) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains a NUL byte"))?;
    let attr = MountAttr {
        attr_set: MOUNT_ATTR_RDONLY,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: the path is a valid NUL-terminated string and `attr` a valid
    // struct mount_attr whose size is passed; the kernel only reads both.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            c_path.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::paths::Roots;
    use crate::volume::spec::{parse_mount_flag, parse_tmpfs_flag, parse_volume_flag};

    /// Run `f` in a thread with a private mount namespace (the monitor's situation).
    fn in_mount_namespace<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> T {
        assert!(
            rustix::process::geteuid().is_root(),
            "mount tests need root"
        );
        std::thread::spawn(move || {
            nix::sched::unshare(
                nix::sched::CloneFlags::CLONE_NEWNS | nix::sched::CloneFlags::CLONE_FS,
            )
            .unwrap();
            nix::mount::mount(
                None::<&str>,
                "/",
                None::<&str>,
                nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
                None::<&str>,
            )
            .unwrap();
            f()
        })
        .join()
        .unwrap_or_else(|p| std::panic::resume_unwind(p))
    }

    #[test]
    fn read_only_binds_are_read_only_below_submounts_too() {
        in_mount_namespace(|| {
            let dir = tempfile::tempdir().unwrap();
            let host = dir.path().join("host");
            fs::create_dir_all(host.join("sub")).unwrap();
            // A filesystem mounted below the bound directory.
            nix::mount::mount(
                Some("tmpfs"),
                &host.join("sub"),
                Some("tmpfs"),
                nix::mount::MsFlags::empty(),
                None::<&str>,
            )
            .unwrap();
            let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
            let store = VolumeStore::open(&roots).unwrap();
            let spec = parse_volume_flag(&format!("{}:/data:ro", host.display())).unwrap();
            let state = dir.path().join("state/c");
            let oci = prepare(&store, &[spec], Path::new("/nonexistent"), &state).unwrap();
            let staged = PathBuf::from(oci[0]["source"].as_str().unwrap());
            assert!(staged.starts_with(&state));
            assert_eq!(oci[0]["options"], json!(["rbind", "ro", "rprivate"]));
            for path in [staged.join("file"), staged.join("sub/file")] {
                let err = fs::write(&path, "x").unwrap_err();
                assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{}", path.display());
            }
            fs::write(host.join("sub/file"), "host side stays writable").unwrap();
            let _ = nix::mount::umount2(&staged, nix::mount::MntFlags::MNT_DETACH);
            let _ = nix::mount::umount2(&host.join("sub"), nix::mount::MntFlags::MNT_DETACH);
        });
    }

    #[test]
    fn missing_bind_sources_follow_docker() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
        let store = VolumeStore::open(&roots).unwrap();
        let missing = dir.path().join("made/by/v");
        let v = parse_volume_flag(&format!("{}:/x", missing.display())).unwrap();
        prepare(&store, &[v], Path::new("/nonexistent"), dir.path()).unwrap();
        assert!(missing.is_dir(), "-v creates the host directory");
        let gone = dir.path().join("not-there");
        let m =
            parse_mount_flag(&format!("type=bind,source={},target=/x", gone.display())).unwrap();
        let err = prepare(&store, &[m], Path::new("/nonexistent"), dir.path()).unwrap_err();
        assert!(
            err.to_string().contains("bind source path does not exist"),
            "{err}"
        );
        assert!(!gone.exists(), "--mount creates nothing");
    }

    #[test]
    fn volumes_are_seeded_once_and_mounts_ordered_parent_first() {
        let dir = tempfile::tempdir().unwrap();
        let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
        let store = VolumeStore::open(&roots).unwrap();
        let rootfs = dir.path().join("rootfs");
        fs::create_dir_all(rootfs.join("srv/www")).unwrap();
        fs::write(rootfs.join("srv/www/index.html"), "from the image").unwrap();
        let mut mounts = vec![
            parse_tmpfs_flag("/srv/www/tmp:size=1m").unwrap(),
            parse_volume_flag("site:/srv/www").unwrap(),
        ];
        store.provide(&mut mounts).unwrap();
        let oci = prepare(&store, &mounts, &rootfs, dir.path()).unwrap();
        assert_eq!(oci[0]["destination"], "/srv/www", "the parent first");
        assert_eq!(
            oci[1]["options"],
            json!(["nosuid", "nodev", "noexec", "size=1m"])
        );
        let data = store.mountpoint("site");
        assert_eq!(
            fs::read_to_string(data.join("index.html")).unwrap(),
            "from the image"
        );
        fs::write(data.join("index.html"), "changed by a container").unwrap();
        prepare(&store, &mounts, &rootfs, dir.path()).unwrap();
        assert_eq!(
            fs::read_to_string(data.join("index.html")).unwrap(),
            "changed by a container",
            "seeded only when empty"
        );
    }
}
