//! The hotline announcement: while customers are being told of an outage,
//! `<hotline.dir>/<lang>.txt` holds what the phone line should say (the outage, the ETA or
//! next update, where to read more), replaced on every change and removed on recovery.
//! An optional hook command gets the announcement as JSON on standard input each time it
//! changes (for a text-to-speech tool or a telephony system's API).
//!
//! Level-triggered like the pages: each pass makes the files match the store's open
//! customer-phase incidents. What the hook last accepted is kept in `<dir>/.delivered`, so
//! a restart re-runs the hook only when the announcement changed meanwhile. The hook has
//! a deadline; its failure is logged, counted, written into the incident's timeline and
//! retried with backoff, and blocks nothing but the next hook run.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime};

use serde::Serialize;
use tokio::io::AsyncWriteExt;
use tokio_util::sync::CancellationToken;

use super::dispatch::Backoff;
use super::pages::write_if_changed;
use super::templates::outages_context;
use crate::config::Config;
use crate::store::IncidentRecord;
use crate::text::time::rfc3339;

const PERIOD: Duration = Duration::from_secs(10);
const DELIVERED: &str = ".delivered";
/// What a hook may print that is kept for the log.
const OUTPUT_KEPT: usize = 2000;

/// The JSON a hook reads on standard input.
#[derive(Debug, Serialize)]
pub struct HookInput {
    /// `published` (the first announcement), `updated`, or `withdrawn` (recovery).
    pub event: &'static str,
    pub incidents: Vec<HookIncident>,
    /// Announcement text by language (empty when withdrawn).
    pub texts: BTreeMap<String, String>,
    /// The files holding them.
    pub files: BTreeMap<String, PathBuf>,
}

#[derive(Debug, Serialize)]
pub struct HookIncident {
    pub id: i64,
    pub service: String,
    pub service_name: String,
    /// RFC 3339.
    pub started: String,
    pub eta: Option<String>,
    pub next_update: Option<String>,
}

#[derive(Clone)]
pub struct Hotline {
    pub follow: super::Follow,
    pub retry: Option<(u32, Instant)>,
    /// A standby of a cluster: it writes its own copy of the announcement files and
    /// leaves the hook to the leader.
    pub files_only: bool,
}

impl Hotline {
    pub async fn run(mut self, cancel: CancellationToken) {
        loop {
            if let Err(e) = self.reconcile().await {
                tracing::error!(error = %e, "hotline: cannot write the announcement");
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = self.follow.changes.changed() => {}
                _ = tokio::time::sleep(PERIOD) => {}
            }
        }
    }

    /// The announcement texts for `open`, by language.
    fn texts(
        &self,
        config: &Config,
        open: &[IncidentRecord],
        now: SystemTime,
    ) -> Result<BTreeMap<String, String>, String> {
        let h = &config.hotline;
        let langs: Vec<String> = if h.languages.is_empty() {
            self.follow.templates.languages().iter().cloned().collect()
        } else {
            h.languages.clone()
        };
        let mut out = BTreeMap::new();
        for lang in langs {
            let ctx = outages_context(config, open, &lang, &h.timezone, now);
            out.insert(
                lang.clone(),
                self.follow.templates.notice("hotline.txt", &lang, &ctx)?,
            );
        }
        Ok(out)
    }

    /// One pass: files, then the hook if the announcement changed since it last ran.
    pub async fn reconcile(&mut self) -> Result<(), String> {
        let config = self.follow.config.get();
        let dir = &config.hotline.dir;
        let now = self.follow.clock.now();
        let open = super::told(&self.follow.store)?;
        let texts = if open.is_empty() {
            BTreeMap::new()
        } else {
            self.texts(&config, &open, now)?
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
        let mut files = BTreeMap::new();
        for (lang, text) in &texts {
            let path = dir.join(format!("{lang}.txt"));
            if write_if_changed(&path, text.as_bytes())? {
                tracing::info!(language = %lang, path = %path.display(), "hotline announcement written");
            }
            files.insert(lang.clone(), path);
        }
        // Withdraw every announcement file no longer wanted (only `<lang>.txt` names).
        for e in std::fs::read_dir(dir)
            .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
            .flatten()
        {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(lang) = name.strip_suffix(".txt") else {
                continue;
            };
            if !texts.contains_key(lang) && crate::config::valid_language(lang) {
                std::fs::remove_file(e.path())
                    .map_err(|err| format!("cannot remove {}: {err}", e.path().display()))?;
                tracing::info!(path = %e.path().display(), "hotline announcement withdrawn");
            }
        }
        self.follow.metrics.hotline_active(!texts.is_empty());
        if self.files_only {
            return Ok(());
        }

        let state = if texts.is_empty() {
            "none".to_string()
        } else {
            let joined: String = texts.iter().map(|(l, t)| format!("{l}\0{t}\0")).collect();
            let d = ring::digest::digest(&ring::digest::SHA256, joined.as_bytes());
            d.as_ref().iter().map(|b| format!("{b:02x}")).collect()
        };
        let delivered_path = dir.join(DELIVERED);
        let delivered = std::fs::read_to_string(&delivered_path)
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "none".into());
        let Some(hook) = config.hotline.hook.clone() else {
            return write_if_changed(&delivered_path, state.as_bytes()).map(|_| ());
        };
        if delivered == state || self.retry.is_some_and(|(_, at)| Instant::now() < at) {
            return Ok(());
        }
        let event = match (delivered.as_str(), texts.is_empty()) {
            (_, true) => "withdrawn",
            ("none", false) => "published",
            _ => "updated",
        };
        let input = HookInput {
            event,
            incidents: open
                .iter()
                .map(|i| HookIncident {
                    id: i.id,
                    service: i.service.clone(),
                    service_name: config
                        .services
                        .iter()
                        .find(|s| s.id == i.service)
                        .map(|s| s.name.clone())
                        .unwrap_or_else(|| i.service.clone()),
                    started: rfc3339(i.started),
                    eta: i.eta.filter(|t| *t > now).or(i.promised_eta).map(rfc3339),
                    next_update: i.next_update.map(rfc3339),
                })
                .collect(),
            texts,
            files,
        };
        match run_hook(
            &hook,
            &config.hotline.hook_env,
            &input,
            config.hotline.hook_timeout,
        )
        .await
        {
            Ok(()) => {
                self.retry = None;
                tracing::info!(event, "hotline hook done");
                write_if_changed(&delivered_path, state.as_bytes()).map(|_| ())
            }
            Err(e) => {
                self.follow.metrics.hotline_hook_failed();
                let attempts = self.retry.map(|r| r.0).unwrap_or(0);
                // A local program: retried sooner than a remote server would be.
                let wait = Backoff::QUICK.after(attempts);
                self.retry = Some((attempts + 1, Instant::now() + wait));
                tracing::error!(event, error = %e, retry_in = ?wait, "hotline hook failed");
                if event != "withdrawn" {
                    let _ = self.follow.store.lock().note_customer_phase(
                        &crate::incident::TimelineEvent::HotlineFailed {
                            event: event.to_string(),
                            error: e.to_string(),
                        },
                        now,
                    );
                }
                Ok(())
            }
        }
    }
}

/// Cuts `s` to at most `max` bytes, at a character boundary (a hook's output may be
/// Polish or Swedish).
fn cut(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push('…');
    }
}

/// The variables a hook gets from tocsin's environment without asking: never tocsin's
/// own secrets (the API token, the SMTP password, webhook keys), only what a program
/// needs to run and speak the right language.
const HOOK_ENV: &[&str] = &["PATH", "LANG", "LC_ALL", "TZ", "HOME"];
/// PATH for a hook when tocsin has none.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Runs `cmd` with `input` as JSON on standard input, within `deadline`, in a clean
/// environment: [`HOOK_ENV`] and the variables the config passes on (`hook_env`).
pub async fn run_hook(
    cmd: &[String],
    pass_env: &[String],
    input: &HookInput,
    deadline: Duration,
) -> Result<(), String> {
    let json = serde_json::to_vec(input).map_err(|e| e.to_string())?;
    let mut command = tokio::process::Command::new(&cmd[0]);
    command.env_clear();
    command.env("PATH", DEFAULT_PATH);
    for name in HOOK_ENV
        .iter()
        .copied()
        .chain(pass_env.iter().map(String::as_str))
    {
        if let Some(v) = std::env::var_os(name) {
            command.env(name, v);
        }
    }
    let mut child = command
        .args(&cmd[1..])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd[0]))?;
    let mut stdin = child.stdin.take();
    let work = async {
        if let Some(s) = stdin.as_mut() {
            // A hook that does not read its input is its own business.
            let _ = s.write_all(&json).await;
        }
        drop(stdin);
        child.wait_with_output().await
    };
    match tokio::time::timeout(deadline, work).await {
        Err(_) => Err(format!(
            "{} did not finish within {} and was stopped",
            cmd[0],
            humantime::format_duration(deadline)
        )),
        Ok(Err(e)) => Err(format!("{}: {e}", cmd[0])),
        Ok(Ok(out)) if out.status.success() => Ok(()),
        Ok(Ok(out)) => {
            let mut said = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if said.is_empty() {
                said = String::from_utf8_lossy(&out.stdout).trim().to_string();
            }
            cut(&mut said, OUTPUT_KEPT);
            Err(format!("{} exited with {}: {said}", cmd[0], out.status))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn script(dir: &std::path::Path, body: &str) -> String {
        use std::os::unix::fs::PermissionsExt;
        let path = dir.join("hook.sh");
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        path.display().to_string()
    }

    fn input() -> HookInput {
        HookInput {
            event: "published",
            incidents: Vec::new(),
            texts: BTreeMap::new(),
            files: BTreeMap::new(),
        }
    }

    /// A text-to-speech tool that fails in Polish: 2,000 bytes end inside a character.
    /// The failure is reported, cut at a character, and nothing panics.
    #[tokio::test]
    async fn a_hook_failing_in_polish_is_reported_cut_at_a_character() {
        let dir = tempfile::tempdir().unwrap();
        let hook = script(
            dir.path(),
            "printf xxx >&2; i=0; while [ $i -lt 500 ]; do printf 'ząb ' >&2; i=$((i+1)); done; exit 3",
        );
        let err = run_hook(&[hook], &[], &input(), Duration::from_secs(10))
            .await
            .unwrap_err();
        assert!(
            err.contains("exited with exit status: 3: xxxząb ząb"),
            "{}",
            &err[..120]
        );
        assert!(err.ends_with('…'), "{}", &err[err.len() - 20..]);
    }

    /// The hook sees PATH and what the config passes on, never tocsin's secrets.
    #[tokio::test]
    async fn a_hook_runs_in_a_clean_environment() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("env.txt");
        let hook = script(dir.path(), &format!("env > {}", out.display()));
        // SAFETY: this test's process sets variables no other test reads.
        unsafe {
            std::env::set_var("TOCSIN_API_TOKEN", "secret-api-token");
            std::env::set_var("ANNOUNCE_LINE", "main");
        }
        run_hook(
            &[hook],
            &["ANNOUNCE_LINE".to_string()],
            &input(),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
        let env = std::fs::read_to_string(&out).unwrap();
        assert!(env.contains("ANNOUNCE_LINE=main"), "{env}");
        assert!(env.lines().any(|l| l.starts_with("PATH=")), "{env}");
        assert!(!env.contains("secret-api-token"), "{env}");
    }
}
