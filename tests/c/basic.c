/* The happy paths and the lifecycle of the C API: version, strerror, options, create, map,
 * map_async, apply, apply_async, AsyncResult, close/join/terminate/destroy. */
#include "check.h"

#include <limits.h>
#include <sched.h>

/* Set before any pool_create, so every worker sees it through ctx. */
static long multiplier = 3;

static int times_ctx(const void *in, void *out, void *ctx) {
    *(long *)out = *(const long *)in * *(const long *)ctx;
    return 0;
}

/* Different item sizes in and out: int -> double. */
static int half(const void *in, void *out, void *ctx) {
    (void)ctx;
    *(double *)out = *(const int *)in / 2.0;
    return 0;
}

/* A 256-byte item: out[j] = in[255 - j] + 1. */
struct blob { unsigned char b[256]; };
static int reverse_blob(const void *in, void *out, void *ctx) {
    (void)ctx;
    const struct blob *i = in;
    struct blob *o = out;
    for (int j = 0; j < 256; j++) o->b[j] = (unsigned char)(i->b[255 - j] + 1);
    return 0;
}

/* Succeeds only if it was given NULL in and out (sizes 0). */
static int expects_nulls(const void *in, void *out, void *ctx) {
    (void)ctx;
    return (in == NULL && out == NULL) ? 0 : 99;
}

static int returns_5(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    return 5;
}

/* Sleeps *in seconds (a double), then writes 1234.0 to out (a long). */
static int slow(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_s(*(const double *)in);
    if (out) *(long *)out = 1234;
    return 0;
}

static int slow_square(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_s(0.001);
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static void check_squares(const long *out, size_t n, const char *what) {
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) {
        if (out[i] != (long)(i * i)) {
            if (bad++ < 5) fprintf(stderr, "  %s: out[%zu] = %ld, expected %ld\n", what, i, out[i], (long)(i * i));
        }
    }
    if (bad) {
        char buf[256];
        snprintf(buf, sizeof buf, "%s: %zu of %zu results wrong", what, bad, n);
        check_fail_(__FILE__, __LINE__, buf);
    }
}

static void test_version_and_strings(void) {
    SECTION("pool_last_error before any failure");
    CHECK(pool_last_error() != NULL);
    CHECK(strcmp(pool_last_error(), "") == 0);

    SECTION("version");
    char want[64];
    snprintf(want, sizeof want, "%d.%d.%d", POOL_VERSION_MAJOR, POOL_VERSION_MINOR, POOL_VERSION_PATCH);
    REQUIRE(pool_version() != NULL);
    if (strcmp(pool_version(), want) != 0) {
        fprintf(stderr, "  pool_version() = \"%s\", macros say \"%s\"\n", pool_version(), want);
        CHECK(!"pool_version() matches the POOL_VERSION_* macros");
    }
    CHECK(pool_version() == pool_version()); /* static string */

    SECTION("strerror");
    const int codes[] = {POOL_OK, POOL_EINVAL, POOL_ENOMEM, POOL_ESYS, POOL_ETIMEDOUT,
                         POOL_ETASK, POOL_ECRASHED, POOL_ECLOSED, POOL_EPANIC, POOL_ECANCELLED};
    CHECK_EQ(POOL_OK, 0);
    CHECK_EQ(POOL_EINVAL, 1);
    CHECK_EQ(POOL_ENOMEM, 2);
    CHECK_EQ(POOL_ESYS, 3);
    CHECK_EQ(POOL_ETIMEDOUT, 4);
    CHECK_EQ(POOL_ETASK, 5);
    CHECK_EQ(POOL_ECRASHED, 6);
    CHECK_EQ(POOL_ECLOSED, 7);
    CHECK_EQ(POOL_EPANIC, 8);
    CHECK_EQ(POOL_ECANCELLED, 9);
    const int unknowns[] = {-1, 1000, INT_MAX, INT_MIN};
    for (size_t i = 0; i < sizeof unknowns / sizeof unknowns[0]; i++) {
        const char *u = pool_strerror(unknowns[i]);
        CHECK(u != NULL && strcmp(u, "unknown status") == 0);
    }
    for (size_t i = 0; i < sizeof codes / sizeof codes[0]; i++) {
        const char *s = pool_strerror(codes[i]);
        CHECK(s != NULL);
        if (s == NULL) continue;
        CHECK(s[0] != '\0');
        CHECK(strcmp(s, "unknown status") != 0);
        CHECK(s == pool_strerror(codes[i]));
        for (size_t j = 0; j < i; j++) CHECK(strcmp(s, pool_strerror(codes[j])) != 0);
    }

    SECTION("pool_options_init");
    pool_options_t o;
    memset(&o, 0xAB, sizeof o);
    pool_options_init(&o);
    CHECK_EQ(o.struct_size, sizeof(pool_options_t));
    CHECK(o.initializer == NULL);
    CHECK(o.initarg == NULL);
    CHECK_EQ(o.max_tasks_per_child, 0);
    CHECK(o.task_timeout <= 0.0);
    CHECK_EQ(o.max_rss, 0);
    pool_options_init(NULL); /* no-op */
    CHECK_EQ(pool_last_status(), POOL_OK); /* nothing failed yet */

    SECTION("NULL no-ops");
    pool_destroy(NULL);
    pool_async_free(NULL);
    pool_process_free(NULL);
    CHECK_EQ(pool_workers(NULL), 0);
    /* None of the above is a failure. */
    CHECK(strcmp(pool_last_error(), "") == 0);
}

static void test_create(void) {
    SECTION("pool_create(0): one worker per usable CPU");
    cpu_set_t set;
    CPU_ZERO(&set);
    REQUIRE(sched_getaffinity(0, sizeof set, &set) == 0);
    int cpus = CPU_COUNT(&set);
    pool_t *all = pool_create(0, NULL);
    REQUIRE(all != NULL);
    CHECK(pool_workers(all) > 0);
    CHECK_EQ(pool_workers(all), cpus);
    long in[64], out[64];
    for (int i = 0; i < 64; i++) in[i] = i, out[i] = -1;
    CHECK_ST(pool_map(all, square, in, sizeof in[0], out, sizeof out[0], 64, NULL), POOL_OK);
    check_squares(out, 64, "map on pool_create(0)");
    pool_destroy(all);

    SECTION("pool_create(-1): refused (only 0 means one per CPU)");
    pool_options_t o;
    pool_options_init(&o);
    CHECK(pool_create(-1, &o) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("workers is -1");
    CHECK(pool_create(INT_MIN, NULL) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);

    SECTION("pool_create(3)");
    pool_t *three = pool_create(3, NULL);
    REQUIRE(three != NULL);
    CHECK_EQ(pool_workers(three), 3);
    pool_destroy(three);
}

static void test_map(pool_t *pool) {
    SECTION("map of 10 squares");
    long in[10], out[10];
    for (int i = 0; i < 10; i++) in[i] = i, out[i] = -1;
    CHECK_ST(pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], 10, NULL), POOL_OK);
    check_squares(out, 10, "map of 10");

    SECTION("map n=0 with NULL buffers");
    CHECK_ST(pool_map(pool, square, NULL, sizeof(long), NULL, sizeof(long), 0, NULL), POOL_OK);

    SECTION("map_async n=0 with NULL buffers");
    pool_async_t *z = pool_map_async(pool, square, NULL, sizeof(long), NULL, sizeof(long), 0, NULL);
    CHECK(z != NULL);
    if (z) {
        CHECK(pool_async_ready(z));
        CHECK(pool_async_successful(z));
        CHECK_ST(pool_async_get(z, 0), POOL_OK);
        CHECK_ST(pool_async_wait(z, 0), POOL_OK);
        pool_async_free(z);
    }

    SECTION("map of 1 item");
    long one = 12, one_out = 0;
    CHECK_ST(pool_map(pool, square, &one, sizeof one, &one_out, sizeof one_out, 1, NULL), POOL_OK);
    CHECK_EQ(one_out, 144);

    SECTION("map of 100000 longs");
    size_t n = 100000;
    long *big_in = malloc(n * sizeof(long)), *big_out = malloc(n * sizeof(long));
    REQUIRE(big_in && big_out);
    for (size_t i = 0; i < n; i++) big_in[i] = (long)i, big_out[i] = -1;
    CHECK_ST(pool_map(pool, square, big_in, sizeof(long), big_out, sizeof(long), n, NULL), POOL_OK);
    check_squares(big_out, n, "map of 100000");
    for (size_t i = 0; i < n; i++) CHECK(big_in[i] == (long)i); /* input untouched */

    SECTION("map with ctx (a global set before pool_create)");
    for (size_t i = 0; i < 1000; i++) big_out[i] = -1;
    CHECK_ST(pool_map(pool, times_ctx, big_in, sizeof(long), big_out, sizeof(long), 1000, &multiplier), POOL_OK);
    for (size_t i = 0; i < 1000; i++)
        if (big_out[i] != (long)i * 3) { CHECK_EQ(big_out[i], (long)i * 3); break; }

    SECTION("map in place (in == out)");
    for (size_t i = 0; i < 3000; i++) big_out[i] = (long)i;
    CHECK_ST(pool_map(pool, square, big_out, sizeof(long), big_out, sizeof(long), 3000, NULL), POOL_OK);
    check_squares(big_out, 3000, "map in place");

    SECTION("map with in_size != out_size (int -> double)");
    int ints[777];
    double dbl[777];
    for (int i = 0; i < 777; i++) ints[i] = i, dbl[i] = -1;
    CHECK_ST(pool_map(pool, half, ints, sizeof ints[0], dbl, sizeof dbl[0], 777, NULL), POOL_OK);
    for (int i = 0; i < 777; i++)
        if (dbl[i] != i / 2.0) { CHECK(dbl[i] == i / 2.0); break; }

    SECTION("map with 256-byte items");
    size_t nb = 3000;
    struct blob *bi = malloc(nb * sizeof *bi), *bo = malloc(nb * sizeof *bo);
    REQUIRE(bi && bo);
    for (size_t i = 0; i < nb; i++)
        for (int j = 0; j < 256; j++) bi[i].b[j] = (unsigned char)(i * 7 + (size_t)j);
    memset(bo, 0, nb * sizeof *bo);
    CHECK_ST(pool_map(pool, reverse_blob, bi, sizeof *bi, bo, sizeof *bo, nb, NULL), POOL_OK);
    size_t bad = 0;
    for (size_t i = 0; i < nb; i++)
        for (int j = 0; j < 256; j++)
            if (bo[i].b[j] != (unsigned char)(bi[i].b[255 - j] + 1)) bad++;
    CHECK_EQ(bad, 0);
    free(bi);
    free(bo);

    SECTION("map_async of 100000 longs");
    for (size_t i = 0; i < n; i++) big_out[i] = -1;
    pool_async_t *a = pool_map_async(pool, square, big_in, sizeof(long), big_out, sizeof(long), n, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_wait(a, -1), POOL_OK);
    CHECK(pool_async_ready(a));
    CHECK(pool_async_successful(a));
    CHECK_ST(pool_async_get(a, -1), POOL_OK);
    CHECK_ST(pool_async_get(a, 0), POOL_OK); /* same status every time */
    CHECK_ST(pool_async_get(a, 0.5), POOL_OK);
    pool_async_free(a);
    check_squares(big_out, n, "map_async of 100000");

    SECTION("map_async: not ready at once, then ready");
    for (size_t i = 0; i < 2000; i++) big_out[i] = -1;
    a = pool_map_async(pool, slow_square, big_in, sizeof(long), big_out, sizeof(long), 2000, NULL);
    REQUIRE(a != NULL);
    CHECK(!pool_async_ready(a)); /* 2000 x 1 ms on a few workers cannot be done yet */
    CHECK(!pool_async_successful(a));
    CHECK_ST(pool_async_wait(a, 0.01), POOL_ETIMEDOUT);
    CHECK_ST(pool_async_get(a, 0), POOL_ETIMEDOUT);
    CHECK_ST(pool_async_get(a, -1), POOL_OK);
    CHECK(pool_async_ready(a));
    CHECK(pool_async_successful(a));
    pool_async_free(a);
    check_squares(big_out, 2000, "slow map_async");

    SECTION("several map_async at once");
    pool_async_t *m[4];
    long *outs[4];
    for (int k = 0; k < 4; k++) {
        outs[k] = malloc(5000 * sizeof(long));
        REQUIRE(outs[k] != NULL);
        m[k] = pool_map_async(pool, square, big_in, sizeof(long), outs[k], sizeof(long), 5000, NULL);
        CHECK(m[k] != NULL);
    }
    for (int k = 0; k < 4; k++) {
        if (!m[k]) continue;
        CHECK_ST(pool_async_get(m[k], -1), POOL_OK);
        pool_async_free(m[k]);
        check_squares(outs[k], 5000, "concurrent map_async");
        free(outs[k]);
    }
    free(big_in);
    free(big_out);
}

static void test_apply(pool_t *pool) {
    SECTION("apply");
    long x = 7, y = 0;
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 49);

    SECTION("apply with ctx");
    CHECK_ST(pool_apply(pool, times_ctx, &x, sizeof x, &y, sizeof y, &multiplier), POOL_OK);
    CHECK_EQ(y, 21);

    SECTION("apply with NULL in/out and sizes 0");
    CHECK_ST(pool_apply(pool, expects_nulls, NULL, 0, NULL, 0, NULL), POOL_OK);
    /* Non-NULL pointers with size 0: the task still gets NULL. */
    CHECK_ST(pool_apply(pool, expects_nulls, &x, 0, &y, 0, NULL), POOL_OK);

    SECTION("apply of a task returning 5");
    CHECK_ST(pool_apply(pool, returns_5, NULL, 0, NULL, 0, NULL), POOL_ETASK);
    CHECK_ERR_HAS("5");

    SECTION("apply_async");
    long in2 = 11, out2 = 0;
    pool_async_t *a = pool_apply_async(pool, square, &in2, sizeof in2, &out2, sizeof out2, NULL);
    REQUIRE(a != NULL);
    in2 = 1000; /* the input was copied at submission */
    CHECK_ST(pool_async_get(a, -1), POOL_OK);
    CHECK_EQ(out2, 121);
    CHECK(pool_async_ready(a));
    CHECK(pool_async_successful(a));
    CHECK_ST(pool_async_get(a, -1), POOL_OK);
    CHECK_ST(pool_async_wait(a, 0), POOL_OK);
    pool_async_free(a);

    SECTION("apply_async with NULL in/out and sizes 0");
    a = pool_apply_async(pool, expects_nulls, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(5)), POOL_OK);
    CHECK(pool_async_successful(a));
    pool_async_free(a);

    SECTION("pool_async_get repeated on a failed result");
    a = pool_apply_async(pool, returns_5, NULL, 0, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_wait(a, -1), POOL_OK); /* ready, whatever the status */
    CHECK(pool_async_ready(a));
    CHECK(!pool_async_successful(a));
    for (int i = 0; i < 3; i++) {
        CHECK_ST(pool_async_get(a, -1), POOL_ETASK);
        CHECK_ERR_HAS("5");
        CHECK_ST(pool_async_get(a, 0), POOL_ETASK);
    }
    pool_async_free(a);

    SECTION("pool_async_wait / pool_async_ready / pool_async_successful on a slow task");
    double secs = 2; /* the looks below take a few ms: far less, even on a loaded machine */
    long sout = 0;
    double t0 = now_s();
    a = pool_apply_async(pool, slow, &secs, sizeof secs, &sout, sizeof sout, NULL);
    REQUIRE(a != NULL);
    CHECK(!pool_async_ready(a));
    CHECK(!pool_async_successful(a));
    CHECK_ST(pool_async_wait(a, 0), POOL_ETIMEDOUT);
    CHECK_ST(pool_async_wait(a, 0.05), POOL_ETIMEDOUT);
    CHECK_ST(pool_async_get(a, 0.05), POOL_ETIMEDOUT);
    CHECK(now_s() - t0 >= 0.09); /* the timeouts waited */
    CHECK_EQ(sout, 0);
    CHECK_ST(pool_async_wait(a, guard_s(10)), POOL_OK);
    CHECK(now_s() - t0 >= 1.95);
    CHECK(pool_async_ready(a));
    CHECK(pool_async_successful(a));
    CHECK_ST(pool_async_get(a, 0), POOL_OK);
    CHECK_EQ(sout, 1234);
    pool_async_free(a);

    SECTION("100 apply_async, then get in reverse order");
    long ins[100], outs[100];
    pool_async_t *h[100];
    for (int i = 0; i < 100; i++) {
        ins[i] = i;
        outs[i] = -1;
        h[i] = pool_apply_async(pool, square, &ins[i], sizeof ins[i], &outs[i], sizeof outs[i], NULL);
        CHECK(h[i] != NULL);
    }
    for (int i = 99; i >= 0; i--) {
        if (!h[i]) continue;
        CHECK_ST(pool_async_get(h[i], -1), POOL_OK);
        pool_async_free(h[i]);
    }
    check_squares(outs, 100, "100 apply_async");
}

static void test_lifecycle(void) {
    SECTION("join before close");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    CHECK_ST(pool_join(pool), POOL_EINVAL);
    CHECK_ERR_SET();
    /* Still usable afterwards. */
    long x = 5, y = 0;
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 25);

    SECTION("close: submitted work still finishes");
    double secs = 0.3;
    long sout[3] = {0, 0, 0};
    pool_async_t *pend[3];
    for (int i = 0; i < 3; i++) {
        pend[i] = pool_apply_async(pool, slow, &secs, sizeof secs, &sout[i], sizeof sout[i], NULL);
        CHECK(pend[i] != NULL);
    }
    size_t n = 50000;
    long *in = malloc(n * sizeof(long)), *out = malloc(n * sizeof(long));
    REQUIRE(in && out);
    for (size_t i = 0; i < n; i++) in[i] = (long)i, out[i] = -1;
    pool_async_t *m = pool_map_async(pool, slow_square, in, sizeof(long), out, sizeof(long), 400, NULL);
    CHECK(m != NULL);
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_close(pool), POOL_OK); /* second close: no-op */

    SECTION("use after close");
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_ECLOSED);
    CHECK_ERR_SET();
    CHECK_ST(pool_map(pool, square, in, sizeof(long), out + 1000, sizeof(long), 10, NULL), POOL_ECLOSED);
    CHECK_ERR_SET();
    CHECK(pool_apply_async(pool, square, &x, sizeof x, &y, sizeof y, NULL) == NULL);
    CHECK_ERR_SET();
    CHECK(pool_map_async(pool, square, in, sizeof(long), out + 1000, sizeof(long), 10, NULL) == NULL);
    CHECK_ERR_SET();
    CHECK(out[1000] == -1);

    SECTION("join after close waits for the submitted work");
    CHECK_ST(pool_join(pool), POOL_OK);
    for (int i = 0; i < 3; i++) {
        if (!pend[i]) continue;
        CHECK(pool_async_ready(pend[i]));
        CHECK_ST(pool_async_get(pend[i], guard_s(5)), POOL_OK);
        CHECK_EQ(sout[i], 1234);
        pool_async_free(pend[i]);
    }
    if (m) {
        CHECK(pool_async_ready(m));
        CHECK_ST(pool_async_get(m, guard_s(5)), POOL_OK);
        pool_async_free(m);
        check_squares(out, 400, "map_async submitted before close");
    }
    CHECK_ST(pool_join(pool), POOL_OK); /* joining again is harmless */
    CHECK_ST(pool_close(pool), POOL_OK);
    pool_destroy(pool);

    SECTION("close with a large map_async in flight (more chunks than are queued at once)");
    pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    for (size_t i = 0; i < n; i++) out[i] = -1;
    m = pool_map_async(pool, square, in, sizeof(long), out, sizeof(long), n, NULL);
    REQUIRE(m != NULL);
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_async_get(m, guard_s(20)), POOL_OK);
    pool_async_free(m);
    check_squares(out, n, "large map_async submitted before close");
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);

    SECTION("terminate, then join");
    pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    CHECK_ST(pool_terminate(pool), POOL_OK);
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_ECLOSED);
    CHECK(pool_apply_async(pool, square, &x, sizeof x, &y, sizeof y, NULL) == NULL);
    CHECK_ST(pool_join(pool), POOL_OK);
    CHECK_ST(pool_close(pool), POOL_OK); /* close after terminate: no-op */
    pool_destroy(pool);

    SECTION("async handles outlive pool_destroy (not closed: terminated)");
    pool = pool_create(1, NULL);
    REQUIRE(pool != NULL);
    long done_out = 0, pend_out = -1;
    long seven = 7;
    pool_async_t *done = pool_apply_async(pool, square, &seven, sizeof seven, &done_out, sizeof done_out, NULL);
    REQUIRE(done != NULL);
    CHECK_ST(pool_async_wait(done, -1), POOL_OK);
    pool_async_t *mdone = pool_map_async(pool, square, in, sizeof(long), out, sizeof(long), 100, NULL);
    REQUIRE(mdone != NULL);
    CHECK_ST(pool_async_wait(mdone, -1), POOL_OK);
    double long_secs = 3600; /* a destroy that waited would hang */
    pool_async_t *pending = pool_apply_async(pool, slow, &long_secs, sizeof long_secs, &pend_out, sizeof pend_out, NULL);
    REQUIRE(pending != NULL);
    long slow_out[50];
    for (int i = 0; i < 50; i++) slow_out[i] = -1;
    pool_async_t *mpending = pool_map_async(pool, slow_square, in, sizeof(long), slow_out, sizeof(long), 50, NULL);
    REQUIRE(mpending != NULL);
    double t0 = now_s();
    pool_destroy(pool);
    CHECK_TOOK(t0, 10, "destroy with work running"); /* terminated, not waited for */
    CHECK_ST(pool_async_get(mpending, guard_s(10)), POOL_ECLOSED); /* queued behind the long task */
    CHECK(pool_async_ready(mpending));
    for (int i = 0; i < 50; i++) CHECK_EQ(slow_out[i], -1);
    pool_async_free(mpending);
    CHECK(pool_async_ready(done));
    CHECK(pool_async_successful(done));
    CHECK_ST(pool_async_get(done, -1), POOL_OK);
    CHECK_EQ(done_out, 49);
    CHECK_ST(pool_async_get(mdone, -1), POOL_OK);
    CHECK(pool_async_successful(mdone));
    check_squares(out, 100, "map_async done before destroy");
    CHECK_ST(pool_async_get(pending, guard_s(10)), POOL_ECLOSED);
    CHECK_ERR_SET();
    CHECK(pool_async_ready(pending));
    CHECK(!pool_async_successful(pending));
    CHECK_ST(pool_async_wait(pending, 0), POOL_OK);
    CHECK_EQ(pend_out, -1);
    pool_async_free(done);
    pool_async_free(mdone);
    pool_async_free(pending);

    SECTION("pool_destroy of a closed pool waits for its work");
    pool = pool_create(1, NULL);
    REQUIRE(pool != NULL);
    secs = 0.3;
    long closed_out = 0;
    pending = pool_apply_async(pool, slow, &secs, sizeof secs, &closed_out, sizeof closed_out, NULL);
    REQUIRE(pending != NULL);
    CHECK_ST(pool_close(pool), POOL_OK);
    pool_destroy(pool);
    CHECK_ST(pool_async_get(pending, guard_s(10)), POOL_OK);
    CHECK_EQ(closed_out, 1234);
    pool_async_free(pending);

    free(in);
    free(out);
}

int main(void) {
    test_begin("basic", 50);
    test_version_and_strings();
    test_create();

    SECTION("pool_create(2)");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    CHECK_EQ(pool_workers(pool), 2);
    test_map(pool);
    test_apply(pool);
    SECTION("close and join the main pool");
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);

    test_lifecycle();
    return test_finish();
}
