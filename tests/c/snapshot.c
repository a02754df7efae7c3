/* No POOL_OK with the wrong bytes: workers see memory as it was at pool_create, so a ctx passed
 * by address (ctx_size 0) whose bytes changed since, or that workers do not have, is refused
 * with a message naming ctx, by every call that takes one; a number cast to a pointer, an
 * unchanged global or constant and memory shared with the workers pass; a ctx copied with
 * ctx_size works wherever it lives, unless the copy holds a pointer into the caller's stack or
 * into memory mapped after pool_create. */
#include "check.h"

#include <pthread.h>

enum { N = 8 };

/* 64 bytes: where the size of the object at ctx is unknown (stack, heap), the pool compares
 * the first 64 bytes, so tests that expect a pass use objects of at least that size. */
struct params {
    long add;
    long pad[7];
};

/* Each task adds a value taken from ctx to its item: read through ctx, or ctx itself as a number. */
static long through(void *ctx) { return ((const struct params *)ctx)->add; }
static long number(void *ctx) { return (long)(intptr_t)ctx; }

#define TASKS(name, value)                                                                           \
    static int name##_item(const void *in, void *out, void *ctx) {                                   \
        *(long *)out = *(const long *)in + value(ctx);                                               \
        return 0;                                                                                    \
    }                                                                                                \
    static int name##_var(const void *in, size_t len, void *ctx) {                                   \
        long r = (len == sizeof(long) ? *(const long *)in : -1000) + value(ctx);                     \
        return pool_out_write(&r, sizeof r);                                                         \
    }                                                                                                \
    static int name##_block(const void *in, void *out, size_t count, size_t first, void *ctx) {      \
        (void)first;                                                                                 \
        for (size_t i = 0; i < count; i++) ((long *)out)[i] = ((const long *)in)[i] + value(ctx);    \
        return 0;                                                                                    \
    }
TASKS(ptr, through)
TASKS(num, number)

struct tasks {
    pool_fn item;
    pool_task_fn var;
    pool_block_fn block;
};
static const struct tasks by_pointer = {ptr_item, ptr_var, ptr_block};
static const struct tasks by_number = {num_item, num_var, num_block};

/* ctx copies holding a pointer: the task adds what it points to. */
struct holder {
    const long *where;
    long pad[7];
};
static int deref_item(const void *in, void *out, void *ctx) {
    *(long *)out = *(const long *)in + *((const struct holder *)ctx)->where;
    return 0;
}

static long in[N];
static pool_buf_t stream_items[N];

/* Sources of the same items as `in`. */
static int items(void *item, size_t index, void *source_ctx) {
    (void)source_ctx;
    if (index >= N) return 1;
    *(long *)item = in[index];
    return 0;
}

static int bufs(void *buf, size_t cap, size_t *len, size_t index, void *source_ctx) {
    (void)source_ctx;
    if (index >= N) return 1;
    if (cap < sizeof(long)) return 2;
    memcpy(buf, &in[index], sizeof in[index]);
    *len = sizeof in[index];
    return 0;
}


/* One call's outcome: its status and whether its N results were in[i] + add. */
static void outcome(const char *call, int st, int right, int want, long add) {
    char m[512];
    if (st != want) {
        snprintf(m, sizeof m, "%s with a ctx adding %ld: %s, expected %s", call, add, pool_strerror(st),
                 pool_strerror(want));
        check_fail_(__FILE__, __LINE__, m);
    } else if (want == POOL_OK && !right) {
        snprintf(m, sizeof m, "%s: POOL_OK with wrong results (expected items + %ld)", call, add);
        check_fail_(__FILE__, __LINE__, m);
    } else if (want != POOL_OK && strstr(pool_last_error(), "ctx") == NULL) {
        snprintf(m, sizeof m, "%s: the message should name ctx", call);
        check_fail_(__FILE__, __LINE__, m);
    }
}

static int results_right(const long *out, long add) {
    for (int i = 0; i < N; i++)
        if (out[i] != in[i] + add) return 0;
    return 1;
}

/* A handle's outcome: NULL with pool_last_status(), or its result's status. */
static int async_status(pool_async_t *a) {
    if (a == NULL) return pool_last_status();
    int st = pool_async_get(a, 30);
    pool_async_free(a);
    return st;
}

/* A variable-size result's status, with its bytes in *data and *len (valid until it is freed). */
static int async_result(pool_async_t *a, const void **data, size_t *len) {
    if (a == NULL) return pool_last_status();
    int st = pool_async_get(a, 30);
    if (st == POOL_OK) st = pool_async_result(a, data, len);
    return st;
}

static int iter_status(pool_iter_t *it, long *out) {
    if (it == NULL) return pool_last_status();
    long r;
    size_t idx;
    int st;
    while ((st = pool_iter_next(it, &r, &idx, 30)) == POOL_OK)
        if (idx < N) out[idx] = r;
    pool_iter_free(it);
    return st == POOL_EDONE ? POOL_OK : st;
}

static int stream_status(pool_stream_t *s, long *out) {
    if (s == NULL) return pool_last_status();
    const void *data;
    size_t len, idx;
    int st;
    while ((st = pool_stream_next(s, &data, &len, &idx, 30)) == POOL_OK)
        if (idx < N && len == sizeof(long)) memcpy(&out[idx], data, sizeof(long));
    pool_stream_free(s);
    return st == POOL_EDONE ? POOL_OK : st;
}

/* Every call that takes a ctx, with `ctx` (copied when ctx_size > 0): each must end with `want`
 * (and, for POOL_OK, results of in[i] + add; otherwise a message naming ctx). The calls
 * without options are tried only when nothing is copied. */
static void every_call(pool_t *pool, const struct tasks *t, void *ctx, size_t ctx_size, int want, long add) {
    long out[N], x = 5, y;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.ctx_size = ctx_size;
    mo.chunksize = 3;
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.ctx_size = ctx_size;
    pool_stream_options_t so;
    pool_stream_options_init(&so);
    so.ctx_size = ctx_size;
    const void *data = NULL;
    size_t len = 0;
    pool_async_t *a;
    /* Runs `call` (a status), then checks it and `right` (evaluated after the call). */
#define RUN(name, call, right)                     \
    do {                                           \
        memset(out, 0x55, sizeof out);             \
        y = -1;                                    \
        int st_ = (call);                          \
        outcome(name, st_, (right), want, add);    \
    } while (0)
    /* A variable-size result: its status, and `right` once it is in `data`. */
#define SUBMITTED(a) (async_result(a, &data, &len))
#define ONE_LONG (len == sizeof y && *(const long *)data == x + add)
    if (ctx_size == 0) {
        RUN("pool_apply", pool_apply(pool, t->item, &x, sizeof x, &y, sizeof y, ctx), y == x + add);
        RUN("pool_apply_async", async_status(pool_apply_async(pool, t->item, &x, sizeof x, &y, sizeof y, ctx)),
            y == x + add);
        RUN("pool_map", pool_map(pool, t->item, in, sizeof in[0], out, sizeof out[0], N, ctx), results_right(out, add));
        RUN("pool_map_async", async_status(pool_map_async(pool, t->item, in, sizeof in[0], out, sizeof out[0], N, ctx)),
            results_right(out, add));
        a = pool_submit(pool, t->var, &x, sizeof x, sizeof y, ctx);
        RUN("pool_submit", SUBMITTED(a), ONE_LONG);
        pool_async_free(a);
    }
    RUN("pool_apply_ex", pool_apply_ex(pool, t->item, &x, sizeof x, &y, sizeof y, ctx, &co), y == x + add);
    RUN("pool_apply_async_ex", async_status(pool_apply_async_ex(pool, t->item, &x, sizeof x, &y, sizeof y, ctx, &co)),
        y == x + add);
    a = pool_submit_ex(pool, t->var, &x, sizeof x, sizeof y, ctx, &co);
    RUN("pool_submit_ex", SUBMITTED(a), ONE_LONG);
    pool_async_free(a);
    RUN("pool_map_ex", pool_map_ex(pool, t->item, in, sizeof in[0], out, sizeof out[0], N, ctx, &mo),
        results_right(out, add));
    RUN("pool_map_async_ex",
        async_status(pool_map_async_ex(pool, t->item, in, sizeof in[0], out, sizeof out[0], N, ctx, &mo)),
        results_right(out, add));
    RUN("pool_imap", iter_status(pool_imap(pool, t->item, in, sizeof in[0], sizeof out[0], N, ctx, &mo), out),
        results_right(out, add));
    RUN("pool_imap_unordered",
        iter_status(pool_imap_unordered(pool, t->item, in, sizeof in[0], sizeof out[0], N, ctx, &mo), out),
        results_right(out, add));
    RUN("pool_imap_source",
        iter_status(pool_imap_source(pool, t->item, items, NULL, sizeof in[0], sizeof out[0], ctx, true, &mo), out),
        results_right(out, add));
    RUN("pool_stream", stream_status(pool_stream(pool, t->var, stream_items, N, sizeof(long), ctx, &so), out),
        results_right(out, add));
    RUN("pool_stream_source",
        stream_status(pool_stream_source(pool, t->var, bufs, NULL, sizeof(long), sizeof(long), ctx, &so), out),
        results_right(out, add));
    RUN("pool_map_blocks", pool_map_blocks(pool, t->block, in, sizeof in[0], out, sizeof out[0], N, ctx, &mo),
        results_right(out, add));
    RUN("pool_map_blocks_async",
        async_status(pool_map_blocks_async(pool, t->block, in, sizeof in[0], out, sizeof out[0], N, ctx, &mo)),
        results_right(out, add));
#undef RUN
#undef SUBMITTED
#undef ONE_LONG
}

/* Globals: set before pool_create and never changed (one constant), one changed after, and its
 * neighbour, unchanged: globals are compared variable by variable (from the symbol table). */
static struct params before_create = {.add = 11};
static const struct params constant = {.add = 12};
static long changed_after = 1;
static long neighbour = 13;

/* Filled in a frame made after pool_create (in memory the workers had, with other bytes). */
static void from_a_later_frame(pool_t *pool) {
    struct params p;
    memset(&p, 0, sizeof p);
    p.add = 21;
    every_call(pool, &by_pointer, &p, 0, POOL_EINVAL, 21);
    every_call(pool, &by_pointer, &p, sizeof p, POOL_OK, 21);
}

struct late_thread {
    pool_t *pool;
    int status;
};

/* A thread started after pool_create: its stack did not exist when the workers were made. */
static void *late_thread(void *arg) {
    struct late_thread *lt = arg;
    struct params p = {.add = 31};
    long x = 1, y = 0;
    lt->status = pool_apply(lt->pool, ptr_item, &x, sizeof x, &y, sizeof y, &p);
    if (lt->status != POOL_EINVAL || !strstr(pool_last_error(), "ctx")) return NULL;
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.ctx_size = sizeof p;
    if (pool_apply_ex(lt->pool, ptr_item, &x, sizeof x, &y, sizeof y, &p, &co) != POOL_OK || y != 32) lt->status = -1;
    return NULL;
}

int main(void) {
    test_begin("snapshot", 50);
    for (int i = 0; i < N; i++) {
        in[i] = 100 * i;
        stream_items[i].data = &in[i];
        stream_items[i].len = sizeof in[i];
    }
    /* Freed before the pool: later small mallocs reuse it, in pages the workers have. */
    free(malloc(4096));
    struct params on_stack_before = {.add = 41};
    struct params filled_after;
    memset(&filled_after, 0, sizeof filled_after);
    struct params *heap_before = malloc(2 * sizeof *heap_before);
    REQUIRE(heap_before != NULL);
    memset(heap_before, 0, 2 * sizeof *heap_before);
    heap_before->add = 42;
    struct params *shared = shared_alloc(sizeof *shared);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);

    SECTION("a struct on the caller's stack, filled after pool_create: refused by every call; with ctx_size, copied");
    filled_after.add = 7;
    every_call(pool, &by_pointer, &filled_after, 0, POOL_EINVAL, 7);
    CHECK_ERR_HAS("changed after the pool was created");
    CHECK_ERR_HAS("ctx_size");
    every_call(pool, &by_pointer, &filled_after, sizeof filled_after, POOL_OK, 7);

    SECTION("the same in a stack frame made after pool_create");
    from_a_later_frame(pool);

    SECTION("a small malloc'd struct allocated after pool_create: refused; with ctx_size, copied");
    struct params *late = malloc(sizeof *late);
    REQUIRE(late != NULL);
    memset(late, 0, sizeof *late);
    late->add = 8;
    every_call(pool, &by_pointer, late, 0, POOL_EINVAL, 8);
    every_call(pool, &by_pointer, late, sizeof *late, POOL_OK, 8);

    SECTION("memory mapped after pool_create: refused (workers do not have it); copied with ctx_size");
    struct params *mapped = mmap(NULL, 1 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    REQUIRE(mapped != MAP_FAILED);
    mapped->add = 9;
    every_call(pool, &by_pointer, mapped, 0, POOL_EINVAL, 9);
    CHECK_ERR_HAS("mapped after the pool was created");
    every_call(pool, &by_pointer, mapped, sizeof *mapped, POOL_OK, 9);

    SECTION("a number cast to a pointer (the pthread_create idiom) is passed through");
    const intptr_t numbers[] = {1, 7, 4095, 123456789};
    for (size_t i = 0; i < sizeof numbers / sizeof numbers[0]; i++)
        every_call(pool, &by_number, (void *)numbers[i], 0, POOL_OK, (long)numbers[i]);

    SECTION("globals unchanged since pool_create, constants, and memory from before it pass");
    changed_after = 14;
    every_call(pool, &by_pointer, &before_create, 0, POOL_OK, 11);
    every_call(pool, &by_pointer, (void *)&constant, 0, POOL_OK, 12);
    every_call(pool, &by_pointer, heap_before, 0, POOL_OK, 42);
    every_call(pool, &by_pointer, &on_stack_before, 0, POOL_OK, 41);
    long x = 1, y = 0;
    CHECK_ST(pool_apply(pool, num_item, &x, sizeof x, &y, sizeof y, (void *)(intptr_t)neighbour), POOL_OK);
    CHECK_ST(pool_apply(pool, ptr_item, &x, sizeof x, &y, sizeof y, &neighbour), POOL_OK);
    CHECK_EQ(y, 14);

    SECTION("a global changed after pool_create: refused");
    CHECK_ST(pool_apply(pool, ptr_item, &x, sizeof x, &y, sizeof y, &changed_after), POOL_EINVAL);
    CHECK_ERR_HAS("ctx");
    before_create.add = 15;
    every_call(pool, &by_pointer, &before_create, 0, POOL_EINVAL, 15);
    every_call(pool, &by_pointer, &before_create, sizeof before_create, POOL_OK, 15);
    before_create.add = 11; /* back as the workers have it: passes again */
    every_call(pool, &by_pointer, &before_create, 0, POOL_OK, 11);

    SECTION("pool_shm_alloc memory is shared: passed by address, it is seen as it is now");
    struct params *shm = pool_shm_alloc(pool, sizeof *shm);
    REQUIRE(shm != NULL);
    memset(shm, 0, sizeof *shm);
    shm->add = 16;
    every_call(pool, &by_pointer, shm, 0, POOL_OK, 16);

    SECTION("memory mapped shared before pool_create, changed after: workers see it as it is now");
    shared->add = 18;
    every_call(pool, &by_pointer, shared, 0, POOL_OK, 18);
    shared->add = 19;
    every_call(pool, &by_pointer, shared, 0, POOL_OK, 19);

    SECTION("a thread started after pool_create, with a ctx on its own stack: refused; copied with ctx_size");
    struct late_thread lt = {pool, 0};
    pthread_t th;
    REQUIRE(pthread_create(&th, NULL, late_thread, &lt) == 0);
    pthread_join(th, NULL);
    CHECK_EQ(lt.status, POOL_EINVAL);

    SECTION("a copied ctx holding a pointer into the caller's stack: refused, naming it");
    long local = 17;
    struct holder h = {.where = &local};
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.ctx_size = sizeof h;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.ctx_size = sizeof h;
    long out[N];
    CHECK_ST(pool_apply_ex(pool, deref_item, &x, sizeof x, &y, sizeof y, &h, &co), POOL_EINVAL);
    CHECK_ERR_HAS("ctx (copied with ctx_size) holds at byte 0 a pointer into the calling thread's stack");
    CHECK_ERR_HAS("[&total]");
    CHECK_ST(pool_map_ex(pool, deref_item, in, sizeof in[0], out, sizeof out[0], N, &h, &mo), POOL_EINVAL);
    CHECK_ERR_HAS("calling thread's stack");

    SECTION("a copied ctx holding a pointer into memory mapped after pool_create: refused");
    h.where = &mapped->add;
    CHECK_ST(pool_apply_ex(pool, deref_item, &x, sizeof x, &y, sizeof y, &h, &co), POOL_EINVAL);
    CHECK_ERR_HAS("mapped after the pool was created");

    SECTION("a copied ctx holding pointers to shared memory or unchanged globals: fine");
    h.where = &shm->add;
    CHECK_ST(pool_map_ex(pool, deref_item, in, sizeof in[0], out, sizeof out[0], N, &h, &mo), POOL_OK);
    CHECK(results_right(out, 16));
    h.where = &neighbour;
    CHECK_ST(pool_apply_ex(pool, deref_item, &x, sizeof x, &y, sizeof y, &h, &co), POOL_OK);
    CHECK_EQ(y, 14);

    SECTION("a copied ctx holding a pointer to memory changed after pool_create (a small malloc): refused");
    long *small = malloc(sizeof *small); /* reuses heap pages the workers have, with other bytes */
    REQUIRE(small != NULL);
    *small = 123456789;
    h.where = small;
    CHECK_ST(pool_apply_ex(pool, deref_item, &x, sizeof x, &y, sizeof y, &h, &co), POOL_EINVAL);
    CHECK_ERR_HAS("to memory that changed after the pool was created");

    SECTION("ctx_shared_pointers_only: a copied pointer into this process's own memory is refused, even unchanged");
    mo.ctx_shared_pointers_only = true;
    h.where = &neighbour;
    CHECK_ST(pool_map_ex(pool, deref_item, in, sizeof in[0], out, sizeof out[0], N, &h, &mo), POOL_EINVAL);
    CHECK_ERR_HAS("into this process's own memory");
    h.where = &shm->add;
    CHECK_ST(pool_map_ex(pool, deref_item, in, sizeof in[0], out, sizeof out[0], N, &h, &mo), POOL_OK);
    CHECK(results_right(out, 16));
    free(small);

    pool_shm_free(pool, shm);
    pool_destroy(pool);
    munmap(mapped, 1 << 20);
    free(late);
    free(heap_before);
    return test_finish();
}
