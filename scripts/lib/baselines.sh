# Sourced by the benchmark scripts that time oneDNN and OpenBLAS (bench_cpu.sh,
# bench_versus.sh) after they set `root`, `bench_dir` and `name` (the script's name, for
# messages): installs Debian's libdnnl-dev and libopenblas-dev where they are missing (the
# baselines only need them; ktune does not), and builds the baselines program
# (scripts/bench/baselines.cpp, outside the CMake build) into $bench_dir when it is missing or
# older than its source. Sets `baselines` to its path.
missing=()
for p in libdnnl-dev libopenblas-dev; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "$name: ${missing[*]} not installed; installing with apt-get (needed for the baselines only)" >&2
  sudo_cmd=""
  [ "$(id -u)" = 0 ] || sudo_cmd="sudo"
  $sudo_cmd env DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}" >&2 || {
    echo "$name: apt-get install ${missing[*]} failed" >&2; exit 1; }
fi
mkdir -p "$bench_dir"
baselines="$bench_dir/baselines"
src="$root/scripts/bench/baselines.cpp"
if [ ! -x "$baselines" ] || [ "$src" -nt "$baselines" ]; then
  echo "$name: building $baselines" >&2
  "${CXX:-g++}" -std=c++20 -O3 -march=native -fopenmp -o "$baselines" "$src" -ldnnl -lopenblas
fi
