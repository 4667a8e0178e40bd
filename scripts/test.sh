#!/usr/bin/env bash
# Runs tocsin's whole test suite. Installs through apt what the tests need when it is
# missing (Prometheus and promtool from Debian's prometheus package; blackbox_exporter
# for the conformance test; aiosmtpd, a real SMTP server, from python3-aiosmtpd; nginx
# for the placeholder snippet; headless Chromium for the pages; systemd-analyze for the
# unit file; Dovecot with Pigeonhole's managesieved for the autoresponder, and its IMAP
# and POP3 servers for the STARTTLS probes; iproute2,
# procps and util-linux for the network namespaces, the unprivileged ICMP tests and the
# descriptor limit; faketime for the clock-jump test; dkimpy (python3-dkim), SpamAssassin
# and openssl for the deliverability tests: independent DKIM verification, offline spam
# scores, and keys made as operators make them); python3-feedparser, a real reader of the
# Atom and RSS feeds; PostgreSQL's server (the store's tests start their own clusters with
# initdb; the package is told not to create or start one of its own); and
# through pip kubernetes-validate (the Kubernetes API schemas, offline),
# then checks formatting and lints and runs every test. CI (.ci/run) calls this same script.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
command -v promtool >/dev/null 2>&1 || need+=(prometheus)
command -v kill >/dev/null 2>&1 || need+=(procps)
command -v sysctl >/dev/null 2>&1 || need+=(procps)
command -v ip >/dev/null 2>&1 || need+=(iproute2)
command -v setpriv >/dev/null 2>&1 || need+=(util-linux)
command -v prlimit >/dev/null 2>&1 || need+=(util-linux)
command -v mount >/dev/null 2>&1 || need+=(mount)
[ -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ] || need+=(faketime)
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need+=(python3-aiosmtpd)
/usr/bin/python3 -c 'import dkim' >/dev/null 2>&1 || need+=(python3-dkim)
/usr/bin/python3 -c 'import feedparser' >/dev/null 2>&1 || need+=(python3-feedparser)
command -v spamassassin >/dev/null 2>&1 || need+=(spamassassin)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
command -v chromium >/dev/null 2>&1 || need+=(chromium)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
{ command -v dovecot && [ -x /usr/lib/dovecot/managesieve ]; } >/dev/null 2>&1 || need+=(dovecot-core dovecot-managesieved dovecot-sieve)
{ [ -x /usr/lib/dovecot/imap ] && [ -x /usr/lib/dovecot/pop3 ]; } || need+=(dovecot-imapd dovecot-pop3d)
. scripts/need-postgres.sh
if [ ${#need[@]} -gt 0 ]; then
  echo "==> installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # The prometheus package is needed only for promtool; do not let it start a server.
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi

# The same python3 the deploy test runs (`python3 -m kubernetes_validate`).
if ! python3 -c 'import kubernetes_validate' >/dev/null 2>&1; then
  echo "==> installing: kubernetes-validate (pip)"
  python3 -m pip install --quiet --disable-pip-version-check --root-user-action=ignore kubernetes-validate
fi

echo "==> cargo fmt --check"
cargo fmt --all -- --check

# --all-targets includes the benchmark, so it is compiled and linted here too
# (run it with: cargo bench --bench scheduler).
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings

# Each test in its own process, several at once (.config/nextest.toml): the suite waits
# on servers and clocks more than on the CPU. Without cargo-nextest, cargo test runs the
# same tests one binary after another. tocsin has no doc examples.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
if cargo nextest --version >/dev/null 2>&1; then
  echo "==> cargo nextest run"
  cargo nextest run --lib --bins --tests 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  # nextest's last line: "Summary [ 57.0s] 155 tests run: 155 passed, 0 skipped" (and
  # "N failed" when some did).
  awk '/Summary \[/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p = $i; if ($(i+1) ~ /^failed/) f = $i } }
       END { printf "%d passed, %d failed\n", p, f }' "$log"
else
  echo "==> cargo test (cargo-nextest is not installed)"
  cargo test --quiet --no-fail-fast --lib --bins --tests 2>&1 | tee "$log"
  status=${PIPESTATUS[0]}
  set -e
  # The total of every test binary is printed last.
  awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i } }
       END { printf "%d passed, %d failed\n", p, f }' "$log"
fi
exit "$status"
