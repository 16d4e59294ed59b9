//! Unit tests of unpacking, packing and flattening, against real
//! filesystems (they run as root: ownership, device nodes and `trusted.*`
//! xattrs need it). Hostile archives are built here with [`RawTar`].

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::lower::{get_xattr, resolve_deferred_links};
use super::pack::write_layer_tar;
use super::rawtar::{gzip, Entry, RawTar};
use super::unpack::{unpack, LayerError, Whiteouts, OPAQUE_XATTR};
use crate::layer::blob::read_layer_blob;

fn require_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "layer tests need root (chown, mknod, trusted.* xattrs): run them as root"
    );
}

/// A temporary directory with `layer/` (the destination) and `outside/`
/// (what a hostile archive would like to reach).
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Sandbox {
        require_root();
        let dir = tempfile::tempdir().unwrap();
        fs::create_dir(dir.path().join("layer")).unwrap();
        let outside = dir.path().join("outside");
        fs::create_dir_all(outside.join("etc")).unwrap();
        fs::write(outside.join("etc/shadow"), "secret").unwrap();
        fs::write(outside.join("victim"), "untouched").unwrap();
        Sandbox { dir }
    }

    fn layer(&self) -> PathBuf {
        self.dir.path().join("layer")
    }

    fn outside(&self) -> PathBuf {
        self.dir.path().join("outside")
    }

    /// Everything in the sandbox except the layer directory.
    fn outside_snapshot(&self) -> BTreeMap<PathBuf, String> {
        let mut snapshot = snapshot(self.dir.path());
        snapshot.retain(|p, _| !p.starts_with("layer/") && p != Path::new("layer"));
        snapshot
    }
}

/// path -> "type mode uid:gid size mtime content-or-target" for a whole tree.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut out = BTreeMap::new();
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<PathBuf, String>) {
        let mut entries: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        entries.sort();
        for path in entries {
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            let ft = meta.file_type();
            let extra = if ft.is_symlink() {
                fs::read_link(&path).unwrap().display().to_string()
            } else if ft.is_file() {
                String::from_utf8_lossy(&fs::read(&path).unwrap()).into_owned()
            } else if ft.is_char_device() || ft.is_block_device() {
                format!("dev {}", meta.rdev())
            } else {
                String::new()
            };
            let kind = if ft.is_dir() {
                "dir"
            } else if ft.is_symlink() {
                "link"
            } else if ft.is_file() {
                "file"
            } else if ft.is_fifo() {
                "fifo"
            } else {
                "node"
            };
            let mtime = if ft.is_dir() { 0 } else { meta.mtime() };
            out.insert(
                rel,
                format!(
                    "{kind} {:o} {}:{} {} {mtime} {extra}",
                    meta.mode() & 0o7777,
                    meta.uid(),
                    meta.gid(),
                    meta.len()
                ),
            );
            if ft.is_dir() {
                walk(root, &path, out);
            }
        }
    }
    walk(root, root, &mut out);
    out
}

fn unpack_bytes(
    bytes: &[u8],
    dest: &Path,
    mode: Whiteouts,
) -> Result<super::UnpackSummary, LayerError> {
    unpack(bytes, dest, mode)
}

/// Unpack a hostile archive: it must fail, and nothing outside the layer
/// directory (nor /etc/shadow of the host) may change.
fn assert_refused(tar: &RawTar, expect_in_error: &str) {
    let sandbox = Sandbox::new();
    let before = sandbox.outside_snapshot();
    let shadow_before = fs::metadata("/etc/shadow")
        .map(|m| (m.nlink(), m.mtime()))
        .ok();
    let err = unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay)
        .expect_err("a hostile archive must be refused");
    let message = err.to_string();
    assert!(
        message.contains(expect_in_error),
        "error {message:?} should mention {expect_in_error:?}"
    );
    assert_eq!(
        sandbox.outside_snapshot(),
        before,
        "nothing outside the layer changed"
    );
    let shadow_after = fs::metadata("/etc/shadow")
        .map(|m| (m.nlink(), m.mtime()))
        .ok();
    assert_eq!(
        shadow_before, shadow_after,
        "the host's /etc/shadow is untouched"
    );
}

#[test]
fn parent_dir_entries_are_refused() {
    let mut tar = RawTar::new();
    tar.add(Entry::file("ok", b"fine"))
        .add(Entry::file("../outside/victim", b"pwned"));
    assert_refused(&tar, "'..'");
    let mut tar = RawTar::new();
    tar.add(Entry::file("a/../../outside/victim", b"pwned"));
    assert_refused(&tar, "'..'");
}

#[test]
fn absolute_names_are_refused() {
    let sandbox_path = Sandbox::new().outside().join("victim");
    let mut tar = RawTar::new();
    tar.add(Entry::file(sandbox_path.to_str().unwrap(), b"pwned"));
    assert_refused(&tar, "absolute path");
}

#[test]
fn writing_through_a_symlink_that_points_outside_is_refused() {
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    tar.add(Entry::symlink(
        "escape",
        sandbox.outside().to_str().unwrap(),
    ))
    .add(Entry::file("escape/victim", b"pwned"));
    let before = sandbox.outside_snapshot();
    let err = unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap_err();
    assert!(err.to_string().contains("symlink"), "{err}");
    assert_eq!(sandbox.outside_snapshot(), before);
    assert_eq!(
        fs::read_to_string(sandbox.outside().join("victim")).unwrap(),
        "untouched"
    );
    // The same with a relative link climbing out.
    let mut tar = RawTar::new();
    tar.add(Entry::symlink("up", "../../../../../../../../.."))
        .add(Entry::file("up/tmp/pwned", b"x"));
    assert_refused(&tar, "symlink");
}

#[test]
fn hardlinks_to_host_files_are_refused() {
    let mut tar = RawTar::new();
    tar.add(Entry::hardlink("shadow", "/etc/shadow"));
    assert_refused(&tar, "absolute path");
    let mut tar = RawTar::new();
    tar.add(Entry::hardlink("shadow", "../../../../../../etc/shadow"));
    assert_refused(&tar, "'..'");
    // A relative name that exists on the host but not in the layer: it is
    // never looked up on the host, and no layer below has it.
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    tar.add(Entry::hardlink("shadow", "etc/shadow"));
    let summary = unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap();
    assert_eq!(summary.deferred_links.len(), 1, "left for the lower layers");
    let err = resolve_deferred_links(&sandbox.layer(), &[], &summary.deferred_links).unwrap_err();
    assert!(
        err.to_string()
            .contains("neither this layer nor a layer below"),
        "{err}"
    );
    assert!(!sandbox.layer().join("shadow").exists());
    // And through a symlinked directory.
    let mut tar = RawTar::new();
    tar.add(Entry::symlink("etc", "/etc"))
        .add(Entry::hardlink("shadow", "etc/shadow"));
    assert_refused(&tar, "symlink");
}

#[test]
fn bad_whiteouts_are_refused() {
    let mut tar = RawTar::new();
    tar.add(Entry::file(".wh...", b""));
    assert_refused(&tar, "whiteout names no file");
    let mut tar = RawTar::new();
    tar.add(Entry::file("dir/.wh.", b""));
    assert_refused(&tar, "whiteout names no file");
    let mut tar = RawTar::new();
    tar.add(Entry::file("../.wh.victim", b""));
    assert_refused(&tar, "'..'");
}

#[test]
fn device_nodes_stay_inside_the_layer() {
    let mut tar = RawTar::new();
    tar.add(Entry::char_device("../outside/null", 1, 3));
    assert_refused(&tar, "'..'");
    let sandbox = Sandbox::new();
    let before = sandbox.outside_snapshot();
    let mut tar = RawTar::new();
    tar.add(Entry::dir("dev/"))
        .add(Entry::char_device("dev/null", 1, 3).with_mode(0o666))
        .add(Entry::block_device("dev/sda", 8, 0).with_mode(0o660));
    unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap();
    let null = fs::symlink_metadata(sandbox.layer().join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
    assert_eq!(null.mode() & 0o7777, 0o666);
    assert!(fs::symlink_metadata(sandbox.layer().join("dev/sda"))
        .unwrap()
        .file_type()
        .is_block_device());
    assert_eq!(sandbox.outside_snapshot(), before);
}

#[test]
fn a_size_header_larger_than_the_data_is_refused() {
    let sandbox = Sandbox::new();
    let mut entry = Entry::file("big", b"only a few bytes");
    entry.declared_size = 1 << 20;
    let mut tar = RawTar::new();
    tar.add(entry);
    let bytes = tar.truncated(usize::MAX); // no end marker: the data just stops
    let err = unpack_bytes(&bytes, &sandbox.layer(), Whiteouts::Overlay).unwrap_err();
    assert!(err.to_string().contains("truncated"), "{err}");
}

#[test]
fn truncated_gzip_is_an_error_not_a_short_layer() {
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    let data: Vec<u8> = (0..200_000u32).map(|i| (i * 7 % 251) as u8).collect();
    tar.add(Entry::file("data", &data));
    let mut blob = gzip(&tar.finish());
    blob.truncate(blob.len() / 2);
    let err = read_layer_blob(
        &blob[..],
        None,
        None,
        Some(&sandbox.layer()),
        Whiteouts::Overlay,
        &|_| {},
    )
    .unwrap_err();
    assert!(err.to_string().contains("decompressing"), "{err}");
}

#[test]
fn files_keep_owner_mode_times_xattrs() {
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    tar.add(Entry::dir("bin/").with_mode(0o755))
        .add(Entry::file("bin/suid", b"#!/bin/true\n").with_mode(0o4755))
        .add(
            Entry::file("home/app/file", b"mine")
                .with_owner(1000, 1000)
                .with_mode(0o640),
        )
        .add(Entry::dir("tmp/").with_mode(0o1777))
        .add(
            Entry::file("bin/cap", b"x")
                .with_mode(0o755)
                .with_xattr("user.test", b"value"),
        )
        .add(Entry::file("bin/overlayish", b"x").with_xattr("trusted.overlay.opaque", b"y"))
        .add(Entry::symlink("bin/abs", "/bin/suid"))
        .add(Entry::symlink("bin/rel", "suid"))
        .add(Entry::hardlink("bin/hard", "bin/suid"))
        .add(Entry::fifo("run/fifo").with_mode(0o620))
        .add(Entry::dir("empty/"));
    let summary = unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap();
    let root = sandbox.layer();
    let meta = |p: &str| fs::symlink_metadata(root.join(p)).unwrap();
    assert_eq!(
        meta("bin/suid").mode() & 0o7777,
        0o4755,
        "setuid kept (chown came first)"
    );
    assert_eq!(
        (meta("home/app/file").uid(), meta("home/app/file").gid()),
        (1000, 1000)
    );
    assert_eq!(meta("home/app/file").mode() & 0o7777, 0o640);
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    assert_eq!(meta("bin/suid").mtime(), 1_700_000_000);
    assert_eq!(
        meta("bin").mtime(),
        1_700_000_000,
        "directory time set after its contents"
    );
    let cap = fs::File::open(root.join("bin/cap")).unwrap();
    assert_eq!(
        get_xattr(&cap, std::ffi::OsStr::new("user.test")).unwrap(),
        b"value"
    );
    let overlayish = fs::File::open(root.join("bin/overlayish")).unwrap();
    assert!(
        get_xattr(&overlayish, std::ffi::OsStr::new(OPAQUE_XATTR)).is_err(),
        "overlayfs xattrs are never taken from an image"
    );
    assert_eq!(
        fs::read_link(root.join("bin/abs")).unwrap(),
        Path::new("/bin/suid")
    );
    assert_eq!(
        fs::read_link(root.join("bin/rel")).unwrap(),
        Path::new("suid")
    );
    assert_eq!(meta("bin/hard").ino(), meta("bin/suid").ino());
    assert!(meta("run/fifo").file_type().is_fifo());
    assert_eq!(meta("run/fifo").mode() & 0o7777, 0o620);
    assert!(meta("empty").is_dir());
    assert_eq!(summary.content_bytes, 12 + 4 + 1 + 1);
}

#[test]
fn whiteouts_take_overlayfs_form() {
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    tar.add(Entry::dir("etc/"))
        .add(Entry::file("etc/.wh.motd", b""))
        .add(Entry::dir("var/cache/"))
        .add(Entry::file("var/cache/.wh..wh..opq", b""))
        .add(Entry::file("var/cache/new", b"new"))
        .add(Entry::file(".wh..wh.plnk", b""));
    unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap();
    let whiteout = fs::symlink_metadata(sandbox.layer().join("etc/motd")).unwrap();
    assert!(whiteout.file_type().is_char_device());
    assert_eq!(whiteout.rdev(), 0);
    let cache = fs::File::open(sandbox.layer().join("var/cache")).unwrap();
    assert_eq!(
        get_xattr(&cache, std::ffi::OsStr::new(OPAQUE_XATTR)).unwrap(),
        b"y"
    );
    assert!(
        !sandbox.layer().join(".wh..wh.plnk").exists(),
        "AUFS bookkeeping ignored"
    );
}

#[test]
fn later_entries_replace_earlier_ones() {
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    tar.add(Entry::file("x", b"file"))
        .add(Entry::dir("x/"))
        .add(Entry::file("x/inner", b"in"))
        .add(Entry::file("x", b"file again"))
        .add(Entry::symlink("y", "x"))
        .add(Entry::file("y", b"not a link"));
    unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap();
    assert_eq!(
        fs::read_to_string(sandbox.layer().join("x")).unwrap(),
        "file again"
    );
    assert_eq!(
        fs::read_to_string(sandbox.layer().join("y")).unwrap(),
        "not a link"
    );
}

#[test]
fn hardlinks_to_lower_layers_are_copied_up() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let (lower, upper) = (dir.path().join("lower"), dir.path().join("upper"));
    fs::create_dir_all(&lower).unwrap();
    fs::create_dir_all(&upper).unwrap();
    let mut base = RawTar::new();
    base.add(
        Entry::file("usr/bin/tool", b"lower content")
            .with_mode(0o755)
            .with_owner(5, 6),
    )
    .add(Entry::file("gone", b"deleted above"));
    unpack_bytes(&base.finish(), &lower, Whiteouts::Overlay).unwrap();
    let mut top = RawTar::new();
    top.add(Entry::hardlink("usr/local/tool", "usr/bin/tool"));
    let summary = unpack_bytes(&top.finish(), &upper, Whiteouts::Overlay).unwrap();
    resolve_deferred_links(
        &upper,
        std::slice::from_ref(&lower),
        &summary.deferred_links,
    )
    .unwrap();
    let copied = fs::metadata(upper.join("usr/bin/tool")).unwrap();
    let link = fs::metadata(upper.join("usr/local/tool")).unwrap();
    assert_eq!(
        copied.ino(),
        link.ino(),
        "one inode, two names, as overlayfs' copy-up does"
    );
    assert_eq!(
        (copied.uid(), copied.gid(), copied.mode() & 0o7777),
        (5, 6, 0o755)
    );
    assert_eq!(
        fs::read_to_string(upper.join("usr/local/tool")).unwrap(),
        "lower content"
    );
    // A target whited out in between is not found.
    let middle = dir.path().join("middle");
    fs::create_dir_all(&middle).unwrap();
    let mut wh = RawTar::new();
    wh.add(Entry::file(".wh.gone", b""));
    unpack_bytes(&wh.finish(), &middle, Whiteouts::Overlay).unwrap();
    let top2 = dir.path().join("top2");
    fs::create_dir_all(&top2).unwrap();
    let mut link_gone = RawTar::new();
    link_gone.add(Entry::hardlink("again", "gone"));
    let summary = unpack_bytes(&link_gone.finish(), &top2, Whiteouts::Overlay).unwrap();
    let err = resolve_deferred_links(&top2, &[middle, lower], &summary.deferred_links).unwrap_err();
    assert!(err.to_string().contains("neither"), "{err}");
}

/// Three layers with every kind of change: applying them into one
/// directory (flatten) and stacking their overlay-form directories with a
/// real overlayfs mount must show the same tree.
#[test]
fn overlay_stack_and_flattened_tree_agree() {
    require_root();
    let dir = tempfile::tempdir().unwrap();
    let layers = [
        {
            let mut t = RawTar::new();
            t.add(Entry::dir("etc/"))
                .add(Entry::file("etc/motd", b"hello"))
                .add(Entry::file("etc/keep", b"keep"))
                .add(Entry::dir("var/cache/apt/"))
                .add(Entry::file("var/cache/apt/a", b"a"))
                .add(Entry::file("var/cache/apt/b", b"b"))
                .add(Entry::file("shape", b"a file"))
                .add(Entry::dir("doc/sub/"))
                .add(Entry::file("doc/sub/x", b"x"))
                .add(Entry::file("bin/tool", b"tool"));
            t.finish()
        },
        {
            let mut t = RawTar::new();
            t.add(Entry::file("etc/.wh.motd", b""))
                .add(Entry::file(".wh.doc", b""))
                .add(Entry::dir("var/cache/apt/"))
                .add(Entry::file("var/cache/apt/.wh..wh..opq", b""))
                .add(Entry::file("var/cache/apt/c", b"c"))
                .add(Entry::file(".wh.shape", b""))
                .add(Entry::dir("shape/"))
                .add(Entry::file("shape/inside", b"now a dir"))
                .add(Entry::hardlink("bin/tool2", "bin/tool"));
            t.finish()
        },
        {
            let mut t = RawTar::new();
            t.add(Entry::file(".wh.shape", b""))
                .add(Entry::file("shape", b"a file again"))
                .add(Entry::file("etc/new", b"new"));
            t.finish()
        },
    ];
    let mut dirs = Vec::new();
    for (i, layer) in layers.iter().enumerate() {
        let d = dir.path().join(format!("l{i}"));
        fs::create_dir(&d).unwrap();
        let blob = gzip(layer);
        let report =
            read_layer_blob(&blob[..], None, None, Some(&d), Whiteouts::Overlay, &|_| {}).unwrap();
        let lowers: Vec<PathBuf> = dirs.iter().rev().cloned().collect();
        resolve_deferred_links(&d, &lowers, &report.unpacked.unwrap().deferred_links).unwrap();
        dirs.push(d);
    }
    let flat = dir.path().join("flat");
    fs::create_dir(&flat).unwrap();
    for layer in &layers {
        unpack_bytes(layer, &flat, Whiteouts::Apply).unwrap();
    }
    let merged = dir.path().join("merged");
    fs::create_dir(&merged).unwrap();
    let lowerdir: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    let options = std::ffi::CString::new(format!("lowerdir={}", lowerdir.join(":"))).unwrap();
    rustix::mount::mount(
        "overlay",
        &merged,
        "overlay",
        rustix::mount::MountFlags::RDONLY,
        Some(options.as_c_str()),
    )
    .expect("mount overlay");
    /// Unmounts even when an assertion below fails.
    struct Unmount<'a>(&'a Path);
    impl Drop for Unmount<'_> {
        fn drop(&mut self) {
            let _ = rustix::mount::unmount(self.0, rustix::mount::UnmountFlags::DETACH);
        }
    }
    let unmount = Unmount(&merged);
    let through_overlay = snapshot(&merged);
    drop(unmount);
    let flattened = snapshot(&flat);
    let names = |s: &BTreeMap<PathBuf, String>| s.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&through_overlay), names(&flattened));
    for (path, desc) in &flattened {
        // Directory modes of implicit parents can differ; compare files.
        if !desc.starts_with("dir") {
            assert_eq!(through_overlay.get(path), Some(desc), "{}", path.display());
        }
    }
    assert!(!flat.join("etc/motd").exists());
    assert!(!flat.join("doc").exists());
    assert!(!flat.join("var/cache/apt/a").exists());
    assert_eq!(
        fs::read_to_string(flat.join("var/cache/apt/c")).unwrap(),
        "c"
    );
    assert_eq!(
        fs::read_to_string(flat.join("shape")).unwrap(),
        "a file again"
    );
    assert_eq!(fs::read_to_string(flat.join("bin/tool2")).unwrap(), "tool");
}

/// pack(unpack(tar)) keeps whiteouts, opaque dirs, links, owners and xattrs.
#[test]
fn pack_is_the_inverse_of_unpack() {
    let sandbox = Sandbox::new();
    let mut tar = RawTar::new();
    tar.add(Entry::dir("etc/"))
        .add(Entry::file("etc/.wh.gone", b""))
        .add(Entry::dir("cache/"))
        .add(Entry::file("cache/.wh..wh..opq", b""))
        .add(
            Entry::file("cache/x", b"x")
                .with_owner(1000, 100)
                .with_mode(0o4750),
        )
        .add(Entry::hardlink("cache/y", "cache/x"))
        .add(Entry::symlink("link", "/etc/passwd"))
        .add(Entry::fifo("fifo"))
        .add(Entry::file("cap", b"c").with_xattr("user.k", b"v"));
    unpack_bytes(&tar.finish(), &sandbox.layer(), Whiteouts::Overlay).unwrap();
    let packed = write_layer_tar(&sandbox.layer(), Vec::new()).unwrap();
    let again = sandbox.dir.path().join("again");
    fs::create_dir(&again).unwrap();
    unpack_bytes(&packed, &again, Whiteouts::Overlay).unwrap();
    let mut first = snapshot(&sandbox.layer());
    let mut second = snapshot(&again);
    // Directory mtimes are not compared by snapshot; inode numbers are not in it.
    first.retain(|_, v| !v.is_empty());
    second.retain(|_, v| !v.is_empty());
    assert_eq!(first, second);
    let cache = fs::File::open(again.join("cache")).unwrap();
    assert_eq!(
        get_xattr(&cache, std::ffi::OsStr::new(OPAQUE_XATTR)).unwrap(),
        b"y"
    );
    assert_eq!(
        fs::metadata(again.join("cache/x")).unwrap().ino(),
        fs::metadata(again.join("cache/y")).unwrap().ino()
    );
    let names: Vec<String> = tar::Archive::new(&packed[..])
        .entries()
        .unwrap()
        .map(|e| e.unwrap().path().unwrap().display().to_string())
        .collect();
    assert!(names.contains(&"etc/.wh.gone".to_string()), "{names:?}");
    assert!(
        names.contains(&"cache/.wh..wh..opq".to_string()),
        "{names:?}"
    );
    assert!(
        fs::metadata(again.join("cap"))
            .unwrap()
            .permissions()
            .mode()
            & 0o777
            == 0o644
    );
}
