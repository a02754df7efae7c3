#!/usr/bin/env bash
# Tests the Conan 2 recipe (packaging/conan): `conan create` with shared=True and with
# shared=False, each building libpool from this checkout and then its test_package (a C++
# program through find_package(Pool) and a C program through pkg-config, run and checked).
#
# Conan comes from pip into a venv (target/conan-venv) and keeps its cache in a private
# CONAN_HOME (target/conan-home), so nothing outside target/ changes; its default remote is
# disabled: the only network use is cargo's (crates.io) and pip's.
# Usage: bash tests/conan/run.sh (from any directory). Installs cmake (pip) and pkg-config
# (apt) when missing. Prints `conan: N passed, M failed` last and exits nonzero on failure.
set -uo pipefail

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
venv="$root/target/conan-venv"
export CONAN_HOME="$root/target/conan-home"
logs="$root/target/conan-logs"

passed=0
failed=0
summary() {
    echo "conan: $passed passed, $failed failed"
}
give_up() {
    echo "run.sh: $1"
    failed=$((failed + 1))
    summary
    exit 1
}

# step NAME LOG CMD...: runs CMD with its output in LOG, shown only if it fails.
step() {
    local name=$1 log=$2
    shift 2
    local start=$SECONDS
    if "$@" >"$log" 2>&1; then
        passed=$((passed + 1))
        echo "ok   $name ($((SECONDS - start)) s)"
        return 0
    fi
    failed=$((failed + 1))
    echo "FAIL $name ($((SECONDS - start)) s; log: $log)"
    tail -n 60 "$log" | sed 's/^/     | /'
    return 1
}

# ---------------------------------------------------------------------------------------------
# Tools: cmake and pkg-config as tests/consumers/run.sh gets them, Conan into the venv.

# shellcheck source=tests/tools.sh
. "$root/tests/tools.sh"
ensure_tools cmake pkg-config cargo cc c++ readelf || give_up "missing tools"

if [ ! -x "$venv/bin/conan" ]; then
    echo "run.sh: installing Conan 2 into $venv (python3 -m venv; pip install 'conan>=2,<3')"
    # Debian's python3 makes venvs only with python3-venv installed.
    python3 -m venv "$venv" >/dev/null 2>&1 || { apt_install python3-venv && python3 -m venv "$venv"; } ||
        give_up "python3 -m venv failed (apt-get install python3-venv?)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check 'conan>=2,<3' ||
        give_up "pip could not install Conan"
fi
conan="$venv/bin/conan"
echo "run.sh: $("$conan" --version), CONAN_HOME=$CONAN_HOME"

mkdir -p "$logs"
if [ ! -f "$CONAN_HOME/profiles/default" ]; then
    "$conan" profile detect >"$logs/profile-detect.log" 2>&1 || give_up "conan profile detect failed: $(cat "$logs/profile-detect.log")"
fi
# Nothing from ConanCenter: the recipe has no requirements and must build offline.
"$conan" remote disable '*' >/dev/null 2>&1 || true
# Earlier runs' revisions, packages and build folders go: the cache holds only this run's.
"$conan" remove 'libpool/*' --confirm >/dev/null 2>&1 || true

# Builds must not see a libpool or a cargo target directory from elsewhere.
unset PKG_CONFIG_PATH CMAKE_PREFIX_PATH LD_LIBRARY_PATH CARGO_TARGET_DIR

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
numeric=${version%%-*}
major=${version%%.*}

# check_package LOG True|False: the package `conan create` logged holds the checkout's headers
# and only the library kind asked for (the .so with its soname chain, or the .a).
check_package() {
    local log=$1 shared=$2 p f
    grep -q "^libpool/$version: Package '.*' built" "$log" || { echo "no libpool/$version (Cargo.toml) built"; return 1; }
    p=$(sed -n 's/^Package folder //p' "$log" | tail -n 1)
    echo "package folder: $p"
    find "$p" -printf '%y %P %l\n' | sort
    for f in pool.h pool.hpp; do
        cmp "$p/include/$f" "$root/include/$f" || return 1
    done
    cmp "$p/share/man/man3/pool_map.3" "$root/docs/man/man3/pool_map.3" || return 1
    if [ "$shared" = True ]; then
        [ -f "$p/lib/libpool.so.$numeric" ] && [ ! -e "$p/lib/libpool.a" ] || return 1
        [ "$(readlink "$p/lib/libpool.so.$major")" = "libpool.so.$numeric" ] || return 1
        [ "$(readlink "$p/lib/libpool.so")" = "libpool.so.$major" ] || return 1
        readelf -d "$p/lib/libpool.so.$numeric" | grep -q "(SONAME).*\[libpool.so.$major\]"
    else
        [ -f "$p/lib/libpool.a" ] && ! compgen -G "$p/lib/libpool.so*" >/dev/null
    fi
}

# ---------------------------------------------------------------------------------------------
# conan create, once per value of `shared`: it always rebuilds libpool (a release cargo build,
# a minute or two on a loaded machine), then builds and runs the test package.

for shared in True False; do
    log="$logs/create-shared-$shared.log"
    echo "run.sh: conan create packaging/conan -o \"&:shared=$shared\" (log: $log)"
    if step "conan create -o &:shared=$shared: libpool built, test_package built and run" "$log" \
        "$conan" create "$root/packaging/conan" -o "&:shared=$shared" \
        -c "tools.cmake.cmake_layout:test_folder=$root/target/conan-test-package"; then
        if [ "$shared" = True ]; then
            what="include/pool.h, pool.hpp, share/man, lib/libpool.so.$numeric + soname links, no libpool.a"
        else
            what="include/pool.h, pool.hpp, share/man, lib/libpool.a, no libpool.so"
        fi
        step "shared=$shared package of libpool/$version: $what" "$logs/package-shared-$shared.log" \
            check_package "$log" "$shared"
        # Its test_package printed what its programs did; its test() checked their linkage.
        if [ "$shared" = True ]; then linked="needs libpool.so"; else linked="libpool.a linked in"; fi
        for line in "test_cpp: libpool" "test_c: libpool" "test_cpp: $linked" "test_c: $linked"; do
            if grep -q "$line" "$log"; then
                passed=$((passed + 1))
                echo "ok   shared=$shared: $(grep -m1 -o "$line.*" "$log")"
            else
                failed=$((failed + 1))
                echo "FAIL shared=$shared: no '$line' in $log"
            fi
        done
    fi
done

summary
[ "$failed" -eq 0 ]
