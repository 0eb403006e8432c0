#!/bin/bash -eu
# Builds wirecheck's fuzz targets inside the ClusterFuzzLite / OSS-Fuzz Rust builder.
# The builder supplies a nightly toolchain and the sanitizer flags ($SANITIZER), so
# cargo fuzz builds with its defaults here (AddressSanitizer), not --sanitizer none.
# Every target ships with its committed inputs as a seed corpus, its dictionary and
# libFuzzer options matching ci/fuzz.sh. The fuzz crate builds from the whole
# checkout: its checks are the wirecheck-fuzz-checks crate in fuzz-checks/, which
# depends on the wirecheck library in harness/. See FUZZING.md.
cd "$SRC/wirecheck/fuzz"
cargo fuzz build -O --debug-assertions
release=target/x86_64-unknown-linux-gnu/release
for target in $(cargo fuzz list); do
  cp "$release/$target" "$OUT/"
  inputs=()
  for dir in "seeds/$target" "regressions/$target"; do
    if [ -d "$dir" ]; then
      inputs+=("$dir"/*)
    fi
  done
  if [ "${#inputs[@]}" -gt 0 ]; then
    zip -q -j "$OUT/${target}_seed_corpus.zip" "${inputs[@]}"
  fi
  if [ -f "dict/$target.dict" ]; then
    cp "dict/$target.dict" "$OUT/$target.dict"
  fi
  cat > "$OUT/$target.options" <<OPTIONS
[libfuzzer]
max_len = 8192
timeout = 25
OPTIONS
done
