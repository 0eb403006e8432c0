#!/usr/bin/env bash
# The expect_line benchmark (BENCHMARKS.md, "expect_line vs exact expect"): two
# generated scenarios in which a scripted server sends STEPS lines and a client
# reads them, one with STEPS exact `expect` steps, one with STEPS `expect_line`
# steps. Each is run whole (`wirecheck run`, one process per run) RUNS times; the
# script prints the mean wall time of each and their ratio.
#   bash harness/benches/expect-line-vs-expect.sh [STEPS] [RUNS]
# Needs a release build: cargo build --release -p wirecheck
set -euo pipefail
steps="${1:-10000}"
runs="${2:-5}"
bin="${WIRECHECK:-target/release/wirecheck}"
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT

# $1: the client's step for one line. The server writes each line with its own
# `send` (the usual shape of a line protocol), so reads and lines interleave.
scenario() {
  echo 'name = "bench"'
  echo 'timeout = "300s"'
  echo 'unread = "fail"'
  echo '[servers.srv]'
  echo 'nodelay = true'
  echo 'script = ['
  for _ in $(seq "$steps"); do echo '  { send = "line of text 0123456789\n" },'; done
  echo ']'
  echo '[[clients]]'
  echo 'connect = "srv"'
  echo 'script = ['
  for _ in $(seq "$steps"); do echo "  $1,"; done
  echo ']'
}
scenario '{ expect = "line of text 0123456789\n" }' > "$dir/expect.toml"
scenario '{ expect_line = "line of text 0123456789" }' > "$dir/expect_line.toml"

mean() {
  local file=$1 total=0
  "$bin" run "$file" >/dev/null # warm-up
  for _ in $(seq "$runs"); do
    local start end
    start=$(date +%s%N)
    "$bin" run "$file" >/dev/null
    end=$(date +%s%N)
    total=$((total + end - start))
  done
  echo $((total / runs / 1000000))
}
exact=$(mean "$dir/expect.toml")
line=$(mean "$dir/expect_line.toml")
echo "$steps exact expect steps:  ${exact} ms (mean of $runs runs)"
echo "$steps expect_line steps:   ${line} ms (mean of $runs runs)"
awk -v a="$line" -v b="$exact" 'BEGIN { printf "ratio expect_line / expect: %.2f\n", a / b }'
