//! Image references (`name:tag`, `host:5000/a/b@sha256:...`): parse, and
//! whatever parses prints back to something that parses to the same.
#![no_main]

use berth_engine::image::Reference;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(reference) = Reference::parse(text) {
        let full = reference.full();
        let again = Reference::parse(&full).expect("a printed reference parses again");
        assert_eq!(again.full(), full, "printing is stable");
        let _ = reference.familiar();
        let _ = reference.repository();
    }
});
