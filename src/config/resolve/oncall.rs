//! On-call: rotations, the chat and paging channels, and what an escalation level's
//! `to:` may name (an address, `rotation:NAME`, `KIND:NAME` of a channel).

use super::cx::*;
use crate::oncall::{CHANNEL_KINDS, Rotation, Target};

/// A secret named by an environment variable, with its value at load (None when unset:
/// `tocsin check` does not need it, `tocsin run` refuses to start without it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnvSecret {
    pub var: String,
    pub value: Option<Secret>,
}

/// Where a channel's messages go, and with which credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Vendor {
    /// Incoming webhook; Block Kit.
    Slack {
        url: EnvSecret,
    },
    /// Workflows webhook; an Adaptive Card.
    Teams {
        url: EnvSecret,
    },
    Mattermost {
        url: EnvSecret,
    },
    Discord {
        url: EnvSecret,
    },
    /// Bot API `sendMessage` at `api` (default https://api.telegram.org).
    Telegram {
        api: url::Url,
        token: EnvSecret,
        chat_id: String,
    },
    /// Publishes to `topic` on `server` (default https://ntfy.sh).
    Ntfy {
        server: url::Url,
        topic: String,
        token: Option<EnvSecret>,
    },
    /// `m.room.message` into `room` through the client-server API of `homeserver`.
    Matrix {
        homeserver: url::Url,
        room: String,
        token: EnvSecret,
    },
    /// Events API v2 (default https://events.pagerduty.com/v2/enqueue).
    PagerDuty {
        url: url::Url,
        routing_key: EnvSecret,
    },
    /// Alert API v2 (default https://api.opsgenie.com).
    Opsgenie {
        url: url::Url,
        api_key: EnvSecret,
    },
    /// A webhook whose body is the template `body`.
    Webhook {
        url: Result<url::Url, EnvSecret>,
        body: String,
        content_type: String,
        signing: Option<EnvSecret>,
    },
}

impl Vendor {
    /// The kind, as a level names it (`slack` in `slack:ops`).
    pub fn kind(&self) -> &'static str {
        match self {
            Vendor::Slack { .. } => "slack",
            Vendor::Teams { .. } => "teams",
            Vendor::Mattermost { .. } => "mattermost",
            Vendor::Discord { .. } => "discord",
            Vendor::Telegram { .. } => "telegram",
            Vendor::Ntfy { .. } => "ntfy",
            Vendor::Matrix { .. } => "matrix",
            Vendor::PagerDuty { .. } => "pagerduty",
            Vendor::Opsgenie { .. } => "opsgenie",
            Vendor::Webhook { .. } => "webhook",
        }
    }

    /// The secrets it needs, each with its variable.
    pub fn secrets(&self) -> Vec<&EnvSecret> {
        match self {
            Vendor::Slack { url }
            | Vendor::Teams { url }
            | Vendor::Mattermost { url }
            | Vendor::Discord { url } => vec![url],
            Vendor::Telegram { token, .. } | Vendor::Matrix { token, .. } => vec![token],
            Vendor::Ntfy { token, .. } => token.iter().collect(),
            Vendor::PagerDuty { routing_key, .. } => vec![routing_key],
            Vendor::Opsgenie { api_key, .. } => vec![api_key],
            Vendor::Webhook { url, signing, .. } => url
                .as_ref()
                .err()
                .into_iter()
                .chain(signing.iter())
                .collect(),
        }
    }

    /// Every secret it needs that the environment did not give set to `value` (a drill
    /// builds messages without sending them).
    pub fn fill_secrets(&mut self, value: Secret) {
        let fill = |s: &mut EnvSecret| {
            s.value.get_or_insert_with(|| value.clone());
        };
        match self {
            Vendor::Slack { url }
            | Vendor::Teams { url }
            | Vendor::Mattermost { url }
            | Vendor::Discord { url } => fill(url),
            Vendor::Telegram { token, .. } | Vendor::Matrix { token, .. } => fill(token),
            Vendor::Ntfy { token, .. } => token.iter_mut().for_each(fill),
            Vendor::PagerDuty { routing_key, .. } => fill(routing_key),
            Vendor::Opsgenie { api_key, .. } => fill(api_key),
            Vendor::Webhook { url, signing, .. } => {
                if let Err(e) = url {
                    fill(e);
                }
                signing.iter_mut().for_each(fill);
            }
        }
    }

    /// Where it posts, with every secret hidden: for `tocsin check`, logs and the API.
    pub fn redacted(&self) -> String {
        let host = |u: &url::Url| format!("{}://{}", u.scheme(), u.host_str().unwrap_or(""));
        match self {
            Vendor::Slack { url }
            | Vendor::Teams { url }
            | Vendor::Mattermost { url }
            | Vendor::Discord { url } => format!("the URL in ${}", url.var),
            Vendor::Telegram { api, chat_id, .. } => format!("{} chat {chat_id}", host(api)),
            Vendor::Ntfy { server, topic, .. } => format!("{} topic {topic}", host(server)),
            Vendor::Matrix {
                homeserver, room, ..
            } => format!("{} room {room}", host(homeserver)),
            Vendor::PagerDuty { url, .. } | Vendor::Opsgenie { url, .. } => host(url),
            Vendor::Webhook { url, .. } => match url {
                Ok(u) => host(u),
                Err(e) => format!("the URL in ${}", e.var),
            },
        }
    }
}

/// A named channel of the `channels:` block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatChannel {
    pub name: String,
    pub vendor: Vendor,
}

impl ChatChannel {
    /// How levels name it: `slack:ops`.
    pub fn target(&self) -> String {
        format!("{}:{}", self.vendor.kind(), self.name)
    }
}

pub(super) fn resolve_rotations(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawRotation>,
    default_zone: &str,
) -> BTreeMap<String, Rotation> {
    let mut out = BTreeMap::new();
    for (name, r) in raw {
        let p = Path::root().key("rotations").key(name);
        if !valid_name(name) {
            cx.err(
                &p,
                format!("rotation name `{name}` may hold only letters, digits, `-` and `_`"),
            );
        }
        if r.members.is_empty() {
            cx.err(
                &p.key("members"),
                "`members` is empty: list who takes turns, by mail address",
            );
        }
        let mut seen = BTreeSet::new();
        for (i, m) in r.members.iter().enumerate() {
            if !valid_email(m) {
                cx.err(
                    &p.key("members").index(i),
                    format!("`{m}` is not an email address"),
                );
            } else if !seen.insert(m.to_ascii_lowercase()) {
                cx.err(
                    &p.key("members").index(i),
                    format!("`{m}` is listed twice: list each member once, in turn order"),
                );
            }
        }
        let every = cx.positive_duration(&p.key("every"), &r.every);
        if every.is_some_and(|d| d < Duration::from_secs(3600)) {
            cx.err(
                &p.key("every"),
                format!(
                    "`every: {}` is shorter than an hour: a turn is a shift (1d, 1w, 12h)",
                    r.every
                ),
            );
        }
        let start = match crate::text::time::parse_time(&r.start) {
            Ok(t) => Some(t),
            Err(e) => {
                cx.err(&p.key("start"), format!("`start`: {e}"));
                None
            }
        };
        let zone = r.timezone.as_deref().unwrap_or(default_zone);
        let timezone = match zone.parse::<chrono_tz::Tz>() {
            Ok(z) => Some(z),
            Err(_) => {
                cx.err(
                    &p.key("timezone"),
                    format!(
                        "`timezone` must be an IANA time zone such as Europe/Warsaw, not `{zone}`"
                    ),
                );
                None
            }
        };
        if let (Some(every), Some(start), Some(timezone)) = (every, start, timezone) {
            out.insert(
                name.clone(),
                Rotation {
                    name: name.clone(),
                    members: r.members.clone(),
                    every,
                    start,
                    timezone,
                },
            );
        }
    }
    out
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
}

pub(super) fn resolve_channels(
    cx: &mut Ctx,
    raw: &BTreeMap<String, RawChannel>,
) -> BTreeMap<String, ChatChannel> {
    let mut out = BTreeMap::new();
    for (name, c) in raw {
        let p = Path::root().key("channels").key(name);
        if !valid_name(name) {
            cx.err(
                &p,
                format!("channel name `{name}` may hold only letters, digits, `-` and `_`"),
            );
        }
        let Some(_) = raw_kind(c) else {
            let given: Vec<&str> = CHANNEL_KINDS
                .iter()
                .copied()
                .filter(|k| kinds_set(c).contains(k))
                .collect();
            let what = if given.is_empty() {
                "names no kind".to_string()
            } else {
                format!("names {} kinds ({})", given.len(), given.join(", "))
            };
            cx.err(
                &p,
                format!(
                    "channel `{name}` {what}: give exactly one of {}",
                    CHANNEL_KINDS.join(", ")
                ),
            );
            continue;
        };
        let vendor = if let Some(h) = &c.slack {
            Some(Vendor::Slack {
                url: env(cx, &p.key("slack"), "url_env", &h.url_env),
            })
        } else if let Some(h) = &c.teams {
            Some(Vendor::Teams {
                url: env(cx, &p.key("teams"), "url_env", &h.url_env),
            })
        } else if let Some(h) = &c.mattermost {
            Some(Vendor::Mattermost {
                url: env(cx, &p.key("mattermost"), "url_env", &h.url_env),
            })
        } else if let Some(h) = &c.discord {
            Some(Vendor::Discord {
                url: env(cx, &p.key("discord"), "url_env", &h.url_env),
            })
        } else if let Some(t) = &c.telegram {
            let tp = p.key("telegram");
            let chat_id = match &t.chat_id {
                RawChatId::Number(n) => n.to_string(),
                RawChatId::Text(s) => s.trim().to_string(),
            };
            let numeric = chat_id
                .strip_prefix('-')
                .unwrap_or(&chat_id)
                .chars()
                .all(|c| c.is_ascii_digit())
                && !chat_id.is_empty();
            if !numeric && !chat_id.starts_with('@') {
                cx.err(&tp.key("chat_id"), format!("`chat_id` is a chat's number (-1001234567890) or a channel's @name, not `{chat_id}`"));
            }
            let token = env(cx, &tp, "token_env", &t.token_env);
            endpoint(
                cx,
                &tp.key("url"),
                t.url.as_deref(),
                "https://api.telegram.org",
            )
            .map(|api| Vendor::Telegram {
                api,
                token,
                chat_id,
            })
        } else if let Some(n) = &c.ntfy {
            let np = p.key("ntfy");
            if n.topic.is_empty()
                || !n
                    .topic
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                || n.topic.len() > 64
            {
                cx.err(
                    &np.key("topic"),
                    format!(
                        "`topic` is up to 64 letters, digits, `-` or `_` (ntfy's rule), not `{}`",
                        n.topic
                    ),
                );
            }
            let token = n.token_env.as_ref().map(|v| env(cx, &np, "token_env", v));
            endpoint(cx, &np.key("url"), n.url.as_deref(), "https://ntfy.sh").map(|server| {
                Vendor::Ntfy {
                    server,
                    topic: n.topic.clone(),
                    token,
                }
            })
        } else if let Some(m) = &c.matrix {
            let mp = p.key("matrix");
            if !(m.room.starts_with('!') && m.room.contains(':')) {
                cx.err(&mp.key("room"), format!("`room` is a room id such as !AbCdEf:matrix.example.org (Room settings, Advanced), not `{}`", m.room));
            }
            let token = env(cx, &mp, "token_env", &m.token_env);
            endpoint(cx, &mp.key("url"), Some(&m.url), "").map(|homeserver| Vendor::Matrix {
                homeserver,
                room: m.room.clone(),
                token,
            })
        } else if let Some(d) = &c.pagerduty {
            let dp = p.key("pagerduty");
            let routing_key = env(cx, &dp, "routing_key_env", &d.routing_key_env);
            endpoint(
                cx,
                &dp.key("url"),
                d.url.as_deref(),
                "https://events.pagerduty.com/v2/enqueue",
            )
            .map(|url| Vendor::PagerDuty { url, routing_key })
        } else if let Some(o) = &c.opsgenie {
            let op = p.key("opsgenie");
            let api_key = env(cx, &op, "api_key_env", &o.api_key_env);
            endpoint(
                cx,
                &op.key("url"),
                o.url.as_deref(),
                "https://api.opsgenie.com",
            )
            .map(|url| Vendor::Opsgenie { url, api_key })
        } else if let Some(w) = &c.webhook {
            custom(cx, &p.key("webhook"), w)
        } else {
            None
        };
        if let Some(vendor) = vendor {
            out.insert(
                name.clone(),
                ChatChannel {
                    name: name.clone(),
                    vendor,
                },
            );
        }
    }
    out
}

/// The kind a channel names, when it names exactly one.
fn raw_kind(c: &RawChannel) -> Option<&'static str> {
    let given = kinds_set(c);
    (given.len() == 1).then(|| given[0])
}

/// Every kind a channel names.
fn kinds_set(c: &RawChannel) -> Vec<&'static str> {
    [
        ("slack", c.slack.is_some()),
        ("teams", c.teams.is_some()),
        ("mattermost", c.mattermost.is_some()),
        ("discord", c.discord.is_some()),
        ("telegram", c.telegram.is_some()),
        ("ntfy", c.ntfy.is_some()),
        ("matrix", c.matrix.is_some()),
        ("pagerduty", c.pagerduty.is_some()),
        ("opsgenie", c.opsgenie.is_some()),
        ("webhook", c.webhook.is_some()),
    ]
    .into_iter()
    .filter(|(_, set)| *set)
    .map(|(k, _)| k)
    .collect()
}

/// The variable `var`, checked for its name and read once.
fn env(cx: &mut Ctx, p: &Path, key: &str, var: &str) -> EnvSecret {
    if !valid_env_name(var) {
        cx.err(&p.key(key), format!("`{key}` names an environment variable (such as SLACK_OPS_WEBHOOK), not `{var}`: secrets are never written in the file"));
    }
    EnvSecret {
        var: var.to_string(),
        value: cx.secret(var),
    }
}

/// An http(s) endpoint, `default` when not given.
fn endpoint(cx: &mut Ctx, p: &Path, given: Option<&str>, default: &str) -> Option<url::Url> {
    let s = given.unwrap_or(default);
    match url::Url::parse(s) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host_str().is_some() => Some(u),
        _ => {
            cx.err(
                p,
                format!(
                    "`url` must be an http(s) URL such as {}, not `{s}`",
                    if default.is_empty() {
                        "https://matrix.example.org"
                    } else {
                        default
                    }
                ),
            );
            None
        }
    }
}

fn custom(cx: &mut Ctx, p: &Path, w: &RawCustomChannel) -> Option<Vendor> {
    let url = match (&w.url, &w.url_env) {
        (Some(_), Some(_)) | (None, None) => {
            cx.err(p, "give the receiver as exactly one of `url` or `url_env` (for a URL that holds a secret)");
            None
        }
        (Some(u), None) => endpoint(
            cx,
            &p.key("url"),
            Some(u),
            "https://chat.example.com/hooks/tocsin",
        )
        .map(Ok),
        (None, Some(v)) => Some(Err(env(cx, p, "url_env", v))),
    };
    let content_type = w
        .content_type
        .clone()
        .unwrap_or_else(|| "application/json".into());
    if !matches!(content_type.as_str(), "application/json" | "text/plain") {
        cx.err(&p.key("content_type"), format!("`content_type` is application/json (values are written as JSON) or text/plain (values as they are), not `{content_type}`"));
    }
    if let Err(e) = crate::text::template::check(&w.body, &content_type) {
        cx.err(
            &p.key("body"),
            format!("`body` is not a valid template: {e}"),
        );
    }
    let signing = w.secret_env.as_ref().map(|v| env(cx, p, "secret_env", v));
    url.map(|url| Vendor::Webhook {
        url,
        body: w.body.clone(),
        content_type,
        signing,
    })
}

/// Every entry of a level's `to:` must name something that exists: an address, a
/// defined rotation, or a defined channel of that kind.
pub(super) fn check_targets(
    cx: &mut Ctx,
    p: &Path,
    to: &[String],
    rotations: &BTreeMap<String, RawRotation>,
    raw_channels: &BTreeMap<String, RawChannel>,
) {
    for (j, entry) in to.iter().enumerate() {
        let ep = p.index(j);
        match Target::parse(entry) {
            Target::Address(a) => {
                if !valid_email(a) {
                    cx.err(&ep, format!("`{a}` is not an email address, `rotation:NAME` or a channel such as `slack:ops`"));
                }
            }
            Target::Rotation(name) => {
                if !rotations.contains_key(name) {
                    let known: Vec<String> = rotations.keys().cloned().collect();
                    cx.err(&ep, undefined("rotation", name, "rotations", &known));
                }
            }
            Target::Channel { kind, name } => {
                if !CHANNEL_KINDS.contains(&kind) {
                    let known: Vec<String> = CHANNEL_KINDS.iter().map(|k| k.to_string()).collect();
                    let hint = nearest(kind, &known)
                        .map(|n| format!(", did you mean `{n}:{name}`?"))
                        .unwrap_or_else(|| format!(" (kinds: {})", CHANNEL_KINDS.join(", ")));
                    cx.err(&ep, format!("unknown channel kind `{kind}`{hint}"));
                } else if let Some(c) = raw_channels.get(name) {
                    match raw_kind(c) {
                        Some(k) if k != kind => {
                            cx.err(
                                &ep,
                                format!("channel `{name}` is a {k} channel: write `{k}:{name}`"),
                            );
                        }
                        _ => {}
                    }
                } else {
                    let known: Vec<String> = raw_channels.keys().cloned().collect();
                    cx.err(&ep, undefined("channel", name, "channels", &known));
                }
            }
        }
    }
}
