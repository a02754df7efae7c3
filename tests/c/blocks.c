/* Block maps: pool_map_blocks / pool_map_blocks_async. */
#include "check.h"

static int square_block(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)first;
    (void)ctx;
    const long *a = in;
    long *b = out;
    for (size_t i = 0; i < count; i++) b[i] = a[i] * a[i];
    return 0;
}

/* out[i] = first + i and count; checks count against ctx's block size (a size_t). */
static int spans(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)in;
    size_t bs = *(const size_t *)ctx;
    if (count == 0 || count > bs || first % bs != 0) return 3;
    size_t *o = out;
    for (size_t i = 0; i < count; i++) {
        o[2 * i] = first + i;
        o[2 * i + 1] = count;
    }
    return 0;
}

/* No data: marks items [first, first+count) in a pool_shm_alloc array given as ctx. */
static int mark(const void *in, void *out, size_t count, size_t first, void *ctx) {
    if (in != NULL || out != NULL) return 4;
    unsigned char *m = ctx;
    for (size_t i = 0; i < count; i++) m[first + i]++;
    return 0;
}

/* Copies a block of 4 MiB items. */
static int copy_block(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)first;
    (void)ctx;
    memcpy(out, in, count << 22);
    return 0;
}

/* Fails, crashes or hangs the blocks holding items 12345, 50000 and 70000. */
static int faulty(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)ctx;
    if (first <= 12345 && 12345 < first + count) {
        pool_task_error("block with 12345");
        return 5;
    }
    if (first <= 50000 && 50000 < first + count) abort();
    if (first <= 70000 && 70000 < first + count) sleep_s(3600); /* ended by the task_timeout */
    return square_block(in, out, count, first, NULL);
}

int main(void) {
    test_begin("blocks", 55);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    enum { N = 1000000 };
    long *in = malloc(N * sizeof *in), *out = malloc(N * sizeof *out);
    REQUIRE(in && out);
    for (long i = 0; i < N; i++) in[i] = i - N / 2;

    SECTION("squares of 1e6 longs, malloc'd buffers, automatic blocks");
    memset(out, 0, N * sizeof *out);
    CHECK_ST(pool_map_blocks(pool, square_block, in, sizeof(long), out, sizeof(long), N, NULL, NULL), POOL_OK);
    size_t bad = 0;
    for (long i = 0; i < N; i++) bad += out[i] != in[i] * in[i];
    CHECK_EQ(bad, 0);

    SECTION("the same with pool_shm_alloc buffers (in place)");
    long *sin = pool_shm_alloc(pool, N * sizeof(long)), *sout = pool_shm_alloc(pool, N * sizeof(long));
    REQUIRE(sin && sout);
    memcpy(sin, in, N * sizeof(long));
    memset(sout, 0, N * sizeof(long));
    CHECK_ST(pool_map_blocks(pool, square_block, sin, sizeof(long), sout, sizeof(long), N, NULL, NULL), POOL_OK);
    bad = 0;
    for (long i = 0; i < N; i++) bad += sout[i] != in[i] * in[i];
    CHECK_EQ(bad, 0);

    SECTION("chunksize is the block size; the last block is shorter");
    {
        size_t bs = 777, n = 10000;
        size_t *o = calloc(2 * n, sizeof(size_t));
        REQUIRE(o);
        pool_map_options_t mo;
        pool_map_options_init(&mo);
        mo.chunksize = bs;
        mo.ctx_size = sizeof bs;
        CHECK_ST(pool_map_blocks(pool, spans, NULL, 0, o, 2 * sizeof(size_t), n, &bs, &mo), POOL_OK);
        size_t wrong = 0;
        for (size_t i = 0; i < n; i++) {
            size_t want_count = (i / bs + 1) * bs <= n ? bs : n % bs;
            wrong += o[2 * i] != i || o[2 * i + 1] != want_count;
        }
        CHECK_EQ(wrong, 0);
        free(o);
    }

    SECTION("no data at all: a parallel loop over indices");
    {
        size_t n = 123457;
        unsigned char *m = pool_shm_alloc(pool, n);
        REQUIRE(m);
        memset(m, 0, n);
        CHECK_ST(pool_map_blocks(pool, mark, NULL, 0, NULL, 0, n, m, NULL), POOL_OK);
        size_t once = 0;
        for (size_t i = 0; i < n; i++) once += m[i] == 1;
        CHECK_EQ(once, n);
        pool_shm_free(pool, m);
    }

    SECTION("a failing, a crashing and a hanging block fail alone, every item with its block's status");
    {
        enum { M = 100000, BS = 1000 };
        int *st = malloc(M * sizeof(int));
        REQUIRE(st);
        memset(out, 0, M * sizeof(long));
        pool_map_options_t mo;
        pool_map_options_init(&mo);
        mo.chunksize = BS;
        mo.statuses = st;
        /* Above what the crashing block takes to die: seconds under valgrind, and past 10 s there
         * at load 25. */
        mo.task_timeout = guard_s(2);
        CHECK_ST(pool_map_blocks(pool, faulty, in, sizeof(long), out, sizeof(long), M, NULL, &mo), POOL_ETASK);
        CHECK_ERR_HAS("item 12000");
        CHECK_ERR_HAS("block with 12345");
        size_t wrong = 0, ok = 0;
        for (size_t i = 0; i < M; i++) {
            int want = i / BS == 12 ? POOL_ETASK : i / BS == 50 ? POOL_ECRASHED : i / BS == 70 ? POOL_ETIMEDOUT : POOL_OK;
            wrong += st[i] != want;
            if (want == POOL_OK && out[i] == in[i] * in[i]) ok++;
        }
        CHECK_EQ(wrong, 0);
        CHECK_EQ(ok, M - 3 * BS);
        free(st);
    }

    SECTION("async, with a callback-free handle, and progress in items");
    {
        pool_async_t *a = pool_map_blocks_async(pool, square_block, in, sizeof(long), out, sizeof(long), N, NULL, NULL);
        REQUIRE(a != NULL);
        CHECK_ST(pool_async_get(a, guard_s(20)), POOL_OK);
        size_t done = 0, total = 0;
        CHECK_ST(pool_async_progress(a, &done, &total), POOL_OK);
        CHECK_EQ(done, N);
        CHECK_EQ(total, N);
        pool_async_free(a);
        bad = 0;
        for (long i = 0; i < N; i++) bad += out[i] != in[i] * in[i];
        CHECK_EQ(bad, 0);
    }

    SECTION("more blocks in the window than the heap holds: they wait for room, none fails");
    {
        pool_options_t po;
        pool_options_init(&po);
        po.shm_size = 32 << 20;
        pool_t *small = pool_create(2, &po);
        REQUIRE(small != NULL);
        enum { K = 10 };
        size_t item = (size_t)4 << 20;
        unsigned char *bin = malloc(K * item), *bout = calloc(K, item);
        REQUIRE(bin && bout);
        for (size_t i = 0; i < K * item; i++) bin[i] = (unsigned char)(i * 31 + (i >> 20));
        int st[K];
        pool_map_options_t mo;
        pool_map_options_init(&mo);
        mo.chunksize = 1;
        mo.statuses = st;
        CHECK_ST(pool_map_blocks(small, copy_block, bin, item, bout, item, K, NULL, &mo), POOL_OK);
        size_t okk = 0;
        for (int i = 0; i < K; i++) okk += st[i] == POOL_OK;
        CHECK_EQ(okk, K);
        CHECK(memcmp(bin, bout, K * item) == 0);
        free(bin);
        free(bout);
        pool_destroy(small);
    }

    SECTION("bad arguments");
    CHECK_ST(pool_map_blocks(pool, NULL, in, 8, out, 8, 10, NULL, NULL), POOL_EINVAL);
    CHECK_ERR_HAS("fn is NULL");
    CHECK_ST(pool_map_blocks(pool, square_block, NULL, 8, out, 8, 10, NULL, NULL), POOL_EINVAL);
    CHECK_ERR_HAS("in is NULL");
    CHECK_ST(pool_map_blocks(pool, square_block, in, 8, NULL, 8, 10, NULL, NULL), POOL_EINVAL);
    CHECK_ERR_HAS("out is NULL");
    CHECK_ST(pool_map_blocks(pool, square_block, in, SIZE_MAX / 2, out, 8, 10, NULL, NULL), POOL_EINVAL);
    CHECK_ERR_HAS("overflows");
    CHECK_ST(pool_map_blocks(NULL, square_block, in, 8, out, 8, 10, NULL, NULL), POOL_EINVAL);
    CHECK_ST(pool_map_blocks(pool, square_block, in, 8, out, 8, 0, NULL, NULL), POOL_OK);
    CHECK(pool_map_blocks_async(pool, NULL, in, 8, out, 8, 10, NULL, NULL) == NULL);

    pool_shm_free(pool, sin);
    pool_shm_free(pool, sout);
    pool_destroy(pool);
    free(in);
    free(out);
    return test_finish();
}
