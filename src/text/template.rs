//! The body template of a custom channel (`channels: NAME: webhook: body:`): minijinja
//! with a fuel limit, strict about undefined names, and escaping by the body's content
//! type: in `application/json` every value is written as JSON (quoted and escaped, so
//! a reason holding `"` cannot break the document), in `text/plain` as it is.

use minijinja::{AutoEscape, Environment, UndefinedBehavior};

/// The most fuel one rendering may burn: a loop over a large range stops instead of
/// holding the channel's worker.
pub const FUEL: u64 = 50_000;

fn environment(content_type: &str) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_fuel(Some(FUEL));
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    let json = content_type == "application/json";
    env.set_auto_escape_callback(move |_| {
        if json {
            AutoEscape::Json
        } else {
            AutoEscape::None
        }
    });
    env
}

/// `source` rendered with `values`.
pub fn render(
    source: &str,
    content_type: &str,
    values: &serde_json::Value,
) -> Result<String, String> {
    let env = environment(content_type);
    let t = env.template_from_str(source).map_err(|e| describe(&e))?;
    let out = t
        .render(minijinja::value::Serde(values))
        .map_err(|e| describe(&e))?;
    if content_type == "application/json" {
        serde_json::from_str::<serde_json::Value>(&out)
            .map_err(|e| format!("the body is not JSON once rendered ({e}): write values bare, `{{{{ title }}}}`, they are written as JSON strings"))?;
    }
    Ok(out)
}

/// Whether `source` renders for a sample of what it will be given: a syntax error, a
/// misspelt name or a body that is not JSON is found by `tocsin check`, not at 3 a.m.
pub fn check(source: &str, content_type: &str) -> Result<(), String> {
    render(source, content_type, &sample()).map(|_| ())
}

/// What a body template is given, with made-up values: the names it may use.
pub fn sample() -> serde_json::Value {
    serde_json::json!({
        "event": "opened",
        "service": "shop",
        "service_name": "Web shop",
        "incident": 1,
        "title": "Web shop is DOWN",
        "text": "Web shop (shop) is down since 2026-12-01T10:00:00Z.",
        "severity": "critical",
        "at": "2026-12-01T10:03:00Z",
        "ack_url": "https://status.example.com/a/...",
        "eta_url": "https://status.example.com/a/...",
        "reasons": ["shop-home: connection refused"],
    })
}

fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    if e.kind() == minijinja::ErrorKind::UndefinedError {
        let names: Vec<String> = sample()
            .as_object()
            .map(|o| o.keys().cloned().collect())
            .unwrap_or_default();
        msg = format!("{msg}; the names a body may use: {}", names.join(", "));
    }
    if let Some(line) = e.line() {
        msg = format!("line {line} of the template: {msg}");
    }
    msg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bodies_write_values_as_json() {
        let v = serde_json::json!({"title": "a \"quoted\" <b>", "n": 3});
        let out = render(
            r#"{"text": {{ title }}, "n": {{ n }}}"#,
            "application/json",
            &v,
        )
        .unwrap();
        let back: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(back["text"], "a \"quoted\" <b>");
        assert_eq!(back["n"], 3);
    }

    #[test]
    fn mistakes_are_found_before_sending() {
        let e = check("{{ titel }}", "text/plain").unwrap_err();
        assert!(e.contains("undefined"), "{e}");
        let e = check("{% for %}", "text/plain").unwrap_err();
        assert!(e.contains("line 1"), "{e}");
        let e = check(r#"{"text": "{{ title }}"}"#, "application/json").unwrap_err();
        assert!(e.contains("not JSON"), "{e}");
        let e = check(
            "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
            "text/plain",
        )
        .unwrap_err();
        assert!(e.contains("fuel"), "{e}");
        check("{{ title }}: {{ text }}", "text/plain").unwrap();
    }
}
