/* WS: the sandbox's cost. Needs a library with POOL_SANDBOX_COMPUTE and
 * sandbox_tasks_per_process (without them this file does not compile and WS is skipped).
 *   bench_pool ws ROUND   one round: a plain pool, a sandboxed pool with a fresh process for every
 *                         task (the default) and one with one process for all tasks, in an order
 *                         that rotates with ROUND; each: pool_create -> first result (start-up),
 *                         W2's round trip p50 over 2,000 calls, W3's rate over 20,000 apply_async
 *                         (keys ws.{plain,sandbox,sandbox_reuse}.*) */
#include "bench.h"

enum { CONTENDERS = 3, CALLS = 2000, N3 = 20000 };

void ws_main(int argc, char **argv) {
    int round = (int)arg(argc, argv, 1, 0);
    const char *name[CONTENDERS] = {"plain", "sandbox", "sandbox_reuse"};
    long *in = alloc_longs(N3, 0), *out = alloc_longs(N3, 1);
    pool_async_t **h = calloc(N3, sizeof *h);
    if (!h) die("out of memory");
    for (size_t i = 0; i < N3; i++) in[i] = (long)i;
    char key[96];
    for (int k = 0; k < CONTENDERS; k++) {
        int c = (round + k) % CONTENDERS;
        pool_options_t o;
        pool_options_init(&o);
        o.sandbox = c ? POOL_SANDBOX_COMPUTE : POOL_SANDBOX_NONE;
        if (c == 2) o.sandbox_tasks_per_process = 1ul << 40;
        double t0 = now_s();
        pool_t *pool = pool_create(WORKERS, &o);
        if (!pool) check(pool_last_status(), "pool_create");
        long x = 3, y = 0;
        check(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), "pool_apply");
        double start = now_s() - t0;
        if (y != 9) die("WS: wrong result");
        double p50 = w2_calls(pool, square, NULL, 0, CALLS).p50;
        double t1 = now_s();
        for (size_t i = 0; i < N3; i++) {
            h[i] = pool_apply_async(pool, square, &in[i], sizeof(long), &out[i], sizeof(long), NULL);
            if (!h[i]) check(pool_last_status(), "pool_apply_async");
        }
        for (size_t i = 0; i < N3; i++) {
            check(pool_async_get(h[i], -1), "pool_async_get");
            pool_async_free(h[i]);
        }
        double rate = N3 / (now_s() - t1);
        for (size_t i = 0; i < N3; i++)
            if (out[i] != (long)i * (long)i) die("WS: wrong W3 result");
        pool_destroy(pool);
        snprintf(key, sizeof key, "ws.%s.start_s", name[c]), result(key, start);
        snprintf(key, sizeof key, "ws.%s.w2_p50_s", name[c]), result(key, p50);
        snprintf(key, sizeof key, "ws.%s.w3_tasks_per_s", name[c]), result(key, rate);
    }
    free(in);
    free(out);
    free(h);
}
