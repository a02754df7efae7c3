/* Completion callbacks across pools: pool_async_free waits for the result's running callback
 * from any other thread, another pool's callback thread included, so that what the callback
 * reads may be freed once it returns; callbacks of two pools that free each other's results at
 * once do not deadlock. */
#include "check.h"

#include <pthread.h>

static atomic_int b_started, b_finished, seen_finished = -1, a_done;
static pool_async_t *b_result;

static int noop(const void *in, void *out, void *ctx) {
    (void)in, (void)out, (void)ctx;
    return 0;
}

/* Pool B's callback: runs for a while (it would read what A's callback is about to free). */
static void on_b(pool_async_t *a, int status, void *arg) {
    (void)a, (void)status, (void)arg;
    atomic_store(&b_started, 1);
    sleep_s(0.2); /* a window for the free below; the check does not depend on its length */
    atomic_store(&b_finished, 1);
}

/* Pool A's callback: frees B's result while B's callback runs. */
static void on_a(pool_async_t *a, int status, void *arg) {
    (void)a, (void)status, (void)arg;
    WAIT_UNTIL(atomic_load(&b_started), 60);
    pool_async_free(b_result);
    atomic_store(&seen_finished, atomic_load(&b_finished));
    atomic_store(&a_done, 1);
}

static void test_free_waits_across_pools(void) {
    SECTION("callbacks: pool_async_free from pool A's callback waits for pool B's running callback");
    pool_t *pa = pool_create(1, NULL), *pb = pool_create(1, NULL);
    REQUIRE(pa && pb);
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.callback = on_b;
    b_result = pool_apply_async_ex(pb, noop, NULL, 0, NULL, 0, NULL, &co);
    REQUIRE(b_result != NULL);
    co.callback = on_a;
    pool_async_t *ra = pool_apply_async_ex(pa, noop, NULL, 0, NULL, 0, NULL, &co);
    REQUIRE(ra != NULL);
    WAIT_UNTIL(atomic_load(&a_done), 60);
    CHECK_EQ(atomic_load(&a_done), 1);
    CHECK_EQ(atomic_load(&seen_finished), 1); /* B's callback had returned when the free did */
    pool_async_free(ra);
    pool_destroy(pa);
    pool_destroy(pb);
}

/* Two pools' callbacks, each freeing the other's result once both run. */
static pool_async_t *pair[2];
static atomic_int pair_running[2], pair_done[2];

static void on_pair(pool_async_t *a, int status, void *arg) {
    (void)a, (void)status;
    int me = (int)(intptr_t)arg, other = 1 - me;
    atomic_store(&pair_running[me], 1);
    WAIT_UNTIL(atomic_load(&pair_running[other]), 60);
    pool_async_free(pair[other]);
    atomic_store(&pair_done[me], 1);
}

static void test_mutual_free_does_not_deadlock(void) {
    SECTION("callbacks: two pools' callbacks freeing each other's results do not deadlock");
    pool_t *p[2] = {pool_create(1, NULL), pool_create(1, NULL)};
    REQUIRE(p[0] && p[1]);
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.callback = on_pair;
    for (int i = 0; i < 2; i++) {
        co.callback_arg = (void *)(intptr_t)i;
        pair[i] = pool_apply_async_ex(p[i], noop, NULL, 0, NULL, 0, NULL, &co);
        REQUIRE(pair[i] != NULL);
    }
    WAIT_UNTIL(atomic_load(&pair_done[0]) && atomic_load(&pair_done[1]), 60);
    CHECK(atomic_load(&pair_done[0]) && atomic_load(&pair_done[1]));
    pool_destroy(p[0]);
    pool_destroy(p[1]);
}

int main(void) {
    test_begin("callbacks", 55);
    test_free_waits_across_pools();
    test_mutual_free_does_not_deadlock();
    return test_finish();
}
