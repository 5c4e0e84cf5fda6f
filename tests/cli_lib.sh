# Shared by the command-line test scripts (sourced): a private temporary directory as the
# working directory, a failure count, and the checks. The caller sets KTUNE first.
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cd "$tmp" || exit 1
fails=0

fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
# The search's records in a log (a tune ends with records of its final ranking, phase "final").
searched() { grep -vc '"phase":"final"' "$1"; }
finals() { grep -c '"phase":"final"' "$1"; }
ok() { echo "ok:   $*"; }

# expect CODE PHRASE -- command...: runs the command, checks its exit code and that stderr
# contains PHRASE.
expect() {
  local code=$1 phrase=$2
  shift 3
  "$@" >out.txt 2>err.txt
  local got=$?
  if [ "$got" -ne "$code" ] || ! grep -qF -- "$phrase" err.txt; then
    fail "$* -> exit $got (want $code), stderr:"; sed 's/^/    /' err.txt
  else
    ok "$*"
  fi
}

# The summary line and the exit status of the script.
finish() {
  echo "$fails failure(s)"
  [ "$fails" -eq 0 ]
}
