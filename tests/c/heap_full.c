/* A full heap means fewer items in flight, never failures: while one thread's stream holds the
 * pool's whole shared heap in results it has not read yet (and nothing runs), a stream, a block
 * map and a map started by another thread wait for room, and each of their items succeeds once
 * the first thread reads on. Only an item that can never fit fails, and a call of the thread
 * that holds the heap itself, which would wait for itself: that one fails at once with
 * POOL_ENOMEM saying so, and works once the thread has read its results. */
#include "check.h"

#include <pthread.h>
#include <sys/syscall.h>

#define HEAP ((size_t)16 << 20) /* the smallest shared heap a pool takes */
#define HOLD_OUT (((size_t)1 << 20) - 8192) /* with its input and bookkeeping: one 1 MiB size class */
#define HOLD_N 64 /* 64 MiB of max_out: more than the heap */

static int echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    return pool_out_write(in, len);
}

static int times3(const void *in, void *out, void *ctx) {
    (void)ctx;
    *(long *)out = 3 * *(const long *)in;
    return 0;
}

static int times3_block(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)first, (void)ctx;
    for (size_t i = 0; i < count; i++) ((long *)out)[i] = 3 * ((const long *)in)[i];
    return 0;
}

static pool_t *pool;
static atomic_int b_tid, b_done, b_bad;
enum { B_N = 200 };
static long b_in[B_N], b_out[B_N];
static int b_st[B_N];

static void *second_caller(void *arg) {
    int how = (int)(intptr_t)arg;
    atomic_store(&b_tid, (int)syscall(SYS_gettid));
    int bad = 0;
    if (how == 0) {
        static pool_buf_t items[16];
        static char text[16][32];
        for (int i = 0; i < 16; i++) {
            snprintf(text[i], sizeof text[i], "item %d", i);
            items[i].data = text[i];
            items[i].len = strlen(text[i]);
        }
        pool_stream_t *s = pool_stream(pool, echo, items, 16, 64, NULL, NULL);
        if (!s) bad++;
        for (int i = 0; s && i < 16; i++) {
            const void *d;
            size_t len, index;
            int st = pool_stream_next(s, &d, &len, &index, -1);
            if (st != POOL_OK || index != (size_t)i || len != items[i].len || memcmp(d, text[i], len) != 0) {
                fprintf(stderr, "  stream item %d: %s: %s\n", i, pool_strerror(st), pool_last_error());
                bad++;
            }
        }
        pool_stream_free(s);
    } else {
        pool_map_options_t mo;
        pool_map_options_init(&mo);
        mo.statuses = b_st;
        mo.chunksize = 10;
        int st = how == 1 ? pool_map_blocks(pool, times3_block, b_in, sizeof(long), b_out, sizeof(long), B_N, NULL, &mo)
                          : pool_map_ex(pool, times3, b_in, sizeof(long), b_out, sizeof(long), B_N, NULL, &mo);
        if (st != POOL_OK) fprintf(stderr, "  %s: %s: %s\n", how == 1 ? "block map" : "map", pool_strerror(st), pool_last_error());
        bad += st != POOL_OK;
        for (int i = 0; i < B_N; i++) bad += b_st[i] != POOL_OK || b_out[i] != 3 * b_in[i];
    }
    atomic_store(&b_bad, bad);
    atomic_store(&b_done, 1);
    return NULL;
}

static pool_buf_t hold[HOLD_N];
static char hold_text[HOLD_N][16];

/* A pool with the smallest heap, and a stream whose window of unread results fills it once its
 * first result was read. */
static pool_stream_t *fill_heap(void) {
    pool_options_t o;
    pool_options_init(&o);
    o.shm_size = HEAP;
    pool = pool_create(2, &o);
    REQUIRE(pool != NULL);
    for (int i = 0; i < HOLD_N; i++) {
        snprintf(hold_text[i], sizeof hold_text[i], "held %d", i);
        hold[i].data = hold_text[i];
        hold[i].len = strlen(hold_text[i]);
    }
    pool_stream_options_t so;
    pool_stream_options_init(&so);
    so.window = HOLD_N;
    pool_stream_t *a = pool_stream(pool, echo, hold, HOLD_N, HOLD_OUT, NULL, &so);
    REQUIRE(a != NULL);
    CHECK_ST(pool_stream_next(a, NULL, NULL, NULL, -1), POOL_OK); /* fills the heap behind it */
    return a;
}

static void test_wait_for_room(int how) {
    const char *names[3] = {"stream", "block map", "map"};
    SECTION("full heap: a second thread's call waits for room instead of failing");
    fprintf(stderr, "  second call: %s\n", names[how]);
    pool_stream_t *a = fill_heap();
    const void *d;
    size_t len, index;
    for (int i = 0; i < B_N; i++) b_in[i] = i, b_out[i] = -1, b_st[i] = -1;
    atomic_store(&b_tid, 0);
    atomic_store(&b_done, 0);
    pthread_t t;
    pthread_create(&t, NULL, second_caller, (void *)(intptr_t)how);
    /* Until the second call fails (the old behaviour) or sleeps waiting for room. */
    while (atomic_load(&b_tid) == 0) sleep_s(0.001);
    WAIT_UNTIL(atomic_load(&b_done) || proc_state(atomic_load(&b_tid)) == 'S', 60);
    int read = 1;
    for (int st; (st = pool_stream_next(a, &d, &len, &index, -1)) != POOL_EDONE; read++) {
        CHECK_ST(st, POOL_OK);
        CHECK(len == hold[index].len && memcmp(d, hold_text[index], len) == 0);
    }
    CHECK_EQ(read, HOLD_N);
    pthread_join(t, NULL);
    CHECK_EQ(atomic_load(&b_bad), 0);
    pool_stream_free(a);
    pool_destroy(pool);
}

static void test_same_thread(void) {
    SECTION("full heap: the thread that holds it is told (POOL_ENOMEM), not left waiting for itself");
    pool_stream_t *a = fill_heap();
    const void *d;
    size_t len, index;
    for (int i = 0; i < B_N; i++) b_in[i] = i, b_out[i] = -1;
    CHECK_ST(pool_map(pool, times3, b_in, sizeof(long), b_out, sizeof(long), B_N, NULL), POOL_ENOMEM);
    CHECK_ERR_HAS("this thread has not read yet");
    pool_async_t *m = pool_map_async(pool, times3, b_in, sizeof(long), b_out, sizeof(long), B_N, NULL);
    REQUIRE(m != NULL);
    CHECK_ST(pool_async_get(m, guard_s(60)), POOL_ENOMEM); /* its driver submits for this thread */
    pool_async_free(m);
    int read = 1;
    for (int st; (st = pool_stream_next(a, &d, &len, &index, -1)) != POOL_EDONE; read++) CHECK_ST(st, POOL_OK);
    CHECK_EQ(read, HOLD_N);
    pool_stream_free(a);
    CHECK_ST(pool_map(pool, times3, b_in, sizeof(long), b_out, sizeof(long), B_N, NULL), POOL_OK);
    CHECK_EQ(b_out[B_N - 1], 3 * (B_N - 1));
    pool_destroy(pool);
}

int main(void) {
    test_begin("heap_full", 55);
    for (int how = 0; how < 3; how++) test_wait_for_room(how);
    test_same_thread();
    return test_finish();
}
