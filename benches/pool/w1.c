/* W1: a map of squares over n longs, the pool already running.
 *   bench_pool w1 N REPS ROUND   the four maps, interleaved rep by rep (the first one rotating
 *                                with ROUND): pool_map and pool_map_blocks over malloc'd buffers
 *                                (copied through the pool's shared memory), and the same over
 *                                pool_shm_alloc buffers (used in place); per map the median of
 *                                REPS (keys w1.{pool,blocks,shm,blocks_shm}.N.items_per_s)
 *   bench_pool w1diag N          where the time goes (w1.diag.*): CPU of the host thread and of
 *                                the workers per map, the host's copy floor, eight squares per
 *                                item, the copying map with one worker (n >= 1e7) */
#include "bench.h"

/* Eight squares per item: the same work as `square` with 8x fewer items (per-item costs). */
static int square8(const void *in, void *out, void *ctx) {
    (void)ctx;
    const long *x = in;
    long *y = out;
    for (int k = 0; k < 8; k++) y[k] = x[k] * x[k];
    return 0;
}

#ifdef HAVE_MAP_BLOCKS
/* The same squares, a block of items per call (pool_map_blocks). */
static int square_block(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)first;
    (void)ctx;
    const long *a = in;
    long *b = out;
    for (size_t i = 0; i < count; i++) b[i] = a[i] * a[i];
    return 0;
}
#endif

enum { PLAIN, BLOCKS, SHM, BLOCKS_SHM, MAPS };
static const char *const map_name[MAPS] = {"pool", "blocks", "shm", "blocks_shm"};

static void check_squares(const long *out, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (out[i] != (long)i * (long)i) {
            fprintf(stderr, "bench_pool: W1 %s: wrong result at %zu\n", what, i);
            exit(1);
        }
}

/* One timed map of squares over in/out, as plain items or in blocks; checked. */
static double one_map(pool_t *pool, int blocks, const long *in, long *out, size_t n, const char *what) {
    memset(out, 0xff, n * sizeof(long));
    double t0 = now_s();
    if (!blocks) check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), what);
#ifdef HAVE_MAP_BLOCKS
    else check(pool_map_blocks(pool, square_block, in, sizeof(long), out, sizeof(long), n, NULL, NULL), what);
#endif
    double dt = now_s() - t0;
    check_squares(out, n, what);
    return dt;
}

static void shm_buffers(pool_t *pool, size_t n, long **in, long **out) {
    *in = pool_shm_alloc(pool, n * sizeof(long));
    *out = pool_shm_alloc(pool, n * sizeof(long));
    if (!*in || !*out) check(pool_last_status(), "pool_shm_alloc");
    for (size_t i = 0; i < n; i++) (*in)[i] = (long)i;
    memset(*out, 0xff, n * sizeof(long));
}

void w1_main(int argc, char **argv) {
    size_t n = (size_t)arg(argc, argv, 1, 1000000);
    int reps = (int)arg(argc, argv, 2, 5), round = (int)arg(argc, argv, 3, 0);
    pool_t *pool = make_pool();
    long *in = alloc_longs(n, 0), *out = alloc_longs(n, 1), *sin, *sout;
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    shm_buffers(pool, n, &sin, &sout);
    check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n < 1000000 ? n : 1000000, NULL), "warm-up map");
    /* A full map over the shared buffers first: each worker maps their pages into its page
     * tables the first time it touches them (minor faults); the timed maps see the steady state. */
    double tw = now_s();
    check(pool_map(pool, square, sin, sizeof(long), sout, sizeof(long), n, NULL), "warm-up map (shm)");
    char key[96];
    snprintf(key, sizeof key, "w1.diag.shm.%zu.first_map_s", n);
    result(key, now_s() - tw);

    int have_blocks = 0;
#ifdef HAVE_MAP_BLOCKS
    have_blocks = 1;
#endif
    double *t[MAPS];
    for (int m = 0; m < MAPS; m++)
        if (!(t[m] = calloc(reps, sizeof(double)))) die("out of memory");
    for (int r = 0; r < reps; r++)
        for (int k = 0; k < MAPS; k++) {
            int m = (round + r + k) % MAPS, blocks = m == BLOCKS || m == BLOCKS_SHM, shm = m >= SHM;
            if (blocks && !have_blocks) continue;
            t[m][r] = one_map(pool, blocks, shm ? sin : in, shm ? sout : out, n, map_name[m]);
        }
    for (int m = 0; m < MAPS; m++) {
        snprintf(key, sizeof key, "w1.%s.%zu.items_per_s", map_name[m], n);
        if ((m == BLOCKS || m == BLOCKS_SHM) && !have_blocks) skip(key, "pool_map_blocks is not in this library");
        else result(key, (double)n / median(t[m], reps));
        free(t[m]);
    }
    check(pool_shm_free(pool, sin), "pool_shm_free");
    check(pool_shm_free(pool, sout), "pool_shm_free");
    pool_destroy(pool);
    free(in);
    free(out);
}

/* ---- diagnostics --------------------------------------------------------------------------------- */
/* The least a host thread must do for a map whose data is copied through shared memory: copy
 * every input into a reused staging buffer and every result back out, reading a 16-byte status
 * per item, in chunks of 32768 items (1 MiB of staging), with nobody computing anything. */
static double host_copy_floor(const long *in, long *out, size_t n) {
    const size_t cs = 32768;
    static unsigned char stage[32768 * 32];
    const int *status = (const int *)(stage + cs * 8);
    long sum = 0;
    memset(stage, 0, sizeof stage);
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        for (size_t st = 0; st < n; st += cs) {
            size_t len = n - st < cs ? n - st : cs;
            memcpy(stage, in + st, len * 8);
            for (size_t i = 0; i < len; i++) sum += status[4 * i];
            memcpy(out + st, stage + cs * 24, len * 8);
        }
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    if (sum) die("W1 floor: unexpected status");
    return best;
}

/* CPU of the host thread and of the workers per map, over enough maps for clock ticks. */
static void cpu_per_map(pool_t *pool, const long *in, long *out, size_t n, const char *prefix) {
    int maps = n >= 10000000 ? 1 : (int)(100000000 / n);
    struct cpu_probe pr;
    probe_start(&pr);
    for (int r = 0; r < maps; r++) check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
    probe_stop(&pr, maps);
    probe_report(prefix, &pr);
}

void w1diag_main(int argc, char **argv) {
    size_t n = (size_t)arg(argc, argv, 1, 1000000);
    pool_t *pool = make_pool();
    long *in = alloc_longs(n, 0), *out = alloc_longs(n, 1), *sin, *sout;
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    shm_buffers(pool, n, &sin, &sout);
    check(pool_map(pool, square, sin, sizeof(long), sout, sizeof(long), n, NULL), "warm-up map (shm)");
    char key[96];
    double t = one_map(pool, 0, in, out, n, "pool_map");
    snprintf(key, sizeof key, "w1.diag.%zu.seconds", n);
    result(key, t);
    snprintf(key, sizeof key, "w1.diag.%zu", n);
    cpu_per_map(pool, in, out, n, key);
    snprintf(key, sizeof key, "w1.diag.shm.%zu", n);
    cpu_per_map(pool, sin, sout, n, key);
    snprintf(key, sizeof key, "w1.diag.%zu.host_copy_floor_s", n);
    result(key, host_copy_floor(in, out, n));
    /* The same squares as n/8 items of 8 longs (8x fewer items, same bytes). */
    memset(sout, 0xff, n * sizeof(long));
    double t0 = now_s();
    check(pool_map(pool, square8, sin, 8 * sizeof(long), sout, 8 * sizeof(long), n / 8, NULL), "pool_map (8 per item)");
    snprintf(key, sizeof key, "w1.diag.shm.%zu.eight_per_item_s", n);
    result(key, now_s() - t0);
    check_squares(sout, n / 8 * 8, "8 per item");
    check(pool_shm_free(pool, sin), "pool_shm_free");
    check(pool_shm_free(pool, sout), "pool_shm_free");
    pool_destroy(pool);
    if (n >= 10000000) { /* the copying map with a single worker: is the host the limit? */
        pool_t *one = pool_create(1, NULL);
        if (!one) check(pool_last_status(), "pool_create(1)");
        t0 = now_s();
        check(pool_map(one, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
        snprintf(key, sizeof key, "w1.diag.%zu.one_worker_s", n);
        result(key, now_s() - t0);
        pool_destroy(one);
    }
    free(in);
    free(out);
}
