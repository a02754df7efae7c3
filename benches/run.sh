#!/usr/bin/env bash
# The benchmark of issue 5, in one command: builds libpool (release) and the benchmark programs,
# runs workloads W1..W7 and WC against libpool, Python multiprocessing.Pool (fork, 2 workers),
# OpenMP (2 threads) and serial C, WS (the sandbox's cost), W8 (libpool_mpi over MPI ranks against
# a local pool and mpi4py.futures), then the real jobs of c_examples (benches/jobs.sh: pgz against
# pigz, gzip and Python; ocr against tesseract serially, with xargs -P2 and from Python), prints
# the comparison tables and regenerates BENCHMARKS.md.
#
#   make bench                         # bash benches/run.sh: ~9 minutes on a quiet 2-core machine
#   make bench ONLY=w1,w2,wc           # only those steps; the report goes to target/bench/BENCHMARKS.md
#   make bench BASE=<commit>           # before/after: that commit's libpool against the working
#                                      # tree's, into target/bench/before-after.md (~5 minutes)
#   make bench BASE=HEAD~1 ONLY=w2,wc  # the same, for a few steps
#
# Steps (ONLY takes their ids): w1 (W1 at 1e6), w1big (W1 at 1e8), w2, w3, w4, w5, w6, wc, ws, w7,
# w8, jobs. Every comparison runs in rounds: each round runs every contender once (one repetition
# of each figure, or the median of a few very short ones), the first contender rotating, and the
# report gives each figure's median with its spread [min-max] over the rounds and ratios of the
# medians. Rounds: 7 for W1 at 1e6, 3 at 1e8, 4 for WC, 15 for WS, 1 for W7 (memory), 5 for the
# others (before/after: 3 for WS and W7), chosen to keep the whole run near its former length (~9
# minutes here, ~3 of them the real jobs): the rounds' repetitions replace the repetitions each
# program used to make alone. BENCH_ROUNDS=N sets them all.
#
# Before/after (BASE=<commit>): builds that commit's library once into target/base/<sha> (git
# archive + cargo build --release), builds the working tree's benches/pool against each
# library's own header (features the old header lacks are left out, see benches/pool/bench.h),
# each binary linked to run its own libpool.so.0 (checked with LD_DEBUG), and runs the libpool
# workloads of both, round by round. BENCHMARKS.md is left alone.
#
# The machine may be shared: every program's run measures the CPU time *other* processes took
# meanwhile; a round disturbed by more than 10% of the CPUs is run again once the machine is
# quiet (up to BENCH_RETRIES times a step, while the run is within BENCH_BUDGET seconds), and the
# report flags figures from rounds that stayed disturbed.
#
# Environment: CC (default gcc), PYTHON (default python3), BENCH_OUT (default target/bench),
# BENCH_ROUNDS, BENCH_RETRIES (default 2), BENCH_WAIT (seconds to wait for a quiet machine, 30),
# BENCH_BUDGET (no retries once the run has lasted this many seconds, 360), BENCH_TIMEOUT
# (seconds a program may run in before/after mode, 600), BENCH_BASE and BENCH_ONLY (what the
# Makefile's BASE and ONLY set).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
CC=${CC:-gcc}
PYTHON=${PYTHON:-python3}
OUT=${BENCH_OUT:-$ROOT/target/bench}
RETRIES=${BENCH_RETRIES:-2}
WAIT=${BENCH_WAIT:-30}
BENCH_TIMEOUT=${BENCH_TIMEOUT:-600}
BASE=${BENCH_BASE:-}
ONLY=${BENCH_ONLY:-}
STEPS="w1 w1big w2 w3 w4 w5 w6 wc ws w7 w8 jobs"
# A step ONLY names that does not exist (a typo) would leave nothing to report: refuse it first.
for s in ${ONLY//,/ }; do
    if [[ " $STEPS " != *" $s "* ]]; then
        echo "bench: no step '$s' in ONLY=$ONLY (steps: $STEPS)" >&2
        exit 2
    fi
    if [ -n "$BASE" ] && { [ "$s" = jobs ] || [ "$s" = w8 ]; }; then
        echo "bench: ONLY=$s with BASE: the before/after mode runs libpool's own workloads (not w8, jobs)" >&2
        exit 2
    fi
done
LIBDIR=$ROOT/target/release
CFLAGS="-O2 -std=gnu11 -Wall -Wextra"
mkdir -p "$OUT"
rm -f "$OUT"/step.*.txt
source "$ROOT/benches/rounds.sh"
source "$ROOT/benches/build.sh"

# ---- machine state before the run ------------------------------------------------------------------
START=$(date +%s.%N)
IDLE=$(wait_quiet)
LOADAVG=$(cut -d' ' -f1-3 /proc/loadavg)
times >"$TIMES"
BUSY0=$(busy_ticks) OURS0=$(ours_cpu) START=$(date +%s.%N)

# ---- build -----------------------------------------------------------------------------------------
echo "== building libpool (cargo build --release) and the benchmark programs ($CC -O2)" >&2
cargo build --release --quiet
ln -sf libpool.so "$LIBDIR/libpool.so.0"
POOL=$OUT/bench_pool
build_bench_pool "$LIBDIR" "$ROOT/include" "$POOL"
NEW_LOADED=$LOADED
if [ -n "$BASE" ]; then
    build_base "$BASE"
    BPOOL=$OUT/base-$BASE_SHA/bench_pool
    mkdir -p "$(dirname "$BPOOL")"
    build_bench_pool "$BASE_LIB" "$BASE_INC" "$BPOOL" lenient
    BASE_LOADED=$LOADED
fi
omp_works() {
    printf '#include <omp.h>\nint main(void){int n=0;\n#pragma omp parallel num_threads(2)\n{\n#pragma omp atomic\nn++;}\nreturn n!=2;}\n' >"$OUT/omp_probe.c"
    $CC -fopenmp "$OUT/omp_probe.c" -o "$OUT/omp_probe" 2>/dev/null && "$OUT/omp_probe"
}
if ! omp_works; then
    echo "   $CC -fopenmp does not work: installing libgomp with apt-get" >&2
    if command -v apt-get >/dev/null; then
        apt-get install -y -qq libgomp1 >/dev/null 2>&1 || { apt-get update -qq && apt-get install -y -qq libgomp1; } >/dev/null 2>&1 || true
    fi
    omp_works || { echo "error: $CC -fopenmp still fails; install libgomp (Debian: apt-get install libgomp1)" >&2; exit 1; }
fi
$CC $CFLAGS -fopenmp benches/bench_omp.c -o "$OUT/bench_omp"

# W8 needs MPI (libpool_mpi, mpirun) and Debian's mpi4py for the system python3.
M4PY=/usr/bin/python3
HAVE_MPI=0
if [ -z "$BASE" ] && selected w8; then
    if ! command -v mpicc >/dev/null || ! command -v mpirun >/dev/null || ! $M4PY -c 'import mpi4py.futures' 2>/dev/null; then
        echo "   installing Open MPI and mpi4py (apt-get) for W8" >&2
        apt-get install -y -qq openmpi-bin libopenmpi-dev python3-mpi4py >/dev/null 2>&1 ||
            { apt-get update -qq && apt-get install -y -qq openmpi-bin libopenmpi-dev python3-mpi4py; } >/dev/null 2>&1 || true
    fi
    if command -v mpicc >/dev/null && command -v mpirun >/dev/null; then
        mpicc $CFLAGS -Wno-unused-function -Iinclude -Ibenches -shared -fPIC src/mpi/pool_mpi.c -L"$LIBDIR" -lpool \
            -Wl,-soname,libpool_mpi.so.0 -o "$LIBDIR/libpool_mpi.so"
        ln -sf libpool_mpi.so "$LIBDIR/libpool_mpi.so.0"
        mpicc $CFLAGS -Iinclude benches/bench_mpi.c -L"$LIBDIR" -lpool_mpi -lpool -Wl,-rpath,"$LIBDIR" -o "$OUT/bench_mpi"
        HAVE_MPI=1
    else
        echo "   no MPI: W8 is skipped" >&2
    fi
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1

OMP=$OUT/bench_omp
PY="$PYTHON $ROOT/benches/bench_py.py"
export OMP_NUM_THREADS=2

# ---- workloads: one function per step names its contenders (see step in benches/rounds.sh) --------
ITERS=$($OMP calib)
echo "== W4 calibration: busy() takes ~10 ms for $ITERS iterations" >&2

w1_contenders() {
    libpool "@POOL w1 1000000 5 @R" # plain, block, shm and block-on-shm maps, 5 of each
    other "$OMP w1 1000000 5"
    other "$PY w1 1000000 1"
    diag "@POOL w1diag 1000000"
}
w1big_contenders() {
    libpool "@POOL w1 100000000 1 @R"
    other "$OMP w1 100000000 1"
    diag "@POOL w1diag 100000000"
}
w2_contenders() {
    libpool "@POOL w2 10000"
    other "$OMP w2 10000 1"
    other "$PY w2 10000 1"
    diag "@POOL w2diag 10000"
}
w3_contenders() {
    libpool "@POOL w3 100000"
    other "$OMP w3 100000 1"
    other "$PY w3 100000 1"
}
w4_contenders() {
    libpool "@POOL w4 $ITERS @R"
    other "$OMP w4 $ITERS 1"
    other "$PY w4 1"
}
w5_contenders() {
    libpool "@POOL w5 @R"
    other "$OMP w5 1"
    other "$PY w5 1"
    diag "@POOL w5diag"
}
w6_contenders() {
    libpool "@POOL w6 0 3"
    libpool "@POOL w6 1024 2"
    other "$OMP w6"
    other "$PY w6 0 3"
    other "$PY w6 1024 2"
}
wc_contenders() { libpool "@POOL wc 500 1000 @R"; }
ws_contenders() { libpool "@POOL ws @R"; }
w7_contenders() {
    for n in 1000000 10000000 100000000; do libpool "@POOL w7 $n pool-first"; done
    libpool "@POOL w7 100000000 buffers-first"
    libpool "@POOL w7 100000000 shm"
    libpool "@POOL w7 10000000 imap"
}
w8_contenders() {
    other "$OUT/bench_mpi local 4"
    # Open MPI binds each rank to one core by default: its workers would share that core.
    for k in 1 2 3 4; do other "timeout 300 mpirun --bind-to none -np $k $OUT/bench_mpi mpi"; done
    if $M4PY -c 'import mpi4py.futures' 2>/dev/null; then
        other "timeout 300 mpirun --bind-to none -np 4 $M4PY -m mpi4py.futures $ROOT/benches/bench_mpi4py.py 100000"
    fi
}
WS_ROUNDS=15 W7_ROUNDS=1
if [ -n "$BASE" ]; then WS_ROUNDS=3 W7_ROUNDS=3; fi # before/after: a spread for W7 too
step w1 "W1 map of squares, 1e6 items" 7 w1_contenders
step w1big "W1 map of squares, 1e8 items (800 MB per array; Python not run at this size)" 3 w1big_contenders
step w2 "W2 round trip latency (10,000 calls a round)" 5 w2_contenders
step w3 "W3 task throughput (100,000 apply_async)" 5 w3_contenders
step w4 "W4 64 CPU-bound tasks of ~10 ms" 5 w4_contenders
step w5 "W5 256 x 1 MiB in / 1 MiB out" 5 w5_contenders
step w6 "W6 start-up: create -> first result -> destroy" 5 w6_contenders
step wc "WC completion latency: get, wait_any on 1 and 8 handles, callback (500 tasks of 1 ms each a round)" 4 wc_contenders
step ws "WS the sandbox's cost: W2, W3 and start-up, plain and sandboxed pools" $WS_ROUNDS ws_contenders
step -n w7 "W7 peak memory of all processes during a map" $W7_ROUNDS w7_contenders
if [ "$HAVE_MPI" = 1 ]; then step w8 "W8 libpool_mpi over 1-4 ranks vs a local pool vs mpi4py.futures" 3 w8_contenders; fi
# The real jobs: pgz and ocr against pigz, gzip, xargs and Python (benches/jobs.sh interleaves
# its contenders and retries its own disturbed runs). Needs Tesseract and pigz; skipped with a
# message without them.
if [ -z "$BASE" ] && selected jobs; then
    echo "== real jobs: parallel gzip and OCR (benches/jobs.sh, ~4 minutes)" >&2
    rm -f "$OUT/jobs.txt" "$OUT/jobs-results.txt"
    if BENCH_OUT="$OUT" bash "$ROOT/benches/jobs.sh" >&2 && [ -s "$OUT/jobs-results.txt" ]; then
        cp "$OUT/jobs-results.txt" "$OUT/step.zz_jobs.txt"
    else
        echo "   (the real jobs did not run: see above)" >&2
    fi
fi

# ---- report ------------------------------------------------------------------------------------------
END=$(date +%s.%N)
times >"$TIMES"
FOREIGN=$(foreign_pct "$BUSY0" "$(busy_ticks)" "$OURS0" "$(ours_cpu)" "$START" "$END")
RES=$OUT/results.txt
META=$OUT/meta.txt
cat "$OUT"/step.*.txt >"$RES"
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
    echo "only=$ONLY"
    echo "new=$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- src include Cargo.toml build.rs || echo ' + uncommitted changes')"
    echo "new_lib=$NEW_LOADED"
    if [ -n "$BASE" ]; then
        echo "base=$BASE ($(git rev-parse --short "$BASE_SHA"): $(git log -1 --format=%s "$BASE_SHA" | cut -c1-100))"
        echo "base_lib=$BASE_LOADED"
    fi
} >"$META"
echo >&2
if [ -n "$BASE" ]; then
    MD=$OUT/before-after.md
    $PYTHON "$ROOT/benches/before_after.py" "$RES" "$META" "$MD"
elif [ -n "$ONLY" ]; then
    MD=$OUT/BENCHMARKS.md # a partial run does not replace the full report
    $PYTHON "$ROOT/benches/report.py" "$RES" "$META" "$MD"
else
    MD=$ROOT/BENCHMARKS.md
    $PYTHON "$ROOT/benches/report.py" "$RES" "$META" "$MD"
fi
echo >&2
echo "raw figures: $RES; report: $MD" >&2
if [ "$FAILED" = 1 ]; then
    echo "error: some programs failed (FAIL lines in $RES)" >&2
    exit 1
fi
