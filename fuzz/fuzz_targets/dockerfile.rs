//! The Dockerfile parser: any text gives a Dockerfile or an error, never a
//! panic, a hang, or an unbounded allocation.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Ok(file) = berth_engine::build::dockerfile::parse(text) {
            // Walk what was parsed, as the executor would.
            let _ = file.step_count();
            for stage in &file.stages {
                let _ = stage.name();
                let _ = stage.from.to_string();
                for step in &stage.steps {
                    let _ = step.to_string();
                }
            }
        }
        let _ = berth_engine::build::dockerfile::split_words(text, '\\');
        let _ = berth_engine::build::dockerfile::parse_duration(text);
    }
});
