#!/usr/bin/env bash
# Differential fuzzing of lowering and code generation: N random kernels x schedules, each
# JIT-compiled and compared with the interpreter (tests/fuzz_codegen.cpp).
# Usage: scripts/fuzz_codegen.sh N [SEED] [fuzz_codegen options...]
#   e.g. scripts/fuzz_codegen.sh 20000 1 --threads 2
# Progress every 200 cases and a summary at the end; a failing case prints the kernel, the
# steps and the lowered IR, and leaves a reproducer fuzz_fail_<kernel>_<j>.json in the
# current directory (or --repro-dir DIR); rerun one with
#   build/tests/fuzz_codegen --replay fuzz_fail_<kernel>_<j>.json
# BUILD_DIR selects the build tree (default: build). Exit status 1 when a case failed.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
build="${BUILD_DIR:-$root/build}"
if [ $# -lt 1 ]; then
  echo "usage: $0 N [SEED] [fuzz_codegen options...]" >&2
  exit 2
fi
ninja -C "$build" fuzz_codegen >/dev/null
exec "$build/tests/fuzz_codegen" "$@"
