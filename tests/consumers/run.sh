#!/usr/bin/env bash
# Tests libpool the way C and C++ users get it: installs it with CMake into a temporary prefix,
# moves that prefix elsewhere (the install must be relocatable), then builds and runs, against
# the moved copy only:
#   - tests/consumers/cmake      C++ (pool.hpp), find_package(Pool 0.1): Pool::pool and Pool::pool_static
#   - tests/consumers/pkgconfig  C, plain Makefile: pkg-config --libs pool, and --static
#   - c_examples                 with its CMakeLists.txt and with its Makefile, shared and static
#   - tests/consumers/compile_fail  pool.hpp refuses, at compile time, what cannot cross a process
# Each program runs the seed scenarios and must print tests/consumers/expected_seed.txt.
#
# Usage: bash tests/consumers/run.sh   (from any directory; POOL_CONSUMERS_KEEP=1 keeps the
# temporary directory). Installs cmake (pip, else apt) and pkg-config (apt) when missing.
# Prints `consumers: N passed, M failed` last and exits nonzero if anything failed.
set -uo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
expected="$here/expected_seed.txt"

steps_name=consumers
# shellcheck source=tests/steps.sh
. "$root/tests/steps.sh"

# ---------------------------------------------------------------------------------------------
# Tools.

# shellcheck source=tests/tools.sh
. "$root/tests/tools.sh"
check_tools() {
    if ! ensure_tools cmake pkg-config cargo cc c++ make readelf; then
        failed=$((failed + 1))
        summary
        exit 1
    fi
    echo "run.sh: $(cmake --version | head -n 1), pkg-config $(pkg-config --version), $(cargo --version)"
}

tmp=$(mktemp -d "${TMPDIR:-/tmp}/pool-consumers.XXXXXX")
trap 'remove_tmp "${POOL_CONSUMERS_KEEP:-0}"' EXIT
trap 'exit 130' INT TERM

check_tools

# Builds must not see a libpool from elsewhere.
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH CARGO_TARGET_DIR

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
numeric=${version%%-*}
major=${version%%.*}

# ---------------------------------------------------------------------------------------------
# Install into a staging prefix, the documented way.

staged="$tmp/stage/prefix"
install_libpool() {  # install_libpool SOURCE BUILD PREFIX
    cmake -S "$1" -B "$2" && cmake --build "$2" && cmake --install "$2" --prefix "$3"
}
cmake_consumer() {  # cmake_consumer SOURCE BUILD PREFIX: configure and build against PREFIX
    cmake -S "$1" -B "$2" -DCMAKE_PREFIX_PATH="$3" && cmake --build "$2"
}
echo "run.sh: building and installing with CMake (a release build: a minute, more on a loaded machine)"
if ! step "install: cmake -S . -B build && cmake --build build && cmake --install build --prefix P" \
    install_libpool "$root" "$tmp/build" "$staged"; then
    summary
    exit 1
fi

check_tree() {
    local p=$1 f
    for f in include/pool.h include/pool.hpp "lib/libpool.so.$numeric" lib/libpool.a \
        lib/cmake/Pool/PoolConfig.cmake lib/cmake/Pool/PoolConfigVersion.cmake \
        lib/cmake/Pool/PoolTargets.cmake lib/pkgconfig/pool.pc; do
        if [ ! -f "$p/$f" ] || [ -L "$p/$f" ]; then
            echo "missing or not a file: $f"
            return 1
        fi
    done
    [ "$(readlink "$p/lib/libpool.so.$major")" = "libpool.so.$numeric" ] || { echo "bad libpool.so.$major link"; return 1; }
    [ "$(readlink "$p/lib/libpool.so")" = "libpool.so.$major" ] || { echo "bad libpool.so link"; return 1; }
    if ! cmp -s "$p/include/pool.h" "$root/include/pool.h" || ! cmp -s "$p/include/pool.hpp" "$root/include/pool.hpp"; then
        echo "installed headers differ from include/"
        return 1
    fi
}
step "install tree: headers, libpool.so.$numeric + soname links, libpool.a, cmake and pkg-config files" \
    check_tree "$staged"

check_soname() {
    local soname
    soname=$(readelf -d "$1/lib/libpool.so.$numeric" | sed -n 's/.*(SONAME).*\[\(.*\)\].*/\1/p')
    echo "soname: $soname"
    [ "$soname" = "libpool.so.$major" ]
}
step "soname of libpool.so.$numeric is libpool.so.$major (readelf -d)" check_soname "$staged"

check_versions() {
    local p=$1 pc cm
    pc=$(sed -n 's/^Version: *//p' "$p/lib/pkgconfig/pool.pc")
    cm=$(sed -n 's/^set(PACKAGE_VERSION "\(.*\)")/\1/p' "$p/lib/cmake/Pool/PoolConfigVersion.cmake")
    echo "Cargo.toml $version, pool.pc $pc, PoolConfigVersion.cmake $cm"
    [ "$pc" = "$version" ] && [ "$cm" = "$numeric" ]
}
step "version $version from Cargo.toml in pool.pc and PoolConfigVersion.cmake" check_versions "$staged"

check_static_libs() {
    local p=$1 rustc_libs pc_libs
    rustc_libs=$(cat "$tmp/build/generated/native-static-libs.txt")
    pc_libs=$(sed -n 's/^Libs.private: *//p' "$p/lib/pkgconfig/pool.pc")
    echo "rustc: $rustc_libs; pool.pc: $pc_libs"
    [ -n "$rustc_libs" ] && [ "$pc_libs" = "$rustc_libs" ] &&
        grep -q "INTERFACE_LINK_LIBRARIES \"$(echo "$rustc_libs" | sed 's/-l//g; s/ /;/g')\"" "$p/lib/cmake/Pool/PoolTargets.cmake"
}
step "static link libraries (rustc --print native-static-libs) in Libs.private and Pool::pool_static" \
    check_static_libs "$staged"

# ---------------------------------------------------------------------------------------------
# Relocate: every consumer below sees only the moved copy; the staging path no longer exists.

prefix="$tmp/moved/opt/libpool"
mkdir -p "$(dirname "$prefix")"
mv "$staged" "$prefix"
rmdir "$tmp/stage"

check_relocated() {
    local hits
    hits=$(grep -rl -- "$staged" "$prefix" || true)
    [ -z "$hits" ] || { echo "files naming the old prefix: $hits"; return 1; }
    check_tree "$prefix"
}
step "relocated prefix: complete, no file names the old prefix" check_relocated

run_seed() {  # run_seed BINARY: runs it, compares its output with the seed's
    local out="$1.out"
    "$1" >"$out" || { echo "$1 exited $?"; return 1; }
    diff -u "$expected" "$out"
}
run_process_queue() {  # the notebook's three processes, their results back through a queue
    local out="$1.out"
    "$1" >"$out" || { cat "$out"; echo "$1 exited $?"; return 1; }
    [ "$(grep -c '^Invoked run()$' "$out")" -eq 3 ] && grep -q '^sum of squares from the processes: 10001$' "$out" ||
        { cat "$out"; return 1; }
}
needs_libpool() {  # needs_libpool BINARY yes|no
    local needed
    needed=$(readelf -d "$1" | grep NEEDED)
    echo "$needed"
    if [ "$2" = yes ]; then
        grep -q "\[libpool.so.$major\]" <<<"$needed"
    else
        ! grep -q libpool <<<"$needed"
    fi
}

# ---------------------------------------------------------------------------------------------
# C++ through find_package.

cc_build="$tmp/consumer-cmake"
if step "cmake consumer (C++, pool.hpp): find_package(Pool 0.1), -Wall -Wextra -Werror" \
    cmake_consumer "$here/cmake" "$cc_build" "$prefix"; then
    step "cmake consumer: app (Pool::pool) runs the seed scenarios" run_seed "$cc_build/app"
    step "cmake consumer: app links libpool.so.$major" needs_libpool "$cc_build/app" yes
    step "cmake consumer: app_static (Pool::pool_static) runs the seed scenarios" run_seed "$cc_build/app_static"
    step "cmake consumer: app_static does not need libpool.so" needs_libpool "$cc_build/app_static" no
fi

find_version() {  # find_version REQUEST yes|no: does find_package(Pool REQUEST) accept the install?
    local dir="$tmp/find-$1"
    mkdir -p "$dir"
    cat >"$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(find_version LANGUAGES C)
find_package(Pool $1 QUIET)
message(STATUS "find_package(Pool $1): Pool_FOUND=\${Pool_FOUND} Pool_VERSION=\${Pool_VERSION}")
if(Pool_FOUND)
  set(found yes)
else()
  set(found no)
endif()
if(NOT found STREQUAL "$2")
  message(FATAL_ERROR "find_package(Pool $1) found: \${found}, expected: $2")
endif()
EOF
    cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$prefix"
}
minor=$(echo "$numeric" | cut -d. -f2)
step "find_package(Pool $major.$minor) accepts $version" find_version "$major.$minor" yes
step "find_package(Pool $major.$((minor + 1))) refuses $version" find_version "$major.$((minor + 1))" no
step "find_package(Pool $((major + 1))) refuses $version (SameMajorVersion)" find_version "$((major + 1))" no

# Found through a symbolic link into the prefix, as find_package finds /lib/<multiarch>/cmake/Pool
# through /lib -> usr/lib on merged-/usr systems (when PATH has /bin before /usr/bin): the
# paths must still lead to the prefix's include/ and lib/, not to the link's ../include.
find_through_link() {
    local dir="$tmp/find-through-link" comps=""
    [ -f "$prefix/lib/cmake/Pool/PoolMpiTargets.cmake" ] && comps="COMPONENTS mpi"
    mkdir -p "$dir/merged"
    ln -sfn "$prefix/lib" "$dir/merged/lib"
    cat >"$dir/CMakeLists.txt" <<EOF
cmake_minimum_required(VERSION 3.16)
project(find_through_link LANGUAGES C)
find_package(Pool REQUIRED $comps)
foreach(t Pool::pool Pool::pool_static Pool::pool_mpi)
  if(TARGET \${t})
    get_target_property(inc \${t} INTERFACE_INCLUDE_DIRECTORIES)
    get_target_property(lib \${t} IMPORTED_LOCATION)
    message(STATUS "\${t}: \${lib}, \${inc}")
    if(NOT EXISTS "\${inc}/pool.h" OR NOT EXISTS "\${lib}")
      message(FATAL_ERROR "\${t}: \${inc}/pool.h or \${lib} does not exist")
    endif()
  endif()
endforeach()
if(NOT EXISTS "\${Pool_INCLUDE_DIRS}/pool.h")
  message(FATAL_ERROR "Pool_INCLUDE_DIRS=\${Pool_INCLUDE_DIRS} has no pool.h")
endif()
EOF
    cmake -S "$dir" -B "$dir/build" -DCMAKE_PREFIX_PATH="$dir/merged"
}
step "find_package(Pool) through a symbolic link to the prefix's lib/ (as /lib -> usr/lib)" find_through_link

# ---------------------------------------------------------------------------------------------
# C through pkg-config.

pc_build="$tmp/consumer-pkgconfig"
check_pkgconfig() {
    local libs cflags
    cflags=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --cflags pool) || return 1
    libs=$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --static --libs pool) || return 1
    echo "cflags: $cflags"
    echo "static libs: $libs"
    [[ "$cflags" == "-I$prefix/"* ]] && [ -f "$(PKG_CONFIG_PATH="$prefix/lib/pkgconfig" pkg-config --variable=includedir pool)/pool.h" ] && grep -q -- "-lpool .*-lpthread" <<<"$libs"
}
step "pkg-config --cflags/--static --libs pool point into the moved prefix" check_pkgconfig
if step "pkg-config consumer (C, Makefile): builds shared and --static, -Wall -Wextra -Werror" \
    make -C "$here/pkgconfig" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" BUILD="$pc_build"; then
    step "pkg-config consumer: app (libpool.so) runs the seed scenarios" run_seed "$pc_build/app"
    step "pkg-config consumer: app links libpool.so.$major" needs_libpool "$pc_build/app" yes
    step "pkg-config consumer: app_static (libpool.a) runs the seed scenarios" run_seed "$pc_build/app_static"
    step "pkg-config consumer: app_static does not need libpool.so" needs_libpool "$pc_build/app_static" no
fi

# ---------------------------------------------------------------------------------------------
# c_examples, both ways.

ex_cmake="$tmp/examples-cmake"
if step "c_examples with CMake: find_package(Pool)" \
    cmake_consumer "$root/c_examples" "$ex_cmake" "$prefix"; then
    step "c_examples with CMake: seed (Pool::pool)" run_seed "$ex_cmake/seed"
    step "c_examples with CMake: seed_static (Pool::pool_static)" run_seed "$ex_cmake/seed_static"
    step "c_examples with CMake: process_queue (results through a queue)" run_process_queue "$ex_cmake/process_queue"
fi
ex_make="$tmp/examples-make"
if step "c_examples with make and pkg-config" \
    make -C "$root/c_examples" PKG_CONFIG_PATH="$prefix/lib/pkgconfig" BUILD="$ex_make"; then
    step "c_examples with make: seed (libpool.so)" run_seed "$ex_make/seed"
    step "c_examples with make: seed_static (libpool.a)" run_seed "$ex_make/seed_static"
    step "c_examples with make: process_queue_static (libpool.a)" run_process_queue "$ex_make/process_queue_static"
    step "c_examples with make: seed_static does not need libpool.so" needs_libpool "$ex_make/seed_static" no
fi

# ---------------------------------------------------------------------------------------------
# libpool_mpi, when an MPI is installed (CMake's POOL_WITH_MPI=AUTO built it then).

run_mpi_primes() {  # run_mpi_primes BINARY: 4 ranks; block 123 crashes alone, the job goes on
    local out="$1.out"
    OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1 \
        timeout 300 mpirun -np 4 "$1" >"$out" 2>&1 || { cat "$out"; echo "$1 exited $?"; return 1; }
    grep -q "^8 workers on 4 ranks$" "$out" && grep -q "1 block(s) failed" "$out" &&
        grep -q "item 123: worker [0-9]* killed by signal 11" "$out" || { cat "$out"; return 1; }
}
mpi_installed() {  # the install tree has libpool_mpi; libpool itself never links MPI
    local p=$1 f
    for f in include/pool_mpi.h "lib/libpool_mpi.so.$numeric" lib/libpool_mpi.a \
        lib/cmake/Pool/PoolMpiTargets.cmake lib/pkgconfig/pool-mpi.pc; do
        [ -f "$p/$f" ] || { echo "missing: $f"; return 1; }
    done
    readelf -d "$p/lib/libpool_mpi.so.$numeric" | grep -q "\[libpool.so.$major\]" || { echo "libpool_mpi does not need libpool"; return 1; }
    ! readelf -d "$p/lib/libpool.so.$numeric" | grep -qi "mpi" || { echo "libpool.so links MPI"; return 1; }
}
if command -v mpicc >/dev/null 2>&1 && command -v mpirun >/dev/null 2>&1; then
    step "libpool_mpi installed (pool_mpi.h, libpool_mpi.so/.a, Pool::pool_mpi, pool-mpi.pc); libpool.so does not link MPI" \
        mpi_installed "$prefix"
    step "c_examples with CMake: mpi_primes (Pool::pool_mpi) under mpirun -np 4" run_mpi_primes "$ex_cmake/mpi_primes"
    step "c_examples with make: mpi_primes (pkg-config pool-mpi) under mpirun -np 4" run_mpi_primes "$ex_make/mpi_primes"
else
    echo "skip libpool_mpi consumers: no mpicc/mpirun (tests/mpi/run.sh installs them)"
fi

# On a machine without MPI, configuring says so in one line (FindMPI's pkg-config fallback
# printed "Package 'mpi-c' not found" too). Such a machine is stood for by hiding the system's
# programs (mpicc among them) and pkg-config's modules.
configure_without_mpi() {
    local out
    out=$(PKG_CONFIG_LIBDIR=/nonexistent cmake -S "$root" -B "$tmp/no-mpi" -DCMAKE_MAKE_PROGRAM="$(command -v make)" \
        -DCMAKE_C_COMPILER="$(command -v cc)" -DCARGO_EXECUTABLE="$(command -v cargo)" -DPKG_CONFIG_EXECUTABLE="$(command -v pkg-config)" \
        -DCMAKE_IGNORE_PATH="/usr/bin;/bin;/usr/local/bin;/usr/sbin" 2>&1) || { echo "$out"; return 1; }
    echo "$out"
    grep -q "libpool_mpi: not built" <<<"$out" && ! grep -qi "package 'mpi\|mpi.*not found" <<<"$out"
}
step "cmake without MPI: one line says libpool_mpi is not built (no pkg-config noise)" configure_without_mpi

# ---------------------------------------------------------------------------------------------
# pool.hpp refuses at compile time what cannot cross a process boundary.

compile_fails() {  # compile_fails FILE: must not compile, with the message on its `// expect:` line
    local want out
    want=$(sed -n '1s#^// expect: ##p' "$1")
    [ -n "$want" ] || { echo "no '// expect:' line in $1"; return 1; }
    if out=$(c++ -std=c++17 -fsyntax-only -I"$prefix/include" "$1" 2>&1); then
        echo "$1 compiled"
        return 1
    fi
    grep -qF -- "$want" <<<"$out" || { echo "$out" | head -n 20; echo "expected: $want"; return 1; }
}
for f in "$here"/compile_fail/*.cpp; do
    step "pool.hpp refuses $(basename "$f" .cpp)" compile_fails "$f"
done

summary
[ "$failed" -eq 0 ]
