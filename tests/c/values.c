/* Values, not stale snapshots, and errors that say why: ctx copied with the call (ctx_size) for
 * maps, iterators, applies and variable-size tasks, seen as it was at the call; a ctx the
 * workers do not have refused; per-call timeouts for applies and pool_submit; task messages
 * (pool_task_error) in pool_last_error() and pool_async_info; option and info structs of an older,
 * smaller size still accepted. */
#include "check.h"

/* out = in + the long ctx points to. */
static int add_ctx(const void *in, void *out, void *ctx) {
    *(long *)out = *(const long *)in + *(const long *)ctx;
    return 0;
}

/* Writes the string ctx points to. */
static int echo_ctx(const void *in, size_t len, void *ctx) {
    (void)in; (void)len;
    return pool_out_write(ctx, strlen(ctx));
}

static int explains(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    if (x % 10 == 3) {
        char m[64];
        snprintf(m, sizeof m, "item %ld ends in 3", x);
        pool_task_error(m);
        return 3;
    }
    *(long *)out = x;
    return 0;
}

static int var_explains(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    pool_task_error("the input was not a PNG");
    return 2;
}

static int long_message(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    char m[1000];
    memset(m, 'x', sizeof m - 1);
    m[sizeof m - 1] = '\0';
    pool_task_error(m);
    return 1;
}

/* Both end only by their task_timeout. */
static int hangs(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    sleep_s(3600);
    return 0;
}

static int sleeps_long(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    sleep_s(3600);
    return 0;
}

int main(void) {
    test_begin("values", 50);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);

    SECTION("ctx allocated after pool_create, without ctx_size: refused, naming ctx");
    /* A mapping of its own, made after the workers forked (as a big malloc would be). */
    long *late = mmap(NULL, 1 << 22, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(late != MAP_FAILED);
    *late = 1000;
    long x = 5, y = 0;
    CHECK_ST(pool_apply(pool, add_ctx, &x, sizeof x, &y, sizeof y, late), POOL_EINVAL);
    CHECK_ERR_HAS("ctx");

    SECTION("the same with ctx_size: copied with the call");
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.ctx_size = sizeof *late;
    CHECK_ST(pool_apply_ex(pool, add_ctx, &x, sizeof x, &y, sizeof y, late, &co), POOL_OK);
    CHECK_EQ(y, 1005);
    pool_async_t *a = pool_apply_async_ex(pool, add_ctx, &x, sizeof x, &y, sizeof y, late, &co);
    REQUIRE(a != NULL);
    *late = -1; /* after the call: the task must not see it */
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    CHECK_EQ(y, 1005);
    pool_async_free(a);

    SECTION("a map with ctx_size sees ctx as it was at the call, in every chunk");
    enum { N = 20000 };
    static long in[N], out[N];
    for (long i = 0; i < N; i++) in[i] = i;
    *late = 7;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.ctx_size = sizeof *late;
    mo.chunksize = 100;
    a = pool_map_async_ex(pool, add_ctx, in, sizeof in[0], out, sizeof out[0], N, late, &mo);
    REQUIRE(a != NULL);
    *late = -1;
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    int wrong = 0;
    for (long i = 0; i < N; i++) wrong += out[i] != i + 7;
    CHECK_EQ(wrong, 0);
    pool_async_free(a);

    SECTION("an iterator with ctx_size");
    *late = 11;
    pool_iter_t *it = pool_imap(pool, add_ctx, in, sizeof in[0], sizeof out[0], 1000, late, &mo);
    REQUIRE(it != NULL);
    *late = -1;
    long r;
    size_t idx;
    wrong = 0;
    while (pool_iter_next(it, &r, &idx, guard_s(30)) == POOL_OK) wrong += r != (long)idx + 11;
    CHECK_EQ(wrong, 0);
    pool_iter_free(it);

    SECTION("pool_submit_ex with ctx_size");
    char *text = (char *)late + 4096;
    strcpy(text, "hello from a copy");
    co.ctx_size = strlen(text) + 1;
    a = pool_submit_ex(pool, echo_ctx, NULL, 0, 100, text, &co);
    REQUIRE(a != NULL);
    strcpy(text, "changed");
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_OK);
    const void *data;
    size_t len;
    CHECK_ST(pool_async_result(a, &data, &len), POOL_OK);
    CHECK(len == 17 && memcmp(data, "hello from a copy", 17) == 0);
    pool_async_free(a);

    SECTION("per-call timeouts for pool_apply_ex and pool_submit_ex");
    pool_call_options_init(&co);
    co.task_timeout = 0.2;
    double t0 = now_s();
    CHECK_ST(pool_apply_ex(pool, sleeps_long, &x, sizeof x, &y, sizeof y, NULL, &co), POOL_ETIMEDOUT);
    a = pool_submit_ex(pool, hangs, NULL, 0, 10, NULL, &co);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_ETIMEDOUT);
    pool_async_free(a);
    CHECK_TOOK(t0, 20, "two calls ended by their task_timeout");

    SECTION("pool_task_error: the message reaches pool_last_error() and pool_async_info");
    x = 13;
    CHECK_ST(pool_apply(pool, explains, &x, sizeof x, &y, sizeof y, NULL), POOL_ETASK);
    CHECK_ERR_HAS("task returned 3: item 13 ends in 3");
    a = pool_submit(pool, var_explains, NULL, 0, 10, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_ETASK);
    CHECK_ERR_HAS("the input was not a PNG");
    pool_task_info_t info;
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_OK);
    CHECK(strcmp(info.message, "the input was not a PNG") == 0);
    CHECK_EQ(info.task_code, 2);
    pool_async_free(a);
    CHECK_ST(pool_map(pool, explains, in, sizeof in[0], out, sizeof out[0], 100, NULL), POOL_ETASK);
    CHECK_ERR_HAS("item 3: task returned 3: item 3 ends in 3");
    it = pool_imap(pool, explains, in, sizeof in[0], sizeof out[0], 100, NULL, NULL);
    REQUIRE(it != NULL);
    int st, with_msg = 0;
    while ((st = pool_iter_next(it, &r, &idx, guard_s(30))) != POOL_EDONE) {
        if (st == POOL_ETASK) {
            char want[64];
            snprintf(want, sizeof want, "item %zu ends in 3", idx);
            with_msg += strstr(pool_last_error(), want) != NULL;
        }
    }
    CHECK_EQ(with_msg, 10);
    pool_iter_free(it);

    SECTION("a long message is cut, never overflows");
    CHECK_ST(pool_apply(pool, long_message, &x, sizeof x, &y, sizeof y, NULL), POOL_ETASK);
    CHECK(strstr(pool_last_error(), "xxxxxxxxxx") != NULL);
    CHECK(strlen(pool_last_error()) < 400);

    SECTION("pool_task_error outside a task: POOL_EINVAL");
    CHECK_ST(pool_task_error("nope"), POOL_EINVAL);
    CHECK_ST(pool_task_error(NULL), POOL_EINVAL);

    SECTION("structs of an older, smaller size still work (ABI grows at the end)");
    pool_map_options_init(&mo);
    mo.struct_size = offsetof(pool_map_options_t, ctx_size); /* a caller built before ctx_size */
    mo.ctx_size = 12345;                                      /* not read */
    CHECK_ST(pool_map_ex(pool, explains, in, sizeof in[0], out, sizeof out[0], 3, NULL, &mo), POOL_OK);
    a = pool_apply_async(pool, explains, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(30)), POOL_ETASK);
    memset(&info, 0x55, sizeof info);
    CHECK_ST(pool_async_info(a, &info, offsetof(pool_task_info_t, message)), POOL_OK);
    CHECK_EQ(info.task_code, 3);
    CHECK((unsigned char)info.message[0] == 0x55); /* beyond the caller's size: untouched */
    CHECK_ST(pool_async_info(a, &info, offsetof(pool_task_info_t, message) - 1), POOL_EINVAL);
    pool_async_free(a);

    pool_destroy(pool);
    munmap(late, 1 << 22);
    return test_finish();
}
