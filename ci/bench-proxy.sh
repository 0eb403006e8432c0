#!/usr/bin/env bash
# Whole-process benchmarks of a fault proxy with no faults, as a user runs them:
# each figure is a whole `wirecheck run` process, with and without a proxy between
# the client and the same running echo server (medians of alternating runs; peak
# RSS by `/usr/bin/time -f %M`). Targets of issue 11 (BENCHMARKS.md):
#   1,000 exchanges of 64 bytes through the proxy: <= 1.3x the direct run
#   256 MiB bulk echo through the proxy: >= 50% of the direct throughput
#   1,000 concurrent connections through one proxy: < 64 MiB more peak RSS
#     than the same run without the proxy
#   bash ci/bench-proxy.sh [PATH/TO/wirecheck]   (default: builds --release)
# Prints every run's figure (proxy and direct runs alternate, so a load that comes
# and goes hits both), the load average before and after, then one line of
# medians; exits 0 when every target holds.
set -u
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WC="${1:-}"
if [ -z "$WC" ]; then cargo build --release --bin wirecheck -q || exit 1; WC="$CARGO_TARGET_DIR/release/wirecheck"; fi
work=$(mktemp -d); srv=""; trap 'kill $srv 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$WC" serve echo --listen "127.0.0.1:$port" >/dev/null 2>&1 & srv=$!
for i in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break; sleep 0.1; done
t() { local s=$(date +%s%N); "$@" >/dev/null 2>&1; echo $(( ($(date +%s%N)-s)/1000 )); }
med() { sort -n | sed -n "$(( ($1+1)/2 ))p"; }
rss() { /usr/bin/time -f '%M' "$@" 2>&1 >/dev/null | tail -1; }
fail=""
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
# A scenario's head: the client talks to the running echo server directly, or
# through a proxy with no faults.
head_direct() { echo "[servers.echo]"; echo "address = \"127.0.0.1:$port\""; echo '[[clients]]'; echo 'connect = "echo"'; }
head_proxy() { echo "[servers.echo]"; echo "address = \"127.0.0.1:$port\""; echo '[proxies.plain]'; echo 'to = "echo"'; echo '[[clients]]'; echo 'connect = "plain"'; }
# 1. 1,000 exchanges of 64 bytes, medians of 9
for kind in direct proxy; do
  { echo 'name = "1000 exchanges"'; echo 'timeout = "60s"'; head_$kind; echo 'nodelay = true'; echo 'script = ['
    for i in $(seq 1000); do echo '  { send = { repeat = "x", times = 64 } }, { expect = { repeat = "x", times = 64 } },'; done
    echo ']'; } > "$work/ex-$kind.toml"
done
a=(); b=(); for i in $(seq 9); do a+=($(t "$WC" run "$work/ex-proxy.toml")); b+=($(t "$WC" run "$work/ex-direct.toml")); done
echo "1000 exchanges, every run (us): proxy ${a[*]}; direct ${b[*]}"
ex_proxy=$(printf '%s\n' "${a[@]}" | med 9); ex_direct=$(printf '%s\n' "${b[@]}" | med 9)
ex_ratio=$(python3 -c "print(f'{$ex_proxy/$ex_direct:.2f}')")
python3 -c "import sys; sys.exit(0 if $ex_proxy/$ex_direct <= 1.3 else 1)" || fail="$fail exchanges"
# 2. bulk: 1,024 rounds of 256 KiB (256 MiB each way), medians of 5
for kind in direct proxy; do
  { echo 'name = "bulk 256 MiB"'; echo 'timeout = "300s"'; echo 'step_timeout = "30s"'; head_$kind; echo 'script = ['
    for i in $(seq 1024); do echo '  { send = { repeat = "0123456789abcdef", times = 16384 } }, { expect = { repeat = "0123456789abcdef", times = 16384 } },'; done
    echo ']'; } > "$work/bulk-$kind.toml"
done
a=(); b=(); for i in 1 2 3 4 5; do a+=($(t "$WC" run "$work/bulk-proxy.toml")); b+=($(t "$WC" run "$work/bulk-direct.toml")); done
echo "bulk 256 MiB, every run (us): proxy ${a[*]}; direct ${b[*]}"
bulk_proxy=$(printf '%s\n' "${a[@]}" | med 5); bulk_direct=$(printf '%s\n' "${b[@]}" | med 5)
share=$(python3 -c "print(f'{100*$bulk_direct/$bulk_proxy:.0f}')")
python3 -c "import sys; sys.exit(0 if $bulk_direct/$bulk_proxy >= 0.5 else 1)" || fail="$fail bulk"
mib_s() { python3 -c "print(f'{256*2/($1/1e6):.0f}')"; }
# 3. 1,000 concurrent connections: each exchanges 1 KiB, then holds its connection
#    for 2 s so that all 1,000 are open at once; peak RSS, medians of 3
for kind in direct proxy; do
  { echo 'name = "1000 connections"'; echo 'timeout = "60s"'; echo 'step_timeout = "30s"'; head_$kind; echo 'count = 1000'
    echo 'script = [ { send = { repeat = "x", times = 1024 } }, { expect = { repeat = "x", times = 1024 } }, { sleep = "2s" } ]'; } > "$work/conns-$kind.toml"
done
a=(); b=(); for i in 1 2 3; do a+=($(rss "$WC" run "$work/conns-proxy.toml")); b+=($(rss "$WC" run "$work/conns-direct.toml")); done
echo "1000 connections, every run (peak RSS KB): proxy ${a[*]}; direct ${b[*]}"
echo "load average: before $load_before, after $(cut -d' ' -f1-3 /proc/loadavg)"
c_proxy=$(printf '%s\n' "${a[@]}" | med 3); c_direct=$(printf '%s\n' "${b[@]}" | med 3)
[ $(( c_proxy - c_direct )) -lt 65536 ] || fail="$fail rss"
echo "1000 exchanges: proxy ${ex_proxy}us vs direct ${ex_direct}us, x$ex_ratio (<=1.3); bulk 256 MiB: proxy ${bulk_proxy}us ($(mib_s $bulk_proxy) MiB/s) vs direct ${bulk_direct}us ($(mib_s $bulk_direct) MiB/s), ${share}% (>=50%); 1000 connections: peak RSS ${c_proxy} KB with the proxy vs ${c_direct} KB without, +$(( (c_proxy - c_direct) / 1024 )) MiB (<64 MiB)${fail:+; short:$fail}"
[ -z "$fail" ]
