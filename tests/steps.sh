# Progress lines, the tally and the temporary directory of the shell test scripts
# (tests/consumers/run.sh, tests/packages/run.sh), sourced. The script sets steps_name (the summary
# line's first word) and, before the first step, tmp (a directory for the steps' logs).
passed=0
failed=0
summary() {
    echo "$steps_name: $passed passed, $failed failed"
}

pass() {
    passed=$((passed + 1))
    echo "ok   $1"
}
fail() {
    failed=$((failed + 1))
    echo "FAIL $1"
    if [ -n "${2:-}" ] && [ -f "$2" ]; then
        tail -n 60 "$2" | sed 's/^/     | /'
    fi
}

# step NAME CMD...: runs CMD with its output in a log, shown only if it fails.
step() {
    local name=$1
    shift
    local log="$tmp/log.$((passed + failed))"
    if "$@" >"$log" 2>&1; then
        pass "$name"
        return 0
    fi
    fail "$name" "$log"
    return 1
}

# remove_tmp KEEP: removes $tmp, or says where it is when KEEP is 1 (the script's *_KEEP variable).
remove_tmp() {
    if [ "$1" = 1 ]; then
        echo "run.sh: kept $tmp"
    else
        rm -rf -- "$tmp"
    fi
}
