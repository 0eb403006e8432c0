#!/usr/bin/env bash
# The whole CI job: formatting, lints, the test suite (README's test command), the
# shipped scenarios, and the sticky-packet determinism check.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }
# tshark (with capinfos) is the independent judge of wirecheck's pcap traces, both in
# the step below and in the test suite (tests/integration/traces.rs).
if ! command -v tshark >/dev/null || ! command -v capinfos >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq tshark >/dev/null
fi
tshark --version | head -n 1
# Chromium renders the HTML report in the test suite (tests/integration/html.rs); its
# screenshot is kept as target/html-report/report.png.
if ! command -v chromium >/dev/null; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
fi
chromium --version 2>/dev/null | head -n 1

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== build"
cargo build --release --workspace

echo "== shipped scenarios"
rm -rf target/traces
mkdir -p target/html-report
./target/release/wirecheck run scenarios/ --junit target/wirecheck-junit.xml --pcap target/traces \
  --tap target/wirecheck.tap --html target/html-report/scenarios.html

echo "== pcap traces (tshark judges the trace of every shipped scenario)"
bad_checksum='tcp.checksum.status == "Bad" || ip.checksum.status == "Bad" || udp.checksum.status == "Bad"'
judged=0
for trace in target/traces/*.pcapng; do
  capinfos "$trace" >/dev/null
  flags=$(tshark -r "$trace" -Y tcp.analysis.flags 2>/dev/null)
  if [ -n "$flags" ]; then
    echo "tshark reports TCP problems in $trace:"; echo "$flags"; exit 1
  fi
  bad=$(tshark -r "$trace" -o tcp.check_checksum:TRUE -o ip.check_checksum:TRUE \
    -o udp.check_checksum:TRUE -Y "$bad_checksum" 2>/dev/null)
  if [ -n "$bad" ]; then
    echo "bad checksums in $trace:"; echo "$bad"; exit 1
  fi
  judged=$((judged + 1))
done
[ "$judged" -gt 0 ] || { echo "no trace was written to target/traces"; exit 1; }
echo "$judged traces: no TCP analysis warnings, every checksum good, capinfos reads them"

echo "== fuzz the reference servers (they must survive; FUZZING.md, \"Fuzz your own server\")"
# Exit 1 means a finding: the reproducer and its one-line summary are printed.
if ! ./target/release/wirecheck fuzz scenarios/fuzzing/reference-servers.toml \
    --time "${SERVER_FUZZ_TIME:-50s}" -j 4 --out target/fuzz-findings; then
  echo "a reference server did not survive the fuzzer:"
  cat target/fuzz-findings/findings.txt 2>/dev/null || true
  for reproducer in target/fuzz-findings/finding-*.toml; do
    [ -e "$reproducer" ] && { echo "--- $reproducer"; cat "$reproducer"; }
  done
  exit 1
fi

echo "== sticky determinism (--repeat 200)"
./target/release/wirecheck run scenarios/sticky --repeat 200

echo "== fuzz (short budget; FUZZING.md has the long runs)"
# 20 s a target: with a dozen targets and the grown test suite, CI stays well under
# its 30-minute budget on a 2-core machine.
FUZZ_SECONDS="${FUZZ_SECONDS:-20}" bash ci/fuzz.sh

echo "== tests"
# README's test command, `cargo test --workspace`, run as its three parts so that
# its closing "test result:" line, the one CI reads, is the integration suite's:
# first every doc test and the other members' tests (none of either today, so
# their summaries say `running 0 tests`), then the product's unit tests, binary and
# integration suite.
cargo test --workspace --doc
cargo test --workspace --exclude wirecheck --lib --bins --tests
cargo test -p wirecheck --lib --bins --tests
