//! The config loader on arbitrary text: it must never panic; every refusal is an error that
//! names a field or the YAML position.
#![no_main]

use libfuzzer_sys::fuzz_target;
use promrelay::config::Config;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // A base directory that does not exist: file references fail cleanly instead of reading
    // the machine's files.
    if let Err(e) = Config::from_yaml(text, Path::new("/nonexistent-promrelay-fuzz")) {
        assert!(!e.to_string().is_empty());
    }
});
