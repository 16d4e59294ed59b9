//! The container's root filesystem: an overlayfs mount.
//!
//! Mechanism: `mount(2)` of type `overlay` with
//! `lowerdir=<top layer>:...:<bottom layer>,upperdir=<upper>,workdir=<work>`.
//! The image's layer directories are read-only lower layers shared by every
//! container of the image; everything the container writes lands in its own
//! `upper` directory (a deleted lower file becomes a whiteout there), which is
//! kept until `rm`, so `start` after `stop` finds what the container wrote.
//!
//! The mount is made inside the monitor's private mount namespace (see
//! monitor.rs), so it disappears by itself when the monitor and the
//! container are gone: a crash can never leave it behind on the host.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

/// The directories of one container's overlay, inside its container directory.
#[derive(Debug, Clone)]
pub struct OverlayDirs {
    pub upper: PathBuf,
    pub work: PathBuf,
    /// Where the merged view is mounted: the bundle's rootfs.
    pub merged: PathBuf,
    /// An empty lower layer for images without any layer.
    pub empty: PathBuf,
}

impl OverlayDirs {
    pub fn new(container_dir: &Path) -> OverlayDirs {
        OverlayDirs {
            upper: container_dir.join("upper"),
            work: container_dir.join("work"),
            merged: container_dir.join("rootfs"),
            empty: container_dir.join("empty"),
        }
    }

    /// Make the directories (idempotent: a restart reuses them).
    pub fn create(&self) -> io::Result<()> {
        for dir in [&self.upper, &self.work, &self.merged, &self.empty] {
            fs::create_dir_all(dir)?;
        }
        Ok(())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum OverlayError {
    #[error("overlay mount options for {layers} layers are {len} bytes, more than the kernel's one-page limit; flatten the image")]
    TooManyLayers { layers: usize, len: usize },
    #[error("layer path {0} contains ':' or ',' which overlayfs options cannot carry")]
    BadPath(PathBuf),
    #[error("mount overlay on {target}: {source}{hint}")]
    Mount {
        target: PathBuf,
        #[source]
        source: nix::Error,
        /// What to do, for the failures a newcomer meets (see [`mount_hint`]).
        hint: String,
    },
}

/// The overlay option string; `layers` are given lowest first, as images list
/// them, while overlayfs wants the top-most lower layer first.
pub fn mount_options(layers: &[PathBuf], dirs: &OverlayDirs) -> Result<String, OverlayError> {
    let mut lowers: Vec<&Path> = layers.iter().rev().map(PathBuf::as_path).collect();
    if lowers.is_empty() {
        lowers.push(&dirs.empty);
    }
    for path in lowers
        .iter()
        .copied()
        .chain([dirs.upper.as_path(), dirs.work.as_path()])
    {
        let text = path.to_string_lossy();
        if text.contains(':') || text.contains(',') {
            return Err(OverlayError::BadPath(path.to_path_buf()));
        }
    }
    let lower = lowers
        .iter()
        .map(|p| p.to_string_lossy())
        .collect::<Vec<_>>()
        .join(":");
    let options = format!(
        "lowerdir={lower},upperdir={},workdir={}",
        dirs.upper.display(),
        dirs.work.display()
    );
    // The kernel copies mount data into a single page.
    if options.len() >= 4096 {
        return Err(OverlayError::TooManyLayers {
            layers: layers.len(),
            len: options.len(),
        });
    }
    Ok(options)
}

/// Mount the overlay at `dirs.merged`.
pub fn mount_overlay(layers: &[PathBuf], dirs: &OverlayDirs) -> Result<(), OverlayError> {
    let options = mount_options(layers, dirs)?;
    tracing::debug!(step = "overlay", target = %dirs.merged.display(), %options,
        "mount(\"overlay\", {}, \"overlay\", 0, \"{options}\")", dirs.merged.display());
    mount(
        Some("overlay"),
        &dirs.merged,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .map_err(|source| OverlayError::Mount {
        target: dirs.merged.clone(),
        source,
        hint: mount_hint(source, &dirs.upper),
    })
}

/// Why an overlay mount fails on a newcomer's machine, and what to do.
fn mount_hint(errno: nix::Error, upper: &Path) -> String {
    const OVERLAYFS_SUPER_MAGIC: i64 = 0x794c_7630;
    match errno {
        nix::Error::ENODEV => {
            ": this kernel has no overlayfs; load it with `modprobe overlay` (kernel option CONFIG_OVERLAY_FS)".into()
        }
        nix::Error::EPERM => ": mounting needs root (CAP_SYS_ADMIN); run berth with sudo".into(),
        nix::Error::EINVAL => {
            let on_overlay = nix::sys::statfs::statfs(upper)
                .is_ok_and(|s| s.filesystem_type().0 == OVERLAYFS_SUPER_MAGIC);
            let why = if on_overlay {
                "is itself on overlayfs (are you inside a container?), which cannot hold an overlay's upper directory"
            } else {
                "cannot hold an overlay's upper directory (it needs d_type and extended attributes)"
            };
            format!(
                ": the filesystem of {} {why}; put berth's --root (or BERTH_ROOT) on ext4, xfs or btrfs, e.g. a volume mounted from the host",
                upper.display()
            )
        }
        _ => String::new(),
    }
}

/// Detach the overlay (lazily: the container may still hold it).
pub fn unmount_overlay(dirs: &OverlayDirs) {
    if let Err(err) = umount2(&dirs.merged, MntFlags::MNT_DETACH) {
        if err != nix::Error::EINVAL && err != nix::Error::ENOENT {
            tracing::warn!(target = %dirs.merged.display(), %err, "unmount overlay");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_list_the_top_layer_first() {
        let dirs = OverlayDirs::new(Path::new("/c/1"));
        let layers = vec![PathBuf::from("/l/base"), PathBuf::from("/l/top")];
        assert_eq!(
            mount_options(&layers, &dirs).unwrap(),
            "lowerdir=/l/top:/l/base,upperdir=/c/1/upper,workdir=/c/1/work"
        );
    }

    #[test]
    fn an_image_without_layers_gets_an_empty_lower() {
        let dirs = OverlayDirs::new(Path::new("/c/1"));
        assert!(mount_options(&[], &dirs)
            .unwrap()
            .starts_with("lowerdir=/c/1/empty,"));
    }

    #[test]
    fn separators_in_paths_and_huge_option_strings_are_refused() {
        let dirs = OverlayDirs::new(Path::new("/c/1"));
        assert!(matches!(
            mount_options(&[PathBuf::from("/l/a:b")], &dirs),
            Err(OverlayError::BadPath(_))
        ));
        let many: Vec<PathBuf> = (0..200)
            .map(|i| PathBuf::from(format!("/var/lib/berth/images/layers/{i:064}")))
            .collect();
        assert!(matches!(
            mount_options(&many, &dirs),
            Err(OverlayError::TooManyLayers { .. })
        ));
    }
}
