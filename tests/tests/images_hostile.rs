//! Hostile and broken archives through `berth load`: each is refused with
//! one clear line and exit status 1, and afterwards nothing has changed —
//! not the store (its whole tree is compared), not a directory outside it
//! that the archive aims at, not the host's /etc/shadow.

mod images_support;

use std::fs;
use std::path::{Path, PathBuf};

use berth_engine::image::digest::Digest;
use berth_engine::layer::rawtar::{gzip, Entry, RawTar};
use berth_tests::{describe, fixture, require_root, TestRoot};
use images_support::{host_shadow, snapshot, write_oci_layout, Layer};

/// A test root with its store created, a directory outside it that hostile
/// archives aim at, and a place for the archives themselves.
struct Target {
    root: TestRoot,
    outside: tempfile::TempDir,
    inputs: tempfile::TempDir,
}

impl Target {
    fn new() -> Target {
        require_root();
        let root = TestRoot::new();
        root.ok(["images"]); // creates the store and its lock files
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("victim"), "untouched").unwrap();
        fs::create_dir(outside.path().join("etc")).unwrap();
        Target {
            root,
            outside,
            inputs: tempfile::tempdir().unwrap(),
        }
    }

    fn outside(&self) -> &Path {
        self.outside.path()
    }

    fn input(&self, name: &str) -> PathBuf {
        self.inputs.path().join(name)
    }

    /// An OCI layout with one gzip layer holding `tar`.
    fn layout_with(&self, tar: &RawTar) -> PathBuf {
        let dir = self.input("layout");
        write_oci_layout(
            &dir,
            &[Layer::gzip(tar.finish())],
            Some("docker.io/library/hostile:latest"),
        );
        dir
    }

    /// `berth load -i input` must fail with a line containing `expect`, and
    /// change nothing.
    fn assert_refused(&self, input: &Path, expect: &str) {
        let store_before = snapshot(self.root.path());
        let outside_before = snapshot(self.outside());
        let shadow_before = host_shadow();
        let out = self.root.run(["load", "-i", input.to_str().unwrap()]);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(
            out.status.code(),
            Some(1),
            "load must fail: {}",
            describe(&out)
        );
        assert!(
            stderr.contains(expect),
            "error should mention {expect:?}: {stderr}"
        );
        assert_eq!(stderr.trim().lines().count(), 1, "one clear line: {stderr}");
        assert!(out.stdout.is_empty(), "nothing reported as loaded");
        assert_eq!(
            snapshot(self.root.path()),
            store_before,
            "the store is exactly as it was"
        );
        assert_eq!(
            snapshot(self.outside()),
            outside_before,
            "nothing outside changed"
        );
        assert_eq!(
            host_shadow(),
            shadow_before,
            "the host's /etc/shadow is untouched"
        );
        assert_eq!(
            self.root.ok(["images", "-q"]),
            "",
            "no image, not even a partial one"
        );
    }
}

#[test]
fn entry_climbing_out_with_dot_dot() {
    let t = Target::new();
    let mut tar = RawTar::new();
    let climb = format!("../../../../../../../../..{}/victim", t.outside().display());
    tar.add(Entry::file("etc/ok", b"fine"))
        .add(Entry::file(&climb, b"pwned"));
    t.assert_refused(&t.layout_with(&tar), "'..'");
}

#[test]
fn entry_with_an_absolute_name() {
    let t = Target::new();
    let mut tar = RawTar::new();
    tar.add(Entry::file(
        t.outside().join("victim").to_str().unwrap(),
        b"pwned",
    ));
    t.assert_refused(&t.layout_with(&tar), "absolute path");
}

#[test]
fn symlink_pointing_outside_then_a_file_written_through_it() {
    let t = Target::new();
    let mut tar = RawTar::new();
    tar.add(Entry::symlink("escape", t.outside().to_str().unwrap()))
        .add(Entry::file("escape/victim", b"pwned"))
        .add(Entry::file("escape/new-file", b"pwned"));
    t.assert_refused(&t.layout_with(&tar), "symlink");
    assert_eq!(
        fs::read_to_string(t.outside().join("victim")).unwrap(),
        "untouched"
    );
}

#[test]
fn hardlink_to_etc_shadow() {
    let t = Target::new();
    for target in [
        "/etc/shadow",
        "../../../../../../../etc/shadow",
        "etc/shadow",
    ] {
        let mut tar = RawTar::new();
        tar.add(Entry::hardlink("shadow", target));
        let layout = t.layout_with(&tar);
        let expect = match target {
            "/etc/shadow" => "absolute path",
            "etc/shadow" => "neither this layer nor a layer below",
            _ => "'..'",
        };
        t.assert_refused(&layout, expect);
        fs::remove_dir_all(layout).unwrap();
    }
}

#[test]
fn whiteouts_naming_dot_dot() {
    let t = Target::new();
    for name in [".wh...", "../.wh.victim", "etc/.wh."] {
        let mut tar = RawTar::new();
        tar.add(Entry::file(name, b""));
        let layout = t.layout_with(&tar);
        let expect = if name.starts_with("..") {
            "'..'"
        } else {
            "whiteout names no file"
        };
        t.assert_refused(&layout, expect);
        fs::remove_dir_all(layout).unwrap();
    }
}

#[test]
fn device_nodes_are_made_inside_the_layer_only() {
    let t = Target::new();
    let mut tar = RawTar::new();
    let climb = format!("../../../../../../../..{}/null", t.outside().display());
    tar.add(Entry::char_device(&climb, 1, 3));
    let layout = t.layout_with(&tar);
    t.assert_refused(&layout, "'..'");
    fs::remove_dir_all(layout).unwrap();

    // Inside the layer a device node is legitimate (docker keeps them); it
    // lands in the layer directory and nowhere else.
    let mut tar = RawTar::new();
    tar.add(Entry::dir("dev/"))
        .add(Entry::block_device("dev/sda", 8, 0));
    let layout = t.layout_with(&tar);
    let outside_before = snapshot(t.outside());
    t.root.ok(["load", "-i", layout.to_str().unwrap()]);
    assert_eq!(snapshot(t.outside()), outside_before);
    let lower = t.root.ok([
        "image",
        "inspect",
        "-f",
        "{{.GraphDriver.Data.LowerDir}}",
        "hostile",
    ]);
    let node = Path::new(lower.trim()).join("dev/sda");
    use std::os::unix::fs::FileTypeExt;
    assert!(fs::symlink_metadata(node)
        .unwrap()
        .file_type()
        .is_block_device());
    let layers_dir = t.root.root().join("images/layers");
    let mode = fs::metadata(&layers_dir).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        mode.permissions().mode() & 0o077,
        0,
        "only root can reach layer contents"
    );
}

#[test]
fn size_header_larger_than_the_data() {
    let t = Target::new();
    let mut entry = Entry::file("big", b"a few bytes");
    entry.declared_size = 10 << 20;
    let mut tar = RawTar::new();
    tar.add(entry);
    let dir = t.input("layout");
    // The tar simply ends: no padding, no end marker.
    write_oci_layout(
        &dir,
        &[Layer::gzip(tar.truncated(usize::MAX))],
        Some("hostile:latest"),
    );
    t.assert_refused(&dir, "truncated");
}

#[test]
fn truncated_gzip_layer() {
    let t = Target::new();
    let busybox = fixture("busybox/oci");
    let copy = t.input("busybox-oci");
    copy_dir(&busybox, &copy);
    let (blob, _) = only_layer_blob(&copy);
    let bytes = fs::read(&blob).unwrap();
    // Keep the manifest consistent with the cut blob: only gzip can notice.
    let cut = &bytes[..bytes.len() / 2];
    rewrite_blob(&copy, &blob, cut);
    t.assert_refused(&copy, "decompressing");
}

#[test]
fn blob_whose_digest_does_not_match() {
    let t = Target::new();
    let copy = t.input("busybox-oci");
    copy_dir(&fixture("busybox/oci"), &copy);
    let (blob, _) = only_layer_blob(&copy);
    let mut bytes = fs::read(&blob).unwrap();
    let last = bytes.len() - 20;
    bytes[last] ^= 0xff; // inside the deflate stream's trailer area
    fs::write(&blob, &bytes).unwrap();
    t.assert_refused(&copy, "digest mismatch");
}

#[test]
fn manifest_pointing_to_a_missing_blob() {
    let t = Target::new();
    let copy = t.input("busybox-oci");
    copy_dir(&fixture("busybox/oci"), &copy);
    let (blob, digest) = only_layer_blob(&copy);
    fs::remove_file(&blob).unwrap();
    t.assert_refused(
        &copy,
        &format!("blobs/sha256/{}, which is missing", digest.hex()),
    );
}

#[test]
fn malformed_json_and_unsupported_media_types() {
    let t = Target::new();
    let copy = t.input("busybox-oci");
    copy_dir(&fixture("busybox/oci"), &copy);
    fs::write(copy.join("index.json"), b"{ this is not json").unwrap();
    t.assert_refused(&copy, "index.json");

    let dir = t.input("encrypted");
    let mut tar = RawTar::new();
    tar.add(Entry::file("x", b"x"));
    let mut layer = Layer::gzip(tar.finish());
    layer.media_type = Some("application/vnd.oci.image.layer.v1.tar+gzip+encrypted".to_string());
    write_oci_layout(&dir, &[layer], Some("hostile:latest"));
    t.assert_refused(&dir, "unsupported layer media type");

    let dir = t.input("not-an-image");
    fs::create_dir(&dir).unwrap();
    fs::write(dir.join("hello.txt"), "hello").unwrap();
    t.assert_refused(
        &dir,
        "neither a docker save archive nor an OCI image layout",
    );
}

#[test]
fn layer_whose_content_does_not_match_its_diff_id() {
    let t = Target::new();
    let dir = t.input("layout");
    let mut tar = RawTar::new();
    tar.add(Entry::file("x", b"the real content"));
    let written = write_oci_layout(&dir, &[Layer::gzip(tar.finish())], Some("hostile:latest"));
    // Swap the blob for another valid gzip tar, fixing the manifest digest
    // but not the config's diff_id.
    let mut other = RawTar::new();
    other.add(Entry::file("x", b"substituted content"));
    rewrite_blob(
        &dir,
        &written.blob_path(&written.layer_blobs[0]),
        &gzip(&other.finish()),
    );
    t.assert_refused(&dir, "diff_id");
}

#[test]
fn docker_archives_with_hostile_members() {
    let t = Target::new();
    // An outer archive member climbing out.
    let mut outer = RawTar::new();
    let climb = format!("../../../../../../../..{}/victim", t.outside().display());
    outer
        .add(Entry::file("manifest.json", b"[]"))
        .add(Entry::file(&climb, b"pwned"));
    let archive = t.input("climb.tar");
    fs::write(&archive, outer.finish()).unwrap();
    t.assert_refused(&archive, "'..'");

    // manifest.json naming a layer outside the archive, directly or through a symlink.
    for (layers, extra) in [
        (r#"["../../../../etc/shadow"]"#, None),
        (
            r#"["evil/layer.tar"]"#,
            Some(Entry::symlink("evil", "../../../../etc")),
        ),
    ] {
        let config = br#"{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000000"]}}"#;
        let config_name = format!("{}.json", Digest::of(config).hex());
        let manifest = format!(
            r#"[{{"Config":"{config_name}","RepoTags":["hostile:latest"],"Layers":{layers}}}]"#
        );
        let mut outer = RawTar::new();
        outer
            .add(Entry::file(&config_name, config))
            .add(Entry::file("manifest.json", manifest.as_bytes()));
        if let Some(link) = extra {
            outer.add(link);
        }
        let archive = t.input("docker.tar");
        fs::write(&archive, outer.finish()).unwrap();
        t.assert_refused(
            &archive,
            if layers.contains("..") {
                "'..'"
            } else {
                "points outside"
            },
        );
    }
}

#[test]
fn truncated_docker_archive() {
    let t = Target::new();
    let bytes = fs::read(fixture("busybox/docker-archive.tar")).unwrap();
    let archive = t.input("cut.tar");
    fs::write(&archive, &bytes[..bytes.len() * 2 / 3]).unwrap();
    t.assert_refused(&archive, "truncated archive");
}

// ---- helpers ---------------------------------------------------------------

fn copy_dir(from: &Path, to: &Path) {
    fs::create_dir_all(to).unwrap();
    for entry in fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// The path and digest of the single layer blob of an OCI layout.
fn only_layer_blob(layout: &Path) -> (PathBuf, Digest) {
    let (manifest_path, manifest) = manifest_of(layout);
    let _ = manifest_path;
    let digest = manifest["layers"][0]["digest"].as_str().unwrap();
    let digest = Digest::parse(digest).unwrap();
    (layout.join("blobs/sha256").join(digest.hex()), digest)
}

fn manifest_of(layout: &Path) -> (PathBuf, serde_json::Value) {
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let digest = Digest::parse(index["manifests"][0]["digest"].as_str().unwrap()).unwrap();
    let path = layout.join("blobs/sha256").join(digest.hex());
    (
        path.clone(),
        serde_json::from_slice(&fs::read(path).unwrap()).unwrap(),
    )
}

/// Replace a layer blob and update the manifest (digest and size) and the
/// index, so that only the blob's *content* is wrong.
fn rewrite_blob(layout: &Path, old_blob: &Path, new_bytes: &[u8]) {
    let new_digest = Digest::of(new_bytes);
    fs::remove_file(old_blob).unwrap();
    fs::write(
        layout.join("blobs/sha256").join(new_digest.hex()),
        new_bytes,
    )
    .unwrap();
    let (manifest_path, mut manifest) = manifest_of(layout);
    manifest["layers"][0]["digest"] = serde_json::json!(new_digest);
    manifest["layers"][0]["size"] = serde_json::json!(new_bytes.len());
    let bytes = serde_json::to_vec(&manifest).unwrap();
    fs::remove_file(manifest_path).unwrap();
    let manifest_digest = Digest::of(&bytes);
    fs::write(
        layout.join("blobs/sha256").join(manifest_digest.hex()),
        &bytes,
    )
    .unwrap();
    let mut index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"][0]["digest"] = serde_json::json!(manifest_digest);
    index["manifests"][0]["size"] = serde_json::json!(bytes.len());
    fs::write(
        layout.join("index.json"),
        serde_json::to_vec(&index).unwrap(),
    )
    .unwrap();
}
