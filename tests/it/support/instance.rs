//! A `tocsin run` process of a cluster: its location, port and config file, its log
//! beside the config, started (in a network namespace, if asked) and stopped by the test.

use std::path::PathBuf;
use std::process::{Command, Stdio};

use super::Proc;
use super::postgres::PASSWORD;

pub struct Instance {
    pub location: &'static str,
    pub port: u16,
    pub cfg: PathBuf,
    pub proc: Option<Proc>,
    /// Environment beside PGPASSWORD (API token, secrets, RUST_LOG).
    pub env: Vec<(&'static str, &'static str)>,
}

impl Instance {
    pub fn new(
        location: &'static str,
        port: u16,
        cfg: PathBuf,
        env: &[(&'static str, &'static str)],
    ) -> Instance {
        Instance {
            location,
            port,
            cfg,
            proc: None,
            env: env.to_vec(),
        }
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.cfg.with_extension("log")).unwrap_or_default()
    }

    pub fn pid(&self) -> String {
        self.proc.as_ref().unwrap().0.id().to_string()
    }

    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([sig, &self.pid()])
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill {sig} {}", self.location);
    }

    pub async fn leads(&self) -> bool {
        super::metric(self.port, "tocsin_leader").await == Some(1.0)
    }

    /// Starts it, inside the network namespace `ns` when given; its log is appended to.
    pub fn start(&mut self, ns: Option<&str>) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.cfg.with_extension("log"))
            .unwrap();
        let mut c = match ns {
            None => Command::new(env!("CARGO_BIN_EXE_tocsin")),
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns, env!("CARGO_BIN_EXE_tocsin")]);
                c
            }
        };
        c.args(["run", "--config"])
            .arg(&self.cfg)
            .env("PGPASSWORD", PASSWORD)
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in &self.env {
            c.env(k, v);
        }
        self.proc = Some(Proc(c.spawn().unwrap()));
    }

    /// SIGKILL, and waits for it.
    pub fn kill(&mut self) {
        self.proc = None;
    }
}
