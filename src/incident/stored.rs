//! Reading states and decisions that earlier tocsins stored: a probe's reason was plain
//! text before it was typed, so a stored reason is either. New records are always typed.

use std::collections::BTreeMap;

use serde::{Deserialize, Deserializer};

use crate::probe::Reason;

#[derive(Deserialize)]
#[serde(untagged)]
enum Stored {
    Typed(Reason),
    Text(String),
}

impl From<Stored> for Reason {
    fn from(s: Stored) -> Reason {
        match s {
            Stored::Typed(r) => r,
            Stored::Text(text) => Reason::Text { text },
        }
    }
}

pub fn reason_opt<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Reason>, D::Error> {
    Ok(Option::<Stored>::deserialize(d)?.map(Reason::from))
}

pub fn reason_map<'de, D: Deserializer<'de>>(d: D) -> Result<BTreeMap<String, Reason>, D::Error> {
    Ok(BTreeMap::<String, Stored>::deserialize(d)?
        .into_iter()
        .map(|(k, v)| (k, v.into()))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Deserialize)]
    struct Holder {
        #[serde(deserialize_with = "reason_map")]
        reasons: BTreeMap<String, Reason>,
    }

    #[test]
    fn text_from_an_earlier_database_and_typed_reasons_both_read() {
        let h: Holder = serde_json::from_str(
            r#"{"reasons": {"home": "status 503, expected 200", "api": {"kind": "connection_refused"}}}"#,
        )
        .unwrap();
        assert_eq!(
            h.reasons["home"],
            Reason::Text {
                text: "status 503, expected 200".into()
            }
        );
        assert_eq!(h.reasons["api"], Reason::ConnectionRefused);
        assert_eq!(h.reasons["home"].to_string(), "status 503, expected 200");
    }
}
