//! The mailbox autoresponder: while customers are being told of an outage, each
//! configured mailbox's active Sieve script is tocsin's vacation script (the outage,
//! slower replies, busy phone lines, the ETA); afterwards it is exactly the script that
//! was active before.
//!
//! Level-triggered like the pages: [`Autoresponder::reconcile`] compares the store's
//! open customer-phase incidents with what the store records as installed, and talks to
//! the ManageSieve server only to close the gap. The previously active script is recorded
//! before tocsin's is activated and forgotten only after it is active again, so a crash
//! at any step is finished by the next pass, and a restart after recovery removes the
//! autoresponder.

use crate::secret::Secret;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::dispatch::Backoff;
use super::sieve::{Endpoint, Session, SieveError, sieve_string};
use super::templates::{Templates, outages_context};
use crate::config::{self, Config};
use crate::store::IncidentRecord;

const PERIOD: Duration = Duration::from_secs(10);

/// The login used for every mailbox (read from the environment at start-up).
#[derive(Clone)]
pub struct Credentials {
    pub user: String,
    pub password: String,
}

impl Credentials {
    /// The login the config read; a missing one is an error now, not at the outage.
    pub fn of(a: &config::Autoresponder) -> Result<Credentials, String> {
        let get = |value: &Option<Secret>, k: &str, key: &str| {
            value
                .as_ref()
                .map(|s| s.expose().to_string())
                .ok_or_else(|| {
                    format!(
                        "autoresponder: set the environment variable {k} (named by autoresponder.{key})"
                    )
                })
        };
        Ok(Credentials {
            user: get(&a.user, &a.user_env, "user_env")?,
            password: get(&a.password, &a.password_env, "password_env")?,
        })
    }
}

/// The vacation script for `incidents`, and its hash (what the store compares).
pub fn script(
    templates: &Templates,
    config: &Config,
    a: &config::Autoresponder,
    incidents: &[IncidentRecord],
    include: Option<&str>,
    now: std::time::SystemTime,
) -> Result<(String, String), String> {
    let ctx = outages_context(config, incidents, &a.language, &a.timezone, now);
    let subject = templates.notice("autoreply.subject", &a.language, &ctx)?;
    let subject = subject.split_whitespace().collect::<Vec<_>>().join(" ");
    let body = templates.notice("autoreply.txt", &a.language, &ctx)?;
    // The handle changes with the text, so a sender who had the first reply gets the
    // new ETA too (RFC 5230 4.2).
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        format!("{subject}\n{body}").as_bytes(),
    );
    let handle: String = digest.as_ref()[..6]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let mut text = String::from(
        "# Installed by tocsin while customers are told of an outage; removed on recovery,\r\n\
         # when the previously active script is active again.\r\n",
    );
    let mut require = vec!["\"vacation\""];
    if include.is_some() {
        require.push("\"include\"");
    }
    text.push_str(&format!("require [{}];\r\n", require.join(", ")));
    text.push_str(&format!(
        "vacation :days {} :subject {} :handle \"tocsin-{handle}\"\r\n  {};\r\n",
        a.days,
        sieve_string(&subject),
        sieve_string(body.trim_end()),
    ));
    if let Some(prev) = include {
        // The mailbox's own rules keep working during the outage.
        text.push_str(&format!(
            "include :personal :optional {};\r\n",
            sieve_string(prev)
        ));
    }
    let hash = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
    let hash: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    Ok((text, hash))
}

#[derive(Clone)]
pub struct Autoresponder {
    pub follow: super::Follow,
    pub credentials: Option<Credentials>,
    pub tls: Arc<rustls::ClientConfig>,
    pub failures: Failures,
}

/// Per mailbox: failures in a row, when to try again, and the last error logged (so a
/// lasting failure is logged once, not every pass).
#[derive(Clone, Default)]
pub struct Failures {
    retry: BTreeMap<String, (u32, Instant)>,
    last_error: BTreeMap<String, String>,
}

impl Autoresponder {
    /// Reconciles until `cancel`, after each decision and every 10 s.
    pub async fn run(mut self, cancel: CancellationToken) {
        self.preflight().await;
        loop {
            self.reconcile().await;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.follow.changes.changed() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    fn endpoint(&self, a: &config::Autoresponder) -> Endpoint {
        Endpoint {
            host: a.host.clone(),
            port: a.port,
            allow_plain: a.allow_plain,
            tls: self.tls.clone(),
            timeout: a.timeout,
        }
    }

    /// Logs in to every mailbox once at start-up, so that wrong credentials or a server
    /// without vacation are known before the outage that needs them.
    pub async fn preflight(&mut self) {
        let config = self.follow.config.get();
        let (Some(a), Some(c)) = (&config.autoresponder, &self.credentials) else {
            return;
        };
        let ep = self.endpoint(a);
        for mailbox in &a.mailboxes {
            match Session::open(&ep, mailbox, &c.user, &c.password).await {
                Ok(s) => {
                    tracing::info!(mailbox = %shown(mailbox, c), server = %s.capabilities.implementation, "autoresponder: ManageSieve login works");
                    s.logout().await;
                }
                Err(e) => {
                    self.follow.metrics.autoresponder_failed();
                    tracing::error!(mailbox = %shown(mailbox, c), error = %e, "autoresponder: ManageSieve login failed; the autoresponder cannot be switched on until this is fixed");
                }
            }
        }
    }

    /// One pass over every mailbox.
    pub async fn reconcile(&mut self) {
        let config = self.follow.config.get();
        let now = self.follow.clock.now();
        let (open, records) = {
            let st = self.follow.store.lock();
            match (st.customer_phase_open(), st.autoresponders()) {
                (Ok(o), Ok(r)) => (o, r),
                (Err(e), _) | (_, Err(e)) => {
                    tracing::error!(error = %e, "autoresponder: cannot read the store");
                    return;
                }
            }
        };
        let installed = records.iter().filter(|r| r.script_hash.is_some()).count();
        self.follow.metrics.autoresponder_active(installed);
        let Some(a) = config.autoresponder.clone() else {
            if !records.is_empty() {
                tracing::error!(
                    mailboxes = records.len(),
                    "autoresponder: scripts are installed but the configuration no longer has `autoresponder:`; restore it so they can be removed"
                );
            }
            return;
        };
        let Some(c) = self.credentials.clone() else {
            return;
        };
        // Mailboxes to look at: configured ones, and any tocsin touched before a reload
        // dropped them from the list (they are only ever cleaned up).
        let mut mailboxes: Vec<(String, bool)> =
            a.mailboxes.iter().map(|m| (m.clone(), true)).collect();
        for r in &records {
            if !a.mailboxes.contains(&r.mailbox) {
                mailboxes.push((r.mailbox.clone(), false));
            }
        }
        for (mailbox, configured) in mailboxes {
            if self
                .failures
                .retry
                .get(&mailbox)
                .is_some_and(|(_, at)| Instant::now() < *at)
            {
                continue;
            }
            let record = records.iter().find(|r| r.mailbox == mailbox).cloned();
            let want_on = configured && !open.is_empty();
            let result = if want_on {
                self.install(&config, &a, &c, &mailbox, record.as_ref(), &open, now)
                    .await
            } else if record.is_some() {
                self.remove(&a, &c, &mailbox, record.as_ref()).await
            } else {
                Ok(false)
            };
            match result {
                Ok(changed) => {
                    self.failures.retry.remove(&mailbox);
                    self.failures.last_error.remove(&mailbox);
                    if changed {
                        let n = self
                            .follow
                            .store
                            .lock()
                            .autoresponders()
                            .map(|r| r.iter().filter(|r| r.script_hash.is_some()).count())
                            .unwrap_or(0);
                        self.follow.metrics.autoresponder_active(n);
                    }
                }
                Err(e) => self.failed(&mailbox, &c, e, want_on),
            }
        }
    }

    fn failed(&mut self, mailbox: &str, c: &Credentials, e: SieveError, switching_on: bool) {
        self.follow.metrics.autoresponder_failed();
        let attempts = self.failures.retry.get(mailbox).map(|r| r.0).unwrap_or(0);
        let wait = if e.is_transient() {
            Backoff::MAILBOX.after(attempts)
        } else {
            Backoff::MAIL.after(attempts)
        };
        self.failures
            .retry
            .insert(mailbox.to_string(), (attempts + 1, Instant::now() + wait));
        let text = e.to_string();
        if self.failures.last_error.get(mailbox) != Some(&text) {
            let what = if switching_on { "switch on" } else { "remove" };
            tracing::error!(mailbox = %shown(mailbox, c), error = %text, retry_in = ?wait, "autoresponder: cannot {what} the outage autoresponder");
            let event = crate::incident::TimelineEvent::AutoresponderFailed {
                mailbox: shown(mailbox, c).to_string(),
                error: text.clone(),
            };
            if let Err(e) = self
                .follow
                .store
                .lock()
                .note_customer_phase(&event, self.follow.clock.now())
            {
                tracing::error!(error = %e, "autoresponder: cannot record the failure");
            }
            self.failures.last_error.insert(mailbox.to_string(), text);
        }
    }

    /// Makes tocsin's current script the active one; `Ok(true)` when something changed.
    #[allow(clippy::too_many_arguments)]
    async fn install(
        &self,
        config: &Config,
        a: &config::Autoresponder,
        c: &Credentials,
        mailbox: &str,
        record: Option<&crate::store::AutoresponderRecord>,
        open: &[IncidentRecord],
        now: std::time::SystemTime,
    ) -> Result<bool, SieveError> {
        // The script depends on the previous one (included), known once recorded.
        let previous = record.and_then(|r| r.previous.clone());
        if let Some(r) = record {
            // Installed with the previous script included, or without (a server lacking
            // `include`): either is current.
            for include in [previous.as_deref(), None] {
                let (_, hash) = script(&self.follow.templates, config, a, open, include, now)
                    .map_err(SieveError::Rejected)?;
                if r.script_hash.as_deref() == Some(hash.as_str()) {
                    return Ok(false);
                }
            }
        }
        let mut s = Session::open(&self.endpoint(a), mailbox, &c.user, &c.password).await?;
        let previous = match record {
            Some(r) => r.previous.clone(),
            None => {
                let active = s.active().await?;
                // tocsin's own script active without a record cannot be the previous one.
                let previous = active.filter(|n| *n != a.script);
                self.follow
                    .store
                    .lock()
                    .autoresponder_previous(mailbox, previous.as_deref(), now)
                    .map_err(|e| {
                        SieveError::Protocol(format!("cannot record the previous script: {e}"))
                    })?;
                previous
            }
        };
        let include = previous
            .as_deref()
            .filter(|_| s.capabilities.sieve.iter().any(|e| e == "include"));
        let (text, hash) = script(&self.follow.templates, config, a, open, include, now)
            .map_err(SieveError::Rejected)?;
        s.check(&text).await?;
        s.put(&a.script, &text).await?;
        s.set_active(Some(&a.script)).await?;
        self.follow
            .store
            .lock()
            .autoresponder_installed(mailbox, &hash, now)
            .map_err(|e| {
                SieveError::Protocol(format!("cannot record the installed script: {e}"))
            })?;
        s.logout().await;
        tracing::info!(mailbox = %shown(mailbox, c), previous = previous.as_deref().unwrap_or("(none)"), "autoresponder on");
        Ok(true)
    }

    /// Restores the previously active script and deletes tocsin's.
    async fn remove(
        &self,
        a: &config::Autoresponder,
        c: &Credentials,
        mailbox: &str,
        record: Option<&crate::store::AutoresponderRecord>,
    ) -> Result<bool, SieveError> {
        let Some(r) = record else {
            return Ok(false);
        };
        let mut s = Session::open(&self.endpoint(a), mailbox, &c.user, &c.password).await?;
        let scripts = s.list().await?;
        let ours_active = scripts.iter().any(|x| x.active && x.name == a.script);
        if ours_active {
            s.set_active(r.previous.as_deref()).await?;
        }
        // Someone who activated another script during the outage keeps their choice.
        if scripts.iter().any(|x| x.name == a.script) {
            s.delete(&a.script).await?;
        }
        self.follow
            .store
            .lock()
            .autoresponder_removed(mailbox)
            .map_err(|e| SieveError::Protocol(format!("cannot record the removal: {e}")))?;
        s.logout().await;
        tracing::info!(mailbox = %shown(mailbox, c), restored = r.previous.as_deref().unwrap_or("(none)"), "autoresponder off");
        Ok(true)
    }
}

/// The mailbox as logs show it: the login's own when none is named.
fn shown<'a>(mailbox: &'a str, c: &'a Credentials) -> &'a str {
    if mailbox.is_empty() { &c.user } else { mailbox }
}

/// A TLS client configuration for the ManageSieve server: the public roots, or the
/// `ca_file`'s certificates alone.
pub fn tls_config(a: Option<&config::Autoresponder>) -> Result<Arc<rustls::ClientConfig>, String> {
    let mut roots = rustls::RootCertStore::empty();
    match a.and_then(|a| a.ca_pem.as_ref()) {
        Some(pem) => {
            for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
                let cert = cert.map_err(|e| format!("autoresponder ca_file: {e}"))?;
                roots
                    .add(cert)
                    .map_err(|e| format!("autoresponder ca_file: {e}"))?;
            }
        }
        None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
    }
    Ok(Arc::new(
        rustls::ClientConfig::builder_with_provider(crate::probe::tls::provider())
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth(),
    ))
}
