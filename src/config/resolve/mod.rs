//! Stage two: raw structs → [`Config`], one pass per concern. Each pass's file holds the
//! resolved types of its section next to the rules that make them: [`services`] (services,
//! probes, escalation, maintenance, `/probe` modules), [`http`], [`dns`], [`tcp`] (the
//! checks), [`mail`] (SMTP, DKIM, the company), [`audiences`] (audiences, campaign
//! templates), [`autoresponder`], [`pages`] (placeholder, page webhook, hotline) and
//! [`webhooks`]. Defaults are applied there; every error is collected with its position
//! rather than returned early, and secrets are read once, through `cx::Ctx`, which every
//! pass shares. Dependencies point one way: this file calls the passes, the passes use
//! `cx` (and the probe checks each other's TLS options), `cx` uses `diag`, `raw` and
//! `locate`.

pub(super) mod audiences;
pub(super) mod autoresponder;
mod cx;
pub(super) mod dns;
pub(super) mod grpc;
mod heartbeat;
mod http;
pub(super) mod icmp;
pub(super) mod mail;
pub(super) mod oncall;
pub(super) mod pages;
pub(super) mod services;
pub(super) mod tcp;
mod udp;
pub(super) mod webhooks;

pub use cx::{DEFAULT_LISTEN, fmt_dur, parse_duration, parse_size, valid_email, valid_language};

use audiences::{Audience, Campaigns, resolve_audiences, resolve_campaigns};
use autoresponder::{Autoresponder, resolve_autoresponder};
use cx::*;
use mail::{Company, Mail, resolve_company, resolve_mail};
use pages::{Hotline, Pages, Webhook, resolve_hotline, resolve_pages};
use services::{
    Level, Maintenance, Module, Service, Votes, resolve_defaults, resolve_escalation,
    resolve_maintenance, resolve_modules, resolve_services,
};
use webhooks::{IncidentWebhook, resolve_incident_webhooks};

/// The resolved configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it was read from.
    pub source: PathBuf,
    /// Where the HTTP endpoints (metrics, API, status page) are served.
    pub listen: SocketAddr,
    /// With it: `/metrics`, `/probe` and the JSON APIs are served here and only here, the
    /// public `listen` keeping what customers and staff reach from mails.
    pub internal_listen: Option<SocketAddr>,
    /// Base of the links in mails and pages, without a trailing slash.
    pub public_url: String,
    /// The store (unless `store` is set), and `.eml` files when no SMTP server is configured.
    pub data_dir: PathBuf,
    /// PostgreSQL instead of the SQLite file in `data_dir`.
    pub store: Option<PgStore>,
    /// This instance's name among those sharing the store.
    pub location: String,
    /// Several instances on the store, one of them (the leader) deciding and sending.
    pub cluster: Option<Cluster>,
    /// Probes running at the same moment, across all services.
    pub max_concurrency: usize,
    /// Which probes `/metrics` shows series for.
    pub metrics_per_probe: PerProbe,
    /// The environment variable holding the API's bearer token.
    pub api_token_env: String,
    /// Its value at load; the API is off without one.
    pub api_token: Option<Secret>,
    /// What is probed, in file order.
    pub services: Vec<Service>,
    /// Blackbox-style modules for `/probe`, by name (`http`, `tcp`, `dns` built in).
    pub modules: BTreeMap<String, Module>,
    pub escalation: BTreeMap<String, Vec<Level>>,
    pub mail: Mail,
    pub audiences: BTreeMap<String, Audience>,
    pub placeholder_dir: PathBuf,
    /// Language of the placeholder and status pages.
    pub page_language: String,
    /// IANA time zone of the times on the pages.
    pub page_timezone: String,
    /// IANA time zone in which staff type wall-clock ETAs (`14:00`, `tomorrow 09:00`).
    pub staff_timezone: String,
    /// Told when a placeholder is published or withdrawn.
    pub webhook: Option<Webhook>,
    pub campaigns: Campaigns,
    pub company: Company,
    pub maintenance: Vec<Maintenance>,
    /// Off unless configured.
    pub autoresponder: Option<Autoresponder>,
    pub hotline: Hotline,
    /// Receivers of incident transitions.
    pub webhooks: Vec<IncidentWebhook>,
    /// On-call rotations by name.
    pub rotations: BTreeMap<String, crate::oncall::Rotation>,
    /// Chat and paging channels by name.
    pub channels: BTreeMap<String, oncall::ChatChannel>,
    /// How long an opening's staff mail waits, while another service of the same policy
    /// fails, for others to go out in one mail with it (`escalation.group_wait`).
    pub group_wait: Duration,
    /// The same for later levels, reminders and "resolved" (`escalation.group_interval`).
    pub group_interval: Duration,
    /// Accepted with a remark (`tocsin check` prints them).
    pub warnings: Vec<super::ConfigError>,
}

/// How many probes `/metrics` shows series for (`metrics.per_probe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PerProbe {
    /// Every probe (the default).
    #[default]
    All,
    /// Only probes whose latest run failed: a very large installation keeps its scrapes
    /// small, and an alert on `probe_success == 0` still fires.
    Failing,
    /// None: `tocsin_probes{state}` counts them; `/probe` and `/api/v1/probes` still
    /// give every probe.
    None,
}

/// Links in customers' mails (unsubscribe, status page) must work for them and be https:
/// RFC 8058 one-click unsubscribe requires it, and a loopback address reaches nobody.
fn insecure_links(cx: &mut Ctx, public_url: Option<&str>, given: bool) {
    let root = Path::root();
    let Some(u) = public_url.and_then(|u| url::Url::parse(u).ok()) else {
        if !given {
            cx.err(&root.key("audiences"), "customers are mailed (audiences are configured) but `public_url` is not set: their unsubscribe and status links would point at the listen address; set public_url to the https address customers reach this tocsin at (allow_insecure_links: true accepts it, for tests only)");
        }
        return;
    };
    let loopback = u.host().is_some_and(loopback_host);
    if u.scheme() != "https" || loopback {
        cx.err(&root.key("public_url"), format!("`public_url` {u} {}: customers' unsubscribe and status links must be https on an address they can reach (RFC 8058); use the public https address (allow_insecure_links: true accepts it, for tests only)", if loopback { "is a loopback address" } else { "is not https" }));
    }
}

pub(super) fn resolve(
    raw: RawConfig,
    file: &FsPath,
    base: &FsPath,
    env: Env,
    diag: &mut Diag,
) -> Option<Config> {
    let mut cx = Ctx {
        diag,
        base: base.to_path_buf(),
        env,
    };
    let root = Path::root();

    let listen_s = raw
        .listen
        .clone()
        .unwrap_or_else(|| DEFAULT_LISTEN.to_string());
    let listen = match listen_s.parse::<SocketAddr>() {
        Ok(a) => Some(a),
        Err(_) => {
            cx.err(&root.key("listen"), format!("`listen` must be an IP address and port such as {DEFAULT_LISTEN}, not `{listen_s}`"));
            None
        }
    };
    let internal_listen = match raw.internal_listen.as_deref() {
        None => Some(None),
        Some(a) => match a.parse::<SocketAddr>() {
            Ok(addr) if Some(addr) == listen => {
                cx.err(&root.key("internal_listen"), "`internal_listen` must differ from `listen`: it keeps /metrics, /probe and the APIs off the public listener");
                None
            }
            Ok(addr) => Some(Some(addr)),
            Err(_) => {
                cx.err(&root.key("internal_listen"), format!("`internal_listen` must be an IP address and port such as 127.0.0.1:9779, not `{a}`"));
                None
            }
        },
    };
    let public_url = match raw.public_url.as_deref() {
        None => None,
        Some(u) => match url::Url::parse(u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host_str().is_some() => {
                Some(u.trim_end_matches('/').to_string())
            }
            _ => {
                cx.err(&root.key("public_url"), format!("`public_url` must be an http(s) URL such as https://status.example.com, not `{u}`"));
                None
            }
        },
    };
    if !raw.audiences.is_empty() && !raw.allow_insecure_links {
        insecure_links(&mut cx, public_url.as_deref(), raw.public_url.is_some());
    }
    let data_dir = cx.file(raw.data_dir.as_deref().unwrap_or("./var"));
    let max_concurrency = raw.max_concurrency.unwrap_or(DEFAULT_MAX_CONCURRENCY);
    if max_concurrency == 0 {
        cx.err(
            &root.key("max_concurrency"),
            "`max_concurrency` must be at least 1",
        );
    }

    let metrics_per_probe = match raw.metrics.as_ref().and_then(|m| m.per_probe.as_deref()) {
        None | Some("all") => PerProbe::All,
        Some("failing") => PerProbe::Failing,
        Some("none") => PerProbe::None,
        Some(other) => {
            cx.err(
                &root.key("metrics").key("per_probe"),
                format!("`per_probe` must be `all`, `failing` or `none`, not `{other}`"),
            );
            PerProbe::All
        }
    };

    let defaults = resolve_defaults(&mut cx, raw.defaults.as_ref());

    // Named things that services refer to.
    let channels = oncall::resolve_channels(&mut cx, &raw.channels);
    let escalation = resolve_escalation(&mut cx, &raw);
    let ep = root.key("escalation");
    let group_wait = raw
        .escalation
        .group_wait
        .as_deref()
        .and_then(|s| cx.duration(&ep.key("group_wait"), s))
        .unwrap_or(DEFAULT_GROUP_WAIT);
    let group_interval = raw
        .escalation
        .group_interval
        .as_deref()
        .and_then(|s| cx.duration(&ep.key("group_interval"), s))
        .unwrap_or(group_wait);
    for (key, d) in [
        ("group_wait", group_wait),
        ("group_interval", group_interval),
    ] {
        if d > Duration::from_secs(600) {
            cx.err(&ep.key(key), format!("`{key}: {}` is longer than 10 minutes: staff would hear of an outage that late; keep it to seconds (30s) or a few minutes", fmt_dur(d)));
        }
    }
    let audiences = resolve_audiences(&mut cx, &raw.audiences);

    // After a shape error (a misspelt or mistyped `services`) this would only be noise.
    if raw.services.is_empty() && cx.diag.is_empty() {
        cx.err(
            &root,
            "no services: add at least one under `services`, each with its `probes`",
        );
    }
    let services = resolve_services(&mut cx, &raw, &defaults);

    let modules = resolve_modules(&mut cx, &raw.modules, defaults.timeout);
    let mail = resolve_mail(&mut cx, raw.mail.as_ref());
    let Pages {
        placeholder_dir,
        language: page_language,
        timezone: page_timezone,
        webhook,
    } = resolve_pages(&mut cx, raw.pages.as_ref(), &data_dir);
    let campaigns = resolve_campaigns(&mut cx, raw.campaigns.as_ref());
    let company = resolve_company(&mut cx, raw.company.as_ref(), &mail);
    let mut mail = mail;
    mail.reply_to = company.email.clone();
    if mail.unsubscribe_address.is_none() {
        mail.unsubscribe_address = company.email.clone();
    }
    if !raw.audiences.is_empty() && mail.dkim.is_empty() {
        cx.warn(&root.key("audiences"), "customers are mailed but no DKIM key is configured: receivers distrust unsigned bulk mail (Gmail and Yahoo require DKIM aligned with From); add mail.dkim");
    }
    let service_ids: Vec<String> = raw.services.iter().map(|s| s.id.clone()).collect();
    let maintenance = resolve_maintenance(&mut cx, &raw.maintenance, &service_ids);

    let autoresponder = raw
        .autoresponder
        .as_ref()
        .and_then(|a| resolve_autoresponder(&mut cx, a, &page_language, &page_timezone));
    let hotline = resolve_hotline(&mut cx, raw.hotline.as_ref(), &data_dir, &page_timezone);
    let staff_timezone = raw.staff_timezone.as_ref().and_then(|z| {
        if z.parse::<chrono_tz::Tz>().is_ok() {
            Some(z.clone())
        } else {
            cx.err(&root.key("staff_timezone"), format!("`staff_timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `{z}`"));
            None
        }
    });
    let webhooks = resolve_incident_webhooks(&mut cx, &raw.webhooks);
    let rotations = oncall::resolve_rotations(
        &mut cx,
        &raw.rotations,
        staff_timezone.as_deref().unwrap_or(&page_timezone),
    );
    let api_token_env = raw
        .api
        .as_ref()
        .and_then(|a| a.token_env.clone())
        .unwrap_or_else(|| "TOCSIN_API_TOKEN".to_string());
    if !valid_env_name(&api_token_env) {
        cx.err(&root.key("api").key("token_env"), format!("`token_env` names an environment variable (such as TOCSIN_API_TOKEN), not `{api_token_env}`"));
    }
    let api_token = cx.secret(&api_token_env);
    let store = resolve_store(&mut cx, &raw);
    let (location, cluster) = resolve_cluster(&mut cx, &raw);
    let mut services = services;
    resolve_votes(&mut cx, &raw, cluster.as_ref(), &mut services);
    if !cx.diag.is_empty() {
        return None;
    }
    let listen = listen?;
    let internal_listen = internal_listen?;
    Some(Config {
        source: file.to_path_buf(),
        listen,
        internal_listen,
        public_url: public_url.unwrap_or_else(|| format!("http://{listen}")),
        data_dir,
        store,
        location,
        cluster,
        max_concurrency,
        metrics_per_probe,
        api_token_env,
        api_token,
        services,
        modules,
        escalation,
        mail,
        audiences,
        placeholder_dir,
        page_language,
        staff_timezone: staff_timezone.unwrap_or_else(|| page_timezone.clone()),
        page_timezone,
        webhook,
        campaigns,
        company,
        maintenance,
        autoresponder,
        hotline,
        webhooks,
        rotations,
        channels,
        group_wait,
        group_interval,
        warnings: Vec::new(),
    })
}

/// Where the PostgreSQL store is, and its password from the environment.
#[derive(Debug, Clone)]
pub struct PgStore {
    /// `postgres://user@host:port/database[?sslmode=...]`, with no password in it.
    pub url: String,
    /// The variable the password is read from.
    pub password_env: String,
    /// Its value at load; None when unset (the server may not ask for one).
    pub password: Option<Secret>,
}

fn resolve_store(cx: &mut Ctx, raw: &RawConfig) -> Option<PgStore> {
    let root = Path::root();
    let password_env = raw
        .store_password_env
        .clone()
        .unwrap_or_else(|| "PGPASSWORD".to_string());
    if !valid_env_name(&password_env) {
        cx.err(&root.key("store_password_env"), format!("`store_password_env` names an environment variable (such as TOCSIN_PG_PASSWORD), not `{password_env}`"));
    }
    let Some(url) = raw.store.as_deref() else {
        if raw.store_password_env.is_some() {
            cx.err(&root.key("store_password_env"), "`store_password_env` is set but `store` is not: the password is for a PostgreSQL store; set `store: postgres://USER@HOST:PORT/DATABASE` or remove it");
        }
        return None;
    };
    let at = root.key("store");
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        cx.err(&at, format!("`store` must be a PostgreSQL URL such as postgres://tocsin@db.internal:5432/tocsin (omit it for the SQLite file in data_dir), not `{url}`"));
        return None;
    }
    match <tokio_postgres::Config as std::str::FromStr>::from_str(url) {
        Err(e) => {
            cx.err(&at, format!("`store` is not a valid PostgreSQL URL ({e}); write postgres://USER@HOST:PORT/DATABASE"));
            None
        }
        Ok(c) if c.get_password().is_some() => {
            cx.err(&at, format!("`store` carries a password: keep it out of the file and put it in the environment variable {password_env} (`store_password_env` names another)"));
            None
        }
        Ok(c) if c.get_hosts().is_empty() => {
            cx.err(
                &at,
                "`store` names no host: write postgres://USER@HOST:PORT/DATABASE",
            );
            None
        }
        Ok(_) => Some(PgStore {
            url: url.to_string(),
            password: cx.secret(&password_env),
            password_env,
        }),
    }
}

/// Several tocsins on one PostgreSQL store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cluster {
    /// The leader's lease: another instance takes over within about this long after the
    /// leader stops renewing it.
    pub lease: Duration,
    /// The locations expected to take part, each probing and voting. Empty: the cluster
    /// does not vote (the leader probes alone; the others only stand by).
    pub locations: Vec<String>,
}

impl Cluster {
    /// Whether its locations vote on every probe.
    pub fn votes(&self) -> bool {
        !self.locations.is_empty()
    }
}

const DEFAULT_LEASE: Duration = Duration::from_secs(15);

/// This host's name as an instance name: lower case, letters, digits, `-` and `_`.
fn host_location() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name: String = host
        .trim()
        .to_ascii_lowercase()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect();
    if name.is_empty() {
        "tocsin".into()
    } else {
        name
    }
}

fn resolve_cluster(cx: &mut Ctx, raw: &RawConfig) -> (String, Option<Cluster>) {
    let root = Path::root();
    let location = match raw.location.as_deref() {
        // The environment names it where the file is shared and the host name says
        // nothing stable (a Kubernetes StatefulSet passes the pod's name).
        None => std::env::var("TOCSIN_LOCATION")
            .ok()
            .filter(|l| valid_id(l) && l.len() <= 63)
            .unwrap_or_else(host_location),
        Some(l) if valid_id(l) && l.len() <= 63 => l.to_string(),
        Some(l) => {
            cx.err(&root.key("location"), format!("`location` names this instance (such as waw or fra-1: lower-case letters, digits, - and _), not `{l}`"));
            host_location()
        }
    };
    let Some(c) = raw.cluster.as_ref() else {
        return (location, None);
    };
    let at = root.key("cluster");
    if raw.store.is_none() {
        cx.err(&at, "`cluster` needs a store that every instance shares: set `store: postgres://USER@HOST:PORT/DATABASE` (the SQLite file in data_dir belongs to one instance)");
    }
    let lease = c
        .lease
        .as_deref()
        .and_then(|s| cx.duration(&at.key("lease"), s))
        .unwrap_or(DEFAULT_LEASE);
    if !(Duration::from_secs(3)..=Duration::from_secs(300)).contains(&lease) {
        cx.err(&at.key("lease"), format!("`lease` ({}) must be between 3s and 5m: shorter, a busy database would make leaders change; longer, a dead leader would be replaced that late", fmt_dur(lease)));
    }
    let mut locations: Vec<String> = Vec::new();
    for (i, l) in c.locations.iter().flatten().enumerate() {
        if !valid_id(l) || l.len() > 63 {
            cx.err(&at.key("locations").index(i), format!("a location is a name such as waw or fra-1 (lower-case letters, digits, - and _), not `{l}`"));
        } else if locations.contains(l) {
            cx.err(
                &at.key("locations").index(i),
                format!("location `{l}` is listed twice"),
            );
        } else {
            locations.push(l.clone());
        }
    }
    if c.locations.as_ref().is_some_and(|l| l.is_empty()) {
        cx.err(&at.key("locations"), "`locations` lists the locations expected to take part (such as [waw, fra, sto]); leave it out for a cluster that does not vote");
    }
    if !locations.is_empty() && !locations.contains(&location) {
        let (place, what) = if raw.location.is_some() {
            (root.key("location"), "this instance's `location`")
        } else {
            (
                at.key("locations"),
                "this instance's default `location` (TOCSIN_LOCATION, else the host name)",
            )
        };
        cx.err(&place, format!("{what} `{location}` is not one of `cluster.locations` ({}): set `location:` to one of them, or add it to the list", locations.join(", ")));
    }
    if c.quorum.is_some() && c.locations.is_none() {
        cx.err(&at.key("quorum"), "`quorum` counts the locations of `cluster.locations`: list them there (such as `locations: [waw, fra, sto]`)");
    }
    (location, Some(Cluster { lease, locations }))
}

/// The quorum a probe needs when nothing says otherwise: a majority of those that run it.
fn majority(n: usize) -> usize {
    n / 2 + 1
}

/// Each probe's voters and quorum in a cluster that votes: its `locations` (default: all),
/// and the service's `quorum`, else `cluster.quorum`, else a majority of its voters.
/// `quorum` and `locations` mean nothing outside such a cluster and are refused there.
fn resolve_votes(
    cx: &mut Ctx,
    raw: &RawConfig,
    cluster: Option<&Cluster>,
    services: &mut [Service],
) {
    let root = Path::root();
    let cluster = cluster.filter(|c| c.votes());
    let cluster_quorum = raw.cluster.as_ref().and_then(|c| c.quorum);
    let quorum_at = root.key("cluster").key("quorum");
    if let (Some(c), Some(q)) = (cluster, cluster_quorum) {
        if q == 0 || q as usize > c.locations.len() {
            cx.err(&quorum_at, format!("`quorum` {q} cannot be met by {} locations ({}): it is between 1 and their number", c.locations.len(), c.locations.join(", ")));
        }
    }
    let mut shared: Vec<Arc<Votes>> = Vec::new();
    let mut unmet = std::collections::BTreeSet::new();
    for (i, rs) in raw.services.iter().enumerate() {
        let sp = root.key("services").index(i);
        let Some(c) = cluster else {
            if rs.quorum.is_some() {
                cx.err(&sp.key("quorum"), "`quorum` counts locations of a cluster that votes: set `cluster.locations` (and `store:`), or remove it");
            }
            for (j, rp) in rs.probes.iter().enumerate() {
                if rp.locations.is_some() {
                    cx.err(&sp.key("probes").index(j).key("locations"), "`locations` names locations of a cluster that votes: set `cluster.locations` (and `store:`), or remove it");
                }
            }
            continue;
        };
        if rs.quorum == Some(0) {
            cx.err(
                &sp.key("quorum"),
                "`quorum` is at least 1: the locations that must see a probe failing",
            );
        }
        let resolved = services.iter_mut().find(|s| s.id == rs.id);
        let mut probes = resolved.map(|s| &mut s.probes);
        for (j, rp) in rs.probes.iter().enumerate() {
            let pp = sp.key("probes").index(j);
            // A heartbeat is judged from the pings the leader receives, wherever it is.
            if rp.heartbeat.is_some() {
                if rp.locations.is_some() {
                    cx.err(&pp.key("locations"), format!("probe `{}` is a heartbeat, judged from the pings the leader receives: `locations` does not apply; remove it", rp.name));
                }
                continue;
            }
            let mut voters: Vec<String> = Vec::new();
            match &rp.locations {
                None => voters = c.locations.clone(),
                Some(list) => {
                    if list.is_empty() {
                        cx.err(&pp.key("locations"), "`locations` lists at least one location; leave it out for all of `cluster.locations`");
                    }
                    for (k, l) in list.iter().enumerate() {
                        if !c.locations.contains(l) {
                            cx.err(&pp.key("locations").index(k), format!("`{l}` is not one of `cluster.locations` ({}): add it there or correct the name", c.locations.join(", ")));
                        } else if voters.contains(l) {
                            cx.err(
                                &pp.key("locations").index(k),
                                format!("location `{l}` is listed twice"),
                            );
                        } else {
                            voters.push(l.clone());
                        }
                    }
                    // In the order of the cluster's list, whatever the order written.
                    voters.sort_by_key(|l| c.locations.iter().position(|x| x == l));
                }
            }
            let (quorum, quorum_path) = match (rs.quorum, cluster_quorum) {
                (Some(q), _) => (q as usize, sp.key("quorum")),
                (None, Some(q)) => (q as usize, quorum_at.clone()),
                (None, None) => (majority(voters.len()), pp.key("locations")),
            };
            // A quorum of 0 was refused where it is written; one the cluster's own
            // locations cannot meet, there too.
            let cluster_wide = rp.locations.is_none() && rs.quorum.is_none();
            if !voters.is_empty() && quorum > voters.len() && !cluster_wide {
                let by = if rp.locations.is_some() {
                    pp.key("locations")
                } else {
                    quorum_path.clone()
                };
                let n = match voters.len() {
                    1 => "the 1 location".to_string(),
                    n => format!("the {n} locations"),
                };
                let msg = format!(
                    "probe `{}`: a quorum of {quorum} cannot be met by {n} that run it ({}): lower `quorum` for service `{}`, or let more locations run it",
                    rp.name,
                    voters.join(", "),
                    rs.id
                );
                // A service's quorum too large for every location is said once, not per probe.
                if rp.locations.is_some() || unmet.insert(rs.id.clone()) {
                    cx.err(&by, msg);
                }
            }
            if voters.is_empty() {
                continue;
            }
            let votes = Votes {
                locations: voters,
                quorum,
            };
            let votes = match shared.iter().find(|v| ***v == votes) {
                Some(v) => v.clone(),
                None => {
                    let v = Arc::new(votes);
                    shared.push(v.clone());
                    v
                }
            };
            if let Some(p) = probes
                .as_mut()
                .and_then(|ps| ps.iter_mut().find(|p| p.name == rp.name))
            {
                if let Some(p) = Arc::get_mut(p) {
                    p.votes = Some(votes);
                }
            }
        }
    }
}
