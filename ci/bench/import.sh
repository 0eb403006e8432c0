#!/usr/bin/env bash
# Whole-process cost of `wirecheck import` (and of `check` and `run` of what it
# writes) against the capture's size: wall time and peak RSS (/usr/bin/time), the
# TOML's size. Captures are made by make-capture.py: TCP bulk transfers in
# 1448-byte segments, acknowledged every other segment.
#
#   bash ci/bench/import.sh [WIRECHECK] [SIZES_MIB...]
#
# Prints one line per size. Not part of CI (it writes a few hundred MB to /tmp).
set -euo pipefail
cd "$(dirname "$0")/../.."
bin=${1:-}
if [[ -z "$bin" ]]; then
    cargo build --release -q -p wirecheck
    bin=target/release/wirecheck
fi
shift || true
sizes=("$@")
[[ ${#sizes[@]} -gt 0 ]] || sizes=(8 16 32 58)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
measure() { # command...: prints "SECONDS PEAK_KB"
    /usr/bin/time -f '%e %M' "$@" >/dev/null 2>"$work/err" || { cat "$work/err" >&2; exit 1; }
    tail -n1 "$work/err"
}
printf '%-10s %-12s %-22s %-22s %-22s %s\n' capture payload import "check" run toml
for mib in "${sizes[@]}"; do
    python3 ci/bench/make-capture.py "$work/c.pcap" "$mib" 4
    size=$(stat -c %s "$work/c.pcap")
    import=$(measure "$bin" import "$work/c.pcap" -o "$work/c.toml")
    check=$(measure "$bin" check "$work/c.toml")
    run=$(measure "$bin" run "$work/c.toml")
    toml=$(stat -c %s "$work/c.toml")
    printf '%-10s %-12s %-22s %-22s %-22s %s\n' \
        "$((size >> 20))MiB" "${mib}MiB" "${import% *}s ${import#* }KB" \
        "${check% *}s ${check#* }KB" "${run% *}s ${run#* }KB" "${toml}B"
    rm -f "$work"/c.*
done
