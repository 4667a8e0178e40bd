//! DNS answers as the probe reads them (a hostile resolver's bytes): lines or nothing,
//! never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = tocsin::probe::dns::answer_lines(data);
});
