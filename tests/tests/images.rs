//! End-to-end tests of the image commands (issue 2): `berth load`, `save`,
//! `images`, `image inspect`, `tag`, `rmi`, driven through the real binary
//! as root against the fixture images (rootfs-fixtures/build.sh), plus
//! archives written by skopeo, a tool other than berth.

mod images_support;

use std::ffi::CStr;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use berth_engine::layer::rawtar::{Entry, RawTar};
use berth_tests::{describe, fixture, require_root, TestRoot};
use images_support::{
    assert_store_consistent, fixture_diff_ids, fixture_id, write_oci_layout, Layer,
};

fn short(id: &str) -> &str {
    &id["sha256:".len().."sha256:".len() + 12]
}

fn root_with(archive: &str) -> TestRoot {
    require_root();
    let root = TestRoot::new();
    root.ok(["load", "-i", fixture(archive).to_str().unwrap()]);
    root
}

fn inspect(root: &TestRoot, image: &str, template: &str) -> String {
    root.ok(["image", "inspect", "-f", template, image])
        .trim()
        .to_string()
}

fn diff_ids_of(root: &TestRoot, image: &str) -> Vec<String> {
    serde_json::from_str(&inspect(root, image, "{{json .RootFS.Layers}}")).unwrap()
}

#[test]
fn every_fixture_format_loads_as_the_same_image() {
    require_root();
    let id = fixture_id("busybox");
    for format in [
        "oci",
        "oci-zstd",
        "oci-plain",
        "oci-archive.tar",
        "docker-archive.tar",
        "docker-archive-classic.tar",
    ] {
        let root = TestRoot::new();
        let out = root.run([
            "load",
            "-i",
            fixture(&format!("busybox/{format}")).to_str().unwrap(),
        ]);
        assert!(out.status.success(), "{format}: {}", describe(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Loaded image: busybox:latest\n",
            "{format}"
        );
        assert!(
            out.stderr.is_empty(),
            "{format}: no progress bars when stderr is not a terminal"
        );
        assert_eq!(inspect(&root, "busybox", "{{.Id}}"), id, "{format}");
        assert_eq!(
            diff_ids_of(&root, "busybox"),
            fixture_diff_ids("busybox"),
            "{format}"
        );
        assert_store_consistent(&root);
    }
}

#[test]
fn stdin_and_compressed_archives_load() {
    require_root();
    let archive = fs::read(fixture("busybox/docker-archive.tar")).unwrap();
    let compressed = [
        ("plain", archive.clone()),
        ("gzip", berth_engine::layer::rawtar::gzip(&archive)),
        ("zstd", berth_engine::layer::rawtar::zstd(&archive)),
    ];
    for (what, bytes) in compressed {
        let root = TestRoot::new();
        let mut child = root
            .berth(["load"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(&bytes).unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(out.status.success(), "{what}: {}", describe(&out));
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "Loaded image: busybox:latest\n"
        );
        assert_eq!(inspect(&root, "busybox", "{{.Id}}"), fixture_id("busybox"));
    }
}

#[test]
fn images_lists_like_docker() {
    let root = root_with("busybox/oci");
    let id = fixture_id("busybox");
    let table = root.ok(["images"]);
    let lines: Vec<&str> = table.lines().collect();
    assert_eq!(lines.len(), 2, "{table}");
    assert!(
        lines[0].starts_with("REPOSITORY   TAG       IMAGE ID       CREATED"),
        "{table}"
    );
    let cells: Vec<&str> = lines[1]
        .split("   ")
        .map(str::trim)
        .filter(|c| !c.is_empty())
        .collect();
    assert_eq!(cells[0], "busybox");
    assert_eq!(cells[1], "latest");
    assert_eq!(cells[2], short(&id));
    assert!(cells[3].ends_with(" ago"), "{cells:?}");
    assert!(
        cells[4].ends_with("MB"),
        "busybox-static is a couple of MB: {cells:?}"
    );
    assert_eq!(root.ok(["images", "-q"]), format!("{}\n", short(&id)));
    assert_eq!(root.ok(["images", "-q", "--no-trunc"]), format!("{id}\n"));
    assert_eq!(
        root.ok(["images", "--format", "{{.Repository}}:{{.Tag}}"]),
        "busybox:latest\n"
    );
    let json: serde_json::Value =
        serde_json::from_str(root.ok(["images", "--format", "json"]).trim()).unwrap();
    assert_eq!(json["Repository"], "busybox");
    assert_eq!(json["ID"], short(&id));
    let digests = root.ok(["images", "--digests"]);
    let manifest = inspect(&root, "busybox", "{{json .RepoDigests}}");
    let manifest: Vec<String> = serde_json::from_str(&manifest).unwrap();
    let digest = manifest[0].split_once('@').unwrap().1;
    assert!(
        digests.lines().next().unwrap().contains("DIGEST"),
        "{digests}"
    );
    assert!(digests.contains(digest), "{digests}");
    assert_eq!(
        root.ok(["images", "debian"]).lines().count(),
        1,
        "filter: header only"
    );
    assert_eq!(root.ok(["images", "busybox:latest"]).lines().count(), 2);
    assert_eq!(root.ok(["image", "ls", "-q"]), format!("{}\n", short(&id)));
}

#[test]
fn inspect_shows_dockers_shape_and_the_debian_config() {
    let root = root_with("debian/oci");
    let json: serde_json::Value =
        serde_json::from_str(&root.ok(["image", "inspect", "debian:bookworm"])).unwrap();
    let image = &json[0];
    assert_eq!(image["Id"], fixture_id("debian"));
    assert_eq!(image["RepoTags"], serde_json::json!(["debian:bookworm"]));
    assert_eq!(image["Os"], "linux");
    assert_eq!(image["RootFS"]["Type"], "layers");
    assert_eq!(image["RootFS"]["Layers"].as_array().unwrap().len(), 4);
    let config = &image["Config"];
    assert_eq!(config["User"], "app");
    assert_eq!(config["WorkingDir"], "/srv/app");
    assert_eq!(config["StopSignal"], "SIGINT");
    assert_eq!(
        config["Entrypoint"],
        serde_json::json!(["/usr/local/bin/fixture-entrypoint"])
    );
    assert_eq!(config["Cmd"], serde_json::json!(["/bin/bash"]));
    assert!(config["ExposedPorts"]["8080/tcp"].is_object());
    assert!(config["Env"]
        .as_array()
        .unwrap()
        .contains(&serde_json::json!("BERTH_FIXTURE=debian")));
    assert_eq!(
        config["Labels"]["org.opencontainers.image.title"],
        "berth debian fixture"
    );
    assert!(image["Size"].as_u64().unwrap() > 50_000_000);
    assert_eq!(inspect(&root, "debian:bookworm", "{{.Config.User}}"), "app");
    let out = root.run(["image", "inspect", "debian:bookworm", "nosuch"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image: nosuch:latest"));
    let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        printed.as_array().unwrap().len(),
        1,
        "the images found are still printed"
    );
}

#[test]
fn references_resolve_like_docker() {
    let root = root_with("busybox/oci");
    let id = fixture_id("busybox");
    let hex = id.trim_start_matches("sha256:");
    let digests: Vec<String> =
        serde_json::from_str(&inspect(&root, "busybox", "{{json .RepoDigests}}")).unwrap();
    let by_digest = digests[0].clone();
    assert!(by_digest.starts_with("busybox@sha256:"));
    for reference in [
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        "docker.io/library/busybox:latest",
        "index.docker.io/library/busybox",
        id.as_str(),
        hex,
        &hex[..4],
        &by_digest,
    ] {
        assert_eq!(inspect(&root, reference, "{{.Id}}"), id, "{reference}");
    }
    for (missing, message) in [
        ("busybox:1.36", "No such image: busybox:1.36"),
        ("other", "No such image: other:latest"),
        ("quay.io/busybox", "No such image: quay.io/busybox:latest"),
        (
            "sha256:0000000000000000000000000000000000000000000000000000000000000000",
            "No such image: sha256:0000",
        ),
    ] {
        let out = root.run(["image", "inspect", missing]);
        assert_eq!(out.status.code(), Some(1), "{missing}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(message), "{missing}: {stderr}");
    }
    let out = root.run(["image", "inspect", "Bad:Name"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid reference format"));
}

#[test]
fn tag_and_rmi_follow_dockers_rules() {
    let root = root_with("busybox/oci");
    let id = fixture_id("busybox");
    root.ok(["tag", "busybox", "localhost:5000/mybox:v1"]);
    root.ok(["tag", short(&id), "mybox"]);
    let names = root.ok(["images", "--format", "{{.Repository}}:{{.Tag}}"]);
    let mut names: Vec<&str> = names.lines().collect();
    names.sort();
    assert_eq!(
        names,
        ["busybox:latest", "localhost:5000/mybox:v1", "mybox:latest"]
    );
    let out = root.run([
        "tag",
        "busybox",
        "bad@sha256:0000000000000000000000000000000000000000000000000000000000000000",
    ]);
    assert_eq!(out.status.code(), Some(1));

    // By id with several tags: refused unless forced.
    let out = root.run(["rmi", short(&id)]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("must be forced) - image is referenced in multiple repositories"));
    // By tag: only that tag goes.
    assert_eq!(root.ok(["rmi", "mybox"]), "Untagged: mybox:latest\n");
    assert_eq!(root.ok(["images", "-q"]).lines().count(), 1);
    // The last tags by force-by-id: everything goes, layers and blobs too.
    let out = root.ok(["rmi", "-f", &id]);
    assert!(out.contains("Untagged: busybox:latest\n"), "{out}");
    assert!(out.contains("Untagged: localhost:5000/mybox:v1\n"), "{out}");
    assert!(out.contains(&format!("Deleted: {id}\n")), "{out}");
    assert_eq!(root.ok(["images", "-q"]), "");
    let images = root.root().join("images");
    assert_eq!(
        fs::read_dir(images.join("layers")).unwrap().count(),
        0,
        "no layer left"
    );
    assert_eq!(
        fs::read_dir(images.join("blobs/sha256")).unwrap().count(),
        0,
        "no blob left"
    );
    let out = root.run(["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("No such image: busybox:latest"));
}

#[test]
fn rmi_keeps_layers_shared_with_another_image() {
    require_root();
    let root = TestRoot::new();
    let dir = tempfile::tempdir().unwrap();
    let mut base = RawTar::new();
    base.add(Entry::file("base", b"shared"));
    let mut top = RawTar::new();
    top.add(Entry::file("top", b"only in two"));
    write_oci_layout(
        &dir.path().join("one"),
        &[Layer::gzip(base.finish())],
        Some("one:latest"),
    );
    write_oci_layout(
        &dir.path().join("two"),
        &[Layer::gzip(base.finish()), Layer::gzip(top.finish())],
        Some("two:latest"),
    );
    root.ok(["load", "-i", dir.path().join("one").to_str().unwrap()]);
    root.ok(["load", "-i", dir.path().join("two").to_str().unwrap()]);
    let layers = root.root().join("images/layers");
    assert_eq!(
        fs::read_dir(&layers).unwrap().count(),
        2,
        "the shared base is stored once"
    );
    let out = root.ok(["rmi", "two"]);
    assert_eq!(
        out.lines().filter(|l| l.starts_with("Deleted: ")).count(),
        2,
        "image + its own layer: {out}"
    );
    assert_eq!(fs::read_dir(&layers).unwrap().count(), 1);
    let lower = inspect(&root, "one", "{{.GraphDriver.Data.LowerDir}}");
    assert_eq!(
        fs::read_to_string(Path::new(&lower).join("base")).unwrap(),
        "shared"
    );
}

#[test]
fn rmi_refuses_while_a_container_uses_the_image() {
    let root = root_with("busybox/oci");
    let id = fixture_id("busybox");
    // A container record as the container store writes it (the contract of
    // berth_engine::container::users_of_image).
    let container = "c0ffee".repeat(10) + "abcd";
    let record = root.root().join("containers").join(&container);
    fs::create_dir_all(&record).unwrap();
    fs::write(
        record.join("container.json"),
        serde_json::json!({ "image_id": id }).to_string(),
    )
    .unwrap();
    let out = root.run(["rmi", "busybox"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("container c0ffeec0ffee is using its referenced image"),
        "{stderr}"
    );
    let out = root.run(["rmi", &id]);
    assert!(String::from_utf8_lossy(&out.stderr)
        .contains("cannot be forced) - image is being used by container"));
    // Forced by name: the tag goes, the image (and its layers) stay for the container.
    assert_eq!(
        root.ok(["rmi", "-f", "busybox"]),
        "Untagged: busybox:latest\n"
    );
    assert_eq!(
        root.ok(["images", "--format", "{{.Repository}} {{.Tag}} {{.ID}}"]),
        format!("<none> <none> {}\n", short(&id))
    );
    let lower = inspect(&root, &id, "{{.GraphDriver.Data.LowerDir}}");
    assert!(Path::new(&lower).join("bin/busybox").is_file());
    fs::remove_dir_all(&record).unwrap();
    let out = root.ok(["rmi", &id]);
    assert!(out.contains(&format!("Deleted: {id}")), "{out}");
}

#[test]
fn debian_layers_hold_what_the_dockerfile_steps_made() {
    let root = root_with("debian/oci");
    let lower = inspect(&root, "debian:bookworm", "{{.GraphDriver.Data.LowerDir}}");
    let dirs: Vec<PathBuf> = lower.split(':').map(PathBuf::from).collect(); // top first
    assert_eq!(dirs.len(), 4);
    // In the layer directories, whiteouts have overlayfs' form.
    let whiteout = fs::symlink_metadata(dirs[1].join("etc/issue.net")).unwrap();
    assert!(
        whiteout.file_type().is_char_device() && whiteout.rdev() == 0,
        "whiteout = char 0/0"
    );
    assert_eq!(
        xattr(
            &dirs[1].join("etc/apt/apt.conf.d"),
            "trusted.overlay.opaque"
        )
        .as_deref(),
        Some(&b"y"[..])
    );
    // Stacked by overlayfs, they show the image as the steps left it.
    let merged = root.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let status = Command::new("mount")
        .args([
            "-t",
            "overlay",
            "overlay",
            "-o",
            &format!("ro,lowerdir={lower}"),
        ])
        .arg(&merged)
        .status()
        .unwrap();
    assert!(status.success(), "mount overlay");
    let m = |p: &str| merged.join(p);
    assert!(!m("etc/issue.net").exists(), "single file deleted");
    assert!(!m("usr/share/doc").exists(), "whole directory deleted");
    let apt: Vec<_> = fs::read_dir(m("etc/apt/apt.conf.d"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        apt,
        ["99berth"],
        "directory replaced: nothing of the base layer shows through"
    );
    let cache: Vec<_> = fs::read_dir(m("srv/app/cache"))
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(cache, ["fresh"]);
    assert_eq!(
        fs::read_to_string(m("srv/app/shape")).unwrap(),
        "a file again\n",
        "file -> dir -> file"
    );
    assert!(!m("srv/app/hello.rel").exists());
    let ino = |p: &str| fs::metadata(m(p)).unwrap().ino();
    assert_eq!(ino("srv/app/hello.txt"), ino("srv/app/hello.hardlink"));
    assert_eq!(
        ino("etc/debian_version"),
        ino("srv/app/debian_version.hardlink"),
        "hardlink to a lower file"
    );
    assert_eq!(
        fs::read_link(m("srv/app/os-release.abs")).unwrap(),
        Path::new("/etc/os-release")
    );
    assert_eq!(
        fs::metadata(m("usr/local/bin/suid-true")).unwrap().mode() & 0o7777,
        0o4755
    );
    assert!(
        xattr(&m("usr/local/bin/cap-true"), "security.capability").is_some(),
        "file capability kept"
    );
    assert!(fs::symlink_metadata(m("srv/app/fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
    assert_eq!(fs::read_dir(m("srv/app/empty")).unwrap().count(), 0);
    assert_eq!(fs::metadata(m("srv/app/owned-by-app")).unwrap().uid(), 1000);
    assert!(fs::read_to_string(m("etc/passwd"))
        .unwrap()
        .contains("app:x:1000:1000:"));
    assert!(
        m("usr/bin/apt-get").is_file(),
        "the base layer shows through"
    );
    nix::mount::umount(&merged).unwrap();
}

#[test]
fn every_debian_format_gives_one_image_sharing_its_layers() {
    require_root();
    let root = TestRoot::new();
    for format in [
        "oci",
        "oci-zstd",
        "oci-plain",
        "docker-archive.tar",
        "docker-archive-classic.tar",
        "oci-archive.tar",
    ] {
        let out = root.ok([
            "load",
            "-i",
            fixture(&format!("debian/{format}")).to_str().unwrap(),
        ]);
        assert_eq!(out, "Loaded image: debian:bookworm\n", "{format}");
    }
    assert_eq!(
        root.ok(["images", "-q", "--no-trunc"]),
        format!("{}\n", fixture_id("debian"))
    );
    assert_eq!(
        fs::read_dir(root.root().join("images/layers"))
            .unwrap()
            .count(),
        4
    );
    assert_store_consistent(&root);
}

#[test]
fn save_then_load_gives_identical_digests() {
    let root = root_with("debian/oci");
    let id = fixture_id("debian");
    let digests_before = inspect(&root, "debian:bookworm", "{{json .RepoDigests}}");
    let out = tempfile::tempdir().unwrap();
    for (format, file) in [("docker-archive", "docker.tar"), ("oci-archive", "oci.tar")] {
        let path = out.path().join(file);
        root.ok([
            "save",
            "--format",
            format,
            "-o",
            path.to_str().unwrap(),
            "debian:bookworm",
        ]);
        let other = TestRoot::new();
        assert_eq!(
            other.ok(["load", "-i", path.to_str().unwrap()]),
            "Loaded image: debian:bookworm\n"
        );
        assert_eq!(
            inspect(&other, "debian:bookworm", "{{.Id}}"),
            id,
            "{format}"
        );
        assert_eq!(
            diff_ids_of(&other, "debian:bookworm"),
            fixture_diff_ids("debian"),
            "{format}"
        );
        if format == "oci-archive" {
            assert_eq!(
                inspect(&other, "debian:bookworm", "{{json .RepoDigests}}"),
                digests_before,
                "the OCI form keeps the manifest digest"
            );
        }
    }
    // To stdout, and several images in one archive.
    let busybox = fixture("busybox/oci");
    root.ok(["load", "-i", busybox.to_str().unwrap()]);
    let both = root
        .berth(["save", "busybox", "debian:bookworm"])
        .output()
        .unwrap();
    assert!(both.status.success(), "{}", describe(&both));
    let other = TestRoot::new();
    let mut child = other
        .berth(["load"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(&both.stdout).unwrap();
    let loaded = child.wait_with_output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&loaded.stdout),
        "Loaded image: busybox:latest\nLoaded image: debian:bookworm\n"
    );
    // An image saved by id carries no tag (as with docker).
    let path = out.path().join("by-id.tar");
    root.ok(["save", "-o", path.to_str().unwrap(), &id]);
    let other = TestRoot::new();
    assert_eq!(
        other.ok(["load", "-i", path.to_str().unwrap()]),
        format!("Loaded image ID: {id}\n")
    );
    // Missing image: an error, and no file written.
    let path = out.path().join("missing.tar");
    let failed = root.run(["save", "-o", path.to_str().unwrap(), "nosuch"]);
    assert_eq!(failed.status.code(), Some(1));
    assert!(!path.exists(), "no half-written archive");
    assert_eq!(
        fs::read_dir(out.path()).unwrap().count(),
        3,
        "no temporary file left"
    );
}

fn skopeo() -> Command {
    assert!(
        Command::new("skopeo")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success()),
        "this test needs skopeo (apt-get install skopeo; .ci/run installs it)"
    );
    Command::new("skopeo")
}

#[test]
fn skopeo_reads_what_berth_saves() {
    let root = root_with("debian/oci");
    let dir = tempfile::tempdir().unwrap();
    let docker = dir.path().join("debian.tar");
    let oci = dir.path().join("debian-oci.tar");
    root.ok(["save", "-o", docker.to_str().unwrap(), "debian:bookworm"]);
    root.ok([
        "save",
        "--format",
        "oci-archive",
        "-o",
        oci.to_str().unwrap(),
        "debian:bookworm",
    ]);
    for reference in [
        format!("docker-archive:{}", docker.display()),
        format!("oci-archive:{}", oci.display()),
    ] {
        let out = skopeo()
            .args(["inspect", "--config", &reference])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo inspect {reference}: {}",
            describe(&out)
        );
        let config: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let diff_ids: Vec<String> =
            serde_json::from_value(config["rootfs"]["diff_ids"].clone()).unwrap();
        assert_eq!(diff_ids, fixture_diff_ids("debian"), "{reference}");
    }
    // The docker format carries uncompressed layers: their digests are the diff_ids.
    let out = skopeo()
        .args(["inspect", &format!("docker-archive:{}", docker.display())])
        .output()
        .unwrap();
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let layers: Vec<String> = serde_json::from_value(summary["Layers"].clone()).unwrap();
    assert_eq!(layers, fixture_diff_ids("debian"), "{summary}");
}

#[test]
fn archives_written_by_skopeo_load() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let source = format!("oci:{}:latest", fixture("busybox/oci").display());
    let docker = dir.path().join("skopeo-docker.tar");
    let oci_dir = dir.path().join("skopeo-oci");
    for destination in [
        format!("docker-archive:{}:busybox:latest", docker.display()),
        format!("oci:{}:docker.io/library/busybox:latest", oci_dir.display()),
    ] {
        let out = skopeo()
            .args(["copy", "--quiet", &source, &destination])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "skopeo copy to {destination}: {}",
            describe(&out)
        );
    }
    for input in [&docker, &oci_dir] {
        let root = TestRoot::new();
        assert_eq!(
            root.ok(["load", "-i", input.to_str().unwrap()]),
            "Loaded image: busybox:latest\n"
        );
        assert_eq!(
            inspect(&root, "busybox", "{{.Id}}"),
            fixture_id("busybox"),
            "{}",
            input.display()
        );
    }
}

#[test]
fn multi_platform_indexes_choose_the_host() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let mut tar = RawTar::new();
    tar.add(Entry::file("hello", b"from amd64"));
    let layout = dir.path().join("layout");
    let written = write_oci_layout(&layout, &[Layer::gzip(tar.finish())], None);
    // Wrap the manifest in a multi-platform index; the other platform's
    // manifest does not even exist, so choosing it would fail.
    let index_path = layout.join("index.json");
    let top: serde_json::Value = serde_json::from_slice(&fs::read(&index_path).unwrap()).unwrap();
    let mut host = top["manifests"][0].clone();
    host["platform"] = serde_json::json!({"os": "linux", "architecture": berth_engine::image::manifest::host_architecture()});
    let absent = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "e".repeat(64)), "size": 100,
        "platform": {"os": "linux", "architecture": "s390x"}});
    let attestation = serde_json::json!({
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "digest": format!("sha256:{}", "f".repeat(64)), "size": 100,
        "platform": {"os": "unknown", "architecture": "unknown"}});
    let nested = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [absent, attestation, host]}))
    .unwrap();
    let nested_digest = berth_engine::image::Digest::of(&nested);
    fs::write(
        layout.join("blobs/sha256").join(nested_digest.hex()),
        &nested,
    )
    .unwrap();
    let entry = |annotations: serde_json::Value| {
        serde_json::json!({
        "schemaVersion": 2, "manifests": [{
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "digest": nested_digest, "size": nested.len(), "annotations": annotations}]})
    };
    // A bare tag in ref.name names no repository: the image loads untagged.
    fs::write(
        &index_path,
        serde_json::to_vec(&entry(
            serde_json::json!({"org.opencontainers.image.ref.name": "v1"}),
        ))
        .unwrap(),
    )
    .unwrap();
    let root = TestRoot::new();
    assert_eq!(
        root.ok(["load", "-i", layout.to_str().unwrap()]),
        format!("Loaded image ID: {}\n", written.id)
    );
    // A full name in ref.name is a tag.
    fs::write(
        &index_path,
        serde_json::to_vec(&entry(
            serde_json::json!({"org.opencontainers.image.ref.name": "example.com/multi:v1"}),
        ))
        .unwrap(),
    )
    .unwrap();
    assert_eq!(
        root.ok(["load", "-i", layout.to_str().unwrap()]),
        "Loaded image: example.com/multi:v1\n"
    );
    assert_eq!(root.ok(["images", "-q"]).lines().count(), 1);
    // No image for this host: a clear error listing what there is.
    let only_other = serde_json::to_vec(&serde_json::json!({
        "schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json", "manifests": [absent]})).unwrap();
    let digest = berth_engine::image::Digest::of(&only_other);
    fs::write(layout.join("blobs/sha256").join(digest.hex()), &only_other).unwrap();
    let entry = serde_json::json!({"schemaVersion": 2, "manifests": [{
        "mediaType": "application/vnd.oci.image.index.v1+json", "digest": digest, "size": only_other.len()}]});
    fs::write(&index_path, serde_json::to_vec(&entry).unwrap()).unwrap();
    let out = TestRoot::new().run(["load", "-i", layout.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("it has: linux/s390x"),
        "{}",
        describe(&out)
    );
}

#[test]
fn load_refuses_a_terminal_stdin_and_reports_unreadable_files() {
    require_root();
    let root = TestRoot::new();
    let out = root.run(["load", "-i", "/nonexistent/busybox.tar"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent/busybox.tar"));
    let out = root.berth(["load"]).stdin(Stdio::null()).output().unwrap();
    assert_eq!(
        out.status.code(),
        Some(1),
        "an empty stdin is not an archive"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("stdin"),
        "{}",
        describe(&out)
    );
}

fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
    let path = std::ffi::CString::new(path.as_os_str().as_encoded_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    let mut buf = vec![0u8; 256];
    // SAFETY: both strings are NUL-terminated and buf is valid for buf.len() bytes.
    let n = unsafe {
        libc::lgetxattr(
            path.as_ptr(),
            CStr::as_ptr(&name),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    if n < 0 {
        return None;
    }
    buf.truncate(n as usize);
    Some(buf)
}
