//! HTTP probes: URL, method, headers (secrets from the environment), expected
//! statuses and body patterns, redirects, TLS.

use super::cx::*;

pub(super) fn http_check(
    cx: &mut Ctx,
    p: &Path,
    h: &RawHttp,
    need_target: bool,
) -> Option<HttpCheck> {
    let url = match (&h.url, need_target) {
        // `shop.example.com` and `shop.example.com:8080/` (which parses with the host as
        // its scheme) both lack the scheme.
        (Some(u), true) if !u.contains("://") => {
            let mistyped = |scheme: &str| {
                u.strip_prefix(&format!("{scheme}//"))
                    .or_else(|| u.strip_prefix(&format!("{scheme}:/")))
                    .map(|rest| format!("{scheme}://{rest}"))
            };
            let fix = match mistyped("https").or_else(|| mistyped("http")) {
                Some(f) => format!("write `{f}`"),
                None => format!("write `https://{u}` (or `http://`)"),
            };
            cx.err(&p.key("url"), format!("URL `{u}` has no scheme: {fix}"));
            None
        }
        (Some(u), true) => match url::Url::parse(u) {
            Ok(url) if !matches!(url.scheme(), "http" | "https") => {
                cx.err(
                    &p.key("url"),
                    format!(
                        "URL scheme `{}` is not supported: use http or https",
                        url.scheme()
                    ),
                );
                None
            }
            Ok(url) if url.host_str().is_none_or(str::is_empty) => {
                cx.err(&p.key("url"), format!("URL `{u}` has no host"));
                None
            }
            Ok(url) if !url.username().is_empty() || url.password().is_some() => {
                cx.err(
                    &p.key("url"),
                    "the URL holds a login, which would be shown and logged with it: use `basic_auth: { username_env, password_env }`",
                );
                None
            }
            Ok(url) => Some(url),
            Err(e) => {
                cx.err(&p.key("url"), format!("invalid URL `{u}`: {e}"));
                None
            }
        },
        (None, true) => {
            cx.err(p, "missing key `url`");
            None
        }
        (Some(_), false) => {
            target_in_module(cx, p, "url", "target");
            None
        }
        (None, false) => url::Url::parse("http://module.invalid/").ok(),
    };
    let method = match &h.method {
        None => Some(Method::GET),
        Some(m) => {
            let known: Vec<String> = ["GET", "HEAD", "POST", "PUT", "DELETE", "OPTIONS", "PATCH"]
                .iter()
                .map(|s| s.to_string())
                .collect();
            if known.contains(m) {
                Method::from_bytes(m.as_bytes()).ok()
            } else {
                cx.err(
                    &p.key("method"),
                    match nearest(&m.to_ascii_uppercase(), &known) {
                        Some(best) => format!("unknown HTTP method `{m}`, did you mean `{best}`?"),
                        None => {
                            format!("unknown HTTP method `{m}`: use one of {}", known.join(", "))
                        }
                    },
                );
                None
            }
        }
    };
    // A header name is reported at its key, where the typo is.
    let bad_name = |cx: &mut Ctx, hp: &Path, k: &str| {
        let bad = HeaderName::from_bytes(k.as_bytes()).is_err();
        if bad {
            cx.diag
                .at_key(hp, format!("invalid HTTP header name `{k}`"));
        }
        bad
    };
    let mut headers = Vec::new();
    for (k, v) in &h.headers {
        let hp = p.key("headers").key(k);
        if bad_name(cx, &hp, k) {
            continue;
        }
        if HeaderValue::from_str(v).is_err() {
            cx.err(
                &hp,
                format!(
                    "invalid value for HTTP header `{k}`: it must be visible ASCII on one line"
                ),
            );
        } else {
            headers.push((k.clone(), v.clone()));
        }
    }
    let mut secret_headers = Vec::new();
    for (k, var) in &h.headers_env {
        let hp = p.key("headers_env").key(k);
        if bad_name(cx, &hp, k) {
            continue;
        }
        if !valid_env_name(var) {
            cx.err(
                &hp,
                format!("`{var}` is not an environment variable name (such as API_TOKEN)"),
            );
        } else {
            match (cx.env)(var) {
                Some(v) if HeaderValue::from_str(&v).is_ok() && !v.is_empty() => secret_headers.push((k.clone(), Secret::new(v))),
                Some(_) => cx.err(&hp, format!("environment variable `{var}` (for header `{k}`) is empty or not a valid header value")),
                None => cx.err(&hp, format!("environment variable `{var}` (for header `{k}`) is not set")),
            }
        }
    }
    // Basic auth and bearer tokens become an Authorization header whose value is
    // secret, like headers_env.
    let mut env_value = |key: &Path, var: &str| -> Option<String> {
        if !valid_env_name(var) {
            cx.err(
                key,
                format!("`{var}` is not an environment variable name (such as API_TOKEN)"),
            );
            return None;
        }
        let value = (cx.env)(var).filter(|v| !v.is_empty());
        if value.is_none() {
            cx.err(
                key,
                format!(
                    "environment variable `{var}` (for `{}`) is not set",
                    last_key(key)
                ),
            );
        }
        value
    };
    let mut authorization = Vec::new();
    if let Some(b) = &h.basic_auth {
        let bp = p.key("basic_auth");
        let user = env_value(&bp.key("username_env"), &b.username_env);
        let pass = env_value(&bp.key("password_env"), &b.password_env);
        if let (Some(user), Some(pass)) = (user, pass) {
            use base64::Engine as _;
            let pair = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{pass}"));
            authorization.push(format!("Basic {pair}"));
        }
    }
    if let Some(var) = &h.bearer_token_env {
        if let Some(token) = env_value(&p.key("bearer_token_env"), var) {
            authorization.push(format!("Bearer {token}"));
        }
    }
    let proxy_login = h.proxy_auth.as_ref().and_then(|b| {
        let bp = p.key("proxy_auth");
        let user = env_value(&bp.key("username_env"), &b.username_env);
        let pass = env_value(&bp.key("password_env"), &b.password_env);
        Some((user?, Secret::new(pass?)))
    });
    let by_header = h
        .headers
        .keys()
        .chain(h.headers_env.keys())
        .any(|k| k.eq_ignore_ascii_case("authorization"));
    if (h.basic_auth.is_some() && h.bearer_token_env.is_some())
        || (by_header && (h.basic_auth.is_some() || h.bearer_token_env.is_some()))
    {
        let key = if h.basic_auth.is_some() {
            "basic_auth"
        } else {
            "bearer_token_env"
        };
        cx.diag.at_key(&p.key(key), "give one Authorization: `basic_auth`, `bearer_token_env` or an `Authorization` header, not several");
    } else if let Some(value) = authorization.pop() {
        if HeaderValue::from_str(&value).is_ok() {
            secret_headers.push(("Authorization".to_string(), Secret::new(value)));
        } else {
            let key = if h.basic_auth.is_some() {
                "basic_auth"
            } else {
                "bearer_token_env"
            };
            cx.err(
                &p.key(key),
                "the login from the environment is not a valid header value (a line break?)",
            );
        }
    }
    let expect_status = match &h.expect_status {
        None => Some(StatusSet::default()),
        Some(RawStatusList::One(s)) => {
            status_range(cx, &p.key("expect_status"), s).map(|r| StatusSet(vec![r]))
        }
        Some(RawStatusList::Many(list)) => {
            if list.is_empty() {
                cx.err(
                    &p.key("expect_status"),
                    "`expect_status` is empty: list at least one status or range",
                );
            }
            let ranges: Vec<_> = list
                .iter()
                .enumerate()
                .filter_map(|(i, s)| status_range(cx, &p.key("expect_status").index(i), s))
                .collect();
            (ranges.len() == list.len() && !list.is_empty()).then_some(StatusSet(ranges))
        }
    };
    let body_regex = match &h.body_regex {
        Some(r) => cx.regex(&p.key("body_regex"), r).map(Some),
        None => Some(None),
    };
    let body_json = json_rules(cx, &p.key("body_json"), &h.body_json);
    let http_version = match h.http_version.as_deref() {
        None => Some(None),
        Some("1.1") => Some(Some(reqwest::Version::HTTP_11)),
        Some("2") | Some("2.0") => Some(Some(reqwest::Version::HTTP_2)),
        Some(v) => {
            cx.err(
                &p.key("http_version"),
                format!("`http_version` is \"1.1\" or \"2\", not `{v}`"),
            );
            None
        }
    };
    let mut header_rules = |key: &str, raw: &BTreeMap<String, String>| {
        let mut out = Vec::new();
        for (name, re) in raw {
            let hp = p.key(key).key(name);
            if bad_name(cx, &hp, name) {
                continue;
            }
            if let Some(re) = cx.regex(&hp, re) {
                out.push((name.to_ascii_lowercase(), re));
            }
        }
        out
    };
    let header_matches = header_rules("header_matches", &h.header_matches);
    let header_not_matches = header_rules("header_not_matches", &h.header_not_matches);
    let max_latency = match &h.max_latency {
        Some(s) => Some(cx.positive_duration(&p.key("max_latency"), s)),
        None => Some(None),
    };
    let max_redirects = match h.follow_redirects {
        None | Some(RawRedirects::Flag(true)) => DEFAULT_MAX_REDIRECTS,
        Some(RawRedirects::Flag(false)) => 0,
        Some(RawRedirects::Count(n)) if n > MAX_REDIRECTS_LIMIT => {
            cx.err(
                &p.key("follow_redirects"),
                format!("`follow_redirects` allows at most {MAX_REDIRECTS_LIMIT} redirects"),
            );
            0
        }
        Some(RawRedirects::Count(n)) => n,
    };
    let max_body = match &h.max_body {
        None => Some(DEFAULT_MAX_BODY),
        Some(RawSize::Bytes(n)) => Some(*n),
        Some(RawSize::Text(s)) => match parse_size(s) {
            Ok(n) => Some(n),
            Err(m) => {
                cx.err(&p.key("max_body"), m);
                None
            }
        },
    };
    if max_body == Some(0) {
        cx.err(&p.key("max_body"), "`max_body` must be at least 1 byte");
    }
    let is_http_url = url.as_ref().is_some_and(|u| u.scheme() == "http") && need_target;
    if is_http_url && h.cert_min_days.is_some() {
        cx.err(
            &p.key("cert_min_days"),
            "`cert_min_days` needs an https URL",
        );
    }
    if is_http_url && h.tls.is_some() {
        cx.err(&p.key("tls"), "`tls` applies only to https URLs");
    }
    let tls = tls_options(cx, p, h.tls.as_ref(), h.tls_min_version.as_deref());
    let ip = ip_protocol(cx, p, h.ip_protocol.as_deref(), h.ip_protocol_fallback);
    let proxy = proxy(cx, p, h, proxy_login);
    Some(HttpCheck {
        pin: None,
        proxy: proxy?,
        ip: ip?,
        url: url?,
        method: method?,
        headers,
        secret_headers,
        body: h.body.clone(),
        expect_status: expect_status?,
        body_contains: h.body_contains.clone(),
        body_not_contains: h.body_not_contains.clone(),
        body_regex: body_regex?,
        body_json: body_json?,
        header_matches,
        header_not_matches,
        http_version: http_version?,
        max_latency: max_latency?,
        cert_min_days: h.cert_min_days,
        max_redirects,
        max_body: max_body?,
        tls: tls?,
    })
}

/// `body_json`: each rule a JSONPath and exactly one comparison.
fn json_rules(cx: &mut Ctx, p: &Path, raw: &[RawJsonRule]) -> Option<Vec<JsonRule>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, r) in raw.iter().enumerate() {
        let rp = p.index(i);
        let mut given = Vec::new();
        if let Some(v) = &r.equals {
            given.push(("equals", Some(JsonExpect::Equals(v.clone()))));
        }
        if let Some(v) = &r.not_equals {
            given.push(("not_equals", Some(JsonExpect::NotEquals(v.clone()))));
        }
        if let Some(m) = &r.matches {
            let re = cx.regex(&rp.key("matches"), m).map(JsonExpect::Matches);
            given.push(("matches", re));
        }
        if let Some(n) = r.at_least {
            given.push(("at_least", Some(JsonExpect::AtLeast(n))));
        }
        if let Some(n) = r.at_most {
            given.push(("at_most", Some(JsonExpect::AtMost(n))));
        }
        if let Some(b) = r.exists {
            given.push(("exists", Some(JsonExpect::Exists(b))));
        }
        let expect = match given.as_slice() {
            [(_, e)] => e.clone(),
            [] => {
                cx.err(&rp.key("path"), format!("rule for `{}` says nothing to check: add one of equals, not_equals, matches, at_least, at_most or exists", r.path));
                None
            }
            many => {
                let keys: Vec<&str> = many.iter().map(|(k, _)| *k).collect();
                cx.err(&rp.key("path"), format!("rule for `{}` has {}: give one comparison per rule (add another rule for the same path)", r.path, keys.join(" and ")));
                None
            }
        };
        // The path is checked whatever the comparison, so both errors are reported.
        let rule = match JsonRule::new(&r.path, JsonExpect::Exists(true)) {
            Ok(mut rule) => expect.map(|expect| {
                rule.expect = expect;
                rule
            }),
            Err(e) => {
                // The parser's own words say little about the commonest slip.
                let why = if r.path.starts_with('$') {
                    e
                } else {
                    "a JSONPath starts with `$`".to_string()
                };
                cx.err(
                    &rp.key("path"),
                    format!(
                        "`{}` is not a JSONPath such as $.status or $.items[0].name: {why}",
                        r.path
                    ),
                );
                None
            }
        };
        match rule {
            Some(rule) => out.push(rule),
            None => ok = false,
        }
    }
    ok.then_some(out)
}

pub(super) fn status_range(cx: &mut Ctx, p: &Path, s: &RawStatus) -> Option<(u16, u16)> {
    let bad = |cx: &mut Ctx, what: String| {
        cx.err(
            p,
            format!(
                "invalid status `{what}`: use a code from 100 to 599 or a range such as \"200-299\""
            ),
        );
        None
    };
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
    };
    match s {
        RawStatus::Code(c) => match u16::try_from(*c).ok().filter(|c| (100..=599).contains(c)) {
            Some(c) => Some((c, c)),
            None => bad(cx, c.to_string()),
        },
        RawStatus::Range(r) => {
            let parsed = match r.split_once('-') {
                Some((a, b)) => code(a).zip(code(b)).filter(|(a, b)| a <= b),
                None => code(r).map(|c| (c, c)),
            };
            match parsed {
                Some(range) => Some(range),
                None => bad(cx, r.clone()),
            }
        }
    }
}

/// `proxy_url` and its login (`proxy_auth`, already read from the environment).
fn proxy(
    cx: &mut Ctx,
    p: &Path,
    h: &RawHttp,
    login: Option<(String, Secret)>,
) -> Option<Option<HttpProxy>> {
    let Some(raw) = &h.proxy_url else {
        if h.proxy_auth.is_some() {
            cx.err(&p.key("proxy_auth"), "`proxy_auth` needs `proxy_url`");
            return None;
        }
        return Some(None);
    };
    let pp = p.key("proxy_url");
    let url = match url::Url::parse(raw) {
        Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => u,
        Ok(u) if !matches!(u.scheme(), "http" | "https") => {
            cx.err(
                &pp,
                format!(
                    "`proxy_url` must be an http:// or https:// proxy, not `{}://`",
                    u.scheme()
                ),
            );
            return None;
        }
        _ => {
            cx.err(
                &pp,
                format!("`proxy_url` is not a URL such as http://proxy.internal:3128: `{raw}`"),
            );
            return None;
        }
    };
    if !url.username().is_empty() || url.password().is_some() {
        cx.err(
            &pp,
            "put the proxy's login in `proxy_auth: { username_env, password_env }`, not in the URL (where it would be logged)",
        );
        return None;
    }
    if h.proxy_auth.is_some() && login.is_none() {
        return None;
    }
    Some(Some(HttpProxy { url, login }))
}

/// The `tls` block of a probe at `p`, with its `tls_min_version`.
pub(super) fn tls_options(
    cx: &mut Ctx,
    p: &Path,
    t: Option<&RawTls>,
    min_version: Option<&str>,
) -> Option<TlsOptions> {
    let min = match min_version {
        None | Some("1.2") => Some(MinVersion::Tls12),
        Some("1.3") => Some(MinVersion::Tls13),
        Some(other) => {
            cx.err(
                &p.key("tls_min_version"),
                format!("`tls_min_version` is \"1.2\" or \"1.3\" (older versions are never accepted), not `{other}`"),
            );
            None
        }
    };
    let tp = p.key("tls");
    let opts = match t {
        None => Some(TlsOptions::system()),
        Some(t) => {
            let ca = t.ca_file.as_deref().map(|f| cx.file(f));
            let base = match TlsOptions::new(ca, t.insecure_skip_verify, t.server_name.clone()) {
                Ok(o) => Some(o),
                Err(e) => {
                    cx.err(&tp.key("ca_file"), e.to_string());
                    None
                }
            };
            let client = match (&t.cert_file, &t.key_file) {
                (None, None) => Some(None),
                (Some(c), Some(k)) => match ClientCert::load(cx.file(c), cx.file(k)) {
                    Ok(cc) => Some(Some(Arc::new(cc))),
                    Err(e) => {
                        cx.err(&tp.key(e.key()), e.to_string());
                        None
                    }
                },
                (Some(_), None) => {
                    cx.err(
                        &tp.key("cert_file"),
                        "`cert_file` needs `key_file` (the certificate's private key, PEM)",
                    );
                    None
                }
                (None, Some(_)) => {
                    cx.err(
                        &tp.key("key_file"),
                        "`key_file` needs `cert_file` (the client certificate, PEM)",
                    );
                    None
                }
            };
            base.zip(client).map(|(mut o, c)| {
                o.client_cert = c;
                o
            })
        }
    };
    let mut opts = opts?;
    opts.min_version = min?;
    Some(opts)
}
