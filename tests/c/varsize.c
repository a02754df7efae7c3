/* Variable-size tasks: pool_submit, pool_out_write, pool_async_result. */
#include "check.h"

#define MiB ((size_t)1 << 20)

/* Writes the input reversed, in two pool_out_write calls (1 byte, then the rest). */
static int reverse(const void *in, size_t len, void *ctx) {
    (void)ctx;
    const unsigned char *b = in;
    unsigned char tmp[64];
    if (len > sizeof tmp || len < 1) return 100;
    for (size_t i = 0; i < len; i++) tmp[i] = b[len - 1 - i];
    int r = pool_out_write(tmp, 1);
    if (r != POOL_OK) return 200 + r;
    r = pool_out_write(tmp + 1, len - 1);
    if (r != POOL_OK) return 300 + r;
    return 0;
}

/* Writes "empty" if it got no input (in must then be NULL), else fails. */
static int empty_input(const void *in, size_t len, void *ctx) {
    (void)ctx;
    if (in != NULL || len != 0) return 1;
    return pool_out_write("empty", 5) == POOL_OK ? 0 : 2;
}

static int writes_nothing(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    return pool_out_write(NULL, 0) == POOL_OK ? 0 : 3;
}

/* max_out is 4: 3 bytes fit, 2 more do not (ENOMEM, nothing appended), 1 more fits exactly,
 * then even 1 more does not. Returns 77 when all that behaved as documented. */
static int overflows(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    if (pool_out_write("abc", 3) != POOL_OK) return 1;
    if (pool_out_write("de", 2) != POOL_ENOMEM) return 2;
    if (pool_out_write("d", 1) != POOL_OK) return 3;
    if (pool_out_write("e", 1) != POOL_ENOMEM) return 4;
    if (pool_out_write(NULL, 0) != POOL_OK) return 5;
    return 77;
}

/* Same, but returns success after hitting the limit: the result is what fitted. */
static int fills_exactly(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    if (pool_out_write("abcd", 4) != POOL_OK) return 1;
    if (pool_out_write("e", 1) != POOL_ENOMEM) return 2;
    return 0;
}

static int null_data(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    return pool_out_write(NULL, 1) == POOL_EINVAL ? 0 : 1;
}

static uint64_t checksum(const unsigned char *b, size_t len) {
    uint64_t h = 1469598103934665603ULL; /* FNV-1a */
    for (size_t i = 0; i < len; i++) {
        h ^= b[i];
        h *= 1099511628211ULL;
    }
    return h ^ (uint64_t)len;
}

static int checksum_task(const void *in, size_t len, void *ctx) {
    (void)ctx;
    uint64_t h = checksum(in, len);
    return pool_out_write(&h, sizeof h);
}

static unsigned char pattern(size_t i, uint64_t seed) {
    return (unsigned char)((i * 131u) ^ (i >> 12) ^ seed);
}

/* Writes 64 MiB of pattern(seed) in 1 MiB pieces; the input is the 8-byte seed. */
static int big_output(const void *in, size_t len, void *ctx) {
    (void)ctx;
    if (len != 8) return 1;
    uint64_t seed;
    memcpy(&seed, in, 8);
    unsigned char *buf = malloc(MiB);
    if (!buf) return 2;
    for (size_t off = 0; off < 64 * MiB; off += MiB) {
        for (size_t i = 0; i < MiB; i++) buf[i] = pattern(off + i, seed);
        int r = pool_out_write(buf, MiB);
        if (r != POOL_OK) {
            free(buf);
            return 10 + r;
        }
    }
    free(buf);
    return 0;
}

/* Writes the decimal form of its 4-byte int input. */
static int to_decimal(const void *in, size_t len, void *ctx) {
    (void)ctx;
    if (len != sizeof(int)) return 1;
    int v;
    memcpy(&v, in, sizeof v);
    char s[32];
    int n = snprintf(s, sizeof s, "%d", v);
    return pool_out_write(s, (size_t)n);
}

/* Slow enough that a look at it just after submitting finds it running, even on a loaded machine. */
static int slow_echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    sleep_s(1);
    return pool_out_write(in, len);
}

static int crashes(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    raise(SIGSEGV);
    return 0;
}

static int returns_9(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    pool_out_write("partial", 7);
    return 9;
}

/* Every misuse of pool_out_commit is refused (max_out 4): with no reservation before it, past
 * the room given, after the reservation ended (by a commit or a pool_out_write); a reservation
 * of 0 bytes with max_out full still takes its commit of 0. Returns 0 when all that held; the
 * result is then "abcd". */
static int misuses_commit(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    size_t avail = 0;
    if (pool_out_commit(0) != POOL_EINVAL) return 1; /* before any reserve */
    char *p = pool_out_reserve(2, &avail);
    if (p == NULL || avail != 4) return 2;
    if (pool_out_commit(avail + 1) != POOL_EINVAL) return 3;
    memcpy(p, "ab", 2);
    if (pool_out_commit(2) != POOL_OK) return 4;
    if (pool_out_commit(0) != POOL_EINVAL) return 5; /* the commit ended it */
    if (pool_out_reserve(0, &avail) == NULL) return 6;
    if (pool_out_write("c", 1) != POOL_OK) return 7;
    if (pool_out_commit(0) != POOL_EINVAL) return 8; /* the write ended it */
    p = pool_out_reserve(1, &avail);
    if (p == NULL || avail != 1) return 9;
    p[0] = 'd';
    if (pool_out_commit(1) != POOL_OK) return 10;
    if (pool_out_reserve(0, &avail) == NULL || avail != 0) return 11;
    if (pool_out_commit(0) != POOL_OK) return 12;
    if (pool_out_commit(0) != POOL_EINVAL) return 13;
    return 0;
}

/* Returns what pool_out_commit said, with no reservation. */
static int commits_unreserved(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    return pool_out_commit(0);
}

/* Returns what pool_out_write said of a result past max_out (4). */
static int returns_write_status(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    return pool_out_write("abcdef", 6);
}

/* The same after giving a message of its own, which stays the task's. */
static int explains_then_overflows(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    pool_task_error("the task's own words");
    return pool_out_write("abcdef", 6);
}

/* Returns the status of a pool_out_reserve that asks for more than max_out (4). */
static int reserves_too_much(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    size_t avail;
    return pool_out_reserve(10, &avail) == NULL ? pool_last_status() : 0;
}

/* Fixed-size task that tries pool_out_commit: not a pool_submit task, so EINVAL. */
static int commits_from_apply(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    *(int *)out = pool_out_commit(0);
    return 0;
}

/* Fixed-size task that tries pool_out_write: not a pool_submit task, so EINVAL. */
static int writes_from_apply(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    *(int *)out = pool_out_write("x", 1);
    return 0;
}

/* Runs `f` with max_out 4: it must fail (POOL_ETASK) with `needle` in its message, which
 * pool_last_error() still holds on return. */
static void fails_saying(pool_t *pool, pool_task_fn f, const char *needle) {
    pool_async_t *a = pool_submit(pool, f, NULL, 0, 4, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, 30), POOL_ETASK);
    CHECK_ERR_HAS(needle);
    pool_async_free(a); /* a successful free leaves the message */
}

/* Waits and fetches a pool_submit result; returns its length or -1. */
static long get_bytes(pool_async_t *a, const void **data) {
    if (!CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK)) return -1;
    size_t len = 12345;
    *data = NULL;
    if (!CHECK_ST(pool_async_result(a, data, &len), POOL_OK)) return -1;
    return (long)len;
}

int main(void) {
    test_begin("varsize", 55);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);

    SECTION("3 bytes reversed in two pool_out_write calls");
    unsigned char abc[3] = {'a', 'b', 'c'};
    pool_async_t *a = pool_submit(pool, reverse, abc, 3, 3, NULL);
    REQUIRE(a != NULL);
    abc[0] = 'X'; /* the input was copied */
    const void *data;
    long len = get_bytes(a, &data);
    CHECK_EQ(len, 3);
    CHECK(len == 3 && memcmp(data, "cba", 3) == 0);
    const void *data2 = NULL;
    size_t len2 = 0;
    CHECK_ST(pool_async_result(a, &data2, &len2), POOL_OK); /* again: the same bytes */
    CHECK(data2 == data);
    CHECK_EQ(len2, 3);
    CHECK(pool_async_successful(a));
    pool_async_free(a);

    SECTION("max_out larger than what is written");
    a = pool_submit(pool, reverse, "hello", 5, 1000, NULL);
    REQUIRE(a != NULL);
    len = get_bytes(a, &data);
    CHECK_EQ(len, 5);
    CHECK(len == 5 && memcmp(data, "olleh", 5) == 0);
    pool_async_free(a);

    SECTION("empty input: the task gets NULL and 0");
    a = pool_submit(pool, empty_input, NULL, 0, 16, NULL);
    REQUIRE(a != NULL);
    len = get_bytes(a, &data);
    CHECK(len == 5 && memcmp(data, "empty", 5) == 0);
    pool_async_free(a);

    SECTION("empty output, max_out 0");
    a = pool_submit(pool, writes_nothing, "x", 1, 0, NULL);
    REQUIRE(a != NULL);
    len = get_bytes(a, &data);
    CHECK_EQ(len, 0);
    pool_async_free(a);

    SECTION("writing past max_out -> POOL_ENOMEM in the task");
    a = pool_submit(pool, overflows, NULL, 0, 4, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_ETASK);
    CHECK_ERR_HAS("77"); /* 77: every pool_out_write returned what it should */
    size_t l = 999;
    data = NULL;
    CHECK_ST(pool_async_result(a, &data, &l), POOL_ETASK); /* the task's failure */
    CHECK(data == NULL);
    CHECK_EQ(l, 999);
    pool_async_free(a);

    SECTION("filling max_out exactly");
    a = pool_submit(pool, fills_exactly, NULL, 0, 4, NULL);
    REQUIRE(a != NULL);
    len = get_bytes(a, &data);
    CHECK(len == 4 && memcmp(data, "abcd", 4) == 0);
    pool_async_free(a);

    SECTION("pool_out_write(NULL, 1) in a task -> EINVAL");
    a = pool_submit(pool, null_data, NULL, 0, 4, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    pool_async_free(a);

    SECTION("pool_out_write from the host -> EINVAL");
    CHECK_ST(pool_out_write("abc", 3), POOL_EINVAL);
    CHECK_ERR_SET();
    CHECK_ST(pool_out_write(NULL, 0), POOL_EINVAL);

    SECTION("pool_out_write from a pool_apply task -> EINVAL");
    int st = -1;
    CHECK_ST(pool_apply(pool, writes_from_apply, NULL, 0, &st, sizeof st, NULL), POOL_OK);
    CHECK_EQ(st, POOL_EINVAL);

    SECTION("pool_out_commit with no open reservation -> EINVAL, before a reserve and after one ended");
    a = pool_submit(pool, misuses_commit, NULL, 0, 4, NULL);
    REQUIRE(a != NULL);
    len = get_bytes(a, &data); /* POOL_OK: every refusal came */
    CHECK(len == 4 && memcmp(data, "abcd", 4) == 0);
    pool_async_free(a);
    fails_saying(pool, commits_unreserved, "no open reservation");
    st = -1;
    CHECK_ST(pool_apply(pool, commits_from_apply, NULL, 0, &st, sizeof st, NULL), POOL_OK);
    CHECK_EQ(st, POOL_EINVAL);
    CHECK_ST(pool_out_commit(0), POOL_EINVAL); /* from the host */

    SECTION("a task that returns the status of a write past max_out: the failure names max_out");
    fails_saying(pool, returns_write_status, "task returned 2: pool_out_write of 6 bytes refused");
    CHECK_ERR_HAS("max_out of 4 bytes");
    fails_saying(pool, reserves_too_much, "pool_out_reserve of at least 10 bytes");
    fails_saying(pool, explains_then_overflows, "the task's own words");
    CHECK(strstr(pool_last_error(), "max_out") == NULL);

    SECTION("a failing task: ETASK with its code; pool_async_result gives the failure");
    a = pool_submit(pool, returns_9, NULL, 0, 64, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_ETASK);
    CHECK_ERR_HAS("9");
    CHECK_ST(pool_async_result(a, &data, &l), POOL_ETASK);
    pool_async_free(a);

    SECTION("a crashing task: ECRASHED");
    a = pool_submit(pool, crashes, "x", 1, 64, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_ECRASHED);
    CHECK_ST(pool_async_result(a, &data, &l), POOL_ECRASHED);
    pool_async_free(a);

    SECTION("pool_async_result before the result is ready -> ETIMEDOUT (no wait)");
    a = pool_submit(pool, slow_echo, "slow", 4, 4, NULL);
    REQUIRE(a != NULL);
    data = NULL;
    l = 999;
    double t0 = now_s();
    CHECK_ST(pool_async_result(a, &data, &l), POOL_ETIMEDOUT);
    CHECK_TOOK(t0, 0.5, "pool_async_result of a running task");
    CHECK(data == NULL);
    CHECK_EQ(l, 999);
    len = get_bytes(a, &data);
    CHECK(len == 4 && memcmp(data, "slow", 4) == 0);
    pool_async_free(a);

    SECTION("64 MiB input -> its 8-byte checksum");
    size_t big = 64 * MiB;
    unsigned char *in = malloc(big);
    REQUIRE(in != NULL);
    for (size_t i = 0; i < big; i++) in[i] = pattern(i, 0x5a);
    uint64_t want = checksum(in, big);
    a = pool_submit(pool, checksum_task, in, big, 8, NULL);
    REQUIRE(a != NULL);
    memset(in, 0, big); /* copied at submission */
    len = get_bytes(a, &data);
    CHECK_EQ(len, 8);
    if (len == 8) {
        uint64_t got;
        memcpy(&got, data, 8);
        CHECK(got == want);
    }
    pool_async_free(a);
    free(in);

    SECTION("64 MiB output");
    uint64_t seed = 0xc3;
    a = pool_submit(pool, big_output, &seed, sizeof seed, 64 * MiB, NULL);
    REQUIRE(a != NULL);
    len = get_bytes(a, &data);
    CHECK_EQ(len, (long)(64 * MiB));
    if (len == (long)(64 * MiB)) {
        const unsigned char *b = data;
        size_t bad = 0;
        for (size_t i = 0; i < 64 * MiB; i++) bad += b[i] != pattern(i, seed);
        CHECK_EQ(bad, 0);
    }
    pool_async_free(a);

    SECTION("200 outstanding submits, checked in order");
    pool_async_t *h[200];
    int vals[200];
    for (int i = 0; i < 200; i++) {
        vals[i] = i * 1001 - 7;
        h[i] = pool_submit(pool, to_decimal, &vals[i], sizeof vals[i], 32, NULL);
        CHECK(h[i] != NULL);
    }
    for (int i = 0; i < 200; i++) {
        if (!h[i]) continue;
        len = get_bytes(h[i], &data);
        char s[32];
        int n = snprintf(s, sizeof s, "%d", vals[i]);
        if (!(len == n && memcmp(data, s, (size_t)n) == 0)) {
            fprintf(stderr, "  submit %d: got %ld bytes\n", i, len);
            CHECK(!"decimal result matches");
        }
    }
    /* Results stay valid until their own handle is freed, whatever happens to others. */
    for (int i = 0; i < 200; i += 2) pool_async_free(h[i]);
    for (int i = 1; i < 200; i += 2) {
        if (!h[i]) continue;
        size_t ln = 0;
        CHECK_ST(pool_async_result(h[i], &data, &ln), POOL_OK);
        char s[32];
        int n = snprintf(s, sizeof s, "%d", vals[i]);
        CHECK(ln == (size_t)n && memcmp(data, s, (size_t)n) == 0);
        pool_async_free(h[i]);
    }

    SECTION("pool_async_result on apply and map handles -> EINVAL");
    long x = 4, y = 0, ys[3], xs[3] = {1, 2, 3};
    a = pool_apply_async(pool, square, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    CHECK_EQ(y, 16);
    CHECK_ST(pool_async_result(a, &data, &l), POOL_EINVAL);
    CHECK_ERR_SET();
    pool_async_free(a);
    a = pool_map_async(pool, square, xs, sizeof xs[0], ys, sizeof ys[0], 3, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    CHECK_ST(pool_async_result(a, &data, &l), POOL_EINVAL);
    pool_async_free(a);

    SECTION("a submit result outlives pool_destroy");
    a = pool_submit(pool, reverse, "xyz", 3, 3, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK(pool_submit(pool, reverse, "xyz", 3, 3, NULL) == NULL); /* closed */
    CHECK_ERR_SET();
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);
    size_t ln = 0;
    CHECK_ST(pool_async_result(a, &data, &ln), POOL_OK);
    CHECK(ln == 3 && memcmp(data, "zyx", 3) == 0);
    pool_async_free(a);

    return test_finish();
}
