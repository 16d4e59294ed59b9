//! Helpers shared by the image tests: building OCI layouts from layer tars
//! (with berth-engine's writers), tree snapshots to prove that nothing
//! changed, and checks of a store's consistency.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};

use berth_engine::image::digest::Digest;
use berth_engine::image::layout::{DirSink, LayoutWriter};
use berth_engine::image::manifest::{
    Descriptor, Index, Manifest, ANNOTATION_IMAGE_NAME, ANNOTATION_REF_NAME, OCI_CONFIG,
    OCI_LAYER_GZIP, OCI_LAYER_TAR, OCI_MANIFEST,
};
use berth_engine::layer::rawtar::gzip;
use berth_tests::TestRoot;

/// One layer of a test image.
pub struct Layer {
    /// The uncompressed tar.
    pub tar: Vec<u8>,
    pub gzip: bool,
    /// Media type written in the manifest (default: the right one).
    pub media_type: Option<String>,
}

impl Layer {
    pub fn gzip(tar: Vec<u8>) -> Layer {
        Layer {
            tar,
            gzip: true,
            media_type: None,
        }
    }

    pub fn blob(&self) -> Vec<u8> {
        if self.gzip {
            gzip(&self.tar)
        } else {
            self.tar.clone()
        }
    }
}

/// What [`write_oci_layout`] wrote, so tests can corrupt it precisely.
pub struct Written {
    pub id: Digest,
    pub manifest: Digest,
    pub layer_blobs: Vec<Digest>,
    pub dir: PathBuf,
}

impl Written {
    pub fn blob_path(&self, digest: &Digest) -> PathBuf {
        self.dir.join("blobs/sha256").join(digest.hex())
    }
}

/// Write an OCI image layout of `layers` into `dir`, tagged `tag` (a full
/// name in `io.containerd.image.name`) when given.
pub fn write_oci_layout(dir: &Path, layers: &[Layer], tag: Option<&str>) -> Written {
    let diff_ids: Vec<Digest> = layers.iter().map(|l| Digest::of(&l.tar)).collect();
    let config = serde_json::to_vec(&serde_json::json!({
        "architecture": berth_engine::image::manifest::host_architecture(),
        "os": "linux",
        "created": "2024-01-01T00:00:00Z",
        "config": {"Cmd": ["sh"]},
        "rootfs": {"type": "layers", "diff_ids": diff_ids},
    }))
    .unwrap();
    let id = Digest::of(&config);
    let mut writer = LayoutWriter::new(DirSink::new(dir).unwrap());
    writer.blob_bytes(&id, &config).unwrap();
    let mut descriptors = Vec::new();
    let mut layer_blobs = Vec::new();
    for layer in layers {
        let blob = layer.blob();
        let digest = Digest::of(&blob);
        writer.blob_bytes(&digest, &blob).unwrap();
        let media_type = layer.media_type.clone().unwrap_or_else(|| {
            if layer.gzip {
                OCI_LAYER_GZIP
            } else {
                OCI_LAYER_TAR
            }
            .to_string()
        });
        descriptors.push(Descriptor::new(
            &media_type,
            digest.clone(),
            blob.len() as u64,
        ));
        layer_blobs.push(digest);
    }
    let manifest = Manifest {
        schema_version: 2,
        media_type: Some(OCI_MANIFEST.to_string()),
        config: Descriptor::new(OCI_CONFIG, id.clone(), config.len() as u64),
        layers: descriptors,
        annotations: None,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let manifest_digest = Digest::of(&bytes);
    writer.blob_bytes(&manifest_digest, &bytes).unwrap();
    let mut entry = Descriptor::new(OCI_MANIFEST, manifest_digest.clone(), bytes.len() as u64);
    if let Some(tag) = tag {
        entry.annotations = Some(BTreeMap::from([
            (ANNOTATION_IMAGE_NAME.to_string(), tag.to_string()),
            (ANNOTATION_REF_NAME.to_string(), "latest".to_string()),
        ]));
    }
    writer.finish_oci(&Index::new(vec![entry])).unwrap();
    Written {
        id,
        manifest: manifest_digest,
        layer_blobs,
        dir: dir.to_path_buf(),
    }
}

/// path -> "type mode uid:gid size [content|target|rdev]" of a whole tree.
/// Directory sizes and times are left out (creating and removing a staging
/// directory changes its parent's times, not its contents).
pub fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    let mut paths: Vec<PathBuf> = entries.map(|e| e.unwrap().path()).collect();
    paths.sort();
    for path in paths {
        let meta = fs::symlink_metadata(&path).unwrap();
        let ft = meta.file_type();
        let rel = path.strip_prefix(root).unwrap().to_path_buf();
        let what = if ft.is_dir() {
            format!(
                "dir {:o} {}:{}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid()
            )
        } else if ft.is_symlink() {
            format!("link {}", fs::read_link(&path).unwrap().display())
        } else if ft.is_file() {
            let content = fs::read(&path).unwrap();
            format!(
                "file {:o} {}:{} {} {} {}",
                meta.mode() & 0o7777,
                meta.uid(),
                meta.gid(),
                meta.len(),
                meta.mtime(),
                Digest::of(&content)
            )
        } else if ft.is_char_device() || ft.is_block_device() {
            format!("node {}", meta.rdev())
        } else {
            "other".to_string()
        };
        out.insert(rel, what);
        if ft.is_dir() {
            walk(root, &path, out);
        }
    }
}

/// The host's /etc/shadow: link count and mtime (a hardlink to it, or a
/// write through it, would change one of them).
pub fn host_shadow() -> Option<(u64, i64)> {
    fs::metadata("/etc/shadow")
        .ok()
        .map(|m| (m.nlink(), m.mtime()))
}

/// Every image of the store is whole: its layer directories and records
/// exist, and `berth save` (which re-verifies every layer's diff_id from
/// the stored blobs) succeeds. No staging directory is left behind.
pub fn assert_store_consistent(root: &TestRoot) {
    let ids = root.ok(["images", "-q", "--no-trunc"]);
    for id in ids.lines().filter(|l| !l.is_empty()) {
        let lower = root.ok([
            "image",
            "inspect",
            "-f",
            "{{.GraphDriver.Data.LowerDir}}",
            id,
        ]);
        for dir in lower.trim().split(':') {
            let dir = Path::new(dir);
            assert!(
                dir.is_dir(),
                "layer directory {} of {id} exists",
                dir.display()
            );
            assert!(
                dir.parent().unwrap().join("layer.json").is_file(),
                "layer record of {} exists",
                dir.display()
            );
        }
        let out = root.run(["save", "-o", "/dev/null", id]);
        assert!(
            out.status.success(),
            "save of {id} re-verifies: {}",
            berth_tests::describe(&out)
        );
    }
    let leftovers: Vec<_> = fs::read_dir(root.root().join("tmp"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.is_empty(),
        "no staging left in tmp: {leftovers:?}"
    );
}

/// The image id written by rootfs-fixtures/build.sh next to the archives.
pub fn fixture_id(name: &str) -> String {
    fs::read_to_string(berth_tests::fixture(&format!("{name}/image-id")))
        .unwrap()
        .trim()
        .to_string()
}

/// The diff_ids of a fixture, from its config.
pub fn fixture_diff_ids(name: &str) -> Vec<String> {
    let config: serde_json::Value = serde_json::from_slice(
        &fs::read(berth_tests::fixture(&format!("{name}/config.json"))).unwrap(),
    )
    .unwrap();
    config["rootfs"]["diff_ids"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d.as_str().unwrap().to_string())
        .collect()
}
