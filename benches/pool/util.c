/* Helpers shared by the workloads of bench_pool (see bench.h). */
#include "bench.h"
#include <dirent.h>
#include <sys/resource.h>
#include <unistd.h>

void check(int st, const char *what) {
    if (st != POOL_OK) {
        fprintf(stderr, "bench_pool: %s: %s (%s)\n", what, pool_strerror(st), pool_last_error());
        exit(1);
    }
}

pool_t *make_pool(void) {
    pool_t *p = pool_create(WORKERS, NULL);
    if (!p) {
        fprintf(stderr, "bench_pool: pool_create: %s\n", pool_last_error());
        exit(1);
    }
    return p;
}

long *alloc_longs(size_t n, int touch) {
    long *p = malloc(n * sizeof(long));
    if (!p) die("out of memory");
    if (touch) memset(p, 0xff, n * sizeof(long)); /* not 0: gcc would turn malloc+memset 0 into calloc */
    return p;
}

int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

long arg(int argc, char **argv, int i, long dflt) {
    return i < argc ? atol(argv[i]) : dflt;
}

void skip(const char *key, const char *why) {
    printf("SKIP %s %s\n", key, why);
    fflush(stdout);
}

/* ---- CPU time ---------------------------------------------------------------------------------- */
static double clock_s(clockid_t c) {
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double thread_cpu_s(void) {
    return clock_s(CLOCK_THREAD_CPUTIME_ID);
}

double process_cpu_s(void) {
    return clock_s(CLOCK_PROCESS_CPUTIME_ID);
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

int family(int root, int *out, int max) {
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

void probe_start(struct cpu_probe *p) {
    thread_cpu(&p->hu, &p->hs);
    pool_cpu(&p->wu, &p->ws);
    p->wall = now_s();
}

void probe_stop(struct cpu_probe *p, int reps) {
    double hu, hs, wu, ws;
    p->wall = (now_s() - p->wall) / reps;
    thread_cpu(&hu, &hs);
    pool_cpu(&wu, &ws);
    p->hu = (hu - p->hu) / reps;
    p->hs = (hs - p->hs) / reps;
    p->wu = (wu - p->wu) / reps;
    p->ws = (ws - p->ws) / reps;
}

void probe_report(const char *prefix, const struct cpu_probe *p) {
    char key[96];
    snprintf(key, sizeof key, "%s.wall_s", prefix), result(key, p->wall);
    snprintf(key, sizeof key, "%s.host_user_s", prefix), result(key, p->hu);
    snprintf(key, sizeof key, "%s.host_sys_s", prefix), result(key, p->hs);
    snprintf(key, sizeof key, "%s.workers_user_s", prefix), result(key, p->wu);
    snprintf(key, sizeof key, "%s.workers_sys_s", prefix), result(key, p->ws);
}

/* ---- W2's round trip ------------------------------------------------------------------------------ */
static pool_async_t *submit(pool_t *pool, pool_fn fn, long *x, long *y, void *ctx, size_t ctx_size) {
    if (ctx_size == 0) return pool_apply_async(pool, fn, x, sizeof *x, y, sizeof *y, ctx);
#ifdef HAVE_CALL_OPTIONS
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.ctx_size = ctx_size;
    return pool_apply_async_ex(pool, fn, x, sizeof *x, y, sizeof *y, ctx, &co);
#else
    die("w2_calls: a copied ctx needs pool_apply_async_ex");
    return NULL;
#endif
}

struct w2_figures w2_calls(pool_t *pool, pool_fn fn, void *ctx, size_t ctx_size, int calls) {
    double *lat = calloc(calls, sizeof *lat), *sub = calloc(calls, sizeof *sub);
    if (!lat || !sub) die("out of memory");
    struct w2_figures f = {0, 0, 0, 0};
    for (int pass = 0; pass < 2; pass++) { /* pass 0 is a warm-up */
        for (int i = 0; i < calls; i++) {
            long x = i + 1, y = 0;
            double t0 = now_s();
            pool_async_t *a = submit(pool, fn, &x, &y, ctx, ctx_size);
            sub[i] = now_s() - t0;
            if (!a) check(pool_last_status(), "pool_apply_async");
            check(pool_async_get(a, -1), "pool_async_get");
            pool_async_free(a);
            lat[i] = now_s() - t0;
            if (y != x * x) die("W2: wrong result");
        }
    }
    f.p50 = quantile(lat, calls, 0.50); /* sorts lat */
    f.worst = lat[calls - 1];
    f.p99 = quantile(lat, calls, 0.99);
    f.submit_p50 = quantile(sub, calls, 0.50);
    free(lat);
    free(sub);
    return f;
}
