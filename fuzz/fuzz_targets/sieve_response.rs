//! ManageSieve server responses (what a hostile or broken server sends): parsed or
//! refused, never a panic or a hang.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(tocsin::notify::sieve::parse_response(data));
});
