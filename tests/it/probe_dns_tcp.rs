//! DNS probes against an in-process hickory-server (UDP and TCP) and hostile raw peers;
//! TCP probes against banner, request/reply, silent and closing servers.

use crate::support;

use support::reason;

use std::net::SocketAddr;
use std::str::FromStr;
use std::time::{Duration, SystemTime};

use tocsin::probe::dns::RrRules;
use tocsin::probe::{
    self, Check, DnsCheck, DnsProtocol, Outcome, Pattern, Phase, Rcode, Reason, TcpCheck,
    TlsOptions,
};

const T: Duration = Duration::from_secs(5);

fn dns(server: SocketAddr, name: &str, t: &str) -> DnsCheck {
    DnsCheck {
        name: hickory_resolver::Name::from_str(name).unwrap(),
        record_type: t.parse().unwrap(),
        server: Some(server),
        protocol: DnsProtocol::Udp,
        expect: vec![],
        expect_rcode: Rcode::NoError,
        validate_answer: RrRules::default(),
        validate_authority: RrRules::default(),
        validate_additional: RrRules::default(),
        dnssec: false,
    }
}

fn rules(list: &[&str]) -> Vec<Pattern> {
    list.iter()
        .map(|r| Pattern(regex::Regex::new(r).unwrap()))
        .collect()
}

async fn run(c: Check, timeout: Duration) -> Outcome {
    probe::run(&c, timeout, SystemTime::now()).await
}

#[tokio::test]
async fn dns_answers_over_udp_and_tcp_with_counts_and_expectations() {
    let server = support::dns_server().await;
    for protocol in [DnsProtocol::Udp, DnsProtocol::Tcp] {
        for (t, expect, count) in [
            ("A", vec!["203.0.113.10", "203.0.113.11"], 2),
            ("AAAA", vec!["2001:db8::10"], 1),
            ("MX", vec!["10 mail.shop.test"], 1),
            ("TXT", vec!["v=spf1 -all"], 1),
        ] {
            let mut c = dns(server, "shop.test.", t);
            c.protocol = protocol;
            c.expect = expect.iter().map(|s| s.to_string()).collect();
            let o = run(Check::Dns(c), T).await;
            assert!(o.success, "{t} over {protocol:?}: {}", reason(&o));
            assert_eq!(o.details.dns_answers, Some(count), "{t}");
            assert_eq!(o.details.dns_rcode, Some(Rcode::NoError));
            assert!(o.phase(Phase::Resolve) > Duration::ZERO);
        }
    }
}

/// Each section is counted and each of blackbox's four rule kinds holds or fails with
/// the record and the rule named, over UDP and TCP.
#[tokio::test]
async fn authority_and_additional_sections_are_counted_and_validated() {
    let server = support::dns_server().await;
    for protocol in [DnsProtocol::Udp, DnsProtocol::Tcp] {
        let mut c = dns(server, "shop.test.", "MX");
        c.protocol = protocol;
        c.validate_answer.fail_if_not_matches = rules(&["^shop\\.test\\.\t300\tIN\tMX\t10 mail"]);
        c.validate_authority.fail_if_none_matches = rules(&["\tNS\tns1\\.shop\\.test\\.$"]);
        c.validate_additional.fail_if_matches = rules(&["\tAAAA\t"]);
        let o = run(Check::Dns(c.clone()), T).await;
        assert!(o.success, "{protocol:?}: {}", reason(&o));
        assert_eq!(
            (
                o.details.dns_answers,
                o.details.dns_authority,
                o.details.dns_additional
            ),
            (Some(1), Some(1), Some(1))
        );

        let mut bad = c.clone();
        bad.validate_additional.fail_if_matches = rules(&["203\\.0\\.113\\.25$"]);
        assert_eq!(
            reason(&run(Check::Dns(bad), T).await),
            "additional record `mail.shop.test. 300 IN A 203.0.113.25` matches /203\\.0\\.113\\.25$/ (fail_if_matches)"
        );
        let mut bad = c.clone();
        bad.validate_answer.fail_if_all_match = rules(&["\tMX\t"]);
        assert_eq!(
            reason(&run(Check::Dns(bad), T).await),
            "every answer record matches /\tMX\t/ (fail_if_all_match)"
        );
        let mut bad = c.clone();
        bad.validate_answer.fail_if_not_matches = rules(&["\t20 "]);
        assert_eq!(
            reason(&run(Check::Dns(bad), T).await),
            "answer record `shop.test. 300 IN MX 10 mail.shop.test.` does not match /\t20 / (fail_if_not_matches)"
        );
        let mut bad = c.clone();
        bad.validate_authority.fail_if_none_matches = rules(&["ns2"]);
        assert_eq!(
            reason(&run(Check::Dns(bad), T).await),
            "no authority record matches /ns2/ (fail_if_none_matches)"
        );
    }
    // An A answer has no authority records: a rule that needs some fails on that.
    let mut c = dns(server, "shop.test.", "A");
    c.validate_authority.fail_if_not_matches = rules(&["NS"]);
    let o = run(Check::Dns(c), T).await;
    assert_eq!(
        reason(&o),
        "no authority records to match /NS/ (fail_if_not_matches)"
    );
    assert_eq!(o.details.dns_authority, Some(0));
}

/// `dnssec: true` asks with the DO and AD bits and requires the AD flag back.
#[tokio::test]
async fn dnssec_requires_the_authenticated_data_flag() {
    let server = support::dns_server().await;
    let mut c = dns(server, "signed.test.", "A");
    c.dnssec = true;
    let o = run(Check::Dns(c.clone()), T).await;
    assert!(o.success, "{}", reason(&o));

    c.name = hickory_resolver::Name::from_str("shop.test.").unwrap();
    let o = run(Check::Dns(c), T).await;
    assert_eq!(
        reason(&o),
        "answer not DNSSEC-validated: the AD flag is not set (is the server a validating resolver?)"
    );
    // Without `dnssec` the flag is not looked at.
    let o = run(Check::Dns(dns(server, "shop.test.", "A")), T).await;
    assert!(o.success, "{}", reason(&o));
}

/// Replies that are not the answer (another id, then garbage) are skipped until the
/// real one comes; a flood of them ends the wait with a reason.
#[tokio::test]
async fn forged_and_flooded_replies_are_skipped_or_reported() {
    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let forged = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((n, from)) = sock.recv_from(&mut buf).await {
            let q = &buf[..n];
            let answer = |id_xor: u8| {
                let mut r = q.to_vec();
                r[1] ^= id_xor;
                r[2] |= 0x80;
                r
            };
            let _ = sock.send_to(&answer(0xff), from).await; // another id
            let _ = sock.send_to(b"garbage", from).await;
            let _ = sock.send_to(&answer(0), from).await; // the answer (no records)
        }
    });
    let o = run(Check::Dns(dns(forged, "shop.test.", "A")), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.dns_answers, Some(0));

    let sock = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let flood = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 1500];
        while let Ok((_, from)) = sock.recv_from(&mut buf).await {
            for _ in 0..150 {
                let _ = sock.send_to(b"noise", from).await;
            }
        }
    });
    let o = run(Check::Dns(dns(flood, "shop.test.", "A")), T).await;
    assert_eq!(
        reason(&o),
        "DNS query failed: 100 datagrams came, none of them the answer"
    );
}

#[tokio::test]
async fn a_missing_expected_value_is_named_with_what_came() {
    let server = support::dns_server().await;
    let mut c = dns(server, "shop.test.", "A");
    c.expect = vec!["203.0.113.99".into()];
    let o = run(Check::Dns(c), T).await;
    assert_eq!(
        reason(&o),
        "answer lacks \"203.0.113.99\" (got: 203.0.113.10, 203.0.113.11)"
    );
}

#[tokio::test]
async fn nxdomain_and_servfail_are_reported_by_name_over_udp_and_tcp() {
    let server = support::dns_server().await;
    for protocol in [DnsProtocol::Udp, DnsProtocol::Tcp] {
        let with = |name: &str, rcode: Rcode| {
            let mut c = dns(server, name, "A");
            c.protocol = protocol;
            c.expect_rcode = rcode;
            Check::Dns(c)
        };
        let o = run(with("gone.test.", Rcode::NoError), T).await;
        assert_eq!(reason(&o), "NXDOMAIN", "{protocol:?}");
        assert_eq!(o.details.dns_answers, Some(0));
        assert!(
            run(with("gone.test.", Rcode::NxDomain), T).await.success,
            "an expected NXDOMAIN passes"
        );
        assert_eq!(
            reason(&run(with("shop.test.", Rcode::NxDomain), T).await),
            "NOERROR, expected NXDOMAIN"
        );
        let o = run(with("broken.test.", Rcode::NoError), T).await;
        assert_eq!(reason(&o), "SERVFAIL", "{protocol:?}");
        assert_eq!(o.details.dns_rcode, Some(Rcode::ServFail));
    }
}

#[tokio::test]
async fn every_probe_really_asks_the_server() {
    let (server, queries) = support::dns_server_counted().await;
    let c = dns(server, "shop.test.", "A");
    for _ in 0..3 {
        assert!(run(Check::Dns(c.clone()), T).await.success);
    }
    assert_eq!(
        queries.load(std::sync::atomic::Ordering::SeqCst),
        3,
        "no answer came from a cache"
    );
}

#[tokio::test]
async fn an_unanswered_query_times_out_during_resolve() {
    let server = support::dns_server().await;
    let o = run(
        Check::Dns(dns(server, "slow.test.", "A")),
        Duration::from_millis(500),
    )
    .await;
    assert_eq!(reason(&o), "timed out during resolve");
    assert!(o.duration < Duration::from_secs(5));
}

#[tokio::test]
async fn malformed_and_truncated_replies_fail_without_panicking() {
    let lookup = |server| Check::Dns(dns(server, "shop.test.", "A"));
    // Garbage that is not a DNS message: the resolver drops it and keeps waiting (a stray
    // packet must not end a lookup), so the probe ends at its deadline.
    let garbage = support::raw_dns(|_| b"\xde\xad\xbe\xef not dns".to_vec()).await;
    let o = run(lookup(garbage), Duration::from_millis(700)).await;
    assert_eq!(reason(&o), "timed out during resolve");

    // The query's header echoed with one answer announced but none present: unparseable,
    // dropped the same way.
    let cut = support::raw_dns(|q| {
        let mut r = q[..12].to_vec();
        r[2] |= 0x80; // QR: a response
        r[7] = 1; // ANCOUNT = 1
        r.extend_from_slice(&q[12..]);
        r
    })
    .await;
    let o = run(lookup(cut), Duration::from_millis(700)).await;
    assert_eq!(reason(&o), "timed out during resolve");

    // A well-formed reply with the TC bit: reported at once, with the fix.
    let truncated = support::raw_dns(|q| {
        let mut r = q[..12].to_vec();
        r[2] |= 0x82; // QR and TC
        r.extend_from_slice(&q[12..]);
        r
    })
    .await;
    let o = run(lookup(truncated), T).await;
    assert_eq!(
        reason(&o),
        "DNS query failed: the server truncated its UDP answer (TC bit); use `protocol: tcp` for this record"
    );
}

fn tcp(address: SocketAddr) -> TcpCheck {
    TcpCheck {
        address: address.to_string(),
        tls: None,
        send: None,
        expect: None,
        cert_min_days: None,
        ip: Default::default(),
        starttls: None,
    }
}

fn re(s: &str) -> Option<Pattern> {
    Some(Pattern(regex::Regex::new(s).unwrap()))
}

#[tokio::test]
async fn tcp_connects_and_reports_refusal() {
    let open = support::silent_server().await;
    let o = run(Check::Tcp(tcp(open)), T).await;
    assert!(o.success, "{}", reason(&o));
    assert!(o.phase(Phase::Connect) > Duration::ZERO);
    let closed = support::closed_port().await;
    assert_eq!(
        reason(&run(Check::Tcp(tcp(closed)), T).await),
        "connection refused"
    );
}

#[tokio::test]
async fn tcp_banner_matches_and_mismatches() {
    let smtp = support::line_server(0, b"220 mail.test ESMTP ready\r\n").await;
    let mut c = tcp(smtp);
    c.expect = re("^220 ");
    assert!(run(Check::Tcp(c), T).await.success);

    let wrong = support::line_server(0, b"554 go away\r\n").await;
    let mut c = tcp(wrong);
    c.expect = re("^220 ");
    let o = run(Check::Tcp(c), T).await;
    assert_eq!(
        reason(&o),
        "connection closed before a reply matched /^220 /, got \"554 go away\""
    );
}

#[tokio::test]
async fn tcp_wrong_reply_on_an_open_connection_is_a_mismatch_not_a_timeout() {
    // Replies and keeps the connection open: the probe must not wait for its timeout.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::AsyncWriteExt;
        let (mut s, _) = listener.accept().await.unwrap();
        s.write_all(b"-ERR unknown command\r\n").await.unwrap();
        tokio::time::sleep(Duration::from_secs(60)).await;
    });
    let mut c = tcp(addr);
    c.expect = re(r"^\+PONG");
    let o = run(Check::Tcp(c), T).await;
    assert_eq!(
        reason(&o),
        "reply does not match /^\\+PONG/, got \"-ERR unknown command\""
    );
    assert!(o.duration < Duration::from_secs(5), "{:?}", o.duration);
}

#[tokio::test]
async fn tcp_send_then_expect_like_redis_ping() {
    let redis = support::line_server(6, b"+PONG\r\n").await;
    let mut c = tcp(redis);
    c.send = Some("PING\r\n".into());
    c.expect = re(r"^\+PONG");
    let o = run(Check::Tcp(c), T).await;
    assert!(o.success, "{}", reason(&o));
}

#[tokio::test]
async fn tcp_silent_server_times_out_waiting_for_the_reply() {
    let silent = support::silent_server().await;
    let mut c = tcp(silent);
    c.expect = re("^220");
    let o = run(Check::Tcp(c), Duration::from_millis(500)).await;
    assert_eq!(reason(&o), "timed out during processing");
}

#[tokio::test]
async fn tcp_tls_checks_the_certificate_and_talks_through_it() {
    let ca = support::Ca::new();
    let s = support::HttpServer::start(Some(ca.server(-1, 3))).await;
    let mut c = TcpCheck {
        address: format!("localhost:{}", s.addr.port()),
        tls: Some(TlsOptions::new(Some(ca.pem_file.path().to_path_buf()), false, None).unwrap()),
        send: Some("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n".into()),
        expect: re("^HTTP/1.1 200"),
        cert_min_days: None,
        ip: Default::default(),
        starttls: None,
    };
    let o = run(Check::Tcp(c.clone()), T).await;
    assert!(o.success, "{}", reason(&o));
    assert!(o.phase(Phase::Tls) > Duration::ZERO);
    assert!(o.details.tls_version.is_some());
    c.cert_min_days = Some(7);
    assert_eq!(
        reason(&run(Check::Tcp(c), T).await),
        "certificate expires in 3 days (cert_min_days is 7)"
    );

    let garbage = support::line_server(0, b"SSH-2.0-OpenSSH\r\n").await;
    let c = TcpCheck {
        address: garbage.to_string(),
        tls: Some(TlsOptions::system()),
        send: None,
        expect: None,
        cert_min_days: None,
        ip: Default::default(),
        starttls: None,
    };
    let o = run(Check::Tcp(c), T).await;
    assert!(
        matches!(o.reason, Some(Reason::Tls { .. })),
        "{}",
        reason(&o)
    );
}

/// A UDP peer on loopback: answers each datagram with `replies` (all of them, in order),
/// or with nothing when `replies` is empty.
async fn udp_peer(replies: Vec<Vec<u8>>) -> SocketAddr {
    let s = tokio::net::UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = s.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        while let Ok((_, from)) = s.recv_from(&mut buf).await {
            for r in &replies {
                let _ = s.send_to(r, from).await;
            }
        }
    });
    addr
}

fn udp(addr: SocketAddr, expect: &str) -> Check {
    Check::Udp(tocsin::probe::udp::UdpCheck {
        address: addr.to_string(),
        send: "\u{ff}\u{ff}status".into(),
        expect: Pattern(regex::Regex::new(expect).unwrap()),
        ip: Default::default(),
    })
}

#[tokio::test]
async fn udp_send_then_expect_passes_on_the_matching_reply() {
    let peer = udp_peer(vec![b"noise".to_vec(), b"status: 12 players".to_vec()]).await;
    let o = run(udp(peer, r"^status: \d+ players"), T).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.phases.last().map(|p| p.0), Some(Phase::Processing));
}

#[tokio::test]
async fn udp_closed_port_silence_and_floods_are_named() {
    // Nothing listens: the kernel's ICMP port unreachable.
    let closed = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    assert_eq!(
        reason(&run(udp(closed, "^ok"), T).await),
        "connection refused"
    );
    // A peer that never answers: the deadline, during processing.
    let silent = udp_peer(vec![]).await;
    assert_eq!(
        reason(&run(udp(silent, "^ok"), Duration::from_millis(300)).await),
        "timed out during processing"
    );
    // A flood of wrong datagrams ends as a mismatch with the last one shown.
    let flood = udp_peer(vec![b"garbage".to_vec(); 150]).await;
    assert_eq!(
        reason(&run(udp(flood, "^ok"), T).await),
        "reply does not match /^ok/, got \"garbage\""
    );
}

/// Found by fuzzing (scripts/fuzz.sh, target dns_answer): an OPT record in the answer
/// section, whose data hickory cannot format, panicked the probe while it wrote the
/// records down. Now the record reads as unreadable, from the bytes and from a server.
const OPT_IN_ANSWER: &[u8] = &[
    255, 251, 255, 0, 0, 0, 0, 1, 0, 1, 0, 0, 0, 0, 41, 1, 0, 0, 0, 0, 0, 0, 10, 0, 0, 0, 0, 0,
    150, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 41, 41, 0, 0,
];

#[tokio::test]
async fn an_answer_with_unformattable_data_is_read_not_panicked_on() {
    let lines = tocsin::probe::dns::answer_lines(OPT_IN_ANSWER);
    assert!(lines.is_some());
    // The same answer from a server, to the query's id, as a response.
    let server = support::raw_dns(|q| {
        let mut r = OPT_IN_ANSWER.to_vec();
        r[0] = q[0];
        r[1] = q[1];
        r[2] = 0x81; // a response, recursion desired, not truncated
        r[3] = 0x00; // NOERROR
        r
    })
    .await;
    let mut c = dns(server, "shop.test.", "A");
    c.validate_answer.fail_if_matches = rules(&["unreadable OPT"]);
    let o = run(Check::Dns(c), Duration::from_secs(2)).await;
    assert_eq!(o.details.dns_answers, Some(1));
    assert_eq!(
        reason(&o),
        "answer record `. 0 OPT OPT (unreadable OPT data)` matches /unreadable OPT/ (fail_if_matches)"
    );
}
