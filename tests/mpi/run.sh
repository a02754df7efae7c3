#!/usr/bin/env bash
# libpool_mpi under mpirun -np 4, with Open MPI and with MPICH: builds libpool_mpi.so, the test
# program (tests/mpi/mpi_test.c), a library and a plugin holding task functions, and a second
# build of the program, for each implementation under target/mpi/<impl>/; then runs every mode
# of mpi_test.c under `timeout` and checks that no process of the job is left alive after
# mpirun returns. Installs the MPI packages (Debian) when they are missing.
# Prints `mpi: N passed, M failed` last and exits nonzero if anything failed.
set -uo pipefail

root=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$root" || exit 1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
passed=0
failed=0
ok() { passed=$((passed + 1)); echo "ok   $1"; }
bad() {
    failed=$((failed + 1))
    echo "FAIL $1"
    [ -n "${2:-}" ] && [ -f "$2" ] && tail -n 40 "$2" | sed 's/^/     | /'
}

need=()
for impl in openmpi mpich; do
    command -v "mpicc.$impl" >/dev/null 2>&1 && command -v "mpirun.$impl" >/dev/null 2>&1 || need+=("$impl")
done
if [ ${#need[@]} -gt 0 ]; then
    echo "mpi: installing Open MPI and MPICH (apt-get)"
    as_root() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev mpich libmpich-dev >/dev/null 2>&1 ||
        { as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq >/dev/null 2>&1;
          as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openmpi-bin libopenmpi-dev mpich libmpich-dev >/dev/null 2>&1; }
fi

echo "mpi: building libpool (cargo build --release)"
cargo build --release --quiet || { echo "mpi: cargo build failed"; exit 1; }
lib="$root/target/release"
ln -sf libpool.so "$lib/libpool.so.0"
cflags=(-O1 -g -Wall -Wextra -Werror -I"$root/include")

# Processes of this job still alive (not zombies): their executable is one of ours.
leftovers() {
    local d=$1 p exe state
    for p in /proc/[0-9]*; do
        exe=$(readlink "$p/exe" 2>/dev/null) || continue
        case "$exe" in "$d"/*) ;; *) continue ;; esac
        state=$(awk '{print $3}' "$p/stat" 2>/dev/null)
        [ "$state" = Z ] || echo "${p#/proc/} $exe"
    done
}

# The job's processes left once they had 30 s to go after mpirun returned (they go at once on a
# quiet machine; a loaded one may take longer to schedule their exit).
settled_leftovers() {
    local left i
    for i in $(seq 60); do
        left=$(leftovers "$1")
        [ -z "$left" ] && return
        sleep 0.5
    done
    echo "$left"
}

for impl in openmpi mpich; do
    d="$root/target/mpi/$impl"
    mkdir -p "$d" "$d/logs"
    log="$d/build.log"
    if ! { "mpicc.$impl" "${cflags[@]}" -shared -fPIC src/mpi/pool_mpi.c -L"$lib" -lpool \
               -Wl,-soname,libpool_mpi.so.0 -o "$d/libpool_mpi.so" &&
           ln -sf libpool_mpi.so "$d/libpool_mpi.so.0" &&
           "mpicc.$impl" "${cflags[@]}" -shared -fPIC tests/mpi/mpitask.c -o "$d/libmpitask.so" &&
           "mpicc.$impl" "${cflags[@]}" -shared -fPIC tests/mpi/mpitask.c -o "$d/plugin.so" &&
           for v in "" OTHER_BUILD; do
               "mpicc.$impl" "${cflags[@]}" ${v:+-D$v} tests/mpi/mpi_test.c -o "$d/mpi_test${v:+_other}" \
                   -L"$d" -lmpitask -lpool_mpi -L"$lib" -lpool -Wl,-rpath,"$d" -Wl,-rpath,"$lib" -ldl || exit 1
           done; } >"$log" 2>&1; then
        bad "$impl: build" "$log"
        continue
    fi
    # The README's MPI example, as a newcomer copies it.
    awk '/^## Beyond one machine: MPI/{f=1} f&&/^```c$/{p=1;next} p&&/^```$/{exit} p' README.md >"$d/readme_mpi.c"
    "mpicc.$impl" "${cflags[@]}" "$d/readme_mpi.c" -o "$d/readme_mpi" -L"$d" -lpool_mpi -L"$lib" -lpool \
        -Wl,-rpath,"$d" -Wl,-rpath,"$lib" >>"$log" 2>&1 || { bad "$impl: README example does not build" "$log"; continue; }
    run="mpirun.$impl"
    if out=$(timeout 120 "$run" -np 4 "$d/readme_mpi" 2>&1) && [ "$out" = "998001, on 8 workers" ]; then
        ok "$impl: README example prints 998001, on 8 workers"
    else
        bad "$impl: README example: $out"
    fi
    # mode, expected ranks printing it, then the command
    check() {
        local name=$1 want=$2
        shift 2
        local out="$d/$name.log"
        rm -f "$d"/logs/*
        POOL_MPI_LOGS="$d/logs" POOL_MPI_PLUGIN="$d/plugin.so" timeout 180 "$@" >"$out" 2>&1
        local rc=$? n
        n=$(grep -c "$want" "$out")
        if [ $rc -eq 0 ] && [ "$n" -eq 4 ]; then ok "$impl: $name"; else bad "$impl: $name (rc $rc, $n of 4 ranks)" "$out"; fi
        local left
        left=$(settled_leftovers "$d")
        if [ -n "$left" ]; then bad "$impl: $name left processes: $left"; fi
    }
    check basic "ok (basic" "$run" -np 4 "$d/mpi_test" basic
    check refused "refused as expected" "$run" -np 2 "$d/mpi_test" refused : -np 2 "$d/mpi_test_other" refused
    check level "ok (level" "$run" -np 4 "$d/mpi_test" level
    check badarg "refused as expected" "$run" -np 4 "$d/mpi_test" badarg
    check diffroot "refused as expected" "$run" -np 4 "$d/mpi_test" diffroot
    check opts "ok (opts" "$run" -np 4 "$d/mpi_test" opts
    # A rank killed mid-map: the job ends, non-zero (within seconds: the figure is printed; the
    # 120 s timeout, exit 124, is a hang); nothing is left.
    out="$d/killrank.log"
    start=$(date +%s)
    timeout 120 "$run" -np 4 "$d/mpi_test" killrank >"$out" 2>&1
    rc=$?
    took=$(($(date +%s) - start))
    if [ $rc -ne 0 ] && [ $rc -ne 124 ]; then
        ok "$impl: killrank (job ended with $rc after ${took}s)"
    else
        bad "$impl: killrank (rc $rc after ${took}s)" "$out"
    fi
    left=$(settled_leftovers "$d")
    if [ -n "$left" ]; then bad "$impl: killrank left processes: $left"; fi
done
echo "mpi: $passed passed, $failed failed"
[ $failed -eq 0 ]
