//! Every bad config in testdata/bad maps to the exact errors, with positions, that
//! `tocsin check` must print. A new rule gets a new file here.

use std::path::Path;

const CASES: &[(&str, &[&str])] = &[
    (
        "customer-phase-keys.yaml",
        &[
            "5:45: `next_update` (1h) is shorter than `update_every` (2h): the promised update could not be sent in time",
            "6:20: `language` is a language code such as en, pl or sv, not `English`",
            "6:39: `timezone` must be an IANA time zone such as Europe/Warsaw or UTC, not `Mars/Base`",
            "6:66: `url` must be an http(s) URL such as https://cdn.example.com/hooks/tocsin, not `ftp://cdn.example.com`",
            "6:102: `token_env` names an environment variable (such as WEBHOOK_TOKEN), not `my token`",
            "7:18: `name` must be one line of text",
            "7:41: `email` must be an address such as help@example.com, not `not-an-address`",
            "7:66: `website` must be an http(s) URL, not `example.com`",
            "10:22: `max_campaign_size` must be at least 1",
            "11:16: `connections` must be between 1 and 100",
            "12:42: `selector` is a DNS label such as `tocsin2026`, not `bad selector`",
            "12:68: cannot read key_file testdata/bad/no-such-key.pem: No such file or directory (os error 2)",
        ],
    ),
    (
        "customer-communication.yaml",
        &[
            "7:16: the audience name `subscribers` is tocsin's own (customers who subscribed on the status page): rename this audience",
            "9:17: `merge_window` (2h) is longer than 1h: customers would wait that long to hear of an outage; use at most 1h",
            "10:13: unknown `recovery: sometimes`: use `last` (one message when every merged service is back) or `each` (one per service)",
            "11:18: `campaigns.remind_before`: invalid duration `soon`: use a number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `3h`, `500ms`",
            "12:37: `per_ip_per_hour` is 0: nobody could subscribe; give at least 1, or `enabled: false`",
        ],
    ),
    (
        "audience-missing-file.yaml",
        &["9:21: audience file `testdata/bad/no-such-customers.csv` does not exist"],
    ),
    (
        "mail-trust.yaml",
        &[
            "1:13: `public_url` http://127.0.0.1:9778/ is a loopback address: customers' unsubscribe and status links must be https on an address they can reach (RFC 8058); use the public https address (allow_insecure_links: true accepts it, for tests only)",
            "11:9: `helo` is the host name tocsin gives the mail server, such as status.example.com, not `mail server`",
            "12:24: `unsubscribe_address` must be a bare address such as unsubscribe@example.com, not `Unsubscribe <unsubscribe@example.com>`",
            "14:37: key_file testdata/bad/../keys/not-a-key.pem holds no RSA or Ed25519 private key: expected PEM (`BEGIN PRIVATE KEY` as written by `openssl genpkey` or `opendkim-genkey`, or `BEGIN RSA PRIVATE KEY`)",
            "15:38: key_file testdata/bad/../keys/ed25519-test.pem holds an Ed25519 key, but selector `rsa2026` publishes an RSA key (`algorithm: rsa`): receivers would find no key that verifies; give the RSA key file, or correct `algorithm`",
            "16:34: DKIM `domain` example.net is not aligned with the From domain example.com: receivers' DMARC checks pass only when d= is example.com or a parent of it; sign for example.com, or send from an address at example.net",
            "17:19: selector `other` is given twice: each key is published under its own selector",
            "17:73: `algorithm` is `rsa` or `ed25519` (the k= of the selector's DNS record), not `dsa`",
        ],
    ),
    (
        "bad-duration-no-unit.yaml",
        &[
            "2:12: `defaults.timeout`: invalid duration `10`: add a unit, e.g. `30s`, `15m`, `3h`, `500ms`",
        ],
    ),
    (
        "bad-max-body.yaml",
        &["5:53: invalid size `1MB2`: unknown unit `MB2`; use B, kB, KiB, MB, MiB, GB or GiB"],
    ),
    (
        "bad-method.yaml",
        &["5:51: unknown HTTP method `GTE`, did you mean `GET`?"],
    ),
    (
        "bad-regex.yaml",
        &["5:55: invalid regex in `body_regex`: unclosed group"],
    ),
    (
        "dns-rules.yaml",
        &[
            "8:52: invalid regex in `fail_if_not_matches`: unclosed group",
            "9:31: `validate_authority` has no rule: give fail_if_matches, fail_if_all_match, fail_if_not_matches or fail_if_none_matches (each a list of regexes)",
            "13:32: `validate_additional` has no rule: give fail_if_matches, fail_if_all_match, fail_if_not_matches or fail_if_none_matches (each a list of regexes)",
            "13:34: unknown key `fail_if_match`, did you mean `fail_if_matches`?",
            "15:43: `dnssec`: expected true or false, found string \"yes\"",
        ],
    ),
    (
        "http-tls-proxy.yaml",
        &[
            "7:28: `tls_min_version` is \"1.2\" or \"1.3\" (older versions are never accepted), not `1.1`",
            "8:29: `cert_file` needs `key_file` (the certificate's private key, PEM)",
            "9:22: put the proxy's login in `proxy_auth: { username_env, password_env }`, not in the URL (where it would be logged)",
            "13:29: cannot read cert_file testdata/bad/missing-client.pem: No such file or directory (os error 2)",
            "14:22: `proxy_url` must be an http:// or https:// proxy, not `socks5://`",
            "18:23: `proxy_auth` needs `proxy_url`",
            "18:39: environment variable `PROXY_USER` (for `username_env`) is not set",
            "18:65: environment variable `PROXY_PASS` (for `password_env`) is not set",
            "20:62: `tls_min_version` needs `tls: true`",
        ],
    ),
    (
        "tcp-starttls.yaml",
        &[
            "5:56: unknown STARTTLS protocol `smpt`, did you mean `smtp`?",
            "7:67: `starttls` upgrades the connection to TLS: remove `tls: false`",
            "9:56: `starttls` is one of smtp, imap or pop3, not `pop2000`",
        ],
    ),
    (
        "grpc-probe.yaml",
        &[
            "5:26: `address` must be host:port, such as api.internal:50051, not `api.internal`",
            "5:51: `service` is a gRPC service name such as grpc.health.v1.Health or shop.Cart, without spaces, not `shop Cart`",
            "7:63: `tls_min_version` needs `tls: true`",
            "7:85: `cert_min_days` needs `tls: true`",
            "9:15: missing key `address` (host:port to call)",
            "12:22: a module's target comes from the `/probe?target=` request: remove `address`",
        ],
    ),
    (
        "heartbeat.yaml",
        &[
            "5:44: give `period` or `schedule`, not both: a ping every period, or after each scheduled run",
            "7:32: `schedule` is not a cron expression such as \"0 3 * * *\" (minute hour day month weekday): Component error: Number out of bounds.",
            "7:56: unknown time zone `Europe/Berln`, did you mean `Europe/Berlin`?",
            "7:77: `grace` must be longer than zero",
            "9:20: needs `period` (a ping at least this often, such as 1h) or `schedule` (a cron expression such as \"0 3 * * *\")",
            "11:45: `timezone` applies to a `schedule`; a `period` needs none",
            "14:16: a heartbeat is decided by the pings a job sends, so it cannot be a `/probe` module: move it under a service's probes",
        ],
    ),
    (
        "hotline-hook-env.yaml",
        &["7:29: `not a name` is not an environment variable name (such as ANNOUNCE_LINE)"],
    ),
    (
        "cluster-keys.yaml",
        &[
            "1:11: `location` names this instance (such as waw or fra-1: lower-case letters, digits, - and _), not `Warsaw 1`",
            "3:3: `cluster` needs a store that every instance shares: set `store: postgres://USER@HOST:PORT/DATABASE` (the SQLite file in data_dir belongs to one instance)",
            "3:10: `lease` (1s) must be between 3s and 5m: shorter, a busy database would make leaders change; longer, a dead leader would be replaced that late",
            "4:11: `quorum` counts the locations of `cluster.locations`: list them there (such as `locations: [waw, fra, sto]`)",
        ],
    ),
    (
        "cluster-votes.yaml",
        &[
            "1:11: this instance's `location` `ams` is not one of `cluster.locations` (waw, fra): set `location:` to one of them, or add it to the list",
            "4:25: location `waw` is listed twice",
            "4:30: a location is a name such as waw or fra-1 (lower-case letters, digits, - and _), not `Fra 2`",
            "5:11: `quorum` 4 cannot be met by 2 locations (waw, fra): it is between 1 and their number",
            "8:13: `quorum` is at least 1: the locations that must see a probe failing",
            "10:40: `sto` is not one of `cluster.locations` (waw, fra): add it there or correct the name",
            "11:33: `locations` lists at least one location; leave it out for all of `cluster.locations`",
        ],
    ),
    (
        "cluster-quorum-unmet.yaml",
        &[
            "9:34: probe `home`: a quorum of 3 cannot be met by the 2 locations that run it (waw, fra): lower `quorum` for service `shop`, or let more locations run it",
            "15:13: probe `search`: a quorum of 4 cannot be met by the 3 locations that run it (waw, fra, sto): lower `quorum` for service `search`, or let more locations run it",
        ],
    ),
    (
        "votes-without-cluster.yaml",
        &[
            "3:13: `quorum` counts locations of a cluster that votes: set `cluster.locations` (and `store:`), or remove it",
            "5:34: `locations` names locations of a cluster that votes: set `cluster.locations` (and `store:`), or remove it",
        ],
    ),
    (
        "cluster-without-store.yaml",
        &[
            "2:10: `cluster` needs a store that every instance shares: set `store: postgres://USER@HOST:PORT/DATABASE` (the SQLite file in data_dir belongs to one instance)",
            "2:19: `lease` (10m) must be between 3s and 5m: shorter, a busy database would make leaders change; longer, a dead leader would be replaced that late",
        ],
    ),
    (
        "store-not-postgres.yaml",
        &[
            "1:8: `store` must be a PostgreSQL URL such as postgres://tocsin@db.internal:5432/tocsin (omit it for the SQLite file in data_dir), not `mysql://tocsin@db.internal/tocsin`",
            "2:21: `store_password_env` names an environment variable (such as TOCSIN_PG_PASSWORD), not `my password`",
        ],
    ),
    (
        "store-password-env-alone.yaml",
        &[
            "1:21: `store_password_env` is set but `store` is not: the password is for a PostgreSQL store; set `store: postgres://USER@HOST:PORT/DATABASE` or remove it",
        ],
    ),
    (
        "store-password-in-url.yaml",
        &[
            "1:8: `store` carries a password: keep it out of the file and put it in the environment variable PGPASSWORD (`store_password_env` names another)",
        ],
    ),
    (
        "url-with-login.yaml",
        &[
            "4:37: the URL holds a login, which would be shown and logged with it: use `basic_auth: { username_env, password_env }`",
        ],
    ),
    (
        "out-of-range-times.yaml",
        &[
            "3:25: `services[0].customer_threshold`: duration `20000d` is longer than ten years, the longest tocsin takes",
            "7:63: `maintenance[0].duration`: duration `300000y` is longer than ten years, the longest tocsin takes",
            "8:29: `start`: `9999-12-31T22:00:00Z` is outside the years 2000 to 2199, the times tocsin takes",
        ],
    ),
    (
        "probe-exposure.yaml",
        &[
            "2:18: `internal_listen` must differ from `listen`: it keeps /metrics, /probe and the APIs off the public listener",
            "9:5: module `authed` sends secret headers (headers_env, basic_auth, bearer_token_env): list in `allow` the targets it may be aimed at, or anyone could have /probe send them elsewhere",
            "11:13: `10.0.0.0/33` is not a host name, `*.domain`, IP address or network such as 10.0.0.0/8",
            "11:50: `not a host` is not a host name, `*.domain`, IP address or network such as 10.0.0.0/8",
        ],
    ),
    (
        "icmp-probe.yaml",
        &[
            "5:23: `host` must be a host name or an IP address, such as 192.0.2.10 or gw.internal, not `gw.internal:80`",
            "5:48: `count` must be from 1 to 100 echo requests, not 0",
            "7:46: `ip_protocol` must be `ip4` or `ip6`, not `ipv4`",
            "9:60: `ip_protocol_fallback` needs `ip_protocol` (the family to prefer)",
            "11:15: missing key `host` (the host name or IP address to ping)",
            "14:19: a module's target comes from the `/probe?target=` request: remove `host`",
        ],
    ),
    (
        "udp-probe.yaml",
        &[
            "5:14: missing key `expect` (a regex the reply must match: without a reply a UDP probe proves nothing)",
            "5:25: `address` must be host:port, such as game.internal:27015, not `game.internal`",
            "5:48: `send` is empty: give the datagram to send",
        ],
    ),
    (
        "http-auth.yaml",
        &[
            "5:71: environment variable `UNSET_USER_VAR` (for `username_env`) is not set",
            "5:101: `not a name` is not an environment variable name (such as API_TOKEN)",
            "7:46: give one Authorization: `basic_auth`, `bearer_token_env` or an `Authorization` header, not several",
            "7:64: environment variable `UNSET_TOKEN_VAR` (for `bearer_token_env`) is not set",
        ],
    ),
    (
        "header-rules.yaml",
        &[
            "7:29: invalid HTTP header name `Content Type`",
            "7:70: invalid regex in `X-Version`: unclosed group",
            "9:25: `http_version` is \"1.1\" or \"2\", not `3`",
        ],
    ),
    (
        "body-json-rules.yaml",
        &[
            "8:23: `status` is not a JSONPath such as $.status or $.items[0].name: a JSONPath starts with `$`",
            "9:23: rule for `$.items` has at_least and at_most: give one comparison per rule (add another rule for the same path)",
            "10:23: rule for `$.db` says nothing to check: add one of equals, not_equals, matches, at_least, at_most or exists",
            "11:45: invalid regex in `matches`: unclosed group",
            "12:23: rule for `$.ok` says nothing to check: add one of equals, not_equals, matches, at_least, at_most or exists",
            "12:31: unknown key `exist`, did you mean `exists`?",
        ],
    ),
    (
        "bad-service-id.yaml",
        &[
            "2:9: service id `Web Shop` may hold only lowercase letters, digits, `-` and `_` (it names files and URLs)",
        ],
    ),
    (
        "bad-status.yaml",
        &[
            "5:64: invalid status `300-2`: use a code from 100 to 599 or a range such as \"200-299\"",
        ],
    ),
    (
        "cert-days-on-http.yaml",
        &["5:58: `cert_min_days` needs an https URL"],
    ),
    (
        "default-timeout-too-long.yaml",
        &["2:13: `defaults.timeout` 10s must be shorter than `defaults.interval` 5s"],
    ),
    (
        "dns-bad-protocol.yaml",
        &["5:50: `protocol` must be `udp` or `tcp`, not `quic`"],
    ),
    (
        "dns-bad-rcode.yaml",
        &["5:54: unknown response code `NXDOMIAN`, did you mean `NXDOMAIN`?"],
    ),
    (
        "dns-bad-server.yaml",
        &[
            "5:48: `server` must be an IP address with an optional port, such as 192.0.2.53:53, not `dns.example.com:53`",
        ],
    ),
    (
        "dns-expect-not-ip.yaml",
        &["5:58: `shop.example.com` is not an IPv4 address, so the A answer can never hold it"],
    ),
    (
        "duplicate-key.yaml",
        &["3:5: duplicate key `id` (first at line 2): keep one"],
    ),
    (
        "duplicate-probe.yaml",
        &[
            "8:15: duplicate probe name `home` (also in service `shop`); probe names are unique across services",
        ],
    ),
    (
        "duplicate-service.yaml",
        &["6:9: duplicate service id `shop` (also services[0])"],
    ),
    (
        "escalation-bad-email.yaml",
        &[
            "9:16: levels must be in order: `after: 0m` comes before the previous level's 15m",
            "9:25: `oncall` is not an email address, `rotation:NAME` or a channel such as `slack:ops`",
        ],
    ),
    (
        "header-env-unset.yaml",
        &[
            "7:41: environment variable `TOCSIN_TEST_NEVER_SET_TOKEN` (for header `Authorization`) is not set",
            "7:70: invalid HTTP header name `X Bad`",
        ],
    ),
    (
        "invalid-url.yaml",
        &["5:22: URL `http//shop.example.com` has no scheme: write `http://shop.example.com`"],
    ),
    (
        "invalid-yaml.yaml",
        &["4:1: invalid YAML: did not find expected node content"],
    ),
    (
        "metrics-per-probe.yaml",
        &["2:14: `per_probe` must be `all`, `failing` or `none`, not `some`"],
    ),
    (
        "service-group.yaml",
        &["3:12: `group` is a heading of one line, at most 80 characters, such as `Payments`"],
    ),
    (
        "listen-not-address.yaml",
        &["1:9: `listen` must be an IP address and port such as 127.0.0.1:9778, not `localhost`"],
    ),
    (
        "mail-ca-missing.yaml",
        &[
            "9:12: cannot read ca_file testdata/bad/no-such-ca.pem: No such file or directory (os error 2)",
        ],
    ),
    (
        "mail-plain-remote.yaml",
        &[
            "9:16: `allow_plain` is only for an SMTP server on loopback (127.0.0.1, ::1, localhost): mail to any other host must use TLS",
            "10:12: `timeout` must be longer than zero",
        ],
    ),
    (
        "maintenance-unknown-service.yaml",
        &[
            "7:16: unknown service `shpo`, did you mean `shop`?",
            "7:29: `start`: `2026-12-01 22:00` is not an RFC 3339 time such as 2026-12-01T22:00:00Z",
        ],
    ),
    (
        "missing-ca-file.yaml",
        &[
            "5:60: cannot read ca_file testdata/bad/no-such-ca.pem: No such file or directory (os error 2)",
        ],
    ),
    (
        "missing-name.yaml",
        &[
            "4:9: missing key `name`",
            "6:55: invalid regex in `body_regex`: unclosed group",
        ],
    ),
    (
        "no-services.yaml",
        &["1:1: no services: add at least one under `services`, each with its `probes`"],
    ),
    (
        "probe-two-kinds.yaml",
        &["6:14: has both `http` and `tcp`: one probe checks one thing; split it into two probes"],
    ),
    (
        "probe-without-kind.yaml",
        &[
            "4:9: needs one of `http`, `dns`, `tcp`, `udp`, `icmp`, `grpc` or `heartbeat` to say what to check",
        ],
    ),
    (
        "secret-in-smtp-url.yaml",
        &[
            "8:9: credentials do not belong in the file: remove them from the URL and set `username_env` and `password_env`",
            "9:3: unknown key `password`, did you mean `password_env`?",
        ],
    ),
    (
        "service-without-probes.yaml",
        &["2:9: service `shop` has no probes: add at least one under `probes`"],
    ),
    (
        "several-errors.yaml",
        &[
            "2:13: `defaults.interval`: invalid duration `30x`: use a number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `3h`, `500ms`",
            "3:22: `failure_threshold` must be at least 1",
            "8:22: URL scheme `ftp` is not supported: use http or https",
            "10:41: unknown record type `AA`, did you mean `A`?",
        ],
    ),
    (
        "tcp-bad-expect.yaml",
        &["5:49: invalid regex in `expect`: unclosed character class"],
    ),
    (
        "tcp-missing-address.yaml",
        &["5:14: missing key `address` (host:port to connect to)"],
    ),
    (
        "tcp-no-port.yaml",
        &["5:25: `address` must be host:port, such as db.internal:5432, not `db.internal`"],
    ),
    (
        "threshold-not-number.yaml",
        &["2:22: `failure_threshold`: expected a whole number, found string \"three\""],
    ),
    (
        "threshold-zero.yaml",
        &["3:24: `success_threshold` must be at least 1"],
    ),
    (
        "timeout-not-below-interval.yaml",
        &["6:18: probe `home`: timeout 10s must be shorter than its interval 10s"],
    ),
    (
        "unknown-escalation.yaml",
        &["3:17: unknown escalation policy `defualt`, did you mean `default`?"],
    ),
    (
        "escalation-grouping.yaml",
        &[
            "8:15: `escalation.group_wait`: invalid duration `30x`: use a number and a unit (ms, s, m, h, d), e.g. `30s`, `15m`, `3h`, `500ms`",
            "9:19: `group_interval: 20m` is longer than 10 minutes: staff would hear of an outage that late; keep it to seconds (30s) or a few minutes",
            "11:5: escalation policy `default` has no levels",
            "11:7: missing key `to`",
            "11:20: unknown key `too`, did you mean `to`?",
        ],
    ),
    (
        "public-from.yaml",
        &[
            "4:18: `public_from` is `staff` (incidents are public as soon as they open) or `customer` (once customers are told), not `customers`",
        ],
    ),
    (
        "oncall-channels.yaml",
        &[
            "9:43: unknown rotation `secundary`: define it under `rotations` (defined: night, primary)",
            "9:63: channel `main` is a pagerduty channel: write `pagerduty:main`",
            "9:75: unknown channel kind `slak`, did you mean `slack:ops`?",
            "9:85: unknown channel `nowhere`: define it under `channels` (defined: both, custom, custom2, main, none, ops, room, tg, topic)",
            "9:117: `repeat_every` belongs on the last level: earlier levels are followed by the next one",
            "10:56: `repeat_every: 30s` is shorter than a minute: a reminder that often is noise",
            "12:42: `anna@ops.example` is listed twice: list each member once, in turn order",
            "12:79: `start`: `2026-12-07 09:00` is not an RFC 3339 time such as 2026-12-01T22:00:00Z",
            "12:109: `timezone` must be an IANA time zone such as Europe/Warsaw, not `Europe/Warszawa`",
            "13:21: `members` is empty: list who takes turns, by mail address",
            "13:32: `every: 10m` is shorter than an hour: a turn is a shift (1d, 1w, 12h)",
            "15:28: `url_env` names an environment variable (such as SLACK_OPS_WEBHOOK), not `slack webhook`: secrets are never written in the file",
            "16:54: `url` must be an http(s) URL such as https://events.pagerduty.com/v2/enqueue, not `ftp://events.example`",
            "17:9: channel `both` names 2 kinds (slack, discord): give exactly one of slack, teams, mattermost, discord, telegram, ntfy, matrix, pagerduty, opsgenie, webhook",
            "18:9: channel `none` names no kind: give exactly one of slack, teams, mattermost, discord, telegram, ntfy, matrix, pagerduty, opsgenie, webhook",
            "19:51: `chat_id` is a chat's number (-1001234567890) or a channel's @name, not `my-chat`",
            "20:27: `topic` is up to 64 letters, digits, `-` or `_` (ntfy's rule), not `has spaces`",
            "21:62: `room` is a room id such as !AbCdEf:matrix.example.org (Room settings, Advanced), not `#ops:example.org`",
            "22:66: `body` is not a valid template: line 1 of the template: undefined value: `titel` is undefined (in <string>:1); the names a body may use: ack_url, at, eta_url, event, incident, reasons, service, service_name, severity, text, title",
            "23:23: give the receiver as exactly one of `url` or `url_env` (for a URL that holds a secret)",
            "23:115: `content_type` is application/json (values are written as JSON) or text/plain (values as they are), not `text/html`",
        ],
    ),
    (
        "unknown-key-probe.yaml",
        &["5:48: unknown key `expect_staus`, did you mean `expect_status`?"],
    ),
    (
        "unknown-key-typo.yaml",
        &["2:3: unknown key `interva`, did you mean `interval`?"],
    ),
    (
        "unknown-top-level.yaml",
        &["1:1: unknown key `servics`, did you mean `services`?"],
    ),
    (
        "wrong-type-list.yaml",
        &["2:3: `services`: expected a sequence, found map"],
    ),
];

#[test]
fn every_bad_config_reports_exact_errors_and_positions() {
    assert!(CASES.len() >= 25, "keep at least 25 bad configs");
    let mut failures = Vec::new();
    for (file, want) in CASES {
        let path = format!("testdata/bad/{file}");
        let got = match tocsin::config::load(Path::new(&path)) {
            Ok(_) => vec!["<accepted>".to_string()],
            Err(errs) => errs
                .0
                .iter()
                .map(|e| {
                    assert_eq!(e.file, path);
                    format!("{}:{}: {}", e.pos.line, e.pos.col, e.message)
                })
                .collect(),
        };
        let want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
        if got != want {
            failures.push(format!("{file}:\n  want {want:#?}\n  got  {got:#?}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn every_file_in_testdata_bad_has_a_case() {
    let mut files: Vec<String> = std::fs::read_dir("testdata/bad")
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    files.sort();
    let mut listed: Vec<String> = CASES.iter().map(|(f, _)| f.to_string()).collect();
    listed.sort();
    assert_eq!(files, listed);
}

#[test]
fn the_design_example_is_valid() {
    let c = tocsin::config::load(Path::new("testdata/design/probes.yaml"))
        .expect("design example validates");
    assert_eq!(c.services.len(), 1);
    assert_eq!(c.probes().count(), 3);
    let shop = &c.services[0];
    assert_eq!(
        shop.customer_threshold,
        std::time::Duration::from_secs(3 * 3600)
    );
    assert_eq!((shop.failure_threshold, shop.success_threshold), (3, 2));
    assert_eq!(c.escalation["default"].len(), 3);
    assert_eq!(c.maintenance.len(), 1);
    assert_eq!(c.mail.max_per_second, 100);
}

#[test]
fn the_root_config_is_valid() {
    let c = tocsin::config::load(Path::new("probes.yaml")).expect("root probes.yaml validates");
    let kinds: Vec<&str> = c.probes().map(|p| p.check.kind()).collect();
    assert_eq!(
        kinds,
        ["http", "tcp", "dns"],
        "the embedded default shows every probe kind"
    );
}

#[test]
fn a_missing_file_is_one_clear_error() {
    let e = tocsin::config::load(Path::new("testdata/no-such.yaml")).unwrap_err();
    assert_eq!(
        e.to_string(),
        "testdata/no-such.yaml:1:1: cannot read the config file: No such file or directory (os error 2)"
    );
}

#[test]
fn defaults_and_overrides_resolve() {
    let src = "defaults: { interval: 1m, timeout: 5s }\nservices:\n  - id: a\n    failure_threshold: 5\n    probes:\n      - { name: x, tcp: { address: \"127.0.0.1:1\" } }\n      - { name: y, interval: 500ms, timeout: 200ms, http: { url: \"https://127.0.0.1/\", expect_status: [\"200-204\", 301], max_body: 64KiB, follow_redirects: 3 } }\n";
    let c = tocsin::config::parse(src, Path::new("t.yaml")).unwrap();
    let p: Vec<_> = c.probes().collect();
    assert_eq!(p[0].interval, std::time::Duration::from_secs(60));
    assert_eq!(p[0].timeout, std::time::Duration::from_secs(5));
    assert_eq!(p[1].interval, std::time::Duration::from_millis(500));
    assert_eq!(c.services[0].failure_threshold, 5);
    assert_eq!(c.services[0].success_threshold, 2);
    match &p[1].check {
        tocsin::probe::Check::Http(h) => {
            assert_eq!(h.expect_status.0, vec![(200, 204), (301, 301)]);
            assert_eq!(h.max_body, 65536);
            assert_eq!(h.max_redirects, 3);
            assert!(h.expect_status.contains(204) && !h.expect_status.contains(205));
        }
        other => panic!("expected http, got {other:?}"),
    }
}

mod never_panics {
    use proptest::prelude::*;
    use std::path::Path;

    /// Fragments of real configs, shuffled into plausible-looking but broken files.
    fn fragment() -> impl Strategy<Value = String> {
        prop_oneof![
            Just("services:\n".to_string()),
            Just("  - id: shop\n".to_string()),
            Just("    probes:\n".to_string()),
            Just("      - name: x\n".to_string()),
            Just("        http: { url: \"http://127.0.0.1/\" }\n".to_string()),
            Just("        tcp: { address: \"127.0.0.1:80\", expect: \"[\" }\n".to_string()),
            Just("        dns: { name: a.test, type: MX }\n".to_string()),
            Just("defaults: { interval: 1s, timeout: 2s }\n".to_string()),
            Just("  interva: 30s\n".to_string()),
            Just("- - - :\n".to_string()),
            Just("{ [ ] }\n".to_string()),
            Just("\t\u{0}\u{feff}\n".to_string()),
            "[a-z_]{1,12}: [a-z0-9\"{}\\[\\],: ]{0,20}\n",
            "[ -~]{0,40}\n",
        ]
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(400))]
        #[test]
        fn any_input_gets_a_result_with_positions_inside_the_file(parts in proptest::collection::vec(fragment(), 0..12)) {
            let src: String = parts.concat();
            let lines = src.lines().count().max(1) + 1;
            if let Err(errs) = tocsin::config::parse(&src, Path::new("p.yaml")) {
                prop_assert!(!errs.0.is_empty());
                for e in &errs.0 {
                    prop_assert!(e.pos.line >= 1 && e.pos.line <= lines, "{e} outside {lines} lines");
                    prop_assert!(e.pos.col >= 1);
                    prop_assert!(!e.message.is_empty());
                }
            }
        }
    }
}

#[test]
fn allow_plain_is_accepted_for_loopback_smtp() {
    for host in ["127.0.0.1:2525", "localhost:25", "[::1]:25"] {
        let src = format!(
            "services:\n  - id: a\n    probes:\n      - {{ name: x, tcp: {{ address: \"127.0.0.1:1\" }} }}\nmail:\n  from: s@example.com\n  smtp: \"smtp://{host}\"\n  allow_plain: true\n"
        );
        let c = tocsin::config::parse(&src, Path::new("m.yaml"))
            .unwrap_or_else(|e| panic!("{host}: {e}"));
        assert!(c.mail.allow_plain);
    }
}

/// Every secret is read once, when the config is loaded, and shown nowhere: not in the
/// config's debug form, which logs and panics may print.
#[test]
fn secrets_are_read_at_load_and_never_shown() {
    let yaml = "services:
  - id: shop
    probes:
      - name: home
        http: { url: \"http://127.0.0.1:9/\", headers_env: { Authorization: AUTH_HEADER } }
mail:
  from: status@example.com
  smtp: \"smtp://127.0.0.1:25\"
  allow_plain: true
  username_env: SMTP_USER
  password_env: SMTP_PASSWORD
pages: { webhook: { url: \"http://127.0.0.1:9/hook\", token_env: PAGE_TOKEN } }
autoresponder: { managesieve: \"sieve://127.0.0.1:4190\", allow_plain: true, user_env: SIEVE_USER, password_env: SIEVE_PASSWORD }
webhooks:
  - { url: \"http://127.0.0.1:9/in\", secret_env: HOOK_SECRET }
";
    let env = |k: &str| -> Option<String> {
        Some(match k {
            "AUTH_HEADER" => "Bearer header-s3cret".into(),
            "SMTP_USER" => "smtp-user-s3cret".into(),
            "SMTP_PASSWORD" => "smtp-password-s3cret".into(),
            "PAGE_TOKEN" => "page-token-s3cret".into(),
            "SIEVE_USER" => "sieve-user-s3cret".into(),
            "SIEVE_PASSWORD" => "sieve-password-s3cret".into(),
            "HOOK_SECRET" => "hook-s3cret".into(),
            "TOCSIN_API_TOKEN" => "api-s3cret".into(),
            _ => return None,
        })
    };
    let dir = tempfile::tempdir().unwrap();
    let cfg = tocsin::config::parse_with(yaml, &dir.path().join("probes.yaml"), &env)
        .unwrap_or_else(|e| panic!("{e}"));
    let shown = format!("{cfg:?}");
    assert!(!shown.contains("s3cret"), "{shown}");
    assert!(shown.contains("Secret(***)"));
    let expose = |s: &Option<tocsin::secret::Secret>| s.as_ref().unwrap().expose().to_string();
    assert_eq!(expose(&cfg.api_token), "api-s3cret");
    assert_eq!(expose(&cfg.mail.username), "smtp-user-s3cret");
    assert_eq!(expose(&cfg.mail.password), "smtp-password-s3cret");
    assert_eq!(
        expose(&cfg.webhook.as_ref().unwrap().token),
        "page-token-s3cret"
    );
    let a = cfg.autoresponder.as_ref().unwrap();
    assert_eq!(expose(&a.user), "sieve-user-s3cret");
    assert_eq!(expose(&a.password), "sieve-password-s3cret");
    assert_eq!(expose(&cfg.webhooks[0].secret), "hook-s3cret");

    // Unset or empty: no secret, and the part that needs it says so when tocsin starts
    // (`tocsin check` needs none).
    let empty = |k: &str| (k == "HOOK_SECRET").then(String::new);
    let yaml = yaml.replace(", headers_env: { Authorization: AUTH_HEADER }", "");
    let cfg = tocsin::config::parse_with(&yaml, &dir.path().join("probes.yaml"), &empty)
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(cfg.webhooks[0].secret, None);
    assert_eq!(cfg.api_token, None);
    assert_eq!(
        tocsin::notify::webhook::check_secrets(&cfg).unwrap_err(),
        "webhook http://127.0.0.1:9/in: set the environment variable HOOK_SECRET (its signing key, named by secret_env)"
    );
}

#[test]
fn customers_links_must_be_https_on_an_address_they_can_reach() {
    let rest = "services:\n  - id: shop\n    audience: customers\n    probes:\n      - { name: home, tcp: { address: \"127.0.0.1:80\" } }\naudiences:\n  customers: { csv: ../design/customers.csv }\n";
    let path = Path::new("testdata/bad/inline.yaml");
    let load = |top: &str| tocsin::config::parse(&format!("{top}{rest}"), path);
    let err = |top: &str| load(top).err().map(|e| e.to_string()).unwrap_or_default();
    assert!(
        err("").starts_with("testdata/bad/inline.yaml:7:3: customers are mailed (audiences are configured) but `public_url` is not set"),
        "{}",
        err("")
    );
    assert!(err("public_url: http://status.example.com\n").contains("is not https"));
    assert!(err("public_url: https://[::1]:9778\n").contains("is a loopback address"));
    assert!(err("public_url: https://localhost\n").contains("is a loopback address"));
    // For tests on loopback, said out loud.
    assert_eq!(err("allow_insecure_links: true\n"), "");
    // Accepted, with a remark that `check` prints: nothing signs the customers' mail.
    let c = load("public_url: https://status.example.com\n").unwrap();
    let w: Vec<String> = c.warnings.iter().map(|w| w.to_string()).collect();
    assert_eq!(w.len(), 2, "{w:?}");
    // Silent by default is said out loud: nobody would hear of this service's incidents.
    assert_eq!(
        w[0],
        "testdata/bad/inline.yaml:3:9: service `shop` names no `escalation` policy: its incidents open and mail nobody; add `escalation: NAME` (a policy under `escalation:`)"
    );
    assert!(
        w[1].starts_with(
            "testdata/bad/inline.yaml:8:3: customers are mailed but no DKIM key is configured"
        ),
        "{w:?}"
    );
}
