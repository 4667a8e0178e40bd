//! What the notifiers that post to other systems share: the HMAC signature receivers
//! check, how an answer is read (done, retried, after how long, or refused), and a
//! transport error told without its URL.

use std::time::{Duration, SystemTime};

use super::dispatch::Outcome;
use crate::text::cut;

/// How long one request may take.
pub const DEADLINE: Duration = Duration::from_secs(10);

/// The longest wait a `Retry-After` may ask for; a longer one is taken as this.
pub const MOST_AFTER: Duration = Duration::from_secs(3600);

/// `sha256=<hex>` of the body under `key`: what `X-Tocsin-Signature` carries.
pub fn signature(key: &[u8], body: &[u8]) -> String {
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
    let tag = ring::hmac::sign(&key, body);
    let hex: String = tag.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// The wait a refusal asks for: `Retry-After` (seconds or an HTTP date), else the
/// vendor's own field in the body (Discord's `retry_after` in seconds, Telegram's
/// `parameters.retry_after`, Matrix's `retry_after_ms`).
pub fn retry_after(
    headers: &reqwest::header::HeaderMap,
    body: &str,
    now: SystemTime,
) -> Option<Duration> {
    if let Some(v) = headers
        .get(reqwest::header::RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
    {
        let v = v.trim();
        if let Ok(secs) = v.parse::<f64>() {
            if secs.is_finite() && secs >= 0.0 {
                return Some(Duration::from_secs_f64(secs.min(MOST_AFTER.as_secs_f64())));
            }
        }
        if let Ok(t) = httpdate::parse_http_date(v) {
            return Some(t.duration_since(now).unwrap_or_default());
        }
    }
    let json: serde_json::Value = serde_json::from_str(body).ok()?;
    let secs = json["retry_after"]
        .as_f64()
        .or_else(|| json["parameters"]["retry_after"].as_f64())
        .or_else(|| json["retry_after_ms"].as_f64().map(|ms| ms / 1000.0))?;
    (secs.is_finite() && secs >= 0.0)
        .then(|| Duration::from_secs_f64(secs.min(MOST_AFTER.as_secs_f64())))
}

/// What a vendor's answer means for the delivery.
pub fn answer(
    status: u16,
    headers: &reqwest::header::HeaderMap,
    body: &str,
    now: SystemTime,
) -> Outcome {
    if (200..300).contains(&status) {
        return Outcome::Done;
    }
    let said = cut(body.trim(), 300);
    let msg = format!("answered {status}: {said}");
    if status == 429 {
        return match retry_after(headers, body, now) {
            Some(d) => Outcome::RetryAfter(msg, d.min(MOST_AFTER)),
            None => Outcome::Retry(msg),
        };
    }
    if status >= 500 || status == 408 {
        Outcome::Retry(msg)
    } else {
        Outcome::Failed(msg)
    }
}

/// The innermost cause of a transport error, without the URL (which may hold a token).
pub fn transport(e: reqwest::Error) -> String {
    let e = e.without_url();
    let mut cur: &(dyn std::error::Error + 'static) = &e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    let timeout = e.is_timeout();
    let s = cur.to_string();
    if timeout {
        format!("no answer within {}s ({s})", DEADLINE.as_secs())
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue, RETRY_AFTER};

    #[test]
    fn the_signature_is_hmac_sha256_of_the_body_in_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_429_is_retried_after_the_wait_the_vendor_asks_for() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let mut h = HeaderMap::new();
        h.insert(RETRY_AFTER, HeaderValue::from_static("7"));
        assert_eq!(
            answer(429, &h, "", now),
            Outcome::RetryAfter("answered 429: ".into(), Duration::from_secs(7))
        );
        let date = httpdate::fmt_http_date(now + Duration::from_secs(30));
        h.insert(RETRY_AFTER, HeaderValue::from_str(&date).unwrap());
        assert!(
            matches!(answer(429, &h, "", now), Outcome::RetryAfter(_, d) if d == Duration::from_secs(30))
        );
        let none = HeaderMap::new();
        let discord =
            r#"{"message": "You are being rate limited.", "retry_after": 0.5, "global": false}"#;
        assert!(
            matches!(answer(429, &none, discord, now), Outcome::RetryAfter(_, d) if d == Duration::from_millis(500))
        );
        let telegram = r#"{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 3","parameters":{"retry_after":3}}"#;
        assert!(
            matches!(answer(429, &none, telegram, now), Outcome::RetryAfter(_, d) if d == Duration::from_secs(3))
        );
        let matrix =
            r#"{"errcode":"M_LIMIT_EXCEEDED","error":"Too many requests","retry_after_ms":2000}"#;
        assert!(
            matches!(answer(429, &none, matrix, now), Outcome::RetryAfter(_, d) if d == Duration::from_secs(2))
        );
        // A day is taken as an hour; no hint at all is the usual backoff.
        h.insert(RETRY_AFTER, HeaderValue::from_static("86400"));
        assert!(matches!(answer(429, &h, "", now), Outcome::RetryAfter(_, d) if d == MOST_AFTER));
        assert!(matches!(
            answer(429, &none, "slow down", now),
            Outcome::Retry(_)
        ));
        assert!(matches!(answer(503, &none, "", now), Outcome::Retry(_)));
        assert!(
            matches!(answer(400, &none, "invalid_payload", now), Outcome::Failed(m) if m == "answered 400: invalid_payload")
        );
        assert_eq!(answer(202, &none, "", now), Outcome::Done);
    }
}
