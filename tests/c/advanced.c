/* The extended API: pool_last_status, pool_map_ex / pool_map_async_ex (chunksize, per-item
 * statuses, per-call timeout), pool_async_info, pool_async_cancel, max_rss, options ABI. */
#include "check.h"

#include <pthread.h>
#include <stddef.h>
#include <stdatomic.h>

static atomic_uint *runs; /* per-item run counters, shared with the workers */
#define NRUNS 4000

/* Squares; counts runs; crashes (SIGSEGV) on 17 and 150, returns 9 on 60, _exit(3) on 90. */
static int faulty(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    atomic_fetch_add(&runs[x], 1);
    if (x == 17 || x == 150) raise(SIGSEGV);
    if (x == 60) return 9;
    if (x == 90) _exit(3);
    *(long *)out = x * x;
    return 0;
}

/* Squares; item 5 sleeps an hour (ended only by the task_timeout). */
static int hangs_on_5(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    if (x == 5) sleep_s(3600);
    *(long *)out = x * x;
    return 0;
}

static int slow_square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    sleep_s(0.05);
    *(long *)out = x * x;
    atomic_fetch_add(&runs[x], 1);
    return 0;
}

static int segfaults(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    raise(SIGSEGV);
    return 0;
}

static int exits_3(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    _exit(3);
}

/* Grows resident memory by 96 MiB (never freed), then returns the worker's pid. */
static int leaks(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    size_t n = (size_t)96 << 20;
    char *p = malloc(n);
    if (!p) return 1;
    memset(p, 1, n);
    *(int *)out = getpid();
    return 0;
}

static int slow_echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    sleep_s(10);
    return pool_out_write(in, len);
}

static void reset_runs(void) {
    for (int i = 0; i < NRUNS; i++) atomic_store(&runs[i], 0);
}

static void check_squares(const long *out, size_t n, const char *what) {
    for (size_t i = 0; i < n; i++)
        if (out[i] != (long)(i * i)) {
            fprintf(stderr, "  %s: out[%zu] = %ld\n", what, i, out[i]);
            CHECK(out[i] == (long)(i * i));
            return;
        }
}

static void *status_in_thread(void *p) {
    *(int *)p = pool_last_status();
    return NULL;
}

static void test_last_status(pool_t *pool) {
    SECTION("pool_last_status");
    CHECK_EQ(pool_last_status(), POOL_OK); /* nothing failed yet on this thread */
    pool_options_t bad;
    memset(&bad, 0, sizeof bad);
    CHECK(pool_create(1, &bad) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    long x = 2, y = 0;
    CHECK_ST(pool_apply(pool, returns_7, NULL, 0, NULL, 0, NULL), POOL_ETASK);
    CHECK_EQ(pool_last_status(), POOL_ETASK);
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(pool_last_status(), POOL_ETASK); /* the most recent failure, not success */
    int other = -1;
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, status_in_thread, &other) == 0);
    pthread_join(t, NULL);
    CHECK_EQ(other, POOL_OK); /* per thread */
}

static void test_map_ex(pool_t *pool) {
    SECTION("pool_map_options_init defaults");
    pool_map_options_t mo;
    memset(&mo, 0xAB, sizeof mo);
    pool_map_options_init(&mo);
    CHECK_EQ(mo.struct_size, sizeof(pool_map_options_t));
    CHECK_EQ(mo.chunksize, 0);
    CHECK(mo.statuses == NULL);
    CHECK(mo.task_timeout <= 0);
    pool_map_options_init(NULL);

    size_t n = 3000;
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    int *st = malloc(n * sizeof(int));
    REQUIRE(in && out && st);
    for (size_t i = 0; i < n; i++) in[i] = (long)i;

    SECTION("pool_map_ex with NULL options");
    for (size_t i = 0; i < n; i++) out[i] = -1;
    CHECK_ST(pool_map_ex(pool, square, in, sizeof(long), out, sizeof(long), n, NULL, NULL), POOL_OK);
    check_squares(out, n, "map_ex NULL opts");

    SECTION("pool_map_ex with chunksize 1, 7, 5000");
    size_t sizes[] = {1, 7, 5000};
    for (int k = 0; k < 3; k++) {
        pool_map_options_init(&mo);
        mo.chunksize = sizes[k];
        for (size_t i = 0; i < n; i++) out[i] = -1;
        CHECK_ST(pool_map_ex(pool, square, in, sizeof(long), out, sizeof(long), n, NULL, &mo), POOL_OK);
        check_squares(out, n, "map_ex chunksize");
    }

    SECTION("pool_map_ex statuses: every item's own status");
    reset_runs();
    pool_map_options_init(&mo);
    mo.statuses = st;
    mo.chunksize = 10;
    for (size_t i = 0; i < 200; i++) out[i] = -1, st[i] = -1;
    CHECK_ST(pool_map_ex(pool, faulty, in, sizeof(long), out, sizeof(long), 200, NULL, &mo), POOL_ECRASHED);
    CHECK_ERR_HAS("item 17");
    for (int i = 0; i < 200; i++) {
        int want = (i == 17 || i == 150 || i == 90) ? POOL_ECRASHED : i == 60 ? POOL_ETASK : POOL_OK;
        if (st[i] != want) {
            fprintf(stderr, "  statuses[%d] = %d (%s), expected %d\n", i, st[i], pool_strerror(st[i]), want);
            CHECK(st[i] == want);
        }
        if (want == POOL_OK && out[i] != (long)i * i) CHECK_EQ(out[i], (long)i * i);
        unsigned r = atomic_load(&runs[i]);
        if (want == POOL_OK ? r != 1 : r > 1) {
            fprintf(stderr, "  item %d ran %u times\n", i, r);
            CHECK(!"each item runs once (failed ones at most once)");
        }
    }

    SECTION("pool_map_ex per-call task_timeout");
    pool_map_options_init(&mo);
    mo.statuses = st;
    mo.task_timeout = timeout_s(0.5); /* far above a square, even on a loaded machine */
    for (size_t i = 0; i < 40; i++) out[i] = -1, st[i] = -1;
    double t0 = now_s();
    CHECK_ST(pool_map_ex(pool, hangs_on_5, in, sizeof(long), out, sizeof(long), 40, NULL, &mo), POOL_ETIMEDOUT);
    CHECK_TOOK(t0, 10, "a map ended by its per-call task_timeout");
    CHECK_ERR_HAS("item 5");
    for (int i = 0; i < 40; i++) {
        int want = i == 5 ? POOL_ETIMEDOUT : POOL_OK;
        if (st[i] != want) { CHECK_EQ(st[i], want); break; }
        if (i != 5 && out[i] != (long)i * i) { CHECK_EQ(out[i], (long)i * i); break; }
    }

    SECTION("pool_map_async_ex with statuses and pool_async_info");
    reset_runs();
    pool_map_options_init(&mo);
    mo.statuses = st;
    for (size_t i = 0; i < 200; i++) out[i] = -1, st[i] = -1;
    pool_async_t *a = pool_map_async_ex(pool, faulty, in, sizeof(long), out, sizeof(long), 200, NULL, &mo);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_ECRASHED);
    CHECK_EQ(st[17], POOL_ECRASHED);
    CHECK_EQ(st[60], POOL_ETASK);
    CHECK_EQ(st[90], POOL_ECRASHED);
    CHECK_EQ(st[0], POOL_OK);
    CHECK_EQ(st[199], POOL_OK);
    pool_task_info_t info;
    memset(&info, 0x55, sizeof info);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK_EQ(info.status, POOL_ECRASHED);
    CHECK_EQ(info.item, 17);
    CHECK_EQ(info.signal, SIGSEGV);
    CHECK_EQ(info.exit_code, -1);
    CHECK(info.pid > 0 && info.pid != getpid());
    pool_async_free(a);

    SECTION("pool_async_info of a successful map");
    a = pool_map_async_ex(pool, square, in, sizeof(long), out, sizeof(long), 100, NULL, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_OK);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK_EQ(info.status, POOL_OK);
    CHECK_EQ(info.item, -1);
    pool_async_free(a);

    free(in);
    free(out);
    free(st);
}

static void test_info(pool_t *pool) {
    pool_task_info_t info;

    SECTION("pool_async_info: success");
    int pid = -1;
    pool_async_t *a = pool_apply_async(pool, getpid_task, NULL, 0, &pid, sizeof pid, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_OK);
    memset(&info, 0x55, sizeof info);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK_EQ(info.status, POOL_OK);
    CHECK_EQ(info.pid, pid);
    CHECK_EQ(info.exit_code, -1);
    CHECK_EQ(info.signal, 0);
    CHECK(!info.core_dumped);
    CHECK_EQ(info.item, -1);
    CHECK_ST(pool_async_info(a, &info, offsetof(pool_task_info_t, message) - 1), POOL_EINVAL); /* short struct */
    CHECK_ST(pool_async_info(a, NULL, sizeof info), POOL_EINVAL);
    pool_async_free(a);

    SECTION("pool_async_info: task returned 7");
    a = pool_apply_async(pool, returns_7, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_ETASK);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK_EQ(info.status, POOL_ETASK);
    CHECK_EQ(info.task_code, 7);
    CHECK(info.pid > 0);
    CHECK_EQ(info.signal, 0);
    CHECK_EQ(info.exit_code, -1);
    pool_async_free(a);

    SECTION("pool_async_info: worker killed by SIGSEGV");
    a = pool_apply_async(pool, segfaults, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_ECRASHED);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK_EQ(info.status, POOL_ECRASHED);
    CHECK_EQ(info.signal, SIGSEGV);
    CHECK_EQ(info.exit_code, -1);
    CHECK(info.pid > 0);
    pool_async_free(a);

    SECTION("pool_async_info: worker called _exit(3)");
    a = pool_apply_async(pool, exits_3, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_ECRASHED);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK_EQ(info.status, POOL_ECRASHED);
    CHECK_EQ(info.exit_code, 3);
    CHECK_EQ(info.signal, 0);
    pool_async_free(a);

    SECTION("pool_async_info before the result is ready: ETIMEDOUT, nothing written");
    double secs = 0.3;
    a = pool_apply_async(pool, sleeps, &secs, sizeof secs, NULL, 0, NULL);
    REQUIRE(a != NULL);
    memset(&info, 0x55, sizeof info);
    pool_task_info_t copy = info;
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_ETIMEDOUT);
    CHECK(memcmp(&copy, &info, sizeof info) == 0);
    CHECK_ST(pool_async_get(a, guard_s(20)), POOL_OK);
    pool_async_free(a);
}

static void test_cancel(pool_t *pool) {
    SECTION("pool_async_cancel of a running apply");
    double secs = 3600; /* a cancel that waited would hang */
    long out = -1;
    pool_async_t *a = pool_apply_async(pool, sleeps, &secs, sizeof secs, &out, sizeof out, NULL);
    REQUIRE(a != NULL);
    sleep_s(0.1);
    double t0 = now_s();
    CHECK_ST(pool_async_cancel(a), POOL_OK);
    CHECK_TOOK(t0, 10, "cancel of a running apply");
    CHECK(pool_async_ready(a));
    CHECK(!pool_async_successful(a));
    CHECK_ST(pool_async_get(a, 0), POOL_ECANCELLED);
    CHECK_ST(pool_async_get(a, 0), POOL_ECANCELLED);
    CHECK_EQ(out, -1);
    CHECK_ST(pool_async_cancel(a), POOL_OK); /* again: harmless */
    pool_async_free(a);

    SECTION("pool_async_cancel of a queued apply (never starts)");
    pool_async_t *busy[2];
    for (int i = 0; i < 2; i++) {
        busy[i] = pool_apply_async(pool, sleeps, &secs, sizeof secs, NULL, 0, NULL);
        REQUIRE(busy[i] != NULL);
    }
    long q_out = -1;
    double zero = 0;
    pool_async_t *queued = pool_apply_async(pool, sleeps, &zero, sizeof zero, &q_out, sizeof q_out, NULL);
    REQUIRE(queued != NULL);
    CHECK_ST(pool_async_cancel(queued), POOL_OK);
    CHECK_ST(pool_async_get(queued, 0), POOL_ECANCELLED);
    for (int i = 0; i < 2; i++) {
        CHECK_ST(pool_async_cancel(busy[i]), POOL_OK);
        CHECK_ST(pool_async_get(busy[i], guard_s(10)), POOL_ECANCELLED);
        pool_async_free(busy[i]);
    }
    sleep_s(0.2);
    CHECK_EQ(q_out, -1);
    pool_async_free(queued);

    SECTION("pool_async_cancel of a finished apply keeps its status");
    long x = 6, y = 0;
    a = pool_apply_async(pool, square, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_wait(a, guard_s(20)), POOL_OK);
    CHECK_ST(pool_async_cancel(a), POOL_OK);
    CHECK_ST(pool_async_get(a, 0), POOL_OK);
    CHECK_EQ(y, 36);
    pool_async_free(a);

    SECTION("the pool works after cancellations");
    long in[1000], o[1000];
    for (int i = 0; i < 1000; i++) in[i] = i, o[i] = -1;
    CHECK_ST(pool_map(pool, square, in, sizeof in[0], o, sizeof o[0], 1000, NULL), POOL_OK);
    check_squares(o, 1000, "map after cancel");

    SECTION("pool_async_cancel of a map_async: done items kept, the rest ECANCELLED");
    reset_runs();
    size_t n = 4000; /* 4000 x 50 ms on 2 workers: 100 s, so a cancel that waited would show */
    long *min = malloc(n * sizeof(long)), *mout = malloc(n * sizeof(long));
    int *st = malloc(n * sizeof(int));
    REQUIRE(min && mout && st);
    for (size_t i = 0; i < n; i++) min[i] = (long)i, mout[i] = -1, st[i] = -1;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.statuses = st;
    mo.chunksize = 10; /* progress shows within a second */
    a = pool_map_async_ex(pool, slow_square, min, sizeof(long), mout, sizeof(long), n, NULL, &mo);
    REQUIRE(a != NULL);
    size_t done = 0, total = 0;
    WAIT_UNTIL(pool_async_progress(a, &done, &total) == POOL_OK && done > 0, 10); /* some items done */
    double t0b = now_s();
    CHECK_ST(pool_async_cancel(a), POOL_OK);
    CHECK_TOOK(t0b, 10, "cancel of a running map");
    CHECK(pool_async_ready(a));
    CHECK_ST(pool_async_get(a, 0), POOL_ECANCELLED);
    size_t ok = 0, cancelled = 0;
    for (size_t i = 0; i < n; i++) {
        if (st[i] == POOL_OK) {
            ok++;
            if (mout[i] != (long)(i * i)) { CHECK_EQ(mout[i], (long)(i * i)); break; }
        } else if (st[i] == POOL_ECANCELLED) {
            cancelled++;
        } else {
            fprintf(stderr, "  statuses[%zu] = %d\n", i, st[i]);
            CHECK(!"every item is OK or ECANCELLED");
            break;
        }
    }
    CHECK(ok > 0);
    CHECK(cancelled > 0);
    long snapshot[100];
    memcpy(snapshot, mout + n - 100, sizeof snapshot);
    pool_async_free(a);
    sleep_s(0.2);
    CHECK(memcmp(snapshot, mout + n - 100, sizeof snapshot) == 0);
    free(min);
    free(mout);
    free(st);

    SECTION("pool_async_cancel of a pool_submit task");
    a = pool_submit(pool, slow_echo, "abc", 3, 3, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_cancel(a), POOL_OK);
    CHECK_ST(pool_async_get(a, 0), POOL_ECANCELLED);
    const void *d;
    size_t l;
    CHECK_ST(pool_async_result(a, &d, &l), POOL_ECANCELLED);
    pool_async_free(a);

    SECTION("pool_async_cancel(NULL)");
    CHECK_ST(pool_async_cancel(NULL), POOL_EINVAL);

    SECTION("the pool works after all cancellations");
    for (int i = 0; i < 1000; i++) o[i] = -1;
    CHECK_ST(pool_map(pool, square, in, sizeof in[0], o, sizeof o[0], 1000, NULL), POOL_OK);
    check_squares(o, 1000, "map after cancels");
}

/* The resident memory of the worker that runs it (valgrind's own memory included). */
static int worker_rss(const void *in, void *out, void *ctx) {
    (void)in, (void)ctx;
    long pages = 0, resident = 0;
    FILE *f = fopen("/proc/self/statm", "r");
    if (!f || fscanf(f, "%ld %ld", &pages, &resident) != 2) resident = -1;
    if (f) fclose(f);
    *(long *)out = resident * sysconf(_SC_PAGESIZE);
    return 0;
}

static void test_max_rss(void) {
    SECTION("max_rss: a worker past the limit is replaced after its task");
    /* The limit sits 32 MiB above what a worker holds after a small task (under valgrind that
     * is valgrind's own memory too), below what `leaks` adds (96 MiB). */
    pool_t *probe = pool_create(1, NULL);
    REQUIRE(probe != NULL);
    long rss = 0;
    CHECK_ST(pool_apply(probe, worker_rss, NULL, 0, &rss, sizeof rss, NULL), POOL_OK);
    CHECK_ST(pool_apply(probe, worker_rss, NULL, 0, &rss, sizeof rss, NULL), POOL_OK);
    pool_destroy(probe);
    REQUIRE(rss > 0);
    pool_options_t o;
    pool_options_init(&o);
    o.max_rss = (uint64_t)rss + ((uint64_t)32 << 20);
    pool_t *pool = pool_create(1, &o);
    REQUIRE(pool != NULL);
    int p1 = -1, p2 = -1, p3 = -1;
    CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &p1, sizeof p1, NULL), POOL_OK);
    CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &p2, sizeof p2, NULL), POOL_OK);
    CHECK_EQ(p1, p2); /* small: kept */
    CHECK_ST(pool_apply(pool, leaks, NULL, 0, &p2, sizeof p2, NULL), POOL_OK);
    CHECK_EQ(p1, p2);
    CHECK_ST(pool_apply(pool, getpid_task, NULL, 0, &p3, sizeof p3, NULL), POOL_OK);
    CHECK(p3 > 0 && p3 != p2); /* replaced */
    pool_destroy(pool);
}

static void test_options_abi(void) {
    SECTION("pool_options_t from a caller built before max_rss existed (smaller struct_size)");
    pool_options_t o;
    pool_options_init(&o);
    o.struct_size = offsetof(pool_options_t, max_rss);
    pool_t *pool = pool_create(1, &o);
    CHECK(pool != NULL);
    if (pool) {
        long x = 3, y = 0;
        CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
        CHECK_EQ(y, 9);
    }
    pool_destroy(pool);
}

int main(void) {
    test_begin("advanced", 55);
    runs = shared_alloc(NRUNS * sizeof *runs);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    test_last_status(pool);
    test_map_ex(pool);
    test_info(pool);
    test_cancel(pool);
    SECTION("close and join");
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);
    test_max_rss();
    test_options_abi();
    return test_finish();
}
