#!/usr/bin/env bash
# Tests of the streaming examples: pgz (parallel gzip) and ocr (Tesseract, one engine per
# worker). Builds them (make examples, or tests/examples/build.sh with POOL_LIBDIR), then prints
# one line per check, PASS or FAIL, and exits 1 if any failed (77 if the OCR part was skipped
# because Tesseract is not installed and nothing failed). About a minute on two cores.
#
#   bash tests/examples/run.sh
#
# Environment: POOL_INSTALL_DEPS=1 (install zlib, Tesseract with apt-get when root, and Pillow
# with pip, when missing: make test sets it), POOL_LIBDIR (a libpool build to use instead of target/release: then build.sh is
# run directly instead of make examples), POOL_EXAMPLES_NOBUILD=1 (use the binaries already in
# target/examples), PYTHON (default python3), KEEP=1 (keep the scratch directory).
set -uo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
HERE=$ROOT/tests/examples
BIN=$ROOT/target/examples
PYTHON=${PYTHON:-python3}
cd "$ROOT"

fails=0
pass() { printf 'PASS  %s\n' "$*"; }
fail() { printf 'FAIL  %s\n' "$*"; fails=$((fails + 1)); }
skip() { printf 'SKIP  %s\n' "$*"; }

# ---- build ----------------------------------------------------------------------------------
ocr_built=1
if [ "${POOL_EXAMPLES_NOBUILD:-0}" != 1 ]; then
    # build.sh itself, for its exit status: 77 when OCR's dependencies are missing.
    if [ -n "${POOL_LIBDIR:-}" ] || ! make -n lib >/dev/null 2>&1; then
        bash "$HERE/build.sh"
    else
        make lib >/dev/null && bash "$HERE/build.sh"
    fi
    rc=$?
    if [ $rc = 77 ]; then
        ocr_built=0
    elif [ $rc != 0 ]; then
        fail "build the examples (exit $rc)"
        exit 1
    fi
fi
[ -x "$BIN/ocr" ] || ocr_built=0
PGZ=$BIN/pgz
OCR=$BIN/ocr

W=$(mktemp -d "${TMPDIR:-/tmp}/pool-examples.XXXXXX")
cleanup() { [ "${KEEP:-0}" = 1 ] && echo "scratch kept in $W" || rm -rf "$W"; }
trap cleanup EXIT

# ---- make examples on a machine without Tesseract ---------------------------------------------
# A compiler that finds no Tesseract headers stands for such a machine: make examples builds
# pgz, says ocr was skipped and how to get it, and succeeds; REQUIRE=all fails instead.
if [ -z "${POOL_LIBDIR:-}" ] && make -n lib >/dev/null 2>&1; then
    cat >"$W/cc-no-tesseract" <<EOF
#!/bin/bash
# cc, as on a machine without Tesseract: its headers are not found (build.sh probes headers
# by preprocessing an #include read from standard input, the last argument "-").
if [ "\${!#}" = - ]; then
    input=\$(cat)
    case \$input in *tesseract*|*allheaders*) echo "fatal error: no such header" >&2; exit 1 ;; esac
    printf '%s\\n' "\$input" | exec ${CC:-cc} "\$@"
fi
exec ${CC:-cc} "\$@"
EOF
    chmod +x "$W/cc-no-tesseract"
    out=$(env -u POOL_INSTALL_DEPS CC="$W/cc-no-tesseract" OUT="$W/ex" make examples 2>&1)
    rc=$?
    if [ $rc = 0 ] && [ -x "$W/ex/pgz" ] && [ ! -e "$W/ex/ocr" ] && grep -q "apt-get install libtesseract-dev" <<<"$out" &&
        grep -q "ocr skipped" <<<"$out"; then
        pass "make examples without Tesseract: builds pgz, says ocr was skipped and how to get it, exits 0"
    else
        fail "make examples without Tesseract (exit $rc): $out"
    fi
    out=$(env -u POOL_INSTALL_DEPS CC="$W/cc-no-tesseract" OUT="$W/ex" make examples REQUIRE=all 2>&1)
    rc=$?
    if [ $rc != 0 ] && grep -q "REQUIRE=all" <<<"$out"; then
        pass "make examples REQUIRE=all without Tesseract fails (exit $rc)"
    else
        fail "make examples REQUIRE=all without Tesseract (exit $rc): $out"
    fi
fi

# ---- pgz ------------------------------------------------------------------------------------
# A 10 MB corpus of text and binaries from this machine, the same bytes on every run here.
corpus=$W/corpus
{
    for i in 1 2 3 4 5 6; do
        find /usr/share/common-licenses -type f | LC_ALL=C sort | xargs cat
        cat /usr/bin/ls /usr/bin/cp /usr/bin/bash 2>/dev/null
    done
    find /usr/share/doc -type f | LC_ALL=C sort | head -2000 | xargs cat 2>/dev/null
} | head -c 10000000 >"$corpus"

# Compresses $1 with pgz options $2..; checks gzip -t, the round trip, and that the stream ends
# with the empty final block and a trailer matching the input. Prints why on failure.
pgz_roundtrip() {
    local in=$1 gz=$W/out.gz
    shift
    "$PGZ" "$@" <"$in" >"$gz" 2>"$W/pgz.err" || { echo "pgz $* exit $?: $(head -c 300 "$W/pgz.err")"; return 1; }
    gzip -t "$gz" 2>"$W/gz.err" || { echo "gzip -t failed for pgz $*: $(head -c 300 "$W/gz.err")"; return 1; }
    gunzip -c "$gz" | cmp -s - "$in" || { echo "round trip differs for pgz $*"; return 1; }
    "$PYTHON" - "$in" "$gz" <<'EOF' || { echo "stream layout wrong for pgz $*"; return 1; }
import sys, zlib, struct
data = open(sys.argv[1], "rb").read(); gz = open(sys.argv[2], "rb").read()
assert gz[:4] == b"\x1f\x8b\x08\x00", "header"
assert gz[-10:-8] == b"\x03\x00", "final empty fixed block"
crc, isize = struct.unpack("<II", gz[-8:])
assert crc == zlib.crc32(data) and isize == len(data) % 2**32, "trailer"
EOF
}

check_args() {
    local bad=()
    for args in "-p 0" "-p x" "-p" "-b 0" "-b 1048577" "-b 12k" "-l 10" "-l -1" "-q" "extra"; do
        # shellcheck disable=SC2086
        "$PGZ" $args </dev/null >"$W/o" 2>"$W/e"
        local rc=$?
        { [ $rc = 2 ] && grep -q '^usage: pgz' "$W/e"; } || bad+=("'$args' (exit $rc)")
    done
    if [ ${#bad[@]} = 0 ]; then pass "pgz: 10 bad argument lists give the usage message and exit 2"
    else fail "pgz: bad arguments not refused properly: ${bad[*]}"; fi
}
check_args

head -c 0 /dev/null >"$W/empty"
printf 'x' >"$W/one"
for name in empty one; do
    errs=() n=0
    for p in 1 2 4; do for b in 1 64 128 1024; do for l in 1 6 9; do
        n=$((n + 1))
        why=$(pgz_roundtrip "$W/$name" -p $p -b $b -l $l) || errs+=("$why")
    done; done; done
    label=$([ $name = empty ] && echo "empty input" || echo "1-byte input")
    if [ ${#errs[@]} = 0 ]; then pass "pgz: $label, $n option sets (-p 1/2/4 x -b 1/64/128/1024 x -l 1/6/9): gzip -t, gunzip | cmp, trailer"
    else fail "pgz: $label: ${#errs[@]}/$n failed: ${errs[0]}"; fi
done

for b in 1 64 128 1024; do
    for extra in 0 1; do
        size=$((b * 1024 + extra))
        head -c $size "$corpus" >"$W/in"
        errs=() n=0
        for p in 1 2 4; do for l in 1 6 9; do
            n=$((n + 1))
            why=$(pgz_roundtrip "$W/in" -p $p -b $b -l $l) || errs+=("$why")
        done; done
        what=$([ $extra = 0 ] && echo "exactly one block" || echo "one block + 1 byte")
        if [ ${#errs[@]} = 0 ]; then pass "pgz -b $b: $what ($size bytes), $n option sets (-p 1/2/4 x -l 1/6/9): round trip"
        else fail "pgz -b $b: $what: ${#errs[@]}/$n failed: ${errs[0]}"; fi
    done
done

for opts in "" "-p 1 -b 128 -l 6" "-p 2 -b 64 -l 1" "-p 4 -b 1024 -l 9" "-p 2 -b 1 -l 6" "-p 2 -b 7 -l 0"; do
    t0=$(date +%s.%N)
    # shellcheck disable=SC2086
    if why=$(pgz_roundtrip "$corpus" $opts); then
        t1=$(date +%s.%N)
        ratio=$(awk -v a="$(stat -c %s "$W/out.gz")" -v b="$(stat -c %s "$corpus")" 'BEGIN { printf "%.3f", a / b }')
        pass "pgz ${opts:-(defaults)}: 10 MB text+binary corpus round trip, ratio $ratio, $(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.2f", b - a }') s"
    else
        fail "pgz ${opts:-(defaults)}: 10 MB corpus: $why"
    fi
done

# Past 4 GiB: ISIZE is the length modulo 2^32, and the CRC combines over a thousand blocks.
# Zeros at level 1 keep this to ~10 s; pigz -t (faster than gzip -t) checks the CRC and ISIZE.
big=4400000000
echo "pgz on 4.4 GB of zeros (~10 s, more on a loaded machine) ..."
head -c $big /dev/zero | "$PGZ" -p 2 -b 1024 -l 1 >"$W/big.gz" 2>"$W/e"; rc=$?
isize=$(tail -c 4 "$W/big.gz" | od -An -tu4 | tr -d ' ')
tester=$(command -v pigz >/dev/null && echo pigz || echo gzip)
if [ $rc = 0 ] && [ "$isize" = $((big % 4294967296)) ] && $tester -t "$W/big.gz" 2>"$W/e"; then
    pass "pgz on 4.4 GB of zeros: ISIZE $isize = length mod 2^32, $tester -t passes (CRC and length)"
else
    fail "pgz on 4.4 GB of zeros: exit $rc, ISIZE '$isize', $(head -c 300 "$W/e")"
fi
rm -f "$W/big.gz"

# pigz-style blocks lose almost nothing to independent compression: within 1% of pigz itself.
if command -v pigz >/dev/null; then
    "$PGZ" -p 2 -b 128 -l 6 <"$corpus" >"$W/a.gz" && pigz -n -p 2 -b 128 -6 <"$corpus" >"$W/b.gz"
    a=$(stat -c %s "$W/a.gz") b=$(stat -c %s "$W/b.gz")
    if awk -v a=$a -v b=$b 'BEGIN { exit !(a <= b * 1.01 && a >= b * 0.99) }'; then
        pass "pgz -p 2 -b 128 -l 6 output $a bytes vs pigz -b 128 -6 $b bytes (within 1%: dictionaries used)"
    else
        fail "pgz output $a bytes vs pigz $b bytes: more than 1% apart"
    fi
else
    skip "pgz vs pigz size (pigz not installed)"
fi

"$PGZ" <"$W" >"$W/o" 2>"$W/e"; rc=$?
head -c 3000000 /dev/urandom >"$W/rnd"
if why=$(pgz_roundtrip "$W/rnd" -S -p 2); then pass "pgz -S (sandboxed workers): 3 MB round trip"
elif grep -Eq 'sandbox cannot be applied on this system: (Landlock|seccomp)' "$W/pgz.err"; then
    skip "pgz -S: this system cannot sandbox ($(head -c 200 "$W/pgz.err"))"
else fail "pgz -S: $why"; fi
if [ $rc = 1 ] && grep -q 'read error' "$W/e"; then pass "pgz < directory: read error reported ($(head -1 "$W/e")), exit 1"
else fail "pgz < directory: exit $rc, stderr: $(head -c 200 "$W/e")"; fi

"$PGZ" <"$corpus" >/dev/full 2>"$W/e"; rc=$?
if [ $rc = 1 ] && grep -q 'write error' "$W/e"; then pass "pgz > /dev/full: write error reported ($(head -1 "$W/e")), exit 1"
else fail "pgz > /dev/full: exit $rc, stderr: $(head -c 200 "$W/e")"; fi

# ---- ocr ------------------------------------------------------------------------------------
if [ $ocr_built = 0 ]; then
    skip "ocr: Tesseract not installed: apt-get install libtesseract-dev tesseract-ocr-eng"
    [ $fails = 0 ] && exit 77
    exit 1
fi
# ocr runs as the README shows it: no OMP_THREAD_LIMIT or other variable exported for it.
unset OMP_THREAD_LIMIT
ulimit -c 0 # the crash test aborts a worker: no core file
P=$W/pages
# Pages are rendered with Pillow; POOL_INSTALL_DEPS=1 (make test) installs it when missing.
if ! "$PYTHON" -c 'import PIL' 2>/dev/null && [ "${POOL_INSTALL_DEPS:-0}" = 1 ]; then
    "$PYTHON" -m pip install -q pillow >&2 || true
fi
if ! "$PYTHON" "$HERE/render_pages.py" "$P" --pages 6 --seed 1 >/dev/null; then
    fail "ocr: render pages (python3 -m pip install pillow?)"
    exit 1
fi
pages=("$P"/page{1..6}.png)

# Workers are forked, not exec'd: every process of a run shows the run's command line, which
# names the scratch directory. None may be left once ocr has exited.
leftovers() { pgrep -f -- "$W" | grep -v "^$$\$" || true; }
# Those left once they had 30 s to go after ocr exited (at once on a quiet machine).
settled_leftovers() {
    local left i
    for i in $(seq 60); do
        left=$(leftovers)
        [ -z "$left" ] && return
        sleep 0.5
    done
    echo "$left"
}

t0=$(date +%s.%N)
"$OCR" -p 2 "${pages[@]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
t1=$(date +%s.%N)
secs=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.1f", b - a }')
if [ $rc = 0 ] && why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "${pages[@]}"); then
    pass "ocr -p 2, 6 pages as arguments: $why ($secs s)"
else
    fail "ocr -p 2, 6 pages: exit $rc: ${why:-} $(head -c 300 "$W/ocr.err")"
fi

# Each engine runs one OpenMP thread, whatever the caller's environment: counted in /proc while
# the run stands still. Its last page is a FIFO: a worker waits in the open until the test
# opens the other end, then reads an empty file (that page fails alone). Once the progress line
# says the other pages are done, every process the run started (the workers, the pool's fork
# server) must have one thread: with the OpenMP runtime's defaults, Tesseract's parallel regions
# (num_threads(4)) leave their threads in every worker that ran a page. $@: variables for the
# run (none: as users run it). Sets held_counts (pid:threads ...), held_max and held_rc.
descendants() { local c; for c in $(pgrep -P "$1"); do echo "$c"; descendants "$c"; done; }
threads_held_run() {
    local fifo=$W/hold.fifo pid opener c n
    held_counts="" held_max=0 held_rc=
    # The last run's stderr says '[2/3 pages]': gone before this run starts, else the loop below
    # could read it before the new ocr's redirection truncates the file (slow on a busy machine).
    rm -f "$fifo" "$W/ocr.out" "$W/ocr.err" && mkfifo "$fifo" || return
    env "$@" "$OCR" -p 2 -P "${pages[0]}" "${pages[1]}" "$fifo" >"$W/ocr.out" 2>"$W/ocr.err" &
    pid=$!
    for _ in $(seq 1200); do # a hang guard only: the event is the progress line
        grep -qs '\[2/3 pages\]' "$W/ocr.err" && break
        kill -0 $pid 2>/dev/null || break
        sleep 0.1
    done
    for c in $(descendants $pid); do
        n=$(ls "/proc/$c/task" 2>/dev/null | wc -l)
        held_counts+="${held_counts:+ }$c:$n" held_max=$((n > held_max ? n : held_max))
    done
    (: >"$fifo") & # waits for the worker's open if it has not come yet, then closes: EOF
    opener=$!
    wait $pid
    held_rc=$?
    kill $opener 2>/dev/null # ocr ended without opening the FIFO: the opener would wait forever
    wait $opener 2>/dev/null
}
# ocr read pages 1-2, the FIFO page failed alone, and the busiest process had $1 threads.
held_ok() {
    [ "$held_rc" = 1 ] && [ "$held_max" = "$1" ] && [ "$(wc -w <<<"$held_counts")" -ge 2 ] &&
        "$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "${pages[0]}" "${pages[1]}" "!$W/hold.fifo" >/dev/null
}
held_why() { echo "pid:threads '$held_counts', exit $held_rc, stderr: $(tr '\r' ' ' <"$W/ocr.err" | head -c 300)"; }
threads_held_run
if held_ok 1; then
    pass "ocr -p 2 as users run it (no OMP_THREAD_LIMIT): one thread in each of its processes mid-run (pid:threads $held_counts)"
else
    fail "ocr -p 2 without OMP_THREAD_LIMIT: want one thread in each process mid-run: $(held_why)"
fi
threads_held_run OMP_THREAD_LIMIT=abc
if held_ok 1; then
    pass "ocr -p 2 with OMP_THREAD_LIMIT=abc (a value the runtime ignores): one thread in each process (pid:threads $held_counts)"
else
    fail "ocr -p 2 with OMP_THREAD_LIMIT=abc: want one thread in each process mid-run: $(held_why)"
fi
threads_held_run OMP_THREAD_LIMIT=2
if held_ok 2; then
    pass "ocr -p 2 with OMP_THREAD_LIMIT=2 set by the user: 2 threads an engine, as asked (pid:threads $held_counts)"
else
    fail "ocr -p 2 with OMP_THREAD_LIMIT=2: want 2 threads in the busiest process mid-run: $(held_why)"
fi

printf '%s\n' "${pages[@]}" | "$OCR" -p 2 -F -P >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
if [ $rc = 0 ] && why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" ff "${pages[@]}") \
    && grep -q '\[6/6 pages\]' "$W/ocr.err"; then
    pass "ocr -F -P, paths on stdin: form feeds, $why, progress line '[6/6 pages]' on stderr"
else
    fail "ocr -F -P, paths on stdin: exit $rc: ${why:-} stderr: $(head -c 300 "$W/ocr.err" | tr '\r' ' ')"
fi

# The hanging page ends by the -t timeout, which no real page may reach: three times what the
# six pages took above (each page took a third of that at most), 3 s at least; so a loaded
# machine, slower at both, passes too.
tmo=$(awk -v s="$secs" 'BEGIN { t = 3 * s; printf "%d", t < 3 ? 3 : t + 1 }')
t0=$(date +%s.%N)
OCR_FAULT=crash:page3,hang:page4 "$OCR" -p 2 -t "$tmo" "${pages[@]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
t1=$(date +%s.%N)
secs=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.1f", b - a }')
left=$(settled_leftovers)
expect=("${pages[@]}")
expect[2]="!${pages[2]}" expect[3]="!${pages[3]}"
why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "${expect[@]}"); ok=$?
if [ $rc = 1 ] && [ $ok = 0 ] && grep -q 'page3.png crashed the OCR engine' "$W/ocr.err" \
    && grep -q 'page4.png timed out' "$W/ocr.err" && grep -q '2 of 6 pages failed' "$W/ocr.err" \
    && [ -z "$left" ]; then
    pass "ocr OCR_FAULT=crash:page3,hang:page4 -t $tmo: page3 crashed, page4 timed out (stderr), $why, exit 1, no process left ($secs s)"
else
    fail "ocr with faults: exit $rc, check: $why, leftover pids: '${left}', stderr: $(head -c 600 "$W/ocr.err")"
fi

"$OCR" -p 2 "$W/missing.png" "${pages[0]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "!$W/missing.png" "${pages[0]}"); ok=$?
if [ $rc = 1 ] && [ $ok = 0 ] && grep -q 'missing.png failed: .*cannot read the image' "$W/ocr.err"; then
    pass "ocr on a missing image: that page fails alone with the task's message, the next is read"
else
    fail "ocr on a missing image: exit $rc, check: $why, stderr: $(head -c 300 "$W/ocr.err")"
fi

"$OCR" -p 2 -l no_such_language "${pages[0]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
left=$(settled_leftovers)
if [ $rc = 2 ] && grep -q "cannot start the OCR workers: .*cannot load language 'no_such_language'" "$W/ocr.err" \
    && [ ! -s "$W/ocr.out" ] && [ -z "$left" ]; then
    pass "ocr -l no_such_language: the initializer refuses, pool_create fails with its message, exit 2"
else
    fail "ocr -l no_such_language: exit $rc, leftover '$left', stderr: $(head -c 400 "$W/ocr.err")"
fi

# Sandboxed (-S), where the system has Landlock and seccomp (else ocr -S must say so and stop):
# the same pages read from their directory give the same text; a page outside
# it fails alone (the sandbox refuses the open); hostile images (corrupt, truncated, a
# decompression bomb) beside real pages fail alone, the real pages come out right, and nothing
# is left running.
"$OCR" -p 2 -S "$P" "${pages[@]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
if [ $rc = 2 ] && grep -Eq 'sandbox cannot be applied on this system: (Landlock|seccomp)' "$W/ocr.err"; then
    skip "ocr -S: this system cannot sandbox ($(head -c 200 "$W/ocr.err"))"
    sandbox_ok=0
elif [ $rc = 0 ] && why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "${pages[@]}"); then
    pass "ocr -S (sandboxed workers), 6 pages: $why"
else
    fail "ocr -S, 6 pages: exit $rc: ${why:-} $(head -c 300 "$W/ocr.err")"
fi
if [ "${sandbox_ok:-1}" = 1 ]; then
cp "${pages[0]}" "$W/outside.png"
"$OCR" -p 2 -S "$P" "$W/outside.png" "${pages[1]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "!$W/outside.png" "${pages[1]}"); ok=$?
if [ $rc = 1 ] && [ $ok = 0 ] && grep -q 'outside.png failed: .*Permission denied' "$W/ocr.err"; then
    pass "ocr -S: a page outside the sandbox's directory fails alone (Permission denied), the next is read"
else
    fail "ocr -S, page outside: exit $rc, check: $why, stderr: $(head -c 300 "$W/ocr.err")"
fi
H=$W/hostile
mkdir -p "$H"
cp "${pages[0]}" "${pages[1]}" "$H/"
"$PYTHON" "$HERE/hostile_pages.py" "$H" "${pages[0]}"
hostile=("$H/corrupt.png" "$H/page1.png" "$H/truncated.png" "$H/bomb.png" "$H/page2.png")
cp "$P/page1.txt" "$P/page2.txt" "$H/"
t0=$(date +%s.%N)
"$OCR" -p 2 -t 300 -S "$H" "${hostile[@]}" >"$W/ocr.out" 2>"$W/ocr.err"; rc=$?
t1=$(date +%s.%N)
secs=$(awk -v a=$t0 -v b=$t1 'BEGIN { printf "%.1f", b - a }')
left=$(settled_leftovers)
why=$("$PYTHON" "$HERE/check_ocr.py" "$W/ocr.out" header "!$H/corrupt.png" "$H/page1.png" "!$H/truncated.png" \
    "!$H/bomb.png" "$H/page2.png"); ok=$?
# (The bomb decodes to a blank page: Tesseract finds no text, or refuses it; either way it
# comes out empty and harms no other page.)
if [ $rc = 1 ] && [ $ok = 0 ] && grep -Eq '^ocr: [23] of 5 pages failed' "$W/ocr.err" && [ -z "$left" ]; then
    pass "ocr -S on hostile images (corrupt, truncated, 400 MB decompression bomb) beside real pages: the corrupt and truncated fail alone, the bomb comes out empty, $why, no process left ($secs s)"
else
    fail "ocr -S on hostile images: exit $rc, check: $why, leftover '$left', stderr: $(grep '^ocr:' "$W/ocr.err" | head -c 600)"
fi
fi

bad=()
for args in "-p 0" "-t 0" "-t x" "-p" "-q"; do
    # shellcheck disable=SC2086
    "$OCR" $args "${pages[0]}" </dev/null >/dev/null 2>"$W/e"; rc=$?
    { [ $rc = 2 ] && grep -q '^usage: ocr' "$W/e"; } || bad+=("'$args' (exit $rc)")
done
"$OCR" </dev/null >/dev/null 2>"$W/e"; rc=$?
{ [ $rc = 2 ] && grep -q 'no pages given' "$W/e"; } || bad+=("no pages (exit $rc)")
OCR_FAULT=explode:page1 "$OCR" "${pages[0]}" >/dev/null 2>"$W/e"; rc=$?
{ [ $rc = 2 ] && grep -q 'OCR_FAULT must be' "$W/e"; } || bad+=("bad OCR_FAULT (exit $rc)")
if [ ${#bad[@]} = 0 ]; then pass "ocr: bad arguments, no pages and a bad OCR_FAULT are refused with exit 2"
else fail "ocr: not refused properly: ${bad[*]}"; fi

echo "$([ $fails = 0 ] && echo 'all checks passed' || echo "$fails check(s) FAILED")"
[ $fails = 0 ]
