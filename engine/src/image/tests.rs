//! Store-level tests of the API the rest of berth uses (build, containers):
//! images from parts, resolution, and the round trip through an archive.
//! They run as root (layer unpacking sets owners).

use std::fs;
use std::os::unix::fs::MetadataExt;

use super::config::ImageConfig;
use super::layout::TarSink;
use super::manifest::OCI_LAYER_GZIP;
use super::{ImageError, ImageStore, LoadSource, Removal, SaveFormat};
use crate::layer::rawtar::{Entry, RawTar};
use crate::paths::Roots;
use crate::progress::Progress;

fn store() -> (tempfile::TempDir, ImageStore) {
    assert!(
        rustix::process::geteuid().is_root(),
        "image store tests need root: run them as root"
    );
    let dir = tempfile::tempdir().unwrap();
    let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
    let store = ImageStore::open(&roots).unwrap();
    (dir, store)
}

#[test]
fn an_image_built_from_parts_resolves_and_stacks() {
    let (_dir, store) = store();
    let mut base = RawTar::new();
    base.add(Entry::file("bin/tool", b"v1").with_mode(0o755))
        .add(Entry::file("etc/motd", b"hello"));
    let base = store.import_layer_tar(&base.finish()[..], &[]).unwrap();
    assert_eq!(base.blob.media_type(), OCI_LAYER_GZIP);
    assert_eq!(
        base.chain_id, base.diff_id,
        "a base layer's chain id is its diff_id"
    );
    let mut step = RawTar::new();
    step.add(Entry::file("etc/.wh.motd", b""))
        .add(Entry::hardlink("usr/local/bin/tool", "bin/tool"));
    let step = store
        .import_layer_tar(&step.finish()[..], std::slice::from_ref(&base.diff_id))
        .unwrap();
    let mut config = ImageConfig::new_for_host();
    config.config.cmd = Some(vec!["/bin/tool".to_string()]);
    config.config.env = vec!["A=1".to_string()];
    let image = store
        .add_image(config, &[base.clone(), step.clone()], &["built:v1"])
        .unwrap();
    assert_eq!(image.repo_tags, ["built:v1"]);
    assert_eq!(
        image.diff_ids(),
        [base.diff_id.clone(), step.diff_id.clone()]
    );
    let again = store.resolve("built:v1").unwrap();
    assert_eq!(again.id, image.id);
    assert_eq!(again.config.config.cmd, Some(vec!["/bin/tool".to_string()]));
    let dirs = again.layer_dirs();
    assert_eq!(fs::read(dirs[0].join("bin/tool")).unwrap(), b"v1");
    let whiteout = fs::symlink_metadata(dirs[1].join("etc/motd")).unwrap();
    assert_eq!(whiteout.rdev(), 0, "whiteout in overlayfs form");
    // The hardlink to the base layer's file was completed by copy-up.
    assert_eq!(
        fs::metadata(dirs[1].join("usr/local/bin/tool"))
            .unwrap()
            .ino(),
        fs::metadata(dirs[1].join("bin/tool")).unwrap().ino()
    );
    // Through an archive into another store: the same image.
    let items = store.save_items(&["built:v1".to_string()]).unwrap();
    let sink = store
        .save(
            &items,
            SaveFormat::Docker,
            TarSink::new(Vec::new()),
            &Progress::hidden(),
        )
        .unwrap();
    let archive = sink.finish().unwrap();
    let (_other_dir, other) = self::store();
    let loaded = other
        .load(
            LoadSource::Reader(Box::new(std::io::Cursor::new(archive))),
            &Progress::hidden(),
        )
        .unwrap();
    assert_eq!(loaded[0].id, image.id);
    assert_eq!(loaded[0].tags, ["built:v1"]);
}

#[test]
fn add_image_refuses_layers_not_in_the_store() {
    let (_dir, store) = store();
    let mut tar = RawTar::new();
    tar.add(Entry::file("a", b"a"));
    let layer = store.import_layer_tar(&tar.finish()[..], &[]).unwrap();
    let mut misplaced = layer.clone();
    misplaced.chain_id = crate::image::digest::Digest::of(b"elsewhere");
    let err = store
        .add_image(ImageConfig::new_for_host(), &[misplaced], &["x"])
        .unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
    let below = [crate::image::digest::Digest::of(b"no such layer")];
    let err = store
        .import_layer_tar(&tar.finish()[..], &below)
        .unwrap_err();
    assert!(err.to_string().contains("not in the store"), "{err}");
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn resolve_and_remove_speak_dockers_language() {
    let (_dir, store) = store();
    let mut tar = RawTar::new();
    tar.add(Entry::file("a", b"a"));
    let layer = store.import_layer_tar(&tar.finish()[..], &[]).unwrap();
    let image = store
        .add_image(ImageConfig::new_for_host(), &[layer], &["app"])
        .unwrap();
    match store.resolve("app:2") {
        Err(ImageError::NotFound(name)) => assert_eq!(name, "app:2"),
        other => panic!("expected NotFound, got {other:?}"),
    }
    assert_eq!(
        store.resolve("app:2").unwrap_err().to_string(),
        "No such image: app:2",
        "docker's wording, for the CLI to print as is"
    );
    assert_eq!(store.resolve(&image.id.hex()[..6]).unwrap().id, image.id);
    store.tag("app", "other/app:1").unwrap();
    let events = store.remove("app", false).unwrap();
    assert_eq!(events, [Removal::Untagged("app:latest".to_string())]);
    let events = store.remove("other/app:1", false).unwrap();
    assert_eq!(events[0], Removal::Untagged("other/app:1".to_string()));
    assert_eq!(events[1], Removal::Deleted(image.id.to_string()));
    assert!(store.list().unwrap().is_empty());
}
