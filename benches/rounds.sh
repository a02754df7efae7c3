# Sourced by benches/run.sh: rounds of contenders, and the CPU time other processes took.
#
# A step compares contenders (libpool's program and Python's, OpenMP's...; or two builds of
# libpool): each round runs every contender once, the first one rotating from round to round,
# so that all of them see the same drift of a shared machine. Each round's RESULT lines go to
# $OUT/step.ID.txt after a line "ROUND ID N PCT SECONDS", PCT being the largest share of the CPUs
# other processes took during the round or one of its programs; benches/report.py takes every figure's
# median and spread over the rounds and flags figures from rounds with PCT >= 10.
#
# Needs OUT, RETRIES, WAIT, START (date +%s.%N), ONLY, BASE from the caller.

HZ=$(getconf CLK_TCK)
NCPU=$(nproc)
TIMES=$OUT/times.txt
busy_ticks() { local a; a=($(head -1 /proc/stat)); echo $((a[1] + a[2] + a[3] + a[6] + a[7] + a[8])); }
# User+sys seconds of this script's reaped children. "times" must run in this shell, not in a
# $(...) subshell (which has no children of its own): call "times >$TIMES" first, then ours_cpu.
ours_cpu() {
    tail -1 "$TIMES" | awk '{ n = 0; for (i = 1; i <= 2; i++) { split($i, t, /[ms]/); n += t[1] * 60 + t[2] } print n }'
}
foreign_pct() { # busy0 busy1 ours0 ours1 t0 t1: % of all CPUs used by other processes
    awk -v b0="$1" -v b1="$2" -v o0="$3" -v o1="$4" -v s="$5" -v e="$6" -v hz="$HZ" -v cpus="$NCPU" \
        'BEGIN { f = (b1 - b0) / hz - (o1 - o0); if (f < 0) f = 0; d = (e - s) * cpus; printf "%.0f", (d > 0 ? 100 * f / d : 0) }'
}
cpu_idle_pct() { # share of idle CPU over one second
    local a b tot=0 i
    a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
    for i in 1 2 3 4 5 6 7 8; do tot=$((tot + b[i] - a[i])); done
    echo $((100 * (b[4] - a[4] + b[5] - a[5]) / (tot > 0 ? tot : 1)))
}
wait_quiet() { # waits up to $WAIT s for a second with >= 90% idle CPU; prints the last idle %
    local idle waited=0
    idle=$(cpu_idle_pct)
    while [ "$idle" -lt 90 ] && [ "$waited" -lt "$WAIT" ]; do
        if [ "$waited" -eq 0 ]; then echo "   (the machine is busy: ${idle}% idle; waiting up to ${WAIT} s)" >&2; fi
        sleep 2
        waited=$((waited + 3))
        idle=$(cpu_idle_pct)
    done
    echo "$idle"
}
over_budget() { # true once the run has lasted BENCH_BUDGET seconds (default 360): no more retries
    awk -v s="$START" -v n="$(date +%s.%N)" -v b="${BENCH_BUDGET:-360}" 'BEGIN { exit !(n - s > b) }'
}

# mark NAME, then noted NAME: raises STEP_MAX to the share of the CPUs other processes took
# since the mark, if the interval lasted half a second or more (shorter ones are too coarse for
# /proc/stat's clock ticks: the round's own interval covers them).
STEP_MAX=0
mark() {
    times >"$TIMES"
    printf -v "$1" '%s %s %s' "$(busy_ticks)" "$(ours_cpu)" "$(date +%s.%N)"
}
noted() {
    local m=(${!1}) t1 pct
    times >"$TIMES"
    t1=$(date +%s.%N)
    awk -v a="${m[2]}" -v b="$t1" 'BEGIN { exit !(b - a >= 0.5) }' || return 0
    pct=$(foreign_pct "${m[0]}" "$(busy_ticks)" "${m[1]}" "$(ours_cpu)" "${m[2]}" "$t1")
    if [ "$pct" -gt "$STEP_MAX" ]; then STEP_MAX=$pct; fi
}

# run CMD...: runs one benchmark program, appending its RESULT and SKIP lines to $STEP_FILE
# (keys prefixed with "$RUN_TAG:" when RUN_TAG is set), and notes the share of the CPUs other
# processes took meanwhile. A program that fails leaves a line "FAIL tag command" (the report
# shows it; run.sh exits 1 at the end).
STEP_FILE=/dev/null
FAILED=0
run() {
    local tag=${RUN_TAG:+$RUN_TAG:} m_run
    mark m_run
    if ! "$@" | sed -e "s/^RESULT /RESULT $tag/" -e "s/^SKIP /SKIP $tag/" >>"$STEP_FILE"; then
        echo "FAIL ${tag:-} $*" >>"$STEP_FILE"
        echo "   FAILED: $*" >&2
        FAILED=1
    fi
    noted m_run
}

# A step's contenders, named by its DEFINE function (see step): "TAG|COMMAND", where @POOL in
# COMMAND is bench_pool and @R the round's number. In before/after mode (BASE set) a libpool
# contender runs twice a round, once per library (tags new and base); the others and the
# diagnostics are left out.
CONTENDERS=()
DIAGS=()
libpool() {
    if [ -n "$BASE" ]; then
        CONTENDERS+=("new|timeout $BENCH_TIMEOUT ${1//@POOL/$POOL}" "base|timeout $BENCH_TIMEOUT ${1//@POOL/$BPOOL}")
    else
        CONTENDERS+=("|${1//@POOL/$POOL}")
    fi
}
other() { [ -n "$BASE" ] || CONTENDERS+=("|$1"); }
diag() { [ -n "$BASE" ] || DIAGS+=("|${1//@POOL/$POOL}"); }
contender() { # "TAG|COMMAND" ROUND
    local tag=${1%%|*} cmd=${1#*|}
    RUN_TAG=$tag run ${cmd//@R/$2}
}
selected() { [ -z "$ONLY" ] || [[ ",$ONLY," == *",$1,"* ]]; }

# step [-n] ID "description" ROUNDS DEFINE: DEFINE names the contenders (calls of libpool, other
# and diag); each of ROUNDS rounds (BENCH_ROUNDS overrides) runs every contender once, the first
# rotating from round to round. A round in which other processes took >= 10% of the CPUs is run
# again once the machine is quiet, up to RETRIES times a step, until the run has lasted
# BENCH_BUDGET; -n: never (figures of memory, which other processes do not change). The
# diagnostics run once after the rounds.
step() {
    local retries=$RETRIES
    if [ "$1" = -n ]; then retries=0 && shift; fi
    local id=$1 desc=$2 rounds=${BENCH_ROUNDS:-$3} define=$4
    selected "$id" || return 0
    CONTENDERS=() DIAGS=()
    "$define"
    local n=${#CONTENDERS[@]} file=$OUT/step.$id.txt r k redo=0 t0 secs m_round
    [ "$n" -gt 0 ] || return 0
    printf '== %s: %d round%s of %d program%s\n' "$desc" "$rounds" "$([ "$rounds" = 1 ] || echo s)" "$n" "$([ "$n" = 1 ] || echo s)" >&2
    : >"$file"
    if ! over_budget; then wait_quiet >/dev/null; fi
    for ((r = 0; r < rounds; r++)); do
        STEP_FILE=$OUT/round.txt STEP_MAX=0 t0=$(date +%s.%N)
        : >"$STEP_FILE"
        mark m_round
        for ((k = 0; k < n; k++)); do contender "${CONTENDERS[(r + k) % n]}" "$r"; done
        noted m_round
        if [ "$STEP_MAX" -ge 10 ] && [ "$redo" -lt "$retries" ] && ! over_budget; then
            echo "   round $((r + 1)): other processes took up to ${STEP_MAX}% of the CPUs: running it again" >&2
            redo=$((redo + 1)) r=$((r - 1))
            wait_quiet >/dev/null
            continue
        fi
        secs=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
        { echo "ROUND $id $r $STEP_MAX $secs"; cat "$STEP_FILE"; } >>"$file"
        printf '   round %d/%d: %s s, other processes took up to %d%% of the CPUs%s\n' $((r + 1)) "$rounds" "$secs" \
            "$STEP_MAX" "$([ "$STEP_MAX" -lt 10 ] || [ "$retries" = 0 ] || echo ' (flagged)')" >&2
    done
    if [ ${#DIAGS[@]} -gt 0 ]; then
        STEP_FILE=$OUT/round.txt STEP_MAX=0
        : >"$STEP_FILE"
        t0=$(date +%s.%N)
        mark m_round
        for k in "${DIAGS[@]}"; do contender "$k" 0; done
        noted m_round
        secs=$(awk -v s="$t0" -v e="$(date +%s.%N)" 'BEGIN { printf "%.1f", e - s }')
        { echo "ROUND $id diag $STEP_MAX $secs"; cat "$STEP_FILE"; } >>"$file"
    fi
    STEP_FILE=/dev/null
    $PYTHON "$ROOT/benches/report.py" --summary "$file" >&2
}
