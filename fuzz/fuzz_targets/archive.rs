//! `berth load` of an arbitrary stream: docker-archive (both formats) and
//! OCI-layout tars, compressed or not, into a fresh store. Any input loads
//! or fails; a failure leaves no image and no staging behind; nothing is
//! written outside the store's root.
#![no_main]

use berth_engine::image::{ImageStore, LoadSource};
use berth_engine::paths::Roots;
use berth_engine::progress::Progress;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    let sentinel = dir.path().join("outside");
    std::fs::create_dir(&sentinel).unwrap();
    let roots = Roots::new(dir.path().join("root"), dir.path().join("state"));
    let store = ImageStore::open(&roots).unwrap();
    let source = LoadSource::Reader(Box::new(std::io::Cursor::new(data.to_vec())));
    let result = store.load(source, &Progress::hidden());
    if result.is_err() {
        assert!(
            store.list().unwrap().is_empty(),
            "a failed load leaves no image"
        );
        let staging: Vec<_> = std::fs::read_dir(roots.tmp())
            .map(|d| d.flatten().map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(
            staging.is_empty(),
            "a failed load leaves no staging: {staging:?}"
        );
    }
    assert_eq!(
        std::fs::read_dir(&sentinel).unwrap().count(),
        0,
        "nothing written outside the root"
    );
    let top: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n != "root" && n != "state" && n != "outside")
        .collect();
    assert!(top.is_empty(), "nothing created beside the root: {top:?}");
});
