//! The three files that tell a container who and where it is:
//! `/etc/hosts`, `/etc/resolv.conf` and `/etc/hostname`.
//!
//! Mechanism: plain files in the container's directory
//! (`<root>/containers/<id>/hosts`, ...), bind-mounted over the image's
//! files at start (a bind mount of a *file*: the container sees that
//! inode). Because a bind mount pins the inode, a later update — a peer
//! joining a user network — must rewrite the file *in place*
//! (`O_TRUNC` + `write(2)` on the same inode) rather than rename a new
//! file over it, which the container would never see.
//!
//! Name resolution on user-defined networks is done this way, by listing
//! every member of the network in each member's /etc/hosts (the way docker's
//! legacy links worked), not by a DNS server: berth has no daemon that could
//! answer queries, and every C library reads /etc/hosts first.

use std::fmt::Write as _;
use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

/// The name of each file in the container's directory, and where it goes.
pub const HOSTS: &str = "hosts";
pub const RESOLV_CONF: &str = "resolv.conf";
pub const HOSTNAME: &str = "hostname";

/// docker's fallback when the host only has loopback name servers.
pub const DEFAULT_NAMESERVERS: [&str; 2] = ["8.8.8.8", "8.8.4.4"];

/// One line of /etc/hosts: an address and its names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostEntry {
    pub ip: Ipv4Addr,
    pub names: Vec<String>,
}

/// The hosts file docker writes: localhost, the IPv6 names, then the
/// container itself and (on a user network) its peers.
pub fn hosts_file(own: Option<&HostEntry>, peers: &[HostEntry]) -> String {
    let mut text = String::from(
        "127.0.0.1\tlocalhost\n\
         ::1\tlocalhost ip6-localhost ip6-loopback\n\
         fe00::0\tip6-localnet\n\
         ff00::0\tip6-mcastprefix\n\
         ff02::1\tip6-allnodes\n\
         ff02::2\tip6-allrouters\n",
    );
    for entry in own.into_iter().chain(peers) {
        let mut names = entry.names.clone();
        names.dedup();
        let _ = writeln!(text, "{}\t{}", entry.ip, names.join(" "));
    }
    text
}

/// The container's resolv.conf from the host's: `nameserver` lines on a
/// loopback address (a local caching resolver such as systemd-resolved's
/// 127.0.0.53) cannot work from inside the container's network namespace
/// and are dropped; when none is left, docker's public defaults are used.
/// With `keep_loopback` (host network) the host's file is used as it is.
pub fn resolv_conf(host_text: &str, keep_loopback: bool) -> String {
    if keep_loopback {
        return host_text.to_string();
    }
    let mut out = String::new();
    let mut servers = 0;
    for line in host_text.lines() {
        let mut words = line.split_whitespace();
        if words.next() == Some("nameserver") {
            let is_loopback = words
                .next()
                .and_then(|w| w.split('%').next()?.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_loopback());
            if is_loopback {
                continue;
            }
            servers += 1;
        }
        out.push_str(line);
        out.push('\n');
    }
    if servers == 0 {
        for server in DEFAULT_NAMESERVERS {
            let _ = writeln!(out, "nameserver {server}");
        }
    }
    out
}

/// The host's resolver configuration. systemd-resolved's stub file only
/// names 127.0.0.53; its real upstream servers are in
/// /run/systemd/resolve/resolv.conf, which docker reads instead.
pub fn host_resolv_conf() -> String {
    let main = fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
    let upstream = Path::new("/run/systemd/resolve/resolv.conf");
    if main.contains("127.0.0.53") && upstream.exists() {
        if let Ok(text) = fs::read_to_string(upstream) {
            return text;
        }
    }
    main
}

/// Write `text` to `path`, in place when it exists (same inode, so a
/// container that has it bind-mounted sees the change).
pub fn write_in_place(path: &Path, text: &str) -> io::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
    file.write_all(text.as_bytes())
        .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))
}

/// The files of one container, written into its directory `dir`.
pub fn write_all(dir: &Path, hostname: &str, hosts: &str, resolv: &str) -> io::Result<()> {
    write_in_place(&dir.join(HOSTNAME), &format!("{hostname}\n"))?;
    write_in_place(&dir.join(HOSTS), hosts)?;
    write_in_place(&dir.join(RESOLV_CONF), resolv)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::MetadataExt;

    #[test]
    fn hosts_lists_localhost_self_and_peers() {
        let own = HostEntry {
            ip: "10.89.0.2".parse().unwrap(),
            names: vec!["0123456789ab".into(), "web".into()],
        };
        let peer = HostEntry {
            ip: "10.89.0.3".parse().unwrap(),
            names: vec!["db".into(), "database".into()],
        };
        let text = hosts_file(Some(&own), &[peer]);
        assert!(text.starts_with("127.0.0.1\tlocalhost\n"));
        assert!(text.contains("\n10.89.0.2\t0123456789ab web\n"), "{text}");
        assert!(text.ends_with("10.89.0.3\tdb database\n"), "{text}");
    }

    #[test]
    fn loopback_nameservers_are_replaced() {
        let host = "# generated\nnameserver 127.0.0.53\noptions edns0\nsearch example.org\n";
        let text = resolv_conf(host, false);
        assert!(!text.contains("127.0.0.53"), "{text}");
        assert!(text.contains("options edns0\nsearch example.org\n"));
        assert!(
            text.ends_with("nameserver 8.8.8.8\nnameserver 8.8.4.4\n"),
            "{text}"
        );
        let mixed = resolv_conf("nameserver ::1\nnameserver 10.255.255.53\n", false);
        assert_eq!(mixed, "nameserver 10.255.255.53\n");
        assert_eq!(
            resolv_conf(host, true),
            host,
            "host network keeps the host's file"
        );
    }

    #[test]
    fn rewriting_keeps_the_inode_a_bind_mount_pins() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("hosts");
        write_in_place(&path, "one\n").unwrap();
        let inode = fs::metadata(&path).unwrap().ino();
        write_in_place(&path, "two\n").unwrap();
        assert_eq!(fs::metadata(&path).unwrap().ino(), inode);
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
    }
}
