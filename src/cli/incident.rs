//! `tocsin incident list|show|ack|eta|resolve`: the incident API from the shell, against
//! the instance named by the config's `listen`, with the token from the variable the
//! config names. Listings are aligned tables, or the API's JSON with `--json`.

use clap::Subcommand;
use serde_json::Value;

use super::{json, table};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Open incidents (all with --all).
    List {
        #[arg(long)]
        all: bool,
        /// The API's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One incident with its timeline.
    Show {
        incident: String,
        #[arg(long)]
        json: bool,
    },
    /// Acknowledge: stops escalation.
    Ack {
        /// A service id (its open incident) or an incident id.
        incident: String,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Set the expected recovery: `4h`, `2h30m`, `14:00`, `tomorrow 09:00` (in the
    /// staff time zone), or an RFC 3339 time.
    Eta {
        incident: String,
        eta: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Post an update for customers: shown on the status page and in the feeds at once;
    /// with --notify, mailed to the customers told of the outage.
    Update {
        incident: String,
        /// investigating, identified, monitoring or resolved (resolved closes it).
        #[arg(long)]
        state: String,
        /// The text in the status page's language.
        #[arg(long)]
        text: String,
        /// The text in Polish.
        #[arg(long = "text-pl")]
        text_pl: Option<String>,
        /// The text in Swedish.
        #[arg(long = "text-sv")]
        text_sv: Option<String>,
        /// The text in another language: LANG=TEXT (repeatable).
        #[arg(long = "text-in", value_name = "LANG=TEXT")]
        text_in: Vec<String>,
        /// Mail it to the customers told of the outage (once they have been told).
        #[arg(long)]
        notify: bool,
        #[arg(long)]
        by: Option<String>,
    },
    /// Declare the incident over.
    Resolve {
        incident: String,
        #[arg(long)]
        by: Option<String>,
    },
}

/// Runs the command; Err is the message to print (exit 1).
pub async fn run(config: &Config, cmd: IncidentCmd) -> Result<String, String> {
    let api = super::Api::new(config)?;
    let base = format!("http://{}/api/v1/incidents", api.host);
    let by = |b: Option<String>| {
        b.or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".into())
    };
    match cmd {
        IncidentCmd::List { all, json: raw } => {
            let url = if all {
                base.clone()
            } else {
                format!("{base}?open=true")
            };
            let body = api.call(api.client.get(url)).await?;
            if raw {
                return Ok(json(&body));
            }
            let rows: Vec<Vec<String>> = body.as_array().into_iter().flatten().map(row).collect();
            Ok(if rows.is_empty() {
                if all {
                    "no incidents".into()
                } else {
                    "no open incidents".into()
                }
            } else {
                table(HEAD, &rows)
            })
        }
        IncidentCmd::Show {
            incident,
            json: raw,
        } => {
            let body = api
                .call(api.client.get(format!("{base}/{incident}")))
                .await?;
            Ok(if raw { json(&body) } else { describe(&body) })
        }
        IncidentCmd::Ack { incident, by: b } => {
            // Acknowledging twice changes nothing: say who did it first, and when.
            let now = api
                .call(api.client.get(format!("{base}/{incident}")))
                .await?;
            if let Some(first) = now["acknowledged_by"].as_str() {
                let when = now["timeline"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .find(|e| e["kind"] == "acknowledged")
                    .and_then(|e| e["at"].as_str())
                    .map(|t| format!(" at {t}"))
                    .unwrap_or_default();
                return Ok(format!(
                    "{} was already acknowledged by {first}{when}; nothing changed",
                    name(&now)
                ));
            }
            let who = by(b);
            let body = api
                .call(
                    api.client
                        .post(format!("{base}/{incident}/ack"))
                        .json(&serde_json::json!({ "by": who })),
                )
                .await?;
            Ok(format!(
                "{} acknowledged by {who}: escalation stops\n\n{}",
                name(&body),
                describe(&body)
            ))
        }
        IncidentCmd::Eta {
            incident,
            eta,
            by: b,
        } => {
            let body = api
                .call(
                    api.client
                        .post(format!("{base}/{incident}/eta"))
                        .json(&serde_json::json!({ "eta": eta, "by": by(b) })),
                )
                .await?;
            Ok(format!(
                "{}: recovery expected by {}\n\n{}",
                name(&body),
                body["eta"].as_str().unwrap_or("?"),
                describe(&body)
            ))
        }
        IncidentCmd::Update {
            incident,
            state,
            text,
            text_pl,
            text_sv,
            text_in,
            notify,
            by: b,
        } => {
            let mut texts = serde_json::Map::new();
            for (lang, t) in [("pl", text_pl), ("sv", text_sv)] {
                if let Some(t) = t {
                    texts.insert(lang.into(), Value::String(t));
                }
            }
            for pair in text_in {
                let Some((lang, t)) = pair.split_once('=') else {
                    return Err(format!(
                        "--text-in `{pair}`: write it as LANG=TEXT, e.g. --text-in de=\"Wir arbeiten daran\""
                    ));
                };
                texts.insert(lang.trim().into(), Value::String(t.into()));
            }
            let body = api
                .call(api.client.post(format!("{base}/{incident}/updates")).json(
                    &serde_json::json!({
                        "state": state, "text": text, "texts": texts, "notify": notify, "by": by(b)
                    }),
                ))
                .await?;
            let mailed = body["updates"]
                .as_array()
                .and_then(|u| u.last())
                .is_some_and(|u| u["notified"] == true);
            Ok(format!(
                "{}: update posted ({state}){}\n\n{}",
                name(&body),
                if mailed {
                    "; it is mailed to the customers told"
                } else if notify {
                    "; not mailed: customers have not been told of this outage"
                } else {
                    ""
                },
                describe(&body)
            ))
        }
        IncidentCmd::Resolve { incident, by: b } => {
            let body = api
                .call(
                    api.client
                        .post(format!("{base}/{incident}/resolve"))
                        .json(&serde_json::json!({ "by": by(b) })),
                )
                .await?;
            Ok(format!("{} resolved\n\n{}", name(&body), describe(&body)))
        }
    }
}

const HEAD: &[&str] = &[
    "ID", "SERVICE", "STATE", "PHASE", "SINCE", "ACKED BY", "ETA",
];

/// "incident 4 (shop)".
fn name(i: &Value) -> String {
    format!(
        "incident {} ({})",
        i["id"],
        i["service"].as_str().unwrap_or("?")
    )
}

fn row(i: &Value) -> Vec<String> {
    let s = |k: &str| i[k].as_str().unwrap_or("-").to_string();
    vec![
        i["id"].to_string(),
        s("service"),
        s("state"),
        s("phase"),
        s("started"),
        s("acknowledged_by"),
        s("eta"),
    ]
}

fn describe(i: &Value) -> String {
    let mut out = table(HEAD, &[row(i)]);
    let timeline: Vec<Vec<String>> = i["timeline"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            vec![
                e["at"].as_str().unwrap_or("").to_string(),
                e["kind"].as_str().unwrap_or("").replace('_', " "),
                e["detail"].as_str().unwrap_or("").to_string(),
            ]
        })
        .collect();
    if !timeline.is_empty() {
        out.push_str("\n\n");
        out.push_str(&table(&["AT", "WHAT", "DETAIL"], &timeline));
    }
    out
}
