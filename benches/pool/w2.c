/* W2 and W3: the cost of one task.
 *   bench_pool w2 CALLS       apply_async + pool_async_get + free, one at a time: p50 and p99
 *                             of CALLS round trips (after as many warm-up calls), the slowest,
 *                             and the p50 of the submission alone
 *   bench_pool w2diag CALLS   the same with a ctx, passed by address (compared with the
 *                             workers' copy) and copied with the call
 *   bench_pool w3 N           N apply_async submitted, then collected (after a warm-up pass):
 *                             tasks/s, and the submitting thread's CPU per apply_async */
#include "bench.h"

void w2_main(int argc, char **argv) {
    int calls = (int)arg(argc, argv, 1, 10000);
    pool_t *pool = make_pool();
    struct w2_figures f = w2_calls(pool, square, NULL, 0, calls);
    result("w2.pool.p50_s", f.p50);
    result("w2.pool.p99_s", f.p99);
    result("w2.pool.max_s", f.worst);
    result("w2.diag.submit_p50_s", f.submit_p50);
    pool_destroy(pool);
}

/* A ctx by address: a global set before pool_create, which each call compares with the
 * workers' copy. */
static long w2_factor = 1;

static int times_ctx(const void *in, void *out, void *ctx) {
    *(long *)out = *(const long *)in * *(const long *)in * *(const long *)ctx;
    return 0;
}

void w2diag_main(int argc, char **argv) {
    int calls = (int)arg(argc, argv, 1, 10000);
    pool_t *pool = make_pool();
    struct w2_figures f = w2_calls(pool, times_ctx, &w2_factor, 0, calls);
    result("w2.diag.ctx_by_address.p50_s", f.p50);
    result("w2.diag.ctx_by_address.submit_p50_s", f.submit_p50);
#ifdef HAVE_CALL_OPTIONS
    f = w2_calls(pool, times_ctx, &w2_factor, sizeof w2_factor, calls);
    result("w2.diag.ctx_copied.p50_s", f.p50);
    result("w2.diag.ctx_copied.submit_p50_s", f.submit_p50);
#else
    skip("w2.diag.ctx_copied.p50_s", "pool_apply_async_ex is not in this library");
#endif
    pool_destroy(pool);
}

void w3_main(int argc, char **argv) {
    size_t n = (size_t)arg(argc, argv, 1, 100000);
    pool_t *pool = make_pool();
    long *in = alloc_longs(n, 0), *out = alloc_longs(n, 1);
    pool_async_t **h = calloc(n, sizeof *h);
    if (!h) die("out of memory");
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    double dt = 0, cpu = 0;
    for (int pass = 0; pass < 2; pass++) { /* pass 0 is a warm-up (slots and heap pages faulted in) */
        memset(out, 0xff, n * sizeof(long));
        double t0 = now_s(), c0 = thread_cpu_s();
        for (size_t i = 0; i < n; i++) {
            h[i] = pool_apply_async(pool, square, &in[i], sizeof(long), &out[i], sizeof(long), NULL);
            if (!h[i]) check(pool_last_status(), "pool_apply_async");
        }
        cpu = (thread_cpu_s() - c0) / (double)n;
        for (size_t i = 0; i < n; i++) {
            check(pool_async_get(h[i], -1), "pool_async_get");
            pool_async_free(h[i]);
        }
        dt = now_s() - t0;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W3: wrong result");
    }
    result("w3.pool.tasks_per_s", (double)n / dt);
    /* The submitting thread's CPU time per apply_async (the host's side; other load on the
     * machine changes it far less than the wall-clock rate). */
    result("w3.diag.submit_cpu_per_task_s", cpu);
    pool_destroy(pool);
    free(in);
    free(out);
    free(h);
}
