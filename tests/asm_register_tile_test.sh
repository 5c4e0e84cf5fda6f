#!/usr/bin/env bash
# The generated code of a hand-written schedule keeps its register tile: `ktune replay
# SCHEDULE --emit=asm` has at least MIN_FMAS full-width (zmm) vfmadd*ps, none narrower, and no
# zmm register spilled to or reloaded from the stack; with --no-alloc, no heap buffer either
# (e.g. the padding inlined, not copied). Needs an AVX-512 host; elsewhere it is skipped
# (exit 77, ctest's SKIP_RETURN_CODE).
# Usage: tests/asm_register_tile_test.sh path/to/ktune SCHEDULE.json MIN_FMAS [--no-alloc]
set -u
KTUNE=$(realpath "${1:?usage: asm_register_tile_test.sh ktune SCHEDULE.json MIN_FMAS [--no-alloc]}")
SCHEDULE=$(realpath "${2:?schedule file}")
MIN_FMAS=${3:?minimum number of zmm FMAs}
NO_ALLOC=${4:-}
if ! grep -qw avx512f /proc/cpuinfo 2>/dev/null; then
  echo "skipped: the host has no AVX-512"
  exit 77
fi
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
"$KTUNE" replay "$SCHEDULE" --emit=asm --out="$tmp" >/dev/null || { echo "FAIL: ktune replay --emit=asm"; exit 1; }
asm=$(ls "$tmp"/*.s | grep -v ktune_parallel_for)
fails=0
zmm_fma=$(grep -cE '^\s*vfmadd[0-9]+ps\s.*%zmm' "$asm")
narrow_fma=$(grep -E '^\s*vfmadd[0-9]+ps\s' "$asm" | grep -cvE '%zmm')
spills=$(grep -E '%zmm' "$asm" | grep -cE '\(%rsp\)|\(%rbp\)')
allocs=$(grep -cE 'call.*(ktune_workspace_alloc|aligned_alloc|malloc)' "$asm")
echo "$(basename "$SCHEDULE"): $zmm_fma zmm FMAs, $narrow_fma narrower, $spills zmm stack accesses, $allocs allocations"
[ "$zmm_fma" -ge "$MIN_FMAS" ] || { echo "FAIL: fewer than $MIN_FMAS zmm FMAs"; fails=1; }
[ "$narrow_fma" -eq 0 ] || { echo "FAIL: FMAs narrower than 16 lanes"; fails=1; }
[ "$spills" -eq 0 ] || { echo "FAIL: zmm registers spilled:"; grep -E '%zmm' "$asm" | grep -E '\(%rsp\)|\(%rbp\)' | head -5; fails=1; }
if [ "$NO_ALLOC" = --no-alloc ] && [ "$allocs" -ne 0 ]; then echo "FAIL: the kernel allocates a buffer"; fails=1; fi
exit $fails
