//! `tocsin maintenance add|list|cancel`: the maintenance API from the shell.

use clap::Subcommand;
use serde_json::Value;

use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum MaintenanceCmd {
    /// Planned windows (from probes.yaml and added here), with the notices sent.
    List,
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
        MaintenanceCmd::List => {
            let v = api.call(api.client.get(&base)).await?;
            let rows = v.as_array().cloned().unwrap_or_default();
            if rows.is_empty() {
                return Ok("no maintenance planned".into());
            }
            let mut out = String::from(
                "ID     SERVICE        START                  END                    ANNOUNCE   NOTICES  NOTE\n",
            );
            for w in rows {
                out.push_str(&line(&w));
                out.push('\n');
            }
            Ok(out.trim_end().to_string())
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
            Ok(format!(
                "planned window {}: {}",
                v["id"],
                line(&v).trim_end()
            ))
        }
        MaintenanceCmd::Cancel { id } => {
            api.call(api.client.post(format!("{base}/{id}/cancel")))
                .await?;
            Ok(format!("cancelled window {id}"))
        }
    }
}

fn line(w: &Value) -> String {
    let s = |k: &str| w[k].as_str().unwrap_or("").to_string();
    let list = |k: &str| {
        w[k].as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|x| x.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            })
            .unwrap_or_default()
    };
    let id = match w["id"].as_i64() {
        Some(i) => i.to_string(),
        None => "file".into(),
    };
    format!(
        "{id:<6} {:<14} {:<22} {:<22} {:<10} {:<8} {}",
        s("service"),
        s("start"),
        s("end"),
        if list("announce_before").is_empty() {
            "-".into()
        } else {
            list("announce_before")
        },
        w["notices"].as_array().map(|a| a.len()).unwrap_or(0),
        s("note")
    )
}
