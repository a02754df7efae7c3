#!/usr/bin/env bash
# Two real jobs on libpool's streaming API, against the usual tools, in one run:
#   1. gzip of a ~100 MB corpus: c_examples/pgz (-p 2 -b 128) vs pigz -p 2 -b 128, gzip -6 and
#      Python multiprocessing.Pool(2) + zlib with the same block/dictionary scheme
#      (benches/jobs/py_gzip.py): MB/s, size, and peak memory (bounded whatever the input);
#   2. OCR of rendered pages: c_examples/ocr (one Tesseract engine per worker) vs the tesseract
#      CLI in a serial loop, xargs -P 2 and Python Pool(2) (benches/jobs/py_ocr.py): pages/s.
# The examples run as the README shows them, with no variable set for them (no OMP_THREAD_LIMIT:
# ocr must cap Tesseract's OpenMP threads itself); the other OCR tools run both as users run
# them by default and with OMP_THREAD_LIMIT=1. Figures: min/median/max over interleaved rounds.
# Prints the tables and writes them to target/bench/jobs.txt. About 4 minutes on 2 cores.
#
#   bash benches/jobs.sh
#
# Environment: POOL_LIBDIR (a libpool build other than target/release), POOL_EXAMPLES_NOBUILD=1
# (use target/examples as built), BENCH_OUT (target/bench), BENCH_MB (corpus size, 100),
# BENCH_PAGES (10), GZ_REPS (3), OCR_REPS (3), PYTHON (python3).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"
OUT=${BENCH_OUT:-$ROOT/target/bench}
PYTHON=${PYTHON:-python3}
MB=${BENCH_MB:-100}
NPAGES=${BENCH_PAGES:-10}
mkdir -p "$OUT"

for tool in pigz gzip tesseract; do
    command -v $tool >/dev/null || { echo "jobs.sh: $tool not installed (apt-get install $tool)" >&2; exit 1; }
done
if [ "${POOL_EXAMPLES_NOBUILD:-0}" != 1 ]; then
    if [ -n "${POOL_LIBDIR:-}" ] || ! make -n examples >/dev/null 2>&1; then
        bash tests/examples/build.sh >&2
    else
        make examples >&2
    fi
fi

# The corpus: half text (documentation, headers), half binaries (libraries, programs), read in
# sorted order so that a machine gives the same bytes on every run. Built once, then reused.
corpus=$OUT/jobs-corpus-${MB}MB.bin
if [ ! -s "$corpus" ] || [ "$(stat -c %s "$corpus")" != $((MB * 1000000)) ]; then
    echo "building the ${MB} MB corpus in $corpus" >&2
    half=$((MB * 500000))
    {
        { find /usr/share/doc /usr/include /usr/share/perl* -type f ! -name '*.gz' 2>/dev/null \
            | LC_ALL=C sort | xargs -d '\n' cat 2>/dev/null || true; } | head -c $half
        { find /usr/lib/x86_64-linux-gnu /usr/lib/aarch64-linux-gnu /usr/bin -type f 2>/dev/null \
            | LC_ALL=C sort | xargs -d '\n' cat 2>/dev/null || true; } | head -c $half
    } >"$corpus.tmp"
    [ "$(stat -c %s "$corpus.tmp")" = $((MB * 1000000)) ] || { echo "jobs.sh: not enough files for the corpus" >&2; exit 1; }
    mv "$corpus.tmp" "$corpus"
fi

# 16 lines of text a page (~0.4 s of OCR each here on one thread): a shorter page than the
# tests' 24 lines, and 10 of them, so that the eight contenders run three rounds within the time
# budget (the tools on Tesseract's default OpenMP threads take 5-6 times as long).
pages=$OUT/jobs-pages-$NPAGES-16lines
if [ ! -s "$pages/page$NPAGES.png" ]; then
    "$PYTHON" tests/examples/render_pages.py "$pages" --pages "$NPAGES" --seed 7 --lines 16 >&2
fi

"$PYTHON" benches/jobs/bench.py --bin "$ROOT/target/examples" --corpus "$corpus" --pages "$pages" --out "$OUT"
rm -rf "$OUT/jobs-scratch"
