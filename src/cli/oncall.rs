//! `tocsin oncall who|override|cancel`: the on-call API from the shell.

use clap::Subcommand;
use serde_json::Value;

use super::{json, table};
use crate::config::Config;

#[derive(Subcommand, Debug)]
pub enum OncallCmd {
    /// Who is on call in each rotation now and next, and the overrides ahead.
    Who {
        /// The API's JSON, for scripts.
        #[arg(long)]
        json: bool,
    },
    /// Someone else takes a rotation's turns for a while.
    Override {
        #[arg(long)]
        rotation: String,
        /// A member (`anna`, or the full address) or another address.
        #[arg(long)]
        who: String,
        /// RFC 3339 (e.g. 2026-12-24T18:00:00+01:00); now when left out.
        #[arg(long)]
        from: Option<String>,
        /// RFC 3339, or a duration from --from (e.g. 12h, 3d).
        #[arg(long)]
        until: String,
        #[arg(long)]
        by: Option<String>,
    },
    /// Cancel an override (by its id).
    Cancel { id: String },
}

/// Runs the command; Err is the message to print (exit 1).
pub async fn run(config: &Config, cmd: OncallCmd) -> Result<String, String> {
    let api = super::Api::new(config)?;
    let base = format!("http://{}/api/v1/oncall", api.host);
    match cmd {
        OncallCmd::Who { json: raw } => {
            let v = api.call(api.client.get(&base)).await?;
            if raw {
                return Ok(json(&v));
            }
            let rotations = v.as_array().cloned().unwrap_or_default();
            if rotations.is_empty() {
                return Ok("no rotations: define them under `rotations:` in probes.yaml".into());
            }
            let rows: Vec<Vec<String>> = rotations.iter().map(row).collect();
            let mut out = table(
                &["ROTATION", "ON CALL", "UNTIL", "WHY", "NEXT", "FROM"],
                &rows,
            );
            let overrides: Vec<Vec<String>> = rotations
                .iter()
                .flat_map(|r| r["overrides"].as_array().cloned().unwrap_or_default())
                .map(|o| {
                    let s = |k: &str| o[k].as_str().unwrap_or("").to_string();
                    vec![
                        o["id"].to_string(),
                        s("rotation"),
                        s("who"),
                        s("from"),
                        s("until"),
                        s("by"),
                    ]
                })
                .collect();
            if !overrides.is_empty() {
                out.push_str("\n\nOverrides:\n");
                out.push_str(&table(
                    &["ID", "ROTATION", "WHO", "FROM", "UNTIL", "BY"],
                    &overrides,
                ));
            }
            Ok(out)
        }
        OncallCmd::Override {
            rotation,
            who,
            from,
            until,
            by,
        } => {
            let by = by
                .or_else(|| std::env::var("USER").ok())
                .unwrap_or_else(|| "cli".into());
            let body = serde_json::json!({
                "rotation": rotation, "who": who, "from": from, "until": until, "by": by,
            });
            let v = api
                .call(api.client.post(format!("{base}/overrides")).json(&body))
                .await?;
            let s = |k: &str| v[k].as_str().unwrap_or("?").to_string();
            Ok(format!(
                "override {}: {} takes rotation {} from {} until {}",
                v["id"],
                s("who"),
                s("rotation"),
                s("from"),
                s("until")
            ))
        }
        OncallCmd::Cancel { id } => {
            api.call(api.client.post(format!("{base}/overrides/{id}/cancel")))
                .await?;
            Ok(format!("cancelled override {id}"))
        }
    }
}

fn row(r: &Value) -> Vec<String> {
    let s = |v: &Value, k: &str| v[k].as_str().unwrap_or("").to_string();
    let why = |v: &Value| match v["why"].as_str() {
        Some("override") => format!(
            "override {} by {}",
            v["override_id"],
            v["by"].as_str().unwrap_or("?")
        ),
        _ => match v["turn"].as_array() {
            Some(t) if t.len() == 2 => format!("turn {} of {}", t[0], t[1]),
            _ => "turn".into(),
        },
    };
    let now = &r["now"];
    let next = &r["next"];
    vec![
        s(r, "rotation"),
        s(now, "who"),
        s(now, "until"),
        why(now),
        s(next, "who"),
        s(next, "from"),
    ]
}
