/* W8: libpool over MPI ranks against a local libpool pool (and, in bench_mpi4py.py, against
 * mpi4py.futures doing the same work). One worker per rank, so that "4 ranks" and "a local pool
 * of 4 workers" have the same number of workers.
 *   mpirun -np K bench_mpi mpi      libpool_mpi over K ranks (keys mpi.npK.*)
 *   bench_mpi local K               a local pool of K workers, no MPI (keys mpi.local.*)
 * Figures:
 *   map_items_per_s     pool_map of 1e6 longs (square), automatic chunks, median of 5
 *   rt_p50_s            pool_apply round trip, median over 2000 calls (as scheduled: the root's
 *                       own worker takes most of them)
 *   remote_rt_p50_s     the same while the root's worker is kept busy: every call goes to
 *                       another rank and back (MPI only)
 *   cpu_items_per_s     400 items of ~2 ms of CPU each, chunksize 1: how work spreads over ranks */
#define _GNU_SOURCE
#include <mpi.h>
#include <pool_mpi.h>
#include <stdint.h>
#include <unistd.h>

#include "common.h"

#define CPU_ITERS 2000000UL

static int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* About 2 ms of CPU (benches/common.h's busy loop). */
static int cpu_task(const void *in, void *out, void *ctx) {
    (void)ctx;
    *(long *)out = (long)busy(CPU_ITERS, (unsigned long)*(const long *)in);
    return 0;
}

/* Occupies a worker; on the root it says so through the event in ctx (on other ranks the
 * event is not theirs and the call fails harmlessly). */
static int sleeper(const void *in, void *out, void *ctx) {
    (void)in; (void)out;
    pool_event_set(*(pool_event_t *const *)ctx);
    sleep(3600);
    return 0;
}

static void check(int st, const char *what) {
    if (st != POOL_OK) {
        fprintf(stderr, "bench_mpi: %s: %s\n", what, pool_last_error());
        exit(1);
    }
}

static void measure(pool_t *pool, const char *prefix, int remote) {
    char key[128];
    enum { N = 1000000, CALLS = 2000, CPU = 400 };
    static long in[N], out[N];
    for (long i = 0; i < N; i++) in[i] = i;
    double t[5];
    for (int r = 0; r < 5; r++) {
        double t0 = now_s();
        check(pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], N, NULL), "map");
        t[r] = now_s() - t0;
        for (long i = 0; i < N; i += 9973)
            if (out[i] != i * i) die("wrong map result");
    }
    snprintf(key, sizeof key, "%s.map_items_per_s", prefix);
    result(key, N / median(t, 5));

    static double lat[CALLS];
    for (int i = 0; i < CALLS; i++) {
        long x = i, y = 0;
        double t0 = now_s();
        check(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), "apply");
        lat[i] = now_s() - t0;
        if (y != x * x) die("wrong apply result");
    }
    snprintf(key, sizeof key, "%s.rt_p50_s", prefix);
    result(key, median(lat, CALLS));

    if (remote) {
        /* Occupy the root's own worker, so that every call goes to another rank: hogs until
         * one runs on the root (it says so through its own event); the others, sent to other
         * ranks, are cancelled so that no call waits behind them there. */
        long x = 0;
        pool_event_t *on_root[8];
        pool_async_t *hogs[8];
        int nh = 0, root_hog = -1;
        pool_call_options_t co;
        pool_call_options_init(&co);
        co.ctx_size = sizeof(pool_event_t *);
        while (nh < 8 && root_hog < 0) {
            on_root[nh] = pool_event_create();
            hogs[nh] = pool_apply_async_ex(pool, sleeper, &x, sizeof x, NULL, 0, &on_root[nh], &co);
            if (pool_event_wait(on_root[nh], 0.3) == POOL_OK) root_hog = nh;
            nh++;
        }
        for (int i = 0; i < nh; i++)
            if (i != root_hog) pool_async_cancel(hogs[i]);
        for (int i = 0; i < CALLS; i++) {
            long y = 0, v = i;
            double t0 = now_s();
            check(pool_apply(pool, square, &v, sizeof v, &y, sizeof y, NULL), "remote apply");
            lat[i] = now_s() - t0;
        }
        snprintf(key, sizeof key, "%s.remote_rt_p50_s", prefix);
        result(key, median(lat, CALLS));
        for (int i = 0; i < nh; i++) {
            pool_async_cancel(hogs[i]);
            pool_async_free(hogs[i]);
            pool_event_free(on_root[i]);
        }
    }

    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 1;
    double t0 = now_s();
    check(pool_map_ex(pool, cpu_task, in, sizeof in[0], out, sizeof out[0], CPU, NULL, &mo), "cpu map");
    snprintf(key, sizeof key, "%s.cpu_items_per_s", prefix);
    result(key, CPU / (now_s() - t0));
}

int main(int argc, char **argv) {
    setvbuf(stdout, NULL, _IONBF, 0);
    if (argc > 2 && strcmp(argv[1], "local") == 0) {
        pool_t *pool = pool_create(atoi(argv[2]), NULL);
        if (!pool) die(pool_last_error());
        measure(pool, "mpi.local", 0);
        pool_destroy(pool);
        return 0;
    }
    int provided, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    pool_t *pool = pool_create_mpi(MPI_COMM_WORLD, 0, 1, NULL);
    if (pool) {
        char prefix[32];
        snprintf(prefix, sizeof prefix, "mpi.np%d", size);
        measure(pool, prefix, size > 1);
        pool_destroy(pool);
    } else if (pool_last_status() != POOL_EDONE) {
        die(pool_last_error());
    }
    MPI_Finalize();
    return 0;
}
