//! Pages behind the signed links in staff mails. GET shows what the link would do and a
//! button; only the POST from that page acts (mail scanners that fetch links do nothing).

use std::collections::HashMap;

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;

use super::api::{IncidentApi, parse_eta};
use crate::incident::Event;
use crate::links::{Link, LinkAction, LinkQuery};
use crate::notify::staff::escape;
use crate::store::IncidentRecord;
use crate::text::time::rfc3339;

pub fn routes(api: IncidentApi) -> Router {
    Router::new()
        .route("/act", get(confirm).post(act))
        .with_state(api)
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\
         <title>{t}</title><style>body{{font-family:system-ui,sans-serif;max-width:36em;margin:2em auto;padding:0 1em}}\
         button,input{{font-size:1.1em;padding:.4em .8em}}</style></head><body><h1>{t}</h1>{body}</body></html>",
        t = escape(title)
    );
    (
        status,
        [
            // The signed link is in this page's URL: no Referer may carry it away, and no
            // other site may frame the confirmation button.
            (header::REFERRER_POLICY, "no-referrer"),
            (header::X_FRAME_OPTIONS, "DENY"),
            (header::CONTENT_SECURITY_POLICY, super::public::CSP),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::CACHE_CONTROL, "no-store"),
        ],
        Html(html),
    )
        .into_response()
}

/// The link's query, re-encoded for the form's action.
fn action_url(q: &LinkQuery) -> String {
    let mut s = url::form_urlencoded::Serializer::new(String::new());
    s.append_pair("i", &q.i.to_string())
        .append_pair("a", &q.a)
        .append_pair("e", &q.e.to_string())
        .append_pair("r", &q.r);
    if let Some(g) = &q.g {
        s.append_pair("g", g);
    }
    s.append_pair("s", &q.s);
    format!("/act?{}", s.finish())
}

/// The link, or the page that refuses it.
fn verified(api: &IncidentApi, q: &LinkQuery) -> Result<Link, Box<Response>> {
    api.signer.verify(q, api.clock.now()).map_err(|e| {
        Box::new(page(
            StatusCode::FORBIDDEN,
            "Link refused",
            &format!("<p>{}</p>", escape(&e.to_string())),
        ))
    })
}

/// What a link is about: its incident, with the service's name; or the page that says why
/// there is nothing to do (unknown, store unavailable, already over).
fn incident_of(api: &IncidentApi, link: &Link) -> Result<(IncidentRecord, String), Box<Response>> {
    let found = match api.store.lock().incident(link.incident) {
        Ok(found) => found,
        Err(_) => {
            return Err(Box::new(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>The incident store is unavailable; try the link again in a minute.</p>",
            )));
        }
    };
    let Some(inc) = found else {
        return Err(Box::new(page(
            StatusCode::NOT_FOUND,
            "No such incident",
            "<p>This incident does not exist.</p>",
        )));
    };
    let config = api.config.get();
    let name = config
        .services
        .iter()
        .find(|s| s.id == inc.service)
        .map(|s| s.name.clone())
        .unwrap_or_else(|| inc.service.clone());
    if let Some(ended) = inc.ended {
        return Err(Box::new(page(
            StatusCode::CONFLICT,
            &format!("{name} is back"),
            &format!(
                "<p>The outage of {} (incident {}) ended at {}: there is nothing left to acknowledge or estimate.</p>",
                escape(&name),
                inc.id,
                rfc3339(ended)
            ),
        )));
    }
    Ok((inc, name))
}

async fn confirm(State(api): State<IncidentApi>, Query(q): Query<LinkQuery>) -> Response {
    let link = match verified(&api, &q) {
        Ok(l) => l,
        Err(refused) => return *refused,
    };
    if link.action == LinkAction::AckAll {
        return confirm_all(&api, &link, &q);
    }
    let (inc, name) = match incident_of(&api, &link) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let config = api.config.get();
    let down = format!(
        "{} has been down since {} (incident {}).",
        escape(&name),
        rfc3339(inc.started),
        inc.id
    );
    let (title, what, fields) = match link.action {
        LinkAction::Ack => (
            format!("Acknowledge the outage of {name}?"),
            match &inc.acked_by {
                Some(by) => format!(
                    "{down} It is already acknowledged by {}; acknowledging again changes nothing.",
                    escape(by)
                ),
                None => format!(
                    "{down} Acknowledging tells tocsin someone is on it: the next escalation levels are not mailed."
                ),
            },
            "<button type=\"submit\">Acknowledge</button>".to_string(),
        ),
        LinkAction::Eta => (
            format!("When will {name} be back?"),
            format!(
                "{down}{} Give a duration from now (4h, 2h30m), a time in {} (14:00, tomorrow 09:00) or an RFC 3339 time. {}",
                inc.eta
                    .map(|e| format!(" The ETA now is {}.", rfc3339(e)))
                    .unwrap_or_default(),
                escape(&config.staff_timezone),
                if inc.customer_phase {
                    "Customers have been told; a new ETA goes to them as an update."
                } else {
                    "An ETA past the customer threshold tells customers at once."
                }
            ),
            "<label>ETA <input name=\"eta\" required placeholder=\"4h\"></label> <button type=\"submit\">Set ETA</button>".to_string(),
        ),
        LinkAction::Update => (
            format!("Post an update about {name} for customers"),
            format!(
                "{down} Your words appear at once on the status page and in its feeds, as written (no markup). {}",
                if inc.customer_phase {
                    "Customers have been told of the outage: tick the box to mail them your update as well."
                } else {
                    "Customers have not been mailed yet; the update is shown on the status page."
                }
            ),
            update_fields(&api, &inc),
        ),
        LinkAction::AckAll => unreachable!("answered by confirm_all"),
    };
    page(
        StatusCode::OK,
        &title,
        &format!(
            "<p>As {}.</p>\n<p>{what}</p>\n<form method=\"post\" action=\"{}\">{fields}</form>",
            escape(&link.recipient),
            escape(&action_url(&q))
        ),
    )
}

/// Acts on a POST, whatever its content type: the page's form sends a urlencoded body,
/// `curl -X POST` none at all.
async fn act(
    State(api): State<IncidentApi>,
    Query(q): Query<LinkQuery>,
    form: axum::body::Bytes,
) -> Response {
    let now = api.clock.now();
    let link = match verified(&api, &q) {
        Ok(l) => l,
        Err(refused) => return *refused,
    };
    let fields: HashMap<String, String> = url::form_urlencoded::parse(&form).into_owned().collect();
    let by = format!("{} (mail link)", link.recipient);
    if link.action == LinkAction::AckAll {
        return act_all(&api, &link, by).await;
    }
    let event = match link.action {
        LinkAction::Ack | LinkAction::AckAll => Event::Ack { by },
        LinkAction::Update => {
            let field = |k: &str| fields.get(k).map(String::as_str).unwrap_or("");
            let texts = api
                .languages
                .iter()
                .filter_map(|l| {
                    let t = field(&format!("text_{l}"));
                    (!t.trim().is_empty()).then(|| (l.clone(), t.to_string()))
                })
                .collect();
            match api.update(field("state"), field("text"), texts, &by) {
                Ok(update) => Event::Update {
                    update,
                    notify: field("notify") == "1",
                },
                Err(m) => {
                    return page(
                        StatusCode::BAD_REQUEST,
                        "Update not posted",
                        &format!(
                            "<p>{}</p><p><a href=\"{}\">Try again</a></p>",
                            escape(&m),
                            escape(&action_url(&q))
                        ),
                    );
                }
            }
        }
        LinkAction::Eta => {
            match parse_eta(
                &api.config.get(),
                fields.get("eta").map(String::as_str).unwrap_or(""),
                now,
            ) {
                Ok(eta) => Event::Eta { eta, by },
                Err(m) => {
                    return page(
                        StatusCode::BAD_REQUEST,
                        "ETA not set",
                        &format!(
                            "<p>{}</p><p><a href=\"{}\">Try again</a></p>",
                            escape(&m),
                            escape(&action_url(&q))
                        ),
                    );
                }
            }
        }
    };
    let (inc, name) = match incident_of(&api, &link) {
        Ok(found) => found,
        Err(page) => return *page,
    };
    let result = api.engine.command(&inc.service, event).await;
    match result {
        Ok(_) => match link.action {
            LinkAction::Update => page(
                StatusCode::OK,
                "Update posted",
                &format!(
                    "<p>Your update about {} (incident {}) is on the status page.</p>",
                    escape(&name),
                    inc.id
                ),
            ),
            LinkAction::Ack | LinkAction::AckAll => page(
                StatusCode::OK,
                "Acknowledged",
                &format!(
                    "<p>The outage of {} (incident {}) is acknowledged: no further level is mailed.</p>",
                    escape(&name),
                    inc.id
                ),
            ),
            LinkAction::Eta => page(
                StatusCode::OK,
                "ETA set",
                &format!(
                    "<p>{} is expected back by {} (incident {}).</p>",
                    escape(&name),
                    api.store
                        .lock()
                        .incident(inc.id)
                        .ok()
                        .flatten()
                        .and_then(|i| i.eta)
                        .map(rfc3339)
                        .unwrap_or_else(|| "the time given".into()),
                    inc.id
                ),
            ),
        },
        Err(e) => page(
            StatusCode::CONFLICT,
            "Not done",
            &format!("<p>{}</p>", escape(&e.to_string())),
        ),
    }
}

/// The update form's fields: the state (the last one posted preselected), the text in the
/// status page's language, the others folded away, and whether to mail it.
fn update_fields(api: &IncidentApi, inc: &IncidentRecord) -> String {
    use crate::incident::{MAX_TEXT, UpdateState};
    let last = inc
        .timeline
        .iter()
        .rev()
        .find_map(|e| e.event.update().map(|u| u.state))
        .unwrap_or(if inc.acked_by.is_some() {
            UpdateState::Identified
        } else {
            UpdateState::Investigating
        });
    let options: String = UpdateState::ALL
        .iter()
        .map(|s| {
            format!(
                "<option value=\"{0}\"{1}>{0}</option>",
                s.as_str(),
                if *s == last { " selected" } else { "" }
            )
        })
        .collect();
    let default = api.config.get().page_language.clone();
    let others: String = api
        .languages
        .iter()
        .filter(|l| **l != default)
        .map(|l| {
            format!(
                "<p><label>In {0} (optional)<br><textarea name=\"text_{0}\" rows=\"4\" cols=\"50\" maxlength=\"{MAX_TEXT}\"></textarea></label></p>",
                escape(l)
            )
        })
        .collect();
    let notify = if inc.customer_phase {
        "<p><label><input type=\"checkbox\" name=\"notify\" value=\"1\"> Mail it to the customers told of the outage</label></p>"
    } else {
        ""
    };
    format!(
        "<p><label>State <select name=\"state\">{options}</select></label> <small>(resolved closes the incident)</small></p>\
         <p><label>Update in {lang}: what happened, what is being done, what customers can do meanwhile<br>\
         <textarea name=\"text\" rows=\"6\" cols=\"50\" required maxlength=\"{MAX_TEXT}\"></textarea></label></p>\
         {others}{notify}<button type=\"submit\">Post update</button>",
        lang = escape(&default)
    )
}

/// The incidents of an "acknowledge all" link, each with its service's name; those that
/// no longer exist are left out.
fn group_of(
    api: &IncidentApi,
    link: &Link,
) -> Result<Vec<(IncidentRecord, String)>, Box<Response>> {
    let config = api.config.get();
    let mut out = Vec::new();
    for id in &link.group {
        let found = api.store.lock().incident(*id).map_err(|_| {
            Box::new(page(
                StatusCode::SERVICE_UNAVAILABLE,
                "Try again",
                "<p>The incident store is unavailable; try the link again in a minute.</p>",
            ))
        })?;
        if let Some(inc) = found {
            let name = config
                .services
                .iter()
                .find(|s| s.id == inc.service)
                .map(|s| s.name.clone())
                .unwrap_or_else(|| inc.service.clone());
            out.push((inc, name));
        }
    }
    Ok(out)
}

fn confirm_all(api: &IncidentApi, link: &Link, q: &LinkQuery) -> Response {
    let group = match group_of(api, link) {
        Ok(g) => g,
        Err(p) => return *p,
    };
    let items: String = group
        .iter()
        .map(|(inc, name)| {
            let state = match (&inc.ended, &inc.acked_by) {
                (Some(_), _) => "over already".to_string(),
                (None, Some(by)) => format!("acknowledged by {}", escape(by)),
                (None, None) => format!("down since {}", rfc3339(inc.started)),
            };
            format!("<li>{} (incident {}): {state}</li>", escape(name), inc.id)
        })
        .collect();
    page(
        StatusCode::OK,
        &format!("Acknowledge {} incidents?", group.len()),
        &format!(
            "<p>As {}.</p>\n<ul>{items}</ul>\n<p>Acknowledging tells tocsin someone is on them: their next escalation levels are not mailed.</p>\n<form method=\"post\" action=\"{}\"><button type=\"submit\">Acknowledge all</button></form>",
            escape(&link.recipient),
            escape(&action_url(q))
        ),
    )
}

async fn act_all(api: &IncidentApi, link: &Link, by: String) -> Response {
    let group = match group_of(api, link) {
        Ok(g) => g,
        Err(p) => return *p,
    };
    let mut lines = Vec::new();
    for (inc, name) in &group {
        let what = if inc.ended.is_some() {
            "over already: nothing to acknowledge".to_string()
        } else if let Some(b) = &inc.acked_by {
            format!("already acknowledged by {}", escape(b))
        } else {
            match api
                .engine
                .command(&inc.service, Event::Ack { by: by.clone() })
                .await
            {
                Ok(_) => "acknowledged".to_string(),
                Err(e) => format!("not done: {}", escape(&e.to_string())),
            }
        };
        lines.push(format!(
            "<li>{} (incident {}): {what}</li>",
            escape(name),
            inc.id
        ));
    }
    page(
        StatusCode::OK,
        "Acknowledged",
        &format!(
            "<ul>{}</ul><p>No further level is mailed for those acknowledged.</p>",
            lines.join("")
        ),
    )
}
