//! Mattermost incoming webhooks: one Markdown post. A post holds at most 16,383
//! characters; the text is kept well under it.

use serde_json::{Value, json};

use super::{Notice, cut};

pub const TEXT: usize = 4000;

pub fn body(n: &Notice) -> Value {
    let mut t = format!("#### {}\n{}", n.title, n.text());
    let links: Vec<String> = n
        .links()
        .into_iter()
        .map(|(label, url)| format!("[{label}]({url})"))
        .collect();
    if !links.is_empty() {
        t.push_str("\n\n");
        t.push_str(&links.join(" · "));
    }
    json!({"text": cut(&t, TEXT)})
}
