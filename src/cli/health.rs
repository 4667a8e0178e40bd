//! `tocsin health`: asks the running instance's `/healthz`, for container health checks
//! and scripts. A runtime image has no curl; the binary itself is the checker.

use std::time::Duration;

use crate::config::Config;

/// Asks `/healthz` within `timeout`: `Ok` with the answer while the instance serves.
pub async fn run(config: &Config, timeout: Duration) -> Result<String, String> {
    let host = super::local_host(config);
    let url = format!("http://{host}/healthz");
    let resp = tokio::time::timeout(timeout, async {
        super::client()?
            .get(&url)
            .send()
            .await
            .map_err(|e| format!("cannot reach tocsin at {url}: {}", super::root_cause(&e)))
    })
    .await
    .map_err(|_| format!("no answer from {url} within {timeout:?}"))??;
    let status = resp.status();
    let body = resp.text().await.unwrap_or_default();
    if status.is_success() {
        Ok(format!("{url}: {}", body.trim()))
    } else {
        Err(format!(
            "{url} answered {}: {}",
            status.as_u16(),
            body.trim()
        ))
    }
}
