//! Audience files, CSV and YAML, from any text: rows kept, mended or left out with their
//! line, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        let services = vec!["shop".to_string(), "api".to_string()];
        let _ = tocsin::audience::from_csv(text, &services);
        let _ = tocsin::audience::from_yaml(text, &services);
    }
});
