//! ICMP probes against the real kernel: echo to 127.0.0.1 and ::1, a host in a network
//! namespace that never answers, a namespace without a route, and a kernel that refuses
//! an unprivileged user both socket kinds (and one that allows the datagram socket).

use std::time::{Duration, SystemTime};

use tocsin::probe::icmp::IcmpCheck;
use tocsin::probe::ip::{Family, IpProtocol};
use tocsin::probe::{self, Check, Phase};

use crate::support::netns::Netns;
use crate::support::reason;

fn icmp(host: &str, count: u16) -> Check {
    Check::Icmp(IcmpCheck {
        host: host.into(),
        count,
        ip: IpProtocol::default(),
    })
}

#[tokio::test]
async fn echo_to_loopback_reports_round_trip_hops_and_family() {
    let o = probe::run(
        &icmp("127.0.0.1", 3),
        Duration::from_secs(5),
        SystemTime::now(),
    )
    .await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.icmp_sent, Some(3));
    assert_eq!(o.details.icmp_received, Some(3));
    assert!(
        o.details
            .icmp_rtt
            .is_some_and(|r| r < Duration::from_secs(1))
    );
    assert_eq!(o.details.icmp_hop_limit, Some(64), "Linux's default TTL");
    assert_eq!(o.details.ip_protocol, Some(4));
    let phases: Vec<Phase> = o.phases.iter().map(|(p, _)| *p).collect();
    assert_eq!(phases, [Phase::Resolve, Phase::Setup, Phase::Rtt]);

    let o = probe::run(&icmp("::1", 1), Duration::from_secs(5), SystemTime::now()).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.ip_protocol, Some(6));
}

/// `ip_protocol: ip6` on a name with only an IPv4 address (this machine's `localhost`):
/// refused without fallback, the IPv4 address used with it.
#[tokio::test]
async fn the_preferred_family_falls_back_only_when_allowed() {
    let mut only6 = IpProtocol {
        prefer: Some(Family::Ip6),
        fallback: false,
    };
    let check = |ip| {
        Check::Icmp(IcmpCheck {
            host: "localhost".into(),
            count: 1,
            ip,
        })
    };
    let o = probe::run(&check(only6), Duration::from_secs(5), SystemTime::now()).await;
    assert_eq!(
        reason(&o),
        "cannot resolve localhost: no ip6 address, and `ip_protocol_fallback` is false"
    );
    only6.fallback = true;
    let o = probe::run(&check(only6), Duration::from_secs(5), SystemTime::now()).await;
    assert!(o.success, "{}", reason(&o));
    assert_eq!(o.details.ip_protocol, Some(4));
}

/// A host that is there but ignores echo requests: the probe waits its timeout and says
/// so, with every request counted as lost.
#[tokio::test]
async fn a_host_that_never_answers_times_out_in_the_rtt_phase() {
    let ns = Netns::linked();
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "1");
    let (_, silent) = ns.link.clone().unwrap();
    let o = probe::run(
        &icmp(&silent, 2),
        Duration::from_millis(600),
        SystemTime::now(),
    )
    .await;
    assert_eq!(reason(&o), "timed out during rtt");
    assert_eq!(o.details.icmp_received, Some(0));
    assert_eq!(o.details.icmp_sent, Some(2), "both requests went out");

    // The same host answering: the namespace and the veth work.
    ns.sysctl("net.ipv4.icmp_echo_ignore_all", "0");
    let o = probe::run(&icmp(&silent, 1), Duration::from_secs(5), SystemTime::now()).await;
    assert!(o.success, "{}", reason(&o));
}

/// tocsin's own binary, run inside a namespace (optionally as an unprivileged user), on a
/// config with one ICMP probe to `host`.
fn probe_in(ns: &Netns, host: &str, as_nobody: bool) -> String {
    let dir = tempfile::tempdir().unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let cfg = dir.path().join("probes.yaml");
    std::fs::write(
        &cfg,
        format!("services:\n  - id: net\n    probes:\n      - name: ping\n        timeout: 2s\n        icmp: {{ host: \"{host}\" }}\n"),
    )
    .unwrap();
    std::fs::set_permissions(&cfg, std::fs::Permissions::from_mode(0o644)).unwrap();
    let bin = env!("CARGO_BIN_EXE_tocsin");
    let cfg = cfg.to_str().unwrap();
    let mut cmd: Vec<&str> = Vec::new();
    if as_nobody {
        cmd.extend([
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "--inh-caps=-all",
            "--bounding-set=-all",
        ]);
    }
    cmd.extend([bin, "--config", cfg, "probe", "ping"]);
    let out = ns.exec(&cmd);
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

#[test]
fn no_route_is_reported_as_unreachable() {
    let ns = Netns::new();
    // TEST-NET-1, and the namespace has no route at all: nothing leaves it.
    let out = probe_in(&ns, "192.0.2.1", false);
    assert!(
        out.contains("FAILED: unreachable: Network is unreachable"),
        "{out}"
    );
}

/// The kernel decides which socket an unprivileged tocsin may open: with
/// `ping_group_range` excluding it and no CAP_NET_RAW, neither; the reason names both
/// fixes. With the range admitting it, the datagram socket works without any capability.
#[test]
fn without_permission_the_reason_says_how_to_grant_it() {
    let ns = Netns::new();
    ns.sysctl("net.ipv4.ping_group_range", "1 0");
    let out = probe_in(&ns, "127.0.0.1", true);
    assert!(
        out.contains(
            "FAILED: no permission to send ICMP: the kernel refused both an ICMP datagram socket and a raw socket; allow unprivileged ping with `sysctl -w net.ipv4.ping_group_range=\"0 2147483647\"` or grant tocsin CAP_NET_RAW"
        ),
        "{out}"
    );

    ns.sysctl("net.ipv4.ping_group_range", "0 2147483647");
    let out = probe_in(&ns, "127.0.0.1", true);
    assert!(out.contains("net/ping (icmp 127.0.0.1): ok"), "{out}");
}
