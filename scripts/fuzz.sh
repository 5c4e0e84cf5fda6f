#!/usr/bin/env bash
# Builds the libFuzzer targets with clang-19 (AddressSanitizer + UndefinedBehaviorSanitizer)
# in build-fuzz/ and runs each for SECONDS. Crashing inputs land in build-fuzz/findings/;
# turn each into a regression test (a file under tests/data/fuzz/, read by test_fuzz_regressions).
# Usage: scripts/fuzz.sh [SECONDS=60] [TARGET...]   (targets: fuzz_kernel_parser fuzz_log_reader)
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
seconds=${1:-60}
shift || true
targets=("$@")
[ ${#targets[@]} -eq 0 ] && targets=(fuzz_kernel_parser fuzz_log_reader)

if ! command -v clang++-19 >/dev/null; then
  echo "fuzz: installing clang-19 (Debian package)"
  sudo_cmd=""
  [ "$(id -u)" -ne 0 ] && sudo_cmd="sudo"
  $sudo_cmd apt-get update -q
  DEBIAN_FRONTEND=noninteractive $sudo_cmd apt-get install -y -q --no-install-recommends clang-19 libclang-rt-19-dev
fi

build="$root/build-fuzz"
cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DCMAKE_C_COMPILER=clang-19 -DCMAKE_CXX_COMPILER=clang++-19 \
  -DCMAKE_CXX_FLAGS="-fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=undefined" \
  -DCMAKE_EXE_LINKER_FLAGS="-fsanitize=address,undefined" \
  -DKTUNE_BUILD_TESTS=OFF -DKTUNE_BUILD_FUZZERS=ON >/dev/null
ninja -C "$build" "${targets[@]}"

# Seed corpora: the shipped kernels, and log lines from the test data.
mkdir -p "$build/corpus/fuzz_kernel_parser" "$build/corpus/fuzz_log_reader" "$build/findings"
cp "$root"/kernels/*.kt "$build/corpus/fuzz_kernel_parser/" 2>/dev/null || true
cp "$root"/tests/data/*.jsonl "$build/corpus/fuzz_log_reader/" 2>/dev/null || true

status=0
for t in "${targets[@]}"; do
  echo "fuzz: $t for ${seconds}s"
  if ! (cd "$build/findings" && "$build/tests/fuzz/$t" -max_total_time="$seconds" -max_len=8192 -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 "$build/corpus/$t" 2>"$build/$t.log"); then
    echo "fuzz: $t FOUND A PROBLEM; see $build/$t.log and $build/findings/"
    status=1
  fi
  grep -E "^stat::number_of_executed_units|^stat::peak_rss_mb|^#[0-9]+ *DONE" "$build/$t.log" | sed "s/^/  $t: /" || true
done
exit $status
