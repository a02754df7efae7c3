/* Start-up and its bound (start_timeout): an initializer that never returns fails pool_create
 * with POOL_ETIMEDOUT, leaving no process, descriptor or mapping behind (faults.c checks the
 * same for one that crashes or exits); a replacement worker that hangs in its initializer is
 * killed and replaced, and a pool whose replacements keep hanging reports itself broken
 * instead of waiting forever. Bounds are checked from below only; above, a generous hang
 * guard. */
#include "check.h"

#include <math.h>
#include <stddef.h>

/* In shared memory made before the pools: the workers' initializer calls, and which of them
 * hang (calls number hang_from .. hang_until-1, counting from 1). */
struct inits {
    atomic_int calls;
    atomic_int hang_from, hang_until;
    atomic_int started; /* tasks of waits_for_all that started */
};
static struct inits *in_;

static void hang(void) {
    for (;;) pause();
}

static void init_naps(void *arg) {
    (void)arg;
    sleep_s(0.3);
}

/* Hangs on the calls the host picked, returns at once on the others. */
static void init_sometimes_hangs(void *arg) {
    (void)arg;
    int n = atomic_fetch_add(&in_->calls, 1) + 1;
    if (n >= atomic_load(&in_->hang_from) && n < atomic_load(&in_->hang_until)) hang();
}

static int init_ex_sometimes_hangs(void *arg) {
    init_sometimes_hangs(arg);
    return 0;
}

/* Every initializer call from now on hangs. */
static void all_hang(void) {
    atomic_store(&in_->hang_from, 0);
    atomic_store(&in_->hang_until, 1 << 30);
}

static int segfaults(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    raise(SIGSEGV);
    return 0;
}

/* Returns once `*(int *)in` tasks have started: each worker takes exactly one. */
static int waits_for_all(const void *in, void *out, void *ctx) {
    (void)out; (void)ctx;
    atomic_fetch_add(&in_->started, 1);
    for (double t0 = now_s(); atomic_load(&in_->started) < *(const int *)in && now_s() - t0 < 30;) sleep_s(0.001);
    return 0;
}

/* Valgrind slows start-up 20-50x: bounds that a working initializer must meet are scaled. */
static double scale(void) {
    return under_valgrind() ? 10 : 1;
}

/* pool_create with `o` must fail with `status` within the hang guard, and leave nothing. */
static void fails_cleanly(pool_options_t *o, int workers, int status, double at_least) {
    struct holdings before = holdings_now();
    double t0 = now_s();
    pool_t *p = pool_create(workers, o);
    double took = now_s() - t0;
    CHECK(p == NULL);
    CHECK_EQ(pool_last_status(), status);
    CHECK(took >= at_least);
    CHECK(took < 30 * scale());
    CHECK_HOLDS_AS(before);
    pool_destroy(p);
}

static void test_start_hangs(void) {
    SECTION("an initializer (initializer_ex, then plain) that never returns: POOL_ETIMEDOUT at start_timeout");
    for (int plain = 0; plain < 2; plain++) {
        pool_options_t o;
        pool_options_init(&o);
        all_hang();
        if (plain)
            o.initializer = init_sometimes_hangs;
        else
            o.initializer_ex = init_ex_sometimes_hangs;
        o.start_timeout = plain ? 0.5 : 1;
        fails_cleanly(&o, 2 - plain, POOL_ETIMEDOUT, o.start_timeout - 0.01);
        CHECK_ERR_HAS(plain ? "initializer did not return" : "initializer (initializer_ex)");
        CHECK_ERR_HAS("start_timeout");
        CHECK_ERR_HAS(plain ? "0.5 s" : "1 s");
    }
}

static void test_bound_settings(void) {
    SECTION("start_timeout < 0: no bound; 0 and an older caller's struct: the default; NaN refused");
    pool_options_t o;
    pool_options_init(&o);
    CHECK(o.start_timeout == 0);
    o.initializer = init_naps;
    double fine[] = {-1, 0}; /* no bound; the default */
    for (int i = 0; i < 2; i++) {
        o.start_timeout = fine[i];
        pool_t *p = pool_create(1, &o);
        CHECK(p != NULL);
        pool_destroy(p);
    }
    /* A program built before start_timeout existed: its struct ends before the field. */
    o.start_timeout = 1e-9; /* would fail any start if it were read */
    o.struct_size = offsetof(pool_options_t, start_timeout);
    pool_t *p = pool_create(1, &o);
    CHECK(p != NULL);
    pool_destroy(p);
    pool_options_init(&o);
    o.start_timeout = NAN;
    CHECK(pool_create(1, &o) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("start_timeout");
}

static void test_replacement_hangs_once(void) {
    SECTION("after a crash, the replacement's initializer hangs once: killed, replaced, work goes on");
    atomic_store(&in_->calls, 0);
    atomic_store(&in_->hang_from, 2); /* the first replacement */
    atomic_store(&in_->hang_until, 3);
    pool_options_t o;
    pool_options_init(&o);
    o.initializer = init_sometimes_hangs;
    o.start_timeout = 2 * scale();
    pool_t *p = pool_create(1, &o);
    REQUIRE(p != NULL);
    CHECK_ST(pool_apply(p, segfaults, NULL, 0, NULL, 0, NULL), POOL_ECRASHED);
    double t0 = now_s();
    long x = 5, y = 0;
    CHECK_ST(pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 25);
    CHECK(now_s() - t0 >= o.start_timeout / 2); /* it waited for the hung one's bound */
    CHECK_EQ(atomic_load(&in_->calls), 3);
    pool_destroy(p);
}

static void test_replacements_keep_hanging(void) {
    SECTION("max_tasks_per_child: every replacement hangs: the pool reports itself broken, no hang");
    atomic_store(&in_->calls, 0);
    atomic_store(&in_->started, 0);
    all_hang();
    atomic_store(&in_->hang_from, 4); /* every replacement of the first three workers */
    pool_options_t o;
    pool_options_init(&o);
    o.initializer = init_sometimes_hangs;
    o.max_tasks_per_child = 1;
    o.start_timeout = 2 * scale();
    struct holdings before = holdings_now();
    pool_t *p = pool_create(3, &o);
    REQUIRE(p != NULL);
    int three = 3;
    pool_async_t *first[3];
    for (int i = 0; i < 3; i++) first[i] = pool_apply_async(p, waits_for_all, &three, sizeof three, NULL, 0, NULL);
    long x = 5, y = 0;
    pool_async_t *queued = pool_apply_async(p, square, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(queued != NULL);
    for (int i = 0; i < 3; i++) {
        REQUIRE(first[i] != NULL);
        CHECK_ST(pool_async_get(first[i], 30 * scale()), POOL_OK);
        pool_async_free(first[i]);
    }
    CHECK_ST(pool_async_get(queued, 60 * scale()), POOL_ECRASHED);
    CHECK_ERR_HAS("broken");
    CHECK_ERR_HAS("hanging");
    CHECK_ERR_HAS("start_timeout");
    pool_async_free(queued);
    CHECK_ST(pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), POOL_ECRASHED);
    CHECK_ERR_HAS("hanging");
    pool_destroy(p);
    CHECK_HOLDS_AS(before);
}

int main(void) {
    test_begin("startup", 55);
    in_ = shared_alloc(sizeof *in_);
    test_start_hangs();
    test_bound_settings();
    test_replacement_hangs_once();
    test_replacements_keep_hanging();
    return test_finish();
}
