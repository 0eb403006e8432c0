#!/usr/bin/env bash
# Whole-process benchmarks of `{ template }` data, as a user runs it: the same
# scenario with plain DATA and with templates made from a captured variable (each
# step's template is made into bytes when the step starts). Medians of alternating
# runs; peak RSS by `/usr/bin/time -f %M`. Targets (BENCHMARKS.md, variables):
#   1,000 echo exchanges of 64 bytes whose sends and expectations are templates:
#     <= 1.2x the CPU time of the same exchanges written as plain data (wall
#     times are printed too; on a loaded 2-core machine they are mostly noise)
#   `wirecheck check` of a file with 100,000 template steps: < 1 s
#   bash ci/bench-templates.sh [PATH/TO/wirecheck]   (default: builds --release)
# Prints one line of figures; exits 0 when every target holds.
set -u
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WC="${1:-}"
if [ -z "$WC" ]; then cargo build --release --bin wirecheck -q || exit 1; WC="$CARGO_TARGET_DIR/release/wirecheck"; fi
work=$(mktemp -d); srv=""; trap 'kill $srv 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$WC" serve echo --listen "127.0.0.1:$port" >/dev/null 2>&1 & srv=$!
for i in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break; sleep 0.1; done
t() { local s=$(date +%s%N); "$@" >/dev/null 2>&1 || echo "FAILED: $*" >&2; echo $(( ($(date +%s%N)-s)/1000 )); }
med() { sort -n | sed -n "$(( ($1+1)/2 ))p"; }
rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
# CPU time (user + system, microseconds) of a whole process, from wait4: steadier
# than wall time on a shared machine.
cpu() { python3 -c 'import os, subprocess, sys
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
print(int((usage.ru_utime + usage.ru_stime) * 1e6))' "$@"; }
fail=""
x56=$(printf 'x%.0s' $(seq 56))
# 1. 1,000 exchanges of 64 bytes, plain and as templates (`{tok}` is 8 bytes,
#    captured by the first step of both files, so both read the same bytes).
for kind in plain template; do
  { echo "name = \"1000 exchanges, $kind\""; echo 'timeout = "60s"'
    echo "[servers.echo]"; echo "address = \"127.0.0.1:$port\""; echo '[[clients]]'; echo 'connect = "echo"'; echo 'nodelay = true'; echo 'script = ['
    echo '  { send = "tok=abcdefgh\n" }, { expect_line = { regex = "^tok=(?P<tok>\\w{8})$" } },'
    for i in $(seq 1000); do
      if [ $kind = plain ]; then echo "  { send = \"abcdefgh$x56\" }, { expect = \"abcdefgh$x56\" },"
      else echo "  { send = { template = \"{tok}$x56\" } }, { expect = { template = \"{tok}$x56\" } },"; fi
    done
    echo ']'; } > "$work/ex-$kind.toml"
done
a=(); b=(); for i in $(seq 9); do a+=($(t "$WC" run "$work/ex-template.toml")); b+=($(t "$WC" run "$work/ex-plain.toml")); done
ex_template=$(printf '%s\n' "${a[@]}" | med 9); ex_plain=$(printf '%s\n' "${b[@]}" | med 9)
ex_ratio=$(python3 -c "print(f'{$ex_template/$ex_plain:.2f}')")
rss_plain=$(rss "$WC" run "$work/ex-plain.toml"); rss_template=$(rss "$WC" run "$work/ex-template.toml")
a=(); b=(); for i in $(seq 9); do a+=($(cpu "$WC" run "$work/ex-template.toml")); b+=($(cpu "$WC" run "$work/ex-plain.toml")); done
cpu_template=$(printf '%s\n' "${a[@]}" | med 9); cpu_plain=$(printf '%s\n' "${b[@]}" | med 9)
cpu_ratio=$(python3 -c "print(f'{$cpu_template/$cpu_plain:.2f}')")
python3 -c "import sys; sys.exit(0 if $cpu_template/$cpu_plain <= 1.2 else 1)" || fail="$fail exchanges"
# 2. `check` of 100,000 template steps (every `{tok}` checked against the captures).
{ echo '[servers.echo]'; echo 'builtin = "echo"'; echo '[[clients]]'; echo 'script = ['
  echo '  { expect_line = { regex = "^(?P<tok>\\w+)$" } },'
  for i in $(seq 50000); do echo '  { send = { template = "a {tok} b\n" } }, { expect_line = { template = "a {tok} b" } },'; done
  echo ']'; } > "$work/check.toml"
c=(); for i in $(seq 3); do c+=($(t "$WC" check "$work/check.toml")); done
check=$(printf '%s\n' "${c[@]}" | med 3)
python3 -c "import sys; sys.exit(0 if $check < 1000000 else 1)" || fail="$fail check"
echo "exchanges: CPU template ${cpu_template}us plain ${cpu_plain}us ratio ${cpu_ratio} (<= 1.2); wall template ${ex_template}us plain ${ex_plain}us ratio ${ex_ratio}; peak RSS template ${rss_template} KB plain ${rss_plain} KB; check of 100000 template steps ${check}us (< 1 s)"
[ -z "$fail" ] || { echo "targets missed:$fail"; exit 1; }
