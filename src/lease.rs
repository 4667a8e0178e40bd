//! Whether this instance leads its cluster: the token of its lease and, by its own
//! monotonic clock, until when the lease surely runs. Everything that acts outside
//! tocsin (a mail, a webhook) asks first: a leader that was paused past its lease learns
//! it from this clock before it could send, and the store refuses its writes (the fence)
//! once another has taken over. Knows nothing of the database or of what is sent.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Debug, Default)]
pub struct Leadership {
    /// The lease's token; 0 while not leading.
    token: Arc<AtomicI64>,
    /// Until when the lease runs for sure: when the renewal that granted it was sent,
    /// plus the lease (the database counted from a later moment).
    until: Mutex<Option<Instant>>,
}

impl Leadership {
    pub fn new() -> Arc<Leadership> {
        Arc::new(Leadership::default())
    }

    /// The token's cell, shared with the store's fence.
    pub fn token_cell(&self) -> Arc<AtomicI64> {
        self.token.clone()
    }

    pub fn token(&self) -> i64 {
        self.token.load(Ordering::SeqCst)
    }

    /// The lease `token` runs until `until`.
    pub fn grant(&self, token: i64, until: Instant) {
        self.token.store(token, Ordering::SeqCst);
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = Some(until);
    }

    /// Not leading any more.
    pub fn lose(&self) {
        self.token.store(0, Ordering::SeqCst);
        *self.until.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }

    /// Whether this instance leads now: it holds a token and its lease has not run out.
    pub fn holds(&self) -> bool {
        self.token() > 0
            && self
                .until
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .is_some_and(|u| Instant::now() < u)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_lease_holds_until_it_runs_out_or_is_lost() {
        let l = Leadership::new();
        assert!(!l.holds(), "nobody leads before a lease");
        l.grant(7, Instant::now() + Duration::from_secs(60));
        assert!(l.holds());
        assert_eq!(l.token_cell().load(Ordering::SeqCst), 7);
        l.grant(7, Instant::now() - Duration::from_millis(1));
        assert!(!l.holds(), "a lease past its end holds nothing");
        l.grant(8, Instant::now() + Duration::from_secs(60));
        l.lose();
        assert!(!l.holds());
        assert_eq!(l.token(), 0);
    }
}
