//! Stage one of the config: the file's shape, exactly as written.
//!
//! Every struct refuses unknown keys. Values that need interpretation (durations,
//! URLs, regexes, addresses) stay strings here; `resolve` turns them into typed values
//! so that every mistake can be reported with its position, not only the first.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    pub listen: Option<String>,
    /// A second listener for /metrics, /probe and the JSON APIs, kept off the public one.
    pub internal_listen: Option<String>,
    /// Base of the links in mails and pages (default: http:// + listen).
    pub public_url: Option<String>,
    /// IANA zone in which staff type wall-clock ETAs (`14:00`); that of `pages` by default.
    pub staff_timezone: Option<String>,
    /// Accept a `public_url` customers cannot use safely (loopback, plain http): tests only.
    #[serde(default)]
    pub allow_insecure_links: bool,
    pub data_dir: Option<String>,
    /// `postgres://user@host:port/database`: the store on PostgreSQL instead of the
    /// SQLite file in `data_dir`.
    pub store: Option<String>,
    /// The variable holding the PostgreSQL password (default: `PGPASSWORD`).
    pub store_password_env: Option<String>,
    /// This instance's name among those sharing the store (default: the host name).
    pub location: Option<String>,
    /// Several instances on one PostgreSQL store, one of them deciding.
    pub cluster: Option<RawCluster>,
    pub max_concurrency: Option<usize>,
    pub metrics: Option<RawMetrics>,
    pub api: Option<RawApi>,
    pub defaults: Option<RawDefaults>,
    #[serde(default)]
    pub services: Vec<RawService>,
    #[serde(default)]
    pub modules: BTreeMap<String, RawModule>,
    #[serde(default)]
    pub escalation: RawEscalation,
    pub mail: Option<RawMail>,
    #[serde(default)]
    pub audiences: BTreeMap<String, RawAudience>,
    pub pages: Option<RawPages>,
    pub campaigns: Option<RawCampaigns>,
    pub company: Option<RawCompany>,
    #[serde(default)]
    pub maintenance: Vec<RawMaintenance>,
    pub autoresponder: Option<RawAutoresponder>,
    pub hotline: Option<RawHotline>,
    #[serde(default)]
    pub webhooks: Vec<RawIncidentWebhook>,
    #[serde(default)]
    pub rotations: BTreeMap<String, RawRotation>,
    #[serde(default)]
    pub channels: BTreeMap<String, RawChannel>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCluster {
    /// How long the leader's lease lasts without renewal (`15s`).
    pub lease: Option<String>,
    /// The locations expected to take part; each probes and votes.
    pub locations: Option<Vec<String>>,
    /// Locations that must see a probe failing (default: a majority).
    pub quorum: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    /// all | failing | none
    pub per_probe: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDefaults {
    pub interval: Option<String>,
    pub timeout: Option<String>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawService {
    pub id: String,
    pub name: Option<String>,
    /// Heading under which the status page lists it.
    pub group: Option<String>,
    pub customer_threshold: Option<String>,
    pub escalation: Option<String>,
    pub audience: Option<String>,
    pub failure_threshold: Option<u32>,
    pub success_threshold: Option<u32>,
    pub compensation: Option<RawCompensation>,
    /// From when its incidents are on the status page: `staff` (as soon as one opens) or
    /// `customer` (once customers are told).
    pub public_from: Option<String>,
    /// Services this one needs: while one of them has an incident open, a failure here
    /// is attached to it instead of opening an incident of its own.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// Locations that must see one of its probes failing (overrides `cluster.quorum`).
    pub quorum: Option<u32>,
    #[serde(default)]
    pub probes: Vec<RawProbe>,
}

/// A code per customer in the recovery mail after a long outage.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompensation {
    /// Outages at least this long earn a code.
    pub after: String,
    /// CSV with a `code` column: the pool of codes, each given out once.
    pub codes_csv: String,
}

/// The kinds' settings are boxed: a probe holds one of seven, and with room for all
/// seven inline the raw probes of a 20,000-probe file took 39 MB before anything was
/// resolved.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawProbe {
    pub name: String,
    pub interval: Option<String>,
    pub timeout: Option<String>,
    #[serde(default)]
    pub canary: bool,
    /// In a cluster, the locations that run it (default: all of `cluster.locations`).
    pub locations: Option<Vec<String>>,
    pub http: Option<Box<RawHttp>>,
    pub dns: Option<Box<RawDns>>,
    pub tcp: Option<Box<RawTcp>>,
    pub udp: Option<Box<RawUdp>>,
    pub icmp: Option<Box<RawIcmp>>,
    pub grpc: Option<Box<RawGrpc>>,
    pub heartbeat: Option<Box<RawHeartbeat>>,
}

/// A blackbox-style module for `/probe`: a probe without its target.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawModule {
    pub timeout: Option<String>,
    /// The targets this module may be aimed at (host names, `*.domain`, CIDRs); required
    /// when it carries secret headers.
    #[serde(default)]
    pub allow: Vec<String>,
    pub http: Option<Box<RawHttp>>,
    pub dns: Option<Box<RawDns>>,
    pub tcp: Option<Box<RawTcp>>,
    pub udp: Option<Box<RawUdp>>,
    pub icmp: Option<Box<RawIcmp>>,
    pub grpc: Option<Box<RawGrpc>>,
    pub heartbeat: Option<Box<RawHeartbeat>>,
}

/// The kinds of check a probe or module may give, each by its key; exactly one is set.
pub struct RawKinds<'a> {
    pub http: Option<&'a RawHttp>,
    pub dns: Option<&'a RawDns>,
    pub tcp: Option<&'a RawTcp>,
    pub udp: Option<&'a RawUdp>,
    pub icmp: Option<&'a RawIcmp>,
    pub grpc: Option<&'a RawGrpc>,
    pub heartbeat: Option<&'a RawHeartbeat>,
}

impl RawKinds<'_> {
    /// The keys given, in the order the error messages name them.
    pub fn given(&self) -> Vec<&'static str> {
        [
            ("http", self.http.is_some()),
            ("dns", self.dns.is_some()),
            ("tcp", self.tcp.is_some()),
            ("udp", self.udp.is_some()),
            ("icmp", self.icmp.is_some()),
            ("grpc", self.grpc.is_some()),
            ("heartbeat", self.heartbeat.is_some()),
        ]
        .iter()
        .filter(|(_, s)| *s)
        .map(|(n, _)| *n)
        .collect()
    }
}

/// `kinds()` for a struct with every kind's key (a probe, a module). serde's `flatten`
/// would share the fields themselves, but it cannot be combined with
/// `deny_unknown_fields`, which the error positions rely on.
macro_rules! kinds_of {
    ($t:ty) => {
        impl $t {
            pub fn kinds(&self) -> RawKinds<'_> {
                RawKinds {
                    http: self.http.as_deref(),
                    dns: self.dns.as_deref(),
                    tcp: self.tcp.as_deref(),
                    udp: self.udp.as_deref(),
                    icmp: self.icmp.as_deref(),
                    grpc: self.grpc.as_deref(),
                    heartbeat: self.heartbeat.as_deref(),
                }
            }
        }
    };
}

kinds_of!(RawProbe);
kinds_of!(RawModule);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHttp {
    pub url: Option<String>,
    pub ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub method: Option<String>,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Header name → environment variable holding its value (for secrets).
    #[serde(default)]
    pub headers_env: BTreeMap<String, String>,
    /// HTTP basic authentication, the login from the environment.
    pub basic_auth: Option<RawBasicAuth>,
    /// The environment variable holding a bearer token.
    pub bearer_token_env: Option<String>,
    /// An HTTP(S) proxy every request goes through (`http://proxy.internal:3128`).
    pub proxy_url: Option<String>,
    /// The proxy's login, from the environment.
    pub proxy_auth: Option<RawBasicAuth>,
    pub body: Option<String>,
    pub expect_status: Option<RawStatusList>,
    pub body_contains: Option<String>,
    pub body_not_contains: Option<String>,
    pub body_regex: Option<String>,
    #[serde(default)]
    pub body_json: Vec<RawJsonRule>,
    /// `"1.1"` or `"2"`: the version the response must come in.
    pub http_version: Option<String>,
    /// Response header → regex its values must match.
    #[serde(default)]
    pub header_matches: BTreeMap<String, String>,
    /// Response header → regex none of its values may match.
    #[serde(default)]
    pub header_not_matches: BTreeMap<String, String>,
    pub max_latency: Option<String>,
    pub cert_min_days: Option<u32>,
    pub follow_redirects: Option<RawRedirects>,
    pub max_body: Option<RawSize>,
    pub tls: Option<RawTls>,
    /// `"1.2"` or `"1.3"`: the oldest TLS version accepted.
    pub tls_min_version: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawBasicAuth {
    pub username_env: String,
    pub password_env: String,
}

/// One `body_json` rule: a JSONPath and one comparison.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawJsonRule {
    pub path: String,
    pub equals: Option<serde_json::Value>,
    pub not_equals: Option<serde_json::Value>,
    pub matches: Option<String>,
    pub at_least: Option<f64>,
    pub at_most: Option<f64>,
    pub exists: Option<bool>,
}

/// `expect_status: 200`, `"200-299"`, or a list of either.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawStatusList {
    One(RawStatus),
    Many(Vec<RawStatus>),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum RawStatus {
    Code(u32),
    Range(String),
}

/// `follow_redirects: true | false | <max count>`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawRedirects {
    Flag(bool),
    Count(u32),
}

/// A size: bytes as a number, or a string such as `512KiB`, `1MiB`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawSize {
    Bytes(u64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTls {
    pub ca_file: Option<String>,
    #[serde(default)]
    pub insecure_skip_verify: bool,
    pub server_name: Option<String>,
    /// The client certificate (PEM, leaf first) for mutual TLS, with `key_file`.
    pub cert_file: Option<String>,
    pub key_file: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDns {
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub record_type: Option<String>,
    pub server: Option<String>,
    pub protocol: Option<String>,
    #[serde(default)]
    pub expect: Vec<String>,
    pub expect_rcode: Option<String>,
    pub validate_answer: Option<RawRrRules>,
    pub validate_authority: Option<RawRrRules>,
    pub validate_additional: Option<RawRrRules>,
    #[serde(default)]
    pub dnssec: bool,
}

/// Regexes over a DNS section's records (blackbox's `validate_*_rrs`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRrRules {
    #[serde(default)]
    pub fail_if_matches: Vec<String>,
    #[serde(default)]
    pub fail_if_all_match: Vec<String>,
    #[serde(default)]
    pub fail_if_not_matches: Vec<String>,
    #[serde(default)]
    pub fail_if_none_matches: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTcp {
    pub address: Option<String>,
    pub ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub tls: Option<RawTcpTls>,
    pub tls_min_version: Option<String>,
    /// `smtp`, `imap` or `pop3`: upgrade to TLS with that protocol's command.
    pub starttls: Option<String>,
    pub send: Option<String>,
    pub expect: Option<String>,
    pub cert_min_days: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawUdp {
    pub address: Option<String>,
    pub ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
    pub send: Option<String>,
    pub expect: Option<String>,
}

/// A push monitor: `period` or `schedule` (with `timezone`), and `grace`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHeartbeat {
    pub period: Option<String>,
    pub schedule: Option<String>,
    pub timezone: Option<String>,
    pub grace: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawGrpc {
    pub address: Option<String>,
    /// The service asked about (`grpc.health.v1` names it); the whole server when absent.
    pub service: Option<String>,
    pub tls: Option<RawTcpTls>,
    pub tls_min_version: Option<String>,
    pub cert_min_days: Option<u32>,
    pub ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIcmp {
    pub host: Option<String>,
    pub count: Option<u16>,
    pub ip_protocol: Option<String>,
    pub ip_protocol_fallback: Option<bool>,
}

/// `tls: true` or `tls: { ca_file, insecure_skip_verify, server_name }`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawTcpTls {
    Flag(bool),
    Options(RawTls),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawLevel {
    pub after: String,
    pub to: Vec<String>,
    /// On the last level: remind it this often while the incident is unacknowledged.
    pub repeat_every: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMail {
    pub from: String,
    pub smtp: Option<String>,
    pub username_env: Option<String>,
    pub password_env: Option<String>,
    pub max_per_second: Option<u32>,
    /// Deadline of one SMTP exchange.
    pub timeout: Option<String>,
    /// Allow a session without TLS (only to a loopback server).
    #[serde(default)]
    pub allow_plain: bool,
    /// PEM file of the CA that signed the SMTP server's certificate (replaces the roots).
    pub ca_file: Option<String>,
    /// A campaign larger than this is refused.
    pub max_campaign_size: Option<u64>,
    /// SMTP connections (and messages in flight) a campaign uses at most.
    pub connections: Option<u32>,
    /// One signing key, or several (each makes its own signature).
    pub dkim: Option<RawDkimKeys>,
    /// The name tocsin gives itself in EHLO.
    pub helo: Option<String>,
    /// Takes unsubscribe requests by mail (`mailto:` in List-Unsubscribe).
    pub unsubscribe_address: Option<String>,
}

/// `dkim: { selector, key_file }` or a list of them.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawDkimKeys {
    One(RawDkim),
    Many(Vec<RawDkim>),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawDkim {
    /// `d=`; the From address's domain when absent.
    pub domain: Option<String>,
    pub selector: String,
    /// PEM private key (RSA or Ed25519).
    pub key_file: String,
    /// `rsa` or `ed25519`: what the selector's DNS record says (`k=`).
    pub algorithm: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCampaigns {
    /// Directory whose `<lang>/<name>` files replace or add to the shipped templates.
    pub templates: Option<String>,
    /// Least time between two update campaigns of one incident.
    pub update_every: Option<String>,
    /// Without an ETA, each message promises an update this long after it.
    pub next_update: Option<String>,
    /// Outages of several services that start within this long of each other reach a
    /// customer who follows more than one of them as one message.
    pub merge_window: Option<String>,
    /// `last`: one recovery message when the last merged service is back; `each`: one
    /// per service as it recovers.
    pub recovery: Option<String>,
    /// Staff are reminded this long before customers are due an update (`0s`: never).
    pub remind_before: Option<String>,
    pub subscriptions: Option<RawSubscriptions>,
}

/// Customers subscribing themselves on the status page (double opt-in).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSubscriptions {
    pub enabled: Option<bool>,
    /// Subscription requests one IP address may make an hour.
    pub per_ip_per_hour: Option<u32>,
    /// Confirmation mails one address may get a day.
    pub per_address_per_day: Option<u32>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCompany {
    pub name: Option<String>,
    pub phone: Option<String>,
    pub email: Option<String>,
    pub website: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAudience {
    pub csv: Option<String>,
    pub yaml: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPages {
    pub placeholder_dir: Option<String>,
    /// Language of the placeholder and status pages.
    pub language: Option<String>,
    /// IANA time zone of the times on the pages.
    pub timezone: Option<String>,
    pub webhook: Option<RawWebhook>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    pub url: String,
    /// Environment variable holding a bearer token for the webhook, if it needs one.
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMaintenance {
    pub service: String,
    pub start: String,
    pub duration: String,
    #[serde(default)]
    pub announce_before: Vec<String>,
    /// What is done, for the notices.
    pub note: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawApi {
    /// The environment variable holding the API's bearer token.
    pub token_env: Option<String>,
}

/// The mailbox autoresponder, installed over ManageSieve in the customer phase.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAutoresponder {
    /// `sieve://host:4190`.
    pub managesieve: String,
    pub user_env: String,
    pub password_env: String,
    /// Mailboxes to act for (SASL authorization identity); empty: the user's own.
    #[serde(default)]
    pub mailboxes: Vec<String>,
    #[serde(default)]
    pub allow_plain: bool,
    pub ca_file: Option<String>,
    pub timeout: Option<String>,
    /// Name of tocsin's script on the server.
    pub script: Option<String>,
    pub language: Option<String>,
    pub timezone: Option<String>,
    /// Sieve vacation `:days`: at most one reply per sender in this many days.
    pub days: Option<u32>,
}

/// The hotline announcement: text files per language and an optional hook.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHotline {
    pub dir: Option<String>,
    pub languages: Option<Vec<String>>,
    pub timezone: Option<String>,
    /// Command and arguments run with the announcement as JSON on standard input.
    pub hook: Option<Vec<String>>,
    pub hook_timeout: Option<String>,
    /// Variables of tocsin's environment the hook may see.
    #[serde(default)]
    pub hook_env: Vec<String>,
}

/// A receiver of incident transitions (chat, paging tools).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawIncidentWebhook {
    pub url: String,
    /// The environment variable holding the HMAC-SHA256 key that signs each body.
    pub secret_env: String,
    /// Transitions sent (default: all).
    pub events: Option<Vec<String>>,
}

/// `escalation:`: the policies by name, beside two settings of their own.
#[derive(Debug, Default)]
pub struct RawEscalation {
    /// How long an opening waits for others of the same policy to share one staff mail.
    pub group_wait: Option<String>,
    /// The same for later levels, reminders and "resolved".
    pub group_interval: Option<String>,
    pub policies: BTreeMap<String, Vec<RawLevel>>,
}

impl RawEscalation {
    pub fn keys(&self) -> impl Iterator<Item = &String> {
        self.policies.keys()
    }

    pub fn contains_key(&self, name: &str) -> bool {
        self.policies.contains_key(name)
    }
}

// By hand: serde's `flatten` would give up the positions and "did you mean" of every
// error inside a policy; this reads the two settings by name and every other key as a
// policy, through the same deserializer.
impl<'de> Deserialize<'de> for RawEscalation {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Visit;
        impl<'de> serde::de::Visitor<'de> for Visit {
            type Value = RawEscalation;
            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of escalation policies (and group_wait, group_interval)")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<RawEscalation, A::Error> {
                let mut out = RawEscalation::default();
                while let Some(key) = map.next_key::<String>()? {
                    match key.as_str() {
                        "group_wait" => out.group_wait = Some(map.next_value()?),
                        "group_interval" => out.group_interval = Some(map.next_value()?),
                        _ => {
                            let levels = map.next_value()?;
                            out.policies.insert(key, levels);
                        }
                    }
                }
                Ok(out)
            }
        }
        d.deserialize_map(Visit)
    }
}

/// An on-call rotation: members take turns of `every` from `start`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawRotation {
    pub members: Vec<String>,
    pub every: String,
    /// RFC 3339 with its offset: the first hand-off.
    pub start: String,
    /// IANA zone whose wall clock day-long turns hand off by (default: that of `start`'s
    /// offset, as UTC).
    pub timezone: Option<String>,
}

/// A chat or paging channel: exactly one of the kinds.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawChannel {
    pub slack: Option<RawHookChannel>,
    pub teams: Option<RawHookChannel>,
    pub mattermost: Option<RawHookChannel>,
    pub discord: Option<RawHookChannel>,
    pub telegram: Option<RawTelegram>,
    pub ntfy: Option<RawNtfy>,
    pub matrix: Option<RawMatrix>,
    pub pagerduty: Option<RawPagerDuty>,
    pub opsgenie: Option<RawOpsgenie>,
    pub webhook: Option<RawCustomChannel>,
}

/// A channel whose incoming-webhook URL is its secret (Slack, Teams, Mattermost,
/// Discord).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawHookChannel {
    pub url_env: String,
}

/// A chat id is a number (`-1001234567890`) or a channel's `@name`.
#[derive(Debug, Deserialize)]
#[serde(untagged)]
pub enum RawChatId {
    Number(i64),
    Text(String),
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTelegram {
    pub token_env: String,
    pub chat_id: RawChatId,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawNtfy {
    pub topic: String,
    pub url: Option<String>,
    pub token_env: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMatrix {
    /// The homeserver.
    pub url: String,
    pub room: String,
    pub token_env: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPagerDuty {
    pub routing_key_env: String,
    pub url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawOpsgenie {
    pub api_key_env: String,
    pub url: Option<String>,
}

/// A webhook whose body is a template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawCustomChannel {
    pub url: Option<String>,
    pub url_env: Option<String>,
    pub body: String,
    pub content_type: Option<String>,
    /// Signs each body as the incident webhooks do (`X-Tocsin-Signature`).
    pub secret_env: Option<String>,
}
