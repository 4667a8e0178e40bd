//! `tocsin incident list|show|ack|eta|resolve`: the incident API from the shell, against
//! the instance named by the config's `listen`, with the token from the variable the
//! config names.

use std::time::Duration;

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
    let token = std::env::var(&config.api_token_env)
        .ok()
        .filter(|t| !t.trim().is_empty())
        .ok_or_else(|| {
            format!(
                "set {} to the API token of the running tocsin",
                config.api_token_env
            )
        })?;
    let host = if config.listen.ip().is_unspecified() {
        format!("127.0.0.1:{}", config.listen.port())
    } else {
        config.listen.to_string()
    };
    let base = format!("http://{host}/api/v1/incidents");
    let tls = rustls::ClientConfig::builder_with_provider(crate::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())?;
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
    let resp = req.bearer_auth(token).send().await.map_err(|e| {
        format!(
            "cannot reach tocsin at http://{host}: {} (is `tocsin run` running with this config?)",
            root_cause(&e)
        )
    })?;
    let status = resp.status();
    let body: Value = resp.json().await.unwrap_or(Value::Null);
    if !status.is_success() {
        let msg = body["error"].as_str().unwrap_or("no reason given");
        return Err(format!("tocsin refused ({}): {msg}", status.as_u16()));
    }
    Ok(if single {
        describe(&body)
    } else {
        body.as_array()
            .map(|a| a.iter().map(line).collect::<Vec<_>>().join("\n"))
            .unwrap_or_default()
    })
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
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
