//! `tocsin incident list|show|ack|eta|resolve`: the incident API from the shell, against
//! the instance named by the config's `listen`, with the token from the variable the
//! config names.

use clap::Subcommand;
use serde_json::Value;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum IncidentCmd {
    /// Open incidents (all with --all).
    List {
        #[arg(long)]
        all: bool,
    },
    /// One incident with its timeline.
    Show { incident: String },
    /// Acknowledge: stops escalation.
    Ack {
        /// A service id (its open incident) or an incident id.
        incident: String,
        /// Who acknowledges (default: $USER).
        #[arg(long)]
        by: Option<String>,
    },
    /// Set the expected recovery: a duration from now (4h) or an RFC 3339 time.
    Eta {
        incident: String,
        eta: String,
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
    let (client, host) = (&api.client, &api.host);
    let base = format!("http://{host}/api/v1/incidents");
    let by = |b: Option<String>| {
        b.or_else(|| std::env::var("USER").ok())
            .unwrap_or_else(|| "cli".into())
    };
    let (req, single) = match cmd {
        IncidentCmd::List { all } => (
            client.get(if all {
                base.clone()
            } else {
                format!("{base}?open=true")
            }),
            false,
        ),
        IncidentCmd::Show { incident } => (client.get(format!("{base}/{incident}")), true),
        IncidentCmd::Ack { incident, by: b } => (
            client
                .post(format!("{base}/{incident}/ack"))
                .json(&serde_json::json!({ "by": by(b) })),
            true,
        ),
        IncidentCmd::Eta {
            incident,
            eta,
            by: b,
        } => (
            client
                .post(format!("{base}/{incident}/eta"))
                .json(&serde_json::json!({ "eta": eta, "by": by(b) })),
            true,
        ),
        IncidentCmd::Resolve { incident, by: b } => (
            client
                .post(format!("{base}/{incident}/resolve"))
                .json(&serde_json::json!({ "by": by(b) })),
            true,
        ),
    };
    let body = api.call(req).await?;
    Ok(if single {
        describe(&body)
    } else {
        body.as_array()
            .map(|a| a.iter().map(line).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    })
}

fn line(i: &Value) -> String {
    format!(
        "{:>4}  {:<16} {:<11} {:<8} since {}{}{}",
        i["id"],
        i["service"].as_str().unwrap_or(""),
        i["state"].as_str().unwrap_or(""),
        i["phase"].as_str().unwrap_or(""),
        i["started"].as_str().unwrap_or(""),
        i["acknowledged_by"]
            .as_str()
            .map(|b| format!(", acked by {b}"))
            .unwrap_or_default(),
        i["eta"]
            .as_str()
            .map(|e| format!(", ETA {e}"))
            .unwrap_or_default(),
    )
}

fn describe(i: &Value) -> String {
    let mut out = line(i);
    for e in i["timeline"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "\n      {}  {}: {}",
            e["at"].as_str().unwrap_or(""),
            e["kind"].as_str().unwrap_or(""),
            e["detail"].as_str().unwrap_or("")
        ));
    }
    out
}
