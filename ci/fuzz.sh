#!/usr/bin/env bash
# Fuzzes every target of fuzz/ for FUZZ_SECONDS each and fails on any crash,
# printing the command that reproduces it. Stable Rust: the targets are built with
# `cargo fuzz build --sanitizer none` (no nightly flag is needed then); memory is
# bounded by the counting allocator inside the targets plus -rss_limit_mb. The
# targets are thin wrappers: what they check lives in fuzz-checks/ (the
# wirecheck-fuzz-checks crate, also replayed by `cargo test`), not in wirecheck.
#
#   FUZZ_SECONDS=60      seconds per target (0: only replay the seeds and regressions)
#   FUZZ_TARGETS="a b"   a subset of the targets (default: all of them)
#   FUZZ_SKIP="a b"      targets to leave out (e.g. one with a known, unfixed crash)
#   FUZZ_RSS_MB=2048     libFuzzer's -rss_limit_mb
#   FUZZ_MAX_LEN=8192    libFuzzer's -max_len
#
# The committed inputs (fuzz/seeds/TARGET, fuzz/regressions/TARGET) are copied into a
# scratch corpus, fuzz/corpus/TARGET (git-ignored), which grows across local runs.
# A crash lands in fuzz/artifacts/TARGET/. See FUZZING.md.
set -euo pipefail
cd "$(dirname "$0")/../fuzz"

FUZZ_SECONDS=${FUZZ_SECONDS:-60}
FUZZ_RSS_MB=${FUZZ_RSS_MB:-2048}
FUZZ_MAX_LEN=${FUZZ_MAX_LEN:-8192}
ALL_TARGETS="length_raw varint_raw line_raw json_header_raw round_trip json_header_round_trip
length_vs_tokio lines_vs_tokio scenario_parse trace_import matcher_chunks proxy_pipeline"
FUZZ_TARGETS=${FUZZ_TARGETS:-$ALL_TARGETS}
FUZZ_SKIP=${FUZZ_SKIP:-}

echo "== cargo-fuzz"
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
cargo fuzz --version

echo "== build (--sanitizer none)"
cargo fuzz build --sanitizer none

mkdir -p logs
failed=()
summary=()
ran=0
for target in $FUZZ_TARGETS; do
  if [[ " $FUZZ_SKIP " == *" $target "* ]]; then
    echo "== $target: skipped (FUZZ_SKIP)"
    continue
  fi
  ran=$((ran + 1))
  corpus="corpus/$target"
  artifacts="artifacts/$target"
  log="logs/$target.log"
  mkdir -p "$corpus" "$artifacts"
  for committed in "seeds/$target" "regressions/$target"; do
    if [ -d "$committed" ]; then
      cp -n "$committed"/* "$corpus"/ 2>/dev/null || true
    fi
  done
  if [ "$FUZZ_SECONDS" -eq 0 ]; then
    budget=(-runs=0)
  else
    budget=(-max_total_time="$FUZZ_SECONDS")
  fi
  echo "== $target (${FUZZ_SECONDS}s)"
  # A crash input from an earlier run would hide a new one: start clean.
  rm -f "$artifacts"/crash-* "$artifacts"/oom-* "$artifacts"/timeout-* "$artifacts"/leak-*
  set +e
  cargo fuzz run --sanitizer none "$target" "$corpus" -- \
    "${budget[@]}" -rss_limit_mb="$FUZZ_RSS_MB" -max_len="$FUZZ_MAX_LEN" -timeout=10 \
    -dict="dict/$target.dict" -artifact_prefix="$artifacts/" -print_final_stats=1 \
    >"$log" 2>&1
  status=$?
  set -e
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -n 1)
  cov=$(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -n 1 || true)
  crash=$(cd "$artifacts" && ls crash-* oom-* timeout-* leak-* 2>/dev/null | head -n 1 || true)
  if [ "$status" -ne 0 ] || [ -n "$crash" ]; then
    echo "FAILED: $target (exit $status)"
    grep -m 1 -A 12 -E "panicked at|ERROR: libFuzzer|allocation budget|==ERROR" "$log" || tail -n 30 "$log"
    if [ -n "$crash" ]; then
      echo "reproduce: (cd fuzz && cargo fuzz run --sanitizer none $target $artifacts/$crash)"
      echo "minimize:  (cd fuzz && cargo fuzz tmin --sanitizer none $target $artifacts/$crash)"
    else
      echo "full log: fuzz/$log"
    fi
    failed+=("$target")
  fi
  summary+=("$(printf '%-24s %10s execs %8s exec/s  %s' "$target" "${execs:-?}" "${rate:-?}" "${cov:-}")")
done

echo "== summary"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzzing found crashes in: ${failed[*]}"
  echo "Each one becomes a regression input: copy it to fuzz/regressions/TARGET/ (see FUZZING.md)."
  exit 1
fi
echo "no crash in $ran targets"
