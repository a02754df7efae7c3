#!/usr/bin/env bash
# Builds libpool's Debian binary packages into target/packages/, from the project's CMake install.
#
# Usage:  make package                  (or: bash packaging/debian/build.sh, from any directory)
# then:   apt-get install ./target/packages/*.deb     (as root; apt-get purge 'libpool*' removes them)
#
# Packages, version <Cargo.toml version>-<revision>, the revision from packaging/debian/changelog:
#   libpool0          /usr/lib/<multiarch>/libpool.so.0 (stripped), soname libpool.so.0
#   libpool-dev       pool.h, pool.hpp, libpool.so, libpool.a, pool.pc, the CMake package Pool,
#                     the manual pages
#   libpool0-dbgsym   the library's debug info: /usr/lib/debug/.build-id/xx/yyyy.debug
# and where an MPI C compiler `mpicc` is found (the distribution's default MPI; POOL_PACKAGE_MPI=0
# leaves them out): libpool-mpi0 (+ -dbgsym) and libpool-mpi-dev (pool_mpi.h, pool-mpi.pc,
# PoolMpiTargets.cmake, the manual pages named *mpi*, which CMake installs only with libpool_mpi).
#
# Needs what the CMake build needs (cargo, cmake, cc) and dpkg-dev and binutils; runs as any user.
# Work files go to target/package-build/ (the CMake build there is kept between runs).
#
# How, the steps debhelper would take, with dpkg-dev's own tools:
#   1. cmake -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR=lib/<multiarch>, with
#      dpkg-buildflags' flags, and `cmake --install` into a staging directory (DESTDIR);
#   2. every staged file moves into exactly one package's tree: the packages ship what
#      `cmake --install` installs, nothing more, nothing less;
#   3. shared libraries: debug info detached into -dbgsym (objcopy), then stripped; static
#      libraries: debug info stripped; manual pages gzipped; copyright and changelog added;
#   4. shlibs, symbols (dpkg-gensymbols) and the ldconfig trigger for the libraries, Depends from
#      dpkg-shlibdeps, DEBIAN/control from packaging/debian/control (dpkg-gencontrol);
#   5. dpkg-deb --build.
set -euo pipefail
umask 022

here=$(cd -- "$(dirname -- "${BASH_SOURCE[0]}")" && pwd)
root=$(cd -- "$here/../.." && pwd)
out="$root/target/packages"
work="$root/target/package-build"

say() { echo "package: $*"; }
die() {
    echo "package: error: $*" >&2
    exit 1
}

for tool in cmake dpkg-architecture dpkg-buildflags dpkg-shlibdeps dpkg-gensymbols dpkg-gencontrol \
    dpkg-parsechangelog dpkg-deb objcopy strip readelf gzip md5sum; do
    command -v "$tool" >/dev/null 2>&1 || die "$tool not found (apt-get install cmake dpkg-dev binutils)"
done

# ---------------------------------------------------------------------------------------------
# Versions and names.

version=$(sed -n '/^\[package\]/,/^\[/s/^version *= *"\([^"]*\)".*/\1/p' "$root/Cargo.toml" | head -n 1)
upstream=${version//-/\~} # 1.0.0-rc.1 sorts before 1.0.0 in Cargo, 1.0.0~rc.1 does in Debian
major=${version%%.*}
deb_version=$(dpkg-parsechangelog -l "$here/changelog" -SVersion)
if [ "${deb_version%-*}" != "$upstream" ]; then
    die "packaging/debian/changelog is at $deb_version but Cargo.toml at $version: add an entry
       (dch -c packaging/debian/changelog -v $upstream-1 'New upstream release.')"
fi
multiarch=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
libdir="usr/lib/$multiarch"

mpicc=""
if [ "${POOL_PACKAGE_MPI:-1}" != 0 ]; then
    mpicc=$(command -v mpicc || true)
fi
if [ -n "$mpicc" ]; then
    say "libpool $deb_version for $multiarch, with libpool_mpi ($mpicc -> $(readlink -f "$mpicc"))"
else
    say "libpool $deb_version for $multiarch, without libpool_mpi (no mpicc)"
fi

# ---------------------------------------------------------------------------------------------
# 1. Build and install into the staging directory.

cd "$root" # dpkg-buildflags maps this directory out of the debug info (-ffile-prefix-map)
export DEB_BUILD_MAINT_OPTIONS=hardening=+bindnow # -z now for libpool_mpi, as rustc links libpool
# A checkout moved or copied elsewhere: CMake refuses a build directory made for another source.
cache="$work/cmake/CMakeCache.txt"
if [ -f "$cache" ] && ! grep -qxF "CMAKE_HOME_DIRECTORY:INTERNAL=$root" "$cache"; then
    say "target/package-build/cmake was made for another checkout: building afresh"
    rm -rf "$work/cmake"
fi
# Passed as -D, not in the environment, which CMake reads only when it creates its cache.
cmake -S "$root" -B "$work/cmake" \
    -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_INSTALL_LIBDIR="lib/$multiarch" -DCMAKE_BUILD_TYPE=None \
    -DCMAKE_C_FLAGS="$(dpkg-buildflags --get CFLAGS) $(dpkg-buildflags --get CPPFLAGS)" \
    -DCMAKE_SHARED_LINKER_FLAGS="$(dpkg-buildflags --get LDFLAGS)" \
    -DPOOL_CARGO_FLAGS=--locked \
    -DPOOL_WITH_MPI="$([ -n "$mpicc" ] && echo ON || echo OFF)" ${mpicc:+-DMPI_C_COMPILER="$mpicc"}
cmake --build "$work/cmake"
rm -rf "$work/stage" "$work/debian" "$out"
DESTDIR="$work/stage" cmake --install "$work/cmake"
# The pkg-config files say prefix=/usr, as Debian's do: relative to ${pcfiledir} (how CMake
# installs them, relocatable) they print -I/usr/lib/<multiarch>/pkgconfig/../../../include and
# -L.../../../lib/<multiarch>, which pkg-config does not recognize as the system directories it
# leaves out, and an explicit -L of the system directory overrides a user's later -L.
for pc in "$work/stage/$libdir"/pkgconfig/*.pc; do
    sed -i 's#^prefix=${pcfiledir}/.*$#prefix=/usr#' "$pc"
    grep -qx 'prefix=/usr' "$pc" || die "$pc: no prefix=\${pcfiledir}/... line to make /usr"
done

# ---------------------------------------------------------------------------------------------
# 2. Split the staged tree into the packages' trees, $work/debian/<package>/. dpkg-gencontrol,
# dpkg-shlibdeps and dpkg-gensymbols work in a directory with debian/control and debian/changelog.

mkdir -p "$work/debian"
cp "$here/control" "$here/changelog" "$work/debian/"
cd "$work"

take() { # take PACKAGE GLOB...: moves the staged files that match into PACKAGE's tree
    local pkg=$1 path
    shift
    (
        cd stage
        shopt -s nullglob
        # shellcheck disable=SC2068 # the arguments are globs, expanded here
        for path in $@; do
            [ -e "$path" ] || [ -L "$path" ] || continue
            mkdir -p "../debian/$pkg/$(dirname "$path")"
            mv "$path" "../debian/$pkg/$path"
        done
    )
}
take libpool0 "$libdir/libpool.so.*"
take libpool-mpi0 "$libdir/libpool_mpi.so.*"
take libpool-mpi-dev usr/include/pool_mpi.h "$libdir/libpool_mpi.*" "$libdir/pkgconfig/pool-mpi.pc" \
    "$libdir/cmake/Pool/PoolMpiTargets.cmake" "usr/share/man/*/*mpi*"
# The rest: headers, libpool.so, libpool.a, pool.pc, the CMake package, the manual pages.
take libpool-dev $(cd stage && find . ! -type d -printf '%P\n')

packages=""
for pkg in libpool0 libpool-dev libpool-mpi0 libpool-mpi-dev; do
    [ -d "debian/$pkg" ] && packages="$packages $pkg"
done

# ---------------------------------------------------------------------------------------------
# 3. Debug info, manual pages, documentation, permissions.

is_shlib() { [ -f "$1" ] && [ ! -L "$1" ] && readelf -h "$1" 2>/dev/null | grep -q 'Type: *DYN'; }

declare -A build_ids
# As dh_strip: the debug info goes to PACKAGE-dbgsym as /usr/lib/debug/.build-id/xx/yyyy.debug,
# where gdb looks for it by the library's build id; the library keeps a .gnu_debuglink to it.
strip_shlib() { # strip_shlib PACKAGE FILE
    local pkg=$1 file=$2 id debug
    id=$(readelf -n "$file" | sed -n 's/^ *Build ID: *\([0-9a-f]*\)$/\1/p')
    [ -n "$id" ] || die "$file has no build id (link with --build-id)"
    debug="debian/$pkg-dbgsym/usr/lib/debug/.build-id/${id:0:2}/${id:2}.debug"
    mkdir -p "$(dirname "$debug")"
    objcopy --only-keep-debug --compress-debug-sections "$file" "$debug"
    strip --remove-section=.comment --remove-section=.note --strip-unneeded "$file"
    objcopy --add-gnu-debuglink="$debug" "$file"
    build_ids[$pkg]="${build_ids[$pkg]:+${build_ids[$pkg]} }$id"
}
# As dh_strip, and also without .llvmbc/.llvmcmd: the LLVM bitcode rustc embeds for its own
# cross-crate LTO, which no C linker reads (12 of the 15 MB that --strip-debug leaves).
strip_static() {
    strip --strip-debug --remove-section=.comment --remove-section=.note \
        --remove-section=.llvmbc --remove-section=.llvmcmd --enable-deterministic-archives "$1"
}
# As dh_compress: manual pages gzipped, links to them pointed at the gzipped names.
compress_man() {
    local dir=$1/usr/share/man link
    [ -d "$dir" ] || return 0
    find "$dir" -type f ! -name '*.gz' -exec gzip -9nf {} +
    find "$dir" -type l ! -name '*.gz' | while read -r link; do
        ln -s "$(readlink "$link").gz" "$link.gz"
        rm "$link"
    done
}

for pkg in $packages; do
    for f in $(find "debian/$pkg" -type f | sort); do
        if is_shlib "$f"; then
            strip_shlib "$pkg" "$f"
        elif [[ "$f" == *.a ]]; then
            strip_static "$f"
        fi
    done
    compress_man "debian/$pkg"
    doc="debian/$pkg/usr/share/doc/$pkg"
    install -D -m 644 "$here/copyright" "$doc/copyright"
    gzip -9nc "$here/changelog" >"$doc/changelog.Debian.gz"
    # lintian-overrides (every package) and <package>.lintian-overrides say why each is there.
    overrides="debian/$pkg/usr/share/lintian/overrides/$pkg"
    mkdir -p "$(dirname "$overrides")"
    cat "$here/lintian-overrides" "$here/$pkg.lintian-overrides" 2>/dev/null >"$overrides" || true
done
dbgsym_packages=""
for pkg in "${!build_ids[@]}"; do
    dbgsym_packages="$dbgsym_packages $pkg-dbgsym"
    mkdir -p "debian/$pkg-dbgsym/usr/share/doc" "debian/$pkg-dbgsym/DEBIAN"
    ln -s "$pkg" "debian/$pkg-dbgsym/usr/share/doc/$pkg-dbgsym" # as Debian's dbgsym packages
done
# Nothing shipped is executable: shared libraries are 644 in Debian.
for pkg in $packages $dbgsym_packages; do
    find "debian/$pkg" -type d -exec chmod 755 {} +
    find "debian/$pkg" -type f -exec chmod 644 {} +
done

# ---------------------------------------------------------------------------------------------
# 4. Control files.

for pkg in $packages; do
    mkdir -p "debian/$pkg/DEBIAN"
    : >"debian/$pkg.substvars"
done

# As dh_makeshlibs: for each library package, a shlibs file (a program linked against the
# library depends on this package at this upstream version or later), a symbols file and the
# ldconfig trigger. The symbols file starts from packaging/debian/PACKAGE.symbols, which says in
# which version each symbol came (a program depends on the newest of those it uses): a symbol
# gone from the library is an ABI break, which needs a new soname, and fails the build; new ones
# are listed (dpkg-gensymbols' diff) to be added there with the version that brings them.
make_shlibs() { # make_shlibs PACKAGE LIBRARY-NAME
    local pkg=$1
    echo "$2 $major $pkg (>= $upstream)" >"debian/$pkg/DEBIAN/shlibs"
    cp "$here/$pkg.symbols" "debian/$pkg.symbols"
    dpkg-gensymbols -c1 -p"$pkg" -P"debian/$pkg" -v"$upstream" -O"debian/$pkg/DEBIAN/symbols" ||
        die "$pkg: symbols gone from $2.so.$major since packaging/debian/$pkg.symbols (see the diff above)"
    echo "activate-noawait ldconfig" >"debian/$pkg/DEBIAN/triggers"
    chmod 644 "debian/$pkg/DEBIAN/"*
}
make_shlibs libpool0 libpool
[ ! -d debian/libpool-mpi0 ] || make_shlibs libpool-mpi0 libpool_mpi

# Depends of the library packages from the libraries they link (libpool_mpi finds libpool.so.0
# and its shlibs in libpool0's tree).
for pkg in $packages; do
    mapfile -t libs < <(find "debian/$pkg" -type f | while read -r f; do is_shlib "$f" && echo "$f"; done)
    [ "${#libs[@]}" -eq 0 ] || dpkg-shlibdeps -T"debian/$pkg.substvars" -l"debian/libpool0/$libdir" "${libs[@]}"
done
if [ -d debian/libpool-mpi-dev ]; then
    # pool_mpi.h includes mpi.h: depend on the package of the mpi.h that mpicc compiles with.
    mpi_h=$(echo '#include <mpi.h>' | "$mpicc" -M -x c - | tr ' \\' '\n\n' | grep '/mpi\.h$' | head -n 1)
    mpi_dev=$(dpkg -S "$(readlink -f "$mpi_h")" | cut -d: -f1) || die "no package has $mpi_h"
    echo "mpi:Dev=$mpi_dev" >>debian/libpool-mpi-dev.substvars
fi

for pkg in $packages; do
    dpkg-gencontrol -p"$pkg" -P"debian/$pkg" -T"debian/$pkg.substvars" -fdebian/files
done
for pkg in "${!build_ids[@]}"; do # the fields Debian's dbgsym packages have (as dh_strip sets)
    dpkg-gencontrol -p"$pkg" -P"debian/$pkg-dbgsym" -T"debian/$pkg.substvars" -fdebian/files \
        -DPackage="$pkg-dbgsym" -DSection=debug -DPriority=optional \
        -DDepends="$pkg (= $deb_version)" -DDescription="debug symbols for $pkg" \
        -DAuto-Built-Package=debug-symbols -DBuild-Ids="${build_ids[$pkg]}"
done

# ---------------------------------------------------------------------------------------------
# 5. Build the .debs.

mkdir -p "$out"
for pkg in $packages $dbgsym_packages; do
    (cd "debian/$pkg" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z |
        xargs -0r md5sum) >"debian/$pkg/DEBIAN/md5sums"
    chmod 644 "debian/$pkg/DEBIAN/md5sums"
    dpkg-deb --root-owner-group --build "debian/$pkg" "$out" >/dev/null
done
say "built in target/packages:"
(cd "$out" && ls -l --block-size=K -- *.deb | awk '{ printf "  %8s  %s\n", $5, $9 }')
