//! `--security-opt seccomp=PROFILE.json`: any text is a profile or an error,
//! and a profile either translates into a filter the runtime compiles or is
//! refused with a reason, never a panic.
#![no_main]

use berth_engine::security::seccomp_profile::{check_compiles, parse, Target};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(profile) = parse(text) {
        let target = Target {
            capabilities: vec!["CAP_CHOWN".into(), "CAP_SYS_ADMIN".into()],
            arch: "amd64".into(),
            kernel: (6, 1),
        };
        let _ = check_compiles(&profile, &target);
    }
});
