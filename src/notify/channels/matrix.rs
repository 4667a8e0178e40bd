//! Matrix: `PUT /_matrix/client/v3/rooms/{room}/send/m.room.message/{txnId}` with the
//! access token as a bearer token, the text plain and as HTML. The transaction id is the
//! delivery's, so a retry after a lost answer is the same event, not a second one (the
//! homeserver makes the request idempotent per access token and transaction id).

use serde_json::json;

use super::{Notice, Request, cut};
use crate::secret::Secret;
use crate::text::html::escape;

pub const TEXT: usize = 16_000;

pub fn request(
    homeserver: &url::Url,
    room: &str,
    token: &Secret,
    n: &Notice,
    delivery: i64,
) -> Request {
    let text = cut(&n.text(), TEXT);
    let mut plain = format!("{}\n{text}", n.title);
    let mut html = format!(
        "<strong>{}</strong><br>{}",
        escape(&n.title),
        escape(&text).replace('\n', "<br>")
    );
    for (label, url) in n.links() {
        plain.push_str(&format!("\n{label}: {url}"));
        html.push_str(&format!("<br><a href=\"{}\">{label}</a>", escape(url)));
    }
    let base = homeserver.as_str().trim_end_matches('/');
    let room: String = url::form_urlencoded::byte_serialize(room.as_bytes()).collect();
    let body = json!({
        "msgtype": "m.text",
        "body": plain,
        "format": "org.matrix.custom.html",
        "formatted_body": html,
    });
    Request {
        method: reqwest::Method::PUT,
        url: format!("{base}/_matrix/client/v3/rooms/{room}/send/m.room.message/tocsin-{delivery}"),
        headers: vec![("Authorization", format!("Bearer {}", token.expose()))],
        content_type: "application/json",
        body: body.to_string(),
    }
}
