//! Telegram's Bot API `sendMessage`: HTML text (only `<b>`, `<a>` and escaped text),
//! at most 4,096 characters, link previews off. The bot token is part of the URL, so
//! the URL is never logged.

use serde_json::json;

use super::{Notice, Request, cut};
use crate::secret::Secret;
use crate::text::html::escape;

pub const TEXT: usize = 4096;

pub fn request(api: &url::Url, token: &Secret, chat_id: &str, n: &Notice) -> Request {
    let mut text = format!("<b>{}</b>\n{}", escape(&n.title), escape(&n.text()));
    for (label, url) in n.links() {
        text.push_str(&format!("\n<a href=\"{}\">{label}</a>", escape(url)));
    }
    // Cut before the links rather than through a tag.
    if text.chars().count() > TEXT {
        text = format!(
            "<b>{}</b>\n{}",
            escape(&cut(&n.title, 200)),
            escape(&cut(&n.text(), TEXT - 400))
        );
    }
    let chat: serde_json::Value = match chat_id.parse::<i64>() {
        Ok(n) => json!(n),
        Err(_) => json!(chat_id),
    };
    let base = api.as_str().trim_end_matches('/');
    Request::post_json(
        format!("{base}/bot{}/sendMessage", token.expose()),
        &json!({
            "chat_id": chat,
            "text": text,
            "parse_mode": "HTML",
            "link_preview_options": {"is_disabled": true},
        }),
    )
}
