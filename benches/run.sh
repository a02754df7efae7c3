#!/usr/bin/env bash
# The benchmark of issue 5, in one command: builds libpool (release) and the C benchmark
# programs, runs workloads W1..W7 against libpool, Python multiprocessing.Pool (fork, 2 workers),
# OpenMP (2 threads) and serial C, prints the comparison table and regenerates BENCHMARKS.md.
#
#   bash benches/run.sh            # ~1-2 minutes on a 2-core machine
#
# Environment: CC (default gcc), PYTHON (default python3), BENCH_OUT (default target/bench).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CC=${CC:-gcc}
PYTHON=${PYTHON:-python3}
OUT=${BENCH_OUT:-$ROOT/target/bench}
LIBDIR=$ROOT/target/release
mkdir -p "$OUT"
RES=$OUT/results.txt
META=$OUT/meta.txt
: >"$RES"
START=$(date +%s.%N)

step() { printf '== %s\n' "$*" >&2; }

# ---- machine state (recorded before anything runs) ---------------------------------------------
cpu_idle_pct() { # share of idle CPU time over one second, from /proc/stat
    local a b
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    local tot=0 i
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    echo $(( 100 * (b[4] - a[4] + b[5] - a[5]) / (tot > 0 ? tot : 1) ))
}
IDLE=$(cpu_idle_pct)
busy_ticks() { local a; a=($(head -1 /proc/stat)); echo $((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])); }
BUSY0=$(busy_ticks)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
if [ "$IDLE" -lt 90 ]; then
    echo "warning: the machine is busy (CPU ${IDLE}% idle, load $LOADAVG): figures will be unreliable" >&2
fi

# ---- build ----------------------------------------------------------------------------------------
step "building libpool (cargo build --release)"
cargo build --release --quiet
ln -sf libpool.so "$LIBDIR/libpool.so.0"

step "compiling the C benchmark programs ($CC -O2)"
CFLAGS="-O2 -std=gnu11 -Wall -Wextra"
$CC $CFLAGS -Iinclude benches/bench_pool.c -L"$LIBDIR" -lpool -Wl,-rpath,"$LIBDIR" -pthread -o "$OUT/bench_pool"

omp_works() {
    printf '#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel num_threads(2)\n{\n#pragma omp atomic\nn++;}\nreturn n!=2;}\n' >"$OUT/omp_probe.c"
    $CC -fopenmp "$OUT/omp_probe.c" -o "$OUT/omp_probe" 2>/dev/null && "$OUT/omp_probe"
}
if ! omp_works; then
    step "-fopenmp does not work: installing libgomp with apt-get"
    if command -v apt-get >/dev/null; then
        apt-get install -y -qq libgomp1 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libgomp1; } >/dev/null 2>&1 || true
    fi
    omp_works || { echo "error: $CC -fopenmp still fails; install libgomp (Debian: apt-get install libgomp1)" >&2; exit 1; }
fi
$CC $CFLAGS -fopenmp benches/bench_omp.c -o "$OUT/bench_omp"

POOL=$OUT/bench_pool
OMP=$OUT/bench_omp
PY="$PYTHON $ROOT/benches/bench_py.py"
export OMP_NUM_THREADS=2
run() { "$@" | tee -a "$RES" | sed 's/^RESULT /   /' >&2; }

# ---- workloads --------------------------------------------------------------------------------------
step "W4 calibration: busy-loop iterations for ~10 ms"
ITERS=$($OMP calib)
echo "   $ITERS iterations" >&2

step "W1 map of squares, 1e6 items"
run $POOL w1 1000000 7
run $OMP w1 1000000 7
run $PY w1 1000000 5
step "W1 map of squares, 1e8 items (800 MB per array; Python not run at this size)"
run $POOL w1 100000000 3
run $OMP w1 100000000 3

step "W2 round trip latency (10,000 calls x 5 runs)"
run $POOL w2 10000 5
run $OMP w2 10000 5
run $PY w2 10000 5

step "W3 task throughput (100,000 apply_async)"
run $POOL w3 100000 5
run $OMP w3 100000 5
run $PY w3 100000 3

step "W4 64 CPU-bound tasks of ~10 ms"
run $OMP w4 "$ITERS" 5
run $POOL w4 "$ITERS" 5
run $PY w4 3

step "W5 256 x 1 MiB in / 1 MiB out"
run $POOL w5 5
run $OMP w5 5
run $PY w5 3

step "W6 start-up: create -> first result -> destroy"
run $POOL w6 0 10
run $POOL w6 1024 5
for _ in 1 2 3 4 5; do run $OMP w6; done
run $PY w6 0 10
run $PY w6 1024 5

step "W7 peak memory of all processes during a map"
run $POOL w7 1000000 pool-first
run $POOL w7 10000000 pool-first
run $POOL w7 100000000 pool-first
run $POOL w7 100000000 buffers-first

# ---- report -------------------------------------------------------------------------------------------
END=$(date +%s.%N)
# CPU used by other processes during the run: all busy time minus this script's own children.
BUSY1=$(busy_ticks)
times >"$OUT/times.txt" # (a builtin: in a $(...) subshell it would not see our children)
OURS=$(tail -1 "$OUT/times.txt" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); n += t[1] * 60 + t[2] } print n }')
FOREIGN=$(awk -v b0="$BUSY0" -v b1="$BUSY1" -v hz="$(getconf CLK_TCK)" -v ours="$OURS" -v s="$START" -v e="$END" -v cpus="$(nproc)" \
    'BEGIN { f = (b1 - b0) / hz - ours; if (f < 0) f = 0; printf "%.0f", 100 * f / ((e - s) * cpus) }')
{
    echo "nproc=$(nproc)"
    echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
    echo "mem_gib=$(free -g | awk '/^Mem:/ {print $2}')"
    echo "kernel=$(uname -sr)"
    echo "date=$(date -u '+%Y-%m-%d %H:%M UTC')"
    echo "gcc=$($CC --version | head -1)"
    echo "rustc=$(rustc --version)"
    echo "python=$($PYTHON --version 2>&1)"
    echo "omp=libgomp ($CC -fopenmp), OMP_NUM_THREADS=2"
    echo "loadavg=$LOADAVG"
    echo "idle_pct=$IDLE"
    echo "foreign_pct=$FOREIGN"
    echo "elapsed_s=$(awk "BEGIN { printf \"%.0f\", $END - $START }")"
} >"$META"
echo >&2
$PYTHON "$ROOT/benches/report.py" "$RES" "$META" "$ROOT/BENCHMARKS.md"
echo >&2
echo "raw figures: $RES; report: $ROOT/BENCHMARKS.md" >&2
