#!/usr/bin/env bash
# Fuzzes tocsin's parsers of outside input with cargo-fuzz (libFuzzer; needs the nightly
# toolchain and cargo-fuzz, which this script installs if missing): the configuration,
# audience files, ManageSieve responses, /act and /unsubscribe queries, DNS answers.
# Each target runs SECONDS (default 60) from the corpus kept in fuzz/corpus/, which it
# grows; the figures are printed per target. A crash leaves its input in
# fuzz/artifacts/<target>/ and makes the script exit 1: turn it into a regression test
# in the normal suite, then fix it. Not part of scripts/test.sh (it runs for minutes).
set -euo pipefail
cd "$(dirname "$0")/.."
seconds="${1:-60}"
command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked
rustup toolchain list | grep -q nightly || rustup toolchain install nightly --profile minimal
targets=(config audience sieve_response links dns_answer)
found=0
printf '%-16s %12s %10s %8s\n' target executions exec/s crashes
for t in "${targets[@]}"; do
  mkdir -p "fuzz/corpus/$t"
  log=$(mktemp)
  set +e
  cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- -max_total_time="$seconds" -print_final_stats=1 >"$log" 2>&1
  status=$?
  set -e
  runs=$(awk -F: '/stat::number_of_executed_units/ { gsub(/ /, "", $NF); print $NF }' "$log" | tail -1)
  rate=$(awk -F: '/stat::average_exec_per_sec/ { gsub(/ /, "", $NF); print $NF }' "$log" | tail -1)
  crashes=$(ls "fuzz/artifacts/$t" 2>/dev/null | wc -l)
  printf '%-16s %12s %10s %8s\n' "$t" "${runs:-?}" "${rate:-?}" "$crashes"
  if [ "$status" -ne 0 ] || [ "$crashes" -gt 0 ]; then
    found=1
    tail -30 "$log"
  fi
  rm -f "$log"
done
exit "$found"
