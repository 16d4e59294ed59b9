//! `berth diff`: what a container changed in its filesystem, read from its
//! overlay's upper directory — the one place every write of the container
//! lands (see [`super::overlay`]).
//!
//! Mechanism: a walk of the upper directory with `lstat(2)` (a symlink is
//! never followed), reading overlayfs' own markers back: a character device
//! 0/0 is a deleted path (a whiteout), the xattr `trusted.overlay.opaque=y`
//! a directory whose lower content was replaced. Whether a path is *added*
//! or *changed* is `lstat` in the image's layers, top down, stopping at a
//! whiteout or an opaque directory as overlayfs does.
//!
//! Not reported, as docker does not report them: the empty files and
//! directories the runtime made as mount points for the container's own
//! mounts (`/etc/hosts`, `/etc/resolv.conf`, `/etc/hostname`, a volume's
//! target, ...), and a directory that overlayfs only copied up to hold such a
//! mount point.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use super::record::ContainerRecord;
use crate::layer::lower::get_xattr;
use crate::layer::unpack::OPAQUE_XATTR;
use crate::paths::Roots;

/// docker's `A`, `C` and `D`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChangeKind {
    Added,
    Changed,
    Deleted,
}

impl ChangeKind {
    pub fn letter(self) -> char {
        match self {
            ChangeKind::Added => 'A',
            ChangeKind::Changed => 'C',
            ChangeKind::Deleted => 'D',
        }
    }
}

/// One changed path, absolute inside the container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub kind: ChangeKind,
    pub path: String,
}

/// The changes of the container `record`: its upper directory over its
/// image's layers, its mount points read from its bundle's config.json
/// (written at each start; a container never started has changed nothing).
pub fn of_container(roots: &Roots, record: &ContainerRecord) -> Result<Vec<Change>, String> {
    let dir = roots.containers().join(&record.id);
    let layers = super::image_layers(roots, &record.image_id)?;
    let mount_points = match fs::read(dir.join("config.json")) {
        Ok(bytes) => mount_destinations(&bytes),
        Err(e) if e.kind() == io::ErrorKind::NotFound => HashSet::new(),
        Err(e) => return Err(format!("{}: {e}", dir.join("config.json").display())),
    };
    let upper = super::overlay::OverlayDirs::new(&dir).upper;
    if !upper.exists() {
        return Ok(Vec::new());
    }
    changes(&upper, &layers, &mount_points).map_err(|e| format!("{}: {e}", upper.display()))
}

/// `mounts[].destination` of an OCI config.
fn mount_destinations(config: &[u8]) -> HashSet<String> {
    let value: serde_json::Value = serde_json::from_slice(config).unwrap_or_default();
    value["mounts"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|m| m["destination"].as_str())
        .map(|d| d.trim_end_matches('/').to_string())
        .collect()
}

/// The changes recorded in `upper` over the image `layers` (lowest first),
/// sorted by path. `mount_points` are the container's mount destinations.
pub fn changes(
    upper: &Path,
    layers: &[PathBuf],
    mount_points: &HashSet<String>,
) -> io::Result<Vec<Change>> {
    let walk = Walk {
        upper,
        layers_top_down: layers.iter().rev().collect(),
        mount_points,
    };
    let mut found = Vec::new();
    walk.dir(Path::new("/"), false, &mut found)?;
    found.sort_by(|a, b| a.path.cmp(&b.path));
    Ok(found)
}

struct Walk<'a> {
    upper: &'a Path,
    layers_top_down: Vec<&'a PathBuf>,
    mount_points: &'a HashSet<String>,
}

impl Walk<'_> {
    /// Report the entries of the upper directory at `dir`; `hidden` when an
    /// opaque directory above hides the image's content here.
    fn dir(&self, dir: &Path, hidden: bool, found: &mut Vec<Change>) -> io::Result<()> {
        let mut names: Vec<_> = fs::read_dir(self.in_upper(dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        names.sort();
        for name in names {
            let path = dir.join(&name);
            let meta = fs::symlink_metadata(self.in_upper(&path))?;
            self.entry(&path, &meta, hidden, found)?;
        }
        Ok(())
    }

    fn entry(
        &self,
        path: &Path,
        meta: &Metadata,
        hidden: bool,
        found: &mut Vec<Change>,
    ) -> io::Result<()> {
        let shown = path.to_string_lossy().into_owned();
        // Looked up once: the lookup is an lstat per layer.
        let image = if hidden { None } else { self.in_image(path) };
        if is_whiteout(meta) {
            found.push(Change {
                kind: ChangeKind::Deleted,
                path: shown,
            });
            return Ok(());
        }
        if self.is_mount_point(&shown, meta)? {
            return Ok(());
        }
        if !meta.is_dir() {
            let kind = if image.is_some() {
                ChangeKind::Changed
            } else {
                ChangeKind::Added
            };
            found.push(Change { kind, path: shown });
            return Ok(());
        }
        let opaque = is_opaque(&self.in_upper(path));
        let before = found.len();
        self.dir(path, hidden || opaque, found)?;
        let kind = if image.is_none() {
            Some(ChangeKind::Added)
        } else if opaque || found.len() > before || metadata_changed(image.as_ref(), meta) {
            Some(ChangeKind::Changed)
        } else {
            None // copied up only to hold a mount point
        };
        if let Some(kind) = kind {
            found.push(Change { kind, path: shown });
        }
        Ok(())
    }

    fn in_upper(&self, path: &Path) -> PathBuf {
        self.upper.join(path.strip_prefix("/").unwrap_or(path))
    }

    /// The path's metadata in the image, as overlayfs resolves it: the
    /// top-most layer that has it, unless a layer above hides it with a
    /// whiteout or an opaque directory.
    fn in_image(&self, path: &Path) -> Option<Metadata> {
        let relative = path.strip_prefix("/").unwrap_or(path);
        for layer in &self.layers_top_down {
            if let Ok(meta) = fs::symlink_metadata(layer.join(relative)) {
                return (!is_whiteout(&meta)).then_some(meta);
            }
            let hides = relative.ancestors().skip(1).any(|a| {
                let here = layer.join(a);
                !a.as_os_str().is_empty()
                    && (fs::symlink_metadata(&here).is_ok_and(|m| is_whiteout(&m))
                        || is_opaque(&here))
            });
            if hides {
                return None;
            }
        }
        None
    }

    /// An empty file or directory at one of the container's mount points:
    /// made by the runtime, not by the container.
    fn is_mount_point(&self, shown: &str, meta: &Metadata) -> io::Result<bool> {
        if !self.mount_points.contains(shown) {
            return Ok(false);
        }
        Ok(if meta.is_dir() {
            fs::read_dir(self.in_upper(Path::new(shown)))?
                .next()
                .is_none()
        } else {
            meta.is_file() && meta.len() == 0
        })
    }
}

/// A directory present in the image and in the upper layer: changed if its
/// owner or mode differ.
fn metadata_changed(image: Option<&Metadata>, upper: &Metadata) -> bool {
    image.is_some_and(|image| {
        (image.mode(), image.uid(), image.gid()) != (upper.mode(), upper.uid(), upper.gid())
    })
}

/// overlayfs' whiteout: a character device 0/0.
fn is_whiteout(meta: &Metadata) -> bool {
    meta.file_type().is_char_device() && meta.rdev() == 0
}

fn is_opaque(dir: &Path) -> bool {
    let Ok(file) = fs::File::open(dir) else {
        return false;
    };
    get_xattr(&file, OsStr::new(OPAQUE_XATTR)).is_ok_and(|v| v == b"y")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lines(changes: &[Change]) -> Vec<String> {
        changes
            .iter()
            .map(|c| format!("{} {}", c.kind.letter(), c.path))
            .collect()
    }

    #[test]
    fn whiteouts_are_deletions_and_an_opaque_directory_hides_the_image() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        let upper = tmp.path().join("upper");
        fs::create_dir_all(layer.join("etc")).unwrap();
        fs::create_dir_all(layer.join("usr/bin")).unwrap();
        fs::write(layer.join("etc/group"), "root\n").unwrap();
        fs::write(layer.join("usr/bin/tool"), "x").unwrap();
        fs::create_dir_all(upper.join("etc")).unwrap();
        fs::create_dir_all(upper.join("usr/bin")).unwrap();
        // What overlayfs writes for `rm /etc/group` and for
        // `rm -rf /usr/bin && mkdir /usr/bin && touch /usr/bin/tool`.
        nix::sys::stat::mknod(
            &upper.join("etc/group"),
            nix::sys::stat::SFlag::S_IFCHR,
            nix::sys::stat::Mode::empty(),
            0,
        )
        .unwrap();
        rustix::fs::setxattr(
            upper.join("usr/bin").as_path(),
            OPAQUE_XATTR,
            b"y",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        fs::write(upper.join("usr/bin/tool"), "new").unwrap();
        let found = changes(&upper, std::slice::from_ref(&layer), &HashSet::new()).unwrap();
        assert_eq!(
            lines(&found),
            [
                "C /etc",
                "D /etc/group",
                "C /usr",
                "C /usr/bin",
                "A /usr/bin/tool"
            ]
        );
        assert_eq!(
            mount_destinations(
                br#"{"mounts": [{"destination": "/etc/hosts"}, {"destination": "/data/"}]}"#
            ),
            ["/etc/hosts".to_string(), "/data".to_string()].into()
        );
    }

    #[test]
    fn added_changed_and_placeholder_entries_are_told_apart() {
        let tmp = tempfile::tempdir().unwrap();
        let layer = tmp.path().join("layer");
        let upper = tmp.path().join("upper");
        for dir in ["etc", "usr/bin"] {
            fs::create_dir_all(layer.join(dir)).unwrap();
        }
        fs::write(layer.join("etc/passwd"), "root\n").unwrap();
        fs::write(layer.join("usr/bin/tool"), "x").unwrap();
        for dir in ["etc", "srv/new", "usr"] {
            fs::create_dir_all(upper.join(dir)).unwrap();
        }
        fs::write(upper.join("etc/passwd"), "root\napp\n").unwrap();
        fs::write(upper.join("etc/hosts"), "").unwrap(); // a mount point
        fs::write(upper.join("srv/new/file"), "n").unwrap();
        let mounts: HashSet<String> = ["/etc/hosts".to_string()].into();
        let found = changes(&upper, std::slice::from_ref(&layer), &mounts).unwrap();
        assert_eq!(
            lines(&found),
            [
                "C /etc",
                "C /etc/passwd",
                "A /srv",
                "A /srv/new",
                "A /srv/new/file"
            ]
        );
        // A directory holding only a mount point is not reported.
        fs::write(upper.join("etc/passwd"), "root\n").unwrap();
        fs::remove_file(upper.join("etc/passwd")).unwrap();
        let found = changes(&upper, std::slice::from_ref(&layer), &mounts).unwrap();
        assert_eq!(lines(&found), ["A /srv", "A /srv/new", "A /srv/new/file"]);
    }
}
