//! Commands that talk to a running tocsin rather than being one.

pub mod campaign;
pub mod health;
pub mod heartbeat;
pub mod incident;
pub mod maintenance;
pub mod oncall;
pub mod store;

use std::time::Duration;

use serde_json::Value;

use crate::config::Config;

/// The API of the tocsin instance named by the config's `listen`, with the token from
/// the variable the config names.
pub struct Api {
    pub client: reqwest::Client,
    pub host: String,
    token: String,
}

impl Api {
    pub fn new(config: &Config) -> Result<Api, String> {
        let token = config
            .api_token
            .as_ref()
            .map(|t| t.expose().to_string())
            .filter(|t| !t.trim().is_empty())
            .ok_or_else(|| {
                format!(
                    "set {} to the API token of the running tocsin",
                    config.api_token_env
                )
            })?;
        let host = local_host(config);
        let client = client()?;
        Ok(Api {
            client,
            host,
            token,
        })
    }

    /// Sends `req` with the token; the JSON body, or the refusal as a message.
    pub async fn call(&self, req: reqwest::RequestBuilder) -> Result<Value, String> {
        let resp = req.bearer_auth(&self.token).send().await.map_err(|e| {
            format!(
                "cannot reach tocsin at http://{}: {} (is `tocsin run` running with this config?)",
                self.host,
                root_cause(&e)
            )
        })?;
        let status = resp.status();
        let body: Value = resp.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let msg = body["error"].as_str().unwrap_or("no reason given");
            return Err(format!("{msg} (HTTP {})", status.as_u16()));
        }
        Ok(body)
    }
}

/// Columns aligned to their widest cell (in characters, so `ż` is one), two spaces
/// apart, the header in capitals; no trailing spaces.
pub fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let width = |i: usize| {
        rows.iter()
            .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
            .chain([head[i].chars().count()])
            .max()
            .unwrap_or(0)
    };
    let widths: Vec<usize> = (0..head.len()).map(width).collect();
    let line = |cells: Vec<&str>| {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 < cells.len() {
                l.push_str(&format!("{c:<w$}  ", w = widths[i]));
            } else {
                l.push_str(c);
            }
        }
        l.trim_end().to_string()
    };
    let mut out = vec![line(head.to_vec())];
    out.extend(
        rows.iter()
            .map(|r| line(r.iter().map(String::as_str).collect())),
    );
    out.join("\n")
}

/// JSON as scripts read it: pretty, as the API gave it.
pub fn json(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

/// Where a command on this machine reaches the instance: `listen`, with a wildcard
/// address replaced by loopback.
pub fn local_host(config: &Config) -> String {
    if config.listen.ip().is_unspecified() {
        format!("127.0.0.1:{}", config.listen.port())
    } else {
        config.listen.to_string()
    }
}

/// A client for tocsin's own plain-HTTP endpoints: no proxy (a proxy from the
/// environment would turn a local question into a remote one), no public roots.
fn client() -> Result<reqwest::Client, String> {
    let tls = rustls::ClientConfig::builder_with_provider(crate::probe::tls::provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(rustls::RootCertStore::empty())
        .with_no_client_auth();
    reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .no_proxy()
        .timeout(Duration::from_secs(15))
        .build()
        .map_err(|e| e.to_string())
}

fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}
