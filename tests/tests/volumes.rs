//! End-to-end tests of volumes and mounts (issue 5): named and anonymous
//! volumes, seeding from the image, `rm -v`, `volume rm|ls|inspect|prune`,
//! read-only binds (recursively), `--mount`, `--tmpfs`, `--volumes-from`,
//! bad flags, and a hostile image whose volume targets are symlinks to /etc
//! and to `../../` — every mount must land inside the container's rootfs.
//!
//! The containers run with `--network none`: these tests are about mounts.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use berth_engine::image::digest::Digest;
use berth_engine::image::layout::{DirSink, LayoutWriter};
use berth_engine::image::manifest::{
    Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG,
    OCI_LAYER_TAR, OCI_MANIFEST,
};
use berth_engine::layer::rawtar::{Entry, RawTar};
use berth_tests::{describe, fixture, require_root, TestRoot};
use serde_json::{json, Value};

/// A test root with busybox loaded; every container removed (with its
/// anonymous volumes) on drop.
struct Vol {
    root: TestRoot,
}

impl Vol {
    fn new() -> Vol {
        require_root();
        let root = TestRoot::new();
        let archive = fixture("busybox/docker-archive.tar");
        root.ok(["load", "-i", archive.to_str().unwrap()]);
        Vol { root }
    }

    fn run(&self, args: &[&str]) -> Output {
        self.root.run(args)
    }

    fn ok(&self, args: &[&str]) -> String {
        self.root.ok(args)
    }

    /// `berth run --rm --network none ARGS`, stdout.
    fn sh(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "--rm", "--network", "none"];
        full.extend_from_slice(args);
        self.ok(&full)
    }

    fn inspect(&self, kind: &str, name: &str) -> Value {
        let text = if kind == "volume" {
            self.ok(&["volume", "inspect", name])
        } else {
            self.ok(&["inspect", name])
        };
        serde_json::from_str::<Value>(&text).unwrap()[0].clone()
    }

    fn volumes(&self) -> Vec<String> {
        self.ok(&["volume", "ls", "-q"])
            .lines()
            .map(String::from)
            .collect()
    }

    fn mounts_under_root(&self) -> usize {
        let root = self.root.path().to_string_lossy().into_owned();
        fs::read_to_string("/proc/self/mountinfo")
            .unwrap()
            .lines()
            .filter(|l| l.contains(&root))
            .count()
    }

    /// A failed run: status 125, one clear line containing `expect`, and
    /// nothing created (no container, no volume).
    fn assert_refused(&self, args: &[&str], expect: &str) {
        let containers_before = self.ok(&["ps", "-aq"]);
        let volumes_before = self.volumes();
        let mut full = vec!["run", "--rm", "--network", "none"];
        full.extend_from_slice(args);
        let out = self.run(&full);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(125), "{args:?}: {}", describe(&out));
        assert!(
            stderr.contains(expect),
            "{args:?}: expected {expect:?} in {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
        assert_eq!(
            self.ok(&["ps", "-aq"]),
            containers_before,
            "no container made"
        );
        assert_eq!(self.volumes(), volumes_before, "no volume made");
    }
}

impl Drop for Vol {
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", "-v", id]);
        }
    }
}

#[test]
fn a_named_volume_survives_rm_and_is_reused() {
    let vol = Vol::new();
    vol.sh(&[
        "-v",
        "data:/data",
        "busybox",
        "sh",
        "-c",
        "echo kept > /data/file",
    ]);
    assert_eq!(vol.volumes(), vec!["data"]);
    let info = vol.inspect("volume", "data");
    assert_eq!(info["Driver"], "local");
    let mountpoint = PathBuf::from(info["Mountpoint"].as_str().unwrap());
    assert_eq!(
        fs::read_to_string(mountpoint.join("file")).unwrap(),
        "kept\n",
        "the data is on the host"
    );
    // A second container sees it.
    assert_eq!(
        vol.sh(&["-v", "data:/other", "busybox", "cat", "/other/file"]),
        "kept\n"
    );
    // In use by a (stopped) container: refused.
    vol.ok(&[
        "create",
        "--name",
        "holder",
        "--network",
        "none",
        "-v",
        "data:/data",
        "busybox",
        "true",
    ]);
    let refused = vol.run(&["volume", "rm", "data"]);
    assert_eq!(refused.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("volume is in use"), "{stderr}");
    // rm -v keeps named volumes.
    vol.ok(&["rm", "-v", "holder"]);
    assert_eq!(vol.volumes(), vec!["data"]);
    assert_eq!(vol.ok(&["volume", "rm", "data"]), "data\n");
    assert!(vol.volumes().is_empty());
    assert!(!mountpoint.exists());
    assert_eq!(vol.mounts_under_root(), 0);
}

#[test]
fn a_new_volume_is_seeded_with_the_images_content() {
    let vol = Vol::new();
    let listing = vol.sh(&["-v", "etc:/etc", "busybox", "ls", "/etc"]);
    assert!(
        listing.contains("passwd"),
        "the image's /etc was copied in: {listing}"
    );
    let mountpoint = PathBuf::from(vol.inspect("volume", "etc")["Mountpoint"].as_str().unwrap());
    assert!(mountpoint.join("passwd").is_file());
    // Seeded only while empty: a later container's changes stay.
    vol.sh(&["-v", "etc:/etc", "busybox", "rm", "/etc/passwd"]);
    assert!(!vol
        .sh(&["-v", "etc:/etc", "busybox", "ls", "/etc"])
        .contains("passwd"));
    // nocopy: an empty volume stays empty.
    assert_eq!(
        vol.sh(&[
            "-v",
            "bare:/etc:nocopy",
            "busybox",
            "sh",
            "-c",
            "ls /etc | wc -l"
        ])
        .trim(),
        "3",
        "only the /etc files berth binds (hosts, hostname, resolv.conf)"
    );
    vol.ok(&["volume", "rm", "etc", "bare"]);
}

#[test]
fn anonymous_volumes_go_with_rm_v_and_prune() {
    let vol = Vol::new();
    vol.ok(&[
        "create",
        "--name",
        "first",
        "--network",
        "none",
        "-v",
        "/cache",
        "busybox",
        "true",
    ]);
    let mounts = vol.inspect("container", "first")["Mounts"].clone();
    let name = mounts[0]["Name"].as_str().unwrap().to_string();
    assert_eq!(name.len(), 64, "a random name: {mounts}");
    assert_eq!(mounts[0]["Destination"], "/cache");
    assert_eq!(vol.volumes(), vec![name.clone()]);
    vol.ok(&["rm", "-v", "first"]);
    assert!(vol.volumes().is_empty(), "rm -v removed it");

    vol.ok(&[
        "create",
        "--name",
        "second",
        "--network",
        "none",
        "-v",
        "/cache",
        "busybox",
        "true",
    ]);
    vol.ok(&["rm", "second"]);
    assert_eq!(vol.volumes().len(), 1, "plain rm keeps it");
    vol.ok(&["volume", "create", "named"]);
    let pruned = vol.ok(&["volume", "prune", "-f"]);
    assert!(pruned.starts_with("Deleted Volumes:\n"), "{pruned}");
    assert_eq!(
        vol.volumes(),
        vec!["named"],
        "prune takes unused anonymous volumes only"
    );
    vol.ok(&["volume", "prune", "-f", "--all"]);
    assert!(vol.volumes().is_empty());
    // run --rm removes its anonymous volumes too.
    vol.sh(&["-v", "/scratch", "busybox", "true"]);
    assert!(vol.volumes().is_empty());
}

#[test]
fn read_only_binds_are_read_only_all_the_way_down() {
    let vol = Vol::new();
    let host = tempfile::tempdir().unwrap();
    fs::create_dir(host.path().join("sub")).unwrap();
    fs::write(host.path().join("motd"), "message\n").unwrap();
    // A filesystem mounted below the bound directory (the recursive case).
    let sub = host.path().join("sub");
    nix::mount::mount(
        Some("tmpfs"),
        &sub,
        Some("tmpfs"),
        nix::mount::MsFlags::empty(),
        None::<&str>,
    )
    .unwrap();
    struct Unmount(PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = nix::mount::umount2(&self.0, nix::mount::MntFlags::MNT_DETACH);
        }
    }
    let _guard = Unmount(sub.clone());
    let ro = format!("{}:/ro:ro,rslave", host.path().display());
    let file = format!("{}:/etc/motd:ro", host.path().join("motd").display());
    let out = vol.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "-v",
        &ro,
        "-v",
        &file,
        "busybox",
        "sh",
        "-c",
        "cat /etc/motd; echo x > /ro/top; echo x > /ro/sub/deep; echo x > /etc/motd; ls /ro",
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stdout.starts_with("message\n"),
        "the file bind: {}",
        describe(&out)
    );
    assert_eq!(
        stderr.matches("Read-only file system").count(),
        3,
        "every write fails with EROFS: {stderr}"
    );
    assert!(!host.path().join("top").exists() && !sub.join("deep").exists());
    assert_eq!(
        fs::read_to_string(host.path().join("motd")).unwrap(),
        "message\n"
    );
    // Read-write binds write through to the host.
    let rw = format!("{}:/rw", host.path().display());
    vol.sh(&["-v", &rw, "busybox", "sh", "-c", "echo y > /rw/sub/written"]);
    assert_eq!(fs::read_to_string(sub.join("written")).unwrap(), "y\n");
    assert_eq!(vol.mounts_under_root(), 0);
}

#[test]
fn missing_sources_and_bad_flags_follow_docker() {
    let vol = Vol::new();
    let base = tempfile::tempdir().unwrap();
    // -v creates a missing host directory.
    let made = base.path().join("made/by/v");
    let v = format!("{}:/x", made.display());
    vol.sh(&["-v", &v, "busybox", "true"]);
    assert!(made.is_dir());
    // --mount type=bind refuses it, before anything is created.
    let gone = base.path().join("not-there");
    let m = format!("type=bind,source={},target=/x", gone.display());
    vol.assert_refused(
        &["--mount", &m, "busybox", "true"],
        "bind source path does not exist",
    );
    assert!(!gone.exists());
    vol.assert_refused(
        &["-v", "./relative:/x", "busybox", "true"],
        "use an absolute path",
    );
    vol.assert_refused(&["-v", ":/x", "busybox", "true"], "is empty");
    vol.assert_refused(
        &["-v", "/h:/x:bogus", "busybox", "true"],
        "invalid mode \"bogus\"",
    );
    vol.assert_refused(
        &["-v", "data:relative", "busybox", "true"],
        "must be absolute",
    );
    vol.assert_refused(
        &[
            "--mount",
            "type=volume,target=/x,colour=red",
            "busybox",
            "true",
        ],
        "unexpected key \"colour\"",
    );
    vol.assert_refused(
        &["-v", "one:/x", "-v", "two:/x", "busybox", "true"],
        "Duplicate mount point: /x",
    );
    vol.assert_refused(
        &["--tmpfs", "relative", "busybox", "true"],
        "must be absolute",
    );
}

#[test]
fn tmpfs_mounts_and_volumes_from() {
    let vol = Vol::new();
    let mounts = vol.sh(&[
        "--tmpfs",
        "/scratch:size=1m",
        "--mount",
        "type=tmpfs,target=/other,tmpfs-size=2m",
        "busybox",
        "sh",
        "-c",
        "grep -E ' /(scratch|other) ' /proc/mounts",
    ]);
    assert!(
        mounts.contains("tmpfs /scratch tmpfs") && mounts.contains("size=1024k"),
        "{mounts}"
    );
    assert!(
        mounts.contains("tmpfs /other tmpfs") && mounts.contains("size=2048k"),
        "{mounts}"
    );
    assert!(
        mounts.contains("noexec"),
        "docker's tmpfs defaults: {mounts}"
    );

    vol.ok(&[
        "create",
        "--name",
        "source",
        "--network",
        "none",
        "-v",
        "shared:/shared",
        "-v",
        "/anon",
        "busybox",
        "true",
    ]);
    vol.sh(&[
        "-v",
        "shared:/shared",
        "busybox",
        "sh",
        "-c",
        "echo from-source > /shared/f",
    ]);
    let seen = vol.sh(&[
        "--volumes-from",
        "source",
        "busybox",
        "sh",
        "-c",
        "cat /shared/f; ls -d /anon",
    ]);
    assert_eq!(seen, "from-source\n/anon\n");
    let ro = vol.run(&[
        "run",
        "--rm",
        "--network",
        "none",
        "--volumes-from",
        "source:ro",
        "busybox",
        "sh",
        "-c",
        "echo x > /shared/g",
    ]);
    assert!(!ro.status.success());
    assert!(String::from_utf8_lossy(&ro.stderr).contains("Read-only file system"));
    vol.ok(&["rm", "-v", "source"]);
    vol.ok(&["volume", "rm", "shared"]);
    assert!(
        vol.volumes().is_empty(),
        "the anonymous volume went with rm -v"
    );
}

/// An OCI layout of one image: a static busybox, an /etc of its own, and
/// the hostile symlinks; `VOLUME /data` in its config.
fn hostile_image(dir: &Path) {
    let busybox = fs::read("/bin/busybox").expect("busybox-static on the host");
    let mut tar = RawTar::new();
    tar.add(Entry::dir("bin/"));
    tar.add(Entry::file("bin/busybox", &busybox).with_mode(0o755));
    for applet in [
        "sh", "cat", "ls", "echo", "test", "sleep", "readlink", "true",
    ] {
        tar.add(Entry::symlink(&format!("bin/{applet}"), "busybox"));
    }
    tar.add(Entry::dir("etc/"));
    tar.add(Entry::file("etc/image-marker", b"from the image\n"));
    tar.add(Entry::file(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\n",
    ));
    tar.add(Entry::file("etc/group", b"root:x:0:\n"));
    // The volume target is a link to /etc; another climbs out of the root.
    tar.add(Entry::symlink("data", "/etc"));
    tar.add(Entry::symlink("up", "../../../../../.."));
    let layer = tar.finish();
    let diff_id = Digest::of(&layer);
    let config = serde_json::to_vec(&json!({
        "architecture": berth_engine::image::manifest::host_architecture(),
        "os": "linux",
        "config": {"Cmd": ["sh"], "Env": ["PATH=/bin"], "Volumes": {"/data": {}}},
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
    }))
    .unwrap();
    let config_id = Digest::of(&config);
    let mut writer = LayoutWriter::new(DirSink::new(dir).unwrap());
    writer.blob_bytes(&config_id, &config).unwrap();
    writer.blob_bytes(&diff_id, &layer).unwrap();
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, config_id, config.len() as u64),
        layers: vec![Descriptor::new(OCI_LAYER_TAR, diff_id, layer.len() as u64)],
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let digest = Digest::of(&bytes);
    writer.blob_bytes(&digest, &bytes).unwrap();
    let mut entry = Descriptor::new(OCI_MANIFEST, digest, bytes.len() as u64);
    entry.annotations = Some(
        [
            (
                ANNOTATION_IMAGE_NAME.to_string(),
                "docker.io/library/hostile:latest".to_string(),
            ),
            (ANNOTATION_REF_NAME.to_string(), "latest".to_string()),
        ]
        .into_iter()
        .collect(),
    );
    writer.finish_oci(&Index::new(vec![entry])).unwrap();
}

#[test]
fn symlinked_volume_targets_in_a_hostile_image_stay_inside_the_rootfs() {
    let vol = Vol::new();
    let layout = tempfile::tempdir().unwrap();
    hostile_image(layout.path());
    vol.ok(&["load", "-i", layout.path().to_str().unwrap()]);
    let host = tempfile::tempdir().unwrap();
    fs::write(host.path().join("hostfile"), "from the host dir\n").unwrap();
    let unique = format!("berth-escape-{}", std::process::id());

    // `/up/NAME`: `up` climbs "above" the root; the new mount point must be
    // made inside the rootfs, never as /NAME on the host.
    let climb = format!("{}:/up/{unique}", host.path().display());
    let seen = vol.sh(&[
        "-v",
        &climb,
        "hostile",
        "sh",
        "-c",
        &format!("cat /{unique}/hostfile"),
    ]);
    assert_eq!(seen, "from the host dir\n");
    assert!(
        !Path::new("/").join(&unique).exists(),
        "nothing was created in the host's /"
    );

    // `/data` is a link to /etc: a file bound there lands on the image's
    // /etc, and its mount point is created there, not in the host's /etc.
    let file = format!(
        "{}:/data/{unique}:ro",
        host.path().join("hostfile").display()
    );
    let seen = vol.sh(&[
        "-v",
        &file,
        "hostile",
        "sh",
        "-c",
        &format!("cat /etc/{unique}; cat /etc/image-marker; readlink /data"),
    ]);
    assert_eq!(seen, "from the host dir\nfrom the image\n/etc\n");
    assert!(
        !Path::new("/etc").join(&unique).exists(),
        "the host's /etc is untouched"
    );

    // The image's `VOLUME /data` (a link to /etc) gets an anonymous volume
    // seeded from the *image's* /etc, not the host's.
    vol.ok(&[
        "create",
        "--name",
        "hostile1",
        "--network",
        "none",
        "hostile",
        "true",
    ]);
    let mounts = vol.inspect("container", "hostile1")["Mounts"].clone();
    let source = PathBuf::from(mounts[0]["Source"].as_str().unwrap());
    vol.ok(&["start", "-a", "hostile1"]);
    let mut copied: Vec<String> = fs::read_dir(&source)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    copied.sort();
    // The image's /etc, plus the empty mount points the runtime made for
    // berth's /etc/hosts, /etc/hostname and /etc/resolv.conf binds.
    assert_eq!(
        copied,
        vec![
            "group",
            "hostname",
            "hosts",
            "image-marker",
            "passwd",
            "resolv.conf"
        ]
    );
    for mount_point in ["hostname", "hosts", "resolv.conf"] {
        assert_eq!(
            fs::metadata(source.join(mount_point)).unwrap().len(),
            0,
            "{mount_point} is an empty mount point"
        );
    }
    assert_eq!(
        fs::read_to_string(source.join("image-marker")).unwrap(),
        "from the image\n"
    );
    vol.ok(&["rm", "-v", "hostile1"]);
    assert!(vol.volumes().is_empty());
    assert_eq!(vol.mounts_under_root(), 0);
    // Nothing changed in the host's /etc.
    let out = Command::new("sh")
        .args(["-c", &format!("ls /etc | grep -c {unique}")])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "0");
}
