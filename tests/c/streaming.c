/* The speed features through the C API: pool_shm_alloc (zero copy), pool_imap and
 * pool_imap_unordered, pool_async_progress, pool_event_fd, chunksize. */
#include "check.h"

#include <poll.h>

static int square_but_13(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    if (x == 13) return 5; /* one failing item, to see failures come back in place */
    *(long *)out = x * x;
    return 0;
}

static void test_shm(pool_t *pool) {
    SECTION("pool_shm_alloc: a map whose buffers are shared memory");
    size_t n = 200000;
    long *in = pool_shm_alloc(pool, n * sizeof *in);
    long *out = pool_shm_alloc(pool, n * sizeof *out);
    REQUIRE(in != NULL && out != NULL);
    for (size_t i = 0; i < n; i++) in[i] = (long)i + 100;
    CHECK_ST(pool_map(pool, square_but_13, in, sizeof *in, out, sizeof *out, n, NULL), POOL_OK);
    size_t bad = 0;
    for (size_t i = 0; i < n; i++) bad += out[i] != in[i] * in[i];
    CHECK_EQ(bad, 0);
    CHECK_ST(pool_shm_free(pool, in), POOL_OK);
    CHECK_ST(pool_shm_free(pool, out), POOL_OK);
    CHECK_ST(pool_shm_free(pool, out), POOL_EINVAL); /* twice */
    CHECK_ST(pool_shm_free(pool, NULL), POOL_OK);
    CHECK(pool_shm_alloc(NULL, 8) == NULL);
    CHECK(pool_shm_alloc(pool, (size_t)1 << 60) == NULL);
    CHECK_EQ(pool_last_status(), POOL_ENOMEM);
}

static void test_imap(pool_t *pool, int ordered) {
    SECTION(ordered ? "pool_imap" : "pool_imap_unordered");
    enum { N = 3000 };
    static long in[N];
    static char seen[N];
    memset(seen, 0, sizeof seen);
    for (long i = 0; i < N; i++) in[i] = i;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 17;
    pool_iter_t *it = (ordered ? pool_imap : pool_imap_unordered)(pool, square_but_13, in, sizeof in[0], sizeof(long), N, NULL, &mo);
    REQUIRE(it != NULL);
    size_t idx, count = 0, expect = 0;
    long y;
    int st;
    while ((st = pool_iter_next(it, &y, &idx, -1)) != POOL_EDONE) {
        REQUIRE(idx < N);
        if (ordered) CHECK_EQ(idx, expect++);
        CHECK(!seen[idx]);
        seen[idx] = 1;
        if (idx == 13) {
            CHECK_ST(st, POOL_ETASK);
            CHECK_ERR_HAS("item 13");
        } else if (CHECK_ST(st, POOL_OK)) {
            CHECK_EQ(y, (long)(idx * idx));
        }
        count++;
    }
    CHECK_EQ(count, N);
    CHECK_ST(pool_iter_next(it, &y, &idx, 0), POOL_EDONE); /* stays done */
    pool_iter_free(it);
    pool_iter_free(NULL);
    CHECK(pool_imap(pool, NULL, in, 8, 8, N, NULL, NULL) == NULL);
    CHECK_ST(pool_iter_next(NULL, &y, &idx, 0), POOL_EINVAL);
}

/* Items 0, 1, 2, ... up to *(long *)ctx, produced on demand. */
static int count_up(void *item, size_t index, void *ctx) {
    if ((long)index >= *(const long *)ctx) return 1;
    *(long *)item = (long)index + 20;
    return 0;
}

/* Items 0, 1, ... then 9 (an error) when asked for item *(long *)ctx. */
static int failing_source(void *item, size_t index, void *ctx) {
    if ((long)index >= *(const long *)ctx) return 9;
    *(long *)item = (long)index;
    return 0;
}

static void test_imap_source(pool_t *pool) {
    SECTION("pool_imap_source: input produced on demand");
    long limit = 50000;
    pool_iter_t *it = pool_imap_source(pool, square_but_13, count_up, &limit, sizeof(long), sizeof(long), NULL, true, NULL);
    REQUIRE(it != NULL);
    size_t idx, count = 0, bad = 0;
    long y;
    int st;
    while ((st = pool_iter_next(it, &y, &idx, -1)) != POOL_EDONE) {
        long x = (long)idx + 20;
        bad += st != POOL_OK || idx != count || y != x * x;
        count++;
    }
    CHECK_EQ(bad, 0);
    CHECK_EQ(count, (size_t)limit);
    CHECK_EQ(idx, SIZE_MAX); /* POOL_EDONE is about no item */
    pool_iter_free(it);
    CHECK(pool_imap_source(pool, square_but_13, NULL, &limit, 8, 8, NULL, true, NULL) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);

    SECTION("pool_imap_source: a source that fails: its status once, after the items it gave, about no item");
    long fail_at = 7;
    it = pool_imap_source(pool, square_but_13, failing_source, &fail_at, sizeof(long), sizeof(long), NULL, true, NULL);
    REQUIRE(it != NULL);
    count = 0;
    while ((st = pool_iter_next(it, &y, &idx, -1)) == POOL_OK) CHECK_EQ(idx, count++);
    CHECK_EQ(count, 7);
    CHECK_ST(st, POOL_ETASK);
    CHECK_EQ(idx, SIZE_MAX);
    CHECK_ERR_HAS("returned 9 when asked for item 7");
    CHECK_ST(pool_iter_next(it, &y, &idx, -1), POOL_EDONE);
    pool_iter_free(it);
}

static void test_progress_and_fd(pool_t *pool) {
    SECTION("pool_async_progress and pool_event_fd");
    int fd = pool_event_fd(pool);
    REQUIRE(fd >= 0);
    CHECK_EQ(pool_event_fd(NULL), -1);
    enum { N = 100000 };
    static long in[N], out[N];
    for (long i = 0; i < N; i++) in[i] = i + 20;
    pool_async_t *a = pool_map_async(pool, square_but_13, in, sizeof in[0], out, sizeof out[0], N, NULL);
    REQUIRE(a != NULL);
    struct pollfd p = {.fd = fd, .events = POLLIN};
    CHECK_EQ(poll(&p, 1, 20000), 1);
    CHECK_ST(pool_async_wait(a, guard_s(20)), POOL_OK);
    size_t done = 0, total = 0;
    CHECK_ST(pool_async_progress(a, &done, &total), POOL_OK);
    CHECK_EQ(done, N);
    CHECK_EQ(total, N);
    CHECK_ST(pool_async_progress(a, NULL, &total), POOL_EINVAL);
    CHECK_ST(pool_async_progress(NULL, &done, &total), POOL_EINVAL);
    unsigned long long v;
    CHECK_EQ(read(fd, &v, sizeof v), 8);
    pool_async_free(a);
}

int main(void) {
    test_begin("streaming", 55);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    test_shm(pool);
    test_imap(pool, 1);
    test_imap(pool, 0);
    test_imap_source(pool);
    test_progress_and_fd(pool);
    pool_destroy(pool);
    return test_finish();
}
