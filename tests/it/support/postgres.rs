//! A real PostgreSQL server for one test: `initdb` into a temporary directory, a
//! loopback port, password authentication (SCRAM), and a non-root user when the tests run
//! as root (the server refuses root). Stopped when dropped; `stop` and `start` stop and
//! restart it in between (PostgreSQL going away during an outage).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// The superuser's name and password in every test server.
pub const USER: &str = "tocsin";
pub const PASSWORD: &str = "test-password-not-secret";

pub struct Postgres {
    dir: tempfile::TempDir,
    bin: PathBuf,
    pub port: u16,
    child: Option<Child>,
    /// Addresses it listens on besides loopback (a network namespace's link).
    also: Vec<String>,
}

/// Where Debian's packages put the server's programs (`/usr/lib/postgresql/15/bin`), or
/// wherever `initdb` is on the PATH.
fn bindir() -> PathBuf {
    let mut found: Vec<PathBuf> = std::fs::read_dir("/usr/lib/postgresql")
        .map(|d| {
            d.filter_map(|e| e.ok())
                .map(|e| e.path().join("bin"))
                .filter(|b| b.join("initdb").exists())
                .collect()
        })
        .unwrap_or_default();
    found.sort_by_key(|p| {
        p.parent()
            .and_then(|v| v.file_name())
            .and_then(|v| v.to_str())
            .and_then(|v| v.parse::<u32>().ok())
            .unwrap_or(0)
    });
    if let Some(b) = found.pop() {
        return b;
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .find(|d| d.join("initdb").exists())
        .expect("PostgreSQL's initdb: scripts/test.sh installs the postgresql package")
}

/// Whether the tests run as root: a file they make is root's.
fn root() -> bool {
    use std::os::unix::fs::MetadataExt;
    let probe = tempfile::NamedTempFile::new().unwrap();
    probe.as_file().metadata().unwrap().uid() == 0
}

/// `program` as the `postgres` user when running as root, else as ourselves.
fn as_owner(program: &Path) -> Command {
    if root() {
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=postgres",
            "--regid=postgres",
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    } else {
        Command::new(program)
    }
}

fn chown_to_owner(p: &Path) {
    if root() {
        let status = Command::new("chown")
            .args(["-R", "postgres:postgres"])
            .arg(p)
            .status()
            .unwrap();
        assert!(status.success(), "chown {}", p.display());
    }
}

impl Postgres {
    /// A new cluster, started and ready.
    pub fn start() -> Postgres {
        let bin = bindir();
        let dir = tempfile::tempdir().unwrap();
        let pw = dir.path().join("pw");
        std::fs::write(&pw, PASSWORD).unwrap();
        chown_to_owner(dir.path());
        let out = as_owner(&bin.join("initdb"))
            .arg("-D")
            .arg(dir.path().join("data"))
            .args([
                "-U",
                USER,
                "--auth=scram-sha-256",
                "-E",
                "UTF8",
                "--locale=C",
                "-N",
            ])
            .arg(format!("--pwfile={}", pw.display()))
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut pg = Postgres {
            dir,
            bin,
            port: super::free_port(),
            child: None,
            also: Vec::new(),
        };
        pg.resume();
        pg
    }

    /// Listens on `addr` too (restarting), accepting password logins from anywhere: for an
    /// instance in a network namespace that reaches it over a veth link.
    pub fn also_listen(&mut self, addr: &str) {
        let hba = self.dir.path().join("data/pg_hba.conf");
        let mut rules = std::fs::read_to_string(&hba).unwrap();
        rules.push_str("\nhost all all 0.0.0.0/0 scram-sha-256\n");
        std::fs::write(&hba, rules).unwrap();
        self.also.push(addr.to_string());
        self.stop();
        self.resume();
    }

    /// The URL of database `name` at `addr` (one given to [`Postgres::also_listen`]).
    pub fn url_at(&self, addr: &str, name: &str) -> String {
        format!("postgres://{USER}@{addr}:{}/{name}", self.port)
    }

    /// Starts the server again on the same port and data (after [`Postgres::stop`]).
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join("server.log"))
            .unwrap();
        let child = as_owner(&self.bin.join("postgres"))
            .arg("-D")
            .arg(self.dir.path().join("data"))
            .args(["-p", &self.port.to_string()])
            .arg("-k")
            .arg(self.dir.path())
            .args([
                "-c",
                &format!(
                    "listen_addresses={}",
                    std::iter::once("127.0.0.1")
                        .chain(self.also.iter().map(String::as_str))
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                "-c",
                "fsync=off",
                "-c",
                "full_page_writes=off",
                "-c",
                "shared_buffers=16MB",
                "-c",
                "max_connections=60",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        self.child = Some(child);
        let deadline = std::time::Instant::now() + Duration::from_secs(30);
        loop {
            let ok = Command::new(self.bin.join("pg_isready"))
                .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-q"])
                .status()
                .map(|s| s.success())
                .unwrap_or(false);
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "PostgreSQL did not start: {}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Stops the server (fast shutdown: connections are cut, as when it fails over).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = Command::new("kill")
                .args(["-INT", &child.id().to_string()])
                .status();
            let _ = child.wait();
        }
    }

    /// The server's log, for failure messages.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("server.log")
    }

    /// A new, empty database; its URL (no password: that comes from the environment).
    pub fn database(&self, name: &str) -> String {
        self.psql("postgres", &format!("CREATE DATABASE {name}"));
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("postgres://{USER}@127.0.0.1:{}/{name}", self.port)
    }

    /// Runs `sql` in database `db` as the superuser; its output, unaligned.
    pub fn psql(&self, db: &str, sql: &str) -> String {
        let out = Command::new(self.bin.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", USER])
            .args([
                "-d",
                db,
                "-X",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ])
            .env("PGPASSWORD", PASSWORD)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "psql {sql}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    /// How tocsin reaches database `name`.
    pub fn options(&self, name: &str) -> tocsin::store::PgOptions {
        tocsin::store::PgOptions {
            url: self.url(name),
            password: Some(PASSWORD.into()),
            password_env: "PGPASSWORD".into(),
            timeout: Duration::from_secs(10),
        }
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        self.stop();
    }
}
