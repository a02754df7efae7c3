/* Failures inside tasks and workers: error codes, crashes (signal, abort, exit), timeouts,
 * max_tasks_per_child, initializers, terminate with work pending, detached handles. */
#include "check.h"

#include <stdatomic.h>

/* Per-item run counters and the initializer's counter, in shared memory created before any
 * pool, so workers' increments are visible here. */
static atomic_uint *runs;
static atomic_uint *init_runs;
#define NRUNS 1000

/* Set by the initializer in each worker; the host's copy stays 0. */
static int init_value;
static int init_arg = 1234;

static void initializer(void *arg) {
    init_value = *(int *)arg;
    atomic_fetch_add(init_runs, 1);
}

static void crashing_initializer(void *arg) {
    (void)arg;
    raise(SIGSEGV);
}

static void exiting_initializer(void *arg) {
    (void)arg;
    _exit(5);
}

static int segfaults(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    raise(SIGSEGV);
    return 0;
}

static int aborts(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    abort();
}

static int exits_3(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    _exit(3);
}

/* Squares; counts each run of item x in runs[x]; crashes on 17 and 150, returns 9 on 60. */
static int faulty(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    atomic_fetch_add(&runs[x], 1);
    if (x == 17 || x == 150) raise(SIGSEGV);
    if (x == 60) return 9;
    *(long *)out = x * x;
    return 0;
}

/* Squares; item 5 sleeps an hour (ended only by the task_timeout). */
static int hangs_on_5(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    atomic_fetch_add(&runs[x], 1);
    if (x == 5) sleep_s(3600);
    *(long *)out = x * x;
    return 0;
}

static int read_init_value(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    *(int *)out = init_value;
    return 0;
}

static int slow_square(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_s(0.5);
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int brief_square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    sleep_s(0.005);
    *(long *)out = x * x;
    return 0;
}

static void check_map_works(pool_t *pool, size_t n, const char *what) {
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    REQUIRE(in && out);
    for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = -1;
    if (CHECK_ST(pool_map(pool, square, in, sizeof(long), out, sizeof(long), n, NULL), POOL_OK)) {
        size_t bad = 0;
        for (size_t i = 0; i < n; i++) bad += out[i] != (long)(i * i);
        if (bad) {
            fprintf(stderr, "  %s: %zu wrong results\n", what, bad);
            CHECK(bad == 0);
        }
    } else {
        fprintf(stderr, "  (the map above: %s)\n", what);
    }
    free(in);
    free(out);
}

/* The pool_last_error() text must mention one of the alternatives. */
static void check_err_any(const char *what, const char *a, const char *b, const char *c) {
    const char *e = pool_last_error();
    if (!(strstr(e, a) || (b && strstr(e, b)) || (c && strstr(e, c)))) {
        char buf[256];
        snprintf(buf, sizeof buf, "pool_last_error() should name %s", what);
        check_fail_(__FILE__, __LINE__, buf);
    }
}

static void reset_runs(void) {
    for (int i = 0; i < NRUNS; i++) atomic_store(&runs[i], 0);
}

static void test_task_failures(void) {
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);

    SECTION("task returns 7 -> ETASK");
    CHECK_ST(pool_apply(pool, returns_7, NULL, 0, NULL, 0, NULL), POOL_ETASK);
    CHECK_ERR_HAS("7");
    pool_async_t *a = pool_apply_async(pool, returns_7, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_ETASK);
    CHECK_ERR_HAS("7");
    pool_async_free(a);

    SECTION("task segfaults -> ECRASHED");
    double t0 = now_s();
    CHECK_ST(pool_apply(pool, segfaults, NULL, 0, NULL, 0, NULL), POOL_ECRASHED);
    check_err_any("the signal (SIGSEGV / 11)", "11", "SEGV", "egmentation");
    CHECK_TOOK(t0, 10, "an apply that crashed");
    check_map_works(pool, 1000, "map after a segfault");

    SECTION("task aborts -> ECRASHED");
    CHECK_ST(pool_apply(pool, aborts, NULL, 0, NULL, 0, NULL), POOL_ECRASHED);
    check_err_any("the signal (SIGABRT / 6)", "6", "ABRT", "bort");
    check_map_works(pool, 1000, "map after an abort");

    SECTION("task calls _exit(3) -> ECRASHED");
    CHECK_ST(pool_apply(pool, exits_3, NULL, 0, NULL, 0, NULL), POOL_ECRASHED);
    CHECK_ERR_HAS("3");
    check_err_any("the exit", "exit", NULL, NULL);
    check_map_works(pool, 1000, "map after _exit(3)");

    SECTION("crash through apply_async");
    a = pool_apply_async(pool, segfaults, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_ECRASHED);
    CHECK(pool_async_ready(a));
    CHECK(!pool_async_successful(a));
    CHECK_ST(pool_async_get(a, 0), POOL_ECRASHED);
    pool_async_free(a);

    SECTION("both workers crash at once, then the pool still works");
    pool_async_t *c1 = pool_apply_async(pool, segfaults, NULL, 0, NULL, 0, NULL);
    pool_async_t *c2 = pool_apply_async(pool, aborts, NULL, 0, NULL, 0, NULL);
    REQUIRE(c1 && c2);
    CHECK_ST(pool_async_get(c1, guard_s(10)), POOL_ECRASHED);
    CHECK_ST(pool_async_get(c2, guard_s(10)), POOL_ECRASHED);
    pool_async_free(c1);
    pool_async_free(c2);
    check_map_works(pool, 1000, "map after two crashes");

    SECTION("map of 200 with crashes at items 17 and 150 and an error at 60");
    reset_runs();
    long in[200], out[200];
    for (int i = 0; i < 200; i++) in[i] = i, out[i] = -1;
    CHECK_ST(pool_map(pool, faulty, in, sizeof in[0], out, sizeof out[0], 200, NULL), POOL_ECRASHED);
    /* The lowest failing index is 17 ("item 17", not "item 170"). */
    const char *e = pool_last_error();
    const char *at = strstr(e, "item 17");
    CHECK(at != NULL && !(at[7] >= '0' && at[7] <= '9'));
    for (int i = 0; i < 200; i++) {
        unsigned r = atomic_load(&runs[i]);
        if (i == 17 || i == 150) {
            if (r > 1) { fprintf(stderr, "  crashing item %d ran %u times\n", i, r); CHECK(r <= 1); }
        } else {
            if (r != 1) { fprintf(stderr, "  item %d ran %u times\n", i, r); CHECK(r == 1); }
        }
        if (i == 17 || i == 150 || i == 60) continue;
        if (out[i] != (long)i * i) { fprintf(stderr, "  item %d: %ld\n", i, out[i]); CHECK(out[i] == (long)i * i); }
    }
    check_map_works(pool, 1000, "map after a map with crashes");

    SECTION("map_async with a crash");
    reset_runs();
    for (int i = 0; i < 200; i++) out[i] = -1;
    a = pool_map_async(pool, faulty, in + 100, sizeof in[0], out + 100, sizeof out[0], 100, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_ECRASHED);
    CHECK_ERR_HAS("item 50"); /* item 150 is index 50 of this map */
    pool_async_free(a);
    for (int i = 100; i < 200; i++) {
        if (i == 150) continue;
        CHECK_EQ(atomic_load(&runs[i]), 1);
        if (out[i] != (long)i * i) { CHECK_EQ(out[i], (long)i * i); break; }
    }

    SECTION("map where only item 60 returns 9 -> ETASK naming item 60");
    reset_runs();
    for (int i = 0; i < 100; i++) out[i] = -1;
    CHECK_ST(pool_map(pool, faulty, in + 20, sizeof in[0], out, sizeof out[0], 100, NULL), POOL_ETASK);
    CHECK_ERR_HAS("item 40");
    CHECK_ERR_HAS("9");
    for (int i = 0; i < 100; i++) {
        if (i == 40) continue;
        if (out[i] != (long)(i + 20) * (i + 20)) { CHECK_EQ(out[i], (long)(i + 20) * (i + 20)); break; }
    }

    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);
}

static void test_timeout(void) {
    SECTION("task_timeout: an hour-long task with task_timeout 0.5 s -> ETIMEDOUT");
    pool_options_t o;
    pool_options_init(&o);
    o.task_timeout = timeout_s(0.5); /* far above the 0.05 s task below, even on a loaded machine */
    pool_t *pool = pool_create(2, &o);
    REQUIRE(pool != NULL);
    double secs = 3600;
    long out = 0;
    double t0 = now_s();
    CHECK_ST(pool_apply(pool, sleeps, &secs, sizeof secs, &out, sizeof out, NULL), POOL_ETIMEDOUT);
    CHECK_ERR_SET();
    CHECK(now_s() - t0 >= o.task_timeout * 0.9); /* not before its time */
    CHECK_TOOK(t0, 10, "an apply ended by its task_timeout");
    CHECK_EQ(out, 0);

    SECTION("task_timeout: short tasks still succeed, pool still works");
    secs = 0.05;
    CHECK_ST(pool_apply(pool, sleeps, &secs, sizeof secs, &out, sizeof out, NULL), POOL_OK);
    CHECK_EQ(out, 42);
    check_map_works(pool, 1000, "map after a timeout");

    SECTION("task_timeout in a map: item 5 hangs");
    reset_runs();
    long in[40], mout[40];
    for (int i = 0; i < 40; i++) in[i] = i, mout[i] = -1;
    t0 = now_s();
    CHECK_ST(pool_map(pool, hangs_on_5, in, sizeof in[0], mout, sizeof mout[0], 40, NULL), POOL_ETIMEDOUT);
    CHECK_ERR_HAS("item 5");
    CHECK_TOOK(t0, 10, "a map ended by a task_timeout");
    for (int i = 0; i < 40; i++) {
        if (i == 5) continue;
        CHECK_EQ(atomic_load(&runs[i]), 1);
        if (mout[i] != (long)i * i) { CHECK_EQ(mout[i], (long)i * i); break; }
    }
    CHECK(atomic_load(&runs[5]) <= 1);

    SECTION("task_timeout through apply_async");
    secs = 3600;
    pool_async_t *a = pool_apply_async(pool, sleeps, &secs, sizeof secs, &out, sizeof out, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_ETIMEDOUT);
    CHECK(pool_async_ready(a));
    pool_async_free(a);
    check_map_works(pool, 100, "map after an async timeout");
    pool_destroy(pool);
}

static void test_max_tasks_per_child(void) {
    SECTION("max_tasks_per_child = 1: a new worker for every task");
    pool_options_t o;
    pool_options_init(&o);
    o.max_tasks_per_child = 1;
    pool_t *pool = pool_create(1, &o);
    REQUIRE(pool != NULL);
    int pids[4];
    for (int i = 0; i < 4; i++) {
        pids[i] = -1;
        CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &pids[i], sizeof pids[i], NULL), POOL_OK);
        CHECK(pids[i] > 0 && pids[i] != getpid());
        for (int j = 0; j < i; j++)
            if (pids[i] == pids[j]) { fprintf(stderr, "  apply %d and %d ran in pid %d\n", j, i, pids[i]); CHECK(pids[i] != pids[j]); }
    }
    /* A worker per item: 1000 under valgrind, each process started and checked by it, took
     * minutes on a loaded machine. */
    check_map_works(pool, under_valgrind() ? 50 : 1000, "map with max_tasks_per_child = 1");
    pool_destroy(pool);

    SECTION("max_tasks_per_child = 0: the worker is reused");
    pool = pool_create(1, NULL);
    REQUIRE(pool != NULL);
    for (int i = 0; i < 3; i++) CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &pids[i], sizeof pids[i], NULL), POOL_OK);
    CHECK(pids[0] == pids[1] && pids[1] == pids[2]);
    pool_destroy(pool);
}

static void test_initializer(void) {
    SECTION("initializer runs in every worker before any task");
    atomic_store(init_runs, 0);
    pool_options_t o;
    pool_options_init(&o);
    o.initializer = initializer;
    o.initarg = &init_arg;
    pool_t *pool = pool_create(2, &o);
    REQUIRE(pool != NULL);
    CHECK_EQ(atomic_load(init_runs), 2); /* done when pool_create returns */
    CHECK_EQ(init_value, 0);             /* ran in the workers, not here */
    int vals[100];
    long dummy[100];
    for (int i = 0; i < 100; i++) vals[i] = -1, dummy[i] = i;
    CHECK_ST(pool_map(pool, read_init_value, dummy, sizeof dummy[0], vals, sizeof vals[0], 100, NULL), POOL_OK);
    for (int i = 0; i < 100; i++)
        if (vals[i] != 1234) { CHECK_EQ(vals[i], 1234); break; }
    pool_destroy(pool);

    SECTION("initializer runs in the replacement of a crashed worker");
    atomic_store(init_runs, 0);
    pool = pool_create(1, &o);
    REQUIRE(pool != NULL);
    CHECK_EQ(atomic_load(init_runs), 1);
    int v = -1, pid1 = -1, pid2 = -1;
    CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &pid1, sizeof pid1, NULL), POOL_OK);
    CHECK_ST(pool_apply(pool, segfaults, NULL, 0, NULL, 0, NULL), POOL_ECRASHED);
    CHECK_ST(pool_apply(pool, read_init_value, NULL, 0, &v, sizeof v, NULL), POOL_OK);
    CHECK_EQ(v, 1234);
    CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &pid2, sizeof pid2, NULL), POOL_OK);
    CHECK(pid1 != pid2);
    CHECK_EQ(atomic_load(init_runs), 2);
    pool_destroy(pool);

    SECTION("initializer with max_tasks_per_child = 1");
    atomic_store(init_runs, 0);
    o.max_tasks_per_child = 1;
    pool = pool_create(1, &o);
    REQUIRE(pool != NULL);
    for (int i = 0; i < 3; i++) {
        v = -1;
        CHECK_ST(pool_apply(pool, read_init_value, NULL, 0, &v, sizeof v, NULL), POOL_OK);
        CHECK_EQ(v, 1234);
    }
    CHECK(atomic_load(init_runs) >= 3);
    pool_destroy(pool);

    SECTION("an initializer that crashes -> pool_create returns NULL, leaves nothing");
    pool_options_init(&o);
    o.initializer = crashing_initializer;
    struct holdings before = holdings_now();
    double t0 = now_s();
    pool = pool_create(2, &o);
    CHECK(pool == NULL);
    CHECK_EQ(pool_last_status(), POOL_ECRASHED);
    check_err_any("the initializer or the signal", "initializer", "11", "SEGV");
    CHECK_TOOK(t0, 10, "pool_create with a crashing initializer");
    CHECK_HOLDS_AS(before);
    pool_destroy(pool);

    SECTION("an initializer that exits -> pool_create returns NULL, leaves nothing");
    o.initializer = exiting_initializer;
    pool = pool_create(1, &o);
    CHECK(pool == NULL);
    CHECK_EQ(pool_last_status(), POOL_ECRASHED);
    CHECK_ERR_HAS("exit");
    CHECK_HOLDS_AS(before);
    pool_destroy(pool);
}

static void test_terminate(void) {
    SECTION("terminate with pending apply_async -> ECLOSED");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    double secs = 3600; /* a terminate that waited for these would hang */
    long outs[6];
    pool_async_t *h[6];
    for (int i = 0; i < 6; i++) {
        outs[i] = -1;
        h[i] = pool_apply_async(pool, sleeps, &secs, sizeof secs, &outs[i], sizeof outs[i], NULL);
        REQUIRE(h[i] != NULL);
    }
    sleep_s(0.1); /* let two of them start */
    double t0 = now_s();
    CHECK_ST(pool_terminate(pool), POOL_OK);
    for (int i = 0; i < 6; i++) {
        CHECK_ST(pool_async_get(h[i], guard_s(10)), POOL_ECLOSED);
        CHECK_ERR_SET();
        CHECK(pool_async_ready(h[i]));
        CHECK(!pool_async_successful(h[i]));
        CHECK_EQ(outs[i], -1);
        pool_async_free(h[i]);
    }
    CHECK_TOOK(t0, 10, "terminate and six ECLOSED results");
    CHECK_ST(pool_terminate(pool), POOL_OK); /* again: harmless */
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);

    SECTION("long map_async, then terminate -> pool_async_get returns ECLOSED, no hang");
    pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    size_t n = 2000; /* 2000 x 0.5 s on 2 workers: a terminate that waited would hang */
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    REQUIRE(in && out);
    for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = -1;
    pool_async_t *m = pool_map_async(pool, slow_square, in, sizeof(long), out, sizeof(long), n, NULL);
    REQUIRE(m != NULL);
    sleep_s(0.2);
    t0 = now_s();
    CHECK_ST(pool_terminate(pool), POOL_OK);
    CHECK_ST(pool_async_get(m, guard_s(10)), POOL_ECLOSED);
    CHECK_TOOK(t0, 10, "terminate during a map");
    CHECK(pool_async_ready(m));
    CHECK_ST(pool_join(pool), POOL_OK);
    /* Whatever finished is correct; the rest untouched. */
    size_t done = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i] == -1) continue;
        done++;
        if (out[i] != (long)(i * i)) { CHECK_EQ(out[i], (long)(i * i)); break; }
    }
    CHECK(done < n);
    pool_async_free(m);
    pool_destroy(pool);

    SECTION("pool_async_free of a pending apply_async: out is never written afterwards");
    pool = pool_create(1, NULL);
    REQUIRE(pool != NULL);
    secs = 0.3;
    long target = -1;
    pool_async_t *a = pool_apply_async(pool, sleeps, &secs, sizeof secs, &target, sizeof target, NULL);
    REQUIRE(a != NULL);
    pool_async_free(a);
    /* The task goes on; once the worker is free again it has certainly finished. */
    double zero = 0;
    long after = 0;
    CHECK_ST(pool_apply(pool, sleeps, &zero, sizeof zero, &after, sizeof after, NULL), POOL_OK);
    CHECK_EQ(after, 42);
    sleep_s(0.1);
    CHECK_EQ(target, -1);

    SECTION("pool_async_free of a pending map_async: out is never written afterwards");
    for (size_t i = 0; i < 200; i++) out[i] = -1;
    m = pool_map_async(pool, brief_square, in, sizeof(long), out, sizeof(long), 200, NULL);
    REQUIRE(m != NULL);
    sleep_s(0.05);
    pool_async_free(m);
    long snapshot[200];
    memcpy(snapshot, out, sizeof snapshot);
    /* A freed map stops feeding chunks (its results have no reader); the chunks it had sent
     * end first: once the one worker has run an apply after them, and a little more for the
     * map to collect them, anything late would have been written. */
    CHECK_ST(pool_apply(pool, sleeps, &zero, sizeof zero, &after, sizeof after, NULL), POOL_OK);
    sleep_s(0.2);
    CHECK_ST(pool_apply(pool, sleeps, &zero, sizeof zero, &after, sizeof after, NULL), POOL_OK);
    CHECK(memcmp(snapshot, out, sizeof snapshot) == 0);
    size_t changed = 0;
    for (int i = 0; i < 200; i++) changed += snapshot[i] != out[i];
    if (changed) fprintf(stderr, "  %zu results written after pool_async_free\n", changed);
    check_map_works(pool, 100, "map after freeing pending handles");
    pool_destroy(pool);
    free(in);
    free(out);
}

int main(void) {
    test_begin("faults", 55);
    runs = shared_alloc(NRUNS * sizeof *runs);
    init_runs = shared_alloc(sizeof *init_runs);
    test_task_failures();
    test_timeout();
    test_max_tasks_per_child();
    test_initializer();
    test_terminate();
    return test_finish();
}
