/* W4: 64 CPU-bound tasks of busy(ITERS) (~10 ms each: run.sh calibrates ITERS).
 *   bench_pool w4 ITERS ROUND   one pool_map of the 64 and 64 apply_async, in an order that
 *                               alternates with ROUND: seconds of each */
#include "bench.h"

#define W4_TASKS 64

static int busy_task(const void *in, void *out, void *ctx) {
    (void)ctx;
    const unsigned long *a = in; /* {iters, seed} */
    *(unsigned long *)out = busy(a[0], a[1]);
    return 0;
}

static double by_map(pool_t *pool, unsigned long (*in)[2], unsigned long *out) {
    double t0 = now_s();
    check(pool_map(pool, busy_task, in, sizeof in[0], out, sizeof out[0], W4_TASKS, NULL), "pool_map");
    return now_s() - t0;
}

static double by_apply(pool_t *pool, unsigned long (*in)[2], unsigned long *out) {
    pool_async_t *h[W4_TASKS];
    double t0 = now_s();
    for (int i = 0; i < W4_TASKS; i++) {
        h[i] = pool_apply_async(pool, busy_task, in[i], sizeof in[i], &out[i], sizeof out[i], NULL);
        if (!h[i]) check(pool_last_status(), "pool_apply_async");
    }
    for (int i = 0; i < W4_TASKS; i++) {
        check(pool_async_get(h[i], -1), "pool_async_get");
        pool_async_free(h[i]);
    }
    return now_s() - t0;
}

void w4_main(int argc, char **argv) {
    unsigned long iters = (unsigned long)arg(argc, argv, 1, 1000000);
    int round = (int)arg(argc, argv, 2, 0);
    pool_t *pool = make_pool();
    unsigned long in[W4_TASKS][2], out[W4_TASKS], want[W4_TASKS];
    for (int i = 0; i < W4_TASKS; i++) {
        in[i][0] = iters;
        in[i][1] = (unsigned long)i + 1;
    }
    /* The expected values: computed serially once (not timed here; serial time is bench_omp's). */
    for (int i = 0; i < W4_TASKS; i++) want[i] = busy(iters, in[i][1]);
    double t[2];
    for (int k = 0; k < 2; k++) {
        int apply = (round + k) % 2;
        memset(out, 0, sizeof out);
        t[apply] = apply ? by_apply(pool, in, out) : by_map(pool, in, out);
        if (memcmp(out, want, sizeof out)) die(apply ? "W4: wrong apply_async result" : "W4: wrong map result");
    }
    result("w4.pool.map_seconds", t[0]);
    result("w4.pool.apply_seconds", t[1]);
    pool_destroy(pool);
}
