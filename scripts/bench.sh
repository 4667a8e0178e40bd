#!/usr/bin/env bash
# Runs tocsin's benchmarks and prints their figures. Installs through apt what they need
# when missing: Postfix (smtp-sink and smtp-source, the campaign benchmark's mail server
# and yardstick), wrk and blackbox_exporter (the probe's side-by-side run), nginx (the
# probes' target) and PostgreSQL (the cluster's store; no cluster of its own is made).
set -euo pipefail
cd "$(dirname "$0")/.."
need=()
command -v smtp-sink >/dev/null 2>&1 || need+=(postfix)
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v prometheus-blackbox-exporter >/dev/null 2>&1 || need+=(prometheus-blackbox-exporter)
command -v nginx >/dev/null 2>&1 || need+=(nginx-light)
. scripts/need-postgres.sh
if [ "${#need[@]}" -gt 0 ]; then
  echo "==> installing: ${need[*]}"
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
echo "==> campaign: 10,000 personalised mails into smtp-sink"
cargo bench --bench campaign
echo "==> campaign: the same, each mail DKIM-signed with an RSA-2048 and an Ed25519 key"
cargo bench --bench campaign -- --dkim 1
echo "==> campaign: a million recipients, the expansion SIGKILLed and resumed"
cargo bench --bench campaign -- --mails 1000000 --kill-after 3 --source 0
echo "==> load: 200 clients on /status and the API for 60 s during an outage and a 10,000-mail campaign"
cargo bench --bench load
echo "==> the whole product: 100,000 HTTP probes at 60 s, /metrics every 15 s, /status every 5 s"
cargo bench --bench product
echo "==> an incident's cost: 10,000 probes, one service down and its customer phase mailing 10,000 customers"
cargo bench --bench product -- --probes 10000 --customers 10000
echo "==> the probe side by side with blackbox_exporter: /probe under wrk, HTTP and TCP"
cargo bench --bench blackbox
echo "==> three locations voting on PostgreSQL: 10,000 HTTP probes each at 10 s, failure to decision, failover"
cargo bench --bench cluster
echo "==> scheduler: 10,000 HTTP probes at 10 s"
cargo bench --bench scheduler
