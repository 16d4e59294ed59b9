//! The layer unpacker on an arbitrary tar stream, into a temporary
//! directory: whatever the entries say (`..`, absolute names, links out,
//! whiteouts, devices), nothing is written outside the destination.
#![no_main]

use berth_engine::layer::unpack::{unpack, Whiteouts};
use libfuzzer_sys::fuzz_target;

fn snapshot(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let meta = std::fs::symlink_metadata(entry.path()).unwrap();
        out.push(format!(
            "{:?} {} {:?}",
            entry.file_name(),
            meta.len(),
            meta.modified().ok()
        ));
    }
    out.sort();
    out
}

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("a/b/dest");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dir.path().join("a/b/victim"), "untouched").unwrap();
    std::fs::write(dir.path().join("victim"), "untouched").unwrap();
    let before = (
        snapshot(dir.path()),
        snapshot(&dir.path().join("a")),
        snapshot(&dir.path().join("a/b")),
    );
    for mode in [Whiteouts::Overlay, Whiteouts::Apply] {
        let _ = unpack(std::io::Cursor::new(data), &dest, mode);
    }
    let mut after_b = snapshot(&dir.path().join("a/b"));
    // dest itself may change (that is where the layer goes).
    let dest_name = format!("{:?}", std::ffi::OsStr::new("dest"));
    let strip = |list: &mut Vec<String>| list.retain(|l| !l.starts_with(&dest_name));
    let mut before_b = before.2.clone();
    strip(&mut before_b);
    strip(&mut after_b);
    assert_eq!(before.0, snapshot(dir.path()), "nothing written at the top");
    assert_eq!(
        before.1,
        snapshot(&dir.path().join("a")),
        "nothing written in a/"
    );
    assert_eq!(before_b, after_b, "nothing written beside dest");
    assert_eq!(
        std::fs::read_to_string(dir.path().join("a/b/victim")).unwrap(),
        "untouched"
    );
    assert_eq!(
        std::fs::read_to_string(dir.path().join("victim")).unwrap(),
        "untouched"
    );
});
