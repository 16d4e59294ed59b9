//! Image-driven escapes: a layer plants a symlink where berth will mount
//! (/proc, /sys, /dev, a volume's target, berth-init's target), or a
//! hostile /etc/passwd (a link to a host file, a FIFO, huge lines, missing
//! fields). The defense: every path of the image is resolved *beneath* the
//! container's root by fd (openat2 RESOLVE_IN_ROOT in the runtime and the
//! engine), so a link can only lead somewhere inside the image; files are
//! read with limits and only when they are regular files.
//!
//! Each test aims at a directory of the host that the test made, and
//! checks afterwards that nothing was mounted on it and nothing written into
//! it — whether berth refused the container or ran it confined.

mod escape_support;
mod images_support;

use std::path::Path;
use std::time::{Duration, Instant};

use berth_engine::layer::rawtar::Entry;
use berth_tests::describe;
use escape_support::Lab;

/// A host directory an image aims at, and a check that it was not touched.
struct HostTarget {
    dir: tempfile::TempDir,
}

impl HostTarget {
    fn new() -> HostTarget {
        let dir = tempfile::Builder::new()
            .prefix("berth-escape-target-")
            .tempdir()
            .unwrap();
        std::fs::write(dir.path().join("untouched"), "host").unwrap();
        HostTarget { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    fn link_target(&self) -> String {
        self.path().display().to_string()
    }

    fn assert_untouched(&self, context: &str) {
        let mountinfo = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let marker = self
            .path()
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let mounted: Vec<&str> = mountinfo.lines().filter(|l| l.contains(&marker)).collect();
        assert!(
            mounted.is_empty(),
            "{context}: a mount landed on the host: {mounted:?}"
        );
        let entries: Vec<String> = std::fs::read_dir(self.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            entries,
            vec!["untouched"],
            "{context}: the host directory changed"
        );
    }
}

/// Run `args` and return its output; it must end (no hang) and either
/// succeed or fail with berth's status 125 and one clear line.
fn run_confined(lab: &Lab, args: &[&str]) -> std::process::Output {
    let started = Instant::now();
    let out = lab.run(args);
    assert!(started.elapsed() < Duration::from_secs(60), "no hang");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("panicked"), "no panic: {stderr}");
    if !out.status.success() {
        assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
        assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
    }
    out
}

#[test]
fn a_symlink_at_proc_sys_or_dev_cannot_send_mounts_to_the_host() {
    let lab = Lab::new();
    for dir in ["proc", "sys", "dev"] {
        let target = HostTarget::new();
        let image = format!("link-{dir}");
        lab.load_image(&image, vec![Entry::symlink(dir, &target.link_target())]);
        let out = run_confined(
            &lab,
            &[
                "run",
                "--rm",
                &image,
                "sh",
                "-c",
                "ls / >/dev/null; echo ran",
            ],
        );
        target.assert_untouched(&format!("/{dir} -> host"));
        if out.status.success() {
            assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
        }
    }
}

/// CVE-2025-31133 class: /dev/null replaced by a link, so that masking a
/// path (bind-mounting /dev/null over it) would mount something else, or
/// make a host file writable. berth's /dev is a fresh tmpfs with its own
/// nodes: the image's /dev is not used at all.
#[test]
fn a_planted_dev_null_cannot_unmask_or_redirect_masked_paths() {
    let lab = Lab::new();
    let target = HostTarget::new();
    lab.load_image(
        "fake-devnull",
        vec![
            Entry::dir("dev"),
            Entry::symlink("dev/null", "/proc/sys/kernel/core_pattern"),
            Entry::symlink("dev/zero", &format!("{}/untouched", target.link_target())),
        ],
    );
    let core_pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap();
    let out = lab.ok(&[
        "run", "--rm", "fake-devnull", "sh", "-c",
        "stat -c '%F %t:%T' /dev/null; wc -c < /proc/keys; echo pwned > /proc/keys; echo x > /dev/zero; true",
    ]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0], "character special file 1:3",
        "the real /dev/null: {out}"
    );
    assert_eq!(lines[1].trim(), "0", "/proc/keys is still masked: {out}");
    assert_eq!(
        std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap(),
        core_pattern,
        "the host's core_pattern is unchanged"
    );
    target.assert_untouched("/dev/zero -> host");
}

/// A volume's target planted as a link to the host: the bind mount lands
/// inside the container (or is refused), never on the host's directory.
#[test]
fn a_volume_target_planted_as_a_link_stays_inside_the_container() {
    let lab = Lab::new();
    let target = HostTarget::new();
    lab.load_image(
        "link-volume",
        vec![Entry::symlink("data", &target.link_target())],
    );
    let source = tempfile::tempdir().unwrap();
    std::fs::write(source.path().join("from-host"), "volume").unwrap();
    let volume = format!("{}:/data", source.path().display());
    let out = run_confined(
        &lab,
        &[
            "run",
            "--rm",
            "-v",
            &volume,
            "link-volume",
            "sh",
            "-c",
            "cat /data/from-host; echo written > /data/new",
        ],
    );
    target.assert_untouched("-v onto /data -> host");
    if out.status.success() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "volume\n");
        assert_eq!(
            std::fs::read_to_string(source.path().join("new")).unwrap(),
            "written\n",
            "the volume itself was mounted (inside the container)"
        );
    }
}

/// berth-init's bind-mount target (/sbin/berth-init) under a /sbin planted
/// as a link to the host.
#[test]
fn the_init_binary_target_planted_as_a_link_stays_inside_the_container() {
    let lab = Lab::new();
    let target = HostTarget::new();
    lab.load_image(
        "link-sbin",
        vec![Entry::symlink("sbin", &target.link_target())],
    );
    let out = run_confined(&lab, &["run", "--rm", "--init", "link-sbin", "echo", "ran"]);
    target.assert_untouched("--init onto /sbin -> host");
    if out.status.success() {
        assert_eq!(String::from_utf8_lossy(&out.stdout), "ran\n");
    }
}

/// /etc/passwd as a link to a host file the image names: `-u` must resolve
/// inside the image, never through the host's file.
#[test]
fn a_passwd_link_to_a_host_file_is_resolved_inside_the_image() {
    let lab = Lab::new();
    let host = HostTarget::new();
    let host_passwd = host.path().join("passwd");
    std::fs::write(&host_passwd, "hostonly:x:4242:4242::/:/bin/sh\n").unwrap();
    lab.load_image(
        "passwd-link",
        vec![Entry::symlink("etc/passwd", host_passwd.to_str().unwrap())],
    );
    let out = lab.run(&["run", "--rm", "-u", "hostonly", "passwd-link", "id", "-u"]);
    assert!(
        !String::from_utf8_lossy(&out.stdout).contains("4242"),
        "ESCAPE: the host's passwd was read: {}",
        describe(&out)
    );
    assert_eq!(out.status.code(), Some(125), "{}", describe(&out));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hostonly"),
        "{}",
        describe(&out)
    );
    // Numeric ids need no passwd at all.
    assert_eq!(
        lab.ok(&["run", "--rm", "-u", "4242:4242", "passwd-link", "id", "-u"]),
        "4242\n"
    );
}

/// A FIFO at /etc/passwd would block whoever opens it for reading.
#[test]
fn a_fifo_at_etc_passwd_does_not_hang_run_or_exec() {
    let lab = Lab::new();
    lab.load_image("passwd-fifo", vec![Entry::fifo("etc/passwd")]);
    let out = run_confined(
        &lab,
        &["run", "--rm", "-u", "nobody", "passwd-fifo", "id", "-u"],
    );
    assert!(
        !out.status.success(),
        "no user can be found: {}",
        describe(&out)
    );
    // As root, berth needs no name lookup; (the program must not read
    // /etc/passwd either: busybox `id` would block on the FIFO, inside the
    // container, as it would anywhere.)
    let out = run_confined(&lab, &["run", "--rm", "passwd-fifo", "echo", "started"]);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "started\n",
        "{}",
        describe(&out)
    );
    let id = lab.detached(&["passwd-fifo", "sleep", "300"]);
    let started = Instant::now();
    let out = lab.run(&["exec", "-u", "nobody", &id, "echo", "entered"]);
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "exec does not hang"
    );
    assert!(!out.status.success(), "{}", describe(&out));
}

/// Huge lines, missing fields, binary garbage, a name repeated: berth
/// neither panics nor hangs nor takes an unbounded amount of memory; good
/// entries after bad ones are still found.
#[test]
fn a_hostile_passwd_file_is_parsed_within_bounds() {
    let lab = Lab::new();
    let mut passwd = Vec::new();
    passwd.extend(std::iter::repeat_n(b'a', 8 << 20)); // one 8 MiB line
    passwd.extend(b"\n");
    passwd.extend(b"short:x:1000\n"); // missing gid, home, shell
    passwd.extend(b"bad:x:notanumber:0::/:/bin/sh\n");
    passwd.extend(b"\xff\xfe\x00garbage\x00:x:1:1::/:\n");
    passwd.extend(b"big:x:99999999999999999999:0::/:/bin/sh\n");
    passwd.extend(b"app:x:1234:1234::/home/app:/bin/sh\n");
    passwd.extend(b"app:x:5678:5678::/:/bin/sh\n");
    lab.load_image("hostile-passwd", vec![Entry::file("etc/passwd", &passwd)]);
    let started = Instant::now();
    assert_eq!(
        lab.ok(&["run", "--rm", "-u", "app", "hostile-passwd", "id", "-u"]),
        "1234\n",
        "the first good entry wins"
    );
    for user in ["short", "bad", "big"] {
        let out = run_confined(
            &lab,
            &["run", "--rm", "-u", user, "hostile-passwd", "id", "-u"],
        );
        assert!(!out.status.success(), "{user}: {}", describe(&out));
        assert!(
            String::from_utf8_lossy(&out.stderr).contains(user),
            "{user}: the error names the user: {}",
            describe(&out)
        );
    }
    assert!(started.elapsed() < Duration::from_secs(60));
}
