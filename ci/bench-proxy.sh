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
# The exchanges are also measured in CPU time (user + system of the whole
# process, from wait4), which a shared machine blurs far less than wall time, and
# each figure is also given as what the proxy adds per exchange. Where a C
# compiler exists, the same 1,000 exchanges are run by a minimal one-thread epoll
# client + proxy in C against the same server: what ANY proxy in the client's
# thread adds per exchange on this machine (two more loopback hops: 2 recv, 2 send,
# 2 epoll_wait), the floor to judge wirecheck's proxy against.
set -u
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$PWD/target}"
WC="${1:-}"
if [ -z "$WC" ]; then cargo build --release --bin wirecheck -q || exit 1; WC="$CARGO_TARGET_DIR/release/wirecheck"; fi
work=$(mktemp -d); srv=""; trap 'kill $srv 2>/dev/null; rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
"$WC" serve echo --listen "127.0.0.1:$port" >/dev/null 2>&1 & srv=$!
for i in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$port),0.2)" 2>/dev/null && break; sleep 0.1; done
t() { local s=$(date +%s%N); "$@" >/dev/null 2>&1; echo $(( ($(date +%s%N)-s)/1000 )); }
# "WALL_US CPU_US" of one whole process (CPU = user + system, from wait4).
wall_cpu() { python3 -c 'import os, subprocess, sys, time
start = time.perf_counter()
p = subprocess.Popen(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
_, status, usage = os.wait4(p.pid, 0)
wall = time.perf_counter() - start
if status != 0: print("FAILED:", *sys.argv[1:], file=sys.stderr)
print(int(wall * 1e6), int((usage.ru_utime + usage.ru_stime) * 1e6))' "$@"; }
med() { sort -n | sed -n "$(( ($1+1)/2 ))p"; }
# The best run: the one least disturbed by other work on the machine.
least() { sort -n | head -1; }
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
a=(); b=(); ac=(); bc=()
for i in $(seq 9); do
  read -r w c < <(wall_cpu "$WC" run "$work/ex-proxy.toml"); a+=($w); ac+=($c)
  read -r w c < <(wall_cpu "$WC" run "$work/ex-direct.toml"); b+=($w); bc+=($c)
done
echo "1000 exchanges, every run (us): proxy ${a[*]}; direct ${b[*]}"
echo "1000 exchanges, CPU of every run (us): proxy ${ac[*]}; direct ${bc[*]}"
ex_proxy=$(printf '%s\n' "${a[@]}" | med 9); ex_direct=$(printf '%s\n' "${b[@]}" | med 9)
cpu_proxy=$(printf '%s\n' "${ac[@]}" | med 9); cpu_direct=$(printf '%s\n' "${bc[@]}" | med 9)
ex_ratio=$(python3 -c "print(f'{$ex_proxy/$ex_direct:.2f}')")
cpu_ratio=$(python3 -c "print(f'{$cpu_proxy/$cpu_direct:.2f}')")
# What the proxy adds per exchange (the runs differ only by the proxy).
per_ex() { python3 -c "print(f'{($1 - $2) / 1000:.1f}')"; }
python3 -c "import sys; sys.exit(0 if $ex_proxy/$ex_direct <= 1.3 else 1)" || fail="$fail exchanges"
ex_best=$(per_ex $(printf '%s\n' "${a[@]}" | least) $(printf '%s\n' "${b[@]}" | least))
floor=""
if command -v cc >/dev/null; then
  # The floor: one thread, a client doing the same 1,000 exchanges of 64 bytes,
  # straight to the server or through a proxy served by the same thread (accept,
  # connect upstream, level-triggered epoll, recv into one buffer and send it at
  # once). Prints the microseconds the exchanges took.
  cat > "$work/floor.c" <<'C'
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>
static void tune(int fd) { int one = 1; fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK); setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one); }
static struct sockaddr_in loopback(int port) { struct sockaddr_in a; memset(&a, 0, sizeof a); a.sin_family = AF_INET; a.sin_port = htons(port); a.sin_addr.s_addr = htonl(INADDR_LOOPBACK); return a; }
static int dial(int port) { struct sockaddr_in a = loopback(port); int fd = socket(AF_INET, SOCK_STREAM, 0); if (connect(fd, (struct sockaddr *)&a, sizeof a)) { perror("connect"); exit(1); } tune(fd); return fd; }
static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec / 1e9; }
int main(int argc, char **argv) {
  if (argc != 4) return 2;
  int port = atoi(argv[1]), through_proxy = atoi(argv[2]), count = atoi(argv[3]);
  int poller = epoll_create1(0), client, front = -1, back = -1;
  static char buf[65536]; char msg[64]; memset(msg, 'x', sizeof msg);
  if (!through_proxy) client = dial(port);
  else {
    struct sockaddr_in a = loopback(0); socklen_t len = sizeof a; int listener = socket(AF_INET, SOCK_STREAM, 0);
    if (bind(listener, (struct sockaddr *)&a, sizeof a) || listen(listener, 1) || getsockname(listener, (struct sockaddr *)&a, &len)) { perror("listen"); return 1; }
    client = dial(ntohs(a.sin_port)); front = accept(listener, 0, 0); tune(front); back = dial(port);
  }
  int fds[3] = { client, front, back };
  for (int i = 0; i < 3; i++) if (fds[i] >= 0) { struct epoll_event e = { .events = EPOLLIN, .data.fd = fds[i] }; epoll_ctl(poller, EPOLL_CTL_ADD, fds[i], &e); }
  double start = now();
  for (int i = 0; i < count; i++) {
    if (send(client, msg, sizeof msg, MSG_NOSIGNAL) != sizeof msg) { perror("send"); return 1; }
    int got = 0;
    while (got < (int)sizeof msg) {
      int n = recv(client, buf, sizeof msg - got, 0);
      if (n > 0) { got += n; continue; }
      if (n == 0) { fprintf(stderr, "server closed\n"); return 1; }
      struct epoll_event ready[4]; int k = epoll_wait(poller, ready, 4, 10000);
      if (k <= 0) { fprintf(stderr, "no reply\n"); return 1; }
      for (int j = 0; j < k; j++) {
        int fd = ready[j].data.fd;
        if (fd == client) continue;
        int r = recv(fd, buf, sizeof buf, 0);
        if (r > 0 && send(fd == front ? back : front, buf, r, MSG_NOSIGNAL) != r) { perror("forward"); return 1; }
      }
    }
  }
  printf("%.0f\n", (now() - start) * 1e6);
  return 0;
}
C
  if cc -O2 -o "$work/floor" "$work/floor.c" 2>/dev/null; then
    fa=(); fb=()
    for i in $(seq 9); do fa+=($("$work/floor" "$port" 1 1000)); fb+=($("$work/floor" "$port" 0 1000)); done
    echo "floor (C, 1000 exchanges, us): proxy ${fa[*]}; direct ${fb[*]}"
    f_proxy=$(printf '%s\n' "${fa[@]}" | med 9); f_direct=$(printf '%s\n' "${fb[@]}" | med 9)
    floor="; floor: a minimal one-thread C proxy adds $(per_ex $f_proxy $f_direct) us per exchange (${f_proxy} vs ${f_direct} us), best runs +$(per_ex $(printf '%s\n' "${fa[@]}" | least) $(printf '%s\n' "${fb[@]}" | least))"
  fi
fi
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
echo "1000 exchanges: proxy ${ex_proxy}us vs direct ${ex_direct}us, x$ex_ratio (<=1.3), +$(per_ex $ex_proxy $ex_direct) us per exchange, best runs +$ex_best; CPU ${cpu_proxy} vs ${cpu_direct} us, x$cpu_ratio, +$(per_ex $cpu_proxy $cpu_direct) us per exchange$floor; bulk 256 MiB: proxy ${bulk_proxy}us ($(mib_s $bulk_proxy) MiB/s) vs direct ${bulk_direct}us ($(mib_s $bulk_direct) MiB/s), ${share}% (>=50%); 1000 connections: peak RSS ${c_proxy} KB with the proxy vs ${c_direct} KB without, +$(( (c_proxy - c_direct) / 1024 )) MiB (<64 MiB)${fail:+; short:$fail}"
[ -z "$fail" ]
