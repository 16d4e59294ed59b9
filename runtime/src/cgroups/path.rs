//! Where a container's cgroup lives: the OCI `linux.cgroupsPath` turned into
//! a path relative to each hierarchy's mount point.
//!
//! Mechanism: none, pure string checks. Because the result is later joined to
//! a mount point (`/sys/fs/cgroup/memory` + `berth/ID`), it must never contain
//! `..` or be empty: either would let a config write limits (or rmdir) outside
//! the container's own cgroup.
//!
//! Rules (OCI runtime spec, "cgroupsPath"):
//! - absent or empty: `/berth/<container id>`;
//! - absolute (`/a/b`): relative to the root of every hierarchy;
//! - relative (`a/b`): under berth's own parent, i.e. `/berth/a/b`. The spec
//!   leaves the anchor to the runtime; runc uses the caller's cgroup, which
//!   would nest containers inside whatever cgroup the caller happens to be in
//!   (on a hybrid host a different one per controller). A fixed anchor is
//!   predictable and keeps every berth cgroup under one directory.
//! - systemd style `slice:prefix:name` is recognised and refused: berth
//!   drives cgroupfs itself and has no systemd driver.

use std::path::{Component, Path, PathBuf};

use super::CgroupError;

/// The parent directory (under each hierarchy root) of berth's cgroups.
pub const DEFAULT_PARENT: &str = "berth";

/// A validated cgroup path, relative to a hierarchy's mount point: only
/// normal components, at least one of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CgroupPath(PathBuf);

impl CgroupPath {
    /// Apply the rules above to the config's `cgroupsPath` (`None` when absent).
    pub fn resolve(cgroups_path: Option<&Path>, container_id: &str) -> Result<Self, CgroupError> {
        let spec_path = match cgroups_path {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => return Self::default_for(container_id),
        };
        let text = spec_path.to_str().ok_or_else(|| CgroupError::InvalidPath {
            path: spec_path.to_string_lossy().into_owned(),
            why: "it is not valid UTF-8".into(),
        })?;
        if is_systemd_style(text) {
            return Err(CgroupError::Unsupported {
                what: format!("systemd cgroupsPath {text:?}"),
                driver: "cgroupfs",
                hint: "berth manages cgroupfs directly and has no systemd driver; use a path like /berth/ID (and no --systemd-cgroup)".into(),
            });
        }
        let mut relative = PathBuf::new();
        if !spec_path.is_absolute() {
            relative.push(DEFAULT_PARENT);
        }
        for component in spec_path.components() {
            match component {
                Component::RootDir | Component::CurDir => {}
                Component::Normal(name) => relative.push(name),
                Component::ParentDir => {
                    return Err(CgroupError::InvalidPath {
                        path: text.into(),
                        why: "'..' could leave the cgroup hierarchy; give a path without '..'"
                            .into(),
                    })
                }
                Component::Prefix(_) => unreachable!("no path prefixes on Linux"),
            }
        }
        if relative.as_os_str().is_empty() {
            return Err(CgroupError::InvalidPath {
                path: text.into(),
                why: "it names the hierarchy root itself; a container needs its own cgroup such as /berth/ID".into(),
            });
        }
        Ok(Self(relative))
    }

    /// `/berth/<id>`, with the id checked to be one directory name.
    pub fn default_for(container_id: &str) -> Result<Self, CgroupError> {
        let bad = |why: &str| CgroupError::InvalidPath {
            path: format!("/{DEFAULT_PARENT}/{container_id}"),
            why: format!("container id {container_id:?} {why}"),
        };
        if container_id.is_empty() {
            return Err(bad("is empty"));
        }
        if container_id == "." || container_id == ".." || container_id.contains(['/', '\0']) {
            return Err(bad(
                "must be a single directory name (no '/', not '.' or '..')",
            ));
        }
        Ok(Self(Path::new(DEFAULT_PARENT).join(container_id)))
    }

    /// The path relative to a hierarchy root, e.g. `berth/abc`.
    pub fn relative(&self) -> &Path {
        &self.0
    }

    /// The directory of this cgroup under the hierarchy mounted at `mount`.
    pub fn under(&self, mount: &Path) -> PathBuf {
        mount.join(&self.0)
    }
}

impl std::fmt::Display for CgroupPath {
    /// As the kernel shows it in /proc/PID/cgroup: `/berth/abc`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "/{}", self.0.display())
    }
}

/// `slice:prefix:name` (what runc's --systemd-cgroup expects), e.g.
/// `system.slice:docker:abc` or `:berth:abc`.
fn is_systemd_style(text: &str) -> bool {
    !text.starts_with('/') && text.split(':').count() == 3
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve(p: Option<&str>) -> Result<String, CgroupError> {
        CgroupPath::resolve(p.map(Path::new), "c1").map(|c| c.to_string())
    }

    #[test]
    fn absent_or_empty_path_defaults_to_berth_id() {
        assert_eq!(resolve(None).unwrap(), "/berth/c1");
        assert_eq!(resolve(Some("")).unwrap(), "/berth/c1");
    }

    #[test]
    fn absolute_path_is_relative_to_the_hierarchy_root() {
        assert_eq!(resolve(Some("/default/c1")).unwrap(), "/default/c1");
        assert_eq!(resolve(Some("//a/./b/")).unwrap(), "/a/b");
        let p = CgroupPath::resolve(Some(Path::new("/a/b")), "x").unwrap();
        assert_eq!(
            p.under(Path::new("/sys/fs/cgroup/memory")),
            Path::new("/sys/fs/cgroup/memory/a/b")
        );
    }

    #[test]
    fn relative_path_goes_under_berth() {
        assert_eq!(resolve(Some("pods/c1")).unwrap(), "/berth/pods/c1");
    }

    #[test]
    fn dotdot_is_refused_anywhere() {
        for p in ["/../etc", "/a/../../b", "../x", "a/..", "/a/.."] {
            let err = resolve(Some(p)).unwrap_err();
            assert!(matches!(err, CgroupError::InvalidPath { .. }), "{p}: {err}");
            assert!(err.to_string().contains(".."), "{err}");
        }
    }

    #[test]
    fn the_hierarchy_root_itself_is_refused() {
        for p in ["/", "//", "/./"] {
            let err = resolve(Some(p)).unwrap_err();
            assert!(err.to_string().contains("hierarchy root"), "{p}: {err}");
        }
    }

    #[test]
    fn systemd_style_path_is_unsupported_with_a_hint() {
        let err = resolve(Some("system.slice:docker:abc")).unwrap_err();
        assert!(matches!(err, CgroupError::Unsupported { .. }), "{err}");
        assert!(err.to_string().contains("systemd"), "{err}");
        // An absolute path may contain colons: it is a plain directory name.
        assert_eq!(resolve(Some("/a:b:c")).unwrap(), "/a:b:c");
    }

    #[test]
    fn container_id_must_be_one_directory_name() {
        for id in ["", ".", "..", "a/b"] {
            let err = CgroupPath::resolve(None, id).unwrap_err();
            assert!(
                matches!(err, CgroupError::InvalidPath { .. }),
                "{id:?}: {err}"
            );
        }
    }
}
