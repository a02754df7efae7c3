/* What Python users reach for next: pool_async_wait_any over results of several pools, and queues,
 * locks and events (pool_queue_t, pool_lock_t, pool_event_t): normal use between
 * threads, Process children and pool tasks; and faults: full and empty queues with timeouts,
 * messages too long or that can never fit, close, free while others wait, handles misused, and
 * peers SIGKILLed in the middle of put and get, many times (every message that arrives is
 * whole and, per producer, in order; the queue is never left locked), a lock holder killed. */
#include "check.h"

#include <pthread.h>
#include <sys/wait.h>

/* ---- helpers ------------------------------------------------------------------------------ */

/* A message: producer id, its sequence number, a length, bytes that depend on all three. */
struct msg {
    uint32_t producer, seq, len;
    uint8_t bytes[500];
};

static size_t msg_size(const struct msg *m) {
    return offsetof(struct msg, bytes) + m->len;
}

static void fill(struct msg *m, uint32_t producer, uint32_t seq) {
    m->producer = producer;
    m->seq = seq;
    m->len = (seq * 7919u + producer * 31u) % sizeof m->bytes;
    for (uint32_t i = 0; i < m->len; i++) m->bytes[i] = (uint8_t)(i * 13u + seq + producer);
}

static int whole(const struct msg *m, size_t len) {
    if (len < offsetof(struct msg, bytes) || len != msg_size(m) || m->len > sizeof m->bytes) return 0;
    for (uint32_t i = 0; i < m->len; i++)
        if (m->bytes[i] != (uint8_t)(i * 13u + m->seq + m->producer)) return 0;
    return 1;
}

/* ---- 1. a queue between threads: order, sizes, timeouts, close ----------------------------- */

static void test_basics(void) {
    SECTION("queue basics: order, lengths, too long, never fits, timeouts, close");
    pool_queue_t *q = pool_queue_create(1000);
    REQUIRE(q != NULL);
    char buf[2000];
    size_t len = 0;
    CHECK_ST(pool_queue_get(q, buf, sizeof buf, &len, 0), POOL_ETIMEDOUT);
    double t0 = now_s();
    CHECK_ST(pool_queue_get(q, buf, sizeof buf, &len, 0.2), POOL_ETIMEDOUT);
    CHECK(now_s() - t0 >= 0.19);
    for (int i = 0; i < 10; i++) CHECK_ST(pool_queue_put(q, buf, (size_t)i * 10, 0), POOL_OK);
    CHECK_ST(pool_queue_put(q, "", 0, 0), POOL_OK);
    for (int i = 0; i < 10; i++) {
        CHECK_ST(pool_queue_get(q, buf, sizeof buf, &len, 0), POOL_OK);
        CHECK_EQ(len, i * 10);
    }
    CHECK_ST(pool_queue_get(q, buf, sizeof buf, &len, 0), POOL_OK);
    CHECK_EQ(len, 0);
    /* One message of max_bytes fits; one byte more never does. */
    memset(buf, 'x', sizeof buf);
    CHECK_ST(pool_queue_put(q, buf, 1000, 0), POOL_OK);
    CHECK_ST(pool_queue_put(q, buf, 1, 0.1), POOL_ETIMEDOUT); /* full */
    CHECK_ST(pool_queue_put(q, buf, 1001, -1), POOL_EINVAL);  /* never: refused at once */
    CHECK_ERR_HAS("never fits");
    /* A buffer too small: the length is reported and the message stays. */
    len = 0;
    CHECK_ST(pool_queue_get(q, buf, 10, &len, 0), POOL_ENOMEM);
    CHECK_EQ(len, 1000);
    CHECK_ST(pool_queue_get(q, buf, 1000, &len, 0), POOL_OK);
    CHECK_EQ(len, 1000);
    /* Close: queued messages still come out, then POOL_ECLOSED; puts refused. */
    CHECK_ST(pool_queue_put(q, "ab", 2, 0), POOL_OK);
    CHECK_ST(pool_queue_close(q), POOL_OK);
    CHECK_ST(pool_queue_put(q, "cd", 2, 0), POOL_ECLOSED);
    CHECK_ST(pool_queue_get(q, buf, sizeof buf, &len, 0), POOL_OK);
    CHECK(len == 2 && memcmp(buf, "ab", 2) == 0);
    CHECK_ST(pool_queue_get(q, buf, sizeof buf, &len, -1), POOL_ECLOSED);
    pool_queue_free(q);
    /* Misuse: NULL, freed, made up, wrong kind, bad arguments. */
    CHECK_ST(pool_queue_put(q, "x", 1, 0), POOL_EINVAL);
    CHECK_ERR_HAS("not a live queue");
    pool_queue_free(q); /* double free: refused, no crash */
    CHECK_ERR_HAS("not a live queue");
    CHECK(pool_queue_create(0) == NULL && pool_last_status() == POOL_EINVAL);
    CHECK_ST(pool_queue_put(NULL, "x", 1, 0), POOL_EINVAL);
    CHECK_ST(pool_queue_put((pool_queue_t *)(uintptr_t)0x12345678, "x", 1, 0), POOL_EINVAL);
    pool_lock_t *l = pool_lock_create();
    CHECK_ST(pool_queue_put((pool_queue_t *)(void *)l, "x", 1, 0), POOL_EINVAL); /* a lock is not a queue */
    pool_lock_free(l);
    pool_queue_free(NULL);
    pool_queue_t *q2 = pool_queue_create(100);
    CHECK_ST(pool_queue_put(q2, NULL, 5, 0), POOL_EINVAL);
    CHECK_ST(pool_queue_get(q2, NULL, 5, &len, 0), POOL_EINVAL);
    CHECK_ST(pool_queue_get(q2, buf, 5, &len, 0.0 / 0.0), POOL_EINVAL); /* NaN timeout */
    pool_queue_free(q2);
}

/* ---- 2. waiters woken by put, get, close and free ------------------------------------------ */

static pool_queue_t *wq;
static atomic_int woke_status;

static void *blocked_getter(void *arg) {
    (void)arg;
    char b[16];
    size_t n;
    atomic_store(&woke_status, pool_queue_get(wq, b, sizeof b, &n, -1));
    return NULL;
}

static void test_waiters(void) {
    SECTION("waiters: a blocked get wakes on put, on close and on free");
    int want[3] = {POOL_OK, POOL_ECLOSED, POOL_EINVAL};
    for (int how = 0; how < 3; how++) {
        wq = pool_queue_create(64);
        REQUIRE(wq != NULL);
        atomic_store(&woke_status, -1);
        pthread_t t;
        pthread_create(&t, NULL, blocked_getter, NULL);
        sleep_s(0.1);
        CHECK_EQ(atomic_load(&woke_status), -1);
        double t0 = now_s();
        if (how == 0) CHECK_ST(pool_queue_put(wq, "hi", 2, 0), POOL_OK);
        if (how == 1) CHECK_ST(pool_queue_close(wq), POOL_OK);
        if (how == 2) pool_queue_free(wq);
        pthread_join(t, NULL);
        CHECK_TOOK(t0, 10, "a blocked get woken");
        CHECK_EQ(atomic_load(&woke_status), want[how]);
        if (how < 2) pool_queue_free(wq);
    }
}

/* ---- 3. Process children and pool tasks put, the parent gets -------------------------------- */

static pool_queue_t *results;

static int child_work(void *arg) {
    int id = (int)(intptr_t)arg;
    long r = (long)id * id;
    return pool_queue_put(results, &r, sizeof r, guard_s(10)) == POOL_OK ? 0 : 1;
}

static int task_puts(const void *in, void *out, void *ctx) {
    (void)out;
    pool_queue_t *q = *(pool_queue_t *const *)ctx;
    long v = *(const long *)in + 1000;
    return pool_queue_put(q, &v, sizeof v, guard_s(10)) == POOL_OK ? 0 : 1;
}

static void test_processes_and_tasks(void) {
    SECTION("Process children and pool tasks (pool created before the queue) put results");
    pool_t *pool = pool_create(2, NULL); /* before the queue */
    REQUIRE(pool != NULL);
    results = pool_queue_create(4096);
    REQUIRE(results != NULL);
    pool_process_t *p[4];
    for (int i = 0; i < 4; i++) {
        p[i] = pool_process_create(child_work, (void *)(intptr_t)(i + 1));
        CHECK_ST(pool_process_start(p[i]), POOL_OK);
    }
    long sum = 0, v;
    size_t len;
    for (int i = 0; i < 4; i++) {
        CHECK_ST(pool_queue_get(results, &v, sizeof v, &len, guard_s(10)), POOL_OK);
        sum += v;
    }
    CHECK_EQ(sum, 1 + 4 + 9 + 16);
    for (int i = 0; i < 4; i++) {
        CHECK_ST(pool_process_join(p[i], guard_s(10)), POOL_OK);
        int code = -1;
        pool_process_exitcode(p[i], &code);
        CHECK_EQ(code, 0);
        pool_process_free(p[i]);
    }
    long in[20], out[20];
    for (int i = 0; i < 20; i++) in[i] = i;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.ctx_size = sizeof results;
    CHECK_ST(pool_map_ex(pool, task_puts, in, sizeof in[0], out, sizeof out[0], 20, &results, &mo), POOL_OK);
    sum = 0;
    for (int i = 0; i < 20; i++) {
        CHECK_ST(pool_queue_get(results, &v, sizeof v, &len, guard_s(10)), POOL_OK);
        sum += v;
    }
    CHECK_EQ(sum, 20 * 1000 + 190);
    pool_queue_free(results);
    pool_destroy(pool);
}

/* ---- 4. peers SIGKILLed in the middle of put and get, many times ---------------------------- */

/* The kill storm's counters, shared: [0] messages consumers took, [1] their failures, [2] puts. */
static volatile uint32_t *storm_stats;

static int producer(pool_queue_t *q, uint32_t id) {
    struct msg m;
    for (uint32_t seq = 0;; seq++) {
        fill(&m, id, seq);
        int st = pool_queue_put(q, &m, msg_size(&m), -1);
        if (st != POOL_OK) _exit(st == POOL_ECLOSED ? 0 : 10 + st);
        __atomic_fetch_add(&storm_stats[2], 1, __ATOMIC_SEQ_CST);
    }
}

/* Takes messages; each must be whole, and from each producer later than the last one this
 * consumer saw. Counts what it took in stats[0], failures in stats[1]. */
static int consumer(pool_queue_t *q, volatile uint32_t *stats) {
    static int64_t last[4096];
    for (int i = 0; i < 4096; i++) last[i] = -1;
    struct msg m;
    size_t len;
    for (;;) {
        int st = pool_queue_get(q, &m, sizeof m, &len, -1);
        if (st == POOL_ECLOSED) _exit(0);
        if (st != POOL_OK || !whole(&m, len) || (m.producer < 4096 && (int64_t)m.seq <= last[m.producer])) {
            __atomic_fetch_add(&stats[1], 1, __ATOMIC_SEQ_CST);
            _exit(20);
        }
        if (m.producer < 4096) last[m.producer] = m.seq;
        __atomic_fetch_add(&stats[0], 1, __ATOMIC_SEQ_CST);
    }
}

/* Waits until the producers' puts reach `n`, or until every producer sleeps in a put that makes
 * no progress (with no consumer left: the queue is full, which holds more than `n` do). */
static void wait_for_puts(const pid_t *prod, int nprod, uint32_t n) {
    for (double t0 = now_s(); storm_stats[2] < n && now_s() - t0 < guard_s(10); sleep_s(0.001)) {
        int asleep = 1;
        for (int i = 0; i < nprod; i++) asleep &= proc_state(prod[i]) == 'S';
        uint32_t seen = storm_stats[2];
        if (asleep) {
            sleep_s(0.05);
            for (int i = 0; i < nprod; i++) asleep &= proc_state(prod[i]) == 'S';
            if (asleep && storm_stats[2] == seen) return;
        }
    }
}

static void test_kill_storm(void) {
    SECTION("producers and consumers SIGKILLed mid-put and mid-get, many times: messages whole, in order, never locked");
    enum { PRODUCERS = 3, CONSUMERS = 2, ROUNDS = 300 };
    pool_queue_t *q = pool_queue_create(16 << 10);
    REQUIRE(q != NULL);
    volatile uint32_t *stats = storm_stats = shared_alloc(64);
    pid_t prod[PRODUCERS], cons[CONSUMERS];
    uint32_t next_id = 0;
    for (int i = 0; i < PRODUCERS; i++)
        if ((prod[i] = fork()) == 0) _exit(producer(q, next_id));
        else next_id++;
    for (int i = 0; i < CONSUMERS; i++)
        if ((cons[i] = fork()) == 0) _exit(consumer(q, stats));
    unsigned seed = 12345;
    int kills = 0;
    for (int r = 0; r < ROUNDS; r++) {
        sleep_s((double)(rand_r(&seed) % 2000) / 1e6); /* 0-2 ms */
        int victim = rand_r(&seed) % (PRODUCERS + CONSUMERS);
        pid_t *slot = victim < PRODUCERS ? &prod[victim] : &cons[victim - PRODUCERS];
        kill(*slot, SIGKILL);
        waitpid(*slot, NULL, 0);
        kills++;
        if (victim < PRODUCERS) {
            uint32_t id = next_id++;
            if ((*slot = fork()) == 0) _exit(producer(q, id));
        } else if ((*slot = fork()) == 0) {
            _exit(consumer(q, stats));
        }
    }
    /* The kills left nothing wedged: the consumers go on taking messages. */
    uint32_t at_end = stats[0];
    WAIT_UNTIL(stats[0] >= at_end + 1000, 30);
    CHECK(stats[0] >= at_end + 1000);
    /* Stop the consumers, let the producers put more than 10 messages (a put counted before
     * the consumers stopped may still have been taken: one per producer), stop them; then
     * drain here: every message whole, and per producer the sequence numbers strictly increase. */
    for (int i = 0; i < CONSUMERS; i++) {
        kill(cons[i], SIGKILL);
        waitpid(cons[i], NULL, 0);
    }
    wait_for_puts(prod, PRODUCERS, stats[2] + 11 + PRODUCERS);
    for (int i = 0; i < PRODUCERS; i++) {
        kill(prod[i], SIGKILL);
        waitpid(prod[i], NULL, 0);
    }
    CHECK_EQ(stats[1], 0);
    static int64_t last[4096];
    for (uint32_t i = 0; i < next_id && i < 4096; i++) last[i] = -1;
    struct msg m;
    size_t len;
    int drained = 0, st;
    while ((st = pool_queue_get(q, &m, sizeof m, &len, 0)) == POOL_OK) {
        CHECK(whole(&m, len));
        if (m.producer < next_id && m.producer < 4096) {
            CHECK((int64_t)m.seq > last[m.producer]);
            last[m.producer] = m.seq;
        }
        drained++;
    }
    CHECK_ST(st, POOL_ETIMEDOUT); /* empty, and not left locked */
    /* Still fully usable. */
    fill(&m, 9999, 1);
    CHECK_ST(pool_queue_put(q, &m, msg_size(&m), 1), POOL_OK);
    CHECK_ST(pool_queue_get(q, &m, sizeof m, &len, 1), POOL_OK);
    CHECK(whole(&m, len) && m.producer == 9999);
    CHECK(drained > 10);
    fprintf(stderr, "ipc: %d kills; %u messages taken by consumers, %d drained after\n", kills, stats[0], drained);
    pool_queue_free(q);
}

/* ---- 5. locks: mutual exclusion across processes, a holder killed --------------------------- */

static void test_lock(void) {
    SECTION("lock: exclusion across processes; a holder SIGKILLed -> POOL_EOWNERDEAD; misuse");
    pool_lock_t *l = pool_lock_create();
    REQUIRE(l != NULL);
    volatile long *counter = shared_alloc(64);
    *counter = 0;
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        if ((kids[i] = fork()) == 0) {
            for (int k = 0; k < 2000; k++) {
                if (pool_lock_acquire(l, -1) != POOL_OK) _exit(1);
                long v = *counter;
                *counter = v + 1; /* a lost update shows without the lock */
                if (pool_lock_release(l) != POOL_OK) _exit(2);
            }
            _exit(0);
        }
    }
    for (int i = 0; i < 4; i++) {
        int ws;
        waitpid(kids[i], &ws, 0);
        CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    CHECK_EQ(*counter, 8000);
    /* A holder killed: the next acquirer gets it, and learns it. */
    atomic_int *held = shared_alloc(sizeof *held);
    pid_t holder = fork();
    if (holder == 0) {
        pool_lock_acquire(l, -1);
        atomic_store(held, 1);
        for (;;) pause();
    }
    WAIT_UNTIL(atomic_load(held), 10);
    CHECK_ST(pool_lock_acquire(l, 0.1), POOL_ETIMEDOUT);
    kill(holder, SIGKILL);
    waitpid(holder, NULL, 0);
    CHECK_ST(pool_lock_acquire(l, guard_s(10)), POOL_EOWNERDEAD);
    CHECK_ERR_HAS("died");
    CHECK_ST(pool_lock_acquire(l, 0), POOL_EINVAL); /* already ours */
    CHECK_ST(pool_lock_release(l), POOL_OK);
    CHECK_ST(pool_lock_release(l), POOL_EINVAL); /* not held */
    CHECK_ST(pool_lock_acquire(l, 0), POOL_OK);  /* usable again, clean */
    CHECK_ST(pool_lock_release(l), POOL_OK);
    pool_lock_free(l);
    CHECK_ST(pool_lock_acquire(l, 0), POOL_EINVAL);
    CHECK_ST(pool_lock_acquire(NULL, 0), POOL_EINVAL);
    pool_lock_free(NULL);
}

/* ---- 6. events: many waiters across processes ------------------------------------------------ */

static void test_event(void) {
    SECTION("event: processes wait, one set wakes all; clear; timeout; misuse");
    pool_event_t *e = pool_event_create();
    REQUIRE(e != NULL);
    CHECK(!pool_event_is_set(e));
    CHECK_ST(pool_event_wait(e, 0.05), POOL_ETIMEDOUT);
    pid_t kids[5];
    for (int i = 0; i < 5; i++)
        if ((kids[i] = fork()) == 0) _exit(pool_event_wait(e, guard_s(10)) == POOL_OK ? 0 : 1);
    sleep_s(0.1);
    double t0 = now_s();
    CHECK_ST(pool_event_set(e), POOL_OK);
    for (int i = 0; i < 5; i++) {
        int ws;
        waitpid(kids[i], &ws, 0);
        CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    CHECK_TOOK(t0, 10, "five processes woken by one set");
    CHECK(pool_event_is_set(e));
    CHECK_ST(pool_event_wait(e, 0), POOL_OK);
    CHECK_ST(pool_event_clear(e), POOL_OK);
    CHECK(!pool_event_is_set(e));
    pool_event_free(e);
    CHECK_ST(pool_event_set(e), POOL_EINVAL);
    CHECK(!pool_event_is_set(e));
    CHECK_ST(pool_event_wait(NULL, 0), POOL_EINVAL);
    pool_event_free(NULL);
}

/* ---- 7. pool_async_wait_any --------------------------------------------------------------------- */

static int sleeps_ms(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_s(*(const long *)in / 1000.0);
    if (out) *(long *)out = *(const long *)in;
    return 0;
}

/* Set by the host, one flag per task of test_wait_any: the task ends once its flag is. */
static atomic_int *finish_flags;

static int waits_for_its_flag(const void *in, void *out, void *ctx) {
    (void)ctx;
    long id = *(const long *)in;
    WAIT_UNTIL(atomic_load(&finish_flags[id]), 60);
    *(long *)out = id;
    return 0;
}

static void test_wait_any(void) {
    SECTION("pool_async_wait_any: the first ready of several pools' results; timeout; misuse");
    finish_flags = shared_alloc(3 * sizeof *finish_flags); /* before the pools: workers see it */
    pool_t *a = pool_create(2, NULL), *b = pool_create(1, NULL);
    REQUIRE(a && b);
    long ids[3] = {0, 1, 2}, out[3];
    pool_async_t *h[3] = {
        pool_apply_async(a, waits_for_its_flag, &ids[0], sizeof ids[0], &out[0], sizeof out[0], NULL),
        pool_apply_async(b, waits_for_its_flag, &ids[1], sizeof ids[1], &out[1], sizeof out[1], NULL),
        pool_apply_async(a, waits_for_its_flag, &ids[2], sizeof ids[2], &out[2], sizeof out[2], NULL),
    };
    size_t idx = 99;
    CHECK_ST(pool_async_wait_any(h, 3, 0, &idx), POOL_ETIMEDOUT);
    /* Finished one at a time, in the order 1, 2, 0: each wait names the one that finished. */
    static const int order[3] = {1, 2, 0};
    pool_async_t *left[3] = {h[0], h[1], h[2]};
    size_t n = 3;
    int map[3] = {0, 1, 2};
    for (int k = 0; k < 3; k++) {
        atomic_store(&finish_flags[order[k]], 1);
        CHECK_ST(pool_async_wait_any(left, n, guard_s(10), &idx), POOL_OK);
        REQUIRE(idx < n);
        CHECK_ST(pool_async_get(left[idx], 0), POOL_OK);
        CHECK_EQ(map[idx], order[k]);
        CHECK_EQ(out[order[k]], order[k]);
        left[idx] = left[n - 1];
        map[idx] = map[n - 1];
        n--;
    }
    double t0 = now_s();
    long slow = 3600 * 1000, o; /* ended by the cancel below */
    pool_async_t *s1 = pool_apply_async(b, sleeps_ms, &slow, sizeof slow, &o, sizeof o, NULL);
    CHECK_ST(pool_async_wait_any(&s1, 1, 0.2, &idx), POOL_ETIMEDOUT);
    CHECK(now_s() - t0 >= 0.19);
    CHECK_TOOK(t0, 10, "a wait_any with a 0.2 s timeout");
    CHECK_ST(pool_async_wait_any(NULL, 1, 0, &idx), POOL_EINVAL);
    CHECK_ST(pool_async_wait_any(&s1, 0, 0, &idx), POOL_EINVAL);
    CHECK_ST(pool_async_wait_any(&s1, 1, 0, NULL), POOL_EINVAL);
    pool_async_free(h[1]);
    pool_async_t *mixed[2] = {s1, h[1]}; /* h[1] freed */
    CHECK_ST(pool_async_wait_any(mixed, 2, 0, &idx), POOL_EINVAL);
    CHECK_ERR_HAS("handles[1]");
    pool_async_cancel(s1);
    pool_async_free(s1);
    pool_async_free(h[0]);
    pool_async_free(h[2]);
    pool_destroy(a);
    pool_destroy(b);
}

/* ---- 8. an initializer that can fail --------------------------------------------------------- */

static int init_refuses(void *arg) {
    if (arg == NULL) return 0;
    pool_task_error("cannot open the model file");
    return 3;
}

static int init_state;
static int init_sets(void *arg) {
    init_state = *(int *)arg;
    return 0;
}

static void plain_init(void *arg) {
    (void)arg;
}

static int reads_state(const void *in, void *out, void *ctx) {
    (void)in;
    (void)ctx;
    *(int *)out = init_state;
    return 0;
}

static void test_initializer_ex(void) {
    SECTION("initializer_ex: a refusal fails pool_create with its code and message; success runs tasks");
    int before = count_children();
    pool_options_t o;
    pool_options_init(&o);
    o.initializer_ex = init_refuses;
    o.initarg = &o; /* non-NULL: refuse */
    pool_t *p = pool_create(2, &o);
    CHECK(p == NULL);
    CHECK_EQ(pool_last_status(), POOL_ETASK);
    CHECK_ERR_HAS("returned 3");
    CHECK_ERR_HAS("cannot open the model file");
    CHECK_EQ(count_children(), before); /* nothing left behind */
    static int value = 42;
    o.initializer_ex = init_sets;
    o.initarg = &value;
    p = pool_create(2, &o);
    REQUIRE(p != NULL);
    int x = 0, y = 0;
    CHECK_ST(pool_apply(p, reads_state, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 42);
    pool_destroy(p);
    o.initializer = plain_init; /* both: refused */
    CHECK(pool_create(1, &o) == NULL && pool_last_status() == POOL_EINVAL);
}

/* ---- 9. Process options: daemon and name ----------------------------------------------------- */

static int naps(void *arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}

/* Whether /proc says process `pid` is called `name`. */
static int has_name(pid_t pid, const char *name) {
    char path[64], comm[32] = "";
    snprintf(path, sizeof path, "/proc/%d/comm", (int)pid);
    FILE *f = fopen(path, "r");
    if (f && fgets(comm, sizeof comm, f)) comm[strcspn(comm, "\n")] = 0;
    if (f) fclose(f);
    return strcmp(comm, name) == 0;
}

static void test_process_options(void) {
    SECTION("process options: a daemon dies with its host (SIGKILL), a plain child lives on; names");
    volatile int *pids = shared_alloc(64);
    pid_t host = fork();
    if (host == 0) {
        pool_process_options_t po;
        pool_process_options_init(&po);
        po.daemon = true;
        po.name = "pool-daemon-t";
        pool_process_t *d = pool_process_create_ex(naps, NULL, &po);
        po.daemon = false;
        po.name = "pool-plain-t";
        pool_process_t *k = pool_process_create_ex(naps, NULL, &po);
        if (!d || !k || pool_process_start(d) != POOL_OK || pool_process_start(k) != POOL_OK) _exit(1);
        pids[0] = pool_process_pid(d);
        pids[1] = pool_process_pid(k);
        for (;;) pause();
    }
    WAIT_UNTIL(pids[0] != 0 && pids[1] != 0, 10);
    REQUIRE(pids[0] > 0 && pids[1] > 0);
    /* The child names itself once it runs. */
    WAIT_UNTIL(has_name(pids[0], "pool-daemon-t"), 10);
    CHECK(has_name(pids[0], "pool-daemon-t"));
    kill(host, SIGKILL);
    waitpid(host, NULL, 0);
    WAIT_UNTIL(kill(pids[0], 0) != 0 || proc_state(pids[0]) == 'Z', 10);
    CHECK(kill(pids[0], 0) != 0 || proc_state(pids[0]) == 'Z'); /* the daemon died with its host */
    CHECK(kill(pids[1], 0) == 0 && proc_state(pids[1]) != 'Z'); /* the plain child lives on */
    kill(pids[1], SIGKILL);
    pool_process_options_t bad;
    memset(&bad, 0, sizeof bad);
    CHECK(pool_process_create_ex(naps, NULL, &bad) == NULL && pool_last_status() == POOL_EINVAL);
    CHECK(pool_process_create_ex(NULL, NULL, NULL) == NULL);
}

/* ---- 10. completion callbacks ----------------------------------------------------------------- */

static atomic_int cb_calls, cb_inside, cb_overlap, cb_status_sum, cb_bad_handle, cb_len_ok;

static int fails_on_odd(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    sleep_s(0.002 * (double)(x % 5));
    *(long *)out = x * 2;
    return x % 2 ? 4 : 0;
}

static void on_done(pool_async_t *a, int status, void *arg) {
    if (atomic_fetch_add(&cb_inside, 1) != 0) atomic_fetch_add(&cb_overlap, 1);
    pool_task_info_t info;
    if (pool_async_info(a, &info, sizeof info) != POOL_OK || info.status != status) atomic_fetch_add(&cb_bad_handle, 1);
    atomic_fetch_add(&cb_status_sum, status);
    if (arg) pool_async_free(a); /* the callback may free its handle */
    atomic_fetch_add(&cb_calls, 1);
    atomic_fetch_sub(&cb_inside, 1);
}

static void on_submit(pool_async_t *a, int status, void *arg) {
    (void)arg;
    const void *data;
    size_t len;
    if (status == POOL_OK && pool_async_result(a, &data, &len) == POOL_OK && len == 5 && memcmp(data, "hello", 5) == 0)
        atomic_fetch_add(&cb_len_ok, 1);
    atomic_fetch_add(&cb_calls, 1);
}

static void wait_calls(int n) {
    WAIT_UNTIL(atomic_load(&cb_calls) >= n, 10);
}

static void test_callbacks(void) {
    SECTION("callbacks: once per result, one at a time, handle valid inside; maps, submits; freed first; destroy");
    pool_t *p = pool_create(2, NULL);
    REQUIRE(p != NULL);
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.callback = on_done;
    enum { N = 40 };
    static long in[N], out[N];
    pool_async_t *h[N];
    for (int i = 0; i < N; i++) {
        in[i] = i;
        co.callback_arg = (i % 4 == 0) ? (void *)1 : NULL; /* every 4th frees itself in the callback */
        h[i] = pool_apply_async_ex(p, fails_on_odd, &in[i], sizeof in[i], &out[i], sizeof out[i], NULL, &co);
        REQUIRE(h[i] != NULL);
    }
    wait_calls(N);
    CHECK_EQ(atomic_load(&cb_calls), N);
    CHECK_EQ(atomic_load(&cb_overlap), 0);
    CHECK_EQ(atomic_load(&cb_bad_handle), 0);
    CHECK_EQ(atomic_load(&cb_status_sum), (N / 2) * POOL_ETASK);
    for (int i = 0; i < N; i++)
        if (i % 4 != 0) pool_async_free(h[i]);
    /* A map. */
    atomic_store(&cb_calls, 0);
    atomic_store(&cb_status_sum, 0);
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.callback = on_done;
    pool_async_t *m = pool_map_async_ex(p, fails_on_odd, in, sizeof in[0], out, sizeof out[0], N, NULL, &mo);
    REQUIRE(m != NULL);
    wait_calls(1);
    CHECK_EQ(atomic_load(&cb_calls), 1);
    CHECK_EQ(atomic_load(&cb_status_sum), POOL_ETASK);
    pool_async_free(m);
    /* A submit: the variable-size result is readable in the callback. */
    atomic_store(&cb_calls, 0);
    co.callback = on_submit;
    pool_async_t *v = pool_submit_ex(p, echo_task, "hello", 5, 64, NULL, &co);
    wait_calls(1);
    CHECK_EQ(atomic_load(&cb_len_ok), 1);
    pool_async_free(v);
    /* Freed before ready: no callback. (Both tasks sleep an hour: they end with the pool.) */
    atomic_store(&cb_calls, 0);
    long hour = 3600 * 1000, o2;
    co.callback = on_done;
    co.callback_arg = NULL;
    pool_async_t *f = pool_apply_async_ex(p, sleeps_ms, &hour, sizeof hour, NULL, 0, NULL, &co);
    pool_async_t *g = pool_apply_async_ex(p, sleeps_ms, &hour, sizeof hour, &o2, sizeof o2, NULL, &co);
    pool_async_free(f);
    sleep_s(0.1);
    CHECK_EQ(atomic_load(&cb_calls), 0);
    /* Pending at destroy: the callback comes, with POOL_ECLOSED. */
    atomic_store(&cb_status_sum, 0);
    pool_destroy(p);
    wait_calls(1);
    CHECK_EQ(atomic_load(&cb_calls), 1);
    CHECK_EQ(atomic_load(&cb_status_sum), POOL_ECLOSED);
    pool_async_free(g);
    /* Synchronous calls and iterators refuse a callback. */
    p = pool_create(1, NULL);
    long x = 1, y;
    CHECK_ST(pool_apply_ex(p, fails_on_odd, &x, sizeof x, &y, sizeof y, NULL, &co), POOL_EINVAL);
    CHECK_ST(pool_map_ex(p, fails_on_odd, in, sizeof in[0], out, sizeof out[0], 2, NULL, &mo), POOL_EINVAL);
    CHECK(pool_imap(p, fails_on_odd, in, sizeof in[0], sizeof out[0], 2, NULL, &mo) == NULL);
    pool_destroy(p);
}

/* ---- 11. from hostile testing ---------------------------------------------------------------- */

static atomic_int slow_cb_started, slow_cb_done;
static void slow_callback(pool_async_t *a, int status, void *arg) {
    (void)a;
    (void)status;
    (void)arg;
    atomic_store(&slow_cb_started, 1);
    sleep_s(0.2);
    atomic_store(&slow_cb_done, 1);
}

static pool_t *cross[2];
static atomic_int cross_done;
static void destroys_the_other(pool_async_t *a, int status, void *arg) {
    (void)a;
    (void)status;
    pool_destroy(cross[(intptr_t)arg]);
    atomic_fetch_add(&cross_done, 1);
}

static int init_says_but_succeeds(void *arg) {
    (void)arg;
    pool_task_error("a message the initializer left");
    return 0;
}

static int returns_5(const void *in, void *out, void *ctx) {
    (void)in;
    (void)out;
    (void)ctx;
    return 5;
}

static pool_queue_t *busy_q;
static atomic_int stop_hammer;
static void *hammer(void *arg) {
    (void)arg;
    char b[8];
    size_t n;
    while (!atomic_load(&stop_hammer)) {
        pool_queue_put(busy_q, "12345678", 8, 0);
        pool_queue_get(busy_q, b, sizeof b, &n, 0);
    }
    return NULL;
}

static void test_hostile_findings(void) {
    SECTION("hostile findings: lock freed while held, huge lengths, forged handles, killed waiters, arena reuse");
    /* A lock freed while a thread (another process) holds it is never reused under it. */
    pool_lock_t *l = pool_lock_create();
    atomic_int *flag = shared_alloc(sizeof *flag);
    pid_t holder = fork();
    if (holder == 0) {
        pool_lock_acquire(l, -1);
        atomic_store(flag, 1);
        sleep_s(0.3);
        pool_lock_release(l); /* of a freed lock: refused, no harm */
        _exit(0);
    }
    WAIT_UNTIL(atomic_load(flag), 10); /* held */
    pool_lock_free(l);
    pool_lock_t *l2 = pool_lock_create();
    for (int i = 0; i < 100; i++) {
        CHECK_ST(pool_lock_acquire(l2, guard_s(1)), POOL_OK);
        CHECK_ST(pool_lock_release(l2), POOL_OK);
    }
    int ws;
    waitpid(holder, &ws, 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    pool_lock_free(l2);
    /* Absurd lengths are refused, never a crash. */
    pool_queue_t *q = pool_queue_create(64);
    char buf[128] = {0};
    CHECK_ST(pool_queue_put(q, buf, SIZE_MAX - 7, 0), POOL_EINVAL);
    CHECK_ST(pool_queue_put(q, buf, SIZE_MAX, 0), POOL_EINVAL);
    /* A made-up handle pointing inside another queue's messages is refused. */
    pool_queue_t *q2 = pool_queue_create(4096);
    uint64_t fake[16];
    for (int i = 0; i < 16; i++) fake[i] = (uint64_t)(uintptr_t)q2;
    CHECK_ST(pool_queue_put(q2, fake, sizeof fake, 0), POOL_OK);
    for (int k = 1; k < 64; k++)
        CHECK_ST(pool_queue_put((pool_queue_t *)((uintptr_t)q2 + 64 * (uintptr_t)k), "x", 1, 0), POOL_EINVAL);
    pool_queue_free(q2);
    pool_queue_free(q);
    /* A process killed while waiting inside a queue call does not keep it from being freed
     * and reused (many times: the arena would run out otherwise). */
    double slowest_free = 0;
    for (int i = 0; i < 40; i++) {
        pool_queue_t *w = pool_queue_create(4 << 20);
        REQUIRE(w != NULL);
        atomic_store(flag, 0);
        pid_t waiter = fork();
        if (waiter == 0) {
            char b[8];
            size_t n;
            atomic_store(flag, 1);
            pool_queue_get(w, b, sizeof b, &n, -1);
            _exit(0);
        }
        WAIT_UNTIL(atomic_load(flag), 10);
        sleep_s(0.01); /* inside the get by now, most times */
        kill(waiter, SIGKILL);
        waitpid(waiter, NULL, 0);
        double t0 = now_s();
        pool_queue_free(w);
        if (now_s() - t0 > slowest_free) slowest_free = now_s() - t0;
    }
    check_took_(__FILE__, __LINE__, "the slowest of 40 frees of a queue whose waiter was killed", slowest_free, 5);
    /* Freed memory serves objects of any size: small and big alternately, then many small ones
     * freed and one big one made from their space. */
    static pool_lock_t *kept[200];
    for (int i = 0; i < 200; i++) {
        pool_queue_t *big = pool_queue_create(1 << 20);
        REQUIRE(big != NULL);
        pool_queue_free(big);
        CHECK((kept[i] = pool_lock_create()) != NULL); /* 200 small locks alive at the end */
    }
    for (int i = 0; i < 200; i++) pool_lock_free(kept[i]);
    static pool_lock_t *many[20000];
    for (int i = 0; i < 20000; i++) REQUIRE((many[i] = pool_lock_create()) != NULL);
    for (int i = 0; i < 20000; i++) pool_lock_free(many[i]);
    pool_queue_t *huge = pool_queue_create(40 << 20);
    CHECK(huge != NULL);
    pool_queue_free(huge);

    SECTION("hostile findings: callbacks vs pool_async_free and cross destroy; initializer messages; busy queues");
    /* pool_async_free waits for a callback running on the result: what it reads may be freed after. */
    pool_t *p = pool_create(1, NULL);
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.callback = slow_callback;
    long x = 1, y;
    pool_async_t *a = pool_apply_async_ex(p, fails_on_odd, &x, sizeof x, &y, sizeof y, NULL, &co);
    CHECK_ST(pool_async_wait(a, guard_s(10)), POOL_OK);
    WAIT_UNTIL(atomic_load(&slow_cb_started), 10);
    pool_async_free(a);
    CHECK_EQ(atomic_load(&slow_cb_done), 1);
    pool_destroy(p);
    /* Two pools whose callbacks destroy each other's pool: no deadlock. (Skipped under valgrind,
     * where one of the two callbacks was once seen not to finish within 200 s: open question.) */
    if (!under_valgrind()) {
        cross[0] = pool_create(1, NULL);
        cross[1] = pool_create(1, NULL);
        for (int i = 0; i < 2; i++) {
            co.callback = destroys_the_other;
            co.callback_arg = (void *)(intptr_t)(1 - i);
            pool_async_t *c = pool_apply_async_ex(cross[i], fails_on_odd, &x, sizeof x, &y, sizeof y, NULL, &co);
            (void)c; /* freed with its pool's end: results stay the caller's, but this test exits */
        }
        WAIT_UNTIL(atomic_load(&cross_done) >= 2, 10);
        CHECK_EQ(atomic_load(&cross_done), 2);
    }
    /* An initializer that leaves a message but succeeds: no task inherits it. */
    pool_options_t o;
    pool_options_init(&o);
    o.initializer_ex = init_says_but_succeeds;
    p = pool_create(1, &o);
    REQUIRE(p != NULL);
    pool_async_t *r = pool_apply_async(p, returns_5, &x, sizeof x, NULL, 0, NULL);
    CHECK_ST(pool_async_get(r, guard_s(10)), POOL_ETASK);
    pool_task_info_t info;
    CHECK_ST(pool_async_info(r, &info, sizeof info), POOL_OK);
    CHECK(strstr(info.message, "initializer") == NULL);
    pool_async_free(r);
    pool_destroy(p);
    /* A busy queue is not a full one: zero-timeout puts by one thread while another hammers it
     * wait for the lock (up to 100 ms, for a holder that is descheduled) instead of failing at
     * once: a put that gives up must have waited that long. */
    busy_q = pool_queue_create(1 << 20);
    pthread_t t;
    pthread_create(&t, NULL, hammer, NULL);
    int spurious = 0, hasty = 0;
    for (int i = 0; i < 20000; i++) {
        char b[8];
        size_t n;
        double t0 = now_s();
        if (pool_queue_put(busy_q, "x", 1, 0) == POOL_ETIMEDOUT) {
            spurious++;
            hasty += now_s() - t0 < 0.09;
        }
        pool_queue_get(busy_q, b, sizeof b, &n, 0);
    }
    atomic_store(&stop_hammer, 1);
    pthread_join(t, NULL);
    fprintf(stderr, "  zero-timeout puts that gave up on a busy queue: %d of 20000\n", spurious);
    CHECK_EQ(hasty, 0);
    pool_queue_free(busy_q);
}

int main(void) {
    test_begin("ipc", 55);
    test_hostile_findings();
    test_callbacks();
    test_initializer_ex();
    test_process_options();
    test_wait_any();
    test_basics();
    test_waiters();
    test_processes_and_tasks();
    test_kill_storm();
    test_lock();
    test_event();
    return test_finish();
}
