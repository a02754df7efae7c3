/* W5: 256 tasks of 1 MiB in / 1 MiB out (out = in XOR 0x5a...).
 *   bench_pool w5 ROUND   after a warm-up of each, one pass of: all 256 apply_async submitted
 *                         before the first is collected; at most 16 in flight; and all 256 with
 *                         in and out in pool_shm_alloc memory, where each task checks that it
 *                         was handed the caller's buffers (no copy). The order rotates with
 *                         ROUND. GB/s of input
 *   bench_pool w5diag     where the CPU goes in each, and the host's copy floor (w5.diag.*) */
#include "bench.h"

#define W5_TASKS 256

/* Where the pool_shm_alloc'd buffers are, for the zero-copy check; lives in shared memory. */
struct w5_where {
    const unsigned char *in, *out;
};

/* The task. With ctx (the shared-memory variant) it first checks that it was handed the
 * caller's own shared buffers, i.e. that nothing was copied. */
static int xor_task(const void *in, void *out, void *ctx) {
    const struct w5_where *w = ctx;
    if (w && ((const unsigned char *)in < w->in || (const unsigned char *)in >= w->in + W5_TASKS * MIB ||
              (unsigned char *)out < w->out || (unsigned char *)out >= w->out + W5_TASKS * MIB))
        return 99; /* a copy: the benchmark stops with POOL_ETASK */
    xor_bytes(in, out, MIB);
    return 0;
}

/* One pass: W5_TASKS apply_async of 1 MiB in and out, at most `window` in flight (all of them
 * submitted before the first is collected when window >= W5_TASKS). Returns the wall time. */
static double pass(pool_t *pool, const unsigned char *in, unsigned char *out, int window, void *ctx) {
    pool_async_t *h[W5_TASKS];
    int next = 0, done = 0;
    double t0 = now_s();
    while (done < W5_TASKS) {
        for (; next < W5_TASKS && next - done < window; next++) {
            h[next] = pool_apply_async(pool, xor_task, in + next * MIB, MIB, out + next * MIB, MIB, ctx);
            if (!h[next]) check(pool_last_status(), "pool_apply_async");
        }
        check(pool_async_get(h[done], -1), "pool_async_get");
        pool_async_free(h[done++]);
    }
    return now_s() - t0;
}

struct w5 {
    pool_t *pool;
    unsigned char *in, *out, *want, *sin, *sout;
    struct w5_where *where;
};

static void setup(struct w5 *s) {
    s->pool = make_pool();
    s->in = malloc(W5_TASKS * MIB), s->out = malloc(W5_TASKS * MIB), s->want = malloc(W5_TASKS * MIB);
    if (!s->in || !s->out || !s->want) die("out of memory");
    for (int i = 0; i < W5_TASKS; i++) fill_pattern(s->in + i * MIB, MIB, (unsigned)i);
    xor_bytes(s->in, s->want, W5_TASKS * MIB);
    memset(s->out, 0xff, W5_TASKS * MIB);
    s->sin = pool_shm_alloc(s->pool, W5_TASKS * MIB), s->sout = pool_shm_alloc(s->pool, W5_TASKS * MIB);
    s->where = pool_shm_alloc(s->pool, sizeof *s->where);
    if (!s->sin || !s->sout || !s->where) check(pool_last_status(), "pool_shm_alloc");
    memcpy(s->sin, s->in, W5_TASKS * MIB);
    memset(s->sout, 0xff, W5_TASKS * MIB);
    s->where->in = s->sin;
    s->where->out = s->sout;
}

static void teardown(struct w5 *s) {
    pool_destroy(s->pool);
    free(s->in);
    free(s->out);
    free(s->want);
}

enum { COPY, WINDOW16, SHM, PASSES };

/* One checked pass of kind k. */
static double checked_pass(struct w5 *s, int k) {
    unsigned char *out = k == SHM ? s->sout : s->out;
    memset(out, 0, W5_TASKS * MIB);
    double dt = k == SHM ? pass(s->pool, s->sin, s->sout, W5_TASKS, s->where)
                         : pass(s->pool, s->in, s->out, k == WINDOW16 ? 16 : W5_TASKS, NULL);
    if (memcmp(out, s->want, W5_TASKS * MIB)) die("W5: wrong apply_async result");
    return dt;
}

void w5_main(int argc, char **argv) {
    int round = (int)arg(argc, argv, 1, 0);
    struct w5 s;
    setup(&s);
    double t[PASSES];
    for (int k = 0; k < PASSES; k++) checked_pass(&s, k); /* warm-up */
    for (int k = 0; k < PASSES; k++) {
        int p = (round + k) % PASSES;
        t[p] = checked_pass(&s, p);
    }
    result("w5.pool.copy_gb_per_s", W5_TASKS * MIB / t[COPY] / 1e9);
    result("w5.pool.window16_gb_per_s", W5_TASKS * MIB / t[WINDOW16] / 1e9);
    result("w5.shm.gb_per_s", W5_TASKS * MIB / t[SHM] / 1e9);
    teardown(&s);
}

void w5diag_main(int argc, char **argv) {
    (void)argc;
    (void)argv;
    struct w5 s;
    setup(&s);
    checked_pass(&s, COPY);
    struct { const char *key; unsigned char *in, *out; int window; void *ctx; } k[PASSES] = {
        {"w5.diag.copy", s.in, s.out, W5_TASKS, NULL},
        {"w5.diag.window16", s.in, s.out, 16, NULL},
        {"w5.diag.shm", s.sin, s.sout, W5_TASKS, s.where},
    };
    for (int i = 0; i < PASSES; i++) {
        struct cpu_probe pr;
        probe_start(&pr);
        for (int r = 0; r < 3; r++) pass(s.pool, k[i].in, k[i].out, k[i].window, k[i].ctx);
        probe_stop(&pr, 3);
        probe_report(k[i].key, &pr);
    }
    /* The copy floor: the host copying 256 MiB in and 256 MiB out, once, into warm memory. */
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        memcpy(s.want, s.in, W5_TASKS * MIB);
        memcpy(s.out, s.want, W5_TASKS * MIB);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    result("w5.diag.host_copy_floor_s", best);
    teardown(&s);
}
