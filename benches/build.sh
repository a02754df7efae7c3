# Sourced by benches/run.sh: builds a libpool (the working tree's, or a commit's beside it) and
# bench_pool against it. Needs ROOT, OUT, CC, CFLAGS from the caller.

# pool_features INCLUDE_DIR: the -D flags benches/pool/bench.h knows for what that pool.h has.
pool_features() {
    local name code
    while IFS='|' read -r name code; do
        printf '#include <pool.h>\nvoid probe(void);\nvoid probe(void) { %s }\n' "$code" >"$OUT/probe.c"
        if $CC -std=gnu11 -Werror -fsyntax-only -I"$1" "$OUT/probe.c" 2>/dev/null; then printf ' -D%s' "$name"; fi
    done <<'EOF'
HAVE_MAP_BLOCKS|(void)pool_map_blocks;
HAVE_CALL_OPTIONS|pool_call_options_t o; pool_call_options_init(&o); (void)pool_apply_async_ex;
HAVE_WAIT_ANY|(void)pool_async_wait_any;
HAVE_CALLBACK|pool_call_options_t o; pool_call_options_init(&o); o.callback = 0; (void)o;
BENCH_UNPREFIXED_ASYNC|(void)async_get; (void)async_free;
EOF
}

# build_bench_pool LIBDIR INCLUDE_DIR BIN [lenient]: bench_pool from benches/pool/*.c against that
# header, linked to run LIBDIR's libpool.so.0 whatever LD_LIBRARY_PATH says (DT_RPATH). A
# workload file that does not compile is an error, or with "lenient" (an older library) left out:
# bench_pool then reports its workloads as skipped. Sets LOADED to the libpool it runs.
build_bench_pool() {
    local lib=$1 inc=$2 bin=$3 lenient=${4:-} flags obj f name left=""
    flags=$(pool_features "$inc")
    obj=$bin.obj
    rm -rf "$obj" && mkdir -p "$obj"
    for f in "$ROOT"/benches/pool/*.c; do
        name=$(basename "$f" .c)
        if ! $CC $CFLAGS $flags -Werror=implicit-function-declaration -I"$inc" -I"$ROOT/benches" -c "$f" -o "$obj/$name.o" 2>"$obj/$name.log"; then
            if [ -z "$lenient" ] || [ "$name" = main ] || [ "$name" = util ]; then
                cat "$obj/$name.log" >&2
                echo "error: benches/pool/$name.c does not compile against $inc/pool.h" >&2
                exit 1
            fi
            left+=" $name.c"
            rm -f "$obj/$name.o"
        elif [ -s "$obj/$name.log" ]; then
            cat "$obj/$name.log" >&2 # warnings
        fi
    done
    $CC "$obj"/*.o -L"$lib" -lpool -Wl,--disable-new-dtags,-rpath,"$lib" -pthread -o "$bin"
    echo "   $bin against $lib:${flags:- (no optional features)}${left:+; left out (they do not compile against that header):$left}" >&2
    # Which libpool it runs, as the loader sees it at run time.
    LOADED=$({ LD_DEBUG=libs "$bin" 2>&1 >/dev/null || true; } | sed -n 's/.*calling init: \(.*libpool\.so[^ ]*\).*/\1/p')
    if [ "$(readlink -f "$LOADED")" != "$(readlink -f "$lib/libpool.so.0")" ]; then
        echo "error: $bin loads '$LOADED', not $lib/libpool.so.0" >&2
        exit 1
    fi
}

# build_base COMMIT: that commit's libpool, built once into target/base/<sha> (source from
# git archive, its own cargo target directory); sets BASE_SHA, BASE_LIB and BASE_INC.
build_base() {
    BASE_SHA=$(git -C "$ROOT" rev-parse --verify "$1^{commit}") || { echo "error: BASE=$1 is not a commit" >&2; exit 1; }
    local dir=$ROOT/target/base/$BASE_SHA
    BASE_LIB=$dir/target/release BASE_INC=$dir/src/include
    if [ -f "$dir/built" ]; then
        echo "== libpool of $1 ($BASE_SHA): built already in $dir" >&2
        return
    fi
    echo "== building the libpool of $1 ($BASE_SHA) in $dir (once per commit)" >&2
    rm -rf "$dir" && mkdir -p "$dir/src"
    git -C "$ROOT" archive "$BASE_SHA" | tar -x -C "$dir/src"
    (cd "$dir/src" && { CARGO_TARGET_DIR=$dir/target cargo build --release --quiet --offline 2>/dev/null ||
        CARGO_TARGET_DIR=$dir/target cargo build --release --quiet; })
    ln -sf libpool.so "$BASE_LIB/libpool.so.0"
    touch "$dir/built"
}
