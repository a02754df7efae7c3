/* One pool shared by several host threads; per-thread pool_last_error; several waiters on one
 * handle; terminate from another thread; using a pool from a task or a child (an error, never
 * a hang). */
#include "check.h"

#include <pthread.h>

#define THREADS 4
#define APPLIES 200
#define MAP_N 5000

/* Assigned after pool_create: a worker's snapshot of memory still has NULL here. */
static pool_t *global_pool;

static int slow_square(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_s(0.005);
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    return pool_out_write(in, len);
}

/* A task using the pool from inside a worker: writes the statuses it got. */
struct nested_result {
    int apply_st, map_st, apply_async_null, close_st;
};
static int nested(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    struct nested_result *r = out;
    long x = 3, y = 0;
    r->apply_st = pool_apply(global_pool, square, &x, sizeof x, &y, sizeof y, NULL);
    r->map_st = pool_map(global_pool, square, &x, sizeof x, &y, sizeof y, 1, NULL);
    pool_async_t *a = pool_apply_async(global_pool, square, &x, sizeof x, &y, sizeof y, NULL);
    r->apply_async_null = a == NULL;
    pool_async_free(a);
    r->close_st = pool_close(global_pool);
    return 0;
}

/* A child process using its parent's pool (the pointer is valid memory there). */
static int child_uses_pool(void *arg) {
    (void)arg;
    long x = 3, y = 0;
    int st = pool_apply(global_pool, square, &x, sizeof x, &y, sizeof y, NULL);
    if (st == POOL_OK) return 100;
    if (pool_map(global_pool, square, &x, sizeof x, &y, sizeof y, 1, NULL) == POOL_OK) return 101;
    if (pool_apply_async(global_pool, square, &x, sizeof x, &y, sizeof y, NULL) != NULL) return 102;
    if (pool_close(global_pool) == POOL_OK) return 103;  /* must not close the parent's pool */
    if (pool_terminate(global_pool) == POOL_OK) return 104;
    return st;
}

struct worker_arg {
    int id;
    pool_async_t *shared; /* a slow handle all threads wait on */
    long *shared_out;
};

static void *host_thread(void *p) {
    struct worker_arg *w = p;
    const char *e = pool_last_error();
    if (!(e && e[0] == '\0')) {
        fprintf(stderr, "  thread %d starts with pool_last_error() = \"%s\"\n", w->id, e ? e : "(null)");
        CHECK(!"a new thread's pool_last_error() is empty");
    }

    /* Everyone waits on the same handle. */
    CHECK_ST(pool_async_get(w->shared, guard_s(10)), POOL_OK); /* 0.3 s task */
    CHECK_EQ(*w->shared_out, 42);

    long in[APPLIES], out[APPLIES];
    pool_async_t *h[APPLIES];
    for (int i = 0; i < APPLIES; i++) {
        in[i] = w->id * 100000L + i;
        out[i] = -1;
        h[i] = pool_apply_async(global_pool, square, &in[i], sizeof in[i], &out[i], sizeof out[i], NULL);
        CHECK(h[i] != NULL);
    }
    for (int i = 0; i < APPLIES; i++) {
        if (!h[i]) continue;
        CHECK_ST(pool_async_get(h[i], guard_s(30)), POOL_OK);
        pool_async_free(h[i]);
        if (out[i] != in[i] * in[i]) CHECK_EQ(out[i], in[i] * in[i]);
    }

    /* The same, one apply at a time. */
    for (int i = 0; i < 50; i++) {
        long x = w->id * 7 + i, y = -1;
        pool_async_t *a = pool_apply_async(global_pool, square, &x, sizeof x, &y, sizeof y, NULL);
        CHECK(a != NULL);
        if (!a) continue;
        CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
        pool_async_free(a);
        if (y != x * x) CHECK_EQ(y, x * x);
    }

    long *min = malloc(MAP_N * sizeof(long)), *mout = malloc(MAP_N * sizeof(long));
    REQUIRE(min && mout);
    for (int round = 0; round < 3; round++) {
        for (long i = 0; i < MAP_N; i++) min[i] = i + w->id * 10 + round, mout[i] = -1;
        if (round == 1) {
            pool_async_t *m = pool_map_async(global_pool, square, min, sizeof(long), mout, sizeof(long), MAP_N, NULL);
            CHECK(m != NULL);
            if (m) CHECK_ST(pool_async_get(m, guard_s(30)), POOL_OK);
            pool_async_free(m);
        } else {
            CHECK_ST(pool_map(global_pool, square, min, sizeof(long), mout, sizeof(long), MAP_N, NULL), POOL_OK);
        }
        for (long i = 0; i < MAP_N; i++)
            if (mout[i] != min[i] * min[i]) { CHECK_EQ(mout[i], min[i] * min[i]); break; }
    }
    free(min);
    free(mout);

    char msg[32];
    int n = snprintf(msg, sizeof msg, "thread-%d", w->id);
    pool_async_t *s = pool_submit(global_pool, echo, msg, (size_t)n, 32, NULL);
    CHECK(s != NULL);
    if (s) {
        const void *d;
        size_t l;
        CHECK_ST(pool_async_get(s, guard_s(30)), POOL_OK);
        CHECK_ST(pool_async_result(s, &d, &l), POOL_OK);
        CHECK(l == (size_t)n && memcmp(d, msg, (size_t)n) == 0);
        pool_async_free(s);
    }

    /* This thread's failure message is its own. */
    CHECK_ST(pool_apply(global_pool, NULL, NULL, 0, NULL, 0, NULL), POOL_EINVAL);
    CHECK(strstr(pool_last_error(), "NULL") != NULL || pool_last_error()[0] != '\0');
    return NULL;
}

/* Creates its own pool three times, maps on it, destroys it. */
static void *own_pool_thread(void *p) {
    (void)p;
    long in[1000], out[1000];
    for (int round = 0; round < 3; round++) {
        pool_t *pool = pool_create(1, NULL);
        CHECK(pool != NULL);
        if (!pool) return NULL;
        for (int i = 0; i < 1000; i++) in[i] = i + round, out[i] = -1;
        CHECK_ST(pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], 1000, NULL), POOL_OK);
        for (int i = 0; i < 1000; i++)
            if (out[i] != in[i] * in[i]) { CHECK_EQ(out[i], in[i] * in[i]); break; }
        if (round == 1) CHECK_ST(pool_close(pool), POOL_OK);
        pool_destroy(pool);
    }
    return NULL;
}

static int returns_arg(void *arg) {
    return *(int *)arg;
}

/* Starts 10 processes, each exiting with its own code, and joins them. */
static void *process_thread(void *p) {
    struct worker_arg *w = p;
    int codes[10];
    pool_process_t *ps[10];
    for (int i = 0; i < 10; i++) {
        codes[i] = w->id * 20 + i;
        ps[i] = pool_process_create(returns_arg, &codes[i]);
        CHECK(ps[i] != NULL);
        if (ps[i]) CHECK_ST(pool_process_start(ps[i]), POOL_OK);
    }
    for (int i = 0; i < 10; i++) {
        if (!ps[i]) continue;
        int code = -1;
        CHECK_ST(pool_process_join(ps[i], guard_s(10)), POOL_OK);
        CHECK_ST(pool_process_exitcode(ps[i], &code), POOL_OK);
        CHECK_EQ(code, codes[i]);
        pool_process_free(ps[i]);
    }
    return NULL;
}

/* Waits on the shared handle: the task takes 0.2 s, so 10 s is plenty. */
static void *waiter_thread(void *p) {
    struct worker_arg *w = p;
    double t0 = now_s();
    if (!CHECK_ST(pool_async_get(w->shared, guard_s(10)), POOL_OK))
        fprintf(stderr, "  waiter %d: pool_async_get gave up after %.2f s although the task takes 0.2 s\n", w->id, now_s() - t0);
    CHECK(pool_async_ready(w->shared));
    CHECK(pool_async_successful(w->shared));
    return NULL;
}

struct term_arg {
    pool_t *pool;
    double delay;
};

static void *terminator(void *p) {
    struct term_arg *t = p;
    sleep_s(t->delay);
    CHECK_ST(pool_terminate(t->pool), POOL_OK);
    return NULL;
}

int main(void) {
    test_begin("threads", 55);

    SECTION("setup");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    global_pool = pool;
    CHECK_ST(pool_close(NULL), POOL_EINVAL);
    char main_msg[512];
    snprintf(main_msg, sizeof main_msg, "%s", pool_last_error());
    CHECK(main_msg[0] != '\0');

    SECTION("4 threads: 250 apply_async each, maps, submits, on one pool");
    double secs = 0.3;
    long shared_out = 0;
    pool_async_t *shared = pool_apply_async(pool, sleeps, &secs, sizeof secs, &shared_out, sizeof shared_out, NULL);
    REQUIRE(shared != NULL);
    pthread_t th[THREADS];
    struct worker_arg args[THREADS];
    for (int i = 0; i < THREADS; i++) {
        args[i] = (struct worker_arg){i + 1, shared, &shared_out};
        REQUIRE(pthread_create(&th[i], NULL, host_thread, &args[i]) == 0);
    }
    for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
    pool_async_free(shared);

    SECTION("4 threads wait on one handle at once, 3 rounds");
    for (int round = 0; round < 3; round++) {
        secs = 0.2;
        shared_out = 0;
        shared = pool_apply_async(pool, sleeps, &secs, sizeof secs, &shared_out, sizeof shared_out, NULL);
        REQUIRE(shared != NULL);
        for (int i = 0; i < THREADS; i++) {
            args[i] = (struct worker_arg){i + 1, shared, &shared_out};
            REQUIRE(pthread_create(&th[i], NULL, waiter_thread, &args[i]) == 0);
        }
        for (int i = 0; i < THREADS; i++) pthread_join(th[i], NULL);
        CHECK_EQ(shared_out, 42);
        pool_async_free(shared);
    }

    SECTION("the main thread's pool_last_error() was not touched by the others");
    if (strcmp(pool_last_error(), main_msg) != 0) {
        fprintf(stderr, "  was \"%s\", now \"%s\"\n", main_msg, pool_last_error());
        CHECK(!"main thread's message unchanged");
    }

    SECTION("using the pool from inside a task: an error, not a hang");
    struct nested_result nr = {-1, -1, -1, -1};
    double t0 = now_s();
    CHECK_ST(pool_apply(pool, nested, NULL, 0, &nr, sizeof nr, NULL), POOL_OK);
    CHECK_TOOK(t0, 10, "a task using the pool");
    CHECK(nr.apply_st != POOL_OK && nr.apply_st != -1);
    CHECK_EQ(nr.apply_st, POOL_EINVAL);
    CHECK_EQ(nr.map_st, POOL_EINVAL);
    CHECK_EQ(nr.apply_async_null, 1);
    CHECK_EQ(nr.close_st, POOL_EINVAL);

    SECTION("using the parent's pool from a child process: an error, not a hang");
    pool_process_t *p = pool_process_create(child_uses_pool, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    CHECK_ST(pool_process_join(p, guard_s(10)), POOL_OK);
    int code = -1;
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, POOL_EINVAL);
    pool_process_free(p);

    SECTION("the pool still works after all that");
    long x = 9, y = 0;
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 81);
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);
    global_pool = NULL;

    SECTION("pool_terminate from another thread unblocks pool_map");
    pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    size_t n = 40000; /* 40000 x 5 ms on 2 workers: 100 s, so a terminate that waited would show */
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    REQUIRE(in && out);
    for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = -1;
    struct term_arg ta = {pool, 0.3};
    pthread_t tt;
    REQUIRE(pthread_create(&tt, NULL, terminator, &ta) == 0);
    t0 = now_s();
    CHECK_ST(pool_map(pool, slow_square, in, sizeof(long), out, sizeof(long), n, NULL), POOL_ECLOSED);
    CHECK_TOOK(t0, 10, "a map ended by a terminate from another thread");
    pthread_join(tt, NULL);
    for (size_t i = 0; i < n; i++)
        if (out[i] != -1 && out[i] != (long)(i * i)) { CHECK_EQ(out[i], (long)(i * i)); break; }
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);

    SECTION("pool_terminate from another thread unblocks pool_async_get");
    pool = pool_create(1, NULL);
    REQUIRE(pool != NULL);
    secs = 3600; /* a get that waited for it would hang */
    pool_async_t *a = pool_apply_async(pool, sleeps, &secs, sizeof secs, NULL, 0, NULL);
    REQUIRE(a != NULL);
    ta.pool = pool;
    REQUIRE(pthread_create(&tt, NULL, terminator, &ta) == 0);
    t0 = now_s();
    CHECK_ST(pool_async_get(a, -1), POOL_ECLOSED);
    CHECK_TOOK(t0, 10, "a get ended by a terminate from another thread");
    pthread_join(tt, NULL);
    pool_async_free(a);
    pool_destroy(pool);

    SECTION("pools created, used and destroyed concurrently from 4 threads");
    pthread_t pc[THREADS];
    for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&pc[i], NULL, own_pool_thread, NULL) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(pc[i], NULL);

    SECTION("processes started and joined from 4 threads at once");
    for (int i = 0; i < THREADS; i++) REQUIRE(pthread_create(&pc[i], NULL, process_thread, &args[i]) == 0);
    for (int i = 0; i < THREADS; i++) pthread_join(pc[i], NULL);

    free(in);
    free(out);
    return test_finish();
}
