//! Services and their probes: thresholds, intervals and timeouts, the escalation
//! policies and maintenance windows they refer to, and the `/probe` modules.

use super::cx::*;
use super::dns::dns_check;
use super::grpc::grpc_check;
use super::heartbeat::heartbeat_check;
use super::http::http_check;
use super::icmp::icmp_check;
use super::tcp::tcp_check;
use super::udp::udp_check;

#[derive(Debug, Clone)]
pub struct Service {
    pub id: String,
    pub name: String,
    /// The status page's heading for it (none: listed with the ungrouped).
    pub group: Option<String>,
    pub customer_threshold: Duration,
    pub escalation: Option<String>,
    pub audience: Option<String>,
    pub failure_threshold: u32,
    pub success_threshold: u32,
    pub compensation: Option<Compensation>,
    /// Services this one needs (`depends_on`), by id; the config has no cycles.
    pub depends_on: Vec<String>,
    /// From when its incidents are public (status page, history, uptime).
    pub public_from: PublicFrom,
    pub probes: Vec<Arc<Probe>>,
}

impl Service {
    /// The longest interval among the service's probes: one round of every probe takes
    /// at most this long.
    pub fn longest_interval(&self) -> Duration {
        self.probes
            .iter()
            .map(|p| p.interval)
            .max()
            .unwrap_or(Duration::from_secs(30))
    }
}

/// From when a service's incidents appear on the status page.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PublicFrom {
    /// As soon as an incident opens: customers who look see what staff see.
    #[default]
    Staff,
    /// Once its customers are told: an outage short enough to stay with staff never
    /// appears publicly, in its history or in its uptime.
    Customer,
}

/// Compensation codes in the recovery mail of outages that lasted at least `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compensation {
    pub after: Duration,
    /// The pool: a CSV with a `code` column. Services naming the same file share it.
    pub codes_csv: PathBuf,
}

/// One scheduled probe. Equal probes keep their schedule across a reload.
#[derive(Debug, Clone, PartialEq)]
pub struct Probe {
    pub service: String,
    pub name: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// Checks the monitor's own connectivity (used by the incident engine's canary guard).
    pub canary: bool,
    pub check: Check,
    /// In a cluster with `locations`: who runs it and how many must see it fail.
    pub votes: Option<Arc<Votes>>,
}

/// Which locations of a cluster run a probe, and how many of them must report it failing
/// before it counts as failing. Shared by the probes that have the same.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Votes {
    /// The locations that run it, in the order of `cluster.locations`.
    pub locations: Vec<String>,
    /// At least 1, at most `locations.len()`.
    pub quorum: usize,
}

impl Probe {
    /// Whether the instance at `location` runs this probe (every instance does when the
    /// cluster does not vote).
    pub fn runs_at(&self, location: &str) -> bool {
        self.votes
            .as_ref()
            .is_none_or(|v| v.locations.iter().any(|l| l == location))
    }
}

/// A `/probe` module: a check whose target is filled in from the request.
#[derive(Debug, Clone)]
pub struct Module {
    pub timeout: Duration,
    pub check: Check,
    /// The built-in `dns` module has no name of its own: the request must give `name=`.
    pub requires_name: bool,
    /// The targets the module may be aimed at; empty: any (only for a module without
    /// secret headers).
    pub allow: Vec<Allow>,
}

/// One `allow` entry of a module.
#[derive(Debug, Clone, PartialEq)]
pub enum Allow {
    /// This host name exactly.
    Host(String),
    /// Any name under this domain (`*.example.com`).
    Under(String),
    /// Any address in this network (`10.0.0.0/8`, or one address).
    Net(ipnet::IpNet),
}

impl Allow {
    fn parse(s: &str) -> Option<Allow> {
        if let Ok(n) = s.parse::<ipnet::IpNet>() {
            return Some(Allow::Net(n));
        }
        if let Ok(ip) = s.parse::<IpAddr>() {
            return Some(Allow::Net(ipnet::IpNet::from(ip)));
        }
        if let Some(domain) = s.strip_prefix("*.") {
            return super::icmp::valid_host(domain)
                .then(|| Allow::Under(domain.to_ascii_lowercase()));
        }
        super::icmp::valid_host(s).then(|| Allow::Host(s.to_ascii_lowercase()))
    }
}

impl Module {
    /// Whether the module sends secrets (headers from the environment, logins) with its
    /// requests: then it may only be aimed at the targets in `allow`.
    pub fn carries_secrets(&self) -> bool {
        matches!(&self.check, Check::Http(h) if !h.secret_headers.is_empty())
    }

    /// Whether a target named `host`, which resolved to `addrs`, is allowed: by its name,
    /// or with every address it resolved to inside an allowed network (a name an attacker
    /// controls could resolve anywhere).
    pub fn admits(&self, host: &str, addrs: &[IpAddr]) -> bool {
        if self.allow.is_empty() {
            return true;
        }
        let host = host.trim_end_matches('.').to_ascii_lowercase();
        let by_name = self.allow.iter().any(|a| match a {
            Allow::Host(h) => *h == host,
            Allow::Under(d) => host.ends_with(&format!(".{d}")),
            Allow::Net(_) => false,
        });
        let by_address = !addrs.is_empty()
            && addrs.iter().all(|ip| {
                self.allow
                    .iter()
                    .any(|a| matches!(a, Allow::Net(n) if n.contains(ip)))
            });
        by_name || by_address
    }
}

#[derive(Debug, Clone)]
pub struct Level {
    pub after: Duration,
    /// Addresses, `rotation:NAME` and channels (`slack:ops`).
    pub to: Vec<String>,
    /// The last level only: reminded this often while unacknowledged.
    pub repeat_every: Option<Duration>,
}

#[derive(Debug, Clone)]
pub struct Maintenance {
    /// `None` for a window from probes.yaml; the store's id for one added through the API.
    pub id: Option<i64>,
    pub service: String,
    pub start: SystemTime,
    pub duration: Duration,
    pub announce_before: Vec<Duration>,
    /// What is done, for the notices (`note` in templates).
    pub note: String,
}

impl Maintenance {
    pub fn end(&self) -> SystemTime {
        self.start + self.duration
    }

    /// Names the window in the store's notices: stable across restarts and reloads.
    pub fn key(&self) -> String {
        match self.id {
            Some(id) => format!("api:{id}"),
            None => format!(
                "cfg:{}:{}",
                self.service,
                self.start
                    .duration_since(SystemTime::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0)
            ),
        }
    }
}

/// `defaults:`, what every service and probe starts from.
pub(super) struct Defaults<'r> {
    raw: Option<&'r RawDefaults>,
    path: Path,
    pub(super) interval: Duration,
    pub(super) timeout: Duration,
    failure: u32,
    success: u32,
}

pub(super) fn resolve_defaults<'r>(cx: &mut Ctx, raw: Option<&'r RawDefaults>) -> Defaults<'r> {
    let dp = Path::root().key("defaults");
    let d = raw;
    let interval = d
        .and_then(|d| d.interval.as_deref())
        .and_then(|s| cx.positive_duration(&dp.key("interval"), s))
        .unwrap_or(DEFAULT_INTERVAL);
    let timeout = d
        .and_then(|d| d.timeout.as_deref())
        .and_then(|s| cx.positive_duration(&dp.key("timeout"), s))
        .unwrap_or(DEFAULT_TIMEOUT);
    let failure = threshold(
        cx,
        &dp.key("failure_threshold"),
        d.and_then(|d| d.failure_threshold),
        3,
    );
    let success = threshold(
        cx,
        &dp.key("success_threshold"),
        d.and_then(|d| d.success_threshold),
        2,
    );
    Defaults {
        raw,
        path: dp,
        interval,
        timeout,
        failure,
        success,
    }
}

/// Every service with its probes; the escalation policies and audiences they name must
/// exist in `raw`.
pub(super) fn resolve_services(cx: &mut Ctx, raw: &RawConfig, def: &Defaults) -> Vec<Service> {
    let escalation_names: Vec<String> = raw.escalation.keys().cloned().collect();
    let audience_names: Vec<String> = raw.audiences.keys().cloned().collect();
    let mut services = Vec::new();
    let mut seen_ids: HashMap<String, usize> = HashMap::new();
    let mut seen_probes: HashMap<String, String> = HashMap::new();
    for (i, rs) in raw.services.iter().enumerate() {
        let sp = Path::root().key("services").index(i);
        if !valid_id(&rs.id) {
            cx.err(&sp.key("id"), format!("service id `{}` may hold only lowercase letters, digits, `-` and `_` (it names files and URLs)", rs.id));
        }
        if let Some(first) = seen_ids.insert(rs.id.clone(), i) {
            cx.err(
                &sp.key("id"),
                format!("duplicate service id `{}` (also services[{first}])", rs.id),
            );
        }
        let customer_threshold = rs
            .customer_threshold
            .as_deref()
            .and_then(|s| cx.positive_duration(&sp.key("customer_threshold"), s))
            .unwrap_or(DEFAULT_CUSTOMER_THRESHOLD);
        match &rs.escalation {
            Some(e) if !raw.escalation.contains_key(e) => {
                cx.err(
                    &sp.key("escalation"),
                    undefined("escalation policy", e, "escalation", &escalation_names),
                );
            }
            Some(_) => {}
            None => cx.warn(
                &sp.key("id"),
                format!(
                    "service `{}` names no `escalation` policy: its incidents open and mail nobody; add `escalation: NAME` (a policy under `escalation:`)",
                    rs.id
                ),
            ),
        }
        if let Some(a) = &rs.audience {
            if !raw.audiences.contains_key(a) {
                cx.err(
                    &sp.key("audience"),
                    undefined("audience", a, "audiences", &audience_names),
                );
            }
        }
        let failure_threshold = threshold(
            cx,
            &sp.key("failure_threshold"),
            rs.failure_threshold,
            def.failure,
        );
        let success_threshold = threshold(
            cx,
            &sp.key("success_threshold"),
            rs.success_threshold,
            def.success,
        );
        if rs.probes.is_empty() {
            cx.err(
                &sp.key("id"),
                format!(
                    "service `{}` has no probes: add at least one under `probes`",
                    rs.id
                ),
            );
        }
        let mut probes = Vec::new();
        for (j, rp) in rs.probes.iter().enumerate() {
            let pp = sp.key("probes").index(j);
            if rp.name.trim().is_empty() || rp.name.contains('/') {
                cx.err(
                    &pp.key("name"),
                    "probe name must not be empty nor contain `/`",
                );
            }
            if let Some(other) = seen_probes.insert(rp.name.clone(), rs.id.clone()) {
                cx.err(&pp.key("name"), format!("duplicate probe name `{}` (also in service `{other}`); probe names are unique across services", rp.name));
            }
            let interval_path = if rp.interval.is_some() {
                pp.key("interval")
            } else {
                def.path.key("interval")
            };
            let interval = rp
                .interval
                .as_deref()
                .and_then(|s| cx.positive_duration(&pp.key("interval"), s))
                .unwrap_or(def.interval);
            let timeout = rp
                .timeout
                .as_deref()
                .and_then(|s| cx.positive_duration(&pp.key("timeout"), s))
                .unwrap_or(def.timeout);
            if interval < MIN_INTERVAL {
                cx.err(
                    &interval_path,
                    format!(
                        "interval {} is too short: the minimum is 100ms",
                        fmt_dur(interval)
                    ),
                );
            }
            // A heartbeat is decided in an instant from its pings: no timeout to fit.
            if timeout >= interval && rp.heartbeat.is_none() {
                let tp = if rp.timeout.is_some() {
                    pp.key("timeout")
                } else if rp.interval.is_some() {
                    pp.key("interval")
                } else if def.raw.and_then(|d| d.timeout.as_ref()).is_some() {
                    def.path.key("timeout")
                } else {
                    def.path.key("interval")
                };
                // Both from `defaults`: one error where they are written, not one per probe.
                let msg = if rp.timeout.is_none() && rp.interval.is_none() {
                    format!(
                        "`defaults.timeout` {} must be shorter than `defaults.interval` {}",
                        fmt_dur(timeout),
                        fmt_dur(interval)
                    )
                } else {
                    format!(
                        "probe `{}`: timeout {} must be shorter than its interval {}",
                        rp.name,
                        fmt_dur(timeout),
                        fmt_dur(interval)
                    )
                };
                cx.err(&tp, msg);
            }
            let check = check_of(cx, &pp, rp.kinds(), true);
            if let Some(check) = check {
                probes.push(Arc::new(Probe {
                    service: rs.id.clone(),
                    name: rp.name.clone(),
                    interval,
                    timeout,
                    canary: rp.canary,
                    check,
                    votes: None,
                }));
            }
        }
        let compensation = rs.compensation.as_ref().and_then(|c| {
            let cp = sp.key("compensation");
            let after = cx.positive_duration(&cp.key("after"), &c.after);
            let path = cx.file(&c.codes_csv);
            // Its rows are checked with the audiences (`tocsin check`), by line.
            if !path.is_file() {
                cx.err(
                    &cp.key("codes_csv"),
                    format!("codes file `{}` does not exist", path.display()),
                );
            }
            Some(Compensation {
                after: after?,
                codes_csv: path,
            })
        });
        let group = rs.group.as_ref().and_then(|g| {
            let g = g.trim();
            if g.is_empty() || g.contains(['\n', '\r']) || g.chars().count() > 80 {
                cx.err(
                    &sp.key("group"),
                    "`group` is a heading of one line, at most 80 characters, such as `Payments`",
                );
                None
            } else {
                Some(g.to_string())
            }
        });
        let public_from = match rs.public_from.as_deref() {
            None | Some("staff") => PublicFrom::Staff,
            Some("customer") => PublicFrom::Customer,
            Some(other) => {
                cx.err(
                    &sp.key("public_from"),
                    format!("`public_from` is `staff` (incidents are public as soon as they open) or `customer` (once customers are told), not `{other}`"),
                );
                PublicFrom::Staff
            }
        };
        services.push(Service {
            id: rs.id.clone(),
            name: rs.name.clone().unwrap_or_else(|| rs.id.clone()),
            group,
            customer_threshold,
            escalation: rs.escalation.clone(),
            audience: rs.audience.clone(),
            failure_threshold,
            success_threshold,
            compensation,
            depends_on: rs.depends_on.clone(),
            public_from,
            probes,
        });
    }
    check_dependencies(cx, raw);
    services
}

/// Every `depends_on` names another service, once, and no chain of them comes back to
/// where it started (the cycle is spelled out).
fn check_dependencies(cx: &mut Ctx, raw: &RawConfig) {
    let ids: Vec<String> = raw.services.iter().map(|s| s.id.clone()).collect();
    for (i, rs) in raw.services.iter().enumerate() {
        let dp = Path::root().key("services").index(i).key("depends_on");
        let mut seen = BTreeSet::new();
        for (j, d) in rs.depends_on.iter().enumerate() {
            if *d == rs.id {
                cx.err(
                    &dp.index(j),
                    format!("service `{d}` cannot depend on itself"),
                );
            } else if !ids.contains(d) {
                cx.err(&dp.index(j), undefined("service", d, "services", &ids));
            } else if !seen.insert(d) {
                cx.err(&dp.index(j), format!("`{d}` is listed twice"));
            }
        }
    }
    // A depth-first walk from each service, in file order; a cycle is reported once, at
    // the first service of it in the file.
    let deps: BTreeMap<&str, Vec<&str>> = raw
        .services
        .iter()
        .map(|s| {
            (
                s.id.as_str(),
                s.depends_on
                    .iter()
                    .map(String::as_str)
                    .filter(|d| *d != s.id && ids.iter().any(|i| i == d))
                    .collect(),
            )
        })
        .collect();
    let mut reported: BTreeSet<Vec<&str>> = BTreeSet::new();
    for (i, rs) in raw.services.iter().enumerate() {
        if let Some(cycle) = cycle_from(&deps, &rs.id) {
            let mut key = cycle.clone();
            key.sort();
            key.dedup();
            if reported.insert(key) {
                cx.err(
                    &Path::root().key("services").index(i).key("depends_on"),
                    format!(
                        "dependencies go round in a circle: {}; a service cannot need what needs it, remove one of these",
                        cycle.join(" → ")
                    ),
                );
            }
        }
    }
}

/// The cycle through `start`, as `start → … → start`, if there is one.
fn cycle_from<'a>(deps: &BTreeMap<&'a str, Vec<&'a str>>, start: &'a str) -> Option<Vec<&'a str>> {
    fn walk<'a>(
        deps: &BTreeMap<&'a str, Vec<&'a str>>,
        start: &'a str,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> bool {
        let here = *path.last().expect("the path starts at `start`");
        for next in deps.get(here).into_iter().flatten() {
            if *next == start {
                path.push(next);
                return true;
            }
            if path.contains(next) || !done.insert(next) {
                continue;
            }
            path.push(next);
            if walk(deps, start, path, done) {
                return true;
            }
            path.pop();
        }
        false
    }
    let mut path = vec![start];
    let mut done = BTreeSet::new();
    walk(deps, start, &mut path, &mut done).then_some(path)
}

/// The one check of a probe (`need_target`) or of a module (target from the request).
pub(super) fn check_of(cx: &mut Ctx, p: &Path, k: RawKinds, need_target: bool) -> Option<Check> {
    let given = k.given();
    match given.as_slice() {
        [] => {
            cx.err(
                p,
                "needs one of `http`, `dns`, `tcp`, `udp`, `icmp`, `grpc` or `heartbeat` to say what to check",
            );
            None
        }
        [kind] => {
            let p = p.key(kind);
            if let Some(h) = k.http {
                http_check(cx, &p, h, need_target).map(Check::Http)
            } else if let Some(d) = k.dns {
                dns_check(cx, &p, d, need_target).map(Check::Dns)
            } else if let Some(t) = k.tcp {
                tcp_check(cx, &p, t, need_target).map(Check::Tcp)
            } else if let Some(u) = k.udp {
                udp_check(cx, &p, u, need_target).map(Check::Udp)
            } else if let Some(g) = k.grpc {
                grpc_check(cx, &p, g, need_target).map(Check::Grpc)
            } else if let Some(h) = k.heartbeat {
                heartbeat_check(cx, &p, h, need_target).map(Check::Heartbeat)
            } else {
                k.icmp
                    .and_then(|i| icmp_check(cx, &p, i, need_target))
                    .map(Check::Icmp)
            }
        }
        many => {
            cx.err(
                &p.key(many[1]),
                format!(
                    "has both `{}` and `{}`: one probe checks one thing; split it into two probes",
                    many[0], many[1]
                ),
            );
            None
        }
    }
}

pub(super) fn resolve_modules(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawModule>,
    def_timeout: Duration,
) -> BTreeMap<String, Module> {
    let mut out = BTreeMap::new();
    // Built-in modules with every default; config entries of the same name replace them.
    let builtin_http =
        HttpCheck::get(url::Url::parse("http://module.invalid/").expect("static URL"));
    out.insert(
        "http".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Http(builtin_http),
            requires_name: false,
            allow: Vec::new(),
        },
    );
    out.insert(
        "tcp".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Tcp(TcpCheck {
                address: String::new(),
                tls: None,
                send: None,
                expect: None,
                cert_min_days: None,
                ip: IpProtocol::default(),
                starttls: None,
            }),
            requires_name: false,
            allow: Vec::new(),
        },
    );
    out.insert(
        "icmp".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Icmp(IcmpCheck {
                host: String::new(),
                count: 1,
                ip: IpProtocol::default(),
            }),
            requires_name: false,
            allow: Vec::new(),
        },
    );
    out.insert(
        "grpc".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Grpc(GrpcCheck {
                address: String::new(),
                service: String::new(),
                tls: None,
                cert_min_days: None,
                ip: IpProtocol::default(),
            }),
            requires_name: false,
            allow: Vec::new(),
        },
    );
    out.insert(
        "dns".to_string(),
        Module {
            timeout: def_timeout,
            check: Check::Dns(DnsCheck {
                name: hickory_resolver::Name::root(),
                record_type: hickory_resolver::proto::rr::RecordType::A,
                server: None,
                protocol: DnsProtocol::Udp,
                expect: Vec::new(),
                expect_rcode: Rcode::NoError,
                validate_answer: RrRules::default(),
                validate_authority: RrRules::default(),
                validate_additional: RrRules::default(),
                dnssec: false,
            }),
            requires_name: true,
            allow: Vec::new(),
        },
    );
    for (name, m) in raw {
        let mp = Path::root().key("modules").key(name);
        let timeout = m
            .timeout
            .as_deref()
            .and_then(|s| cx.positive_duration(&mp.key("timeout"), s))
            .unwrap_or(def_timeout);
        let mut allow = Vec::new();
        for (i, a) in m.allow.iter().enumerate() {
            match Allow::parse(a) {
                Some(rule) => allow.push(rule),
                None => cx.err(
                    &mp.key("allow").index(i),
                    format!("`{a}` is not a host name, `*.domain`, IP address or network such as 10.0.0.0/8"),
                ),
            }
        }
        if let Some(check) = check_of(cx, &mp, m.kinds(), false) {
            let module = Module {
                timeout,
                check,
                requires_name: false,
                allow,
            };
            if module.carries_secrets() && module.allow.is_empty() {
                cx.err(
                    &mp,
                    format!("module `{name}` sends secret headers (headers_env, basic_auth, bearer_token_env): list in `allow` the targets it may be aimed at, or anyone could have /probe send them elsewhere"),
                );
            }
            out.insert(name.clone(), module);
        }
    }
    out
}

pub(super) fn resolve_escalation(cx: &mut Ctx, raw: &RawConfig) -> BTreeMap<String, Vec<Level>> {
    let raw_levels = &raw.escalation.policies;
    let mut out = BTreeMap::new();
    for (name, levels) in raw_levels {
        let ep = Path::root().key("escalation").key(name);
        if levels.is_empty() {
            cx.err(&ep, format!("escalation policy `{name}` has no levels"));
        }
        let mut resolved = Vec::new();
        let mut prev = Duration::ZERO;
        for (i, l) in levels.iter().enumerate() {
            let lp = ep.index(i);
            let after = cx.duration(&lp.key("after"), &l.after).unwrap_or_default();
            if after < prev {
                cx.err(
                    &lp.key("after"),
                    format!(
                        "levels must be in order: `after: {}` comes before the previous level's {}",
                        l.after,
                        fmt_dur(prev)
                    ),
                );
            }
            prev = prev.max(after);
            if l.to.is_empty() {
                cx.err(
                    &lp.key("to"),
                    "`to` is empty: list at least one address, rotation or channel",
                );
            }
            super::oncall::check_targets(cx, &lp.key("to"), &l.to, &raw.rotations, &raw.channels);
            let repeat_every = l.repeat_every.as_ref().and_then(|r| {
                let rp = lp.key("repeat_every");
                let d = cx.positive_duration(&rp, r)?;
                if i + 1 != levels.len() {
                    cx.err(&rp, "`repeat_every` belongs on the last level: earlier levels are followed by the next one");
                    return None;
                }
                if d < Duration::from_secs(60) {
                    cx.err(&rp, format!("`repeat_every: {r}` is shorter than a minute: a reminder that often is noise"));
                    return None;
                }
                Some(d)
            });
            resolved.push(Level {
                after,
                to: l.to.clone(),
                repeat_every,
            });
        }
        out.insert(name.clone(), resolved);
    }
    out
}

pub(super) fn resolve_maintenance(
    cx: &mut Ctx,
    raw: &[RawMaintenance],
    services: &[String],
) -> Vec<Maintenance> {
    let mut out = Vec::new();
    for (i, m) in raw.iter().enumerate() {
        let mp = Path::root().key("maintenance").index(i);
        if !services.contains(&m.service) {
            cx.err(
                &mp.key("service"),
                undefined("service", &m.service, "services", services),
            );
        }
        let start = match crate::text::time::parse_time(&m.start) {
            Ok(t) => Some(t),
            Err(e) => {
                cx.err(&mp.key("start"), format!("`start`: {e}"));
                None
            }
        };
        let duration = cx.positive_duration(&mp.key("duration"), &m.duration);
        let announce_before: Vec<Duration> = m
            .announce_before
            .iter()
            .enumerate()
            .filter_map(|(j, s)| cx.duration(&mp.key("announce_before").index(j), s))
            .collect();
        if let (Some(start), Some(duration)) = (start, duration) {
            out.push(Maintenance {
                id: None,
                service: m.service.clone(),
                start,
                duration,
                announce_before,
                note: m.note.clone().unwrap_or_default(),
            });
        }
    }
    out
}
