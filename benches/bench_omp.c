/* OpenMP (2 threads: the shared-memory limit) and serial C side of the benchmark. Usage:
 *   bench_omp calib               iterations of busy() that take ~10 ms on one core
 *   bench_omp w1 N REPS           squares over N longs: serial and OpenMP (+ peak RSS)
 *   bench_omp w2 CALLS RUNS       round trip between two threads spinning on a flag
 *   bench_omp w3 N REPS           N OpenMP tasks created, then waited for
 *   bench_omp w4 ITERS REPS       64 tasks of busy(ITERS): serial and OpenMP
 *   bench_omp w5 REPS             256 x 1 MiB transform: serial and OpenMP
 *   bench_omp w6                  time to the end of the first parallel region (fresh process)
 * Figures go to stdout as "RESULT key value"; every result is checked. */
#define _GNU_SOURCE
#include "common.h"
#include <omp.h>
#include <stdatomic.h>

#define THREADS 2

static __attribute__((noinline)) void square_one(const long *in, long *out) {
    *out = *in * *in;
}

static long vm_hwm_kib(void) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long v = 0;
    while (f && fgets(line, sizeof line, f))
        if (!strncmp(line, "VmHWM:", 6)) v = atol(line + 6);
    if (f) fclose(f);
    return v;
}

static void calib(void) {
    double best = 1e9;
    unsigned long it = 2000000;
    for (int i = 0; i < 7; i++) {
        double t0 = now_s();
        volatile unsigned long x = busy(it, (unsigned long)i);
        (void)x;
        double dt = now_s() - t0;
        if (dt < best) best = dt;
    }
    printf("%lu\n", (unsigned long)(it * 0.010 / best));
}

static void w1(size_t n, int reps) {
    long base = vm_hwm_kib();
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    if (!in || !out) die("out of memory");
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    memset(out, 0xff, n * sizeof(long));
    double *ts = calloc(reps, sizeof *ts), *to = calloc(reps, sizeof *to);
    for (int r = -1; r < reps; r++) {
        memset(out, 0xff, n * sizeof(long));
        double t0 = now_s();
        for (size_t i = 0; i < n; i++) out[i] = in[i] * in[i];
        double dt = now_s() - t0;
        if (r >= 0) ts[r] = dt;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W1 serial: wrong result");

        memset(out, 0xff, n * sizeof(long));
        t0 = now_s();
#pragma omp parallel for schedule(static) num_threads(THREADS)
        for (size_t i = 0; i < n; i++) out[i] = in[i] * in[i];
        dt = now_s() - t0;
        if (r >= 0) to[r] = dt;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W1 OpenMP: wrong result");
    }
    char key[64];
    snprintf(key, sizeof key, "w1.serial.%zu.items_per_s", n);
    result(key, (double)n / median(ts, reps));
    snprintf(key, sizeof key, "w1.omp.%zu.items_per_s", n);
    result(key, (double)n / median(to, reps));
    snprintf(key, sizeof key, "w7.omp.%zu.extra_mib", n);
    result(key, (vm_hwm_kib() - 2.0 * n * sizeof(long) / 1024.0) / 1024.0);
    (void)base;
    free(in);
    free(out);
    free(ts);
    free(to);
}

/* Two threads hand a value back and forth through a spinning flag: the floor of a round trip
 * between two cores. */
static void w2(int calls, int runs) {
    double *lat = calloc(calls, sizeof *lat), *p50 = calloc(runs, sizeof *p50), *p99 = calloc(runs, sizeof *p99);
    for (int r = 0; r < runs; r++) {
        _Atomic long req = 0, resp = 0;
#pragma omp parallel num_threads(THREADS)
        {
            if (omp_get_thread_num() == 1) {
                for (long i = 1; i <= calls; i++) {
                    long x;
                    while ((x = atomic_load_explicit(&req, memory_order_acquire)) != i) __builtin_ia32_pause();
                    atomic_store_explicit(&resp, x * x, memory_order_release);
                }
            } else {
                for (long i = 1; i <= calls; i++) {
                    double t0 = now_s();
                    atomic_store_explicit(&req, i, memory_order_release);
                    while (atomic_load_explicit(&resp, memory_order_acquire) != i * i) __builtin_ia32_pause();
                    lat[i - 1] = now_s() - t0;
                }
            }
        }
        p50[r] = quantile(lat, calls, 0.50);
        p99[r] = quantile(lat, calls, 0.99);
    }
    result("w2.omp.p50_s", median(p50, runs));
    result("w2.omp.p99_s", median(p99, runs));
    free(lat);
    free(p50);
    free(p99);
}

static void w3(size_t n, int reps) {
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    double *t = calloc(reps, sizeof *t);
    for (size_t i = 0; i < n; i++) in[i] = (long)i;
    for (int r = -1; r < reps; r++) {
        memset(out, 0xff, n * sizeof(long));
        double t0 = now_s();
#pragma omp parallel num_threads(THREADS)
#pragma omp single
        {
            for (size_t i = 0; i < n; i++) {
#pragma omp task firstprivate(i)
                square_one(&in[i], &out[i]);
            }
#pragma omp taskwait
        }
        double dt = now_s() - t0;
        if (r >= 0) t[r] = dt;
        for (size_t i = 0; i < n; i++)
            if (out[i] != (long)i * (long)i) die("W3 OpenMP: wrong result");
    }
    result("w3.omp.tasks_per_s", (double)n / median(t, reps));
    free(in);
    free(out);
    free(t);
}

#define W4_TASKS 64
static void w4(unsigned long iters, int reps) {
    unsigned long out[W4_TASKS], want[W4_TASKS];
    double *ts = calloc(reps, sizeof *ts), *to = calloc(reps, sizeof *to), *tt = calloc(reps, sizeof *tt);
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        for (int i = 0; i < W4_TASKS; i++) want[i] = busy(iters, (unsigned long)i + 1);
        ts[r] = now_s() - t0;
        tt[r] = ts[r] / W4_TASKS;

        memset(out, 0, sizeof out);
        t0 = now_s();
#pragma omp parallel for schedule(dynamic, 1) num_threads(THREADS)
        for (int i = 0; i < W4_TASKS; i++) out[i] = busy(iters, (unsigned long)i + 1);
        to[r] = now_s() - t0;
        if (memcmp(out, want, sizeof out)) die("W4 OpenMP: wrong result");
    }
    result("w4.serial.seconds", median(ts, reps));
    result("w4.serial.task_ms", 1e3 * median(tt, reps));
    result("w4.omp.seconds", median(to, reps));
    free(ts);
    free(to);
    free(tt);
}

#define W5_TASKS 256
#define MIB (1UL << 20)
static void w5(int reps) {
    unsigned char *in = malloc(W5_TASKS * MIB), *out = malloc(W5_TASKS * MIB), *want = malloc(W5_TASKS * MIB);
    if (!in || !out || !want) die("out of memory");
    for (int i = 0; i < W5_TASKS; i++) fill_pattern(in + i * MIB, MIB, (unsigned)i);
    xor_bytes(in, want, W5_TASKS * MIB);
    double *ts = calloc(reps, sizeof *ts), *to = calloc(reps, sizeof *to);
    memset(out, 0xff, W5_TASKS * MIB);
    for (int r = -1; r < reps; r++) {
        memset(out, 0, W5_TASKS * MIB);
        double t0 = now_s();
        for (int i = 0; i < W5_TASKS; i++) xor_bytes(in + i * MIB, out + i * MIB, MIB);
        double dt = now_s() - t0;
        if (r >= 0) ts[r] = dt;
        if (memcmp(out, want, W5_TASKS * MIB)) die("W5 serial: wrong result");

        memset(out, 0, W5_TASKS * MIB);
        t0 = now_s();
#pragma omp parallel for schedule(dynamic, 1) num_threads(THREADS)
        for (int i = 0; i < W5_TASKS; i++) xor_bytes(in + i * MIB, out + i * MIB, MIB);
        dt = now_s() - t0;
        if (r >= 0) to[r] = dt;
        if (memcmp(out, want, W5_TASKS * MIB)) die("W5 OpenMP: wrong result");
    }
    result("w5.serial.gb_per_s", W5_TASKS * MIB / median(ts, reps) / 1e9);
    result("w5.omp.gb_per_s", W5_TASKS * MIB / median(to, reps) / 1e9);
    free(in);
    free(out);
    free(want);
    free(ts);
    free(to);
}

static void w6(void) {
    _Atomic int seen = 0;
    double t0 = now_s();
#pragma omp parallel num_threads(THREADS)
    atomic_fetch_add(&seen, 1);
    double dt = now_s() - t0;
    if (seen != THREADS) die("W6 OpenMP: wrong thread count");
    result("w6.omp.0.first_s", dt);
}

int main(int argc, char **argv) {
    if (argc < 2) die("usage: bench_omp calib|w1|w2|w3|w4|w5|w6 ARGS (see the source)");
    const char *w = argv[1];
    long a = argc > 2 ? atol(argv[2]) : 0;
    long b = argc > 3 ? atol(argv[3]) : 0;
    if (!strcmp(w, "calib")) calib();
    else if (!strcmp(w, "w1")) w1((size_t)a, (int)b);
    else if (!strcmp(w, "w2")) w2((int)a, (int)b);
    else if (!strcmp(w, "w3")) w3((size_t)a, (int)b);
    else if (!strcmp(w, "w4")) w4((unsigned long)a, (int)b);
    else if (!strcmp(w, "w5")) w5((int)a);
    else if (!strcmp(w, "w6")) w6();
    else die("unknown workload");
    return 0;
}
