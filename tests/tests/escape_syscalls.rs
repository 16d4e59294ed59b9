//! Escapes attempted from inside a default container with real system calls
//! (berth-attacker): "shocker" open_by_handle_at, mount, module loading,
//! keyctl, a new user namespace to regain capabilities, the cgroup v1
//! release_agent, /proc/sysrq-trigger, /proc/kcore, the kernel's usermode
//! helpers, the host's disk. Every attempt must be refused, and the tests
//! show *which* defense refuses it: the seccomp profile first (errno EPERM
//! from the filter, ENOSYS for clone3), the missing capability second (the
//! same attempts with seccomp=unconfined), and that the profile opens a
//! call only with its capability (--cap-add SYS_ADMIN makes mount work).

mod escape_support;
mod images_support;

use std::collections::BTreeMap;

use berth_tests::describe;
use escape_support::{attack_results, Lab, ATTACKER};

/// Attacks that seccomp refuses with EPERM in a default container.
const SECCOMP_EPERM: [&str; 23] = [
    "open_by_handle_at",
    "mount_tmpfs",
    "mount_cgroup_v1",
    "umount_masked_path",
    "unshare_user_ns",
    "cve_2022_0492_unshare",
    "clone_user_ns",
    "init_module",
    "finit_module",
    "delete_module",
    "keyctl",
    "add_key",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "kexec_load",
    "reboot",
    "swapon",
    "clock_settime",
    "io_uring_setup",
    "socket_vsock",
    "personality_no_aslr",
    "setns",
];

/// MAJOR:MINOR of a block device the host itself can open (a sandboxed
/// host may refuse its own disk even to root), for the attacker to mknod.
fn host_openable_block_device() -> String {
    use std::os::unix::fs::MetadataExt;
    let mut candidates: Vec<String> = std::fs::read_to_string("/proc/partitions")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3).map(|n| format!("/dev/{n}")))
        .collect();
    candidates.extend(["/dev/loop0".to_string(), "/dev/zram0".to_string()]);
    let disk = candidates
        .into_iter()
        .find(|p| std::fs::File::open(p).is_ok())
        .expect("a block device the host can open");
    let rdev = std::fs::metadata(&disk).unwrap().rdev();
    format!("{}:{}", libc::major(rdev), libc::minor(rdev))
}

fn attacks(lab: &Lab, flags: &[&str]) -> BTreeMap<String, (bool, String)> {
    let disk = format!("BERTH_ATTACK_DISK={}", host_openable_block_device());
    let mut args = vec!["run", "--rm", "-e", &disk];
    args.extend_from_slice(flags);
    args.extend_from_slice(&["attacker", ATTACKER, "syscalls"]);
    attack_results(&lab.run(&args))
}

fn assert_refused(results: &BTreeMap<String, (bool, String)>, name: &str, errno: Option<&str>) {
    let (refused, detail) = results
        .get(name)
        .unwrap_or_else(|| panic!("attack {name} was not attempted: {results:?}"));
    assert!(refused, "ESCAPE: {name} succeeded: {detail}");
    if let Some(errno) = errno {
        assert_eq!(detail, errno, "{name} refused with the expected errno");
    }
}

#[test]
fn a_default_container_refuses_every_escape_attempt() {
    let lab = Lab::new().with_attacker();
    let results = attacks(&lab, &[]);
    let escaped: Vec<_> = results
        .iter()
        .filter(|(_, (refused, _))| !refused)
        .collect();
    assert!(escaped.is_empty(), "ESCAPES: {escaped:?}");
    for name in SECCOMP_EPERM {
        assert_refused(&results, name, Some("EPERM"));
    }
    assert_refused(&results, "clone3_user_ns", Some("ENOSYS"));
    assert_refused(&results, "pivot_root", Some("EPERM"));
    // /proc/sys is read-only; sysfs is mounted read-only.
    assert_refused(
        &results,
        "write_proc_sys_kernel_core_pattern",
        Some("EROFS"),
    );
    assert_refused(&results, "write_proc_sys_kernel_modprobe", None);
    assert_refused(&results, "write_proc_sys_vm_drop_caches", Some("EROFS"));
    assert_refused(&results, "write_sys_kernel_uevent_helper", None);
    // The device cgroup refuses opening a node of the host's disk.
    assert_refused(&results, "open_host_disk", Some("EPERM"));
    assert_refused(
        &results,
        "chroot_breakout",
        Some("stayed-in-container-root"),
    );
    assert_refused(&results, "open_proc_sysrq_trigger", None);
    assert_refused(&results, "read_proc_kcore", None);
    for (name, (refused, detail)) in &results {
        if name.starts_with("write_release_agent") || name.starts_with("write_notify_on_release") {
            assert!(refused, "{name}: {detail}");
        }
    }
}

/// seccomp is the first wall; the kernel's capability checks are the second:
/// with the filter off, the attacks that need a capability the container
/// lacks still fail. (Some attacks need no capability at all — the kernel
/// keyring, an unprivileged user namespace, io_uring, vsock — and only the
/// filter refuses them; the first test shows it does.)
#[test]
fn without_seccomp_the_missing_capabilities_still_refuse() {
    let lab = Lab::new().with_attacker();
    let results = attacks(&lab, &["--security-opt", "seccomp=unconfined"]);
    for name in [
        "open_by_handle_at",
        "mount_tmpfs",
        "mount_cgroup_v1",
        "umount_masked_path",
        "init_module",
        "finit_module",
        "kexec_load",
        "reboot",
        "swapon",
        "clock_settime",
        "pivot_root",
        "open_host_disk",
        "chroot_breakout",
        "write_proc_sys_kernel_core_pattern",
    ] {
        assert_refused(&results, name, None);
    }
    // CVE-2022-0492: whatever step the kernel lets through, writing the
    // release_agent of a hierarchy mounted in a user namespace is refused.
    if let Some((refused, detail)) = results.get("cve_2022_0492_write_release_agent") {
        assert!(refused, "ESCAPE: {detail}");
    }
}

/// The profile's conditional entries: CAP_SYS_ADMIN opens mount and
/// namespaces (as on docker), and nothing else of the list.
#[test]
fn cap_sys_admin_opens_mount_but_not_modules_keys_or_handles() {
    let lab = Lab::new().with_attacker();
    let results = attacks(&lab, &["--cap-add", "SYS_ADMIN"]);
    let (refused, detail) = &results["mount_tmpfs"];
    assert!(!refused, "mount works with CAP_SYS_ADMIN: {detail}");
    let (refused, _) = &results["unshare_user_ns"];
    assert!(!refused, "unshare(CLONE_NEWUSER) works with CAP_SYS_ADMIN");
    for name in [
        "init_module",
        "keyctl",
        "open_by_handle_at",
        "kexec_load",
        "userfaultfd",
        "io_uring_setup",
    ] {
        assert_refused(&results, name, Some("EPERM"));
    }
}

/// Masked and read-only paths: berth puts /proc/kcore in maskedPaths and
/// /proc/sysrq-trigger in readonlyPaths, as docker does. Kernels without
/// those files (like this test machine's) cannot show the mask on them, so
/// the mechanism is shown on masked files the kernel has: /proc/timer_list
/// and /proc/keys read empty in the container and not on the host.
#[test]
fn masked_paths_read_empty_and_kcore_and_sysrq_are_covered() {
    let lab = Lab::new();
    let id = lab.detached(&["busybox", "sleep", "300"]);
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            lab.root
                .root()
                .join("containers")
                .join(&id)
                .join("config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let masked = config["linux"]["maskedPaths"].as_array().unwrap();
    let readonly = config["linux"]["readonlyPaths"].as_array().unwrap();
    assert!(masked.iter().any(|p| p == "/proc/kcore"), "{masked:?}");
    assert!(
        readonly.iter().any(|p| p == "/proc/sysrq-trigger"),
        "{readonly:?}"
    );
    for path in ["/proc/timer_list", "/proc/keys"] {
        let host = std::fs::read(path).unwrap();
        assert!(!host.is_empty(), "{path} has content on the host");
        let inside = lab.ok(&["exec", &id, "cat", path]);
        assert_eq!(inside, "", "{path} reads empty in the container");
    }
    let out = lab.run(&["exec", &id, "sh", "-c", "echo 1 > /proc/sys/kernel/sysrq"]);
    assert!(
        !out.status.success(),
        "/proc/sys is read-only: {}",
        describe(&out)
    );
}

/// --privileged undoes the defenses (as docker's): every capability, no
/// filter, nothing masked — the other tests' refusals are berth's doing.
#[test]
fn privileged_lifts_the_walls() {
    let lab = Lab::new().with_attacker();
    let results = attacks(&lab, &["--privileged"]);
    let (refused, _) = &results["mount_tmpfs"];
    assert!(!refused, "a privileged container may mount");
    let status = lab.ok(&[
        "run",
        "--rm",
        "--privileged",
        "busybox",
        "sh",
        "-c",
        "grep -E '^(Seccomp|CapEff):' /proc/self/status; wc -c < /proc/timer_list",
    ]);
    assert!(status.contains("Seccomp:\t0"), "{status}");
    assert!(!status.contains("CapEff:\t00000000a80425fb"), "{status}");
    let timer_list_bytes: u64 = status.lines().last().unwrap().trim().parse().unwrap();
    assert!(timer_list_bytes > 0, "nothing masked: {status}");
}

/// The cgroup namespace is private: the container sees its own cgroup as
/// the root of each hierarchy, not the host's tree.
#[test]
fn the_cgroup_namespace_is_private() {
    let lab = Lab::new();
    let host = std::fs::read_link("/proc/self/ns/cgroup").unwrap();
    let out = lab.ok(&[
        "run",
        "--rm",
        "busybox",
        "sh",
        "-c",
        "readlink /proc/self/ns/cgroup; cat /proc/self/cgroup",
    ]);
    let mut lines = out.lines();
    assert_ne!(
        lines.next().unwrap(),
        host.to_str().unwrap(),
        "a new cgroup namespace"
    );
    for line in lines {
        let path = line.rsplit(':').next().unwrap();
        assert_eq!(path, "/", "the container's cgroup is its root: {out}");
    }
}

/// `--security-opt no-new-privileges`: a setuid-root program run by a
/// non-root user gains nothing.
#[test]
fn no_new_privileges_stops_setuid_programs() {
    use berth_engine::layer::rawtar::Entry;
    let lab = Lab::new();
    let attacker = std::fs::read(berth_tests::bin("berth-attacker")).unwrap();
    lab.load_image(
        "setuid",
        vec![Entry::file("usr/local/bin/suid-ids", &attacker).with_mode(0o4755)],
    );
    let plain = lab.ok(&[
        "run",
        "--rm",
        "-u",
        "65534",
        "setuid",
        "/usr/local/bin/suid-ids",
        "ids",
    ]);
    assert!(
        plain.contains("euid=0"),
        "setuid works without the option: {plain}"
    );
    let nnp = lab.ok(&[
        "run",
        "--rm",
        "-u",
        "65534",
        "--security-opt",
        "no-new-privileges",
        "setuid",
        "/usr/local/bin/suid-ids",
        "ids",
    ]);
    assert!(
        nnp.contains("uid=65534 euid=65534"),
        "no new privileges: {nnp}"
    );
    let status = lab.ok(&[
        "run",
        "--rm",
        "--security-opt",
        "no-new-privileges=true",
        "busybox",
        "grep",
        "NoNewPrivs",
        "/proc/self/status",
    ]);
    assert_eq!(status.trim(), "NoNewPrivs:\t1");
}

/// `--device HOST:CONTAINER:r`: the node appears with the host's numbers
/// and can be read, not written; `--cap-drop`/`--cap-add` change the sets.
#[test]
fn device_and_capability_flags_reach_the_container() {
    let lab = Lab::new();
    // A block device the host itself may open (a sandboxed host can refuse
    // its own disk to root).
    let mut candidates: Vec<String> = std::fs::read_to_string("/proc/partitions")
        .unwrap()
        .lines()
        .skip(2)
        .filter_map(|l| l.split_whitespace().nth(3).map(|n| format!("/dev/{n}")))
        .collect();
    candidates.extend(["/dev/loop0".to_string(), "/dev/zram0".to_string()]);
    let disk = candidates
        .into_iter()
        .find(|p| std::fs::File::open(p).is_ok())
        .expect("a block device the host can open");
    let device = format!("{disk}:/dev/xdisk:r");
    let out = lab.run(&[
        "run", "--rm", "--device", &device, "busybox", "sh", "-c",
        "dd if=/dev/xdisk of=/dev/null count=1 2>/dev/null && echo READ; : > /dev/xdisk && echo WROTE",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("READ"),
        "{disk} readable: {}",
        describe(&out)
    );
    assert!(
        !stdout.contains("WROTE"),
        "{disk} not writable: {}",
        describe(&out)
    );
    let caps = lab.ok(&[
        "run",
        "--rm",
        "--cap-drop",
        "ALL",
        "--cap-add",
        "NET_BIND_SERVICE",
        "busybox",
        "grep",
        "CapEff",
        "/proc/self/status",
    ]);
    assert_eq!(
        caps.trim(),
        "CapEff:\t0000000000000400",
        "only CAP_NET_BIND_SERVICE (bit 10)"
    );
    let inspect = lab.ok(&[
        "create",
        "--cap-add",
        "sys_time",
        "--cap-drop",
        "chown",
        "--device",
        &device,
        "busybox",
    ]);
    let host = lab.ok(&["inspect", "-f", "{{json .HostConfig}}", inspect.trim()]);
    let host: serde_json::Value = serde_json::from_str(&host).unwrap();
    assert_eq!(host["CapAdd"], serde_json::json!(["CAP_SYS_TIME"]));
    assert_eq!(host["CapDrop"], serde_json::json!(["CAP_CHOWN"]));
    assert_eq!(host["Devices"][0]["PathInContainer"], "/dev/xdisk");
    assert_eq!(host["Devices"][0]["CgroupPermissions"], "r");
}
