//! Conformance: generated configs, each run with berth-checker inside the
//! container, which verifies from the inside that everything config.json
//! asked for was applied (identity, capabilities, rlimits, hostname,
//! namespaces, mounts and their options, masked and read-only paths,
//! devices, sysctls, seccomp, cgroup limits, oomScoreAdj, time offsets).

mod runtime_support;

use std::path::Path;
use std::process::Command;

use berth_tests::describe;
use runtime_support::*;
use serde_json::{json, Value};

/// Put the checker (and the shared libraries it links) into the rootfs, and
/// a copy of the config and of the host's namespace inodes next to it.
fn install_checker(bundle: &Bundle) {
    let checker = Path::new(env!("CARGO_BIN_EXE_berth-checker"));
    let root = bundle.rootfs();
    let dir = root.join("berth-check");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::copy(checker, dir.join("checker")).unwrap();
    let ldd = Command::new("ldd").arg(checker).output().expect("ldd");
    for line in String::from_utf8_lossy(&ldd.stdout).lines() {
        // "libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)" or "/lib64/ld-linux-x86-64.so.2 (0x...)"
        let path = line
            .split("=>")
            .last()
            .and_then(|s| s.split_whitespace().next())
            .filter(|p| p.starts_with('/'));
        if let Some(lib) = path {
            let target = root.join(lib.trim_start_matches('/'));
            std::fs::create_dir_all(target.parent().unwrap()).unwrap();
            std::fs::copy(lib, &target).unwrap();
        }
    }
    let mut host_ns = serde_json::Map::new();
    for kind in ["pid", "net", "ipc", "uts", "mnt", "cgroup", "user", "time"] {
        if let Ok(link) = std::fs::read_link(format!("/proc/self/ns/{kind}")) {
            let inode: u64 = link
                .to_string_lossy()
                .rsplit('[')
                .next()
                .unwrap()
                .trim_end_matches(']')
                .parse()
                .unwrap();
            host_ns.insert(kind.into(), inode.into());
        }
    }
    std::fs::write(dir.join("host-ns.json"), Value::Object(host_ns).to_string()).unwrap();
    std::fs::write(
        dir.join("config.json"),
        serde_json::to_vec_pretty(&bundle.config).unwrap(),
    )
    .unwrap();
}

fn checker_bundle() -> Bundle {
    Bundle::new(&[
        "/berth-check/checker",
        "/berth-check/config.json",
        "/berth-check/host-ns.json",
    ])
}

/// Run the checker in a container of `bundle`; panic with its report on failure.
fn run_checker(rt: &Runtime, bundle: &Bundle, extra: &[&str]) -> String {
    install_checker(bundle);
    bundle.write();
    let id = unique_id("conf");
    rt.track(&id);
    let mut args: Vec<&str> = vec!["run", "--bundle", bundle.path().to_str().unwrap()];
    args.extend_from_slice(extra);
    args.push(&id);
    let out = rt.run(&args);
    let report = stdout(&out);
    assert!(
        out.status.success(),
        "berth-checker found differences:\n{}",
        describe(&out)
    );
    assert!(report.contains("0 failure(s)"), "{report}");
    assert_nothing_left(rt, &id, bundle);
    report
}

#[test]
fn identity_capabilities_rlimits_and_process_attributes() {
    let rt = Runtime::new();
    let mut bundle = checker_bundle();
    let p = &mut bundle.config["process"];
    p["user"] = json!({"uid": 1000, "gid": 1000, "additionalGids": [10, 20], "umask": 23});
    p["cwd"] = json!("/tmp");
    p["env"] = json!(["PATH=/bin:/usr/bin", "GREETING=hello world", "EMPTY="]);
    p["capabilities"] = json!({
        "bounding": ["CAP_CHOWN", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
        "effective": ["CAP_KILL"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "inheritable": ["CAP_KILL"],
        "ambient": ["CAP_KILL"]
    });
    p["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 512, "hard": 1024},
        {"type": "RLIMIT_NPROC", "soft": 1000, "hard": 2000},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    p["noNewPrivileges"] = json!(true);
    p["oomScoreAdj"] = json!(500);
    bundle.config["hostname"] = json!("conformance");
    bundle.config["domainname"] = json!("example.org");
    let report = run_checker(&rt, &bundle, &[]);
    for line in [
        "ok user.additionalGids",
        "ok capabilities.ambient",
        "ok rlimits.RLIMIT_NPROC",
        "ok domainname",
    ] {
        assert!(report.contains(line), "{line} was checked:\n{report}");
    }
}

#[test]
fn filesystem_mounts_devices_masks_and_sysctls() {
    let rt = Runtime::new();
    let mut bundle = checker_bundle();
    let host_dir = bundle.path().join("hostdata");
    std::fs::create_dir(&host_dir).unwrap();
    bundle.config["root"]["readonly"] = json!(true);
    bundle.add_mount(
        json!({"destination": "/data", "type": "tmpfs", "source": "tmpfs",
                            "options": ["ro", "nosuid", "nodev", "noexec", "size=1m"]}),
    );
    bundle.add_mount(
        json!({"destination": "/hostdata", "type": "bind", "source": host_dir,
                            "options": ["rbind", "ro", "nosuid"]}),
    );
    bundle.add_mount(
        json!({"destination": "/tmp", "type": "tmpfs", "source": "tmpfs",
                            "options": ["nosuid", "nodev"]}),
    );
    let linux = &mut bundle.config["linux"];
    linux["devices"] = json!([
        {"path": "/dev/fuse", "type": "c", "major": 10, "minor": 229, "fileMode": 384, "uid": 0, "gid": 0},
        {"path": "/dev/custom-fifo", "type": "p", "major": 0, "minor": 0, "fileMode": 420, "uid": 1, "gid": 2}
    ]);
    linux["maskedPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/proc/timer_list"));
    linux["readonlyPaths"]
        .as_array_mut()
        .unwrap()
        .push(json!("/etc"));
    linux["sysctl"] = json!({"net.ipv4.ip_forward": "1", "kernel.shmmni": "2048", "net.ipv4.ip_local_port_range": "20000 30000"});
    let report = run_checker(&rt, &bundle, &[]);
    for line in [
        "ok mount /data ro",
        "ok mount /hostdata ro",
        "ok device /dev/fuse mode",
        "ok device /dev/custom-fifo owner",
        "ok masked file /proc/timer_list reads empty",
        "ok readonly /etc",
        "ok sysctl net.ipv4.ip_forward",
        "ok root.readonly",
        "ok namespace net is the container's own",
        "ok namespace user is the host's",
    ] {
        assert!(report.contains(line), "{line} was checked:\n{report}");
    }
}

#[test]
fn seccomp_and_cgroup_limits() {
    let rt = Runtime::new();
    let mut bundle = checker_bundle();
    // Without no_new_privs the filter is installed while the runtime still
    // has CAP_SYS_ADMIN; the checker's own syscalls must pass it.
    bundle.config["process"]["noNewPrivileges"] = json!(false);
    let linux = &mut bundle.config["linux"];
    linux["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["getppid"], "action": "SCMP_ACT_ERRNO", "errnoRet": 38},
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"},
            {"names": ["getpgrp"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["personality"], "action": "SCMP_ACT_ERRNO",
             "args": [{"index": 0, "value": 8, "op": "SCMP_CMP_EQ"}]}
        ]
    });
    linux["resources"]["memory"] = json!({"limit": 134217728});
    linux["resources"]["pids"] = json!({"limit": 100});
    linux["resources"]["cpu"] = json!({"shares": 512, "quota": 50000, "period": 100000});
    let report = run_checker(&rt, &bundle, &[]);
    for line in [
        "ok seccomp getppid fails with errno",
        "ok seccomp mkdirat fails with errno",
        "ok seccomp getpgrp fails with errno",
        "ok memory.limit",
        "ok pids.limit",
        "ok cpu.shares",
    ] {
        assert!(report.contains(line), "{line} was checked:\n{report}");
    }
}

#[test]
fn a_user_namespace_with_id_maps() {
    let rt = Runtime::new();
    let mut bundle = checker_bundle();
    install_checker(&bundle);
    let status = Command::new("chown")
        .args(["-R", "100000:100000"])
        .arg(bundle.rootfs())
        .status()
        .unwrap();
    assert!(status.success());
    let linux = &mut bundle.config["linux"];
    linux["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "user"}));
    linux["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    linux["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    let report = run_checker(&rt, &bundle, &[]);
    assert!(
        report.contains("ok namespace user is the container's own"),
        "{report}"
    );
    assert!(report.contains("ok user.uid"), "{report}");
}

#[test]
fn a_time_namespace_with_offsets_and_no_pivot() {
    let rt = Runtime::new();
    let mut bundle = checker_bundle();
    let linux = &mut bundle.config["linux"];
    linux["namespaces"]
        .as_array_mut()
        .unwrap()
        .push(json!({"type": "time"}));
    linux["timeOffsets"] = json!({"monotonic": {"secs": 864000, "nanosecs": 0}});
    if !Path::new("/proc/self/ns/time").exists() {
        // An older kernel: the config is refused, with the reason.
        let out = rt.run_bundle(&bundle, &unique_id("notime"));
        assert!(
            stderr(&out).contains("no time namespaces"),
            "{}",
            describe(&out)
        );
        return;
    }
    let report = run_checker(&rt, &bundle, &["--no-pivot"]);
    assert!(report.contains("ok timeOffsets.monotonic"), "{report}");
    assert!(
        report.contains("ok namespace time is the container's own"),
        "{report}"
    );
}
