//! `tocsin heartbeat list`: each heartbeat with its ping URL (the token is its secret),
//! its state and when the next ping is due.

use clap::Subcommand;
use serde_json::Value;

use super::{json, table};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum HeartbeatCmd {
    /// Every heartbeat: state, last ping, next deadline, and the URL its job pings.
    List {
        /// The API's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
}

/// Runs the command; Err is the message to print (exit 1).
pub async fn run(config: &Config, cmd: HeartbeatCmd) -> Result<String, String> {
    let api = super::Api::new(config)?;
    match cmd {
        HeartbeatCmd::List { json: raw } => {
            let v = api
                .call(
                    api.client
                        .get(format!("http://{}/api/v1/heartbeats", api.host)),
                )
                .await?;
            if raw {
                return Ok(json(&v));
            }
            let all: Vec<Value> = v.as_array().cloned().unwrap_or_default();
            if all.is_empty() {
                return Ok("no heartbeats configured".into());
            }
            let rows: Vec<Vec<String>> = all.iter().map(row).collect();
            let mut out = table(
                &["HEARTBEAT", "STATUS", "LAST PING", "DUE BY", "URL"],
                &rows,
            );
            for h in &all {
                if let Some(r) = h["reason"].as_str() {
                    out.push_str(&format!(
                        "\n{}/{}: {r}",
                        h["service"].as_str().unwrap_or(""),
                        h["probe"].as_str().unwrap_or("")
                    ));
                }
            }
            Ok(out)
        }
    }
}

fn row(h: &Value) -> Vec<String> {
    let s = |k: &str| h[k].as_str().unwrap_or("-").to_string();
    let last = match (h["last_ping"].as_str(), h["last_signal"].as_str()) {
        (Some(t), Some(sig)) => format!("{t} {sig}"),
        _ => "never".into(),
    };
    vec![
        format!("{}/{}", s("service"), s("probe")),
        s("status"),
        last,
        s("due"),
        s("url"),
    ]
}
