/* pthread_cancel of a host thread blocked in a library call. No library function is a
 * cancellation point: the call finishes its work and returns, and the cancel takes effect at
 * the thread's next cancellation point after it (here pthread_testcancel). A forced unwind
 * through the library's Rust frames would abort the whole host instead. */
#include "check.h"

#include <pthread.h>

/* Shared with the workers and children (mapped before the pools are created). */
static int waits_then_3(void *arg) {
    (void)arg;
    wait_release();
    return 3;
}

enum call { ASYNC_GET, POOL_MAP, ITER_NEXT, POOL_JOIN, PROCESS_JOIN, CALLS };
static const char *const names[] = {"pool_async_get(-1)", "pool_map", "pool_iter_next(-1)", "pool_join",
                                    "pool_process_join(-1)"};

struct job {
    enum call call;
    pool_t *pool;
    pool_async_t *a;
    pool_iter_t *it;
    pool_process_t *p;
    long in[2], out[2];
    atomic_int entering;
    int st;    /* what the call returned */
    int after; /* the thread ran past its cancellation point (it must not) */
};

static void *blocked_thread(void *arg) {
    struct job *j = arg;
    atomic_store(&j->entering, 1); /* no cancellation point from here into the call */
    switch (j->call) {
    case ASYNC_GET: j->st = pool_async_get(j->a, -1); break;
    case POOL_MAP: j->st = pool_map(j->pool, blocks, j->in, sizeof j->in[0], j->out, sizeof j->out[0], 2, NULL); break;
    case ITER_NEXT: j->st = pool_iter_next(j->it, &j->out[0], NULL, -1); break;
    case POOL_JOIN: j->st = pool_join(j->pool); break;
    case PROCESS_JOIN: j->st = pool_process_join(j->p, -1); break;
    case CALLS: break;
    }
    pthread_testcancel(); /* the cancel that arrived during the call acts here */
    j->after = 1;
    return NULL;
}

static void run_case(enum call c) {
    SECTION(names[c]);
    atomic_store(&gate->release, 0);
    atomic_store(&gate->started, 0);
    struct job j = {.call = c, .in = {3, 4}, .out = {-1, -1}};
    j.pool = pool_create(2, NULL);
    REQUIRE(j.pool != NULL);
    int started = 1; /* blocking tasks running once the thread is inside its call */
    switch (c) {
    case ASYNC_GET:
    case POOL_JOIN:
        j.a = pool_apply_async(j.pool, blocks, &j.in[0], sizeof j.in[0], &j.out[0], sizeof j.out[0], NULL);
        REQUIRE(j.a != NULL);
        if (c == POOL_JOIN) CHECK_ST(pool_close(j.pool), POOL_OK);
        break;
    case POOL_MAP: started = 2; break;
    case ITER_NEXT:
        j.it = pool_imap(j.pool, blocks, j.in, sizeof j.in[0], sizeof j.out[0], 1, NULL, NULL);
        REQUIRE(j.it != NULL);
        break;
    case PROCESS_JOIN:
        j.p = pool_process_create(waits_then_3, NULL);
        REQUIRE(j.p != NULL);
        CHECK_ST(pool_process_start(j.p), POOL_OK);
        started = 0;
        break;
    case CALLS: break;
    }
    pthread_t t;
    REQUIRE(pthread_create(&t, NULL, blocked_thread, &j) == 0);
    while (!atomic_load(&j.entering) || atomic_load(&gate->started) < started) sleep_s(0.001);
    sleep_s(0.3); /* most likely asleep in its wait by now (the outcome is the same either way) */
    CHECK(pthread_cancel(t) == 0);
    sleep_s(0.5); /* time for a cancellation point inside the call, if there were one */
    atomic_store(&gate->release, 1);
    void *ret = NULL;
    CHECK(pthread_join(t, &ret) == 0);
    CHECK(ret == PTHREAD_CANCELED);
    CHECK(!j.after);

    CHECK_ST(j.st, POOL_OK); /* the call finished its work */
    int code = -1;
    switch (c) {
    case ASYNC_GET: CHECK_EQ(j.out[0], 9); break;
    case POOL_MAP: CHECK(j.out[0] == 9 && j.out[1] == 16); break;
    case ITER_NEXT: CHECK_EQ(j.out[0], 9); break;
    case POOL_JOIN:
        CHECK_ST(pool_async_get(j.a, 0), POOL_OK);
        CHECK_EQ(j.out[0], 9);
        break;
    case PROCESS_JOIN:
        CHECK_ST(pool_process_exitcode(j.p, &code), POOL_OK);
        CHECK_EQ(code, 3);
        break;
    case CALLS: break;
    }
    if (c != POOL_JOIN) { /* the pool keeps working */
        long x = 6, y = 0;
        CHECK_ST(pool_apply(j.pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
        CHECK_EQ(y, 36);
    }
    pool_async_free(j.a);
    pool_iter_free(j.it);
    pool_process_free(j.p);
    pool_destroy(j.pool);
}

int main(void) {
    test_begin("cancel", 50);
    gate_open();
    for (int c = 0; c < CALLS; c++) run_case((enum call)c);
    return test_finish();
}
