#!/usr/bin/env bash
# The cost of `run --pcap` (BENCHMARKS.md, "pcap traces: cost"): the bulk scenario
# (256 MiB each way through the echo server) run without a trace, with a trace, and
# with a trace cut to 128 bytes per packet, alternating, ROUNDS times each, each run
# into a fresh folder after a `sync`. Prints every run, then the medians.
#   cargo build --release && bash harness/benches/trace-cost.sh [ROUNDS]
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds="${1:-7}"
scenario=harness/benches/bulk-echo-256mib.toml
wirecheck=./target/release/wirecheck
out="${TMPDIR:-/tmp}/wirecheck-trace-cost"
mib=256
declare -A times
for round in $(seq "$rounds"); do
  for mode in none pcap snaplen128; do
    rm -rf "$out"
    sync
    case $mode in
      none) args=() ;;
      pcap) args=(--pcap "$out") ;;
      snaplen128) args=(--pcap "$out" --snaplen 128) ;;
    esac
    start=$(date +%s%N)
    "$wirecheck" run "$scenario" "${args[@]}" >"$out.log" 2>&1 || { cat "$out.log"; exit 1; }
    end=$(date +%s%N)
    ms=$(( (end - start) / 1000000 ))
    run_ms=$(grep -o 'PASS .*(\([0-9.]*\)\(ms\|s\))' "$out.log" | grep -o '([^)]*)$' || true)
    size=$(du -sh "$out" 2>/dev/null | cut -f1 || true)
    echo "round $round  $mode  ${ms} ms  run ${run_ms}  trace ${size:--}"
    times[$mode]="${times[$mode]:-} $ms"
  done
done
rm -rf "$out" "$out.log"
echo
for mode in none pcap snaplen128; do
  median=$(echo "${times[$mode]}" | tr ' ' '\n' | grep . | sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
  echo "$mode: median ${median} ms, $(( mib * 1000 / median )) MiB/s"
done
