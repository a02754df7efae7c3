#!/usr/bin/env bash
# Tests libpool's Debian packages the way a user gets them: builds them (`make package`), runs
# lintian on them, installs them all with `apt-get install ./target/packages/*.deb`, then, against
# /usr only:
#   - libpool.so.0 is stripped, under 1.5 MB, and its debug info is found by build id (gdb);
#   - tests/consumers/pkgconfig (C, pkg-config) and tests/consumers/cmake (C++, find_package(Pool))
#     build and print tests/consumers/expected_seed.txt; with the MPI packages, c_examples'
#     mpi_primes (pkg-config pool-mpi) runs under mpirun -np 4;
#   - the manual pages, if the tree has docs/man: `man -w pool_map`, `man -w 3 pool_stream_next`;
# and finally purges the packages and checks that no file they installed is left. The packages are
# purged whatever happens (trap), so that no later build or test finds libpool in /usr.
#
# Usage: bash tests/packages/run.sh   (from any directory; as root, or with password-less sudo:
# otherwise it says it skipped, and exits 0; so it does when one of the packages is already
# installed, which it leaves alone). POOL_PACKAGES_KEEP=1 keeps the temporary directory.
# Installs lintian, cmake, pkg-config, gdb and, with docs/man, man-db with apt-get when missing.
# Prints `packages: N passed, M failed` last and exits nonzero if anything failed.
set -uo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
consumers="$root/tests/consumers"
expected="$consumers/expected_seed.txt"

steps_name=packages
# shellcheck source=tests/steps.sh
. "$root/tests/steps.sh"
skip() {
    echo "packages: skipped: $1"
    summary
    exit 0
}

# ---------------------------------------------------------------------------------------------
# Root, apt and tools.

command -v apt-get >/dev/null 2>&1 && command -v dpkg >/dev/null 2>&1 ||
    skip "no apt-get/dpkg: not a Debian-based system"
# shellcheck source=tests/tools.sh
. "$root/tests/tools.sh"
# tools.sh's as_root tries without sudo: here that can only fail half-way.
if [ "$(id -u)" -eq 0 ]; then
    as_root() { "$@"; }
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    as_root() { sudo -n "$@"; }
else
    skip "installing packages needs root or password-less sudo (running as $(id -un))"
fi

man_pages=0
[ -d "$root/docs/man" ] && man_pages=1
apt_tools="lintian gdb" # (tools.sh installs cmake and pkg-config)
[ "$man_pages" -eq 0 ] || apt_tools="$apt_tools man"
for tool in $apt_tools; do
    command -v "$tool" >/dev/null 2>&1 && continue
    package=${tool/#man/man-db}
    echo "run.sh: $tool not found; installing it (apt-get install $package)"
    apt_install "$package" || true
done
# shellcheck disable=SC2086 # a list
if ! ensure_tools $apt_tools cmake pkg-config cargo cc c++ make readelf dpkg-deb; then
    failed=$((failed + 1))
    summary
    exit 1
fi

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pool-packages.XXXXXX")
debs=()
installed_pkgs=() # the packages of debs, purged on the way out
purge() {
    local still=() p status
    for p in "${installed_pkgs[@]}"; do # installed, half-installed, config-files...: purge
        status=$(dpkg-query -W -f '${db:Status-Status}' "$p" 2>/dev/null) || status=""
        case $status in "" | not-installed) ;; *) still+=("$p") ;; esac
    done
    [ "${#still[@]}" -eq 0 ] || apt_get purge -y -qq "${still[@]}"
}
cleanup() {
    purge >/dev/null 2>&1 || echo "run.sh: could not purge ${installed_pkgs[*]}: remove them by hand"
    remove_tmp "${POOL_PACKAGES_KEEP:-0}"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Builds must see only what the packages installed.
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH CARGO_TARGET_DIR
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH 2>/dev/null || gcc -print-multiarch)
libdir="/usr/lib/$multiarch"

# ---------------------------------------------------------------------------------------------
# Build, lint, install.

echo "run.sh: make package (a release build: a minute, more on a loaded machine)"
if ! step "make package: the .debs in target/packages" make -C "$root" package; then
    summary
    exit 1
fi
debs=("$root"/target/packages/*.deb)
# One run at a time on a machine (two checkouts' make test): the other's purge would remove these
# packages half-way. The lock is held until this script exits; /run/lock is emptied at boot.
lock_dir=/run/lock
[ -d "$lock_dir" ] && [ -w "$lock_dir" ] || lock_dir=${TMPDIR:-/tmp}
lock="$lock_dir/libpool-packages-test.lock"
exec 9>>"$lock"
if ! flock -n 9; then
    echo "run.sh: another run of this test holds $lock; waiting for it (up to 30 minutes)"
    flock -w 1800 9 || skip "another run of this test held $lock for 30 minutes"
fi
pkgs=() already=()
for d in "${debs[@]}"; do
    pkgs+=("$(dpkg-deb -f "$d" Package)")
    status=$(dpkg-query -W -f '${db:Status-Status} ${Version}' "${pkgs[-1]}" 2>/dev/null) || status=""
    case $status in "" | not-installed*) ;; *) already+=("${pkgs[-1]} ($status)") ;; esac
done
# Installed before this test (by the user, or by another run of it): not this test's to replace
# and purge, with whatever depends on them.
[ "${#already[@]}" -eq 0 ] ||
    skip "already on this system, left alone: ${already[*]} (apt-get purge them to run this test)"
installed_pkgs=("${pkgs[@]}")
echo "run.sh: packages: ${installed_pkgs[*]}"

step "lintian: no error or warning (overrides in packaging/debian explain the rest)" \
    lintian --fail-on error,warning "${debs[@]}"

# Paths the packages will install that already exist (directories such as /usr/lib): not theirs
# to remove.
for d in "${debs[@]}"; do
    dpkg-deb --fsys-tarfile "$d" | tar -t | sed 's#^\./#/#; s#/$##' | grep -v '^/*$'
done | sort -u >"$tmp/shipped"
while read -r p; do
    if [ -e "$p" ] || [ -L "$p" ]; then echo "$p"; fi
done <"$tmp/shipped" >"$tmp/existed"

install_debs() {
    apt_get install -y "${debs[@]}" &&
        dpkg-query -L "${installed_pkgs[@]}" | grep -vx '/\.' | sort -u >"$tmp/listed"
}
if ! step "apt-get install -y ./target/packages/*.deb" install_debs; then
    summary
    exit 1
fi

# ---------------------------------------------------------------------------------------------
# The installed library: small, and debuggable through -dbgsym.

so="$libdir/libpool.so.0"
check_size() {
    local size
    size=$(stat -L -c %s "$so") || return 1
    echo "$so: $size bytes"
    [ "$size" -lt 1572864 ]
}
step "$so is under 1.5 MB" check_size
check_exports() { # the dynamic symbols libpool.so.0 defines are exactly pool.h's functions
    local extra
    nm -D --defined-only "$so" | awk '{ print $NF }' | sort >"$tmp/exported"
    grep -o '\bpool_[a-z0-9_]*(' /usr/include/pool.h | tr -d '(' | sort -u >"$tmp/declared"
    extra=$(comm -3 "$tmp/exported" "$tmp/declared")
    echo "$(wc -l <"$tmp/exported") exported; not in both (exported | declared): ${extra:-none}"
    [ -z "$extra" ]
}
step "libpool.so.0 exports exactly pool.h's functions (nm -D), nothing else" check_exports
resolves_to() { # resolves_to LIBRARY: stdin has "LIBRARY ... => PATH" (ldd, ldconfig -p): is PATH ours?
    local path
    path=$(tee /dev/stderr | sed -n "s#^[[:space:]]*$1 .*=> \([^ ]*\).*#\1#p" | head -n 1)
    [ -n "$path" ] && [ "$(readlink -f "$path")" = "$(readlink -f "$libdir/$1")" ]
}
check_ldconfig() { ldconfig -p | resolves_to libpool.so.0; }
step "ldconfig knows libpool.so.0 (the ldconfig trigger ran)" check_ldconfig
check_debug_file() {
    local id debug
    id=$(readelf -n "$so" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
    debug="/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
    echo "build id: $id; $debug"
    [ -n "$id" ] && [ -f "$debug" ] || return 1
    readelf -S "$so" | grep -q '\.debug_info' && { echo "$so still has .debug_info"; return 1; }
    readelf -S "$debug" | grep -q '\.debug_info'
}
step "libpool.so.0 is stripped; its build id's .debug file has .debug_info" check_debug_file
check_gdb() { # gdb finds the source line of an exported function only through the .debug file
    local out
    out=$(env -u DEBUGINFOD_URLS gdb -batch -nx -ex 'info line pool_create' "$so" 2>&1)
    echo "$out"
    grep -q '^Line [0-9]* of "' <<<"$out"
}
step "gdb finds pool_create's source line (info line) in the installed libpool.so.0" check_gdb

# ---------------------------------------------------------------------------------------------
# The consumer projects against /usr.

run_seed() { # run_seed BINARY: runs it, compares its output with the seed's
    "$1" >"$1.out" || { echo "$1 exited $?"; return 1; }
    diff -u "$expected" "$1.out"
}
uses_usr() { ldd "$1" | resolves_to "$2"; } # uses_usr BINARY LIBRARY

pc_build="$tmp/consumer-pkgconfig"
check_pc() {
    local libdir_pc
    libdir_pc=$(pkg-config --variable=libdir pool) || return 1
    echo "pkg-config: pool $(pkg-config --modversion pool), libdir $libdir_pc"
    [ "$(readlink -f "$libdir_pc")" = "$(readlink -f "$libdir")" ]
}
step "pkg-config finds pool in $libdir/pkgconfig" check_pc
flags_are() { # flags_are "FLAGS" PKG-CONFIG-ARGS...: /usr's directories left out, as for any /usr library
    local got words
    got=$(pkg-config "${@:2}") || return 1
    echo "pkg-config ${*:2}: $got"
    read -ra words <<<"$got" # (pkg-config pads with spaces)
    [ "${words[*]}" = "$1" ]
}
step "pkg-config --cflags --libs pool: -lpool alone (prefix=/usr)" flags_are "-lpool" --cflags --libs pool
if step "pkg-config consumer (C, tests/consumers/pkgconfig): builds shared and --static" \
    make -C "$consumers/pkgconfig" BUILD="$pc_build"; then
    step "pkg-config consumer: app (libpool.so.0) runs the seed scenarios" run_seed "$pc_build/app"
    step "pkg-config consumer: app loads $libdir/libpool.so.0" uses_usr "$pc_build/app" libpool.so.0
    step "pkg-config consumer: app_static (libpool.a) runs the seed scenarios" run_seed "$pc_build/app_static"
fi

cm_build="$tmp/consumer-cmake"
cmake_consumer() {
    cmake -S "$consumers/cmake" -B "$cm_build" && cmake --build "$cm_build" &&
        grep "^Pool_DIR:" "$cm_build/CMakeCache.txt" | tee /dev/stderr | grep -q "=$libdir/cmake/Pool$"
}
if step "cmake consumer (C++, tests/consumers/cmake): find_package(Pool) finds $libdir/cmake/Pool" \
    cmake_consumer; then
    step "cmake consumer: app (Pool::pool) runs the seed scenarios" run_seed "$cm_build/app"
    step "cmake consumer: app loads $libdir/libpool.so.0" uses_usr "$cm_build/app" libpool.so.0
    step "cmake consumer: app_static (Pool::pool_static) runs the seed scenarios" run_seed "$cm_build/app_static"
fi

if [ "$(readlink -f /lib)" = /usr/lib ]; then # merged /usr: /lib/<multiarch>/cmake/Pool is ours too
    cmake_via_lib() {
        cmake -S "$consumers/cmake" -B "$tmp/consumer-cmake-lib" -DCMAKE_PREFIX_PATH=/ &&
            grep "^Pool_DIR:" "$tmp/consumer-cmake-lib/CMakeCache.txt" | tee /dev/stderr |
            grep -q "=/lib/$multiarch/cmake/Pool$"
    }
    step "cmake consumer: find_package(Pool) through /lib -> usr/lib (CMAKE_PREFIX_PATH=/)" cmake_via_lib
fi

if [ -f "$libdir/pkgconfig/pool-mpi.pc" ]; then
    ex_build="$tmp/examples"
    run_mpi_primes() { # 4 ranks; block 123 crashes its worker alone and the job goes on
        local out="$ex_build/mpi_primes.out"
        OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
            timeout 300 mpirun -np 4 "$ex_build/mpi_primes" >"$out" 2>&1 || { cat "$out"; return 1; }
        cat "$out"
        grep -q "^8 workers on 4 ranks$" "$out" && grep -q "1 block(s) failed" "$out"
    }
    step "pkg-config --cflags --libs pool-mpi: -lpool_mpi -lpool alone" flags_are "-lpool_mpi -lpool" \
        --cflags --libs pool-mpi
    if step "libpool-mpi-dev: c_examples build with pkg-config pool-mpi and mpicc" \
        make -C "$root/c_examples" BUILD="$ex_build" "$ex_build/mpi_primes"; then
        step "libpool-mpi0: mpi_primes loads $libdir/libpool_mpi.so.0" \
            uses_usr "$ex_build/mpi_primes" libpool_mpi.so.0
        step "libpool-mpi0: mpi_primes under mpirun -np 4" run_mpi_primes
    fi
else
    echo "run.sh: no MPI packages (make package found no mpicc): libpool_mpi not tested"
fi

if [ "$man_pages" -eq 1 ]; then
    find_man() { # find_man ARGS...: man -w finds the page in /usr/share/man
        local page
        page=$(man -w "$@") || return 1
        echo "man -w $*: $page"
        [[ "$page" == /usr/share/man/* ]]
    }
    step "man -w pool_map finds the installed page" find_man pool_map
    step "man -w 3 pool_stream_next finds the installed page" find_man 3 pool_stream_next
fi

# ---------------------------------------------------------------------------------------------
# Purge: nothing the packages installed is left.

check_purged() {
    local p left
    purge || return 1
    for p in "${installed_pkgs[@]}"; do
        dpkg-query -W -f '${db:Status-Abbrev} ${Package}\n' "$p" 2>/dev/null | grep -v '^un ' && return 1
    done
    left=$(while read -r p; do
        if { [ -e "$p" ] || [ -L "$p" ]; } && ! grep -qxF -- "$p" "$tmp/existed"; then echo "$p"; fi
    done <"$tmp/listed")
    echo "$(wc -l <"$tmp/listed") paths listed by dpkg -L; left behind: ${left:-none}"
    [ -z "$left" ]
}
step "apt-get purge: no file or directory from the packages is left (dpkg -L before, ls after)" check_purged

summary
[ "$failed" -eq 0 ]
