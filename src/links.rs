//! Signed action links for staff mails: `{public_url}/act?i=7&a=ack&e=<expiry>&r=<who>&s=<hmac>`.
//! The HMAC-SHA256 covers the incident, the action, the expiry and the recipients, with a
//! key kept in the store. Following a link only shows a confirmation page; its POST acts,
//! so mail scanners that fetch links acknowledge nothing.

use std::time::{Duration, SystemTime};

use ring::hmac;
use serde::Deserialize;

/// How long a link in a mail stays valid.
pub const VALIDITY: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Ack,
    Eta,
    /// Acknowledge every incident of a grouped staff mail (the link's `group`).
    AckAll,
    /// Post an update for customers.
    Update,
}

impl LinkAction {
    fn as_str(self) -> &'static str {
        match self {
            LinkAction::Ack => "ack",
            LinkAction::Eta => "eta",
            LinkAction::AckAll => "ackall",
            LinkAction::Update => "update",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Link {
    pub incident: i64,
    pub action: LinkAction,
    /// Unix seconds after which the link is refused.
    pub expires: u64,
    /// Whom the mail went to; recorded as who acted.
    pub recipient: String,
    /// For [`LinkAction::AckAll`]: every incident it acknowledges (`incident` among them).
    pub group: Vec<i64>,
}

/// A link's query string, as received.
#[derive(Debug, Deserialize)]
pub struct LinkQuery {
    pub i: i64,
    pub a: String,
    pub e: u64,
    pub r: String,
    pub s: String,
    /// The incidents of an "acknowledge all" link, comma-separated.
    #[serde(default)]
    pub g: Option<String>,
}

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    /// The signature does not match: the link was altered or is not tocsin's.
    #[error("this link is not valid (it was altered, or made by another tocsin)")]
    BadSignature,
    /// Past its expiry.
    #[error("this link has expired; acknowledge with `tocsin incident ack` or the API instead")]
    Expired,
}

pub struct Signer {
    key: hmac::Key,
}

fn message(incident: i64, action: &str, expires: u64, recipient: &str, group: &str) -> String {
    // A link of one incident signs what it always signed: links already mailed stay valid.
    if group.is_empty() {
        format!("{incident}|{action}|{expires}|{recipient}")
    } else {
        format!("{incident}|{action}|{expires}|{recipient}|{group}")
    }
}

fn group_text(group: &[i64]) -> String {
    group
        .iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Signer {
    pub fn new(key: &[u8]) -> Self {
        Signer {
            key: hmac::Key::new(hmac::HMAC_SHA256, key),
        }
    }

    /// The full URL of `link` under `base` (the config's `public_url`).
    pub fn url(&self, base: &str, link: &Link) -> String {
        let a = link.action.as_str();
        let g = group_text(&link.group);
        let sig = hmac::sign(
            &self.key,
            message(link.incident, a, link.expires, &link.recipient, &g).as_bytes(),
        );
        let r: String = url::form_urlencoded::byte_serialize(link.recipient.as_bytes()).collect();
        let group = if g.is_empty() {
            String::new()
        } else {
            format!("&g={g}")
        };
        format!(
            "{base}/act?i={}&a={a}&e={}&r={r}{group}&s={}",
            link.incident,
            link.expires,
            hex(sig.as_ref())
        )
    }

    /// Checks a received link (in constant time, through ring) and its expiry.
    pub fn verify(&self, q: &LinkQuery, now: SystemTime) -> Result<Link, LinkError> {
        let action = match q.a.as_str() {
            "ack" => LinkAction::Ack,
            "eta" => LinkAction::Eta,
            "ackall" => LinkAction::AckAll,
            "update" => LinkAction::Update,
            _ => return Err(LinkError::BadSignature),
        };
        let g = q.g.clone().unwrap_or_default();
        let group: Vec<i64> = if g.is_empty() {
            Vec::new()
        } else {
            g.split(',')
                .map(|i| i.parse::<i64>().map_err(|_| LinkError::BadSignature))
                .collect::<Result<_, _>>()?
        };
        // An "acknowledge all" link names its incidents; the others name none.
        if (action == LinkAction::AckAll) == group.is_empty() || group.len() > 500 {
            return Err(LinkError::BadSignature);
        }
        let sig: Option<Vec<u8>> = (0..q.s.len())
            .step_by(2)
            .map(|i| {
                q.s.get(i..i + 2)
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
            })
            .collect();
        let sig = sig.ok_or(LinkError::BadSignature)?;
        hmac::verify(
            &self.key,
            message(q.i, &q.a, q.e, &q.r, &g).as_bytes(),
            &sig,
        )
        .map_err(|_| LinkError::BadSignature)?;
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now > q.e {
            return Err(LinkError::Expired);
        }
        Ok(Link {
            incident: q.i,
            action,
            expires: q.e,
            recipient: q.r.clone(),
            group,
        })
    }
}

impl Signer {
    /// The signature of `message` (one of the link kinds below), as hex.
    fn sign(&self, message: &str) -> String {
        hex(hmac::sign(&self.key, message.as_bytes()).as_ref())
    }

    /// Checks a hex `sig` of `message`, in constant time (through ring).
    fn check(&self, message: &str, sig: &str) -> Result<(), LinkError> {
        let sig = unhex(sig).ok_or(LinkError::BadSignature)?;
        hmac::verify(&self.key, message.as_bytes(), &sig).map_err(|_| LinkError::BadSignature)
    }

    /// The one-click unsubscribe URL of `email` (RFC 8058). It does not expire: a
    /// customer may act on an old mail; it only ever removes that one address.
    pub fn unsubscribe_url(&self, base: &str, email: &str) -> String {
        let key = crate::store::address_key(email);
        let s = self.sign(&format!("unsubscribe|{key}"));
        format!("{base}/unsubscribe?e={}&s={s}", encode(&key))
    }

    /// The address an unsubscribe link is for, when its signature holds.
    pub fn verify_unsubscribe(&self, email: &str, sig: &str) -> Result<String, LinkError> {
        let key = crate::store::address_key(email);
        self.check(&format!("unsubscribe|{key}"), sig)?;
        Ok(key)
    }

    /// The link that stops `email`'s notices about `service` only. It does not expire.
    pub fn stop_url(&self, base: &str, email: &str, service: &str) -> String {
        let key = crate::store::address_key(email);
        let s = self.sign(&format!("stop|{key}|{service}"));
        format!(
            "{base}/unsubscribe?e={}&svc={}&s={s}",
            encode(&key),
            encode(service)
        )
    }

    /// The address a per-service stop link is for, when its signature holds.
    pub fn verify_stop(&self, email: &str, service: &str, sig: &str) -> Result<String, LinkError> {
        let key = crate::store::address_key(email);
        self.check(&format!("stop|{key}|{service}"), sig)?;
        Ok(key)
    }

    /// The "manage my subscription" page of `email`. It does not expire: it is in every
    /// mail, and shows and changes only that address's notices.
    pub fn manage_url(&self, base: &str, email: &str) -> String {
        let key = crate::store::address_key(email);
        let s = self.sign(&format!("manage|{key}"));
        format!("{base}/subscription?e={}&s={s}", encode(&key))
    }

    /// The address a manage link is for, when its signature holds.
    pub fn verify_manage(&self, email: &str, sig: &str) -> Result<String, LinkError> {
        let key = crate::store::address_key(email);
        self.check(&format!("manage|{key}"), sig)?;
        Ok(key)
    }

    /// The link that confirms `email`'s subscription request `nonce`, until `expires`
    /// (Unix seconds).
    pub fn confirm_url(&self, base: &str, email: &str, nonce: &str, expires: u64) -> String {
        let key = crate::store::address_key(email);
        let s = self.sign(&format!("subscribe|{key}|{nonce}|{expires}"));
        format!(
            "{base}/subscribe/confirm?e={}&n={nonce}&x={expires}&s={s}",
            encode(&key)
        )
    }

    /// The address and nonce of a confirmation link, when its signature holds and it has
    /// not expired.
    pub fn verify_confirm(
        &self,
        email: &str,
        nonce: &str,
        expires: u64,
        sig: &str,
        now: SystemTime,
    ) -> Result<(String, String), LinkError> {
        let key = crate::store::address_key(email);
        self.check(&format!("subscribe|{key}|{nonce}|{expires}"), sig)?;
        let now = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        if now > expires {
            return Err(LinkError::Expired);
        }
        Ok((key, nonce.to_string()))
    }

    /// A tag that makes a campaign message's Message-ID unique to this store: the same
    /// after a restart (a message sent again after a crash keeps its identity), different
    /// in every other store, and telling nothing of the store's key.
    pub fn message_tag(&self, campaign: i64, row: i64) -> String {
        let sig = hmac::sign(&self.key, format!("message-id|{campaign}|{row}").as_bytes());
        hex(&sig.as_ref()[..10])
    }
}

/// `s` as a query value.
fn encode(s: &str) -> String {
    url::form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    (0..s.len())
        .step_by(2)
        .map(|i| s.get(i..i + 2).and_then(|h| u8::from_str_radix(h, 16).ok()))
        .collect()
}

/// Expiry (Unix seconds) for a link made at `now` valid for `valid`.
pub fn expiry_after(now: SystemTime, valid: std::time::Duration) -> u64 {
    (now + valid)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Expiry for a link made at `now`.
pub fn expiry(now: SystemTime) -> u64 {
    (now + VALIDITY)
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(url: &str) -> LinkQuery {
        let query = url.split_once('?').unwrap().1;
        serde_urlencoded_like(query)
    }

    /// Parses the query as axum will (form encoding).
    fn serde_urlencoded_like(query: &str) -> LinkQuery {
        let pairs: std::collections::HashMap<String, String> =
            url::form_urlencoded::parse(query.as_bytes())
                .into_owned()
                .collect();
        LinkQuery {
            i: pairs["i"].parse().unwrap(),
            a: pairs["a"].clone(),
            e: pairs["e"].parse().unwrap(),
            r: pairs["r"].clone(),
            s: pairs["s"].clone(),
            g: pairs.get("g").cloned(),
        }
    }

    #[test]
    fn a_link_verifies_until_it_expires_and_not_once_altered() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let link = Link {
            incident: 7,
            action: LinkAction::Ack,
            expires: expiry(now),
            recipient: "oncall@example.com, lead@example.com".into(),
            group: Vec::new(),
        };
        let url = s.url("https://status.example.com", &link);
        assert!(url.starts_with("https://status.example.com/act?i=7&a=ack&e=1800086400&r=oncall%40example.com%2C+lead%40example.com&s="), "{url}");
        assert_eq!(s.verify(&q(&url), now), Ok(link.clone()));
        assert_eq!(
            s.verify(&q(&url), now + VALIDITY + Duration::from_secs(1)),
            Err(LinkError::Expired)
        );
        for (from, to) in [
            ("i=7", "i=8"),
            ("a=ack", "a=eta"),
            ("e=1800086400", "e=1900086400"),
            ("r=oncall", "r=attacker"),
        ] {
            assert_eq!(
                s.verify(&q(&url.replace(from, to)), now),
                Err(LinkError::BadSignature),
                "{from} -> {to}"
            );
        }
        let other = Signer::new(b"another key entirely, 32 bytes!!");
        assert_eq!(other.verify(&q(&url), now), Err(LinkError::BadSignature));
        let mut broken = q(&url);
        broken.s = "zz".into();
        assert_eq!(s.verify(&broken, now), Err(LinkError::BadSignature));
    }

    #[test]
    fn an_acknowledge_all_link_signs_its_incidents() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000);
        let link = Link {
            incident: 7,
            action: LinkAction::AckAll,
            expires: expiry(now),
            recipient: "oncall@example.com".into(),
            group: vec![7, 8, 9],
        };
        let url = s.url("https://status.example.com", &link);
        assert!(
            url.contains("&a=ackall&") && url.contains("&g=7,8,9&"),
            "{url}"
        );
        assert_eq!(s.verify(&q(&url), now), Ok(link.clone()));
        for (from, to) in [
            ("g=7,8,9", "g=7,8,9,10"),
            ("g=7,8,9", "g=7,8"),
            ("a=ackall", "a=ack"),
        ] {
            assert_eq!(
                s.verify(&q(&url.replace(from, to)), now),
                Err(LinkError::BadSignature),
                "{from} -> {to}"
            );
        }
        // A single-incident link cannot be given a group.
        let one = s.url(
            "",
            &Link {
                action: LinkAction::Ack,
                group: Vec::new(),
                ..link
            },
        );
        let widened = one.replace("&s=", "&g=7,8&s=");
        assert_eq!(s.verify(&q(&widened), now), Err(LinkError::BadSignature));
    }
}
