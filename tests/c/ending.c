/* How pools end under attack (from hostile testing): submissions racing pool_terminate and
 * pool_destroy, iterators whose feeding stops, pool_async_free of work that writes in place into
 * pool_shm_alloc memory, the event fd when the pool ends, the zygote killed from outside (what
 * tasks left behind must die with it) or stopped, a worker stopped while it holds the queue
 * lock, a host that execs another program, an iterator driven from inside its own source, and
 * a thread a task leaves running in its worker. */
#include "check.h"

#include <dirent.h>
#include <poll.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* True once `pid` is dead, waiting up to guard_s(limit) for it. */
static int dies_within(pid_t pid, double limit) {
    WAIT_UNTIL(is_dead(pid), limit);
    return is_dead(pid);
}

/* The children of `pid` (of all its threads), at most `max`; returns how many were stored. */
static int children_of(pid_t pid, pid_t *out, int max) {
    char path[128];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    DIR *d = opendir(path);
    int n = 0;
    struct dirent *e;
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char kids[300];
        snprintf(kids, sizeof kids, "/proc/%d/task/%s/children", (int)pid, e->d_name);
        FILE *f = fopen(kids, "r");
        if (!f) continue;
        int c;
        while (n < max && fscanf(f, "%d", &c) == 1) out[n++] = c;
        fclose(f);
    }
    if (d) closedir(d);
    return n;
}

/* This process's child named pool-zygote (the newest pool's), or -1. */
static pid_t find_zygote(void) {
    pid_t kids[64];
    int n = children_of(getpid(), kids, 64);
    pid_t z = -1;
    for (int i = 0; i < n; i++) {
        char path[64], name[32] = "";
        snprintf(path, sizeof path, "/proc/%d/comm", (int)kids[i]);
        FILE *f = fopen(path, "r");
        if (!f) continue;
        if (fgets(name, sizeof name, f) && strncmp(name, "pool-zygote", 11) == 0) z = kids[i];
        fclose(f);
    }
    return z;
}

static int writes_1(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    *(long *)out = 1;
    return 0;
}

static int nop(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    return 0;
}

static int crashes(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    raise(SIGSEGV);
    return 0;
}

/* ---- 1. submissions racing pool_terminate / pool_destroy ----------------------------------- */

static pool_t *race_pool;
#define MID_IN ((size_t)1 << 20)
static size_t big_in;  /* 32 MiB (8 under valgrind) */
static char *race_in;  /* big_in bytes, or MID_IN */

struct applier {
    int status;
    atomic_int done;
};

/* One pool_apply with a big input: terminate may come while it copies the input. */
static void *big_applier(void *arg) {
    struct applier *a = arg;
    long o = 0;
    a->status = pool_apply(race_pool, writes_1, race_in, big_in, &o, sizeof o, NULL);
    atomic_store(&a->done, 1);
    return NULL;
}

/* Waits up to guard_s(10) for `done`; a submitter still blocked then is the bug, and the test
 * cannot go on with a thread stuck in the library. */
static void await_done(atomic_int *done, const char *who) {
    WAIT_UNTIL(atomic_load(done), 10);
    if (!atomic_load(done)) {
        fprintf(stderr, "  %s still blocked %.0f s after the pool ended\n", who, guard_s(10));
        REQUIRE(!"a submitter returns once the pool is terminated or destroyed");
    }
}

static void test_big_submit_vs_end(void) {
    SECTION("pool_apply copying a 32 MiB input while pool_terminate / pool_destroy runs: it returns, never lost");
    big_in = (size_t)(under_valgrind() ? 8 : 32) << 20;
    race_in = malloc(big_in);
    REQUIRE(race_in != NULL);
    memset(race_in, 1, big_in);
    const double vg_delays[] = {0.05, 0.2}, native_delays[] = {0, 0.002, 0.005, 0.01, 0.02, 0.04};
    const double *delays = under_valgrind() ? vg_delays : native_delays; /* each pool is slow to start there */
    const int ndelays = under_valgrind() ? 2 : 6;
    int ended[2] = {0, 0}; /* POOL_OK, refused or ended */
    for (int destroy = 0; destroy < 2; destroy++) {
        for (int d = 0; d < ndelays; d++) {
            race_pool = pool_create(2, NULL);
            REQUIRE(race_pool != NULL);
            struct applier a = {-1, 0};
            pthread_t t;
            REQUIRE(pthread_create(&t, NULL, big_applier, &a) == 0);
            sleep_s(delays[d]);
            if (destroy) {
                pool_destroy(race_pool);
            } else {
                CHECK_ST(pool_terminate(race_pool), POOL_OK);
            }
            await_done(&a.done, "pool_apply");
            pthread_join(t, NULL);
            /* Done before the end, refused (ECLOSED; EINVAL once the handle is destroyed), or
             * ended by it: never lost. */
            if (!(a.status == POOL_OK || a.status == POOL_ECLOSED || (destroy && a.status == POOL_EINVAL))) {
                fprintf(stderr, "  delay %.3f %s: pool_apply returned %d (%s)\n", delays[d],
                        destroy ? "destroy" : "terminate", a.status, pool_strerror(a.status));
                CHECK(!"pool_apply racing the end returns OK or POOL_ECLOSED");
            }
            ended[a.status != POOL_OK]++;
            if (!destroy) pool_destroy(race_pool);
        }
    }
    fprintf(stderr, "  %d ran, %d refused or ended\n", ended[0], ended[1]);
    free(race_in);
}

#define SUBMITTERS 4
#define MAX_HANDLES 512
#define OUTSTANDING 8

struct submitter {
    size_t in_len;
    pool_async_t *h[MAX_HANDLES];
    long out[MAX_HANDLES];
    int n;
    int refused; /* status of the submission that failed */
    int waits_timed_out;
    atomic_int done;
};
static struct submitter subs[SUBMITTERS];

/* Submits pool_apply_async until refused, keeping every handle, waiting for the oldest when
 * OUTSTANDING are pending. */
static void *async_submitter(void *arg) {
    struct submitter *s = arg;
    s->refused = POOL_OK;
    while (s->n < MAX_HANDLES) {
        s->out[s->n] = 0;
        pool_async_t *a = pool_apply_async(race_pool, writes_1, race_in, s->in_len, &s->out[s->n], sizeof(long), NULL);
        if (!a) {
            s->refused = pool_last_status();
            break;
        }
        s->h[s->n++] = a;
        if (s->n >= OUTSTANDING && pool_async_wait(s->h[s->n - OUTSTANDING], guard_s(10)) == POOL_ETIMEDOUT) s->waits_timed_out++;
    }
    atomic_store(&s->done, 1);
    return NULL;
}

/* how: 0 terminate, 1 destroy, 2 terminate then destroy at once, both while submitters run. */
static void async_round(int how, double delay, int *ended_ok, int *ended_closed) {
    race_pool = pool_create(2, NULL);
    REQUIRE(race_pool != NULL);
    pthread_t t[SUBMITTERS];
    for (int i = 0; i < SUBMITTERS; i++) {
        memset(&subs[i], 0, sizeof subs[i]);
        subs[i].in_len = i % 2 ? MID_IN : 8; /* big and small inputs */
        REQUIRE(pthread_create(&t[i], NULL, async_submitter, &subs[i]) == 0);
    }
    sleep_s(delay);
    if (how != 1) CHECK_ST(pool_terminate(race_pool), POOL_OK);
    if (how != 0) pool_destroy(race_pool);
    for (int i = 0; i < SUBMITTERS; i++) {
        await_done(&subs[i].done, "pool_apply_async");
        pthread_join(t[i], NULL);
    }
    for (int i = 0; i < SUBMITTERS; i++) {
        struct submitter *s = &subs[i];
        CHECK_EQ(s->waits_timed_out, 0);
        if (s->n < MAX_HANDLES && !(s->refused == POOL_ECLOSED || (how != 0 && s->refused == POOL_EINVAL))) {
            fprintf(stderr, "  submitter %d was refused with %d (%s)\n", i, s->refused, pool_strerror(s->refused));
            CHECK(!"submissions after the end are refused with POOL_ECLOSED");
        }
        for (int k = 0; k < s->n; k++) {
            int st = pool_async_get(s->h[k], guard_s(10));
            if (st == POOL_OK) {
                ++*ended_ok;
                if (s->out[k] != 1) CHECK_EQ(s->out[k], 1);
            } else if (st == POOL_ECLOSED) {
                ++*ended_closed;
            } else {
                fprintf(stderr, "  submitter %d handle %d: pool_async_get returned %d (%s)\n", i, k, st, pool_strerror(st));
                CHECK(!"every handle ends with POOL_OK or POOL_ECLOSED");
            }
            CHECK(pool_async_ready(s->h[k]));
            pool_async_free(s->h[k]);
        }
    }
    if (how == 0) pool_destroy(race_pool);
}

static void test_async_submit_vs_end(void) {
    race_in = calloc(1, MID_IN);
    REQUIRE(race_in != NULL);
    const char *names[3] = {
        "4 threads submitting (8-byte and 1 MiB inputs) while pool_terminate runs: each returns, every "
        "handle ends and is freed",
        "4 threads submitting while pool_destroy runs: each returns, every handle ends and is freed",
        "4 threads submitting while pool_terminate then pool_destroy run: each returns, every handle ends "
        "and is freed",
    };
    int rounds = under_valgrind() ? 1 : 8;
    for (int how = 0; how < 3; how++) {
        SECTION(names[how]);
        int before = pool_mappings(), ok = 0, closed = 0;
        for (int r = 0; r < rounds; r++) async_round(how, under_valgrind() ? 0.1 : 0.002 + 0.002 * r, &ok, &closed);
        fprintf(stderr, "  %d handles ended POOL_OK, %d POOL_ECLOSED\n", ok, closed);
        CHECK(ok + closed > 0);
        /* Every handle freed and every pool destroyed: nothing keeps the pools' memory mapped. */
        CHECK_EQ(pool_mappings(), before);
    }
    free(race_in);
}

/* ---- 2. iterators whose feeding stops -------------------------------------------------------- */

#define ITER_N 2000

static int doubles_slowly(const void *in, void *out, void *ctx) {
    (void)ctx;
    usleep(100);
    *(long *)out = *(const long *)in * 2;
    return 0;
}

/* mode 0: pool_close + pool_join after 50 results; 1: pool_terminate after 100; 2: the zygote
 * SIGKILLed after 100. Every index must come back exactly once, then POOL_EDONE. */
static void iter_feeding_stops(int mode, int ordered) {
    static const char *names[2][3] = {
        {"pool_imap_unordered, pool closed and joined mid-way: each index once, then POOL_EDONE",
         "pool_imap_unordered, pool terminated mid-way: each index once, then POOL_EDONE",
         "pool_imap_unordered, zygote SIGKILLed mid-way: each index once, then POOL_EDONE"},
        {"pool_imap, pool closed and joined mid-way: in-flight results, unfed items with their index, "
         "POOL_EDONE",
         "pool_imap, pool terminated mid-way: in-flight results, unfed items with their index, POOL_EDONE",
         "pool_imap, zygote SIGKILLed mid-way: in-flight results, unfed items with their index, POOL_EDONE"},
    };
    SECTION(names[ordered][mode]);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    pid_t z = find_zygote();
    REQUIRE(z > 0);
    static long in[ITER_N];
    unsigned char *seen = calloc(ITER_N, 1);
    REQUIRE(seen != NULL);
    for (long i = 0; i < ITER_N; i++) in[i] = i;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 10;
    pool_iter_t *it = ordered ? pool_imap(pool, doubles_slowly, in, sizeof in[0], sizeof(long), ITER_N, NULL, &mo)
                              : pool_imap_unordered(pool, doubles_slowly, in, sizeof in[0], sizeof(long), ITER_N,
                                                    NULL, &mo);
    REQUIRE(it != NULL);
    const int trigger_at = mode == 0 ? 50 : 100;
    int calls = 0, ok = 0, closed = 0, other = 0, no_index = 0, dup = 0, wrong = 0, out_of_order = 0;
    int ok_after_closed = 0, st = POOL_OK;
    size_t expect = 0;
    double t0 = now_s();
    while (calls < ITER_N + 10) {
        size_t idx = SIZE_MAX;
        long o = -1;
        st = pool_iter_next(it, &o, &idx, guard_s(10));
        calls++;
        if (st == POOL_EDONE || st == POOL_ETIMEDOUT) break;
        if (idx >= ITER_N) {
            if (no_index++ == 0) fprintf(stderr, "  status %d without an index: %s\n", st, pool_last_error());
            continue;
        }
        if (seen[idx]++) dup++;
        if (idx != expect) out_of_order++;
        expect = idx + 1;
        if (st == POOL_OK) {
            ok++;
            ok_after_closed += closed > 0;
            wrong += o != 2 * (long)idx;
        } else if (st == POOL_ECLOSED) {
            closed++;
        } else if (other++ == 0) {
            fprintf(stderr, "  item %zu: status %d (%s): %s\n", idx, st, pool_strerror(st), pool_last_error());
        }
        if (calls == trigger_at) {
            if (mode == 0) {
                CHECK_ST(pool_close(pool), POOL_OK);
                CHECK_ST(pool_join(pool), POOL_OK);
            } else if (mode == 1) {
                CHECK_ST(pool_terminate(pool), POOL_OK);
            } else {
                CHECK(kill(z, SIGKILL) == 0);
            }
        }
    }
    fprintf(stderr, "  %d calls in %.2f s: %d OK, %d POOL_ECLOSED, %d other; ended with %d (%s)\n", calls,
            now_s() - t0, ok, closed, other, st, pool_strerror(st));
    CHECK_ST(st, POOL_EDONE);
    int missing = 0;
    for (size_t i = 0; i < ITER_N; i++) missing += !seen[i];
    CHECK_EQ(missing, 0);
    CHECK_EQ(dup, 0);
    CHECK_EQ(no_index, 0);
    CHECK_EQ(other, 0);
    CHECK_EQ(wrong, 0);
    CHECK_EQ(ok + closed, ITER_N);
    CHECK(ok >= trigger_at); /* at least what was read before the end */
    CHECK(closed > 0);       /* 2000 items of 100 us cannot all be done by then */
    if (ordered) CHECK_EQ(out_of_order, 0);
    if (mode == 0) CHECK_EQ(ok_after_closed, 0); /* what was submitted all ran: OK first, then the rest */
    /* EDONE stays. */
    long o = 0;
    CHECK_ST(pool_iter_next(it, &o, NULL, 0), POOL_EDONE);
    pool_iter_free(it);
    pool_destroy(pool);
    free(seen);
}

/* ---- 3. pool_async_free of work writing in place into pool_shm_alloc memory ----------------------- */

/* Keeps (re)writing its 64-byte result for 200 ms, as a long computation would. */
static int rewrites_result(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    for (int i = 0; i < 200; i++) {
        memset(out, 0xab, 64);
        usleep(1000);
    }
    return 0;
}

/* The pid of the writer `forks_a_writer` forked (in shared memory: the task runs in a worker). */
static _Atomic pid_t *writer;

/* Forks a child that rewrites the result (as a task handing work to a helper process would),
 * then waits for it. The child gives up after ~20 s so that a failing run leaves nothing. */
static int forks_a_writer(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    pid_t child = fork();
    if (child == 0) {
        atomic_store(writer, getpid()); /* before its first write: once the result shows, it is known */
        for (int i = 0; i < 20000; i++) {
            memset(out, 0xab, 64);
            usleep(1000);
        }
        _exit(0);
    }
    if (child < 0) return 1;
    waitpid(child, NULL, 0);
    return 0;
}

/* Waits on a result from another thread, noting its thread id first. */
struct waiter {
    pool_async_t *a;
    _Atomic pid_t tid;
    int status;
};

static void *waits_on_result(void *arg) {
    struct waiter *w = arg;
    atomic_store(&w->tid, (pid_t)syscall(SYS_gettid));
    w->status = pool_async_get(w->a, guard_s(30));
    return NULL;
}

/* mode 0/1: pool_apply_async / pool_map_async; +2: another thread waits on the result when it
 * is freed (it holds the handle on: the work must stop all the same); 4: an apply whose task
 * forked the process that writes the result (it dies with the task's worker). */
static void test_in_place_free(int mode) {
    int map = mode & 1, waited = mode & 2, forked = mode & 4;
    char title[200];
    snprintf(title, sizeof title,
             "pool_async_free of a %s writing in place into pool_shm_alloc memory%s: nothing writes there "
             "afterwards",
             map ? "pool_map_async" : "pool_apply_async",
             waited ? ", another thread waiting on it" : forked ? ", by a process its task forked" : "");
    SECTION(title);
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    volatile unsigned char *out = pool_shm_alloc(pool, 4 * 64);
    REQUIRE(out != NULL);
    memset((void *)out, 0, 4 * 64);
    long in[4] = {1, 2, 3, 4};
    if (forked) atomic_store(writer, 0);
    pool_fn task = forked ? forks_a_writer : rewrites_result;
    pool_async_t *a = !map ? pool_apply_async(pool, task, in, sizeof in[0], (void *)out, 64, NULL)
                           : pool_map_async(pool, task, in, sizeof in[0], (void *)out, 64, 4, NULL);
    REQUIRE(a != NULL);
    struct waiter w = {.a = a};
    pthread_t th;
    if (waited) {
        REQUIRE(pthread_create(&th, NULL, waits_on_result, &w) == 0);
        /* Asleep in its wait, the only call it makes (/proc/<tid> works for threads too). */
        WAIT_UNTIL(atomic_load(&w.tid) != 0 && proc_state(atomic_load(&w.tid)) == 'S', 10);
    }
    /* Wait until a task writes there. */
    WAIT_UNTIL(out[0] == 0xab, 10);
    CHECK(out[0] == 0xab);
    pool_async_free(a);
    memset((void *)out, 0, 4 * 64); /* the caller reuses its buffer at once */
    sleep_s(0.4);                   /* twice as long as the tasks write */
    int dirty = 0;
    for (int i = 0; i < 4 * 64; i++) dirty += out[i] != 0;
    CHECK_EQ(dirty, 0);
    if (forked) CHECK(atomic_load(writer) > 0 && dies_within(atomic_load(writer), 10));
    if (waited) {
        REQUIRE(pthread_join(th, NULL) == 0);
        /* The waiter sees the work cancelled (or, had it ended first, its own outcome). */
        if (w.status != POOL_ECANCELLED && w.status != POOL_OK) {
            fprintf(stderr, "  the waiting thread got %d: %s\n", w.status, pool_last_error());
            CHECK(!"the waiting thread gets POOL_ECANCELLED");
        }
    }
    long x = 9, y = 0;
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK); /* the pool goes on */
    CHECK_EQ(y, 81);
    CHECK_ST(pool_shm_free(pool, (void *)out), POOL_OK);
    pool_destroy(pool);
}

/* A task past its deadline that forked a process: the process dies with the task's worker. */
static void test_timed_out_task_forked(void) {
    SECTION("a task past its deadline that forked a process writing its result: the process dies with the worker");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    unsigned char *out = pool_shm_alloc(pool, 64);
    REQUIRE(out != NULL);
    atomic_store(writer, 0);
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.task_timeout = timeout_s(1); /* time to fork its writer, even on a busy machine; it then waits for it (~20 s) */
    long x = 1;
    CHECK_ST(pool_apply_ex(pool, forks_a_writer, &x, sizeof x, out, 64, NULL, &co), POOL_ETIMEDOUT);
    CHECK(atomic_load(writer) > 0 && dies_within(atomic_load(writer), 10));
    CHECK_ST(pool_shm_free(pool, out), POOL_OK);
    pool_destroy(pool);
}

/* ---- 4. the event fd when the pool ends ------------------------------------------------------ */

static pool_t *efd_pool;

static void *terminates_soon(void *arg) {
    (void)arg;
    sleep_s(0.2);
    int st = pool_terminate(efd_pool);
    CHECK_ST(st, POOL_OK);
    return NULL;
}

static void test_event_fd_at_end(int mode) {
    SECTION(mode == 0 ? "pool_event_fd becomes readable when the zygote is SIGKILLed from outside"
                      : "pool_event_fd becomes readable when another thread calls pool_terminate");
    efd_pool = pool_create(2, NULL);
    REQUIRE(efd_pool != NULL);
    int efd = pool_event_fd(efd_pool);
    REQUIRE(efd >= 0);
    pid_t z = find_zygote();
    REQUIRE(z > 0);
    double long_sleep = 3600; /* ended with the pool */
    long y = 0;
    pool_async_t *a = pool_apply_async(efd_pool, sleeps, &long_sleep, sizeof long_sleep, &y, sizeof y, NULL);
    REQUIRE(a != NULL);
    sleep_s(0.2);
    struct pollfd p = {efd, POLLIN, 0};
    uint64_t v = 0;
    while (poll(&p, 1, 0) == 1 && read(efd, &v, sizeof v) == (ssize_t)sizeof v) {
    }
    CHECK_EQ(poll(&p, 1, 0), 0); /* nothing ended yet */
    pthread_t t;
    if (mode == 0) {
        CHECK(kill(z, SIGKILL) == 0);
    } else {
        REQUIRE(pthread_create(&t, NULL, terminates_soon, NULL) == 0);
    }
    double t0 = now_s();
    p.revents = 0;
    CHECK_EQ(poll(&p, 1, (int)(guard_s(10) * 1000)), 1); /* an event loop waiting on it wakes up */
    CHECK(p.revents & POLLIN);
    CHECK_TOOK(t0, 10, "the event fd readable after the end");
    v = 0;
    CHECK(read(efd, &v, sizeof v) == (ssize_t)sizeof v);
    CHECK(v >= 1);
    /* ... and finds its handle ended. */
    WAIT_UNTIL(pool_async_ready(a), 10);
    CHECK(pool_async_ready(a));
    CHECK_ST(pool_async_get(a, 0), POOL_ECLOSED);
    if (mode == 0) CHECK_ERR_HAS("zygote");
    if (mode == 1) pthread_join(t, NULL);
    pool_async_free(a);
    pool_destroy(efd_pool);
}

/* ---- 5. what tasks left behind dies with a zygote killed from outside ------------------------ */

/* Leaves a child that starts a session of its own (out of the worker's process group). */
static int leaves_a_session_leader(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    pid_t c = fork();
    if (c == 0) {
        setsid();
        for (;;) pause();
    }
    *(int *)out = (int)c;
    return 0;
}

/* Undoes the worker's parent-death signal, writes its pid into its result (in pool_shm_alloc
 * memory, so the host sees it at once) and keeps running (an hour at most). */
static int undoes_pdeathsig(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    prctl(PR_SET_PDEATHSIG, 0);
    *(volatile int *)out = getpid();
    sleep_s(3600);
    return 0;
}

static int sleeps_forever(void *arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}

static void test_zygote_killed_leftovers(void) {
    SECTION("zygote SIGKILLed: a worker whose task undid PR_SET_PDEATHSIG and a task's setsid() child die too; "
            "the host and its own children live on, even with their mapping split by mprotect");
    if (under_valgrind()) {
        /* The host finds them by their second mapping of the pool's memory, which workers do
         * not have under valgrind. */
        fprintf(stderr, "ending: under valgrind workers map the pool's memory once: skipped\n");
        return;
    }
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    pid_t z = find_zygote();
    REQUIRE(z > 0);
    /* A child of the host's own, started after the pool: it maps the pool's memory once and
     * must be left alone. */
    pool_process_t *mine = pool_process_create(sleeps_forever, NULL);
    REQUIRE(mine != NULL);
    CHECK_ST(pool_process_start(mine), POOL_OK);
    /* The host, and a child it forks, split their mapping of the pool's memory (mprotect of a
     * page of their own buffer): they map it more than once now, and must still be spared. */
    char *buf = pool_shm_alloc(pool, 4 * 4096);
    REQUIRE(buf != NULL);
    char *page = (char *)(((uintptr_t)buf + 4096) & ~(uintptr_t)4095);
    CHECK(mprotect(page, 4096, PROT_READ) == 0);
    pid_t splitter = fork();
    REQUIRE(splitter >= 0);
    if (splitter == 0) {
        mprotect(page + 4096, 4096, PROT_NONE);
        for (;;) pause();
    }
    int child = 0;
    long x = 0;
    CHECK_ST(pool_apply(pool, leaves_a_session_leader, &x, sizeof x, &child, sizeof child, NULL), POOL_OK);
    REQUIRE(child > 0);
    CHECK(!is_dead(child));
    volatile int *wpid = pool_shm_alloc(pool, sizeof(int));
    REQUIRE(wpid != NULL);
    *wpid = 0;
    pool_async_t *a = pool_apply_async(pool, undoes_pdeathsig, &x, sizeof x, (void *)wpid, sizeof(int), NULL);
    REQUIRE(a != NULL);
    WAIT_UNTIL(*wpid != 0, 10);
    pid_t worker = *wpid;
    REQUIRE(worker > 0); /* written after the prctl */

    CHECK(kill(z, SIGKILL) == 0);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_ECLOSED);
    CHECK_ERR_HAS("zygote");
    CHECK(dies_within(worker, 10));
    pool_async_free(a);
    pool_destroy(pool);
    CHECK(dies_within(child, 10));
    CHECK(pool_process_is_alive(mine)); /* never the host's own children */
    CHECK(!is_dead(pool_process_pid(mine)));
    CHECK(!is_dead(splitter));
    kill(splitter, SIGKILL);
    waitpid(splitter, NULL, 0);
    /* Leave nothing behind if the checks failed. */
    if (!is_dead(worker)) kill(worker, SIGKILL);
    if (!is_dead(child)) kill(child, SIGKILL);
    CHECK_ST(pool_process_kill(mine), POOL_OK);
    CHECK_ST(pool_process_join(mine, guard_s(10)), POOL_OK);
    pool_process_free(mine);
}

/* ---- 6. a worker stopped while it holds the queue lock --------------------------------------- */

/* The shared memory layout this section peeks at (src/core/shm.rs, queue.rs): the queue lock
 * word at offset 0 of the mapping, holding 1 + the owner's worker index; worker slots of 128
 * bytes from offset 4096, each starting with the worker's pid. */
#define LOCK_WAITERS_BIT 0x80000000u
#define WORKER_SLOTS_OFF 4096
#define WORKER_SLOT_SIZE 128

static atomic_int stop_submitting;
static atomic_long submitted_ok, submitted_failed;

static void *nop_submitter(void *arg) {
    pool_t *pool = arg;
    int v = 0;
    while (!atomic_load(&stop_submitting)) {
        int st = pool_apply(pool, nop, &v, sizeof v, NULL, 0, NULL);
        if (st == POOL_OK) {
            atomic_fetch_add(&submitted_ok, 1);
        } else if (atomic_fetch_add(&submitted_failed, 1) == 0) {
            fprintf(stderr, "  a submission failed: %d (%s): %s\n", st, pool_strerror(st), pool_last_error());
        }
    }
    return NULL;
}

/* One pool_apply of `square` on the stopped-lock pool, 7 -> 49. */
static pool_t *lock_pool;
static void *square_applier(void *arg) {
    struct applier *a = arg;
    long x = 7, y = 0;
    a->status = pool_apply(lock_pool, square, &x, sizeof x, &y, sizeof y, NULL);
    if (a->status == POOL_OK && y != 49) a->status = -2;
    atomic_store(&a->done, 1);
    return NULL;
}

static pid_t slot_pid(const char *base, int i) {
    return atomic_load((const _Atomic int *)(const void *)(base + WORKER_SLOTS_OFF + WORKER_SLOT_SIZE * i));
}

/* The start of the mapping (at file offset 0) of the pool whose worker slots hold `workers`. */
static const char *find_pool_header(const pid_t *workers, int n) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    const char *found = NULL;
    while (f && !found && fgets(line, sizeof line, f)) {
        unsigned long lo, hi, off;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s %lx", &lo, &hi, perms, &off) != 4 || !strstr(line, "memfd:libpool") ||
            off != 0 || hi - lo < WORKER_SLOTS_OFF + WORKER_SLOT_SIZE * (unsigned long)n)
            continue;
        int match = 0;
        for (int i = 0; i < n; i++)
            for (int k = 0; k < n; k++) match += slot_pid((const char *)lo, i) == workers[k];
        if (match == n) found = (const char *)lo;
    }
    if (f) fclose(f);
    return found;
}

static void test_stopped_lock_holder(void) {
    SECTION("a worker SIGSTOPped while it holds the queue lock is killed by the zygote: submissions go on");
    pool_t *pool = lock_pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    pid_t z = find_zygote(), w[2] = {0, 0};
    REQUIRE(z > 0);
    /* A worker shows in /proc a moment before the zygote records its pid in its slot. */
    const char *base = NULL;
    for (double t0 = now_s(); base == NULL && now_s() - t0 < guard_s(10); sleep_s(0.01))
        if (children_of(z, w, 2) == 2) base = find_pool_header(w, 2);
    if (base == NULL) {
        CHECK(!"the pool's header and worker slots are where this test expects (update it to the layout)");
        pool_destroy(pool);
        return;
    }
    const _Atomic unsigned *lock = (const _Atomic unsigned *)(const void *)base;
    atomic_store(&stop_submitting, 0);
    atomic_store(&submitted_ok, 0);
    atomic_store(&submitted_failed, 0);
    pthread_t t[2];
    for (int i = 0; i < 2; i++) REQUIRE(pthread_create(&t[i], NULL, nop_submitter, pool) == 0);

    /* Stop a worker at random moments until it is caught holding the lock. */
    int caught = -1, tries = 0;
    pid_t v = 0;
    double t0 = now_s();
    while (caught < 0 && now_s() - t0 < guard_s(20)) {
        int i = tries++ % 2;
        v = slot_pid(base, i);
        if (v <= 0 || kill(v, SIGSTOP) != 0) continue;
        for (double s0 = now_s(); proc_state(v) != 'T' && now_s() - s0 < guard_s(1);) sleep_s(0.0001);
        /* Stopped, it cannot let go of the lock: the word says whether it holds it. */
        if (proc_state(v) == 'T' && (atomic_load(lock) & ~LOCK_WAITERS_BIT) == (unsigned)(1 + i)) {
            caught = i;
        } else {
            kill(v, SIGCONT);
            sleep_s(0.002 + 0.001 * (tries % 7)); /* at another moment next time */
        }
    }
    fprintf(stderr, "  %s after %d tries in %.1f s\n", caught >= 0 ? "caught" : "NOT caught", tries, now_s() - t0);
    CHECK(caught >= 0);
    if (caught >= 0) {
        /* No SIGCONT: the zygote must end it. A submission from here waits about a second. */
        t0 = now_s();
        struct applier a = {-1, 0};
        pthread_t ta;
        REQUIRE(pthread_create(&ta, NULL, square_applier, &a) == 0);
        WAIT_UNTIL(atomic_load(&a.done), 10);
        CHECK_TOOK(t0, 10, "a submission while a stopped worker held the lock");
        CHECK(atomic_load(&a.done));
        if (!atomic_load(&a.done)) kill(v, SIGCONT); /* let it return */
        pthread_join(ta, NULL);
        CHECK_ST(a.status, POOL_OK);
        CHECK(dies_within(v, 10));
        long before = atomic_load(&submitted_ok);
        WAIT_UNTIL(atomic_load(&submitted_ok) >= before + 20, 10);
        CHECK(atomic_load(&submitted_ok) >= before + 20); /* the other submitters go on too */
    }
    atomic_store(&stop_submitting, 1);
    if (caught < 0) kill(v, SIGCONT);
    for (int i = 0; i < 2; i++) pthread_join(t[i], NULL);
    CHECK_EQ(atomic_load(&submitted_failed), 0); /* no task lost to the repaired pop */
    pool_destroy(pool);
}

/* ---- 7. a stopped zygote ---------------------------------------------------------------------- */

static void test_stopped_zygote(void) {
    SECTION("pool_destroy with a SIGSTOPped zygote returns at once; outstanding handles end POOL_ECLOSED");
    pool_t *pool = pool_create(2, NULL);
    REQUIRE(pool != NULL);
    pid_t z = find_zygote(), w[2] = {0, 0};
    REQUIRE(z > 0);
    REQUIRE(children_of(z, w, 2) == 2);
    double long_sleep = 3600; /* ended with the pool */
    long x = 0, y = 0;
    pool_async_t *sleeping = pool_apply_async(pool, sleeps, &long_sleep, sizeof long_sleep, &y, sizeof y, NULL);
    REQUIRE(sleeping != NULL);
    CHECK(kill(z, SIGSTOP) == 0);
    WAIT_UNTIL(proc_state(z) == 'T', 10);
    CHECK(proc_state(z) == 'T');
    x = 6;
    CHECK_ST(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK); /* the pool runs on */
    CHECK_EQ(y, 36);
    pool_async_t *crashing = pool_apply_async(pool, crashes, &x, sizeof x, NULL, 0, NULL);
    REQUIRE(crashing != NULL);
    sleep_s(0.3); /* its worker dies with nobody to repair it */
    double t0 = now_s();
    pool_destroy(pool);
    /* At once: not after the 10 s a zygote is given to end. */
    check_took_(__FILE__, __LINE__, "pool_destroy with a stopped zygote", now_s() - t0, 5);
    CHECK_ST(pool_async_get(sleeping, guard_s(5)), POOL_ECLOSED);
    int st = pool_async_get(crashing, guard_s(5));
    if (st != POOL_ECLOSED && st != POOL_ECRASHED) CHECK_ST(st, POOL_ECLOSED);
    pool_async_free(sleeping);
    pool_async_free(crashing);
    CHECK(dies_within(z, 10));
    for (int i = 0; i < 2; i++) CHECK(dies_within(w[i], 10));
}

/* ---- 8. a host that execs another program ----------------------------------------------------- */

struct exec_host {
    atomic_int ready;
    int zygote;
    int workers[2];
};

static void test_host_execs(void) {
    SECTION("a host that execs another program ends its pool: zygote and workers die");
    struct exec_host *eh = shared_alloc(sizeof *eh);
    fflush(NULL);
    pid_t host = fork();
    REQUIRE(host >= 0);
    if (host == 0) {
        pool_t *pool = pool_create(2, NULL);
        if (pool == NULL) _exit(2);
        eh->zygote = find_zygote();
        pid_t w[2] = {0, 0};
        children_of(eh->zygote, w, 2);
        eh->workers[0] = w[0];
        eh->workers[1] = w[1];
        atomic_store(&eh->ready, 1);
        execl("/bin/sleep", "sleep", "3600", (char *)NULL); /* no pool_destroy; killed below */
        _exit(3);
    }
    WAIT_UNTIL(atomic_load(&eh->ready), 20);
    REQUIRE(atomic_load(&eh->ready));
    CHECK(eh->zygote > 0 && eh->workers[0] > 0 && eh->workers[1] > 0);
    double t0 = now_s();
    if (eh->zygote > 0) CHECK(dies_within(eh->zygote, 10));
    for (int i = 0; i < 2; i++)
        if (eh->workers[i] > 0) CHECK(dies_within(eh->workers[i], 10));
    fprintf(stderr, "  the pool ended %.2f s after the exec\n", now_s() - t0);
    CHECK(!is_dead(host)); /* the new program still runs: the exec, not an exit, ended the pool */
    kill(host, SIGKILL);
    int ws = 0;
    CHECK(waitpid(host, &ws, 0) == host);
    CHECK(WIFSIGNALED(ws) && WTERMSIG(ws) == SIGKILL); /* it was the exec'd sleep, not our _exit */
    for (int i = 0; i < 2; i++)
        if (eh->workers[i] > 0 && !is_dead(eh->workers[i])) kill(eh->workers[i], SIGKILL);
    if (eh->zygote > 0 && !is_dead(eh->zygote)) kill(eh->zygote, SIGKILL);
    munmap(eh, sizeof *eh);
}

/* ---- 9. an iterator driven from inside its own source ---------------------------------------- */

static pool_t *src_pool;
static pool_iter_t *src_it;
static int src_mode, nested_status = -1;
static double nested_took = -1;
static char nested_msg[256];

static int reentrant_source(void *item, size_t index, void *ctx) {
    (void)ctx;
    if (index >= 100) return 1;
    if (index == 5 && src_mode == 0) {
        long o;
        size_t i;
        double t0 = now_s();
        nested_status = pool_iter_next(src_it, &o, &i, 3600); /* a call that waited would hang */
        nested_took = now_s() - t0;
        snprintf(nested_msg, sizeof nested_msg, "%s", pool_last_error());
    }
    if (index == 5 && src_mode == 2 && src_pool) {
        pool_destroy(src_pool);
        src_pool = NULL;
    }
    *(long *)item = (long)index;
    return 0;
}

static void test_source_reentrancy(int mode) {
    SECTION(mode == 0 ? "pool_iter_next from inside the same iterator's source: POOL_EINVAL, no deadlock"
                      : "pool_destroy from inside an iterator's source: the iterator ends (POOL_EDONE), no hang");
    src_mode = mode;
    nested_status = -1;
    nested_took = -1;
    nested_msg[0] = '\0';
    src_pool = pool_create(2, NULL);
    REQUIRE(src_pool != NULL);
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 4;
    src_it = pool_imap_source(src_pool, square, reentrant_source, NULL, sizeof(long), sizeof(long), NULL, true, &mo);
    REQUIRE(src_it != NULL);
    int ok = 0, failed = 0, wrong = 0, st;
    long o;
    size_t i;
    double t0 = now_s();
    while ((st = pool_iter_next(src_it, &o, &i, guard_s(10))) != POOL_EDONE && st != POOL_ETIMEDOUT && ok + failed < 200) {
        if (st == POOL_OK) {
            wrong += i != (size_t)ok || o != (long)(i * i);
            ok++;
        } else {
            failed++;
        }
    }
    double took = now_s() - t0;
    fprintf(stderr, "  %d OK, %d failed, ended with %d (%s) after %.2f s\n", ok, failed, st, pool_strerror(st), took);
    CHECK_ST(st, POOL_EDONE);
    check_took_(__FILE__, __LINE__, "the iteration", took, 10);
    if (mode == 0) {
        CHECK_EQ(nested_status, POOL_EINVAL);
        if (strstr(nested_msg, "source") == NULL) {
            fprintf(stderr, "  the nested call said: \"%s\"\n", nested_msg);
            CHECK(!"the refusal names the source");
        }
        CHECK(nested_took >= 0); /* refused at once, not after its timeout */
        check_took_(__FILE__, __LINE__, "the nested pool_iter_next", nested_took, 2);
        CHECK_EQ(ok, 100);                           /* the iteration itself goes on untouched */
        CHECK_EQ(failed, 0);
        CHECK_EQ(wrong, 0);
    } else {
        CHECK(src_pool == NULL); /* the destroy ran */
        CHECK(failed >= 1);      /* the items it stopped end with a status, then EDONE */
        CHECK(ok + failed <= 100);
    }
    pool_iter_free(src_it);
    pool_destroy(src_pool);
    src_pool = NULL;
}

/* ---- 10. a thread a task leaves behind ------------------------------------------------------- */

struct leftover {
    atomic_int go;   /* the round the thread may run */
    atomic_int done; /* the last round it ran */
    int out_write_status[3], task_error_status[3];
    char out_write_msg[3][200], task_error_msg[3][200];
};
static struct leftover *lo;

/* Started by a task and left running: in each round (while a later task runs in the same
 * worker) tries to write that task's result and message. */
static void *leftover_thread(void *arg) {
    (void)arg;
    for (int r = 1; r <= 2; r++) {
        WAIT_UNTIL(atomic_load(&lo->go) >= r, 30);
        lo->out_write_status[r] = pool_out_write("EVIL", 4);
        snprintf(lo->out_write_msg[r], sizeof lo->out_write_msg[r], "%s", pool_last_error());
        lo->task_error_status[r] = pool_task_error("written by a thread a task left behind");
        snprintf(lo->task_error_msg[r], sizeof lo->task_error_msg[r], "%s", pool_last_error());
        atomic_store(&lo->done, r);
    }
    return NULL;
}

static int starts_a_thread(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    pthread_t t;
    if (pthread_create(&t, NULL, leftover_thread, NULL) != 0) return 1;
    pthread_detach(t);
    return pool_out_write("A", 1);
}

/* Lets the left-behind thread run round 1 while this task runs, then writes its own result. */
static int lets_it_write(const void *in, size_t len, void *ctx) {
    (void)in; (void)len; (void)ctx;
    atomic_store(&lo->go, 1);
    WAIT_UNTIL(atomic_load(&lo->done) >= 1, 10);
    return pool_out_write("B", 1);
}

/* Lets it run round 2, then fails with code 3 and no message of its own. */
static int lets_it_fail(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    atomic_store(&lo->go, 2);
    WAIT_UNTIL(atomic_load(&lo->done) >= 2, 10);
    return 3;
}

static void check_refused(int r) {
    CHECK_EQ(lo->out_write_status[r], POOL_EINVAL);
    CHECK_EQ(lo->task_error_status[r], POOL_EINVAL);
    if (!strstr(lo->out_write_msg[r], "outside a task") || !strstr(lo->task_error_msg[r], "outside a task")) {
        fprintf(stderr, "  round %d: pool_out_write said \"%s\", pool_task_error said \"%s\"\n", r,
                lo->out_write_msg[r], lo->task_error_msg[r]);
        CHECK(!"the refusals say the call came from outside a task");
    }
}

static void test_leftover_thread(void) {
    SECTION("a thread a task left running cannot write later tasks' results or messages");
    pool_t *pool = pool_create(1, NULL); /* one worker: the later tasks run beside the thread */
    REQUIRE(pool != NULL);
    pool_task_info_t info[3];
    const void *data;
    size_t len;

    pool_async_t *a = pool_submit(pool, starts_a_thread, "x", 1, 16, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_OK);
    CHECK(pool_async_result(a, &data, &len) == POOL_OK && len == 1 && memcmp(data, "A", 1) == 0);
    CHECK_ST(pool_async_info(a, &info[0], sizeof info[0]), POOL_OK);
    pool_async_free(a);

    a = pool_submit(pool, lets_it_write, "x", 1, 16, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_OK);
    CHECK(pool_async_result(a, &data, &len) == POOL_OK);
    if (!(len == 1 && memcmp(data, "B", 1) == 0)) {
        fprintf(stderr, "  the result is %zu bytes: \"%.*s\"\n", len, (int)len, (const char *)data);
        CHECK(!"the result holds only what the task wrote");
    }
    CHECK_ST(pool_async_info(a, &info[1], sizeof info[1]), POOL_OK);
    CHECK_EQ(info[1].message[0], '\0');
    pool_async_free(a);
    CHECK_EQ(atomic_load(&lo->done), 1);
    check_refused(1);

    long x = 0;
    a = pool_apply_async(pool, lets_it_fail, &x, sizeof x, NULL, 0, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_ETASK);
    CHECK(strstr(pool_last_error(), "left behind") == NULL);
    CHECK_ST(pool_async_info(a, &info[2], sizeof info[2]), POOL_OK);
    CHECK_EQ(info[2].task_code, 3);
    CHECK_EQ(info[2].message[0], '\0'); /* not the thread's message */
    pool_async_free(a);
    CHECK_EQ(atomic_load(&lo->done), 2);
    check_refused(2);
    /* The same worker ran all three, beside the thread. */
    CHECK(info[0].pid > 0 && info[1].pid == info[0].pid && info[2].pid == info[0].pid);

    a = pool_submit(pool, echo_task, "hello", 5, 16, NULL);
    REQUIRE(a != NULL);
    CHECK_ST(pool_async_get(a, guard_s(10)), POOL_OK);
    CHECK(pool_async_result(a, &data, &len) == POOL_OK && len == 5 && memcmp(data, "hello", 5) == 0);
    pool_async_free(a);
    pool_destroy(pool);
}

int main(void) {
    test_begin("ending", 50);
    lo = shared_alloc(sizeof *lo);
    double t0 = now_s();
    test_big_submit_vs_end();
    test_async_submit_vs_end();
    for (int ordered = 1; ordered >= 0; ordered--)
        for (int mode = 0; mode < 3; mode++) iter_feeding_stops(mode, ordered);
    writer = shared_alloc(sizeof *writer);
    for (int mode = 0; mode < 5; mode++) test_in_place_free(mode);
    test_timed_out_task_forked();
    test_event_fd_at_end(0);
    test_event_fd_at_end(1);
    test_zygote_killed_leftovers();
    test_stopped_lock_holder();
    test_stopped_zygote();
    test_host_execs();
    test_source_reentrancy(0);
    test_source_reentrancy(2);
    test_leftover_thread();
    fprintf(stderr, "ending: %.1f s\n", now_s() - t0);
    return test_finish();
}
