/* A buggy task must not silently corrupt other callers: buffer overruns past a small and a big
 * result while 200 other applies are in flight, a write into the task's own (read-only) input,
 * a wild write into the pool's shared header, and a task that goes looking for the worker's
 * private read-write mapping of the pool and overwrites the header through it. The damaged
 * call fails (POOL_ECRASHED), or the pool reports itself corrupt (POOL_ECORRUPT); no other
 * caller ever gets a wrong result with POOL_OK, and nothing hangs. */
#include "check.h"

#define N 200

/* memset as a buggy task does it, out of ASan's sight (its memset interceptor would report the
 * overrun itself, in the worker, before the pool's guard page stops it). */
#if defined(__SANITIZE_ADDRESS__)
__attribute__((no_sanitize("address")))
#endif
static void scribble(void *p, int v, size_t n) {
    volatile unsigned char *b = p;
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)v;
}

static int slow_triple(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    usleep(200);
    *(long *)out = 3 * x;
    return 0;
}

/* Writes its 8-byte result, then 1 MiB past it (the classic overrun). */
static int overruns(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    scribble(out, 0x77, 1 << 20);
    return 0;
}

/* Its result is 512 KiB; it writes 1 MiB. */
static int overruns_big(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    scribble(out, 0x77, 1 << 20);
    return 0;
}

static int writes_its_input(const void *in, void *out, void *ctx) {
    (void)out; (void)ctx;
    scribble((void *)in, 0, 8);
    return 0;
}

/* The start of the first mapping of the pool's shared memory in this worker that matches
 * `perms` (e.g. "r--s" or "rw-s") at file offset 0: the public header, or the worker's alias. */
static char *find_pool_mapping(const char *perms) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    char *found = NULL;
    while (f && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        char p[8];
        if (sscanf(line, "%lx-%lx %7s %lx", &lo, &hi, p, &off) == 4 && strstr(line, "memfd:libpool") &&
            strcmp(p, perms) == 0 && off == 0) {
            found = (char *)lo;
            break;
        }
    }
    if (f) fclose(f);
    return found;
}

static int writes_the_header(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    char *h = find_pool_mapping("r--s");
    if (!h) return 99;
    scribble(h, 0xff, 4096);
    return 0;
}

static int scribbles_through_the_alias(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    char *h = find_pool_mapping("rw-s");
    if (!h) return 99;
    scribble(h, 0xff, 4096);
    return 0;
}

/* Set once item 0 of scribbles_first wrote (shared, made before the pools). */
static atomic_int *scribbled;

/* Item 0 overwrites the header through the alias; the others wait for that (so that the pool
 * is damaged while the call still has items to submit), then hand back their input. */
static int scribbles_first(const void *in, void *out, void *ctx) {
    long x = *(const long *)in;
    if (x == 0) {
        scribbles_through_the_alias(in, out, ctx);
        atomic_store(scribbled, 1);
    }
    for (double t0 = now_s(); !atomic_load(scribbled) && now_s() - t0 < 30;) sleep_s(0.001);
    *(long *)out = x;
    return 0;
}

static int scribbles_first_var(const void *in, size_t len, void *ctx) {
    long x, y;
    memcpy(&x, in, sizeof x);
    scribbles_first(&x, &y, ctx);
    return pool_out_write(&y, len);
}

/* Tallies one item's status; items the pool never submitted after it found itself corrupt
 * must come back POOL_ECLOSED ("never run"), not POOL_ECORRUPT: they never were in its memory. */
struct tally {
    int ok, corrupt, closed, other, never_run;
    unsigned char seen[N];
};

static void tally(struct tally *t, size_t index, int st) {
    if (index < N) t->seen[index]++;
    t->ok += st == POOL_OK;
    t->corrupt += st == POOL_ECORRUPT;
    t->closed += st == POOL_ECLOSED;
    t->other += st != POOL_OK && st != POOL_ECORRUPT && st != POOL_ECLOSED;
    t->never_run += st == POOL_ECLOSED && strstr(pool_last_error(), "never run") != NULL;
}

/* At most the window was in flight: the rest was never submitted, and says so. */
static void check_tally(const struct tally *t, const char *what) {
    fprintf(stderr, "  %s: %d OK, %d POOL_ECORRUPT, %d POOL_ECLOSED (%d never run), %d other\n", what, t->ok,
            t->corrupt, t->closed, t->never_run, t->other);
    for (int i = 0; i < N; i++) CHECK_EQ(t->seen[i], 1);
    CHECK_EQ(t->other, 0);
    CHECK(t->closed >= N - 10);
    CHECK_EQ(t->never_run, t->closed);
}

/* A stream, an iterator and a map whose item 0 makes the pool corrupt, on a fresh pool each. */
static void test_never_submitted(void) {
    static long xs[N], ys[N];
    static pool_buf_t bufs[N];
    static int statuses[N];
    for (long i = 0; i < N; i++) xs[i] = i, bufs[i] = (pool_buf_t){&xs[i], sizeof xs[i]};
    pool_stream_options_t so;
    pool_stream_options_init(&so);
    so.window = 2;
    atomic_store(scribbled, 0);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    pool_stream_t *s = pool_stream(pool, scribbles_first_var, bufs, N, sizeof(long), NULL, &so);
    REQUIRE(s != NULL);
    struct tally t = {0};
    const void *data;
    size_t len, index;
    int st;
    while ((st = pool_stream_next(s, &data, &len, &index, 30)) != POOL_EDONE && index != SIZE_MAX) tally(&t, index, st);
    CHECK_EQ(st, POOL_EDONE);
    check_tally(&t, "pool_stream");
    pool_stream_free(s);
    pool_destroy(pool);

    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 1;
    atomic_store(scribbled, 0);
    pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    pool_iter_t *it = pool_imap(pool, scribbles_first, xs, sizeof xs[0], sizeof ys[0], N, NULL, &mo);
    REQUIRE(it != NULL);
    memset(&t, 0, sizeof t);
    while ((st = pool_iter_next(it, &ys[0], &index, 30)) != POOL_EDONE && index != SIZE_MAX) tally(&t, index, st);
    CHECK_EQ(st, POOL_EDONE);
    check_tally(&t, "pool_imap");
    pool_iter_free(it);
    pool_destroy(pool);

    mo.statuses = statuses;
    atomic_store(scribbled, 0);
    pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    st = pool_map_ex(pool, scribbles_first, xs, sizeof xs[0], ys, sizeof ys[0], N, NULL, &mo);
    CHECK(st == POOL_ECORRUPT || st == POOL_ECLOSED);
    memset(&t, 0, sizeof t);
    for (int i = 0; i < N; i++) tally(&t, (size_t)i, statuses[i]);
    t.never_run = t.closed; /* a map's message is its first failure's only */
    check_tally(&t, "pool_map_ex statuses");
    pool_destroy(pool);
}

/* Submits N applies around one bad one; all N must succeed with the right results. */
static void around(pool_t *pool, pool_fn bad, size_t bad_out, int want_bad) {
    static long xs[N], ys[N];
    static pool_async_t *as[N];
    for (long i = 0; i < N; i++) {
        xs[i] = i;
        ys[i] = -1;
    }
    for (long i = 0; i < N / 2; i++) as[i] = pool_apply_async(pool, slow_triple, &xs[i], 8, &ys[i], 8, NULL);
    void *bad_result = calloc(1, bad_out);
    long x = 0;
    pool_async_t *b = pool_apply_async(pool, bad, &x, sizeof x, bad_result, bad_out, NULL);
    for (long i = N / 2; i < N; i++) as[i] = pool_apply_async(pool, slow_triple, &xs[i], 8, &ys[i], 8, NULL);
    REQUIRE(b != NULL);
    CHECK_ST(pool_async_get(b, guard_s(30)), want_bad);
    pool_async_free(b);
    free(bad_result);
    int wrong = 0;
    for (long i = 0; i < N; i++) {
        REQUIRE(as[i] != NULL);
        int st = pool_async_get(as[i], guard_s(30));
        if (st != POOL_OK || ys[i] != 3 * i) wrong++;
        pool_async_free(as[i]);
    }
    CHECK_EQ(wrong, 0);
}

int main(void) {
    test_begin("isolation", 50);
    scribbled = shared_alloc(sizeof *scribbled);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);

    /* valgrind cannot map the pool's memory twice, so under it workers run without the
     * protection (the README says so): nothing to test there. */
    if (under_valgrind()) {
        fprintf(stderr, "isolation: under valgrind tasks are not kept from the pool's memory: skipped\n");
        pool_destroy(pool);
        return test_finish();
    }

    SECTION("a task writing 1 MiB past its 8-byte result, 200 applies in flight");
    around(pool, overruns, 8, POOL_ECRASHED);
    CHECK_ERR_HAS("signal 11");

    SECTION("a task writing 1 MiB past its 512 KiB result, 200 applies in flight");
    around(pool, overruns_big, 512 << 10, POOL_ECRASHED);

    SECTION("a task writing into its input (read-only)");
    around(pool, writes_its_input, 8, POOL_ECRASHED);

    SECTION("a task writing over the pool's shared header at the address it can find");
    around(pool, writes_the_header, 8, POOL_ECRASHED);

    SECTION("the pool works after all of that");
    long in[1000], out[1000];
    for (long i = 0; i < 1000; i++) in[i] = i;
    CHECK_ST(pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], 1000, NULL), POOL_OK);
    CHECK_EQ(out[999], 999 * 999);

    SECTION("a task that finds the worker's own read-write mapping and overwrites the header");
    double long_sleep = 3600; /* ended with the pool */
    long y = 0, x = 0;
    pool_async_t *pending = pool_apply_async(pool, sleeps, &long_sleep, sizeof long_sleep, &y, sizeof y, NULL);
    REQUIRE(pending != NULL);
    int st = pool_apply(pool, scribbles_through_the_alias, &x, sizeof x, &y, sizeof y, NULL);
    CHECK(st == POOL_OK || st == POOL_ECORRUPT);
    double t0 = now_s();
    CHECK_ST(pool_async_get(pending, guard_s(30)), POOL_ECORRUPT); /* what was in flight is not trusted */
    CHECK_ERR_HAS("overwritten");
    CHECK_TOOK(t0, 10, "a result in flight when the pool was corrupted");
    CHECK_ST(pool_map(pool, square, in, sizeof in[0], out, sizeof out[0], 1000, NULL), POOL_ECORRUPT);
    pool_async_free(pending);
    int zygote = only_child();
    pool_destroy(pool);
    CHECK(zygote < 0 || kill(zygote, 0) != 0); /* reaped: nothing left behind */

    SECTION("a stream, iterator, map made corrupt by its item 0: items never submitted are POOL_ECLOSED");
    test_never_submitted();
    return test_finish();
}
