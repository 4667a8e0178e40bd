//! Customers who subscribed themselves on the status page. A request is kept as
//! `pending` (with a nonce the confirmation link signs) until confirmed; only then does
//! the address join the audiences of the services it chose (none: all). A confirmed
//! subscriber who asks again keeps what they have until the new request is confirmed.
//! Requests are counted per key (an IP address, an address) for the rate limits.

use std::time::{Duration, SystemTime};

use super::db::OptionalExt;
use rusqlite::params;

use serde::{Deserialize, Serialize};

use super::{NewRecipient, SqlStore, StoreError, SubscriberStore, address_key, secs};

/// What a subscriber chose.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Subscription {
    /// The address as typed.
    pub address: String,
    pub language: String,
    pub timezone: String,
    /// Service ids; empty: every service.
    pub services: Vec<String>,
}

impl Subscription {
    pub fn follows(&self, service: &str) -> bool {
        self.services.is_empty() || self.services.iter().any(|s| s == service)
    }
}

/// A request waiting for its confirmation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Pending {
    nonce: String,
    #[serde(flatten)]
    wants: Subscription,
}

impl SubscriberStore for SqlStore {
    fn request_subscription(
        &mut self,
        wants: &Subscription,
        nonce: &str,
        now: SystemTime,
    ) -> Result<(), StoreError> {
        let key = address_key(&wants.address);
        let pending = serde_json::to_string(&Pending {
            nonce: nonce.to_string(),
            wants: wants.clone(),
        })
        .map_err(|e| StoreError::Corrupt {
            what: "a subscription".into(),
            detail: e.to_string(),
        })?;
        self.conn.execute(
            "INSERT INTO subscribers (email, address, language, timezone, services, pending, requested_at)
             VALUES (?1, ?2, ?3, ?4, '[]', ?5, ?6)
             ON CONFLICT (email) DO UPDATE SET pending = excluded.pending, requested_at = excluded.requested_at",
            params![key, wants.address, wants.language, wants.timezone, pending, secs(now)],
        )?;
        Ok(())
    }

    fn confirm_subscription(
        &mut self,
        email: &str,
        nonce: &str,
        now: SystemTime,
    ) -> Result<Option<Subscription>, StoreError> {
        let key = address_key(email);
        let tx = self.conn.transaction()?;
        let pending: Option<String> = tx
            .query_row(
                "SELECT pending FROM subscribers WHERE email = ?1",
                [&key],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let Some(p) = pending.and_then(|p| serde_json::from_str::<Pending>(&p).ok()) else {
            return Ok(None);
        };
        if p.nonce != nonce {
            return Ok(None);
        }
        let services =
            serde_json::to_string(&p.wants.services).map_err(|e| StoreError::Corrupt {
                what: "a subscription".into(),
                detail: e.to_string(),
            })?;
        tx.execute(
            "UPDATE subscribers SET address = ?2, language = ?3, timezone = ?4, services = ?5,
                    confirmed_at = coalesce(confirmed_at, ?6), pending = NULL
             WHERE email = ?1",
            params![
                key,
                p.wants.address,
                p.wants.language,
                p.wants.timezone,
                services,
                secs(now)
            ],
        )?;
        // Asking to be told again takes back an earlier "stop".
        tx.execute("DELETE FROM optouts WHERE email = ?1", [&key])?;
        tx.execute("DELETE FROM service_optouts WHERE email = ?1", [&key])?;
        tx.commit()?;
        Ok(Some(p.wants))
    }

    fn subscription(&self, email: &str) -> Result<Option<Subscription>, StoreError> {
        let row = self
            .conn
            .query_row(
                "SELECT address, language, timezone, services FROM subscribers
                 WHERE email = ?1 AND confirmed_at IS NOT NULL",
                [address_key(email)],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                    ))
                },
            )
            .optional()?;
        Ok(
            row.map(|(address, language, timezone, services)| Subscription {
                address,
                language,
                timezone,
                services: serde_json::from_str(&services).unwrap_or_default(),
            }),
        )
    }

    fn change_subscription(&mut self, s: &Subscription) -> Result<bool, StoreError> {
        let services = serde_json::to_string(&s.services).map_err(|e| StoreError::Corrupt {
            what: "a subscription".into(),
            detail: e.to_string(),
        })?;
        Ok(self.conn.execute(
            "UPDATE subscribers SET language = ?2, timezone = ?3, services = ?4
             WHERE email = ?1 AND confirmed_at IS NOT NULL",
            params![address_key(&s.address), s.language, s.timezone, services],
        )? > 0)
    }

    fn remove_subscription(&mut self, email: &str) -> Result<bool, StoreError> {
        Ok(self.conn.execute(
            "DELETE FROM subscribers WHERE email = ?1",
            [address_key(email)],
        )? > 0)
    }

    fn subscribers_of(&self, service: &str) -> Result<Vec<NewRecipient>, StoreError> {
        let mut stmt = self.conn.prepare(
            "SELECT address, language, timezone, services FROM subscribers WHERE confirmed_at IS NOT NULL ORDER BY email",
        )?;
        let rows = stmt.query_map((), |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, String>(1)?,
                r.get::<_, String>(2)?,
                r.get::<_, String>(3)?,
            ))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (address, language, timezone, services) = row?;
            let services: Vec<String> = serde_json::from_str(&services).unwrap_or_default();
            if services.is_empty() || services.iter().any(|s| s == service) {
                out.push(NewRecipient {
                    email: address,
                    name: String::new(),
                    language,
                    timezone,
                    vars: Default::default(),
                });
            }
        }
        Ok(out)
    }

    fn count_request(
        &mut self,
        key: &str,
        within: Duration,
        now: SystemTime,
    ) -> Result<u64, StoreError> {
        let tx = self.conn.transaction()?;
        // Old requests are forgotten: nothing here outlives the longest window (a day).
        tx.execute(
            "DELETE FROM subscribe_requests WHERE at < ?1",
            [secs(now) - 2.0 * 86_400.0],
        )?;
        tx.execute(
            "INSERT INTO subscribe_requests (key, at) VALUES (?1, ?2)",
            params![key, secs(now)],
        )?;
        let n: i64 = tx.query_row(
            "SELECT count(*) FROM subscribe_requests WHERE key = ?1 AND at > ?2",
            params![key, secs(now - within)],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(n as u64)
    }

    fn stop_service(
        &mut self,
        email: &str,
        service: &str,
        now: SystemTime,
    ) -> Result<bool, StoreError> {
        let key = address_key(email);
        let tx = self.conn.transaction()?;
        let new = tx.execute(
            "INSERT OR IGNORE INTO service_optouts (email, service, at) VALUES (?1, ?2, ?3)",
            params![key, service, secs(now)],
        )? > 0;
        tx.execute(
            "UPDATE recipients SET status = 'cancelled', last_error = 'opted out of this service'
             WHERE status = 'pending' AND lower(trim(email)) = ?1
               AND campaign_id IN (SELECT id FROM campaigns WHERE service = ?2)",
            params![key, service],
        )?;
        tx.commit()?;
        Ok(new)
    }
}
