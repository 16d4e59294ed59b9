//! Host devices given to a container: `--device HOST[:CONTAINER[:PERMS]]`,
//! and every host device for `--privileged`.
//!
//! Mechanism: `stat(2)` of the host node gives its type and major:minor
//! numbers; the container gets a node with the same numbers
//! (`linux.devices`, made by the runtime with `mknod(2)`) and a device
//! cgroup rule that lets it use them with the given permissions
//! (`linux.resources.devices`: `r` read, `w` write, `m` mknod). Without a
//! rule, the device cgroup refuses `open(2)` of the node even to root.

use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use super::SecurityError;

/// One `--device` flag, as docker's HostConfig.Devices records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct DeviceMapping {
    pub path_on_host: String,
    pub path_in_container: String,
    pub cgroup_permissions: String,
}

/// Parse docker's `HOST[:CONTAINER[:PERMS]]` (`/dev/fuse`, `/dev/sda:/dev/xvda:r`,
/// `/dev/kvm:rw`).
pub fn parse_device(text: &str) -> Result<DeviceMapping, SecurityError> {
    let bad = |why: &str| SecurityError::BadDevice {
        text: text.to_string(),
        why: why.to_string(),
    };
    let parts: Vec<&str> = text.split(':').collect();
    let (host, container, perms) = match parts.as_slice() {
        [host] => (*host, *host, "rwm"),
        [host, second] if is_permissions(second) => (*host, *host, *second),
        [host, container] => (*host, *container, "rwm"),
        [host, container, perms] => (*host, *container, *perms),
        _ => return Err(bad("use HOST[:CONTAINER[:PERMISSIONS]]")),
    };
    if !host.starts_with('/') {
        return Err(bad("the host path must be absolute"));
    }
    if !container.starts_with('/') {
        return Err(bad("the path in the container must be absolute"));
    }
    if !is_permissions(perms) {
        return Err(bad("permissions are a combination of r, w and m"));
    }
    Ok(DeviceMapping {
        path_on_host: host.to_string(),
        path_in_container: container.to_string(),
        cgroup_permissions: perms.to_string(),
    })
}

fn is_permissions(text: &str) -> bool {
    !text.is_empty() && text.len() <= 3 && text.chars().all(|c| matches!(c, 'r' | 'w' | 'm'))
}

/// A device node as the OCI spec describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    pub path: PathBuf,
    /// `c` or `b`.
    pub kind: char,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

impl Node {
    /// `linux.devices[]` entry.
    pub fn spec_entry(&self) -> Value {
        json!({
            "path": self.path, "type": self.kind.to_string(),
            "major": self.major, "minor": self.minor,
            "fileMode": self.mode & 0o7777, "uid": self.uid, "gid": self.gid,
        })
    }

    /// `linux.resources.devices[]` rule allowing `access`.
    pub fn cgroup_rule(&self, access: &str) -> Value {
        json!({"allow": true, "type": self.kind.to_string(),
               "major": self.major, "minor": self.minor, "access": access})
    }
}

/// The node at `host`, to appear at `container`. A directory gives every
/// device below it (docker does the same), at the same relative paths.
pub fn host_nodes(host: &Path, container: &Path) -> Result<Vec<Node>, SecurityError> {
    let meta = std::fs::metadata(host).map_err(|error| SecurityError::DeviceLookup {
        path: host.to_path_buf(),
        error,
    })?;
    if meta.is_dir() {
        let mut nodes = Vec::new();
        walk_devices(host, &mut |path, meta| {
            let relative = path.strip_prefix(host).unwrap_or(path);
            nodes.extend(node_of(container.join(relative), meta));
        });
        return Ok(nodes);
    }
    node_of(container.to_path_buf(), &meta)
        .map(|n| vec![n])
        .ok_or_else(|| SecurityError::NotADevice(host.to_path_buf()))
}

fn node_of(path: PathBuf, meta: &std::fs::Metadata) -> Option<Node> {
    let kind = if meta.file_type().is_char_device() {
        'c'
    } else if meta.file_type().is_block_device() {
        'b'
    } else {
        return None;
    };
    let rdev = meta.rdev();
    Some(Node {
        path,
        kind,
        major: nix::sys::stat::major(rdev),
        minor: nix::sys::stat::minor(rdev),
        mode: meta.mode(),
        uid: meta.uid(),
        gid: meta.gid(),
    })
}

/// Call `found` for every device node below `dir`, not following symlinks.
fn walk_devices(dir: &Path, found: &mut dyn FnMut(&Path, &std::fs::Metadata)) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk_devices(&path, found);
        } else {
            found(&path, &meta);
        }
    }
}

/// Directories of /dev that are not devices of the host, or that the runtime
/// makes itself (as runc's list).
const NOT_HOST_DEVICES: [&str; 7] = ["pts", "shm", "fd", "mqueue", ".lxc", ".lxd-mounts", ".udev"];

/// Every device node of the host's /dev, for `--privileged` (docker gives a
/// privileged container all of them). The console and ptmx are the
/// runtime's to make (a pty of the container's own devpts).
pub fn all_host_devices() -> Vec<Node> {
    let mut nodes = Vec::new();
    let dev = Path::new("/dev");
    let Ok(entries) = std::fs::read_dir(dev) else {
        return nodes;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        if NOT_HOST_DEVICES.contains(&name.as_str()) || name == "console" || name == "ptmx" {
            continue;
        }
        let path = entry.path();
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            walk_devices(&path, &mut |p, m| nodes.extend(node_of(p.to_path_buf(), m)));
        } else {
            nodes.extend(node_of(path, &meta));
        }
    }
    nodes.sort_by(|a, b| a.path.cmp(&b.path));
    nodes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn device_flags_parse_as_docker_does() {
        let d = parse_device("/dev/fuse").unwrap();
        assert_eq!(
            (
                d.path_on_host.as_str(),
                d.path_in_container.as_str(),
                d.cgroup_permissions.as_str()
            ),
            ("/dev/fuse", "/dev/fuse", "rwm")
        );
        let d = parse_device("/dev/sda:/dev/xvda:r").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
            ("/dev/xvda", "r")
        );
        let d = parse_device("/dev/kvm:rw").unwrap();
        assert_eq!(
            (d.path_in_container.as_str(), d.cgroup_permissions.as_str()),
            ("/dev/kvm", "rw")
        );
        assert!(parse_device("dev/null").is_err());
        assert!(parse_device("/dev/null:dev/x").is_err());
        assert!(parse_device("/dev/null:/dev/x:rwx").is_err());
        assert!(parse_device("/a:/b:r:w").is_err());
    }

    #[test]
    fn a_host_node_keeps_its_numbers() {
        let nodes = host_nodes(Path::new("/dev/null"), Path::new("/dev/mynull")).unwrap();
        assert_eq!(nodes.len(), 1);
        assert_eq!((nodes[0].kind, nodes[0].major, nodes[0].minor), ('c', 1, 3));
        assert_eq!(nodes[0].path, Path::new("/dev/mynull"));
        assert_eq!(nodes[0].spec_entry()["type"], "c");
        assert_eq!(nodes[0].cgroup_rule("r")["access"], "r");
    }

    #[test]
    fn a_missing_or_regular_file_is_refused_clearly() {
        let err = host_nodes(Path::new("/dev/no-such-device"), Path::new("/dev/x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("/dev/no-such-device"), "{err}");
        let err = host_nodes(Path::new("/etc/passwd"), Path::new("/dev/x"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a device"), "{err}");
    }

    #[test]
    fn the_host_has_devices_and_none_of_the_runtime_owned_ones() {
        let all = all_host_devices();
        assert!(all.iter().any(|n| n.path == Path::new("/dev/null")));
        assert!(!all.iter().any(|n| n.path.starts_with("/dev/pts")));
        assert!(!all.iter().any(|n| n.path == Path::new("/dev/console")));
    }
}
