/* W7: peak memory of the host and its descendants during a map.
 *   bench_pool w7 N ORDER   ORDER: pool-first (malloc'd buffers allocated after pool_create),
 *                           buffers-first (allocated and touched before it), shm (buffers from
 *                           pool_shm_alloc), imap (pool_imap: no output array; the results are
 *                           read one at a time) */
#include "bench.h"
#include <pthread.h>
#include <stdatomic.h>
#include <unistd.h>

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

void w7_main(int argc, char **argv) {
    size_t n = (size_t)arg(argc, argv, 1, 1000000);
    const char *order = argc > 2 ? argv[2] : "pool-first";
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

