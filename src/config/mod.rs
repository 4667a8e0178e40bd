//! Configuration: `probes.yaml` read in two stages.
//!
//! 1. [`raw`]: serde_yaml into structs that refuse unknown keys. serde stops at the first
//!    error, so [`deserialize_all`] removes each offending node and tries again, to report
//!    every shape error at once.
//! 2. `resolve`: one pass per section (services and probes, http, dns, tcp, mail,
//!    audiences and templates, autoresponder, pages, webhooks), each next to the types it
//!    makes: defaults applied, cross-field rules checked, durations, URLs, addresses and
//!    regexes parsed into the probe room's types, secrets read from the environment once.
//!
//! Every error carries `FILE:LINE:COL`, found through [`locate`]. This room reads files
//! and the environment; it never connects anywhere.

mod diag;
pub mod locate;
pub mod raw;
mod resolve;

use diag::original_path;
pub use diag::{ConfigError, ConfigErrors};
pub(crate) use diag::{Diag, nearest};

pub use resolve::audiences::{Audience, Campaigns};
pub use resolve::autoresponder::Autoresponder;
pub use resolve::dns::parse_server;
pub use resolve::icmp::valid_host;
pub use resolve::mail::{Company, Dkim, Mail};
pub use resolve::oncall::{ChatChannel, EnvSecret, Vendor};
pub use resolve::pages::{Hotline, Webhook};
pub use resolve::services::{
    Allow, Compensation, Level, Maintenance, Module, Probe, PublicFrom, Service, Votes,
};
pub use resolve::tcp::valid_host_port;
pub use resolve::webhooks::IncidentWebhook;
pub use resolve::{Cluster, Config, PerProbe, PgStore};
pub use resolve::{
    DEFAULT_LISTEN, fmt_dur, parse_duration, parse_size, valid_email, valid_language,
};

use crate::secret::{Env, process_env};
use std::path::Path as FsPath;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde_yaml::Value;

use crate::incident::{Context, Flapping, Level as PolicyLevel, Policy, Window};
use locate::{Locations, Path, Pos, Seg};

impl Config {
    /// The incident policy of `service` under this config.
    pub fn policy(&self, service: &Service) -> Policy {
        let config = self;
        let levels = service
            .escalation
            .as_ref()
            .and_then(|name| config.escalation.get(name))
            .map(|ls| {
                ls.iter()
                    .map(|l| PolicyLevel {
                        after: l.after,
                        to: l.to.clone(),
                        repeat_every: l.repeat_every,
                    })
                    .collect()
            })
            .unwrap_or_default();
        let maintenance = config
            .maintenance
            .iter()
            .filter(|m| m.service == service.id)
            .map(|m| Window {
                start: m.start,
                end: m.start + m.duration,
            })
            .collect();
        Policy {
            service: service.id.clone(),
            probes: service.probes.iter().map(|p| p.name.clone()).collect(),
            failure_threshold: service.failure_threshold,
            success_threshold: service.success_threshold,
            customer_threshold: service.customer_threshold,
            update_every: config.campaigns.update_every,
            next_update: config.campaigns.next_update,
            levels,
            maintenance,
            flapping: Flapping::default(),
            remind_before: config.campaigns.remind_before,
        }
    }

    /// What a decision about `service` (None: about the monitor itself) is written with
    /// for its notifiers.
    pub fn context(&self, service: Option<&Service>) -> Context {
        let canaries = self.canaries();
        match service {
            None => Context {
                canaries,
                ..Context::default()
            },
            Some(s) => Context::of(&s.name, &self.policy(s), canaries),
        }
    }

    /// What customers call the service `id` (its id, for one no longer configured).
    pub fn service_name(&self, id: &str) -> String {
        self.services
            .iter()
            .find(|s| s.id == id)
            .map(|s| s.name.clone())
            .unwrap_or_else(|| id.to_string())
    }

    /// Whether the public (status page, feeds, summary) may show an incident of `id`
    /// whose customers were (`told`) or were not told: `public_from: customer` keeps the
    /// latter off.
    pub fn shown_publicly(&self, id: &str, told: bool) -> bool {
        told || self
            .services
            .iter()
            .find(|s| s.id == id)
            .is_none_or(|s| s.public_from == PublicFrom::Staff)
    }

    /// `service/probe` of every canary probe.
    pub fn canaries(&self) -> Vec<String> {
        self.probes()
            .filter(|p| p.canary)
            .map(|p| format!("{}/{}", p.service, p.name))
            .collect()
    }

    /// This config with the maintenance windows added through the API (`windows`, from
    /// the store) in place of any it had before.
    pub fn with_api_windows(mut self, windows: Vec<Maintenance>) -> Config {
        self.maintenance.retain(|m| m.id.is_none());
        self.maintenance.extend(windows);
        self
    }

    /// All probes of all services.
    pub fn probes(&self) -> impl Iterator<Item = &Arc<Probe>> {
        self.services.iter().flat_map(|s| s.probes.iter())
    }

    /// The first level of every escalation policy, each address once: who hears of what
    /// belongs to no incident (the monitor's own trouble, its locations, its store).
    pub fn first_responders(&self) -> Vec<String> {
        let mut to: Vec<String> = Vec::new();
        for a in self
            .escalation
            .values()
            .filter_map(|l| l.first())
            .flat_map(|l| l.to.iter())
        {
            if !to.contains(a) {
                to.push(a.clone());
            }
        }
        to
    }

    /// Finds a probe by `name` or `service/name`.
    pub fn find_probe(&self, name: &str) -> Option<&Arc<Probe>> {
        self.probes()
            .find(|p| p.name == name || format!("{}/{}", p.service, p.name) == name)
    }
}

/// Reads and resolves the config at `path`, its secrets from the process environment.
/// Relative paths inside it are relative to the file's directory.
pub fn load(path: &FsPath) -> Result<Config, ConfigErrors> {
    load_with(path, &process_env)
}

/// [`load`] with the secrets read from `env`.
pub fn load_with(path: &FsPath, env: Env) -> Result<Config, ConfigErrors> {
    let src = std::fs::read_to_string(path).map_err(|e| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            pos: Pos { line: 1, col: 1 },
            message: format!("cannot read the config file: {e}"),
        }])
    })?;
    parse_with(&src, path, env)
}

/// Resolves config text as if read from `path`, its secrets from the process environment.
pub fn parse(src: &str, path: &FsPath) -> Result<Config, ConfigErrors> {
    parse_with(src, path, &process_env)
}

/// [`parse`] with the secrets read from `env`.
pub fn parse_with(src: &str, path: &FsPath, env: Env) -> Result<Config, ConfigErrors> {
    let file = path.display().to_string();
    // The positions and the raw structs come from two parsers of the same text; they
    // read it side by side (on a second core, a large config loads in about two thirds
    // of the time). A file of the right shape is read straight into the raw structs.
    let (locs, direct) = std::thread::scope(|s| {
        let locs = s.spawn(|| Locations::parse(src));
        let direct = serde_yaml::from_str::<raw::RawConfig>(src);
        // The positions pass does not panic on any text (the config fuzz target runs
        // it); were it to, the panic goes on as it would have in this thread.
        let locs = locs
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (locs, direct)
    });
    if !locs.duplicates().is_empty() {
        let mut errors: Vec<ConfigError> = locs
            .duplicates()
            .iter()
            .map(|(path, pos, first)| ConfigError {
                file: file.clone(),
                pos: *pos,
                message: format!(
                    "duplicate key `{}` (first at line {}): keep one",
                    last_seg(path),
                    first.line
                ),
            })
            .collect();
        errors.sort_by_key(|e| e.pos);
        return Err(ConfigErrors(errors));
    }
    let mut diag = Diag::new(file.clone(), &locs);
    // Only when the direct reading fails is the value tree built, which lets every shape
    // error be reported with its position: at 100,000 probes the tree alone is hundreds
    // of megabytes.
    let raw: Option<raw::RawConfig> = match direct {
        Ok(raw) => Some(raw),
        Err(_) => {
            let value: Value = match serde_yaml::from_str(src) {
                Ok(Value::Null) => Value::Mapping(Default::default()),
                Ok(v) => v,
                Err(e) => {
                    let pos = e
                        .location()
                        .map(|l| Pos {
                            line: l.line(),
                            col: l.column(),
                        })
                        .unwrap_or(Pos { line: 1, col: 1 });
                    return Err(ConfigErrors(vec![ConfigError {
                        file: file.clone(),
                        pos,
                        message: format!("invalid YAML: {}", strip_location(&e.to_string())),
                    }]));
                }
            };
            deserialize_all(value, &mut diag)
        }
    };
    let base = path.parent().map(FsPath::to_path_buf).unwrap_or_default();
    let config = raw.and_then(|raw| resolve::resolve(raw, path, &base, env, &mut diag));
    match config {
        Some(mut c) if diag.is_empty() => {
            c.warnings = diag.take_warnings();
            Ok(c)
        }
        _ => Err(diag.finish()),
    }
}

fn last_seg(p: &Path) -> String {
    match p.0.last() {
        Some(Seg::Key(k)) => k.clone(),
        Some(Seg::Index(i)) => i.to_string(),
        None => String::new(),
    }
}

fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// Deserializes `value` as `T`, reporting every shape error rather than the first: after
/// each error the offending node is removed and deserialization is tried again. Indices
/// of removed sequence elements are remembered so later errors still point at the
/// original positions. Returns what remains once every bad node is gone, so the next
/// stage can report its own errors too (the errors already recorded still fail the load).
pub(crate) fn deserialize_all<T: DeserializeOwned>(mut value: Value, diag: &mut Diag) -> Option<T> {
    let mut removed_keys: Vec<(Path, String)> = Vec::new();
    // Each round removes one node, so the loop ends; the bound only guards against a
    // pathological file.
    for _ in 0..500 {
        let err = match serde_path_to_error::deserialize::<_, T>(&value) {
            Ok(t) => return Some(t),
            Err(e) => e,
        };
        let cur = convert_path(err.path());
        let orig = original_path(&cur, &diag.removed);
        let msg = err.inner().to_string();
        if let Some((key, expected)) = parse_unknown(&msg, "unknown field `") {
            // serde_path_to_error may or may not have entered the unknown key already.
            let (cur, orig) = match cur.0.last() {
                Some(Seg::Key(k)) if *k == key => (cur.parent(), orig.parent()),
                _ => (cur, orig),
            };
            let pos = diag.locs.key(&orig.key(&key));
            diag.push(pos, unknown_message("key", &key, &expected));
            if !remove(&mut value, &cur.key(&key)) {
                return None;
            }
            removed_keys.push((orig, key));
            continue;
        }
        if let Some(field) = msg
            .strip_prefix("missing field `")
            .and_then(|r| r.strip_suffix('`'))
        {
            let already = removed_keys.iter().any(|(p, k)| *p == orig && k == field);
            if !already {
                diag.push(diag.locs.value(&orig), format!("missing key `{field}`"));
            }
        } else if let Some((variant, expected)) = parse_unknown(&msg, "unknown variant `") {
            diag.push(
                diag.locs.value(&orig),
                unknown_message("value", &variant, &expected),
            );
        } else {
            diag.push(diag.locs.value(&orig), friendly(&msg, &orig));
        }
        // Remove the node (for a missing key: the mapping that lacks it) and go on.
        if cur.0.is_empty() {
            return None;
        }
        if let Some(Seg::Index(i)) = orig.0.last() {
            diag.removed.push((orig.parent(), *i));
        }
        if let Some(Seg::Key(k)) = orig.0.last() {
            removed_keys.push((orig.parent(), k.clone()));
        }
        if !remove(&mut value, &cur) {
            return None;
        }
    }
    None
}

fn convert_path(p: &serde_path_to_error::Path) -> Path {
    use serde_path_to_error::Segment;
    Path(
        p.iter()
            .filter_map(|s| match s {
                Segment::Seq { index } => Some(Seg::Index(*index)),
                Segment::Map { key } => Some(Seg::Key(key.clone())),
                Segment::Enum { variant } => Some(Seg::Key(variant.clone())),
                Segment::Unknown => None,
            })
            .collect(),
    )
}

/// Removes the node at `path` from `value`; false when there is nothing to remove.
fn remove(value: &mut Value, path: &Path) -> bool {
    let Some((last, parents)) = path.0.split_last() else {
        return false;
    };
    let mut node = value;
    for seg in parents {
        node = match (seg, node) {
            (Seg::Key(k), Value::Mapping(m)) => match m.get_mut(k.as_str()) {
                Some(v) => v,
                None => return false,
            },
            (Seg::Index(i), Value::Sequence(s)) => match s.get_mut(*i) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Seg::Key(k), Value::Mapping(m)) => m.remove(k.as_str()).is_some(),
        (Seg::Index(i), Value::Sequence(s)) if *i < s.len() => {
            s.remove(*i);
            true
        }
        _ => false,
    }
}

/// Reads serde's "unknown field `x`, expected one of `a`, `b`" into (x, [a, b]).
fn parse_unknown(msg: &str, prefix: &str) -> Option<(String, Vec<String>)> {
    let rest = msg.strip_prefix(prefix)?;
    let end = rest.find('`')?;
    let name = rest[..end].to_string();
    let expected = rest[end + 1..]
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect();
    Some((name, expected))
}

fn unknown_message(what: &str, name: &str, expected: &[String]) -> String {
    match nearest(name, expected) {
        Some(best) => format!("unknown {what} `{name}`, did you mean `{best}`?"),
        None if expected.is_empty() => format!("unknown {what} `{name}`"),
        None => format!(
            "unknown {what} `{name}`, expected one of: {}",
            expected.join(", ")
        ),
    }
}

/// Keys whose values are durations (`30s`, `15m`).
const DURATION_KEYS: &[&str] = &[
    "interval",
    "timeout",
    "after",
    "duration",
    "customer_threshold",
    "max_latency",
    "update_every",
    "next_update",
    "hook_timeout",
    "grace",
    "period",
    "window",
    "announce_before",
];

/// Rewrites serde's type errors in the config's own terms.
fn friendly(msg: &str, path: &Path) -> String {
    let key = match path.0.last() {
        Some(Seg::Key(k)) => k.as_str(),
        _ => "",
    };
    if msg.starts_with("data did not match any variant of untagged enum") {
        return match key {
            "expect_status" => "`expect_status` must be a status code (200), a range (\"200-299\"), or a list of them".into(),
            "follow_redirects" => "`follow_redirects` must be true, false, or the maximum number of redirects".into(),
            "max_body" => "`max_body` must be a number of bytes or a size such as \"512KiB\" or \"1MiB\"".into(),
            "tls" => "`tls` must be true, false, or a mapping with ca_file, insecure_skip_verify, server_name".into(),
            _ => format!("`{key}` has the wrong form"),
        };
    }
    // A number where a duration goes: say what to write.
    if DURATION_KEYS.contains(&key) && msg.ends_with("expected a string") {
        if let Some(n) = msg.split('`').nth(1).filter(|n| n.parse::<f64>().is_ok()) {
            return format!(
                "`{path}` is a duration: write `{n}s` (or `{n}m`, `{n}h`); a number alone has no unit"
            );
        }
    }
    let msg = msg
        .replace("u32", "a whole number")
        .replace("u64", "a whole number")
        .replace("usize", "a whole number")
        .replace("a boolean", "true or false");
    let msg = msg
        .strip_prefix("invalid type: ")
        .map(|m| m.to_string())
        .unwrap_or(msg);
    if key.is_empty() {
        msg
    } else {
        // "string \"x\", expected a whole number" -> "`failure_threshold`: expected a whole number, found string "x""
        match msg.split_once(", expected ") {
            Some((found, expected)) => format!("`{key}`: expected {expected}, found {found}"),
            None => format!("`{key}`: {msg}"),
        }
    }
}

/// The running config, shared by every task and replaced whole on reload: a reader takes
/// the current one and keeps it for a whole pass, so a pass never mixes two configs.
#[derive(Clone)]
pub struct LiveConfig(Arc<std::sync::RwLock<Arc<Config>>>);

impl LiveConfig {
    pub fn new(config: Config) -> LiveConfig {
        LiveConfig(Arc::new(std::sync::RwLock::new(Arc::new(config))))
    }

    /// The config in force now.
    pub fn get(&self) -> Arc<Config> {
        self.0.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Puts `config` in force (a reload, a maintenance window added through the API).
    pub fn set(&self, config: Arc<Config>) {
        *self.0.write().unwrap_or_else(|e| e.into_inner()) = config;
    }
}
