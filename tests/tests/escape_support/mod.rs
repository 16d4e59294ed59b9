//! Shared by the escape tests: a test root with busybox and an "attacker"
//! image (busybox + berth-attacker + the host C library it needs, and any
//! hostile files a test adds), written as an OCI layout with berth-engine's
//! own writers and loaded with `berth load`.

#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use berth_engine::layer::rawtar::{Entry, RawTar};
use berth_tests::{bin, describe, fixture, require_root, TestRoot};

use crate::images_support::{write_oci_layout, Layer};

/// Where berth-attacker sits in the attacker image.
pub const ATTACKER: &str = "/usr/local/bin/berth-attacker";

/// A test root with busybox loaded; every container is force-removed on drop.
pub struct Lab {
    pub root: TestRoot,
    inputs: tempfile::TempDir,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let root = TestRoot::new();
        let archive = fixture("busybox/docker-archive.tar");
        root.ok(["load", "-i", archive.to_str().unwrap()]);
        Lab {
            root,
            inputs: tempfile::tempdir().unwrap(),
        }
    }

    pub fn ok(&self, args: &[&str]) -> String {
        self.root.ok(args)
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.root.run(args)
    }

    /// `berth run -d ARGS`, returning the id.
    pub fn detached(&self, args: &[&str]) -> String {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        let id = self.ok(&full).trim().to_string();
        assert_eq!(id.len(), 64, "run -d prints the full id, got {id:?}");
        id
    }

    /// Load an image `name` made of busybox, the attacker layer and a last
    /// layer holding `extra` (hostile files).
    pub fn load_image(&self, name: &str, extra: Vec<Entry>) {
        let mut layers = vec![
            Layer {
                tar: busybox_layer(),
                gzip: false,
                media_type: None,
            },
            Layer::gzip(attacker_layer()),
        ];
        if !extra.is_empty() {
            let mut tar = RawTar::new();
            for entry in extra {
                tar.add(entry);
            }
            layers.push(Layer::gzip(tar.finish()));
        }
        let dir = self.inputs.path().join(name);
        let _ = fs::remove_dir_all(&dir);
        write_oci_layout(
            &dir,
            &layers,
            Some(&format!("docker.io/library/{name}:latest")),
        );
        self.ok(&["load", "-i", dir.to_str().unwrap()]);
    }

    /// The attacker image without hostile files, as `attacker`.
    pub fn with_attacker(self) -> Lab {
        self.load_image("attacker", Vec::new());
        self
    }

    pub fn input_dir(&self) -> &Path {
        self.inputs.path()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        let out = self.root.run(["ps", "-aq", "--no-trunc"]);
        for id in String::from_utf8_lossy(&out.stdout).split_whitespace() {
            let _ = self.root.run(["rm", "-f", id]);
        }
    }
}

/// The busybox fixture's single layer, uncompressed (from its OCI layout).
pub fn busybox_layer() -> Vec<u8> {
    let layout = fixture("busybox/oci-plain");
    let blob = |digest: &str| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        fs::read(layout.join("blobs/sha256").join(hex)).unwrap()
    };
    let index: serde_json::Value =
        serde_json::from_slice(&fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest: serde_json::Value =
        serde_json::from_slice(&blob(index["manifests"][0]["digest"].as_str().unwrap())).unwrap();
    blob(manifest["layers"][0]["digest"].as_str().unwrap())
}

/// berth-attacker at [`ATTACKER`], and every shared library that it and the
/// berth binary load (so the host's berth can really run inside the
/// container in the CVE-2019-5736 test), at their host paths.
pub fn attacker_layer() -> Vec<u8> {
    let mut tar = RawTar::new();
    let mut dirs: Vec<String> = Vec::new();
    let mut add_dirs = |tar: &mut RawTar, path: &Path| {
        let mut so_far = PathBuf::new();
        for part in path.parent().unwrap().components().skip(1) {
            so_far.push(part);
            let name = so_far.to_string_lossy().into_owned();
            if !dirs.contains(&name) {
                tar.add(Entry::dir(&name));
                dirs.push(name);
            }
        }
    };
    let attacker = bin("berth-attacker");
    add_dirs(&mut tar, Path::new(ATTACKER));
    tar.add(
        Entry::file(
            ATTACKER.trim_start_matches('/'),
            &fs::read(&attacker).unwrap(),
        )
        .with_mode(0o755),
    );
    let mut libs: Vec<PathBuf> = Vec::new();
    for binary in [attacker, bin("berth")] {
        for lib in shared_libraries(&binary) {
            if !libs.contains(&lib) {
                libs.push(lib);
            }
        }
    }
    for lib in libs {
        add_dirs(&mut tar, &lib);
        tar.add(
            Entry::file(
                lib.to_str().unwrap().trim_start_matches('/'),
                &fs::read(&lib).unwrap(),
            )
            .with_mode(0o755),
        );
    }
    tar.finish()
}

/// The absolute paths `ldd` lists for `binary` (the loader included).
fn shared_libraries(binary: &Path) -> Vec<PathBuf> {
    let out = std::process::Command::new("ldd")
        .arg(binary)
        .output()
        .expect("ldd");
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .filter(|w| w.starts_with('/'))
        .map(PathBuf::from)
        .collect()
}

/// Lines `NAME refused ERRNO` / `NAME SUCCEEDED ...` of `berth-attacker
/// syscalls`, as name -> (refused?, errno or detail).
pub fn attack_results(out: &Output) -> std::collections::BTreeMap<String, (bool, String)> {
    assert!(out.status.success(), "the attacker ran: {}", describe(out));
    let mut results = std::collections::BTreeMap::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let mut fields = line.splitn(3, ' ');
        let (Some(name), Some(verdict)) = (fields.next(), fields.next()) else {
            continue;
        };
        let rest = fields.next().unwrap_or_default().to_string();
        match verdict {
            "refused" => results.insert(name.to_string(), (true, rest)),
            "SUCCEEDED" => results.insert(name.to_string(), (false, rest)),
            _ => None,
        };
    }
    results
}
