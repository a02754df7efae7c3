#!/usr/bin/env bash
# Builds the streaming examples c_examples/pgz.c and c_examples/ocr.c into target/examples/,
# against the libpool already built in target/release (make lib).
#
#   bash tests/examples/build.sh
#
# Exits 77 (the "skipped" status of automake-style harnesses) with a message when Tesseract's
# headers are missing; pgz is built first in any case. With POOL_INSTALL_DEPS=1, running as root
# with apt-get, the missing packages are installed instead.
# Environment: CC (default cc), POOL_LIBDIR (default target/release), OUT (default
# target/examples).
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
CC=${CC:-cc}
LIBDIR=${POOL_LIBDIR:-$ROOT/target/release}
OUT=${OUT:-$ROOT/target/examples}
CFLAGS="-std=c11 -D_DEFAULT_SOURCE -O2 -Wall -Wextra -Wpedantic -Werror"

if [ ! -e "$LIBDIR/libpool.so" ]; then
    echo "build.sh: $LIBDIR/libpool.so is missing: run 'make lib' (cargo build --release) first" >&2
    exit 1
fi
if ! grep -q pool_stream_next "$ROOT/include/pool.h"; then
    echo "build.sh: include/pool.h has no streaming API (pool_stream_next)" >&2
    exit 1
fi
mkdir -p "$OUT"
# The library's soname is libpool.so.0; make lib links it, a bare cargo build does not.
[ -e "$LIBDIR/libpool.so.0" ] || ln -sf libpool.so "$LIBDIR/libpool.so.0"

# Header present? Compile an empty translation unit that includes it.
have_header() { echo "#include <$1>" | $CC $2 -E -x c - >/dev/null 2>&1; }

install_deps() {
    if [ "${POOL_INSTALL_DEPS:-0}" = 1 ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "build.sh: installing $*" >&2
        # A plain install without update once failed on a libcurl dependency.
        apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >&2
    else
        return 1
    fi
}

if ! have_header zlib.h ""; then
    install_deps zlib1g-dev || { echo "pgz and ocr skipped: zlib is not installed (apt-get install zlib1g-dev)" >&2; exit 77; }
fi
LINK="-I$ROOT/include -L$LIBDIR -lpool -Wl,-rpath,$LIBDIR"
$CC $CFLAGS "$ROOT/c_examples/pgz.c" $LINK -lz -o "$OUT/pgz"
echo "built $OUT/pgz"

tess_flags() {
    if command -v pkg-config >/dev/null && pkg-config --exists tesseract lept 2>/dev/null; then
        pkg-config --cflags --libs tesseract lept
    else
        echo "-I/usr/include/leptonica -ltesseract -llept"
    fi
}
if ! have_header tesseract/capi.h "$(tess_flags)" || ! have_header allheaders.h "$(tess_flags)"; then
    install_deps libtesseract-dev tesseract-ocr-eng || {
        echo "ocr skipped: Tesseract is not installed (apt-get install libtesseract-dev tesseract-ocr-eng, or POOL_INSTALL_DEPS=1 as root)" >&2
        exit 77
    }
fi
# -ldl: ocr finds the OpenMP runtime's omp_set_max_active_levels with dlsym (in libc itself
# since glibc 2.34, in libdl before).
# shellcheck disable=SC2046
$CC $CFLAGS "$ROOT/c_examples/ocr.c" $LINK $(tess_flags) -ldl -o "$OUT/ocr"
echo "built $OUT/ocr"
