/* Completion callbacks across pools: pool_async_free waits for the result's running callback
 * from any other thread, another pool's callback thread included, so that what the callback
 * reads may be freed once it returns; callbacks of two pools that free each other's results at
 * once do not deadlock; a result freed while its callback thread copies it into `out` is never
 * written there after pool_async_free returns. */
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

/* ---- a result freed while its pool's callback thread collects it into `out` ---------------- */

#define BIG ((size_t)64 << 20)
#define SAMPLES 4096

static int writes_big(const void *in, void *out, void *ctx) {
    (void)in, (void)ctx;
    memset(out, 0xab, BIG);
    return 0;
}

static atomic_int calls;
static void counts_call(pool_async_t *a, int status, void *arg) {
    (void)a, (void)status, (void)arg;
    atomic_fetch_add(&calls, 1);
}

static void test_free_during_collection(void) {
    SECTION("pool_async_free while the callback thread copies the result into out: nothing writes there after it "
            "returns");
    pool_t *pool = pool_create(1, NULL);
    REQUIRE(pool != NULL);
    unsigned char *out = malloc(BIG);
    REQUIRE(out != NULL);
    memset(out, 0, BIG);
    volatile unsigned char *o = out;
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.callback = counts_call;
    long x = 0;
    pool_async_t *a = pool_apply_async_ex(pool, writes_big, &x, sizeof x, out, BIG, NULL, &co);
    REQUIRE(a != NULL);
    /* Until the callback thread has begun copying (in whatever order memcpy goes). */
    int begun = 0;
    for (double t0 = now_s(); !begun && now_s() - t0 < guard_s(30);)
        for (size_t i = 0; i < SAMPLES && !begun; i++) begun = o[i * (BIG / SAMPLES)] != 0;
    REQUIRE(begun);
    pool_async_free(a);
    static unsigned char seen[SAMPLES];
    for (size_t i = 0; i < SAMPLES; i++) seen[i] = o[i * (BIG / SAMPLES)];
    /* Once another result's callback ran, the callback thread is done with the freed one. */
    pool_async_t *b = pool_apply_async_ex(pool, noop, &x, sizeof x, NULL, 0, NULL, &co);
    REQUIRE(b != NULL);
    WAIT_UNTIL(atomic_load(&calls) >= 1, 30);
    REQUIRE(atomic_load(&calls) >= 1);
    int later = 0;
    for (size_t i = 0; i < SAMPLES; i++) later += seen[i] != o[i * (BIG / SAMPLES)];
    if (later != 0) fprintf(stderr, "  %d of %d sampled bytes of out written after pool_async_free returned\n", later, SAMPLES);
    CHECK_EQ(later, 0);
    pool_async_free(b);
    pool_destroy(pool);
    free(out);
}

int main(void) {
    test_begin("callbacks", 55);
    test_free_waits_across_pools();
    test_mutual_free_does_not_deadlock();
    test_free_during_collection();
    return test_finish();
}
