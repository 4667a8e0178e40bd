//! Assertions on a JSON response body (`body_json`): an RFC 9535 JSONPath query
//! (serde_json_path) and what the nodes it selects must be. A trailing `.length()`
//! (not part of RFC 9535, which has `length()` only inside filters) compares the length
//! of what the query selects: an array's items, an object's members, a string's
//! characters.

use serde_json::Value;
use serde_json_path::JsonPath;

use super::{Pattern, Reason};

/// What the selected nodes must be.
#[derive(Debug, Clone, PartialEq)]
pub enum JsonExpect {
    /// Every selected node equals this value (and there is at least one).
    Equals(Value),
    /// No selected node equals this value (and there is at least one).
    NotEquals(Value),
    /// Every selected node, as text (strings without their quotes), matches.
    Matches(Pattern),
    /// Every selected number (or length) is at least this.
    AtLeast(f64),
    /// Every selected number (or length) is at most this.
    AtMost(f64),
    /// The query selects something (true) or nothing (false).
    Exists(bool),
}

impl JsonExpect {
    fn wanted(&self) -> String {
        match self {
            JsonExpect::Equals(v) => format!("{v}"),
            JsonExpect::NotEquals(v) => format!("anything but {v}"),
            JsonExpect::Matches(p) => format!("a match for /{}/", p.0.as_str()),
            JsonExpect::AtLeast(n) => format!("at least {n}"),
            JsonExpect::AtMost(n) => format!("at most {n}"),
            JsonExpect::Exists(true) => "something".into(),
            JsonExpect::Exists(false) => "nothing".into(),
        }
    }
}

/// One `body_json` rule.
#[derive(Debug, Clone)]
pub struct JsonRule {
    /// As written in the config (for reasons).
    pub path: String,
    query: JsonPath,
    /// A trailing `.length()`.
    length: bool,
    pub expect: JsonExpect,
}

impl PartialEq for JsonRule {
    fn eq(&self, other: &Self) -> bool {
        self.path == other.path && self.expect == other.expect
    }
}

impl JsonRule {
    /// Parses `path`; the error says what is wrong with it.
    pub fn new(path: &str, expect: JsonExpect) -> Result<JsonRule, String> {
        let (query, length) = match path.strip_suffix(".length()") {
            Some(base) => (base, true),
            None => (path, false),
        };
        let parsed = JsonPath::parse(query).map_err(|e| e.to_string())?;
        Ok(JsonRule {
            path: path.to_string(),
            query: parsed,
            length,
            expect,
        })
    }
}

/// Checks `body` against every rule, in order; the first that fails is the reason.
pub fn check(body: &[u8], rules: &[JsonRule]) -> Result<(), Reason> {
    if rules.is_empty() {
        return Ok(());
    }
    // serde_json refuses nesting deeper than 128 levels, so a hostile body cannot
    // exhaust the stack; the body was already cut at max_body.
    let value: Value = serde_json::from_slice(body).map_err(|e| Reason::BodyNotJson {
        detail: e.to_string(),
    })?;
    for rule in rules {
        let nodes = rule.query.query(&value).all();
        let found: Vec<Value> = if rule.length {
            nodes
                .iter()
                .filter_map(|v| match v {
                    Value::Array(a) => Some(Value::from(a.len())),
                    Value::Object(o) => Some(Value::from(o.len())),
                    Value::String(s) => Some(Value::from(s.chars().count())),
                    _ => None,
                })
                .collect()
        } else {
            nodes.into_iter().cloned().collect()
        };
        if !holds(&rule.expect, &found) {
            return Err(Reason::BodyJson {
                path: rule.path.clone(),
                found: shown(&found),
                want: rule.expect.wanted(),
            });
        }
    }
    Ok(())
}

fn holds(expect: &JsonExpect, found: &[Value]) -> bool {
    let number = |v: &Value| v.as_f64();
    match expect {
        JsonExpect::Exists(want) => found.is_empty() != *want,
        _ if found.is_empty() => false,
        JsonExpect::Equals(v) => found.iter().all(|f| f == v),
        JsonExpect::NotEquals(v) => found.iter().all(|f| f != v),
        JsonExpect::Matches(p) => found.iter().all(|f| p.0.is_match(&text(f))),
        JsonExpect::AtLeast(n) => found.iter().all(|f| number(f).is_some_and(|x| x >= *n)),
        JsonExpect::AtMost(n) => found.iter().all(|f| number(f).is_some_and(|x| x <= *n)),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// What was found, short enough for a mail or a page.
fn shown(found: &[Value]) -> String {
    let all = match found {
        [] => "nothing".to_string(),
        [one] => one.to_string(),
        many => format!(
            "[{}]",
            many.iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    };
    if all.chars().count() > 120 {
        format!("{}…", all.chars().take(120).collect::<String>())
    } else {
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(path: &str, expect: JsonExpect) -> JsonRule {
        JsonRule::new(path, expect).unwrap()
    }

    const BODY: &[u8] =
        br#"{"status":"UP","items":[1,2,3],"version":"2.4.1","checks":[{"ok":true},{"ok":false}]}"#;

    #[test]
    fn rules_pass_and_fail_with_what_was_found() {
        let pass = [
            rule("$.status", JsonExpect::Equals(Value::from("UP"))),
            rule("$.items.length()", JsonExpect::AtLeast(1.0)),
            rule("$.items[*]", JsonExpect::AtMost(3.0)),
            rule(
                "$.version",
                JsonExpect::Matches(Pattern(regex::Regex::new(r"^2\.").unwrap())),
            ),
            rule("$.missing", JsonExpect::Exists(false)),
        ];
        assert_eq!(check(BODY, &pass), Ok(()));
        let fail = [rule(
            "$.checks[*].ok",
            JsonExpect::Equals(Value::Bool(true)),
        )];
        assert_eq!(
            check(BODY, &fail).unwrap_err().to_string(),
            "body JSON at $.checks[*].ok: found [true, false], wanted true"
        );
        let missing = [rule("$.db", JsonExpect::NotEquals(Value::from("DOWN")))];
        assert_eq!(
            check(BODY, &missing).unwrap_err().to_string(),
            "body JSON at $.db: found nothing, wanted anything but \"DOWN\""
        );
    }

    #[test]
    fn a_body_that_is_not_json_or_nested_too_deep_is_named() {
        let any = [rule("$.status", JsonExpect::Exists(true))];
        let e = check(b"<h1>Internal error</h1>", &any).unwrap_err();
        assert!(e.to_string().starts_with("body is not JSON: "), "{e}");
        let deep = "[".repeat(100_000) + &"]".repeat(100_000);
        let e = check(deep.as_bytes(), &any).unwrap_err();
        assert!(e.to_string().contains("recursion limit"), "{e}");
    }

    #[test]
    fn a_bad_path_is_refused_with_the_parser_s_words() {
        let e = JsonRule::new("status", JsonExpect::Exists(true)).unwrap_err();
        assert!(e.contains("position 0"), "{e}");
        let e = JsonRule::new("$.items[", JsonExpect::Exists(true)).unwrap_err();
        assert!(e.contains("position"), "{e}");
        // A trailing .length() is ours, not the parser's: it is not refused.
        assert!(JsonRule::new("$.items.length()", JsonExpect::AtLeast(1.0)).is_ok());
    }
}
