//! The query strings of `/act` and `/unsubscribe` links: verified or refused, never a
//! panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let signer = tocsin::links::Signer::new(b"fuzz key, 32 bytes long, exactly");
    let now = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_800_000_000);
    if let Ok(q) = serde_urlencoded::from_bytes::<tocsin::links::LinkQuery>(data) {
        let _ = signer.verify(&q, now);
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let (email, sig) = text.split_once('&').unwrap_or((text, ""));
        let _ = signer.verify_unsubscribe(email, sig);
    }
});
