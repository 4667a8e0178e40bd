//! `tocsin maintenance add|list|cancel`: the maintenance API from the shell.

use clap::Subcommand;
use serde_json::Value;

use super::{json, table};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum MaintenanceCmd {
    /// Planned windows (from probes.yaml and added here), with the notices sent.
    List {
        /// The API's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Plan a window: no incident opens inside it, customers are told in advance.
    Add {
        #[arg(long)]
        service: String,
        /// RFC 3339, e.g. 2026-12-01T22:00:00Z.
        #[arg(long)]
        start: String,
        /// e.g. 2h.
        #[arg(long)]
        duration: String,
        /// When to tell customers before the start, e.g. 48h,1h.
        #[arg(long, value_delimiter = ',')]
        announce: Vec<String>,
        /// What is done (one line, for the list and the status page).
        #[arg(long, default_value = "")]
        note: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Cancel a window added through the API or this command (by its id).
    Cancel { id: String },
}

/// Runs the command; Err is the message to print (exit 1).
pub async fn run(config: &Config, cmd: MaintenanceCmd) -> Result<String, String> {
    let api = super::Api::new(config)?;
    let base = format!("http://{}/api/v1/maintenance", api.host);
    match cmd {
        MaintenanceCmd::List { json: raw } => {
            let v = api.call(api.client.get(&base)).await?;
            if raw {
                return Ok(json(&v));
            }
            let rows: Vec<Vec<String>> = v.as_array().into_iter().flatten().map(row).collect();
            if rows.is_empty() {
                return Ok("no maintenance planned".into());
            }
            Ok(table(
                &[
                    "ID", "SERVICE", "START", "END", "ANNOUNCE", "NOTICES", "NOTE",
                ],
                &rows,
            ))
        }
        MaintenanceCmd::Add {
            service,
            start,
            duration,
            announce,
            note,
            by,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".into());
            let body = serde_json::json!({
                "service": service, "start": start, "duration": duration,
                "announce_before": announce, "note": note, "by": by,
            });
            let v = api.call(api.client.post(&base).json(&body)).await?;
            let announce = row(&v)[4].clone();
            Ok(format!(
                "planned maintenance window {} of {}: {} to {}; {}",
                v["id"],
                v["service"].as_str().unwrap_or("?"),
                v["start"].as_str().unwrap_or("?"),
                v["end"].as_str().unwrap_or("?"),
                if announce == "-" {
                    "customers are not told in advance".to_string()
                } else {
                    format!("customers are told {announce} before")
                }
            ))
        }
        MaintenanceCmd::Cancel { id } => {
            api.call(api.client.post(format!("{base}/{id}/cancel")))
                .await?;
            Ok(format!("cancelled maintenance window {id}"))
        }
    }
}

fn row(w: &Value) -> Vec<String> {
    let s = |k: &str| w[k].as_str().unwrap_or("").to_string();
    let announce = w["announce_before"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|x| x.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        })
        .filter(|a| !a.is_empty())
        .unwrap_or_else(|| "-".into());
    let id = match w["id"].as_i64() {
        Some(i) => i.to_string(),
        None => "file".into(),
    };
    vec![
        id,
        s("service"),
        s("start"),
        s("end"),
        announce,
        w["notices"]
            .as_array()
            .map(|a| a.len())
            .unwrap_or(0)
            .to_string(),
        s("note"),
    ]
}
