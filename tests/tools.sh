# Shell helpers for the test scripts that need tools beyond cargo (sourced, not run):
# tests/consumers/run.sh and tests/conan/run.sh.

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo "$@"; else "$@"; fi
}

# apt_get ARGS...: apt-get as root, waiting up to 10 minutes for dpkg's lock instead of failing at
# once (on a fresh machine apt-daily or unattended-upgrades often holds it; so may another test).
apt_get() {
    as_root env DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 "$@"
}

apt_updated=0
apt_install() {
    command -v apt-get >/dev/null 2>&1 || return 1
    if [ "$apt_updated" -eq 0 ]; then
        apt_get update -qq >/dev/null 2>&1 || true
        apt_updated=1
    fi
    apt_get install -y -qq "$@" >/dev/null 2>&1
}

# ensure_tools TOOL...: installs cmake (pip, else apt) and pkg-config (apt) when asked for and
# missing, then fails, naming them, if any TOOL is still not on PATH.
ensure_tools() {
    if [[ " $* " == *" cmake "* ]] && ! command -v cmake >/dev/null 2>&1; then
        echo "run.sh: cmake not found; installing it (pip install cmake)"
        python3 -m pip install --quiet --disable-pip-version-check cmake >/dev/null 2>&1 || true
        hash -r
        if ! command -v cmake >/dev/null 2>&1; then
            # pip may have put it where PATH does not look (--user, pyenv without shims).
            local bin
            bin=$(python3 -c 'import cmake; print(cmake.CMAKE_BIN_DIR)' 2>/dev/null) && PATH="$bin:$PATH"
            bin=$(python3 -m site --user-base 2>/dev/null)/bin && [ -x "$bin/cmake" ] && PATH="$bin:$PATH"
            hash -r
        fi
        if ! command -v cmake >/dev/null 2>&1; then
            echo "run.sh: pip did not provide cmake; trying apt-get install cmake"
            apt_install cmake || true
        fi
    fi
    if [[ " $* " == *" pkg-config "* ]] && ! command -v pkg-config >/dev/null 2>&1; then
        echo "run.sh: pkg-config not found; installing it (apt-get install pkgconf)"
        apt_install pkgconf || apt_install pkg-config || true
    fi
    local t missing=""
    for t in "$@"; do
        command -v "$t" >/dev/null 2>&1 || missing="$missing $t"
    done
    if [ -n "$missing" ]; then
        echo "run.sh: missing tools:$missing"
        return 1
    fi
}
