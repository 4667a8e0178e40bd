//! The configuration, parsed and resolved from any text: errors with positions, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = tocsin::config::parse_with(text, std::path::Path::new("/fuzz/probes.yaml"), &|_| None);
    }
});
