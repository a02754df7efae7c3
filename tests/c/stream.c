/* Streams of variable-size tasks (pool_stream, pool_stream_source, pool_stream_next) and
 * results written in place (pool_out_reserve / pool_out_commit). */
#include "check.h"

#include <pthread.h>
#include <stdbool.h>

#define KiB ((size_t)1 << 10)

/* Item i is (37 i) % 5000 bytes, each (i + j) & 0x7f (never a marker byte below). */
static size_t item_len(size_t i) { return (i * 37) % 5000; }
static unsigned char item_byte(size_t i, size_t j) { return (unsigned char)((i + j) & 0x7f); }

/* Result: the input reversed, then its length as 8 bytes. Fails (code 9, with a message) for
 * inputs whose first byte is 0xEE, crashes for 0xDD, sleeps for 0xCC. */
static int reverse(const void *in, size_t len, void *ctx) {
    (void)ctx;
    const unsigned char *b = in;
    if (len > 0 && b[0] == 0xEE) {
        pool_task_error("refused 0xEE");
        return 9;
    }
    if (len > 0 && b[0] == 0xDD) abort();
    if (len > 0 && b[0] == 0xCC) sleep_s(3600); /* ended by a timeout, a cancel or the pool's end */
    size_t avail = 0;
    unsigned char *out = pool_out_reserve(len, &avail);
    if (out == NULL || avail < len) return 100;
    for (size_t j = 0; j < len; j++) out[j] = b[len - 1 - j];
    if (pool_out_commit(len) != POOL_OK) return 101;
    uint64_t l = len;
    return pool_out_write(&l, sizeof l) == POOL_OK ? 0 : 102;
}

static bool reversed_ok(size_t i, const unsigned char *d, size_t len) {
    size_t n = item_len(i);
    if (len != n + 8) return false;
    for (size_t j = 0; j < n; j++)
        if (d[j] != item_byte(i, n - 1 - j)) return false;
    uint64_t l;
    memcpy(&l, d + n, 8);
    return l == n;
}

/* The source: items as above until `count`; tracks the highest index asked for. */
struct src {
    size_t count;
    size_t highest;
    size_t calls;
    int fail_at; /* -1: never; else return 7 at that index */
    int long_at; /* -1: never; else claim a length over cap at that index */
    pool_stream_t *self;
    int nested_status;
};

static int source(void *buf, size_t cap, size_t *len, size_t index, void *ctx) {
    struct src *s = ctx;
    s->calls++;
    if (index > s->highest || s->calls == 1) s->highest = index;
    if (s->self != NULL) s->nested_status = pool_stream_next(s->self, NULL, NULL, NULL, 0);
    if ((int)index == s->fail_at) return 7;
    if ((int)index == s->long_at) {
        *len = cap + 1;
        return 0;
    }
    if (index >= s->count) return 1;
    size_t n = item_len(index);
    if (n > cap) return 8;
    unsigned char *b = buf;
    for (size_t j = 0; j < n; j++) b[j] = item_byte(index, j);
    *len = n;
    return 0;
}

/* Writes 300 KiB (big) or 3 KiB (small) in place, in three reserve/commit rounds, then checks
 * the misuses: commit without reserve, commit past the room, reserve past max_out. */
static int in_place(const void *in, size_t len, void *ctx) {
    (void)ctx;
    (void)len;
    size_t total = *(const size_t *)in, max_out = ((const size_t *)in)[1];
    size_t part = total / 3, done = 0;
    for (int r = 0; r < 3; r++) {
        size_t avail = 0;
        unsigned char *p = pool_out_reserve(part, &avail);
        if (p == NULL) return 10 + r;
        if (avail != max_out - done) return 20 + r;
        for (size_t j = 0; j < part; j++) p[j] = (unsigned char)((done + j) * 7);
        if (pool_out_commit(part) != POOL_OK) return 30 + r;
        done += part;
    }
    if (pool_out_commit(1) != POOL_EINVAL) return 40;
    size_t avail = 0;
    if (pool_out_reserve(max_out - done + 1, &avail) != NULL) return 41;
    if (pool_last_status() != POOL_ENOMEM) return 42;
    if (pool_out_reserve(0, NULL) != NULL) return 43;
    if (pool_out_reserve(1, &avail) == NULL) return 44;
    if (pool_out_commit(avail + 1) != POOL_EINVAL) return 45;
    return 0;
}

/* Reserves 1 byte, then writes `in[0]` bytes past it: an overrun. */
static int overruns(const void *in, size_t len, void *ctx) {
    (void)ctx;
    (void)len;
    size_t n = *(const size_t *)in;
    size_t avail = 0;
    volatile unsigned char *p = pool_out_reserve(1, &avail);
    if (p == NULL) return 1;
    for (size_t j = 0; j < n; j++) p[j] = 0xAB;
    pool_out_commit(1);
    return 0;
}

/* Commits everything pool_out_reserve gave without writing it: must read as zeros. */
static int commits_unwritten(const void *in, size_t len, void *ctx) {
    (void)in;
    (void)len;
    (void)ctx;
    size_t avail = 0;
    if (pool_out_reserve(1, &avail) == NULL) return 1;
    return pool_out_commit(avail);
}

/* Fills its whole result with 'S' in place. */
static int fills(const void *in, size_t len, void *ctx) {
    (void)in;
    (void)len;
    (void)ctx;
    size_t avail = 0;
    char *p = pool_out_reserve(1, &avail);
    if (p == NULL) return 1;
    memset(p, 'S', avail);
    return pool_out_commit(avail);
}

/* Two streams whose sources call into each other: each must get EINVAL, never wait. */
static pool_stream_t *nest_a, *nest_b;
static int nest_status_a = -1, nest_status_b = -1;
static int nest_source_a(void *buf, size_t cap, size_t *len, size_t index, void *ctx) {
    (void)cap;
    (void)ctx;
    if (index == 1) return 1;
    nest_status_a = pool_stream_next(nest_b, NULL, NULL, NULL, 1);
    *(char *)buf = 'a';
    *len = 1;
    return 0;
}
static int nest_source_b(void *buf, size_t cap, size_t *len, size_t index, void *ctx) {
    (void)cap;
    (void)ctx;
    if (index == 1) return 1;
    nest_status_b = pool_stream_next(nest_a, NULL, NULL, NULL, 1);
    if (nest_status_b == POOL_EINVAL && pool_stream_progress(nest_a, NULL, NULL) != POOL_EINVAL) nest_status_b = -2;
    *(char *)buf = 'b';
    *len = 1;
    return 0;
}

struct waiter {
    pool_stream_t *s;
    int status;
    double seconds;
};

static void *wait_next(void *arg) {
    struct waiter *w = arg;
    double t0 = now_s();
    w->status = pool_stream_next(w->s, NULL, NULL, NULL, -1);
    w->seconds = now_s() - t0;
    return NULL;
}

static int echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    return pool_out_write(in, len);
}

/* Writes its ctx (a 16-byte string). */
static int ctx_task(const void *in, size_t len, void *ctx) {
    (void)in;
    (void)len;
    return pool_out_write(ctx, 16);
}

static void make_items(pool_buf_t *items, unsigned char **bufs, size_t n) {
    for (size_t i = 0; i < n; i++) {
        size_t len = item_len(i);
        bufs[i] = malloc(len > 0 ? len : 1);
        REQUIRE(bufs[i] != NULL);
        for (size_t j = 0; j < len; j++) bufs[i][j] = item_byte(i, j);
        items[i].data = len > 0 ? bufs[i] : NULL;
        items[i].len = len;
    }
}

int main(void) {
    test_begin("stream", 55);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    enum { N = 300 };
    static pool_buf_t items[N];
    static unsigned char *bufs[N];
    make_items(items, bufs, N);

    SECTION("array, ordered: every result in order, zero copy, progress");
    pool_stream_t *s = pool_stream(pool, reverse, items, N, 5000 + 8, NULL, NULL);
    REQUIRE(s != NULL);
    size_t done = 9, total = 9;
    CHECK_ST(pool_stream_progress(s, &done, &total), POOL_OK);
    CHECK_EQ(done, 0);
    CHECK_EQ(total, N);
    size_t good = 0;
    const void *prev = NULL;
    for (size_t k = 0; k < N; k++) {
        const void *d = NULL;
        size_t len = 0, idx = 99999;
        if (!CHECK_ST(pool_stream_next(s, &d, &len, &idx, guard_s(10)), POOL_OK)) break;
        CHECK_EQ(idx, k);
        if (reversed_ok(idx, d, len)) good++;
        prev = d;
    }
    (void)prev;
    CHECK_EQ(good, N);
    CHECK_ST(pool_stream_progress(s, &done, NULL), POOL_OK);
    CHECK_EQ(done, N);
    CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, 1), POOL_EDONE);
    CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, 1), POOL_EDONE);
    pool_stream_free(s);

    SECTION("array, unordered, window 3: each index once");
    pool_stream_options_t so;
    pool_stream_options_init(&so);
    CHECK(so.ordered);
    so.ordered = false;
    so.window = 3;
    s = pool_stream(pool, reverse, items, N, 5000 + 8, NULL, &so);
    REQUIRE(s != NULL);
    static char seen[N];
    memset(seen, 0, sizeof seen);
    good = 0;
    for (;;) {
        const void *d = NULL;
        size_t len = 0, idx = 0;
        int st = pool_stream_next(s, &d, &len, &idx, guard_s(10));
        if (st == POOL_EDONE) break;
        if (!CHECK_ST(st, POOL_OK)) break;
        REQUIRE(idx < N);
        CHECK(!seen[idx]);
        seen[idx] = 1;
        if (reversed_ok(idx, d, len)) good++;
    }
    CHECK_EQ(good, N);
    pool_stream_free(s);

    SECTION("source: input written in place; backpressure holds the source back");
    struct src sc = {.count = 500, .fail_at = -1, .long_at = -1};
    so.ordered = true;
    so.window = 4;
    s = pool_stream_source(pool, reverse, source, &sc, 5000, 5000 + 8, NULL, &so);
    REQUIRE(s != NULL);
    good = 0;
    size_t k = 0, worst_ahead = 0;
    for (;; k++) {
        const void *d = NULL;
        size_t len = 0, idx = 0;
        int st = pool_stream_next(s, &d, &len, &idx, guard_s(10));
        if (st == POOL_EDONE) break;
        if (!CHECK_ST(st, POOL_OK)) break;
        CHECK_EQ(idx, k);
        if (reversed_ok(idx, d, len)) good++;
        if (sc.highest > k && sc.highest - k > worst_ahead) worst_ahead = sc.highest - k;
        if (k % 50 == 0) sleep_s(0.01); /* a slow consumer */
    }
    CHECK_EQ(good, 500);
    CHECK_EQ(k, 500);
    CHECK(worst_ahead <= 4); /* never more than the window ahead of the consumer */
    CHECK_ST(pool_stream_progress(s, &done, &total), POOL_OK);
    CHECK_EQ(total, 500);
    pool_stream_free(s);

    SECTION("source failing: its status after the last result, then EDONE");
    struct src sf = {.count = 100, .fail_at = 40, .long_at = -1};
    s = pool_stream_source(pool, reverse, source, &sf, 5000, 5000 + 8, NULL, NULL);
    REQUIRE(s != NULL);
    size_t got = 0;
    int st;
    while ((st = pool_stream_next(s, NULL, NULL, NULL, guard_s(10))) == POOL_OK) got++;
    CHECK_EQ(got, 40);
    CHECK_EQ(st, POOL_ETASK);
    CHECK_ERR_HAS("returned 7");
    CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, 1), POOL_EDONE);
    pool_stream_free(s);

    SECTION("source claiming more than max_in: EINVAL after the last result");
    struct src sl = {.count = 100, .fail_at = -1, .long_at = 5};
    s = pool_stream_source(pool, reverse, source, &sl, 5000, 5000 + 8, NULL, NULL);
    REQUIRE(s != NULL);
    got = 0;
    while ((st = pool_stream_next(s, NULL, NULL, NULL, guard_s(10))) == POOL_OK) got++;
    CHECK_EQ(got, 5);
    CHECK_EQ(st, POOL_EINVAL);
    CHECK_ERR_HAS("max_in");
    pool_stream_free(s);

    SECTION("pool_stream_next from inside the stream's own source: EINVAL");
    struct src sn = {.count = 3, .fail_at = -1, .long_at = -1, .nested_status = -1};
    s = pool_stream_source(pool, reverse, source, &sn, 5000, 5000 + 8, NULL, NULL);
    REQUIRE(s != NULL);
    sn.self = s;
    got = 0;
    while ((st = pool_stream_next(s, NULL, NULL, NULL, guard_s(10))) == POOL_OK) got++;
    CHECK_EQ(st, POOL_EDONE);
    CHECK_EQ(got, 3);
    CHECK_EQ(sn.nested_status, POOL_EINVAL);
    pool_stream_free(s);

    SECTION("failing, crashing and hanging items fail alone, each with its index");
    {
        enum { M = 40 };
        pool_buf_t fi[M];
        unsigned char fb[M][16];
        for (size_t i = 0; i < M; i++) {
            for (size_t j = 0; j < 16; j++) fb[i][j] = item_byte(i, j) & 0x7f;
            fi[i].data = fb[i];
            fi[i].len = 16;
        }
        fb[5][0] = 0xEE;
        fb[17][0] = 0xDD;
        fb[29][0] = 0xCC;
        pool_stream_options_init(&so);
        /* Above what the crashing item takes to die: seconds under valgrind, and past 10 s there
         * at load 25 (it was then timed out instead). */
        so.task_timeout = guard_s(2);
        s = pool_stream(pool, reverse, fi, M, 16 + 8, NULL, &so);
        REQUIRE(s != NULL);
        size_t ok = 0;
        for (size_t i = 0; i < M; i++) {
            const void *d = (const void *)1;
            size_t len = 1, idx = 0;
            st = pool_stream_next(s, &d, &len, &idx, guard_s(30));
            CHECK_EQ(idx, i);
            if (i == 5) {
                CHECK_EQ(st, POOL_ETASK);
                CHECK_ERR_HAS("refused 0xEE");
                CHECK(d == NULL && len == 0);
            } else if (i == 17) {
                CHECK_EQ(st, POOL_ECRASHED);
            } else if (i == 29) {
                CHECK_EQ(st, POOL_ETIMEDOUT);
            } else if (CHECK_ST(st, POOL_OK) && len == 24 && memcmp((const unsigned char *)d + 15, fb[i], 1) == 0) {
                ok++;
            }
        }
        CHECK_EQ(ok, M - 3);
        CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, 1), POOL_EDONE);
        pool_stream_free(s);
    }

    SECTION("nothing ready yet: ETIMEDOUT with index SIZE_MAX");
    {
        unsigned char slow[4] = {0xCC, 0, 0, 0};
        pool_buf_t one = {slow, 4};
        pool_stream_options_init(&so);
        so.task_timeout = 5;
        s = pool_stream(pool, reverse, &one, 1, 64, NULL, &so);
        REQUIRE(s != NULL);
        size_t idx = 0;
        CHECK_ST(pool_stream_next(s, NULL, NULL, &idx, 0.05), POOL_ETIMEDOUT);
        CHECK(idx == SIZE_MAX);
        pool_stream_free(s); /* cancels the sleeping task */
    }

    SECTION("results written in place: small (through private memory) and big (a window)");
    size_t sizes[2][2] = {{3 * KiB, 4 * KiB}, {300 * KiB, 512 * KiB}};
    for (int z = 0; z < 2; z++) {
        pool_async_t *a = pool_submit(pool, in_place, sizes[z], sizeof sizes[z], sizes[z][1], NULL);
        REQUIRE(a != NULL);
        CHECK_ST(pool_async_get(a, guard_s(20)), POOL_OK);
        const void *d = NULL;
        size_t len = 0;
        CHECK_ST(pool_async_result(a, &d, &len), POOL_OK);
        CHECK_EQ(len, sizes[z][0]);
        size_t bad = 0;
        for (size_t j = 0; j < len; j++)
            if (((const unsigned char *)d)[j] != (unsigned char)(j * 7)) bad++;
        CHECK_EQ(bad, 0);
        pool_async_free(a);
    }

    SECTION("an overrun of what pool_out_reserve gave crashes its own item only");
    /* Not under valgrind: workers write the pool's memory directly there (see README). */
    for (int z = 0; z < 2 && !under_valgrind(); z++) {
        size_t max_out = z == 0 ? 4 * KiB : 512 * KiB;
        size_t over[1] = {max_out + 64 * KiB};
        pool_async_t *bad = pool_submit(pool, overruns, over, sizeof over, max_out, NULL);
        REQUIRE(bad != NULL);
        pool_stream_t *es = pool_stream(pool, echo, items, 60, 5000, NULL, NULL);
        REQUIRE(es != NULL);
        CHECK_ST(pool_async_get(bad, guard_s(20)), POOL_ECRASHED);
        pool_async_free(bad);
        size_t same = 0;
        for (size_t i = 0; i < 60; i++) {
            const void *d = NULL;
            size_t len = 0;
            if (pool_stream_next(es, &d, &len, NULL, guard_s(20)) == POOL_OK && len == items[i].len &&
                (len == 0 || memcmp(d, items[i].data, len) == 0))
                same++;
        }
        CHECK_EQ(same, 60);
        pool_stream_free(es);
    }

    SECTION("ctx_size: every item sees the copy taken at the start");
    {
        char key[16] = "0123456789abcde";
        pool_stream_options_init(&so);
        so.ctx_size = sizeof key;
        s = pool_stream(pool, ctx_task, items, 20, 16, key, &so);
        REQUIRE(s != NULL);
        memcpy(key, "XXXXXXXXXXXXXXX", 16);
        size_t same = 0;
        const void *d;
        size_t len;
        while (pool_stream_next(s, &d, &len, NULL, guard_s(10)) == POOL_OK)
            if (len == 16 && memcmp(d, "0123456789abcde", 16) == 0) same++;
        CHECK_EQ(same, 20);
        pool_stream_free(s);
    }

    SECTION("freed mid-stream: the rest is cancelled; the pool goes on");
    s = pool_stream(pool, reverse, items, N, 5000 + 8, NULL, NULL);
    REQUIRE(s != NULL);
    CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, guard_s(10)), POOL_OK);
    pool_stream_free(s);
    s = pool_stream(pool, echo, items, 10, 5000, NULL, NULL);
    REQUIRE(s != NULL);
    got = 0;
    while (pool_stream_next(s, NULL, NULL, NULL, guard_s(10)) == POOL_OK) got++;
    CHECK_EQ(got, 10);
    pool_stream_free(s);

    SECTION("empty array: EDONE at once");
    s = pool_stream(pool, echo, NULL, 0, 16, NULL, NULL);
    REQUIRE(s != NULL);
    CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, 1), POOL_EDONE);
    pool_stream_free(s);

    SECTION("bad arguments and misused handles");
    CHECK(pool_stream(pool, NULL, items, 1, 16, NULL, NULL) == NULL);
    CHECK_ERR_HAS("fn is NULL");
    CHECK(pool_stream(pool, echo, NULL, 3, 16, NULL, NULL) == NULL);
    CHECK_ERR_HAS("items is NULL");
    pool_buf_t holes[2] = {{"ab", 2}, {NULL, 5}};
    CHECK(pool_stream(pool, echo, holes, 2, 16, NULL, NULL) == NULL);
    CHECK_ERR_HAS("items[1]");
    CHECK(pool_stream(NULL, echo, items, 1, 16, NULL, NULL) == NULL);
    CHECK(pool_stream_source(pool, echo, NULL, NULL, 16, 16, NULL, NULL) == NULL);
    CHECK_ERR_HAS("source is NULL");
    pool_stream_options_t raw;
    memset(&raw, 0, sizeof raw);
    CHECK(pool_stream(pool, echo, items, 1, 16, NULL, &raw) == NULL);
    CHECK_ERR_HAS("pool_stream_options_init");
    pool_stream_options_init(&so);
    so.task_timeout = 0.0 / 0.0;
    CHECK(pool_stream(pool, echo, items, 1, 16, NULL, &so) == NULL);
    size_t avail = 0;
    CHECK(pool_out_reserve(1, &avail) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK_ST(pool_out_commit(0), POOL_EINVAL);
    s = pool_stream(pool, echo, items, 5, 5000, NULL, NULL);
    REQUIRE(s != NULL);
    pool_stream_free(s);
    CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, 0), POOL_EINVAL);
    CHECK_ST(pool_stream_progress(s, NULL, NULL), POOL_EINVAL);
    pool_stream_free(s); /* a second free: reported, nothing else */
    CHECK_ERR_HAS("not a live handle");
    pool_stream_free(NULL);
    CHECK_ST(pool_stream_next((pool_stream_t *)pool, NULL, NULL, NULL, 0), POOL_EINVAL);

    SECTION("the pool terminated mid-stream: what was submitted ends, the rest is ECLOSED, then EDONE");
    {
        pool_stream_options_init(&so);
        so.window = 2;
        s = pool_stream(pool, reverse, items, N, 5000 + 8, NULL, &so);
        REQUIRE(s != NULL);
        CHECK_ST(pool_stream_next(s, NULL, NULL, NULL, guard_s(10)), POOL_OK);
        CHECK_ST(pool_terminate(pool), POOL_OK);
        size_t count = 1, closed = 0;
        size_t idx;
        while ((st = pool_stream_next(s, NULL, NULL, &idx, guard_s(10))) != POOL_EDONE) {
            if (st == POOL_ETIMEDOUT && idx == SIZE_MAX) {
                CHECK(0 && "hang after terminate");
                break;
            }
            CHECK_EQ(idx, count);
            count++;
            if (st == POOL_ECLOSED) closed++;
        }
        CHECK_EQ(count, N);
        CHECK(closed >= N - 4);
        pool_stream_free(s);
    }

    pool_destroy(pool);

    SECTION("a window bigger than the heap: fewer items in flight, none fails");
    {
        pool_options_t po;
        pool_options_init(&po);
        po.shm_size = 64 << 20;
        pool_t *small = pool_create(2, &po);
        REQUIRE(small != NULL);
        pool_stream_options_init(&so);
        so.window = 100;
        s = pool_stream(small, echo, items, 200, 4 << 20, NULL, &so); /* 4 MiB of room per item */
        REQUIRE(s != NULL);
        size_t ok = 0, idx;
        const void *d;
        size_t len;
        while ((st = pool_stream_next(s, &d, &len, &idx, guard_s(20))) != POOL_EDONE) {
            if (st == POOL_ETIMEDOUT && idx == SIZE_MAX) break;
            if (st == POOL_OK && len == items[idx].len && (len == 0 || memcmp(d, items[idx].data, len) == 0)) ok++;
        }
        CHECK_EQ(ok, 200);
        pool_stream_free(s);

        SECTION("an item that can never fit fails alone; max_out that can never fit is refused");
        pool_buf_t four[4] = {items[1], {items[2].data, (size_t)100 << 20}, items[3], items[4]};
        s = pool_stream(small, echo, four, 4, 5000, NULL, NULL);
        REQUIRE(s != NULL);
        int sts[4] = {-1, -1, -1, -1};
        while ((st = pool_stream_next(s, NULL, NULL, &idx, guard_s(20))) != POOL_EDONE && idx < 4) sts[idx] = st;
        CHECK(sts[0] == POOL_OK && sts[1] == POOL_ENOMEM && sts[2] == POOL_OK && sts[3] == POOL_OK);
        pool_stream_free(s);
        CHECK(pool_stream(small, echo, items, 4, (size_t)1 << 40, NULL, NULL) == NULL);
        CHECK_EQ(pool_last_status(), POOL_ENOMEM);
        CHECK(pool_stream_source(small, echo, source, &sc, (size_t)1 << 40, 16, NULL, NULL) == NULL);
        CHECK_ERR_HAS("max_in");

        SECTION("committed bytes never written read as zeros, never an earlier task's");
        for (int z = 0; z < 2; z++) {
            size_t max_out = z == 0 ? 1000 : 300 * KiB;
            for (int round = 0; round < 2; round++) {
                pool_buf_t one = {"x", 1};
                s = pool_stream(small, round == 0 ? fills : commits_unwritten, &one, 1, max_out, NULL, NULL);
                REQUIRE(s != NULL);
                const void *d = NULL;
                size_t len = 0;
                CHECK_ST(pool_stream_next(s, &d, &len, NULL, guard_s(20)), POOL_OK);
                CHECK_EQ(len, max_out);
                if (round == 1) {
                    size_t leaked = 0;
                    for (size_t j = 0; j < len; j++) leaked += ((const char *)d)[j] != 0;
                    CHECK_EQ(leaked, 0);
                }
                pool_stream_free(s);
            }
        }
        pool_destroy(small);
    }

    SECTION("sources calling into each other's streams: EINVAL, no deadlock");
    {
        pool_t *p2 = pool_create(1, NULL);
        REQUIRE(p2 != NULL);
        nest_a = pool_stream_source(p2, echo, nest_source_a, NULL, 16, 16, NULL, NULL);
        nest_b = pool_stream_source(p2, echo, nest_source_b, NULL, 16, 16, NULL, NULL);
        REQUIRE(nest_a && nest_b);
        size_t got_a = 0;
        while (pool_stream_next(nest_a, NULL, NULL, NULL, guard_s(10)) == POOL_OK) got_a++;
        CHECK_EQ(got_a, 1);
        CHECK_EQ(nest_status_b, POOL_EINVAL);
        CHECK(nest_status_a == POOL_OK || nest_status_a == POOL_ETIMEDOUT);
        pool_stream_free(nest_a);
        pool_stream_free(nest_b);

        SECTION("a stream freed while another thread waits in pool_stream_next: the wait ends");
        unsigned char slow[4] = {0xCC, 0, 0, 0};
        pool_buf_t one = {slow, 4};
        s = pool_stream(p2, reverse, &one, 1, 64, NULL, NULL);
        REQUIRE(s != NULL);
        struct waiter w = {s, -1, 0};
        pthread_t th;
        REQUIRE(pthread_create(&th, NULL, wait_next, &w) == 0);
        sleep_s(0.2);
        pool_stream_free(s);
        pthread_join(th, NULL);
        CHECK_EQ(w.status, POOL_EINVAL);
        check_took_(__FILE__, __LINE__, "a wait ended by pool_stream_free", w.seconds, 10);
        pool_destroy(p2);
    }

    for (size_t i = 0; i < N; i++) free(bufs[i]);
    return test_finish();
}
