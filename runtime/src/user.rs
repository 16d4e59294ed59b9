//! Users and groups of an image: /etc/passwd and /etc/group parsed from the
//! rootfs, never looked up with libc (which would read the *host's* files, or
//! run the image's NSS modules in our process).
//!
//! Mechanism: the files are opened beneath the rootfs with
//! `openat2(RESOLVE_IN_ROOT)` (see [`crate::beneath`]), so a symlinked
//! /etc/passwd in the image resolves inside the image. The content is
//! untrusted: reads stop at 16 MiB, lines over 64 KiB and malformed lines are
//! skipped, nothing here panics.
//!
//! [`resolve_user`] turns docker's `USER` / `--user` syntax (`name`, `uid`,
//! `name:group`, `uid:gid`, ...) into numeric ids the way docker does.

use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::AsFd;
use std::path::Path;

use rustix::fs::{Mode, OFlags};

use crate::beneath;

/// Most bytes read from one passwd/group file.
const MAX_FILE_BYTES: u64 = 16 << 20;
/// Longer lines are skipped as garbage.
const MAX_LINE_BYTES: usize = 64 << 10;

/// One /etc/passwd entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One /etc/group entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// The ids a process of the container runs with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedUser {
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups: the groups listing the user as a member (only
    /// when no group was given explicitly, as docker does).
    pub additional_gids: Vec<u32>,
    /// The home directory from passwd (`/` when unknown), for `HOME`.
    pub home: String,
}

#[derive(Debug, thiserror::Error)]
pub enum UserError {
    #[error("unable to find user {0}: no matching entries in passwd file")]
    NoSuchUser(String),
    #[error("unable to find group {0}: no matching entries in group file")]
    NoSuchGroup(String),
    #[error("invalid user {0:?}: expected name, uid, name:group or uid:gid")]
    Invalid(String),
    #[error("read {file} in the image: {source}")]
    Read {
        file: &'static str,
        #[source]
        source: io::Error,
    },
}

/// Parse passwd text; malformed lines are skipped.
pub fn parse_passwd(reader: impl Read) -> Vec<PasswdEntry> {
    lines(reader)
        .filter_map(|line| {
            let (name, fields) = named_fields(&line)?;
            Some(PasswdEntry {
                name: name.to_string(),
                uid: fields.get(2)?.trim().parse().ok()?,
                gid: fields.get(3)?.trim().parse().ok()?,
                home: fields.get(5).map(|s| s.to_string()).unwrap_or_default(),
                shell: fields.get(6).map(|s| s.to_string()).unwrap_or_default(),
            })
        })
        .collect()
}

/// Parse group text; malformed lines are skipped.
pub fn parse_group(reader: impl Read) -> Vec<GroupEntry> {
    lines(reader)
        .filter_map(|line| {
            let (name, fields) = named_fields(&line)?;
            let members = fields
                .get(3)
                .map(|list| {
                    list.split(',')
                        .map(str::trim)
                        .filter(|m| !m.is_empty())
                        .map(str::to_string)
                        .collect()
                })
                .unwrap_or_default();
            Some(GroupEntry {
                name: name.to_string(),
                gid: fields.get(2)?.trim().parse().ok()?,
                members,
            })
        })
        .collect()
}

/// A passwd or group line's name and its `:`-separated fields; `None` for a
/// blank name or a comment.
fn named_fields(line: &str) -> Option<(&str, Vec<&str>)> {
    let fields: Vec<&str> = line.split(':').collect();
    let name = fields.first()?.trim();
    if name.is_empty() || name.starts_with('#') {
        return None;
    }
    Some((name, fields))
}

/// The lines of at most [`MAX_FILE_BYTES`], skipping over-long and non-UTF-8 ones.
fn lines(reader: impl Read) -> impl Iterator<Item = String> {
    BufReader::new(reader.take(MAX_FILE_BYTES))
        .split(b'\n')
        .map_while(Result::ok)
        .filter(|line| line.len() <= MAX_LINE_BYTES)
        .filter_map(|line| String::from_utf8(line).ok())
}

/// Resolve docker's user syntax against the image at `rootfs`.
///
/// - `""` is root; `name` and `uid` look up passwd (a uid not in passwd is
///   fine and gets gid 0); a name not in passwd is an error.
/// - `:group`/`:gid` overrides the gid (a gid not in group is fine; a group
///   name not in group is an error) and then no supplementary groups are added.
pub fn resolve_user(rootfs: &Path, user: &str) -> Result<ResolvedUser, UserError> {
    let (user_part, group_part) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    if user_part.contains(':') || group_part.is_some_and(|g| g.contains(':') || g.is_empty()) {
        return Err(UserError::Invalid(user.to_string()));
    }
    let root = rustix::fs::open(
        rootfs,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| UserError::Read {
        file: "rootfs",
        source: e.into(),
    })?;
    let passwd = read_in_root(root.as_fd(), "/etc/passwd")?
        .map(parse_passwd)
        .unwrap_or_default();
    let groups = if group_part.is_some() || !user_part.is_empty() {
        read_in_root(root.as_fd(), "/etc/group")?
            .map(parse_group)
            .unwrap_or_default()
    } else {
        Vec::new()
    };
    resolve_in(&passwd, &groups, user_part, group_part)
}

/// [`resolve_user`] on already parsed files.
pub fn resolve_in(
    passwd: &[PasswdEntry],
    groups: &[GroupEntry],
    user_part: &str,
    group_part: Option<&str>,
) -> Result<ResolvedUser, UserError> {
    let user_part = if user_part.is_empty() { "0" } else { user_part };
    let numeric_uid: Option<u32> = user_part.parse().ok();
    let entry = passwd
        .iter()
        .find(|e| e.name == user_part || Some(e.uid) == numeric_uid);
    let mut resolved = match (entry, numeric_uid) {
        (Some(e), _) => ResolvedUser {
            uid: e.uid,
            gid: e.gid,
            additional_gids: Vec::new(),
            home: if e.home.is_empty() {
                "/".into()
            } else {
                e.home.clone()
            },
        },
        (None, Some(uid)) => ResolvedUser {
            uid,
            gid: 0,
            additional_gids: Vec::new(),
            home: "/".into(),
        },
        (None, None) => return Err(UserError::NoSuchUser(user_part.to_string())),
    };
    match group_part {
        Some(group) => {
            let numeric_gid: Option<u32> = group.parse().ok();
            let found = groups
                .iter()
                .find(|g| g.name == group || Some(g.gid) == numeric_gid);
            resolved.gid = match (found, numeric_gid) {
                (Some(g), _) => g.gid,
                (None, Some(gid)) => gid,
                (None, None) => return Err(UserError::NoSuchGroup(group.to_string())),
            };
        }
        None => {
            if let Some(e) = entry {
                let mut gids: Vec<u32> = groups
                    .iter()
                    .filter(|g| g.members.iter().any(|m| m == &e.name))
                    .map(|g| g.gid)
                    .filter(|gid| *gid != resolved.gid)
                    .collect();
                gids.sort_unstable();
                gids.dedup();
                resolved.additional_gids = gids;
            }
        }
    }
    Ok(resolved)
}

/// Open `path` beneath the root for reading; `None` when it does not exist.
fn read_in_root(
    root: std::os::fd::BorrowedFd<'_>,
    path: &'static str,
) -> Result<Option<std::fs::File>, UserError> {
    // O_PATH first: opening a FIFO planted at /etc/passwd for reading would
    // block forever, and opening a device node can have effects (a tty, a
    // watchdog). Only a regular file is then opened for reading, through
    // the O_PATH fd (/proc/self/fd/N), so the file checked is the file read.
    match beneath::open_beneath(root, Path::new(path), OFlags::PATH, Mode::empty()) {
        Ok(fd) => {
            let stat = rustix::fs::fstat(&fd).map_err(|e| UserError::Read {
                file: path,
                source: e.into(),
            })?;
            if rustix::fs::FileType::from_raw_mode(stat.st_mode)
                != rustix::fs::FileType::RegularFile
            {
                return Ok(None);
            }
            let reopen = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
            std::fs::File::open(reopen)
                .map(Some)
                .map_err(|source| UserError::Read { file: path, source })
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(UserError::Read { file: path, source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\n\
        # comment\n\
        daemon:x:1:1::/usr/sbin:/usr/sbin/nologin\n\
        broken-line\n\
        nouid:x:abc:1::/:/bin/sh\n\
        app:x:1000:1000:App:/home/app:/bin/sh\n\
        short:x:1001:1001\n";
    const GROUP: &str = "root:x:0:\n\
        wheel:x:10:app,daemon\n\
        app:x:1000:\n\
        audio:x:29:app\n\
        bad:x:notanumber:app\n";

    fn resolve(user: &str) -> Result<ResolvedUser, UserError> {
        let passwd = parse_passwd(PASSWD.as_bytes());
        let groups = parse_group(GROUP.as_bytes());
        let (u, g) = match user.split_once(':') {
            Some((u, g)) => (u, Some(g)),
            None => (user, None),
        };
        resolve_in(&passwd, &groups, u, g)
    }

    #[test]
    fn malformed_lines_are_skipped() {
        let passwd = parse_passwd(PASSWD.as_bytes());
        let names: Vec<&str> = passwd.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["root", "daemon", "app", "short"]);
        assert_eq!(passwd[3].home, "");
    }

    #[test]
    fn names_and_numbers_resolve_like_docker() {
        let app = resolve("app").unwrap();
        assert_eq!((app.uid, app.gid), (1000, 1000));
        assert_eq!(app.additional_gids, vec![10, 29]);
        assert_eq!(app.home, "/home/app");
        assert_eq!(resolve("1000").unwrap(), app);
        let unknown = resolve("4242").unwrap();
        assert_eq!(
            (unknown.uid, unknown.gid, unknown.home.as_str()),
            (4242, 0, "/")
        );
        assert_eq!(resolve("").unwrap().uid, 0);
        let short = resolve("short").unwrap();
        assert_eq!(short.home, "/");
    }

    #[test]
    fn an_explicit_group_replaces_the_supplementary_groups() {
        let r = resolve("app:audio").unwrap();
        assert_eq!((r.uid, r.gid), (1000, 29));
        assert!(r.additional_gids.is_empty());
        let r = resolve("1000:4242").unwrap();
        assert_eq!(r.gid, 4242);
    }

    #[test]
    fn unknown_names_are_errors_with_docker_wording() {
        assert_eq!(
            resolve("nobody").unwrap_err().to_string(),
            "unable to find user nobody: no matching entries in passwd file"
        );
        assert_eq!(
            resolve("app:nogroup").unwrap_err().to_string(),
            "unable to find group nogroup: no matching entries in group file"
        );
    }

    #[test]
    fn hostile_content_is_survived() {
        let mut text = String::from("root:x:0:0:root:/root:/bin/sh\n");
        text.push_str(&"a".repeat(200_000));
        text.push_str(":x:5:5::/:/bin/sh\n::::::::\n:\n\u{0}\u{0}:x:1:1\nok:x:7:7::/:\n");
        let entries = parse_passwd(text.as_bytes());
        let names: Vec<&str> = entries.iter().map(|e| e.name.as_str()).collect();
        assert_eq!(names, vec!["root", "\u{0}\u{0}", "ok"]);
        let groups = parse_group(":::\nx\ny:z\ng:x:5:a,,b,\n".as_bytes());
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].members, vec!["a", "b"]);
    }

    #[test]
    fn files_are_read_beneath_the_rootfs() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("root");
        std::fs::create_dir_all(root.join("etc")).unwrap();
        std::fs::create_dir_all(dir.path().join("hostetc")).unwrap();
        std::fs::write(
            dir.path().join("hostetc/passwd"),
            "root:x:0:0::/:/bin/sh\nhostonly:x:5:5::/:/bin/sh\n",
        )
        .unwrap();
        // A symlink that on the host would leave the rootfs.
        std::os::unix::fs::symlink(dir.path().join("hostetc/passwd"), root.join("etc/passwd"))
            .unwrap();
        assert!(matches!(
            resolve_user(&root, "hostonly"),
            Err(UserError::NoSuchUser(_))
        ));
        std::fs::remove_file(root.join("etc/passwd")).unwrap();
        std::fs::write(root.join("etc/passwd"), "svc:x:77:88::/srv:/bin/sh\n").unwrap();
        std::fs::write(root.join("etc/group"), "extra:x:99:svc\n").unwrap();
        let r = resolve_user(&root, "svc").unwrap();
        assert_eq!(
            (r.uid, r.gid, r.additional_gids.clone()),
            (77, 88, vec![99])
        );
        // No passwd at all: numeric users still work.
        let empty = dir.path().join("empty");
        std::fs::create_dir_all(&empty).unwrap();
        assert_eq!(resolve_user(&empty, "5:6").unwrap().gid, 6);
        assert!(resolve_user(&empty, "a:b:c").is_err());
    }

    /// Regression (found by tests/tests/escape_image.rs): a FIFO planted at
    /// /etc/passwd blocked `open(O_RDONLY)` — and with it the container's
    /// monitor and `berth run` — forever.
    #[test]
    fn a_fifo_at_etc_passwd_is_not_opened_for_reading() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        nix::unistd::mkfifo(
            &dir.path().join("etc/passwd"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        assert!(matches!(
            resolve_user(dir.path(), "app"),
            Err(UserError::NoSuchUser(_))
        ));
        assert_eq!(resolve_user(dir.path(), "").unwrap().uid, 0);
    }
}
