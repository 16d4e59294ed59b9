//! `berth info`, `berth version`, `berth system df`, `berth system prune`:
//! what they show matches the host and the store, and prune removes what
//! docker's does (and asks first unless -f).

use std::io::Write;
use std::process::Stdio;

use berth_tests::{describe, fixture, require_root, TestRoot};

fn lab() -> TestRoot {
    require_root();
    let root = TestRoot::new();
    root.ok([
        "load",
        "-i",
        fixture("busybox/docker-archive.tar").to_str().unwrap(),
    ]);
    root
}

#[test]
fn info_tells_the_host_and_the_store() {
    let root = lab();
    root.ok(["create", "busybox", "true"]);
    let text = root.ok(["info"]);
    let release = nix::sys::utsname::uname()
        .unwrap()
        .release()
        .to_string_lossy()
        .into_owned();
    for expected in [
        "Storage Driver: overlay".to_string(),
        "Cgroup Driver: cgroupfs".into(),
        "Containers: 1".into(),
        "Images: 1".into(),
        "seccomp".into(),
        "Profile: builtin".into(),
        "no-new-privileges".into(),
        "cgroupns".into(),
        format!("Kernel Version: {release}"),
        format!("Root Dir: {}", root.root().display()),
    ] {
        assert!(text.contains(&expected), "info shows {expected:?}:\n{text}");
    }
    let version = root.ok(["info", "-f", "{{.CgroupVersion}}"]);
    let unified = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    assert_eq!(version.trim(), if unified { "2" } else { "1" });
    let json: serde_json::Value =
        serde_json::from_str(&root.ok(["info", "--format", "json"])).unwrap();
    assert_eq!(json["Driver"], "overlay");
    assert_eq!(
        json["NCPU"].as_u64().unwrap() as usize,
        std::thread::available_parallelism().unwrap().get()
    );
}

#[test]
fn version_names_berth_and_its_runtime() {
    let root = lab();
    let text = root.ok(["version"]);
    assert!(text.contains(env!("CARGO_PKG_VERSION")), "{text}");
    assert!(text.contains("berth-runtime"), "{text}");
    assert_eq!(
        root.ok(["version", "-f", "{{.Client.Version}}"]).trim(),
        env!("CARGO_PKG_VERSION")
    );
}

#[test]
fn df_counts_images_containers_and_what_they_wrote() {
    let root = lab();
    let id = root.ok([
        "run",
        "-d",
        "busybox",
        "sh",
        "-c",
        "head -c 300000 /dev/zero > /blob; sleep 600",
    ]);
    let id = id.trim();
    root.ok([
        "exec",
        id,
        "sh",
        "-c",
        "while [ $(wc -c < /blob) -lt 300000 ]; do sleep 0.05; done",
    ]);
    let text = root.ok(["system", "df"]);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("TYPE"), "{text}");
    let images: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(&images[..3], &["Images", "1", "1"], "{text}");
    let containers: Vec<&str> = lines[2].split_whitespace().collect();
    assert_eq!(&containers[..3], &["Containers", "1", "1"], "{text}");
    assert_eq!(containers[3], "300kB", "what the container wrote: {text}");
    let json: Vec<serde_json::Value> = root
        .ok(["system", "df", "--format", "json"])
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(json[1]["SizeBytes"], 300000);
    root.ok(["rm", "-f", id]);
}

#[test]
fn prune_asks_first_and_removes_what_docker_removes() {
    let root = lab();
    let stopped = root.ok(["create", "--name", "stopped", "busybox", "true"]);
    let running = root.ok(["run", "-d", "--name", "running", "busybox", "sleep", "600"]);

    let mut child = root
        .berth(["system", "prune"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(b"n\n").unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", describe(&out));
    assert!(String::from_utf8_lossy(&out.stdout).contains("WARNING! This will remove"));
    assert_eq!(
        root.ok(["ps", "-aq"]).lines().count(),
        2,
        "answering no removes nothing"
    );

    let text = root.ok(["system", "prune", "-f"]);
    assert!(text.contains(stopped.trim()), "{text}");
    assert!(!text.contains(running.trim()), "{text}");
    assert!(text.contains("Total reclaimed space"), "{text}");
    assert_eq!(root.ok(["ps", "-aq", "--no-trunc"]).trim(), running.trim());
    assert_eq!(
        root.ok(["images", "-q"]).lines().count(),
        1,
        "a used image stays"
    );

    root.ok(["rm", "-f", "running"]);
    let text = root.ok(["system", "prune", "-a", "-f"]);
    assert!(text.contains("untagged: busybox:latest"), "{text}");
    assert_eq!(root.ok(["images", "-q"]), "", "-a removes unused images");
}
