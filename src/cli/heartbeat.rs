//! `tocsin heartbeat list`: each heartbeat with its ping URL (the token is its secret),
//! its state and when the next ping is due.

use clap::Subcommand;
use serde_json::Value;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum HeartbeatCmd {
    /// Every heartbeat: state, last ping, next deadline, and the URL its job pings.
    List,
}

/// Runs the command; Err is the message to print (exit 1).
pub async fn run(config: &Config, cmd: HeartbeatCmd) -> Result<String, String> {
    let api = super::Api::new(config)?;
    match cmd {
        HeartbeatCmd::List => {
            let v = api
                .call(
                    api.client
                        .get(format!("http://{}/api/v1/heartbeats", api.host)),
                )
                .await?;
            let rows = v.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                return Ok("no heartbeats configured".into());
            }
            let mut out = String::from(
                "HEARTBEAT             STATUS   LAST PING                 DUE BY                URL\n",
            );
            for h in rows {
                out.push_str(&line(&h));
                out.push('\n');
            }
            Ok(out.trim_end().to_string())
        }
    }
}

fn line(h: &Value) -> String {
    let s = |k: &str| h[k].as_str().unwrap_or("-").to_string();
    let last = match (h["last_ping"].as_str(), h["last_signal"].as_str()) {
        (Some(t), Some(sig)) => format!("{t} {sig}"),
        _ => "never".into(),
    };
    let mut l = format!(
        "{:<21} {:<8} {:<25} {:<21} {}",
        format!("{}/{}", s("service"), s("probe")),
        s("status"),
        last,
        s("due"),
        s("url")
    );
    if let Some(r) = h["reason"].as_str() {
        l.push_str(&format!("\n    {r}"));
    }
    l
}
