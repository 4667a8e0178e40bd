//! Network namespaces for faults loopback cannot show: a host that never answers, a
//! network with no route, a kernel that refuses unprivileged ICMP. Needs root (the suite
//! runs as root, as CI does); every namespace is deleted on drop.

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};

pub struct Netns {
    pub name: String,
    /// `(root side, namespace side)` addresses of the veth pair, when one was made.
    pub link: Option<(String, String)>,
    veth: Option<String>,
}

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) {
    let out = Command::new("ip").args(args).output().expect("run ip");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A number unique to this process and call, for names and subnets (tests run in
/// parallel processes).
fn unique() -> u32 {
    std::process::id() * 4 + SEQ.fetch_add(1, Ordering::Relaxed)
}

impl Netns {
    /// A namespace with only its loopback, up.
    pub fn new() -> Netns {
        let name = format!("tocsin-t{}", unique());
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            link: None,
            veth: None,
        };
        ns.exec_ok(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// A namespace joined to this one by a veth pair on a /30 of its own.
    pub fn linked() -> Netns {
        let mut ns = Netns::new();
        let n = unique() % 16_000;
        let (a, b) = (200 + n / 250 % 50, n % 250);
        let root = format!("10.{a}.{b}.1");
        let inner = format!("10.{a}.{b}.2");
        let veth = format!("tv{}", unique() % 100_000_000);
        let peer = format!("{veth}p");
        ip(&["link", "add", &veth, "type", "veth", "peer", "name", &peer]);
        ip(&["link", "set", &peer, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{root}/30"), "dev", &veth]);
        ip(&["link", "set", &veth, "up"]);
        ns.exec_ok(&["ip", "addr", "add", &format!("{inner}/30"), "dev", &peer]);
        ns.exec_ok(&["ip", "link", "set", &peer, "up"]);
        ns.veth = Some(veth);
        ns.link = Some((root, inner));
        ns
    }

    /// The root side of the veth pair, when one was made: `ip link set NAME down` cuts the
    /// namespace off.
    pub fn veth_name(&self) -> Option<String> {
        self.veth.clone()
    }

    /// Runs a command inside the namespace.
    pub fn exec(&self, cmd: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(cmd)
            .output()
            .expect("run ip netns exec")
    }

    pub fn exec_ok(&self, cmd: &[&str]) {
        let out = self.exec(cmd);
        assert!(
            out.status.success(),
            "{}: {}",
            cmd.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    pub fn sysctl(&self, key: &str, value: &str) {
        self.exec_ok(&["sysctl", "-q", "-w", &format!("{key}={value}")]);
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        if let Some(v) = &self.veth {
            let _ = Command::new("ip").args(["link", "del", v]).output();
        }
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}
