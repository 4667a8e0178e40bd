//! `tocsin campaign list|status|preview`: campaign progress and message previews from the
//! running tocsin. `status` on a terminal follows the campaign with a progress bar until
//! nothing is pending. Listings are aligned tables, or the API's JSON with `--json`.

use std::io::IsTerminal;
use std::time::Duration;

use clap::Subcommand;
use serde_json::Value;

use super::{json, table};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum CampaignCmd {
    /// Every campaign, newest first, with its progress.
    List {
        /// Only those of this incident id.
        #[arg(long)]
        incident: Option<i64>,
        /// The API's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// One campaign: sent, pending, failed, rate and time to finish (the newest when no
    /// id is given). On a terminal, follows it with a progress bar until it is done.
    Status {
        id: Option<i64>,
        /// Print once and return, even on a terminal.
        #[arg(long)]
        once: bool,
        /// The API's JSON, for scripts (implies --once).
        #[arg(long)]
        json: bool,
    },
    /// The exact message one recipient would get.
    Preview {
        /// The recipient's address (must be in the service's audience).
        #[arg(long)]
        to: String,
        /// The service (its open incident, or a hypothetical outage starting now).
        #[arg(long, required_unless_present = "incident")]
        service: Option<String>,
        /// An incident id instead of a service.
        #[arg(long)]
        incident: Option<i64>,
        /// outage, update or recovery.
        #[arg(long, default_value = "outage")]
        kind: String,
        /// Print the whole RFC 5322 message, headers and both parts.
        #[arg(long)]
        raw: bool,
    },
}

pub async fn run(config: &Config, cmd: CampaignCmd) -> Result<String, String> {
    let api = super::Api::new(config)?;
    let base = format!("http://{}/api/v1/campaigns", api.host);
    match cmd {
        CampaignCmd::List {
            incident,
            json: raw,
        } => {
            let url = match incident {
                Some(i) => format!("{base}?incident={i}"),
                None => base,
            };
            let body = api.call(api.client.get(url)).await?;
            if raw {
                return Ok(json(&body));
            }
            let rows: Vec<Vec<String>> = body.as_array().into_iter().flatten().map(row).collect();
            Ok(if rows.is_empty() {
                "no campaigns".into()
            } else {
                table(HEAD, &rows)
            })
        }
        CampaignCmd::Status {
            id,
            once,
            json: raw,
        } => {
            let id = match id {
                Some(i) => i,
                None => api
                    .call(api.client.get(&base))
                    .await?
                    .as_array()
                    .and_then(|a| a.first())
                    .and_then(|c| c["id"].as_i64())
                    .ok_or("no campaigns yet")?,
            };
            let url = format!("{base}/{id}");
            let body = api.call(api.client.get(&url)).await?;
            if raw {
                return Ok(json(&body));
            }
            if once || !std::io::stdout().is_terminal() || pending(&body) == 0 {
                return Ok(detail(&body));
            }
            follow(&api, &url, body).await
        }
        CampaignCmd::Preview {
            to,
            service,
            incident,
            kind,
            raw,
        } => {
            let body = api
                .call(
                    api.client
                        .post(format!("{base}/preview"))
                        .json(&serde_json::json!({
                            "to": to, "service": service, "incident": incident, "kind": kind,
                        })),
                )
                .await?;
            Ok(if raw {
                body["message"].as_str().unwrap_or_default().to_string()
            } else {
                format!(
                    "To: {}\nSubject: {}\n\n{}",
                    body["to"][0].as_str().unwrap_or_default(),
                    body["subject"].as_str().unwrap_or_default(),
                    body["text"].as_str().unwrap_or_default()
                )
            })
        }
    }
}

fn n(v: &Value, k: &str) -> u64 {
    v["counts"][k].as_u64().unwrap_or(0)
}

fn pending(c: &Value) -> u64 {
    n(c, "pending")
}

/// Messages per second over the last minute, and the time to send what is pending.
fn rate_and_eta(c: &Value) -> (f64, Option<Duration>) {
    let rate = c["sent_last_minute"].as_u64().unwrap_or(0) as f64 / 60.0;
    let eta = (rate > 0.0).then(|| Duration::from_secs_f64(pending(c) as f64 / rate));
    (rate, eta)
}

const HEAD: &[&str] = &[
    "ID",
    "KIND",
    "SERVICE",
    "INCIDENT",
    "SENT",
    "PENDING",
    "FAILED",
    "OPTED OUT",
    "PROGRESS",
];

fn row(c: &Value) -> Vec<String> {
    vec![
        c["id"].to_string(),
        c["kind"].as_str().unwrap_or("").replace('_', " "),
        c["service"].as_str().unwrap_or("").to_string(),
        c["incident"]
            .as_i64()
            .filter(|i| *i > 0)
            .map_or("-".into(), |i| i.to_string()),
        n(c, "sent").to_string(),
        n(c, "pending").to_string(),
        n(c, "failed").to_string(),
        c["opted_out"].as_u64().unwrap_or(0).to_string(),
        progress(c),
    ]
}

/// "done", or the rate over the last minute and the time left at it.
fn progress(c: &Value) -> String {
    if c["expanding"].as_bool() == Some(true) {
        return format!(
            "reading the audience ({} so far); nothing is sent before it is read whole",
            n(c, "pending")
        );
    }
    if pending(c) == 0 {
        return "done".into();
    }
    match rate_and_eta(c) {
        (rate, Some(left)) => format!(
            "{}, about {} left",
            if rate >= 1.0 {
                format!("{rate:.0}/s")
            } else {
                format!("{:.0}/min", rate * 60.0)
            },
            humantime::format_duration(Duration::from_secs(left.as_secs().max(1)))
        ),
        _ => "waiting (nothing accepted in the last minute)".into(),
    }
}

fn detail(c: &Value) -> String {
    let mut out = table(HEAD, &[row(c)]);
    let (opted, invalid) = (
        c["opted_out"].as_u64().unwrap_or(0),
        c["invalid"].as_u64().unwrap_or(0),
    );
    if opted + invalid > 0 {
        out.push_str(&format!(
            "\nleft out: {} opted out, {}",
            opted,
            crate::text::count(invalid, "invalid row")
        ));
    }
    if let Some(note) = c["note"].as_str().filter(|s| !s.is_empty()) {
        for l in note.lines() {
            out.push_str(&format!("\n{l}"));
        }
    }
    for f in c["failures"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\nfailed {}: {}",
            f["email"].as_str().unwrap_or(""),
            f["error"].as_str().unwrap_or("")
        ));
    }
    let without: Vec<&str> = c["without_code"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e.as_str())
        .collect();
    if !without.is_empty() {
        out.push_str(&format!(
            "\nno compensation code (the pool ran out; send these by hand): {}",
            without.join(", ")
        ));
    }
    out
}

async fn follow(api: &super::Api, url: &str, mut body: Value) -> Result<String, String> {
    let total = body["counts"]
        .as_object()
        .map(|m| m.values().filter_map(|v| v.as_u64()).sum())
        .unwrap_or(0);
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} done  {msg}")
            .map_err(|e| e.to_string())?,
    );
    loop {
        let done = total - pending(&body);
        let (rate, eta) = rate_and_eta(&body);
        bar.set_position(done);
        bar.set_message(format!(
            "{} failed, {rate:.1}/s{}",
            n(&body, "failed"),
            eta.map(|d| format!(", ~{}s left", d.as_secs()))
                .unwrap_or_default()
        ));
        if pending(&body) == 0 {
            bar.finish();
            return Ok(detail(&body));
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
        body = api.call(api.client.get(url)).await?;
    }
}
