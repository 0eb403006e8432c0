#!/usr/bin/env bash
# The whole CI job: formatting, lints, the test suite (README's test command), the
# shipped scenarios, and the sticky-packet determinism check.
set -euo pipefail
cd "$(dirname "$0")/.."

echo "== toolchain"
cargo --version
command -v python3 >/dev/null || { apt-get update -qq && apt-get install -y -qq python3; }

echo "== fmt"
cargo fmt --all -- --check

echo "== clippy"
cargo clippy --workspace --all-targets -- -D warnings

echo "== build"
cargo build --release --workspace

echo "== shipped scenarios"
./target/release/wirecheck run scenarios/ --junit target/wirecheck-junit.xml

echo "== sticky determinism (--repeat 200)"
./target/release/wirecheck run scenarios/sticky --repeat 200

echo "== tests"
# README's test command. Its closing line is the one CI reads.
cargo test --workspace
