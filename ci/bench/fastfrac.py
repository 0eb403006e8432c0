#!/usr/bin/env python3
"""Alternates whole-process commands and counts the runs that finish under a
threshold: on the VMs we measure on, a round-trip benchmark runs at one of two
speeds (client and server on one vCPU, or on two with a halted one to wake), and
a median hides which one a program gets how often.

usage: python3 ci/bench/fastfrac.py ROUNDS THRESHOLD_MS 'label=command' ...

A command may start with VAR=value words, which go into its environment.
Prints, per command: runs under the threshold, the median of those, the median
and the 25th percentile of all runs. Not part of CI (it takes minutes).
"""
import os
import shlex
import statistics
import subprocess
import sys
import time

rounds, threshold = int(sys.argv[1]), float(sys.argv[2])
commands = []
for spec in sys.argv[3:]:
    label, command = spec.split("=", 1)
    words, env = shlex.split(command), dict(os.environ)
    while words and "=" in words[0] and not words[0].startswith("/"):
        name, value = words.pop(0).split("=", 1)
        env[name] = value
    commands.append((label, words, env))

times = {label: [] for label, _, _ in commands}
for _ in range(rounds):
    for label, words, env in commands:
        start = time.perf_counter_ns()
        subprocess.run(words, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        times[label].append((time.perf_counter_ns() - start) / 1e6)

for label, runs in times.items():
    runs.sort()
    fast = [t for t in runs if t < threshold]
    fast_median = statistics.median(fast) if fast else 0.0
    print(
        f"{label:>12}: under {threshold:g} ms {len(fast)}/{len(runs)} "
        f"(median {fast_median:.1f})  median {statistics.median(runs):.1f}  "
        f"p25 {runs[len(runs) // 4]:.1f}"
    )
