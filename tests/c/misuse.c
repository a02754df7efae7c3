/* Misuse is answered, never punished (SQLite's SQLITE_MISUSE): a handle used after it was freed,
 * freed twice, passed as another type or never returned by libpool; pool functions called
 * inside a task on the task's own pool; a negative worker count; a pool destroyed or a handle
 * freed while another thread is blocked on it. Each gets POOL_EINVAL (or POOL_ECLOSED) with a
 * message, never a crash or a hang. */
#include "check.h"

#include <pthread.h>

#define NOT_LIVE "not a live handle"
/* A status check, then (if it held) a check of the message. */
#define CHECK_ST_MSG(expr, want, needle)                  \
    do {                                                  \
        if (CHECK_ST(expr, want)) CHECK_ERR_HAS(needle);  \
    } while (0)
#define IN_TASK "inside a task"

/* Handles shared with the workers (mapped before the pools are created). */
struct shared {
    pool_t *pool;       /* set after pool_create: a "global" every worker sees */
    pool_async_t *async;
    pool_iter_t *iter;
};
static struct shared *sh;

static int one_source(void *item, size_t index, void *ctx) {
    (void)ctx;
    *(long *)item = (long)index;
    return index < 1 ? 0 : 1;
}

/* Expectation failed inside a task: the task returns the line (the host sees "task returned N"). */
#define TASK_EXPECT(cond)                                                        \
    do {                                                                         \
        if (!(cond) || strstr(pool_last_error(), IN_TASK) == NULL) return __LINE__; \
    } while (0)

/* Calls every pool function on handle `h` from inside a task: each must refuse. */
static int misuse_from_task(pool_t *h) {
    long x = 3, y = 0;
    size_t idx;
    const void *data;
    size_t len;
    pool_task_info_t info;
    TASK_EXPECT(pool_apply(h, square, &x, sizeof x, &y, sizeof y, NULL) == POOL_EINVAL);
    TASK_EXPECT(pool_map(h, square, &x, sizeof x, &y, sizeof y, 1, NULL) == POOL_EINVAL);
    TASK_EXPECT(pool_map_ex(h, square, &x, sizeof x, &y, sizeof y, 1, NULL, NULL) == POOL_EINVAL);
    TASK_EXPECT(pool_map_async(h, square, &x, sizeof x, &y, sizeof y, 1, NULL) == NULL);
    TASK_EXPECT(pool_apply_async(h, square, &x, sizeof x, &y, sizeof y, NULL) == NULL);
    TASK_EXPECT(pool_submit(h, echo_task, "a", 1, 8, NULL) == NULL);
    TASK_EXPECT(pool_imap(h, square, &x, sizeof x, sizeof y, 1, NULL, NULL) == NULL);
    TASK_EXPECT(pool_imap_source(h, square, one_source, NULL, sizeof x, sizeof y, NULL, true, NULL) == NULL);
    pool_buf_t item = {"a", 1};
    TASK_EXPECT(pool_stream(h, echo_task, &item, 1, 8, NULL, NULL) == NULL);
    /* The refusal lists what does work in a task: every output function and the shared objects. */
    const char *works[] = {"pool_out_write", "pool_out_reserve", "pool_out_commit", "pool_task_error", "pool_queue_"};
    for (size_t i = 0; i < sizeof works / sizeof works[0]; i++) TASK_EXPECT(strstr(pool_last_error(), works[i]));
    TASK_EXPECT(pool_shm_alloc(h, 8) == NULL);
    TASK_EXPECT(pool_shm_free(h, &x) == POOL_EINVAL);
    TASK_EXPECT(pool_event_fd(h) == -1);
    TASK_EXPECT(pool_workers(h) == 0);
    TASK_EXPECT(pool_close(h) == POOL_EINVAL);
    TASK_EXPECT(pool_terminate(h) == POOL_EINVAL);
    TASK_EXPECT(pool_join(h) == POOL_EINVAL);
    pool_destroy(h);
    TASK_EXPECT(1);
    TASK_EXPECT(pool_async_get(sh->async, 0) == POOL_EINVAL);
    TASK_EXPECT(pool_async_wait(sh->async, 0) == POOL_EINVAL);
    TASK_EXPECT(!pool_async_ready(sh->async));
    TASK_EXPECT(pool_async_cancel(sh->async) == POOL_EINVAL);
    TASK_EXPECT(pool_async_info(sh->async, &info, sizeof info) == POOL_EINVAL);
    TASK_EXPECT(pool_async_result(sh->async, &data, &len) == POOL_EINVAL);
    pool_async_free(sh->async);
    TASK_EXPECT(1);
    TASK_EXPECT(pool_iter_next(sh->iter, &y, &idx, 0) == POOL_EINVAL);
    pool_iter_free(sh->iter);
    TASK_EXPECT(1);
    TASK_EXPECT(pool_process_create(returns_0, NULL) == NULL);
    TASK_EXPECT(pool_create(1, NULL) == NULL);
    return 0;
}

/* The pool's handle reaches the task by value in its input, through ctx (a pointer to it), or
 * through memory written after pool_create (`sh->pool`). */
static int by_input(const void *in, void *out, void *ctx) {
    (void)out; (void)ctx;
    pool_t *h;
    memcpy(&h, in, sizeof h);
    return misuse_from_task(h);
}

static int by_ctx(const void *in, void *out, void *ctx) {
    (void)in; (void)out;
    return misuse_from_task(*(pool_t **)ctx);
}

static int by_global(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    return misuse_from_task(sh->pool);
}

/* A host thread blocked in one call; `st` is what the call returned. */
struct blocked {
    pthread_t t;
    atomic_int entering;
    int st;
    pool_t *pool;
    pool_async_t *a;
    pool_iter_t *it;
    long in[2], out[2];
};

static void *map_thread(void *p) {
    struct blocked *b = p;
    atomic_store(&b->entering, 1);
    b->st = pool_map_ex(b->pool, blocks, b->in, sizeof b->in[0], b->out, sizeof b->out[0], 2, NULL, NULL);
    return NULL;
}

static void *get_thread(void *p) {
    struct blocked *b = p;
    atomic_store(&b->entering, 1);
    b->st = pool_async_get(b->a, -1);
    return NULL;
}

static void *next_thread(void *p) {
    struct blocked *b = p;
    atomic_store(&b->entering, 1);
    b->st = pool_iter_next(b->it, &b->out[0], NULL, -1);
    return NULL;
}

static void wait_for(atomic_int *v, int at_least) {
    while (atomic_load(v) < at_least) sleep_s(0.001);
}

static void test_freed_handles(pool_t *pool) {
    SECTION("async handles used after pool_async_free");
    long x = 3, y = 0;
    pool_async_t *a = pool_apply_async(pool, square, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, -1), POOL_OK);
    pool_async_free(a);
    /* EINVAL at once: not ETIMEDOUT after waiting, and no hang with -1. */
    CHECK_ST_MSG(pool_async_get(a, 1), POOL_EINVAL, "async result is " NOT_LIVE);
    CHECK_ST(pool_async_get(a, -1), POOL_EINVAL);
    CHECK_ST_MSG(pool_async_wait(a, -1), POOL_EINVAL, NOT_LIVE);
    CHECK(!pool_async_ready(a));
    CHECK_ERR_HAS(NOT_LIVE);
    CHECK(!pool_async_successful(a));
    const void *data;
    size_t len, done, total;
    pool_task_info_t info;
    CHECK_ST(pool_async_result(a, &data, &len), POOL_EINVAL);
    CHECK_ST(pool_async_cancel(a), POOL_EINVAL);
    CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_EINVAL);
    CHECK_ST(pool_async_progress(a, &done, &total), POOL_EINVAL);
    CHECK_ST(pool_close(NULL), POOL_EINVAL); /* resets the message */
    pool_async_free(a);                           /* twice */
    CHECK_ERR_HAS(NOT_LIVE);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);

    SECTION("a pending task's handle freed, then waited on");
    double secs = 0.2;
    a = pool_apply_async(pool, sleeps, &secs, sizeof secs, NULL, 0, NULL);
    REQUIRE(a != NULL);
    pool_async_free(a);
    CHECK_ST(pool_async_get(a, -1), POOL_EINVAL);
    pool_async_t *m = pool_map_async(pool, square, &x, sizeof x, &y, sizeof y, 1, NULL);
    REQUIRE(m != NULL);
    pool_async_free(m);
    CHECK_ST(pool_async_wait(m, -1), POOL_EINVAL);

    SECTION("iterators used after pool_iter_free");
    long in[4] = {1, 2, 3, 4}, out = 0;
    size_t idx = 99;
    pool_iter_t *it = pool_imap(pool, square, in, sizeof in[0], sizeof out, 4, NULL, NULL);
    REQUIRE(it != NULL);
    CHECK_ST(pool_iter_next(it, &out, &idx, -1), POOL_OK);
    CHECK_EQ(out, 1);
    pool_iter_free(it);
    CHECK_ST_MSG(pool_iter_next(it, &out, &idx, -1), POOL_EINVAL, "iterator is " NOT_LIVE);
    CHECK_EQ(idx, 0);
    pool_iter_free(it); /* twice */
    CHECK_ERR_HAS(NOT_LIVE);

    SECTION("process objects used after pool_process_free");
    pool_process_t *p = pool_process_create(returns_0, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    CHECK_ST(pool_process_join(p, -1), POOL_OK);
    pool_process_free(p);
    int code = 1234;
    CHECK_ST_MSG(pool_process_start(p), POOL_EINVAL, "process is " NOT_LIVE);
    CHECK_ST(pool_process_join(p, -1), POOL_EINVAL);
    CHECK_ST(pool_process_terminate(p), POOL_EINVAL);
    CHECK_ST(pool_process_kill(p), POOL_EINVAL);
    CHECK_ST(pool_process_exitcode(p, &code), POOL_EINVAL);
    CHECK_EQ(code, 1234);
    CHECK(!pool_process_is_alive(p));
    CHECK_ERR_HAS(NOT_LIVE);
    CHECK_EQ(pool_process_pid(p), -1);
    pool_process_free(p); /* twice */
    CHECK_ERR_HAS(NOT_LIVE);
}

static void test_destroyed_pool(void) {
    SECTION("a destroyed pool, used again and destroyed twice");
    pool_t *dead = pool_create(1, NULL);
    REQUIRE(dead != NULL);
    pool_destroy(dead);
    long x = 3, y = 0;
    CHECK_ST_MSG(pool_map(dead, square, &x, sizeof x, &y, sizeof y, 1, NULL), POOL_EINVAL,
                 "pool is " NOT_LIVE);
    CHECK_ST(pool_map(dead, square, NULL, sizeof x, NULL, sizeof y, 0, NULL), POOL_EINVAL);
    CHECK_ST(pool_apply(dead, square, &x, sizeof x, &y, sizeof y, NULL), POOL_EINVAL);
    CHECK(pool_apply_async(dead, square, &x, sizeof x, &y, sizeof y, NULL) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK(pool_map_async(dead, square, &x, sizeof x, &y, sizeof y, 1, NULL) == NULL);
    CHECK(pool_submit(dead, echo_task, "a", 1, 8, NULL) == NULL);
    CHECK(pool_imap(dead, square, &x, sizeof x, sizeof y, 1, NULL, NULL) == NULL);
    CHECK(pool_imap_unordered(dead, square, &x, sizeof x, sizeof y, 1, NULL, NULL) == NULL);
    CHECK(pool_imap_source(dead, square, one_source, NULL, sizeof x, sizeof y, NULL, true, NULL) == NULL);
    CHECK_ERR_HAS(NOT_LIVE);
    CHECK_ST(pool_close(dead), POOL_EINVAL);
    CHECK_ST(pool_terminate(dead), POOL_EINVAL);
    CHECK_ST(pool_join(dead), POOL_EINVAL);
    CHECK(pool_shm_alloc(dead, 64) == NULL);
    CHECK_ERR_HAS(NOT_LIVE);
    CHECK_ST(pool_shm_free(dead, NULL), POOL_EINVAL);
    CHECK_EQ(pool_event_fd(dead), -1);
    CHECK_EQ(pool_workers(dead), 0);
    CHECK_ERR_HAS(NOT_LIVE);
    CHECK_ST(pool_close(NULL), POOL_EINVAL); /* resets the message */
    pool_destroy(dead);                      /* twice */
    CHECK_ERR_HAS("pool is " NOT_LIVE);
}

static void test_wrong_types(pool_t *pool) {
    SECTION("a handle of one type passed as another");
    long x = 3, y = 0, out = 0;
    pool_async_t *a = pool_apply_async(pool, square, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(a != NULL);
    long in[3] = {1, 2, 3};
    pool_iter_t *it = pool_imap(pool, square, in, sizeof in[0], sizeof out, 3, NULL, NULL);
    REQUIRE(it != NULL);
    pool_process_t *p = pool_process_create(returns_0, NULL);
    REQUIRE(p != NULL);
    void *pv = pool, *av = a, *iv = it, *prv = p;

    CHECK_ST_MSG(pool_async_get(pv, 0), POOL_EINVAL, "async result is a pool_t handle, not a pool_async_t");
    CHECK_ST_MSG(pool_map(av, square, &x, sizeof x, &y, sizeof y, 1, NULL), POOL_EINVAL,
                 "pool is a pool_async_t handle, not a pool_t");
    CHECK_ST_MSG(pool_iter_next(prv, &out, NULL, 0), POOL_EINVAL, "pool_process_t");
    CHECK_ST_MSG(pool_process_join(iv, 0), POOL_EINVAL, "pool_iter_t");
    CHECK_ST(pool_close(iv), POOL_EINVAL);
    CHECK(!pool_async_ready(prv));
    CHECK_EQ(pool_workers(av), 0);
    /* Freeing through the wrong function frees nothing. */
    pool_async_free(pv);
    CHECK_ERR_HAS("pool_t");
    pool_destroy(av);
    CHECK_ERR_HAS("pool_async_t");
    pool_iter_free(prv);
    pool_process_free(iv);
    CHECK_ST(pool_async_get(a, -1), POOL_OK);
    CHECK_EQ(y, 9);
    CHECK_ST(pool_iter_next(it, &out, NULL, -1), POOL_OK);
    CHECK_EQ(out, 1);
    CHECK_ST(pool_process_start(p), POOL_OK);
    CHECK_ST(pool_process_join(p, -1), POOL_OK);
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    pool_async_free(a);
    pool_iter_free(it);
    pool_process_free(p);

    SECTION("pointers libpool never returned");
    long junk[8] = {0};
    void *j = junk;
    CHECK_ST_MSG(pool_async_get(j, 0), POOL_EINVAL, NOT_LIVE);
    CHECK_ST(pool_map(j, square, &x, sizeof x, &y, sizeof y, 1, NULL), POOL_EINVAL);
    CHECK_ST(pool_process_join(j, 0), POOL_EINVAL);
    CHECK_ST(pool_iter_next(j, &out, NULL, 0), POOL_EINVAL);
    void *one = (void *)(uintptr_t)1, *big = (void *)(uintptr_t)0xdeadbeef0;
    CHECK_ST(pool_close(one), POOL_EINVAL);
    CHECK_ST(pool_async_wait(big, -1), POOL_EINVAL);
    pool_async_free(j);
    pool_destroy(one);
    pool_iter_free(big);
    pool_process_free(j);
    CHECK_ERR_HAS(NOT_LIVE);
}

static void test_inside_task(pool_t *pool) {
    SECTION("pool functions inside a task, on the task's own pool");
    /* Handles the tasks try too: a pending async result and an iterator of the same pool. */
    long x = 4, y = 0, in[3] = {1, 2, 3}, out = 0;
    atomic_store(&gate->release, 0);
    sh->async = pool_apply_async(pool, blocks, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(sh->async != NULL);
    sh->iter = pool_imap(pool, square, in, sizeof in[0], sizeof out, 3, NULL, NULL);
    REQUIRE(sh->iter != NULL);
    sh->pool = pool;
    CHECK_ST(pool_apply(pool, by_input, &pool, sizeof pool, NULL, 0, NULL), POOL_OK);
    CHECK_ST(pool_apply(pool, by_ctx, NULL, 0, NULL, 0, &sh->pool), POOL_OK);
    CHECK_ST(pool_apply(pool, by_global, NULL, 0, NULL, 0, NULL), POOL_OK);

    SECTION("after the tasks' attempts, the pool and its handles are intact");
    atomic_store(&gate->release, 1);
    CHECK_ST(pool_async_get(sh->async, guard_s(30)), POOL_OK);
    CHECK_EQ(y, 16);
    for (int i = 0; i < 3; i++) {
        size_t idx = 99;
        CHECK_ST(pool_iter_next(sh->iter, &out, &idx, guard_s(30)), POOL_OK);
        CHECK_EQ(idx, i);
        CHECK_EQ(out, in[i] * in[i]);
    }
    CHECK_ST(pool_iter_next(sh->iter, &out, NULL, guard_s(30)), POOL_EDONE);
    pool_async_free(sh->async);
    pool_iter_free(sh->iter);
    long xs[100], ys[100];
    for (int i = 0; i < 100; i++) xs[i] = i;
    CHECK_ST(pool_map(pool, square, xs, sizeof xs[0], ys, sizeof ys[0], 100, NULL), POOL_OK);
    CHECK_EQ(ys[99], 99 * 99);
    CHECK_EQ(pool_workers(pool), 2);
}

static void test_workers_count(void) {
    SECTION("pool_create: a negative worker count is refused; 0 is one per CPU");
    CHECK(pool_create(-1, NULL) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("workers is -1");
    CHECK(pool_create(-1000, NULL) == NULL);
    pool_t *p = pool_create(0, NULL);
    REQUIRE(p != NULL);
    CHECK(pool_workers(p) >= 1);
    pool_destroy(p);
}

static void test_destroy_while_blocked(void) {
    SECTION("pool_destroy while other threads are blocked on the pool");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    atomic_store(&gate->release, 0);
    atomic_store(&gate->started, 0);
    struct blocked map = {.pool = pool, .in = {5, 6}}, get = {0}, next = {0};
    /* The map occupies both workers, so its thread is inside pool_map... */
    REQUIRE(pthread_create(&map.t, NULL, map_thread, &map) == 0);
    wait_for(&gate->started, 2);
    /* ...and these wait behind it. */
    long x = 7, y = 0;
    get.a = pool_apply_async(pool, blocks, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(get.a != NULL);
    next.it = pool_imap(pool, blocks, &x, sizeof x, sizeof y, 1, NULL, NULL);
    REQUIRE(next.it != NULL);
    REQUIRE(pthread_create(&get.t, NULL, get_thread, &get) == 0);
    REQUIRE(pthread_create(&next.t, NULL, next_thread, &next) == 0);
    wait_for(&get.entering, 1);
    wait_for(&next.entering, 1);
    sleep_s(0.1); /* most likely inside their calls by now (either way they must get ECLOSED) */
    pool_destroy(pool); /* terminates: the blocked calls return */
    pthread_join(map.t, NULL);
    pthread_join(get.t, NULL);
    pthread_join(next.t, NULL);
    CHECK_ST(map.st, POOL_ECLOSED);
    CHECK_ST(get.st, POOL_ECLOSED);
    CHECK_ST(next.st, POOL_ECLOSED);
    /* The handles outlive the pool. */
    CHECK_ST(pool_async_get(get.a, 0), POOL_ECLOSED);
    pool_async_free(get.a);
    pool_iter_free(next.it);
    CHECK_ST(pool_close(pool), POOL_EINVAL);
    atomic_store(&gate->release, 1);
}

static void test_free_while_waiting(pool_t *pool) {
    SECTION("pool_async_free while another thread waits on the handle: the wait finishes");
    atomic_store(&gate->release, 0);
    atomic_store(&gate->started, 0);
    long x = 8, y = 0;
    struct blocked get = {0};
    get.a = pool_apply_async(pool, blocks, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(get.a != NULL);
    REQUIRE(pthread_create(&get.t, NULL, get_thread, &get) == 0);
    wait_for(&get.entering, 1);
    wait_for(&gate->started, 1);
    sleep_s(0.1); /* most likely waiting by now (if not, its pool_async_get is EINVAL: checked below) */
    pool_async_free(get.a);
    atomic_store(&gate->release, 1);
    pthread_join(get.t, NULL);
    if (get.st == POOL_OK) {
        CHECK_EQ(y, 64);
    } else {
        CHECK_ST(get.st, POOL_EINVAL); /* the free came first */
        fprintf(stderr, "misuse: note: the waiting thread had not started waiting\n");
    }
    CHECK_ST(pool_async_get(get.a, 0), POOL_EINVAL);
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 64);
}

int main(void) {
    test_begin("misuse", 50);
    sh = shared_alloc(sizeof *sh);
    gate_open();
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    test_freed_handles(pool);
    test_destroyed_pool();
    test_wrong_types(pool);
    test_inside_task(pool);
    test_workers_count();
    test_destroy_while_blocked();
    test_free_while_waiting(pool);
    SECTION("teardown");
    CHECK_ST(pool_close(pool), POOL_OK);
    CHECK_ST(pool_join(pool), POOL_OK);
    pool_destroy(pool);
    return test_finish();
}
