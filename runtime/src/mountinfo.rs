//! `/proc/self/mountinfo`: the kernel's table of this mount namespace's mounts.
//!
//! Mechanism: procfs, proc(5) "mountinfo". One line per mount:
//! `36 35 98:0 /mnt1 /mnt2 rw,noatime master:1 - ext3 /dev/root rw,errors=continue`
//! (id, parent id, dev, root within the fs, mount point, per-mount options,
//! optional fields, `-`, fs type, source, per-superblock options).
//! Paths escape space, tab, newline and backslash as octal (`\040`).

use std::path::PathBuf;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountInfo {
    /// The directory inside the filesystem that is mounted (`/` for a whole fs,
    /// a sub-path for bind mounts and for cgroup mounts inside a cgroupns).
    pub root: PathBuf,
    pub mount_point: PathBuf,
    pub mount_options: String,
    pub fstype: String,
    pub source: String,
    pub super_options: String,
}

/// Parse the whole table; malformed lines are skipped.
pub fn parse(text: &str) -> Vec<MountInfo> {
    text.lines().filter_map(parse_line).collect()
}

fn parse_line(line: &str) -> Option<MountInfo> {
    let (before, after) = line.split_once(" - ")?;
    let fields: Vec<&str> = before.split(' ').collect();
    if fields.len() < 6 {
        return None;
    }
    let mut tail = after.splitn(3, ' ');
    let fstype = tail.next()?;
    let source = tail.next().unwrap_or("");
    let super_options = tail.next().unwrap_or("");
    Some(MountInfo {
        root: PathBuf::from(unescape(fields[3])),
        mount_point: PathBuf::from(unescape(fields[4])),
        mount_options: fields[5].to_string(),
        fstype: fstype.to_string(),
        source: unescape(source),
        super_options: super_options.to_string(),
    })
}

/// Undo mountinfo's octal escapes (`\040` is a space).
pub fn unescape(raw: &str) -> String {
    let bytes = raw.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match (bytes[i], octal) {
            (b'\\', Some(code)) => {
                out.push(code);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_fields_and_unescapes_paths() {
        let text = "36 35 98:0 / /mnt\\040a rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n\
                    40 25 0:34 / /sys/fs/cgroup/memory rw,relatime shared:9 - cgroup cgroup rw,memory\n\
                    garbage line\n";
        let mounts = parse(text);
        assert_eq!(mounts.len(), 2);
        assert_eq!(mounts[0].mount_point, PathBuf::from("/mnt a"));
        assert_eq!(mounts[0].fstype, "ext3");
        assert_eq!(mounts[1].super_options, "rw,memory");
        assert_eq!(mounts[1].root, PathBuf::from("/"));
    }
}
