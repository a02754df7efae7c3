/* WC: completion latency, from a task's return to the host seeing its result.
 *   bench_pool wc TASKS TASK_US ROUND
 * One task at a time on an idle pool of 2 workers. The task sleeps TASK_US (so that the host has
 * gone past any spinning and waits as it does for real work), then writes the CLOCK_MONOTONIC
 * time into its result and returns; the host notes the time it sees the result. Four ways of
 * seeing it, TASKS tasks each, interleaved in blocks of 50 (the first rotating with ROUND):
 *   get        pool_async_get(a, -1)
 *   any1       pool_async_wait_any on that one handle
 *   any8       pool_async_wait_any on 8 handles, the task's last: the 7 others are tasks of a
 *              second pool (1 worker) that do not end before the run does (one runs, sleeping,
 *              six wait in its queue), so every look at the handles goes through all 8
 *   callback   a completion callback (pool_call_options_t.callback), which notes the time
 * Keys wc.<way>.{p50_s,p99_s} (latency), wc.<way>.wait_cpu_s (CPU of the thread that waited, per
 * completion: the calling thread during the wait; for callbacks every thread of the host but the
 * calling one, i.e. the pool's callback thread), wc.<way>.host_cpu_s (all the host's threads per
 * task, submission included). */
#include "bench.h"
#include <errno.h>
#include <semaphore.h>
#include <stdatomic.h>

enum { GET, ANY1, ANY8, CALLBACK, WAYS, BLOCK = 50, OTHERS = 7 };
static const char *const way_name[WAYS] = {"get", "any1", "any8", "callback"};

static void sleep_us(long us) {
    struct timespec ts = {us / 1000000, (us % 1000000) * 1000};
    while (nanosleep(&ts, &ts) && errno == EINTR) {
    }
}

/* Sleeps *in microseconds, then returns the time it returns at. */
static int stamp_task(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_us(*(const long *)in);
    *(double *)out = now_s();
    return 0;
}

/* Runs until *ctx (in the blocker pool's shared memory) is set. */
static int blocker_task(const void *in, void *out, void *ctx) {
    (void)in;
    (void)out;
    while (!atomic_load((atomic_int *)ctx)) sleep_us(2000);
    return 0;
}

struct way {
    double *lat, wait_cpu, host_cpu;
    int n;
};

#ifdef HAVE_CALLBACK
struct seen {
    sem_t done;
    double at;
};

static void on_done(pool_async_t *a, int status, void *arg) {
    (void)a;
    (void)status; /* the caller checks it with pool_async_get */
    struct seen *s = arg;
    s->at = now_s();
    sem_post(&s->done);
}

static double by_callback(pool_t *pool, long *us, double *stamp, struct seen *s) {
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.callback = on_done;
    co.callback_arg = s;
    pool_async_t *a = pool_apply_async_ex(pool, stamp_task, us, sizeof *us, stamp, sizeof *stamp, NULL, &co);
    if (!a) check(pool_last_status(), "pool_apply_async_ex");
    while (sem_wait(&s->done) && errno == EINTR) {
    }
    check(pool_async_get(a, 0), "pool_async_get (callback)");
    pool_async_free(a);
    return s->at;
}
#endif

/* One task seen by way w (not the callback); returns when it was seen. */
static double by_wait(pool_t *pool, int w, long *us, double *stamp, pool_async_t **hs, double *cpu) {
    pool_async_t *a = pool_apply_async(pool, stamp_task, us, sizeof *us, stamp, sizeof *stamp, NULL);
    if (!a) check(pool_last_status(), "pool_apply_async");
    double c0 = thread_cpu_s(), seen;
    if (w == GET) {
        check(pool_async_get(a, -1), "pool_async_get");
        seen = now_s();
    } else {
#ifdef HAVE_WAIT_ANY
        size_t idx = 0, n = w == ANY8 ? OTHERS + 1 : 1;
        if (w == ANY8) hs[OTHERS] = a;
        check(pool_async_wait_any(w == ANY8 ? hs : &a, n, -1, &idx), "pool_async_wait_any");
        seen = now_s();
        if (idx != n - 1) die("WC: wait_any saw a blocker end");
        check(pool_async_get(a, 0), "pool_async_get");
#else
        (void)hs;
        die("WC: no pool_async_wait_any");
#endif
    }
    *cpu += thread_cpu_s() - c0;
    pool_async_free(a);
    return seen;
}

static int available(int w) {
#ifndef HAVE_WAIT_ANY
    if (w == ANY1 || w == ANY8) return 0;
#endif
#ifndef HAVE_CALLBACK
    if (w == CALLBACK) return 0;
#endif
    (void)w;
    return 1;
}

/* A block of n tasks seen by way w. */
static void block(pool_t *pool, int w, int n, long us, pool_async_t **hs, struct way *r) {
    double c0 = thread_cpu_s(), p0 = process_cpu_s(), cpu = 0;
#ifdef HAVE_CALLBACK
    struct seen s;
    if (w == CALLBACK && sem_init(&s.done, 0, 0)) die("sem_init");
#endif
    for (int i = 0; i < n; i++) {
        double stamp = 0, seen = 0;
#ifdef HAVE_CALLBACK
        if (w == CALLBACK) seen = by_callback(pool, &us, &stamp, &s);
#endif
        if (w != CALLBACK) seen = by_wait(pool, w, &us, &stamp, hs, &cpu);
        if (stamp == 0) die("WC: the task wrote no time");
        r->lat[r->n++] = seen - stamp;
    }
    double main_cpu = thread_cpu_s() - c0, all = process_cpu_s() - p0;
    r->wait_cpu += w == CALLBACK ? all - main_cpu : cpu;
    r->host_cpu += all;
#ifdef HAVE_CALLBACK
    if (w == CALLBACK) sem_destroy(&s.done);
#endif
}

void wc_main(int argc, char **argv) {
    int tasks = (int)arg(argc, argv, 1, 500), round = (int)arg(argc, argv, 3, 0);
    long us = arg(argc, argv, 2, 1000);
    pool_t *pool = make_pool();
    struct way r[WAYS];
    for (int w = 0; w < WAYS; w++) {
        r[w] = (struct way){calloc(tasks + BLOCK, sizeof(double)), 0, 0, 0};
        if (!r[w].lat) die("out of memory");
    }
    /* The 7 handles that stay pending: tasks of a second pool that run until released. */
    pool_async_t *hs[OTHERS + 1];
    pool_t *other = pool_create(1, NULL);
    if (!other) check(pool_last_status(), "pool_create (blockers)");
    atomic_int *release = pool_shm_alloc(other, sizeof *release);
    if (!release) check(pool_last_status(), "pool_shm_alloc");
    atomic_store(release, 0);
    for (int i = 0; i < OTHERS; i++)
        if (!(hs[i] = pool_apply_async(other, blocker_task, NULL, 0, NULL, 0, release))) check(pool_last_status(), "blocker");
    struct way warm = {r[GET].lat, 0, 0, 0};
    block(pool, GET, 20, us, hs, &warm);
    for (int done = 0; done < tasks; done += BLOCK)
        for (int k = 0; k < WAYS; k++) {
            int w = (round + done / BLOCK + k) % WAYS;
            if (available(w)) block(pool, w, tasks - done < BLOCK ? tasks - done : BLOCK, us, hs, &r[w]);
        }
    atomic_store(release, 1);
    for (int i = 0; i < OTHERS; i++) {
        check(pool_async_get(hs[i], -1), "blocker");
        pool_async_free(hs[i]);
    }
    char key[64];
    for (int w = 0; w < WAYS; w++) {
        snprintf(key, sizeof key, "wc.%s.p50_s", way_name[w]);
        if (!available(w)) {
            skip(key, w == CALLBACK ? "no completion callbacks in this library" : "no pool_async_wait_any in this library");
        } else {
            result(key, quantile(r[w].lat, r[w].n, 0.5));
            snprintf(key, sizeof key, "wc.%s.p99_s", way_name[w]), result(key, quantile(r[w].lat, r[w].n, 0.99));
            snprintf(key, sizeof key, "wc.%s.wait_cpu_s", way_name[w]), result(key, r[w].wait_cpu / r[w].n);
            snprintf(key, sizeof key, "wc.%s.host_cpu_s", way_name[w]), result(key, r[w].host_cpu / r[w].n);
        }
        free(r[w].lat);
    }
    result("wc.diag.task_us", (double)us);
    pool_destroy(other);
    pool_destroy(pool);
}
