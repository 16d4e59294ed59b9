//! `berth inspect --kernel CONTAINER`: a running container seen from the
//! kernel's side, read from the same files a learner would `cat`.
//!
//! Mechanism: reads only. `readlink(2)` of `/proc/PID/ns/*` (a namespace is
//! an inode of the nsfs filesystem: two processes share a namespace exactly
//! when the inodes are equal; compared with `/proc/1/ns/*`, the host's
//! init, or where that cannot be read (no CAP_SYS_PTRACE) with
//! `/proc/self/ns/*`, this `berth` command's own); `/proc/PID/cgroup` and the cgroup files through the runtime's
//! cgroup driver (usage and limits); `/proc/PID/mountinfo` (the mounts as the
//! container sees them, relative to its root); `/proc/PID/status` (the
//! capability sets as hex masks, `Seccomp:`, `NoNewPrivs:`, uid and gid);
//! `/proc/PID/net/{dev,route,tcp,tcp6,udp,udp6}` (which show the *process's*
//! network namespace, so no `setns` is needed); `/sys/class/net/VETH/master`
//! for the host end of the veth pair. PID is the container's PID 1 as the
//! host sees it, checked against its recorded start time, so a reused pid is
//! never read.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

use anyhow::{bail, Context as _};
use berth_engine::container::{bundle, procinfo, ContainerRecord};
use serde_json::{json, Value};

/// The kernel's view of `record`'s running container, as JSON (what `-f`
/// templates see); [`render`] turns it into the text report.
pub fn report(record: &ContainerRecord) -> anyhow::Result<Value> {
    let pid = running_pid(record)?;
    Ok(json!({
        "Id": record.id,
        "Name": record.name,
        "Pid": pid,
        "MonitorPid": record.state.monitor_pid.unwrap_or(0),
        "Namespaces": namespaces(pid)?,
        "HostNamespaces": host_namespaces_dir(),
        "Cgroups": cgroups(record, pid),
        "Mounts": mounts(pid)?,
        "Capabilities": capabilities(pid)?,
        "Security": security(pid)?,
        "Network": network(record, pid),
    }))
}

fn running_pid(record: &ContainerRecord) -> anyhow::Result<i32> {
    let state = &record.state;
    match (state.pid, state.pid_start_time) {
        (Some(pid), Some(start)) if state.status.is_active() && procinfo::is_running(pid, start) => {
            Ok(pid)
        }
        _ => bail!(
            "container {} is not running: --kernel reads /proc/PID of its running processes; start it first (berth start {})",
            record.name,
            record.name
        ),
    }
}

fn read(path: &str) -> anyhow::Result<String> {
    std::fs::read_to_string(path).with_context(|| format!("read {path}"))
}

/// What the container's namespaces are compared with: the host's init, or
/// this command (which runs in the host's namespaces).
fn host_namespaces_dir() -> &'static str {
    if std::fs::read_link("/proc/1/ns/net").is_ok() {
        "/proc/1/ns"
    } else {
        "/proc/self/ns"
    }
}

/// Each namespace of `pid` with its inode, and whether the host is in the
/// same one.
fn namespaces(pid: i32) -> anyhow::Result<Value> {
    let host_dir = host_namespaces_dir();
    let dir = format!("/proc/{pid}/ns");
    let mut kinds: Vec<String> = std::fs::read_dir(&dir)
        .with_context(|| format!("list {dir}"))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    kinds.sort();
    let mut list = Vec::new();
    for kind in kinds {
        let Ok(link) = std::fs::read_link(format!("{dir}/{kind}")) else {
            continue;
        };
        let host = std::fs::read_link(format!("{host_dir}/{kind}")).ok();
        let inode = inode_of(&link.to_string_lossy());
        let host_inode = host.as_ref().map(|h| inode_of(&h.to_string_lossy()));
        list.push(json!({
            "Type": kind,
            "Inode": inode,
            "HostInode": host_inode,
            "Shared": host_inode == Some(inode),
        }));
    }
    Ok(Value::Array(list))
}

/// `net:[4026532008]` -> 4026532008.
fn inode_of(link: &str) -> u64 {
    link.rsplit('[')
        .next()
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .unwrap_or(0)
}

/// The process's cgroup membership, and usage and limits from the runtime's driver.
fn cgroups(record: &ContainerRecord, pid: i32) -> Value {
    let membership: Vec<String> = read(&format!("/proc/{pid}/cgroup"))
        .map(|t| t.lines().map(String::from).collect())
        .unwrap_or_default();
    let path = bundle::cgroups_path(&record.id);
    let manager = berth_runtime::cgroups::manager_for(Some(Path::new(&path)), &record.id);
    let (paths, stats, limits) = match &manager {
        Ok(m) => {
            let paths = m.paths();
            let limits = limit_files(&paths);
            (paths, m.stats().ok(), limits)
        }
        Err(_) => (Vec::new(), None, Vec::new()),
    };
    json!({
        "Membership": membership,
        "Paths": paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>(),
        "Stats": stats,
        "Limits": limits,
    })
}

/// The limit files among the container's cgroup directories, with their values.
fn limit_files(dirs: &[std::path::PathBuf]) -> Vec<Value> {
    const FILES: [&str; 9] = [
        "memory.limit_in_bytes",
        "memory.memsw.limit_in_bytes",
        "memory.max",
        "memory.swap.max",
        "cpu.cfs_quota_us",
        "cpu.max",
        "cpu.shares",
        "cpu.weight",
        "pids.max",
    ];
    let mut out = Vec::new();
    for dir in dirs {
        for file in FILES {
            let path = dir.join(file);
            if let Ok(value) = std::fs::read_to_string(&path) {
                out.push(json!({"File": path.display().to_string(), "Value": value.trim()}));
            }
        }
    }
    out
}

/// `/proc/PID/mountinfo`: mount point (relative to the container's root),
/// type, source, options.
fn mounts(pid: i32) -> anyhow::Result<Value> {
    let text = read(&format!("/proc/{pid}/mountinfo"))?;
    let mut list = Vec::new();
    for line in text.lines() {
        // id parent major:minor root mountpoint options [optional...] - type source super
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let left: Vec<&str> = left.split(' ').collect();
        let right: Vec<&str> = right.split(' ').collect();
        if left.len() < 6 || right.len() < 2 {
            continue;
        }
        list.push(json!({
            "Target": unescape(left[4]),
            "Type": right[0],
            "Source": unescape(right[1]),
            "Options": left[5],
        }));
    }
    Ok(Value::Array(list))
}

/// mountinfo escapes space, tab, newline and backslash as `\ooo`.
fn unescape(raw: &str) -> String {
    let mut out = Vec::new();
    let bytes = raw.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        let code = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .and_then(|d| std::str::from_utf8(d).ok())
            .and_then(|d| u8::from_str_radix(d, 8).ok());
        match code {
            Some(c) => {
                out.push(c);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A `Key:\tvalue` line of /proc/PID/status.
fn status_field<'a>(status: &'a str, key: &str) -> Option<&'a str> {
    status
        .lines()
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(':'))
        .map(str::trim)
}

/// The five capability sets, decoded from their hex masks to names.
fn capabilities(pid: i32) -> anyhow::Result<Value> {
    let status = read(&format!("/proc/{pid}/status"))?;
    let mut sets = serde_json::Map::new();
    for (key, name) in [
        ("CapEff", "Effective"),
        ("CapPrm", "Permitted"),
        ("CapInh", "Inheritable"),
        ("CapBnd", "Bounding"),
        ("CapAmb", "Ambient"),
    ] {
        let mask = status_field(&status, key)
            .and_then(|h| u64::from_str_radix(h, 16).ok())
            .unwrap_or(0);
        sets.insert(name.into(), json!(capability_names(mask)));
    }
    Ok(Value::Object(sets))
}

/// The names of the bits set in a capability mask (`CAP_CHOWN` is bit 0).
pub fn capability_names(mask: u64) -> Vec<String> {
    let bits: BTreeSet<u8> = (0..64u8).filter(|b| mask & (1u64 << b) != 0).collect();
    berth_runtime::capabilities::names(&bits)
}

/// Seccomp mode, no_new_privs, uid and gid.
fn security(pid: i32) -> anyhow::Result<Value> {
    let status = read(&format!("/proc/{pid}/status"))?;
    let seccomp = match status_field(&status, "Seccomp") {
        Some("0") => "disabled",
        Some("1") => "strict",
        Some("2") => "filter",
        _ => "unknown",
    };
    Ok(json!({
        "Seccomp": seccomp,
        "SeccompFilters": status_field(&status, "Seccomp_filters").and_then(|n| n.parse::<u64>().ok()),
        "NoNewPrivs": status_field(&status, "NoNewPrivs") == Some("1"),
        "Uid": words(status_field(&status, "Uid")),
        "Gid": words(status_field(&status, "Gid")),
        "Groups": words(status_field(&status, "Groups")),
    }))
}

/// A tab-separated status value with single spaces.
fn words(value: Option<&str>) -> String {
    value
        .unwrap_or("")
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ")
}

/// Interfaces, routes and listening sockets of the container's network
/// namespace, and the host side as berth recorded it and the kernel shows it.
fn network(record: &ContainerRecord, pid: i32) -> Value {
    let settings = &record.state.network;
    let veth = settings.endpoint.as_ref().map(|e| {
        let master = std::fs::read_link(format!("/sys/class/net/{}/master", e.host_veth))
            .ok()
            .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()));
        json!({
            "HostVeth": e.host_veth,
            "Bridge": master,
            "IPAddress": e.ip.to_string(),
            "PrefixLen": e.prefix_len,
            "Gateway": e.gateway.to_string(),
            "MacAddress": e.mac,
        })
    });
    json!({
        "Mode": settings.mode,
        "Endpoint": veth,
        "Interfaces": interfaces(pid),
        "Routes": routes(pid),
        "Listening": listening(pid),
        "Published": settings.ports.iter().map(|p| p.display()).collect::<Vec<_>>(),
        "FirewallTable": settings.firewall_table,
    })
}

/// `/proc/PID/net/dev`: name, bytes received and sent.
fn interfaces(pid: i32) -> Vec<Value> {
    let Ok(text) = read(&format!("/proc/{pid}/net/dev")) else {
        return Vec::new();
    };
    text.lines()
        .skip(2)
        .filter_map(|line| {
            let (name, counters) = line.split_once(':')?;
            let c: Vec<u64> = counters
                .split_whitespace()
                .filter_map(|n| n.parse().ok())
                .collect();
            Some(json!({"Name": name.trim(), "RxBytes": c.first()?, "TxBytes": c.get(8)?}))
        })
        .collect()
}

/// `/proc/PID/net/route`: IPv4 routes (addresses are little-endian hex).
fn routes(pid: i32) -> Vec<Value> {
    let Ok(text) = read(&format!("/proc/{pid}/net/route")) else {
        return Vec::new();
    };
    text.lines()
        .skip(1)
        .filter_map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            let hex = |s: &str| u32::from_str_radix(s, 16).ok().map(|n| Ipv4Addr::from(n.swap_bytes()));
            let (iface, dest, gateway, mask) = (f.first()?, hex(f.get(1)?)?, hex(f.get(2)?)?, hex(f.get(7)?)?);
            let prefix = u32::from(mask).count_ones();
            Some(json!({
                "Destination": if prefix == 0 { "default".to_string() } else { format!("{dest}/{prefix}") },
                "Gateway": (!gateway.is_unspecified()).then(|| gateway.to_string()),
                "Interface": iface,
            }))
        })
        .collect()
}

/// Sockets waiting for connections (TCP in LISTEN) or datagrams (bound UDP),
/// from `/proc/PID/net/{tcp,tcp6,udp,udp6}`.
fn listening(pid: i32) -> Vec<Value> {
    let mut out = Vec::new();
    for (file, proto, wanted_state) in [
        ("tcp", "tcp", "0A"),
        ("tcp6", "tcp6", "0A"),
        ("udp", "udp", "07"),
        ("udp6", "udp6", "07"),
    ] {
        let Ok(text) = read(&format!("/proc/{pid}/net/{file}")) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() < 4 || f[3] != wanted_state {
                continue;
            }
            if let Some(address) = socket_address(f[1]) {
                out.push(json!({"Proto": proto, "Address": address}));
            }
        }
    }
    out
}

/// `0100007F:0050` -> `127.0.0.1:80`; 32 hex digits for IPv6 (four
/// little-endian 32-bit words) -> `[::1]:80`.
fn socket_address(text: &str) -> Option<String> {
    let (ip, port) = text.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    match ip.len() {
        8 => {
            let n = u32::from_str_radix(ip, 16).ok()?;
            Some(format!("{}:{port}", Ipv4Addr::from(n.swap_bytes())))
        }
        32 => {
            let mut bytes = [0u8; 16];
            for word in 0..4 {
                let n = u32::from_str_radix(&ip[word * 8..word * 8 + 8], 16).ok()?;
                bytes[word * 4..word * 4 + 4].copy_from_slice(&n.to_le_bytes());
            }
            Some(format!("[{}]:{port}", Ipv6Addr::from(bytes)))
        }
        _ => None,
    }
}

/// The text report of [`report`]'s JSON.
pub fn render(v: &Value) -> String {
    let pid = &v["Pid"];
    let mut out = String::new();
    let id = v["Id"].as_str().unwrap_or("");
    let _ = writeln!(
        out,
        "container {} ({}): PID 1 is pid {pid} on the host; its monitor is pid {}",
        v["Name"].as_str().unwrap_or(""),
        &id[..id.len().min(12)],
        v["MonitorPid"]
    );

    let _ = writeln!(
        out,
        "\nnamespaces  (readlink /proc/{pid}/ns/*; the host's: {}/*)",
        str_of(&v["HostNamespaces"])
    );
    for ns in v["Namespaces"].as_array().into_iter().flatten() {
        let whose = if ns["Shared"].as_bool() == Some(true) {
            "the host's".to_string()
        } else {
            format!("its own (host: {})", ns["HostInode"])
        };
        let _ = writeln!(
            out,
            "  {:<18} {:<12} {whose}",
            str_of(&ns["Type"]),
            ns["Inode"]
        );
    }

    let cg = &v["Cgroups"];
    let _ = writeln!(out, "\ncgroups  (/proc/{pid}/cgroup)");
    for line in cg["Membership"].as_array().into_iter().flatten() {
        let _ = writeln!(out, "  {}", str_of(line));
    }
    let stats = &cg["Stats"];
    let _ = writeln!(
        out,
        "  memory  {} used, limit {}{}",
        bytes(&stats["memory_usage_bytes"]),
        limit_bytes(&stats["memory_limit_bytes"]),
        match stats["oom_kills"].as_u64() {
            Some(n) if n > 0 => format!(", {n} OOM kill(s)"),
            _ => String::new(),
        }
    );
    let _ = writeln!(
        out,
        "  pids    {} of {}",
        number(&stats["pids_current"]),
        stats["pids_limit"]
            .as_u64()
            .map(|n| n.to_string())
            .unwrap_or_else(|| "unlimited".into())
    );
    if let Some(ns) = stats["cpu_usage_ns"].as_u64() {
        let _ = writeln!(out, "  cpu     {:.3} s used", ns as f64 / 1e9);
    }
    for limit in cg["Limits"].as_array().into_iter().flatten() {
        let value = str_of(&limit["Value"]);
        // v1 writes "no limit" as the largest page-aligned 63-bit number.
        let unlimited =
            value == "max" || value == "-1" || value.parse::<u64>().is_ok_and(|n| n >= 1 << 62);
        let note = if unlimited { "  (unlimited)" } else { "" };
        let _ = writeln!(out, "  {} = {value}{note}", str_of(&limit["File"]));
    }

    let _ = writeln!(
        out,
        "\nmounts  (/proc/{pid}/mountinfo, as the container sees them)"
    );
    for m in v["Mounts"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  {:<22} {:<9} {:<12} {}",
            str_of(&m["Target"]),
            str_of(&m["Type"]),
            str_of(&m["Source"]),
            str_of(&m["Options"])
        );
    }

    let _ = writeln!(
        out,
        "\ncapabilities  (/proc/{pid}/status: CapEff, CapPrm, CapInh, CapBnd, CapAmb)"
    );
    for set in [
        "Effective",
        "Permitted",
        "Inheritable",
        "Bounding",
        "Ambient",
    ] {
        let names: Vec<&str> = v["Capabilities"][set]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(Value::as_str)
            .collect();
        let shown = if names.is_empty() {
            "(none)".to_string()
        } else {
            names.join(" ")
        };
        let _ = writeln!(out, "  {:<12} {shown}", set.to_lowercase());
    }

    let s = &v["Security"];
    let _ = writeln!(out, "\nsecurity  (/proc/{pid}/status)");
    let filters = s["SeccompFilters"]
        .as_u64()
        .map(|n| format!(" ({n} filter(s))"))
        .unwrap_or_default();
    let _ = writeln!(out, "  seccomp       {}{filters}", str_of(&s["Seccomp"]));
    let _ = writeln!(out, "  no_new_privs  {}", s["NoNewPrivs"]);
    let _ = writeln!(
        out,
        "  uid           {}   (real, effective, saved, filesystem)",
        str_of(&s["Uid"])
    );
    let _ = writeln!(out, "  gid           {}", str_of(&s["Gid"]));
    let _ = writeln!(out, "  groups        {}", str_of(&s["Groups"]));

    let n = &v["Network"];
    let _ = writeln!(
        out,
        "\nnetwork  (mode {}; /proc/{pid}/net/*)",
        str_of(&n["Mode"])
    );
    for i in n["Interfaces"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  interface {:<8} received {}, sent {}",
            str_of(&i["Name"]),
            bytes(&i["RxBytes"]),
            bytes(&i["TxBytes"])
        );
    }
    for r in n["Routes"].as_array().into_iter().flatten() {
        let via = r["Gateway"]
            .as_str()
            .map(|g| format!(" via {g}"))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "  route     {}{via} dev {}",
            str_of(&r["Destination"]),
            str_of(&r["Interface"])
        );
    }
    for l in n["Listening"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  listening {} {}",
            str_of(&l["Proto"]),
            str_of(&l["Address"])
        );
    }
    if let Some(e) = n["Endpoint"].as_object() {
        let _ = writeln!(
            out,
            "  veth      {} on the host, in bridge {} (/sys/class/net/{}/master); eth0 inside: {}/{} via {}",
            str_of(&e["HostVeth"]),
            e["Bridge"].as_str().unwrap_or("(none)"),
            str_of(&e["HostVeth"]),
            str_of(&e["IPAddress"]),
            e["PrefixLen"],
            str_of(&e["Gateway"])
        );
    }
    for p in n["Published"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "  published {} (nft list table ip {})",
            str_of(p),
            str_of(&n["FirewallTable"])
        );
    }
    out
}

fn str_of(v: &Value) -> &str {
    v.as_str().unwrap_or("")
}

fn number(v: &Value) -> String {
    v.as_u64()
        .map(|n| n.to_string())
        .unwrap_or_else(|| "?".into())
}

fn bytes(v: &Value) -> String {
    match v.as_u64() {
        None => "?".into(),
        Some(n) if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        Some(n) if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        Some(n) if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        Some(n) => format!("{n} B"),
    }
}

fn limit_bytes(v: &Value) -> String {
    match v.as_u64() {
        None => "none".into(),
        Some(_) => bytes(v),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_addresses_decode_from_proc_net_hex() {
        assert_eq!(socket_address("0100007F:0050").unwrap(), "127.0.0.1:80");
        assert_eq!(socket_address("00000000:1F90").unwrap(), "0.0.0.0:8080");
        assert_eq!(
            socket_address("00000000000000000000000001000000:0016").unwrap(),
            "[::1]:22"
        );
        assert_eq!(socket_address("nonsense"), None);
    }

    #[test]
    fn capability_masks_decode_to_names() {
        // docker's default set: 0x00000000a80425fb
        let names = capability_names(0xa80425fb);
        assert_eq!(names.len(), 14, "{names:?}");
        assert_eq!(names[0], "CAP_CHOWN");
        assert!(names.contains(&"CAP_NET_BIND_SERVICE".to_string()));
        assert!(!names.contains(&"CAP_SYS_ADMIN".to_string()));
        assert!(capability_names(0).is_empty());
    }

    #[test]
    fn namespace_links_give_their_inode() {
        assert_eq!(inode_of("net:[4026532008]"), 4026532008);
        assert_eq!(inode_of("pid_for_children:[4026531836]"), 4026531836);
    }

    #[test]
    fn mountinfo_paths_are_unescaped() {
        assert_eq!(unescape(r"/a\040b"), "/a b");
        assert_eq!(unescape("/plain"), "/plain");
    }
}
