/* libpool side of the benchmark (issue 5, workloads W1..W7). Usage:
 *   bench_pool w1 N REPS          map of squares over N longs
 *   bench_pool w2 CALLS RUNS      apply_async + pool_async_get round trips, one at a time
 *   bench_pool w3 N REPS          N apply_async submitted, then collected
 *   bench_pool w4 ITERS REPS      64 tasks of busy(ITERS) (~10 ms each): map and apply_async
 *   bench_pool w5 REPS            256 tasks of 1 MiB in / 1 MiB out: copies, and pool_shm_alloc
 *   bench_pool w6 HEAP_MIB REPS   pool_create -> first result -> pool_destroy
 *   bench_pool w7 N ORDER         peak memory of the host and its descendants during a map;
 *                                 ORDER: pool-first, buffers-first, shm or imap (see w7())
 *   bench_pool ws ROUNDS          the sandbox's cost: W2, W3 and start-up, plain and sandboxed
 *                                 pools interleaved round by round
 * Figures go to stdout as "RESULT key value"; every timed result is checked. Keys *.diag.* are
 * diagnostics (CPU split, copy floors) that benches/report.py uses to explain the figures. */
#define _GNU_SOURCE
#include "common.h"
#include <pool.h>
#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#define WORKERS 2

static void check(int st, const char *what) {
    if (st != POOL_OK) {
        fprintf(stderr, "bench_pool: %s: %s (%s)\n", what, pool_strerror(st), pool_last_error());
        exit(1);
    }
}

static pool_t *make_pool(void) {
    pool_t *p = pool_create(WORKERS, NULL);
    if (!p) {
        fprintf(stderr, "bench_pool: pool_create: %s\n", pool_last_error());
        exit(1);
    }
    return p;
}

/* ---- /proc helpers: memory and CPU time of the host and its descendants ------------------------ */
/* Memory of a process: Pss (shared pages divided among their users, so memory shared by the
 * host, the zygote and the workers counts once in a sum) and Rss, in KiB. */
static void mem_of(int pid, long *pss, long *rss) {
    char path[64], line[256];
    *pss = *rss = 0;
    snprintf(path, sizeof path, "/proc/%d/smaps_rollup", pid);
    FILE *f = fopen(path, "r");
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (!strncmp(line, "Pss:", 4)) *pss = atol(line + 4);
        else if (!strncmp(line, "Rss:", 4)) *rss = atol(line + 4);
    }
    fclose(f);
}

static int ppid_of(const char *pid) {
    char path[300], buf[512];
    snprintf(path, sizeof path, "/proc/%s/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return -1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    int ppid = -1;
    if (!p || sscanf(p + 1, " %*c %d", &ppid) != 1) return -1;
    return ppid;
}

/* The host and all its descendants (the zygote and the workers). */
static int family(int root, int *out, int max) {
    int pids[4096], ppids[4096], n = 0;
    DIR *d = opendir("/proc");
    struct dirent *e;
    while (d && (e = readdir(d)) && n < 4096) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9') continue;
        int pp = ppid_of(e->d_name);
        if (pp < 0) continue;
        pids[n] = atoi(e->d_name);
        ppids[n++] = pp;
    }
    if (d) closedir(d);
    int k = 0;
    out[k++] = root;
    for (int i = 0; i < k && k < max; i++)
        for (int j = 0; j < n && k < max; j++)
            if (ppids[j] == out[i]) out[k++] = pids[j];
    return k;
}


/* CPU seconds (user, system) of one process from /proc/<pid>/stat (clock-tick resolution). */
static void cpu_of(int pid, double *user, double *sys) {
    char path[64], buf[1024];
    *user = *sys = 0;
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *p = strrchr(buf, ')');
    unsigned long ut, st;
    /* after ')': state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime */
    if (p && sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &ut, &st) == 2) {
        double hz = (double)sysconf(_SC_CLK_TCK);
        *user = ut / hz;
        *sys = st / hz;
    }
}

/* CPU time of the pool's processes: every descendant of this process (zygote and workers). */
static void pool_cpu(double *user, double *sys) {
    int pids[64];
    int k = family(getpid(), pids, 64);
    *user = *sys = 0;
    for (int i = 1; i < k; i++) {
        double u, s;
        cpu_of(pids[i], &u, &s);
        *user += u;
        *sys += s;
    }
}

/* CPU seconds (user, system) of the calling thread. */
static void thread_cpu(double *user, double *sys) {
    struct rusage r;
    getrusage(RUSAGE_THREAD, &r);
    *user = r.ru_utime.tv_sec + r.ru_utime.tv_usec * 1e-6;
    *sys = r.ru_stime.tv_sec + r.ru_stime.tv_usec * 1e-6;
}

/* Where the time of a phase goes: wall time, and CPU of the calling (host) thread and of the
 * pool's processes, per repetition. */
struct cpu_probe {
    double wall, hu, hs, wu, ws;
};
static void probe_start(struct cpu_probe *p) {
    thread_cpu(&p->hu, &p->hs);
    pool_cpu(&p->wu, &p->ws);
    p->wall = now_s();
}
static void probe_stop(struct cpu_probe *p, int reps) {
    double hu, hs, wu, ws;
    p->wall = (now_s() - p->wall) / reps;
    thread_cpu(&hu, &hs);
    pool_cpu(&wu, &ws);
    p->hu = (hu - p->hu) / reps;
    p->hs = (hs - p->hs) / reps;
    p->wu = (wu - p->wu) / reps;
    p->ws = (ws - p->ws) / reps;
}
static void probe_report(const char *prefix, const struct cpu_probe *p) {
    char key[96];
    snprintf(key, sizeof key, "%s.wall_s", prefix), result(key, p->wall);
    snprintf(key, sizeof key, "%s.host_user_s", prefix), result(key, p->hu);
    snprintf(key, sizeof key, "%s.host_sys_s", prefix), result(key, p->hs);
    snprintf(key, sizeof key, "%s.workers_user_s", prefix), result(key, p->wu);
    snprintf(key, sizeof key, "%s.workers_sys_s", prefix), result(key, p->ws);
}

static int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* Eight squares per item: the same work as `square` with 8x fewer items (per-item costs). */
static int square8(const void *in, void *out, void *ctx) {
    (void)ctx;
    const long *x = in;
    long *y = out;
    for (int k = 0; k < 8; k++) y[k] = x[k] * x[k];
    return 0;
}

static int busy_task(const void *in, void *out, void *ctx) {
    (void)ctx;
    const unsigned long *a = in; /* {iters, seed} */
    *(unsigned long *)out = busy(a[0], a[1]);
    return 0;
}

static long *alloc_longs(size_t n, int touch) {
    long *p = malloc(n * sizeof(long));
    if (!p) die("out of memory");
    if (touch) memset(p, 0xff, n * sizeof(long)); /* not 0: gcc would turn malloc+memset 0 into calloc */
    return p;
}

/* ---- W1 ------------------------------------------------------------------------------------ */
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

/* The same squares, a block of items per call (pool_map_blocks). */
static int square_block(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)first;
    (void)ctx;
    const long *a = in;
    long *b = out;
    for (size_t i = 0; i < count; i++) b[i] = a[i] * a[i];
    return 0;
}

/* Median seconds of a block map of squares over in/out (checked). */
static double w1_blocks(pool_t *pool, const long *in, long *out, size_t n, int reps, double *t, const char *what) {
    for (int r = 0; r < reps; r++) {
        memset(out, 0xff, n * sizeof(long));
        double t0 = now_s();
        check(pool_map_blocks(pool, square_block, in, sizeof(long), out, sizeof(long), n, NULL, NULL), what);
        t[r] = now_s() - t0;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W1 block map: wrong result");
    }
    return median(t, reps);
}

static void w1(size_t n, int reps) {
    pool_t *pool = make_pool();
    long *in = alloc_longs(n, 0), *out = alloc_longs(n, 1);
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    double *t = calloc(reps, sizeof *t);
    check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n < 1000000 ? n : 1000000, NULL), "warm-up map");
    for (int r = 0; r < reps; r++) {
        memset(out, 0xff, n * sizeof(long));
        double t0 = now_s();
        check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
        t[r] = now_s() - t0;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W1: wrong result");
    }
    double m = median(t, reps);
    char key[64];
    snprintf(key, sizeof key, "w1.pool.%zu.items_per_s", n);
    result(key, (double)n / m);
    snprintf(key, sizeof key, "w1.pool.%zu.seconds", n);
    result(key, m);

    /* Diagnostics: CPU of the host thread and of the workers per map, and the host copy floor. */
    int maps = n >= 10000000 ? 1 : (int)(100000000 / n);
    struct cpu_probe pr;
    probe_start(&pr);
    for (int r = 0; r < maps; r++) check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
    probe_stop(&pr, maps);
    snprintf(key, sizeof key, "w1.diag.%zu", n);
    probe_report(key, &pr);
    snprintf(key, sizeof key, "w1.diag.%zu.host_copy_floor_s", n);
    result(key, host_copy_floor(in, out, n));
    snprintf(key, sizeof key, "w1.blocks.%zu.items_per_s", n);
    result(key, (double)n / w1_blocks(pool, in, out, n, reps, t, "pool_map_blocks"));

    /* The same map with in and out in the pool's shared memory (pool_shm_alloc): no copies. */
    long *sin = pool_shm_alloc(pool, n * sizeof(long)), *sout = pool_shm_alloc(pool, n * sizeof(long));
    if (!sin || !sout) check(pool_last_status(), "pool_shm_alloc");
    for (size_t i = 0; i < n; i++) sin[i] = (long)i;
    memset(sout, 0xff, n * sizeof(long));
    /* A full warm-up map: each worker maps the pages of the buffers into its page tables the
     * first time it touches them (minor faults); the timed maps measure the steady state. */
    double tw = now_s();
    check(pool_map(pool, square, sin, sizeof(long), sout, sizeof(long), n, NULL), "warm-up map");
    snprintf(key, sizeof key, "w1.diag.shm.%zu.first_map_s", n);
    result(key, now_s() - tw);
    for (int r = 0; r < reps; r++) {
        memset(sout, 0xff, n * sizeof(long));
        double t0 = now_s();
        check(pool_map(pool, square, sin, sizeof(long), sout, sizeof(long), n, NULL), "pool_map (shm)");
        t[r] = now_s() - t0;
        for (size_t i = 0; i < n; i++)
            if (sout[i] != (long)i * (long)i) die("W1 shm: wrong result");
    }
    snprintf(key, sizeof key, "w1.shm.%zu.items_per_s", n);
    result(key, (double)n / median(t, reps));
    probe_start(&pr);
    for (int r = 0; r < maps; r++) check(pool_map(pool, square, sin, sizeof(long), sout, sizeof(long), n, NULL), "pool_map (shm)");
    probe_stop(&pr, maps);
    snprintf(key, sizeof key, "w1.diag.shm.%zu", n);
    probe_report(key, &pr);
    /* Diagnostic: the same squares as n/8 items of 8 longs (8x fewer items, same bytes). */
    for (int r = 0; r < reps; r++) {
        memset(sout, 0xff, n * sizeof(long));
        double t0 = now_s();
        check(pool_map(pool, square8, sin, 8 * sizeof(long), sout, 8 * sizeof(long), n / 8, NULL), "pool_map (shm, 8 per item)");
        t[r] = now_s() - t0;
        for (size_t i = 0; i < n; i++)
            if (sout[i] != (long)i * (long)i) die("W1 shm 8 per item: wrong result");
    }
    snprintf(key, sizeof key, "w1.diag.shm.%zu.eight_per_item_s", n);
    result(key, median(t, reps));
    snprintf(key, sizeof key, "w1.blocks_shm.%zu.items_per_s", n);
    result(key, (double)n / w1_blocks(pool, sin, sout, n, reps, t, "pool_map_blocks (shm)"));
    check(pool_shm_free(pool, sin), "pool_shm_free");
    check(pool_shm_free(pool, sout), "pool_shm_free");
    pool_destroy(pool);
    if (n >= 10000000) { /* the same map with a single worker: is the host the limit? */
        pool_t *one = pool_create(1, NULL);
        if (!one) check(pool_last_status(), "pool_create(1)");
        for (int r = 0; r < reps; r++) {
            double t0 = now_s();
            check(pool_map(one, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
            t[r] = now_s() - t0;
        }
        pool_destroy(one);
        snprintf(key, sizeof key, "w1.diag.%zu.one_worker_s", n);
        result(key, median(t, reps));
    }
    free(in);
    free(out);
    free(t);
}

/* ---- W2 ------------------------------------------------------------------------------------ */
/* A ctx the W2 diagnostics pass: by address (a global set before pool_create, which each call
 * compares with the workers' copy), or copied with the call (ctx_size). */
static long w2_factor = 1;

static int times_ctx(const void *in, void *out, void *ctx) {
    *(long *)out = *(const long *)in * *(const long *)in * *(const long *)ctx;
    return 0;
}

/* One apply_async + get + free at a time, `calls` per run: the median over `runs` of each run's
 * p50 and p99, the slowest last call, and the median p50 of the pool_apply_async call alone
 * (the host's side of a submission, checks included; a load on the machine rarely lands in
 * so short a call). ctx_size > 0 copies ctx with each call. */
struct w2_figures {
    double p50, p99, worst, submit_p50;
};

static struct w2_figures w2_calls(pool_t *pool, pool_fn fn, void *ctx, size_t ctx_size, int calls, int runs) {
    double *lat = calloc(calls, sizeof *lat), *sub = calloc(calls, sizeof *sub);
    double *r50 = calloc(runs, sizeof *r50), *r99 = calloc(runs, sizeof *r99), *s50 = calloc(runs, sizeof *s50);
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.ctx_size = ctx_size;
    struct w2_figures f = {0, 0, 0, 0};
    for (int r = -1; r < runs; r++) { /* run -1 is a warm-up */
        for (int i = 0; i < calls; i++) {
            long x = i + 1, y = 0;
            double t0 = now_s();
            pool_async_t *a = ctx_size > 0 ? pool_apply_async_ex(pool, fn, &x, sizeof x, &y, sizeof y, ctx, &co)
                                           : pool_apply_async(pool, fn, &x, sizeof x, &y, sizeof y, ctx);
            sub[i] = now_s() - t0;
            if (!a) check(pool_last_status(), "pool_apply_async");
            check(pool_async_get(a, -1), "pool_async_get");
            pool_async_free(a);
            lat[i] = now_s() - t0;
            if (y != x * x) die("W2: wrong result");
        }
        if (r < 0) continue;
        r50[r] = quantile(lat, calls, 0.50);
        r99[r] = quantile(lat, calls, 0.99);
        s50[r] = quantile(sub, calls, 0.50);
        if (lat[calls - 1] > f.worst) f.worst = lat[calls - 1];
    }
    f.p50 = median(r50, runs);
    f.p99 = median(r99, runs);
    f.submit_p50 = median(s50, runs);
    free(lat);
    free(sub);
    free(r50);
    free(r99);
    free(s50);
    return f;
}

static void w2(int calls, int runs) {
    pool_t *pool = make_pool();
    struct w2_figures f = w2_calls(pool, square, NULL, 0, calls, runs);
    result("w2.pool.p50_s", f.p50);
    result("w2.pool.p99_s", f.p99);
    result("w2.pool.max_s", f.worst);
    result("w2.diag.submit_p50_s", f.submit_p50);
    /* Diagnostics: the same with a ctx, by address (checked against the workers' copy) and copied. */
    f = w2_calls(pool, times_ctx, &w2_factor, 0, calls, runs);
    result("w2.diag.ctx_by_address.p50_s", f.p50);
    result("w2.diag.ctx_by_address.submit_p50_s", f.submit_p50);
    f = w2_calls(pool, times_ctx, &w2_factor, sizeof w2_factor, calls, runs);
    result("w2.diag.ctx_copied.p50_s", f.p50);
    result("w2.diag.ctx_copied.submit_p50_s", f.submit_p50);
    pool_destroy(pool);
}

/* ---- W3 ------------------------------------------------------------------------------------ */
static double thread_cpu_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void w3(size_t n, int reps) {
    pool_t *pool = make_pool();
    long *in = alloc_longs(n, 0), *out = alloc_longs(n, 1);
    pool_async_t **h = calloc(n, sizeof *h);
    double *t = calloc(reps, sizeof *t);
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    double *cpu = calloc(reps, sizeof *cpu);
    for (int r = -1; r < reps; r++) { /* rep -1 is a warm-up (slots and heap pages faulted in) */
        memset(out, 0xff, n * sizeof(long));
        double t0 = now_s(), c0 = thread_cpu_s();
        for (size_t i = 0; i < n; i++) {
            h[i] = pool_apply_async(pool, square, &in[i], sizeof(long), &out[i], sizeof(long), NULL);
            if (!h[i]) check(pool_last_status(), "pool_apply_async");
        }
        if (r >= 0) cpu[r] = (thread_cpu_s() - c0) / (double)n;
        for (size_t i = 0; i < n; i++) {
            check(pool_async_get(h[i], -1), "pool_async_get");
            pool_async_free(h[i]);
        }
        double dt = now_s() - t0;
        if (r >= 0) t[r] = dt;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W3: wrong result");
    }
    result("w3.pool.tasks_per_s", (double)n / median(t, reps));
    /* The submitting thread's CPU time per apply_async (the host's side; other load on the
     * machine changes it far less than the wall-clock rate). */
    result("w3.diag.submit_cpu_per_task_s", median(cpu, reps));
    free(cpu);
    pool_destroy(pool);
    free(in);
    free(out);
    free(h);
    free(t);
}

/* ---- W4 ------------------------------------------------------------------------------------ */
#define W4_TASKS 64
static void w4(unsigned long iters, int reps) {
    pool_t *pool = make_pool();
    unsigned long in[W4_TASKS][2], out[W4_TASKS], want[W4_TASKS];
    for (int i = 0; i < W4_TASKS; i++) {
        in[i][0] = iters;
        in[i][1] = (unsigned long)i + 1;
    }
    /* The expected values: computed serially once (not timed here; serial time is bench_omp's). */
    for (int i = 0; i < W4_TASKS; i++) want[i] = busy(iters, in[i][1]);
    double *tm = calloc(reps, sizeof *tm), *ta = calloc(reps, sizeof *ta);
    for (int r = 0; r < reps; r++) {
        memset(out, 0, sizeof out);
        double t0 = now_s();
        check(pool_map(pool, busy_task, in, sizeof in[0], out, sizeof out[0], W4_TASKS, NULL), "pool_map");
        tm[r] = now_s() - t0;
        if (memcmp(out, want, sizeof out)) die("W4: wrong map result");

        memset(out, 0, sizeof out);
        pool_async_t *h[W4_TASKS];
        t0 = now_s();
        for (int i = 0; i < W4_TASKS; i++) {
            h[i] = pool_apply_async(pool, busy_task, in[i], sizeof in[i], &out[i], sizeof out[i], NULL);
            if (!h[i]) check(pool_last_status(), "pool_apply_async");
        }
        for (int i = 0; i < W4_TASKS; i++) {
            check(pool_async_get(h[i], -1), "pool_async_get");
            pool_async_free(h[i]);
        }
        ta[r] = now_s() - t0;
        if (memcmp(out, want, sizeof out)) die("W4: wrong apply_async result");
    }
    result("w4.pool.map_seconds", median(tm, reps));
    result("w4.pool.apply_seconds", median(ta, reps));
    pool_destroy(pool);
    free(tm);
    free(ta);
}

/* ---- W5 ------------------------------------------------------------------------------------ */
#define W5_TASKS 256
#define MIB (1UL << 20)

/* Where the pool_shm_alloc'd W5 buffers are, for the zero-copy check; lives in shared memory. */
struct w5_where {
    const unsigned char *in, *out;
};

/* The W5 task. With ctx (the shared-memory variant) it first checks that it was handed the
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
static double w5_pass(pool_t *pool, const unsigned char *in, unsigned char *out, int window, void *ctx) {
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

static void w5(int reps) {
    pool_t *pool = make_pool();
    unsigned char *in = malloc(W5_TASKS * MIB), *out = malloc(W5_TASKS * MIB), *want = malloc(W5_TASKS * MIB);
    if (!in || !out || !want) die("out of memory");
    for (int i = 0; i < W5_TASKS; i++) fill_pattern(in + i * MIB, MIB, (unsigned)i);
    xor_bytes(in, want, W5_TASKS * MIB);
    memset(out, 0xff, W5_TASKS * MIB);
    /* The shared-memory variant: buffers from pool_shm_alloc, and where they are. */
    unsigned char *sin = pool_shm_alloc(pool, W5_TASKS * MIB), *sout = pool_shm_alloc(pool, W5_TASKS * MIB);
    struct w5_where *where = pool_shm_alloc(pool, sizeof *where);
    if (!sin || !sout || !where) check(pool_last_status(), "pool_shm_alloc");
    memcpy(sin, in, W5_TASKS * MIB);
    memset(sout, 0xff, W5_TASKS * MIB);
    where->in = sin;
    where->out = sout;

    double *tc = calloc(reps, sizeof *tc), *tw = calloc(reps, sizeof *tw), *ts = calloc(reps, sizeof *ts);
    for (int r = -1; r < reps; r++) { /* rep -1 is a warm-up */
        memset(out, 0, W5_TASKS * MIB);
        double dt = w5_pass(pool, in, out, W5_TASKS, NULL);
        if (r >= 0) tc[r] = dt;
        if (memcmp(out, want, W5_TASKS * MIB)) die("W5: wrong apply_async result");

        memset(out, 0, W5_TASKS * MIB);
        dt = w5_pass(pool, in, out, 16, NULL);
        if (r >= 0) tw[r] = dt;
        if (memcmp(out, want, W5_TASKS * MIB)) die("W5: wrong apply_async result (16 in flight)");

        memset(sout, 0, W5_TASKS * MIB);
        dt = w5_pass(pool, sin, sout, W5_TASKS, where);
        if (r >= 0) ts[r] = dt;
        if (memcmp(sout, want, W5_TASKS * MIB)) die("W5: wrong apply_async result (shared memory)");
    }
    result("w5.pool.copy_gb_per_s", W5_TASKS * MIB / median(tc, reps) / 1e9);
    result("w5.pool.window16_gb_per_s", W5_TASKS * MIB / median(tw, reps) / 1e9);
    result("w5.shm.gb_per_s", W5_TASKS * MIB / median(ts, reps) / 1e9);

    /* Diagnostics: where the CPU goes (unchecked passes, after the timed ones). */
    struct cpu_probe pr;
    probe_start(&pr);
    for (int r = 0; r < 3; r++) w5_pass(pool, in, out, W5_TASKS, NULL);
    probe_stop(&pr, 3);
    probe_report("w5.diag.copy", &pr);
    probe_start(&pr);
    for (int r = 0; r < 3; r++) w5_pass(pool, in, out, 16, NULL);
    probe_stop(&pr, 3);
    probe_report("w5.diag.window16", &pr);
    probe_start(&pr);
    for (int r = 0; r < 3; r++) w5_pass(pool, sin, sout, W5_TASKS, where);
    probe_stop(&pr, 3);
    probe_report("w5.diag.shm", &pr);
    /* The copy floor: the host copying 256 MiB in and 256 MiB out, once, into warm memory. */
    double best = 1e9;
    for (int r = 0; r < 3; r++) {
        double t0 = now_s();
        memcpy(want, in, W5_TASKS * MIB);
        memcpy(out, want, W5_TASKS * MIB);
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    result("w5.diag.host_copy_floor_s", best);
    pool_destroy(pool);
    free(in);
    free(out);
    free(want);
    free(tc);
    free(tw);
    free(ts);
}

/* ---- W6 ------------------------------------------------------------------------------------ */
static void w6(size_t heap_mib, int reps) {
    char *heap = NULL;
    if (heap_mib) {
        heap = malloc(heap_mib * MIB);
        if (!heap) die("out of memory");
        memset(heap, 1, heap_mib * MIB);
    }
    double *tf = calloc(reps, sizeof *tf), *td = calloc(reps, sizeof *td);
    for (int r = -1; r < reps; r++) {
        long x = 7, y = 0;
        double t0 = now_s();
        pool_t *pool = make_pool();
        check(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), "pool_apply");
        double t1 = now_s();
        pool_destroy(pool);
        double t2 = now_s();
        if (y != 49) die("W6: wrong result");
        if (r >= 0) {
            tf[r] = t1 - t0;
            td[r] = t2 - t1;
        }
    }
    /* Diagnostic: one bare fork of this process (child exits at once, parent reaps it). */
    double *tk = calloc(reps, sizeof *tk);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid) die("fork");
        tk[r] = now_s() - t0;
    }
    char key[64];
    snprintf(key, sizeof key, "w6.diag.%zu.fork_s", heap_mib);
    result(key, median(tk, reps));
    free(tk);
    snprintf(key, sizeof key, "w6.pool.%zu.first_s", heap_mib);
    result(key, median(tf, reps));
    snprintf(key, sizeof key, "w6.pool.%zu.destroy_s", heap_mib);
    result(key, median(td, reps));
    if (heap) {
        volatile char c = heap[heap_mib * MIB - 1];
        (void)c;
        free(heap);
    }
    free(tf);
    free(td);
}

/* ---- W7 ------------------------------------------------------------------------------------ */
struct sampler {
    atomic_int stop;
    long peak_pss, peak_rss, peak_host_pss, peak_others_pss, samples;
};

static void *sample(void *arg) {
    struct sampler *s = arg;
    int me = getpid();
    while (!atomic_load(&s->stop)) {
        int pids[64];
        int k = family(me, pids, 64);
        long tp = 0, tr = 0, host = 0;
        for (int i = 0; i < k; i++) {
            long p, r;
            mem_of(pids[i], &p, &r);
            tp += p;
            tr += r;
            if (i == 0) host = p;
        }
        if (tp > s->peak_pss) s->peak_pss = tp;
        if (tr > s->peak_rss) s->peak_rss = tr;
        if (host > s->peak_host_pss) s->peak_host_pss = host;
        if (tp - host > s->peak_others_pss) s->peak_others_pss = tp - host;
        s->samples++;
        usleep(5000);
    }
    return NULL;
}

/* ORDER: "pool-first" (malloc'd buffers allocated after pool_create), "buffers-first" (allocated
 * and touched before it), "shm" (buffers from pool_shm_alloc), "imap" (pool_imap: no output
 * array; the results are read one at a time). */
static void w7(size_t n, const char *order) {
    int buffers_first = !strcmp(order, "buffers-first"), shm = !strcmp(order, "shm"), imap = !strcmp(order, "imap");
    long base_pss, base_rss;
    mem_of(getpid(), &base_pss, &base_rss);
    pool_t *pool = buffers_first ? NULL : make_pool();
    long *in, *out = NULL;
    if (shm) {
        in = pool_shm_alloc(pool, n * sizeof(long));
        out = pool_shm_alloc(pool, n * sizeof(long));
        if (!in || !out) check(pool_last_status(), "pool_shm_alloc");
        memset(out, 0xff, n * sizeof(long));
    } else {
        in = alloc_longs(n, 0);
        if (!imap) out = alloc_longs(n, 1);
    }
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    if (buffers_first) pool = make_pool();
    /* Shared buffers: one map first, so that the workers have mapped their pages. While pages
     * get mapped into more processes their Pss shares change between the reads of one sample,
     * which would count some of them more than once. */
    if (shm) check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
    struct sampler s = {0};
    pthread_t th;
    if (pthread_create(&th, NULL, sample, &s)) die("pthread_create");
    usleep(20000);
    /* Small maps are repeated for at least 0.2 s so that the sampler sees them running. */
    double t0 = now_s(), dt = 0;
    do {
        if (imap) {
            pool_iter_t *it = pool_imap(pool, square, in, sizeof(long), sizeof(long), n, NULL, NULL);
            if (!it) check(pool_last_status(), "pool_imap");
            size_t got = 0, idx;
            long y;
            int st;
            while ((st = pool_iter_next(it, &y, &idx, -1)) == POOL_OK) {
                if (idx != got || y != (long)idx * (long)idx) die("W7 imap: wrong result");
                got++;
            }
            if (st != POOL_EDONE || got != n) check(st, "pool_iter_next");
            pool_iter_free(it);
        } else {
            check(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), "pool_map");
        }
        if (dt == 0) dt = now_s() - t0;
    } while (now_s() - t0 < 0.2);
    usleep(20000);
    atomic_store(&s.stop, 1);
    pthread_join(th, NULL);
    for (size_t i = 0; out && i < n; i++)
        if (out[i] != (long)i * (long)i) die("W7: wrong result");
    double buffers_kib = (imap ? 1.0 : 2.0) * n * sizeof(long) / 1024.0;
    char key[96];
#define R(name, v)                                                          \
    do {                                                                    \
        snprintf(key, sizeof key, "w7.pool.%s.%zu.%s", order, n, name);     \
        result(key, v);                                                     \
    } while (0)
    R("buffers_mib", buffers_kib / 1024.0);
    R("peak_pss_mib", s.peak_pss / 1024.0);
    R("peak_rss_sum_mib", s.peak_rss / 1024.0);
    R("extra_mib", (s.peak_pss - buffers_kib) / 1024.0);
    R("peak_pool_procs_pss_mib", s.peak_others_pss / 1024.0);
    R("host_baseline_pss_mib", base_pss / 1024.0);
    R("map_seconds", dt);
    R("samples", (double)s.samples);
#undef R
    if (shm) {
        check(pool_shm_free(pool, in), "pool_shm_free");
        check(pool_shm_free(pool, out), "pool_shm_free");
    } else {
        free(in);
        free(out);
    }
    pool_destroy(pool);
}

/* ---- WS: the sandbox's cost ----------------------------------------------------------------- */
/* Plain and sandboxed (POOL_SANDBOX_COMPUTE) pools, the latter with a fresh process for every
 * task (the default) and with one process for all tasks (sandbox_tasks_per_process), each round
 * in a rotating order, `rounds` times: pool_create -> first result (start-up), W2's round trip
 * p50 over 2,000 calls, W3's rate over 20,000 apply_async. Per contender: the median over rounds
 * and the spread (min..max); the ratios sandboxed / plain of the medians. */
enum { WS_CONTENDERS = 3 };
static void ws(int rounds) {
    enum { CALLS = 2000, N3 = 20000 };
    const char *name[WS_CONTENDERS] = {"plain", "sandbox", "sandbox_reuse"};
    double *start[WS_CONTENDERS], *p50[WS_CONTENDERS], *rate[WS_CONTENDERS];
    for (int c = 0; c < WS_CONTENDERS; c++) {
        start[c] = calloc(rounds, sizeof(double));
        p50[c] = calloc(rounds, sizeof(double));
        rate[c] = calloc(rounds, sizeof(double));
    }
    long *in = alloc_longs(N3, 0), *out = alloc_longs(N3, 1);
    pool_async_t **h = calloc(N3, sizeof *h);
    for (size_t i = 0; i < N3; i++) in[i] = (long)i;
    for (int r = 0; r < rounds; r++) {
        for (int k = 0; k < WS_CONTENDERS; k++) {
            int c = (r + k) % WS_CONTENDERS; /* rotate which contender runs first */
            pool_options_t o;
            pool_options_init(&o);
            o.sandbox = c ? POOL_SANDBOX_COMPUTE : POOL_SANDBOX_NONE;
            if (c == 2) o.sandbox_tasks_per_process = 1ul << 40;
            double t0 = now_s();
            pool_t *pool = pool_create(WORKERS, &o);
            if (!pool) check(pool_last_status(), "pool_create");
            long x = 3, y = 0;
            check(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), "pool_apply");
            start[c][r] = now_s() - t0;
            if (y != 9) die("WS: wrong result");
            p50[c][r] = w2_calls(pool, square, NULL, 0, CALLS, 1).p50;
            double t1 = now_s();
            for (size_t i = 0; i < N3; i++) {
                h[i] = pool_apply_async(pool, square, &in[i], sizeof(long), &out[i], sizeof(long), NULL);
                if (!h[i]) check(pool_last_status(), "pool_apply_async");
            }
            for (size_t i = 0; i < N3; i++) {
                check(pool_async_get(h[i], -1), "pool_async_get");
                pool_async_free(h[i]);
            }
            rate[c][r] = N3 / (now_s() - t1);
            for (size_t i = 0; i < N3; i++)
                if (out[i] != (long)i * (long)i) die("WS: wrong W3 result");
            pool_destroy(pool);
        }
    }
    char key[96];
    for (int c = 0; c < WS_CONTENDERS; c++) {
        struct { const char *what; double *v; } f[3] = {{"start_s", start[c]}, {"w2_p50_s", p50[c]}, {"w3_tasks_per_s", rate[c]}};
        for (int i = 0; i < 3; i++) {
            snprintf(key, sizeof key, "ws.%s.%s", name[c], f[i].what);
            result(key, median(f[i].v, rounds));
            snprintf(key, sizeof key, "ws.%s.%s.min", name[c], f[i].what);
            result(key, quantile(f[i].v, rounds, 0));
            snprintf(key, sizeof key, "ws.%s.%s.max", name[c], f[i].what);
            result(key, quantile(f[i].v, rounds, 1));
        }
    }
    result("ws.ratio.start", median(start[1], rounds) / median(start[0], rounds));
    result("ws.ratio.w2_p50", median(p50[1], rounds) / median(p50[0], rounds));
    result("ws.ratio.w3_rate", median(rate[1], rounds) / median(rate[0], rounds));
    result("ws.ratio_reuse.start", median(start[2], rounds) / median(start[0], rounds));
    result("ws.ratio_reuse.w2_p50", median(p50[2], rounds) / median(p50[0], rounds));
    result("ws.ratio_reuse.w3_rate", median(rate[2], rounds) / median(rate[0], rounds));
    result("ws.diag.rounds", rounds);
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: bench_pool w1|w2|w3|w4|w5|w6|w7|ws ARGS (see the source)");
    const char *w = argv[1];
    long a = argc > 2 ? atol(argv[2]) : 0;
    long b = argc > 3 ? atol(argv[3]) : 0;
    if (!strcmp(w, "w1")) w1((size_t)a, (int)b);
    else if (!strcmp(w, "w2")) w2((int)a, (int)b);
    else if (!strcmp(w, "w3")) w3((size_t)a, (int)b);
    else if (!strcmp(w, "w4")) w4((unsigned long)a, (int)b);
    else if (!strcmp(w, "w5")) w5((int)a);
    else if (!strcmp(w, "w6")) w6((size_t)a, (int)b);
    else if (!strcmp(w, "w7")) w7((size_t)a, argc > 3 ? argv[3] : "pool-first");
    else if (!strcmp(w, "ws")) ws((int)a);
    else die("unknown workload");
    return 0;
}
