//! berth-checker: runs *inside* a container and verifies that what its
//! config.json asked for was applied — the way the OCI runtime-tools
//! validation suite and youki's contest do it.
//!
//! usage: berth-checker CONFIG.json [HOST_NAMESPACES.json]
//!
//! The test copies the bundle's config.json into the rootfs; the optional
//! second file maps namespace types to the host's namespace inode numbers
//! (`{"pid": 4026531836, ...}`) so that "new namespace" can be checked.
//! Prints one line per check (`ok ...` / `FAIL ...: wanted X, got Y`) and
//! exits 1 if any failed. Only std, serde_json and libc: it must run in a
//! busybox rootfs.

use std::collections::BTreeSet;
use std::ffi::CString;
use std::fs;
use std::path::Path;

use serde_json::Value;

struct Report {
    failures: usize,
}

impl Report {
    fn check(&mut self, name: &str, ok: bool, detail: impl FnOnce() -> String) {
        if ok {
            println!("ok {name}");
        } else {
            self.failures += 1;
            println!("FAIL {name}: {}", detail());
        }
    }

    fn equal<T: PartialEq + std::fmt::Debug>(&mut self, name: &str, wanted: T, got: T) {
        let ok = wanted == got;
        self.check(name, ok, || format!("wanted {wanted:?}, got {got:?}"));
    }
}

const CAPS: &[&str] = &[
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_DAC_READ_SEARCH",
    "CAP_FOWNER",
    "CAP_FSETID",
    "CAP_KILL",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETPCAP",
    "CAP_LINUX_IMMUTABLE",
    "CAP_NET_BIND_SERVICE",
    "CAP_NET_BROADCAST",
    "CAP_NET_ADMIN",
    "CAP_NET_RAW",
    "CAP_IPC_LOCK",
    "CAP_IPC_OWNER",
    "CAP_SYS_MODULE",
    "CAP_SYS_RAWIO",
    "CAP_SYS_CHROOT",
    "CAP_SYS_PTRACE",
    "CAP_SYS_PACCT",
    "CAP_SYS_ADMIN",
    "CAP_SYS_BOOT",
    "CAP_SYS_NICE",
    "CAP_SYS_RESOURCE",
    "CAP_SYS_TIME",
    "CAP_SYS_TTY_CONFIG",
    "CAP_MKNOD",
    "CAP_LEASE",
    "CAP_AUDIT_WRITE",
    "CAP_AUDIT_CONTROL",
    "CAP_SETFCAP",
    "CAP_MAC_OVERRIDE",
    "CAP_MAC_ADMIN",
    "CAP_SYSLOG",
    "CAP_WAKE_ALARM",
    "CAP_BLOCK_SUSPEND",
    "CAP_AUDIT_READ",
    "CAP_PERFMON",
    "CAP_BPF",
    "CAP_CHECKPOINT_RESTORE",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let Some(config_path) = args.get(1) else {
        eprintln!("usage: berth-checker CONFIG.json [HOST_NAMESPACES.json]");
        std::process::exit(2);
    };
    let config: Value =
        serde_json::from_str(&fs::read_to_string(config_path).expect("read config"))
            .expect("config is JSON");
    let host_ns: Value = args
        .get(2)
        .and_then(|p| fs::read_to_string(p).ok())
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(Value::Null);
    let mut r = Report { failures: 0 };
    let process = &config["process"];
    check_identity(&mut r, process);
    check_env_cwd(&mut r, process);
    check_capabilities(&mut r, process);
    check_rlimits(&mut r, process);
    check_process_misc(&mut r, process);
    check_hostname(&mut r, &config);
    check_namespaces(&mut r, &config, &host_ns);
    check_root_and_mounts(&mut r, &config);
    check_masked_and_readonly(&mut r, &config["linux"]);
    check_devices(&mut r, &config["linux"]);
    check_sysctl(&mut r, &config["linux"]);
    check_seccomp(&mut r, &config["linux"]);
    check_cgroup_limits(&mut r, &config["linux"]);
    check_time_offsets(&mut r, &config["linux"]);
    println!("{} failure(s)", r.failures);
    std::process::exit(if r.failures == 0 { 0 } else { 1 });
}

fn status_field(name: &str) -> String {
    fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!("{name}:"))
                .map(|v| v.trim().to_string())
        })
        .unwrap_or_default()
}

fn check_identity(r: &mut Report, process: &Value) {
    let user = &process["user"];
    // SAFETY: plain getters.
    let (uid, gid, euid) = unsafe { (libc::getuid(), libc::getgid(), libc::geteuid()) };
    r.equal("user.uid", user["uid"].as_u64().unwrap_or(0) as u32, uid);
    r.equal("user.euid", user["uid"].as_u64().unwrap_or(0) as u32, euid);
    r.equal("user.gid", user["gid"].as_u64().unwrap_or(0) as u32, gid);
    let wanted: BTreeSet<u32> = user["additionalGids"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|g| g.as_u64())
                .map(|g| g as u32)
                .collect()
        })
        .unwrap_or_default();
    let mut groups = [0 as libc::gid_t; 256];
    // SAFETY: the buffer holds 256 gids.
    let n = unsafe { libc::getgroups(256, groups.as_mut_ptr()) };
    let got: BTreeSet<u32> = groups[..n.max(0) as usize].iter().copied().collect();
    r.equal("user.additionalGids", wanted, got);
    if let Some(mask) = user["umask"].as_u64() {
        // SAFETY: umask only sets and returns the mask; restored right away.
        let current = unsafe {
            let m = libc::umask(0);
            libc::umask(m);
            m
        };
        r.equal("user.umask", mask as u32, current);
    }
}

fn check_env_cwd(r: &mut Report, process: &Value) {
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    for wanted in process["env"].as_array().into_iter().flatten() {
        let wanted = wanted.as_str().unwrap_or_default();
        r.check(
            &format!("env {wanted}"),
            env.iter().any(|e| e == wanted),
            || format!("not in {env:?}"),
        );
    }
    let cwd = std::env::current_dir()
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    r.equal(
        "cwd",
        process["cwd"].as_str().unwrap_or("/").to_string(),
        cwd,
    );
}

fn cap_mask(set: &Value) -> u64 {
    set.as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| CAPS.iter().position(|c| Some(*c) == n.as_str()))
        .fold(0u64, |acc, bit| acc | (1 << bit))
}

fn check_capabilities(r: &mut Report, process: &Value) {
    let caps = &process["capabilities"];
    if caps.is_null() {
        return;
    }
    for (set, field) in [
        ("bounding", "CapBnd"),
        ("effective", "CapEff"),
        ("permitted", "CapPrm"),
        ("inheritable", "CapInh"),
        ("ambient", "CapAmb"),
    ] {
        let got = u64::from_str_radix(&status_field(field), 16).unwrap_or(u64::MAX);
        // The configured sets are what the runtime set before execve; the
        // checker sees them after it (capabilities(7), "Transformation of
        // capabilities during execve"): for uid 0 the file sets count as
        // full, so permitted = effective = inheritable | bounding | ambient;
        // for other uids (no file capabilities) only the ambient set
        // survives into permitted and effective.
        let uid_is_root = process["user"]["uid"].as_u64().unwrap_or(0) == 0;
        let wanted = match set {
            "effective" | "permitted" if uid_is_root => {
                cap_mask(&caps["bounding"])
                    | cap_mask(&caps["inheritable"])
                    | cap_mask(&caps["ambient"])
            }
            "effective" | "permitted" => cap_mask(&caps["ambient"]),
            _ => cap_mask(&caps[set]),
        };
        r.check(&format!("capabilities.{set}"), wanted == got, || {
            format!("wanted {wanted:#x}, got {got:#x}")
        });
    }
}

fn rlimit_resource(name: &str) -> Option<libc::__rlimit_resource_t> {
    Some(match name {
        "RLIMIT_CPU" => libc::RLIMIT_CPU,
        "RLIMIT_FSIZE" => libc::RLIMIT_FSIZE,
        "RLIMIT_DATA" => libc::RLIMIT_DATA,
        "RLIMIT_STACK" => libc::RLIMIT_STACK,
        "RLIMIT_CORE" => libc::RLIMIT_CORE,
        "RLIMIT_NPROC" => libc::RLIMIT_NPROC,
        "RLIMIT_NOFILE" => libc::RLIMIT_NOFILE,
        "RLIMIT_MEMLOCK" => libc::RLIMIT_MEMLOCK,
        "RLIMIT_AS" => libc::RLIMIT_AS,
        "RLIMIT_MSGQUEUE" => libc::RLIMIT_MSGQUEUE,
        "RLIMIT_NICE" => libc::RLIMIT_NICE,
        "RLIMIT_RTPRIO" => libc::RLIMIT_RTPRIO,
        _ => return None,
    })
}

fn check_rlimits(r: &mut Report, process: &Value) {
    for limit in process["rlimits"].as_array().into_iter().flatten() {
        let name = limit["type"].as_str().unwrap_or_default();
        let Some(resource) = rlimit_resource(name) else {
            continue;
        };
        let mut got = libc::rlimit {
            rlim_cur: 0,
            rlim_max: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::getrlimit(resource, &mut got) };
        r.equal(
            &format!("rlimits.{name}"),
            (
                limit["soft"].as_u64().unwrap_or(0),
                limit["hard"].as_u64().unwrap_or(0),
            ),
            (got.rlim_cur, got.rlim_max),
        );
    }
}

fn check_process_misc(r: &mut Report, process: &Value) {
    let nnp = process["noNewPrivileges"].as_bool().unwrap_or(false);
    r.equal(
        "noNewPrivileges",
        if nnp { "1" } else { "0" }.to_string(),
        status_field("NoNewPrivs"),
    );
    if let Some(score) = process["oomScoreAdj"].as_i64() {
        let got = fs::read_to_string("/proc/self/oom_score_adj").unwrap_or_default();
        r.equal("oomScoreAdj", score.to_string(), got.trim().to_string());
    }
}

fn check_hostname(r: &mut Report, config: &Value) {
    // SAFETY: uname fills the struct.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    unsafe { libc::uname(&mut uts) };
    let field = |f: &[libc::c_char]| {
        // SAFETY: utsname fields are NUL-terminated.
        unsafe { std::ffi::CStr::from_ptr(f.as_ptr()) }
            .to_string_lossy()
            .into_owned()
    };
    if let Some(name) = config["hostname"].as_str() {
        r.equal("hostname", name.to_string(), field(&uts.nodename));
    }
    if let Some(name) = config["domainname"].as_str() {
        r.equal("domainname", name.to_string(), field(&uts.domainname));
    }
}

fn ns_inode(kind: &str) -> u64 {
    let link = fs::read_link(format!("/proc/self/ns/{kind}")).unwrap_or_default();
    let text = link.to_string_lossy();
    text.rsplit('[')
        .next()
        .and_then(|s| s.trim_end_matches(']').parse().ok())
        .unwrap_or(0)
}

fn check_namespaces(r: &mut Report, config: &Value, host_ns: &Value) {
    if host_ns.is_null() {
        return;
    }
    let file_name = |t: &str| {
        match t {
            "mount" => "mnt",
            "network" => "net",
            other => other,
        }
        .to_string()
    };
    let listed: Vec<String> = config["linux"]["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|n| n["type"].as_str().map(file_name))
        .collect();
    for kind in ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user", "time"] {
        let Some(host) = host_ns[kind].as_u64() else {
            continue;
        };
        let got = ns_inode(kind);
        if listed.iter().any(|l| l == kind) {
            r.check(
                &format!("namespace {kind} is the container's own"),
                got != host,
                || format!("still the host's ({host})"),
            );
        } else {
            r.equal(&format!("namespace {kind} is the host's"), host, got);
        }
    }
}

fn statvfs_flags(path: &str) -> Option<u64> {
    let c = CString::new(path).ok()?;
    // SAFETY: statvfs fills the struct for a valid C path.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    if unsafe { libc::statvfs(c.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(st.f_flag)
}

fn mountinfo() -> Vec<(String, String, String)> {
    fs::read_to_string("/proc/self/mountinfo")
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (a, b) = l.split_once(" - ")?;
            let f: Vec<&str> = a.split(' ').collect();
            let fstype = b.split(' ').next()?.to_string();
            Some((f.get(4)?.to_string(), f.get(5)?.to_string(), fstype))
        })
        .collect()
}

fn check_root_and_mounts(r: &mut Report, config: &Value) {
    let root_ro = config["root"]["readonly"].as_bool().unwrap_or(false);
    let flags = statvfs_flags("/").unwrap_or(0);
    r.equal("root.readonly", root_ro, flags & libc::ST_RDONLY != 0);
    let mounts = mountinfo();
    for m in config["mounts"].as_array().into_iter().flatten() {
        let dest = m["destination"].as_str().unwrap_or_default();
        let fstype = m["type"].as_str().unwrap_or("none");
        let options: Vec<&str> = m["options"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|o| o.as_str())
            .collect();
        // The last mount at that point is the visible one.
        let Some((_, opts, fs)) = mounts.iter().rev().find(|(p, _, _)| p == dest) else {
            r.check(&format!("mount {dest}"), false, || "not mounted".into());
            continue;
        };
        let bind = options.iter().any(|o| *o == "bind" || *o == "rbind");
        if !bind && fstype != "cgroup" && fstype != "sysfs" && fstype != "mqueue" {
            r.equal(
                &format!("mount {dest} type"),
                fstype.to_string(),
                fs.clone(),
            );
        }
        let per_mount: Vec<&str> = opts.split(',').collect();
        for flag in ["ro", "nosuid", "nodev", "noexec"] {
            if options.contains(&flag) {
                r.check(
                    &format!("mount {dest} {flag}"),
                    per_mount.contains(&flag),
                    || format!("options are {opts}"),
                );
            }
        }
    }
}

fn check_masked_and_readonly(r: &mut Report, linux: &Value) {
    for path in linux["maskedPaths"].as_array().into_iter().flatten() {
        let path = path.as_str().unwrap_or_default();
        let p = Path::new(path);
        if !p.exists() {
            continue;
        }
        if p.is_dir() {
            let entries = fs::read_dir(p).map(|d| d.count()).unwrap_or(0);
            r.equal(&format!("masked dir {path} is empty"), 0, entries);
        } else {
            let len = fs::read(p).map(|b| b.len()).unwrap_or(0);
            r.equal(&format!("masked file {path} reads empty"), 0, len);
        }
    }
    for path in linux["readonlyPaths"].as_array().into_iter().flatten() {
        let path = path.as_str().unwrap_or_default();
        if !Path::new(path).exists() {
            continue;
        }
        let ro = statvfs_flags(path).is_some_and(|f| f & libc::ST_RDONLY != 0);
        r.check(&format!("readonly {path}"), ro, || {
            "mounted read-write".into()
        });
    }
}

fn check_devices(r: &mut Report, linux: &Value) {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    // (path, type, major, minor, mode, uid, gid)
    type Expected = (String, String, u64, u64, Option<u32>, u32, u32);
    let mut expected: Vec<Expected> = vec![
        ("/dev/null".into(), "c".into(), 1, 3, None, 0, 0),
        ("/dev/zero".into(), "c".into(), 1, 5, None, 0, 0),
        ("/dev/full".into(), "c".into(), 1, 7, None, 0, 0),
        ("/dev/random".into(), "c".into(), 1, 8, None, 0, 0),
        ("/dev/urandom".into(), "c".into(), 1, 9, None, 0, 0),
        ("/dev/tty".into(), "c".into(), 5, 0, None, 0, 0),
    ];
    for d in linux["devices"].as_array().into_iter().flatten() {
        let path = d["path"].as_str().unwrap_or_default().to_string();
        expected.retain(|e| e.0 != path);
        expected.push((
            path,
            d["type"].as_str().unwrap_or("c").to_string(),
            d["major"].as_u64().unwrap_or(0),
            d["minor"].as_u64().unwrap_or(0),
            d["fileMode"].as_u64().map(|m| m as u32),
            d["uid"].as_u64().unwrap_or(0) as u32,
            d["gid"].as_u64().unwrap_or(0) as u32,
        ));
    }
    // In a new user namespace the runtime cannot mknod: the default devices
    // are the host's nodes bind-mounted, owned by the host's (unmapped) root.
    let user_ns = linux["namespaces"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|n| n["type"] == "user");
    for (path, kind, major, minor, mode, uid, gid) in expected {
        let Ok(meta) = fs::metadata(&path) else {
            r.check(&format!("device {path}"), false, || "missing".into());
            continue;
        };
        let ft = meta.file_type();
        let kind_ok = match kind.as_str() {
            "b" => ft.is_block_device(),
            "p" => ft.is_fifo(),
            _ => ft.is_char_device(),
        };
        r.check(&format!("device {path} type {kind}"), kind_ok, || {
            format!("{ft:?}")
        });
        if kind != "p" {
            let rdev = meta.rdev();
            let got = (libc::major(rdev) as u64, libc::minor(rdev) as u64);
            r.equal(&format!("device {path} number"), (major, minor), got);
        }
        if let Some(mode) = mode {
            r.equal(
                &format!("device {path} mode"),
                mode & 0o7777,
                meta.mode() & 0o7777,
            );
        }
        if !user_ns {
            r.equal(
                &format!("device {path} owner"),
                (uid, gid),
                (meta.uid(), meta.gid()),
            );
        }
    }
    for (link, target) in [("/dev/fd", "/proc/self/fd"), ("/dev/ptmx", "pts/ptmx")] {
        let got = fs::read_link(link)
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        r.equal(&format!("symlink {link}"), target.to_string(), got);
    }
}

fn check_sysctl(r: &mut Report, linux: &Value) {
    for (key, value) in linux["sysctl"].as_object().into_iter().flatten() {
        let path = format!("/proc/sys/{}", key.replace('.', "/"));
        let got = fs::read_to_string(&path).unwrap_or_default();
        r.equal(
            &format!("sysctl {key}"),
            value
                .as_str()
                .unwrap_or_default()
                .split_whitespace()
                .collect::<Vec<_>>(),
            got.split_whitespace().collect(),
        );
    }
}

/// Try a syscall whose config rule has no argument conditions; returns the
/// errno it failed with (0 if it succeeded).
fn try_syscall(name: &str) -> Option<i32> {
    // SAFETY: harmless syscalls with valid arguments; errno read right after.
    unsafe {
        let rc = match name {
            "getppid" => libc::syscall(libc::SYS_getppid),
            "getpgrp" => libc::syscall(libc::SYS_getpgrp),
            "mkdir" | "mkdirat" => {
                let p = CString::new("/tmp/berth-checker-seccomp").ok()?;
                let rc = libc::mkdirat(libc::AT_FDCWD, p.as_ptr(), 0o700);
                if rc < 0 {
                    return Some(*libc::__errno_location());
                }
                libc::rmdir(p.as_ptr());
                0
            }
            "uname" => {
                let mut u: libc::utsname = std::mem::zeroed();
                libc::syscall(libc::SYS_uname, &mut u)
            }
            _ => return None,
        };
        Some(if rc < 0 { *libc::__errno_location() } else { 0 })
    }
}

fn check_seccomp(r: &mut Report, linux: &Value) {
    let profile = &linux["seccomp"];
    if profile.is_null() {
        return;
    }
    let mode = status_field("Seccomp");
    r.equal("seccomp mode is filter", "2".to_string(), mode);
    for rule in profile["syscalls"].as_array().into_iter().flatten() {
        if rule["action"] != "SCMP_ACT_ERRNO"
            || rule["args"].as_array().is_some_and(|a| !a.is_empty())
        {
            continue;
        }
        let errno = rule["errnoRet"].as_i64().unwrap_or(libc::EPERM as i64) as i32;
        for name in rule["names"].as_array().into_iter().flatten() {
            let name = name.as_str().unwrap_or_default();
            if let Some(got) = try_syscall(name) {
                r.equal(&format!("seccomp {name} fails with errno"), errno, got);
            }
        }
    }
}

fn read_first(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find_map(|p| fs::read_to_string(p).ok())
        .map(|s| s.trim().to_string())
}

fn check_cgroup_limits(r: &mut Report, linux: &Value) {
    let res = &linux["resources"];
    if let Some(limit) = res["memory"]["limit"].as_i64() {
        let got = read_first(&[
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory.max",
        ]);
        r.equal("memory.limit", Some(limit.to_string()), got);
    }
    if let Some(limit) = res["pids"]["limit"].as_i64() {
        let got = read_first(&["/sys/fs/cgroup/pids/pids.max", "/sys/fs/cgroup/pids.max"]);
        r.equal("pids.limit", Some(limit.to_string()), got);
    }
    if let Some(shares) = res["cpu"]["shares"].as_u64() {
        if let Some(got) = read_first(&["/sys/fs/cgroup/cpu/cpu.shares"]) {
            r.equal("cpu.shares", shares.to_string(), got);
        }
    }
    if let Some(quota) = res["cpu"]["quota"].as_i64() {
        if let Some(got) = read_first(&["/sys/fs/cgroup/cpu/cpu.cfs_quota_us"]) {
            r.equal("cpu.quota", quota.to_string(), got);
        } else if let Some(got) = read_first(&["/sys/fs/cgroup/cpu.max"]) {
            r.equal(
                "cpu.quota",
                quota.to_string(),
                got.split(' ').next().unwrap_or("").to_string(),
            );
        }
    }
}

fn check_time_offsets(r: &mut Report, linux: &Value) {
    if let Some(secs) = linux["timeOffsets"]["monotonic"]["secs"].as_i64() {
        let mut ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
        r.check("timeOffsets.monotonic", ts.tv_sec >= secs, || {
            format!(
                "CLOCK_MONOTONIC is {} s, below the offset {secs} s",
                ts.tv_sec
            )
        });
    }
}
