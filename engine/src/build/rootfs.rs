//! The root filesystem of one build step, and the layer it leaves.
//!
//! Mechanism: the build process first leaves the host's mount namespace
//! (`unshare(CLONE_NEWNS)`, then `/` made `MS_SLAVE` recursively), exactly as
//! a container monitor does: every mount made afterwards exists only in the
//! build's namespace and disappears with the process, even on SIGKILL.
//! A step that changes files mounts an overlay — the image's layer
//! directories as `lowerdir`, a fresh empty `upperdir` — changes the merged
//! view (RUN, COPY, ADD, WORKDIR), unmounts it, and what is left in the
//! upper directory *is* the step's diff: new and changed files, whiteouts
//! (character devices 0/0) for deletions, `trusted.overlay.opaque=y` on
//! directories that replaced a lower one. [`crate::layer::pack`] turns it
//! into a tar with `.wh.` entries, and the store imports it as a gzip blob.
//! `COPY --from` reads another stage through a read-only overlay (lower
//! layers only).

use std::fs::{self, File};
use std::io::{self, Seek};
use std::path::{Path, PathBuf};

use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::container::overlay::{self, OverlayDirs};
use crate::image::{Digest, ImageStore, LayerDescriptor};
use crate::layer::pack::write_layer_tar;

use super::BuildError;

/// Move the calling process into a private mount namespace (once).
pub fn enter_private_mount_namespace() -> Result<(), BuildError> {
    crate::container::monitor::enter_private_mount_namespace().map_err(BuildError::Setup)
}

/// An overlay mounted for one step (unmounted on drop).
pub struct StepMount {
    dirs: OverlayDirs,
    mounted: bool,
}

impl StepMount {
    /// Mount `layers` (lowest first) under a fresh upper directory in `dir`.
    pub fn mount(dir: &Path, layers: &[PathBuf]) -> Result<StepMount, BuildError> {
        let dirs = OverlayDirs::new(dir);
        dirs.create()
            .map_err(|e| BuildError::Setup(format!("creating {}: {e}", dir.display())))?;
        overlay::mount_overlay(layers, &dirs).map_err(|e| BuildError::Setup(e.to_string()))?;
        Ok(StepMount {
            dirs,
            mounted: true,
        })
    }

    /// The merged view: the step's rootfs.
    pub fn rootfs(&self) -> &Path {
        &self.dirs.merged
    }

    /// Unmount; the upper directory stays for [`commit_layer`].
    pub fn unmount(mut self) -> Result<PathBuf, BuildError> {
        self.mounted = false;
        umount2(&self.dirs.merged, MntFlags::empty())
            .or_else(|_| umount2(&self.dirs.merged, MntFlags::MNT_DETACH))
            .map_err(|e| {
                BuildError::Setup(format!("unmounting {}: {e}", self.dirs.merged.display()))
            })?;
        Ok(self.dirs.upper.clone())
    }
}

impl Drop for StepMount {
    fn drop(&mut self) {
        if self.mounted {
            overlay::unmount_overlay(&self.dirs);
        }
    }
}

/// A read-only view of a stage's layers (for `COPY --from`).
pub struct ReadOnlyMount {
    target: PathBuf,
}

impl ReadOnlyMount {
    pub fn mount(dir: &Path, layers: &[PathBuf]) -> Result<ReadOnlyMount, BuildError> {
        let empty = dir.join("empty");
        let target = dir.join("merged");
        for d in [&empty, &target] {
            fs::create_dir_all(d)
                .map_err(|e| BuildError::Setup(format!("creating {}: {e}", d.display())))?;
        }
        // overlayfs needs two lower layers when there is no upper: the empty
        // directory is always the bottom one.
        let mut lowers: Vec<String> = layers
            .iter()
            .rev()
            .map(|p| p.display().to_string())
            .collect();
        lowers.push(empty.display().to_string());
        let options = format!("lowerdir={}", lowers.join(":"));
        tracing::debug!(target = %target.display(), %options, "mount read-only overlay");
        mount(
            Some("overlay"),
            &target,
            Some("overlay"),
            MsFlags::MS_RDONLY,
            Some(options.as_str()),
        )
        .map_err(|e| BuildError::Setup(format!("mount overlay on {}: {e}", target.display())))?;
        Ok(ReadOnlyMount { target })
    }

    pub fn path(&self) -> &Path {
        &self.target
    }
}

impl Drop for ReadOnlyMount {
    fn drop(&mut self) {
        let _ = umount2(&self.target, MntFlags::MNT_DETACH);
    }
}

/// True when the upper directory holds no change at all.
pub fn is_empty_dir(dir: &Path) -> Result<bool, BuildError> {
    let mut entries = fs::read_dir(dir)
        .map_err(|e| BuildError::Setup(format!("reading {}: {e}", dir.display())))?;
    Ok(entries.next().is_none())
}

/// Turn a step's upper directory into a layer in the store, on top of the
/// layers `below` (diff_ids, lowest first). `None` when nothing changed:
/// docker records such a step with `empty_layer` and no layer.
pub fn commit_layer(
    store: &ImageStore,
    upper: &Path,
    scratch: &Path,
    below: &[Digest],
) -> Result<Option<LayerDescriptor>, BuildError> {
    if is_empty_dir(upper)? {
        return Ok(None);
    }
    let tar_path = scratch.join("layer.tar");
    let file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tar_path)
        .map_err(|e| BuildError::Setup(format!("creating {}: {e}", tar_path.display())))?;
    let mut file = write_layer_tar(upper, io::BufWriter::new(file))
        .map_err(|e| BuildError::Setup(format!("packing {}: {e}", upper.display())))?
        .into_inner()
        .map_err(|e| BuildError::Setup(format!("writing {}: {e}", tar_path.display())))?;
    file.rewind()
        .map_err(|e| BuildError::Setup(format!("rewinding {}: {e}", tar_path.display())))?;
    let layer = store.import_layer_tar(io::BufReader::new(file), below)?;
    let _ = fs::remove_file(&tar_path);
    Ok(Some(layer))
}
