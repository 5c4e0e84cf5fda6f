# Sourced by the robustness scripts (fault_inject.sh, kill9_resume.sh) after they set
# `build`: makes a temporary directory $tmp (removed at exit) and private copies of ktune,
# its worker and the log checker in $tmp/bin, so that a rebuild of the shared build directory
# during a long run cannot swap the binaries under it (ktune finds ktune-worker next to
# itself). Sets ktune and check to the copies.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/bin"
cp "$build/ktune" "$build/ktune-worker" "$build/tests/ktune_log_check" "$tmp/bin/" || exit 1
ktune="$tmp/bin/ktune"
check="$tmp/bin/ktune_log_check"
