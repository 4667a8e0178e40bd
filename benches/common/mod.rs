//! What the benchmarks share: their command-line options, free ports, children that
//! stop with them, an nginx target, and a process's CPU time.

use std::path::Path;
use std::process::{Command, Stdio};

/// The value after `name` on the command line, or `default`.
pub fn arg(name: &str, default: u64) -> u64 {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A loopback port free at this moment.
#[allow(dead_code)] // not every benchmark starts servers
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A child stopped when dropped: SIGTERM, so that a server with workers (nginx's master)
/// takes them down with it; SIGKILL would leave them running, holding output open.
#[allow(dead_code)]
pub struct Killed(pub std::process::Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.0.id().to_string()])
            .status();
        let _ = self.0.wait();
    }
}

#[allow(dead_code)]
/// nginx answering 200 (`Add to cart`) to everything but `/down/` (503), and `/flip/`
/// (503 while the file `<dir>/flip` exists), with room for the probes' connections.
pub fn nginx(dir: &Path, port: u16) -> Killed {
    std::fs::create_dir_all(dir.join("logs")).unwrap();
    let conf = dir.join("nginx.conf");
    std::fs::write(
        &conf,
        format!(
            "daemon off;
worker_processes 1;
pid {d}/nginx.pid;
error_log {d}/logs/error.log warn;
events {{ worker_connections 8192; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    server {{ listen 127.0.0.1:{port} backlog=4096; location / {{ return 200 \"Add to cart\"; }} location /down/ {{ return 503; }} location /flip/ {{ if (-f {d}/flip) {{ return 503; }} return 200 \"Add to cart\"; }} }}
}}
",
            d = dir.display()
        ),
    )
    .unwrap();
    Killed(
        Command::new("nginx")
            .args(["-c", conf.to_str().unwrap(), "-p", dir.to_str().unwrap()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nginx (scripts/test.sh installs nginx-light)"),
    )
}

#[allow(dead_code)]
/// utime + stime of `pid`, in seconds.
pub fn cpu(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit(')').next().unwrap_or_default();
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = f.get(11).and_then(|u| u.parse::<f64>().ok()).unwrap_or(0.0)
        + f.get(12).and_then(|s| s.parse::<f64>().ok()).unwrap_or(0.0);
    ticks / 100.0
}

/// VmRSS and VmHWM (the high-water mark) of `pid`, in MB.
#[allow(dead_code)]
pub fn rss(pid: u32) -> (f64, f64) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let kb = |k: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(k))
            .and_then(|v| v.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
            / 1024.0
    };
    (kb("VmRSS:"), kb("VmHWM:"))
}
