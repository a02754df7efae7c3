/* A host that forks. In the child, every call on the handles it inherited answers POOL_EINVAL
 * ("a pool can only be used by the process that created it") and leaves the parent's pool and
 * processes alone: no write to the pool's shared memory, no signal to its processes. And forks
 * made while other threads are inside the library never leave a child stuck on one of the
 * library's locks. */
#include "check.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

#define FOREIGN "can only be used by the process that created it"
#define NOT_LIVE "not a live handle"
#define FORKS 300

/* A status check, then (if it held) a check of the message. */
#define CHECK_ST_MSG(expr, want, needle)                  \
    do {                                                  \
        if (CHECK_ST(expr, want)) CHECK_ERR_HAS(needle);  \
    } while (0)

/* Shared with the workers and children (mapped before the pools are created). */
static int waits_then_7(void *arg) {
    (void)arg;
    wait_release();
    return 7;
}

static int echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    return pool_out_write(in, len);
}

/* Waits up to guard_s(secs) for child `pid`: its wait status, or -1 if it hung (it is then
 * killed). The clock is read before each look, so the last look comes after the deadline:
 * under load this loop itself can wake seconds late, and a child that ended meanwhile did not
 * hang. */
static int wait_child(pid_t pid, double secs) {
    int status;
    for (double t0 = now_s();; sleep_s(0.0005)) {
        int past = now_s() - t0 >= guard_s(secs);
        if (waitpid(pid, &status, WNOHANG) == pid) return status;
        if (past) break;
    }
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
    return -1;
}

/* AddressSanitizer before LLVM 18 (GCC 12's among them) takes none of its allocator's locks
 * around fork(): a child forked while another thread is inside ASan's allocator hangs on its
 * first malloc. CI saw it: the pool's event-fd watcher thread, just started, was refilling its
 * allocator cache inside ASan's thread start-up when the host forked. glibc's malloc has no such
 * hole, so only the sanitized build waits, before each fork, until every other thread sleeps in
 * a system call (at most 2 s). */
#if UNDER_ASAN
/* Every thread but this one is asleep ('S'; /proc/<tid> names a thread too). */
static int others_asleep(void) {
    long self = (long)syscall(SYS_gettid);
    DIR *d = opendir("/proc/self/task");
    if (!d) return 1;
    int asleep = 1;
    for (struct dirent *e; asleep && (e = readdir(d));) {
        long tid = atol(e->d_name);
        if (tid <= 0 || tid == self) continue;
        char st = proc_state((pid_t)tid);
        asleep = st == 0 || st == 'S'; /* 0: it has just exited */
    }
    closedir(d);
    return asleep;
}
#endif

static pid_t fork_settled(void) {
#if UNDER_ASAN
    int calm = 0; /* asleep at consecutive looks, 1 ms apart */
    for (double t0 = now_s(); calm < 2 && now_s() - t0 < 2;) {
        sleep_s(0.001);
        calm = others_asleep() ? calm + 1 : 0; /* the fork follows the last look at once */
    }
#endif
    return fork();
}

#define ITEMS 100

/* What the parent has when it forks. */
static struct {
    pool_t *pool;
    pool_async_t *running, *running_map, *queued, *done, *map_done, *var;
    long running_in, running_out, map_in, map_out, queued_in, queued_out, done_in, done_out;
    long items[ITEMS], map_outs[ITEMS];
    pool_iter_t *it;
    size_t read; /* iterator results read before the fork */
    unsigned char *shm;
    pool_process_t *proc, *unstarted;
} h;

static void setup(void) {
    SECTION("the parent: a pool with finished, running and queued work, an iterator, a process");
    h.pool = pool_create(2, NULL);
    REQUIRE(h.pool != NULL);
    h.done_in = 3;
    h.done = pool_apply_async(h.pool, square, &h.done_in, sizeof(long), &h.done_out, sizeof(long), NULL);
    REQUIRE(h.done != NULL);
    CHECK_ST(pool_async_get(h.done, -1), POOL_OK);
    h.var = pool_submit(h.pool, echo, "abc", 3, 16, NULL);
    REQUIRE(h.var != NULL);
    CHECK_ST(pool_async_get(h.var, -1), POOL_OK);
    for (int i = 0; i < ITEMS; i++) h.items[i] = i;
    h.map_done = pool_map_async(h.pool, square, h.items, sizeof(long), h.map_outs, sizeof(long), ITEMS, NULL);
    REQUIRE(h.map_done != NULL);
    CHECK_ST(pool_async_get(h.map_done, -1), POOL_OK);
    h.it = pool_imap(h.pool, square, h.items, sizeof(long), sizeof(long), ITEMS, NULL, NULL);
    REQUIRE(h.it != NULL);
    for (; h.read < 10; h.read++) {
        long out = -1;
        size_t idx = 999;
        CHECK_ST(pool_iter_next(h.it, &out, &idx, -1), POOL_OK);
        CHECK_EQ(idx, h.read);
        CHECK_EQ(out, (long)(h.read * h.read));
    }
    /* Both workers busy until released, and one task queued behind them. */
    h.running_in = 5;
    h.running = pool_apply_async(h.pool, blocks, &h.running_in, sizeof(long), &h.running_out, sizeof(long), NULL);
    h.map_in = 6;
    h.running_map = pool_map_async(h.pool, blocks, &h.map_in, sizeof(long), &h.map_out, sizeof(long), 1, NULL);
    REQUIRE(h.running != NULL && h.running_map != NULL);
    while (atomic_load(&gate->started) < 2) sleep_s(0.001);
    h.queued_in = 4;
    h.queued = pool_apply_async(h.pool, square, &h.queued_in, sizeof(long), &h.queued_out, sizeof(long), NULL);
    REQUIRE(h.queued != NULL);
    h.shm = pool_shm_alloc(h.pool, 64);
    REQUIRE(h.shm != NULL);
    memset(h.shm, 0x5a, 64);
    CHECK(pool_event_fd(h.pool) >= 0);
    h.proc = pool_process_create(waits_then_7, NULL);
    h.unstarted = pool_process_create(returns_0, NULL);
    REQUIRE(h.proc != NULL && h.unstarted != NULL);
    CHECK_ST(pool_process_start(h.proc), POOL_OK);
}

/* In the child: every call on what it inherited is refused; releasing it touches nothing. */
static void child_calls_everything(void) {
    check_name_ = "fork (child)";
    check_pid_ = getpid();
    watchdog_arm(30); /* alarms are not inherited */
    SECTION("child: the inherited async results");
    pool_async_t *all[] = {h.running, h.running_map, h.queued, h.done, h.map_done, h.var};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        pool_async_t *a = all[i];
        const void *data;
        size_t len, done, total;
        pool_task_info_t info;
        CHECK_ST_MSG(pool_async_get(a, 0), POOL_EINVAL, FOREIGN);
        CHECK_ST(pool_async_get(a, -1), POOL_EINVAL);
        CHECK_ST(pool_async_wait(a, -1), POOL_EINVAL);
        CHECK(!pool_async_ready(a));
        CHECK_ERR_HAS(FOREIGN);
        CHECK(!pool_async_successful(a));
        CHECK_ST(pool_async_cancel(a), POOL_EINVAL);
        CHECK_ST(pool_async_info(a, &info, sizeof info), POOL_EINVAL);
        CHECK_ST(pool_async_progress(a, &done, &total), POOL_EINVAL);
        CHECK_ST(pool_async_result(a, &data, &len), POOL_EINVAL);
    }

    SECTION("child: the inherited iterator");
    long out = -1, x = 2, y = 0;
    size_t idx = 999;
    CHECK_ST_MSG(pool_iter_next(h.it, &out, &idx, -1), POOL_EINVAL, FOREIGN);
    CHECK_EQ(idx, 999);

    SECTION("child: the inherited pool");
    pool_t *p = h.pool;
    CHECK_ST_MSG(pool_map(p, square, &x, sizeof x, &y, sizeof y, 1, NULL), POOL_EINVAL, FOREIGN);
    CHECK_ST(pool_map(p, square, NULL, sizeof x, NULL, sizeof y, 0, NULL), POOL_EINVAL);
    CHECK_ST(pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), POOL_EINVAL);
    CHECK(pool_apply_async(p, square, &x, sizeof x, &y, sizeof y, NULL) == NULL);
    CHECK(pool_map_async(p, square, &x, sizeof x, &y, sizeof y, 1, NULL) == NULL);
    CHECK(pool_submit(p, echo, "a", 1, 8, NULL) == NULL);
    CHECK(pool_imap(p, square, &x, sizeof x, sizeof y, 1, NULL, NULL) == NULL);
    CHECK_ERR_HAS(FOREIGN);
    CHECK(pool_shm_alloc(p, 8) == NULL);
    CHECK_ST(pool_shm_free(p, h.shm), POOL_EINVAL);
    CHECK_EQ(pool_event_fd(p), -1);
    CHECK_EQ(pool_workers(p), 0);
    CHECK_ST(pool_close(p), POOL_EINVAL);
    CHECK_ST(pool_terminate(p), POOL_EINVAL);
    CHECK_ST_MSG(pool_join(p), POOL_EINVAL, FOREIGN);

    SECTION("child: the inherited process objects");
    int code = 1234;
    CHECK_ST_MSG(pool_process_join(h.proc, 0), POOL_EINVAL, "not the parent of its process");
    CHECK_ST(pool_process_join(h.proc, -1), POOL_EINVAL);
    CHECK_ST(pool_process_terminate(h.proc), POOL_EINVAL);
    CHECK_ST(pool_process_kill(h.proc), POOL_EINVAL);
    CHECK(!pool_process_is_alive(h.proc));
    CHECK_ST(pool_process_exitcode(h.proc, &code), POOL_EINVAL);
    CHECK_EQ(code, 1234);
    CHECK_EQ(pool_process_pid(h.proc), -1);
    CHECK_ST(pool_process_start(h.unstarted), POOL_EINVAL);

    SECTION("child: releasing what it inherited releases only its copies");
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        CHECK_ST(pool_close(NULL), POOL_EINVAL); /* resets the message */
        pool_async_free(all[i]);
        CHECK_ERR_HAS(FOREIGN);
    }
    pool_iter_free(h.it);
    CHECK_ERR_HAS(FOREIGN);
    pool_process_free(h.proc);
    CHECK_ERR_HAS(FOREIGN);
    pool_process_free(h.unstarted);
    pool_destroy(p);
    CHECK_ERR_HAS(FOREIGN);
    CHECK_ST_MSG(pool_async_get(h.running, 0), POOL_EINVAL, NOT_LIVE);
    pool_destroy(p); /* twice */
    CHECK_ERR_HAS(NOT_LIVE);

    SECTION("child: its own pool and processes work");
    pool_t *mine = pool_create(1, NULL);
    CHECK(mine != NULL);
    if (mine) {
        x = 9;
        CHECK_ST(pool_apply(mine, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
        CHECK_EQ(y, 81);
        pool_destroy(mine);
    }
    pool_process_t *child = pool_process_create(returns_0, NULL);
    CHECK(child != NULL);
    CHECK_ST(pool_process_start(child), POOL_OK);
    CHECK_ST(pool_process_join(child, guard_s(20)), POOL_OK);
    pool_process_free(child);
    _exit(test_finish());
}

static void parent_checks(void) {
    SECTION("parent: the pool, its work and the process were left alone");
    CHECK(pool_process_is_alive(h.proc));
    CHECK(!pool_async_ready(h.running));
    CHECK_EQ(pool_workers(h.pool), 2);
    int intact = 1;
    for (int i = 0; i < 64; i++) intact &= h.shm[i] == 0x5a;
    CHECK(intact);
    atomic_store(&gate->release, 1);
    pool_task_info_t info;
    CHECK_ST(pool_async_get(h.running, guard_s(30)), POOL_OK); /* not ECRASHED, ECLOSED or ECANCELLED */
    CHECK_EQ(h.running_out, 25);
    CHECK_ST(pool_async_info(h.running, &info, sizeof info), POOL_OK);
    CHECK(info.pid > 0);
    CHECK_ST(pool_async_get(h.running_map, guard_s(30)), POOL_OK);
    CHECK_EQ(h.map_out, 36);
    CHECK_ST(pool_async_get(h.queued, guard_s(30)), POOL_OK);
    CHECK_EQ(h.queued_out, 16);
    CHECK_ST(pool_async_get(h.done, 0), POOL_OK);
    CHECK_ST(pool_async_get(h.map_done, 0), POOL_OK);
    CHECK_EQ(h.map_outs[ITEMS - 1], (ITEMS - 1) * (ITEMS - 1));
    const void *data;
    size_t len;
    CHECK_ST(pool_async_result(h.var, &data, &len), POOL_OK);
    CHECK(len == 3 && memcmp(data, "abc", 3) == 0);
    for (; h.read < ITEMS; h.read++) {
        long out = -1;
        size_t idx = 999;
        if (!CHECK_ST(pool_iter_next(h.it, &out, &idx, guard_s(30)), POOL_OK)) break;
        CHECK_EQ(idx, h.read);
        CHECK_EQ(out, (long)(h.read * h.read));
    }
    long last;
    CHECK_ST(pool_iter_next(h.it, &last, NULL, guard_s(30)), POOL_EDONE);
    long xs[ITEMS], ys[ITEMS];
    for (int i = 0; i < ITEMS; i++) xs[i] = i + 1;
    CHECK_ST(pool_map(h.pool, square, xs, sizeof xs[0], ys, sizeof ys[0], ITEMS, NULL), POOL_OK);
    CHECK_EQ(ys[ITEMS - 1], (long)ITEMS * ITEMS);
    CHECK_ST(pool_shm_free(h.pool, h.shm), POOL_OK);
    int code = -1;
    CHECK_ST(pool_process_join(h.proc, guard_s(30)), POOL_OK);
    CHECK_ST(pool_process_exitcode(h.proc, &code), POOL_OK);
    CHECK_EQ(code, 7); /* not killed */
    CHECK_ST(pool_process_start(h.unstarted), POOL_OK);
    CHECK_ST(pool_process_join(h.unstarted, guard_s(30)), POOL_OK);

    pool_async_t *all[] = {h.running, h.running_map, h.queued, h.done, h.map_done, h.var};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) pool_async_free(all[i]);
    pool_iter_free(h.it);
    pool_process_free(h.proc);
    pool_process_free(h.unstarted);
    CHECK_ST(pool_close(h.pool), POOL_OK);
    CHECK_ST(pool_join(h.pool), POOL_OK);
    pool_destroy(h.pool);
}

/* ---- forks while other threads are inside the library */

static atomic_int stop, loop_failures;
static pool_t *churn_pool;

/* Forks processes (the library's own fork) and creates and frees handles, over and over. */
static void *process_loop(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pool_process_t *p = pool_process_create(returns_0, NULL);
        if (!p || pool_process_start(p) != POOL_OK || pool_process_join(p, -1) != POOL_OK) atomic_fetch_add(&loop_failures, 1);
        pool_process_free(p);
    }
    return NULL;
}

static void *async_loop(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        long x = 3, y = 0;
        pool_async_t *a = pool_apply_async(churn_pool, square, &x, sizeof x, &y, sizeof y, NULL);
        if (!a || pool_async_get(a, -1) != POOL_OK || y != 9) atomic_fetch_add(&loop_failures, 1);
        pool_async_free(a);
    }
    return NULL;
}

static void count_call(pool_async_t *a, int status, void *arg) {
    (void)a;
    (void)status;
    atomic_fetch_add((atomic_int *)arg, 1);
}

/* Creates and destroys pools whose threads (the event fd's watcher, the callback thread) start
 * and end with them. The library's threads are not Rust std threads: a std thread takes a
 * process-wide lock of Rust's as it starts and ends, and a child forked while it held it
 * could never end one (it hung joining its own pool's watcher in pool_destroy). */
static void *pool_loop(void *arg) {
    (void)arg;
    while (!atomic_load(&stop)) {
        pool_t *p = pool_create(1, NULL);
        atomic_int called = 0;
        pool_call_options_t o;
        pool_call_options_init(&o);
        o.callback = count_call;
        o.callback_arg = &called;
        long x = 5, y = 0;
        pool_async_t *a = p && pool_event_fd(p) >= 0 ? pool_apply_async_ex(p, square, &x, sizeof x, &y, sizeof y, NULL, &o) : NULL;
        if (!a || pool_async_get(a, -1) != POOL_OK || y != 25) atomic_fetch_add(&loop_failures, 1);
        while (a && !atomic_load(&called)) sleep_s(0.0005);
        pool_async_free(a);
        pool_destroy(p);
    }
    return NULL;
}

/* A child forked at any moment: uses the library from scratch, its threads included. Exit
 * status 0 if all worked. */
static int child_starts_afresh(void) {
    pool_process_t *p = pool_process_create(returns_0, NULL);
    if (!p) return 2;
    if (pool_process_start(p) != POOL_OK) return 3;
    if (pool_process_join(p, -1) != POOL_OK) return 4;
    pool_process_free(p);
    pool_t *pool = pool_create(1, NULL);
    if (!pool) return 5;
    long x = 7, y = 0;
    if (pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL) != POOL_OK || y != 49) return 6;
    if (pool_event_fd(pool) < 0) return 7; /* its watcher thread, joined by pool_destroy */
    atomic_int called = 0;
    pool_call_options_t o;
    pool_call_options_init(&o);
    o.callback = count_call;
    o.callback_arg = &called;
    pool_async_t *a = pool_apply_async_ex(pool, square, &x, sizeof x, &y, sizeof y, NULL, &o);
    if (!a || pool_async_get(a, -1) != POOL_OK) return 8;
    while (!atomic_load(&called)) sleep_s(0.0005);
    pool_async_free(a);
    pool_destroy(pool); /* joins the callback thread too */
    return 0;
}

/* Fewer forks under valgrind, where each child and its pool are slow to start and to check,
 * and under ASan, where each fork waits for the other threads to settle. */
static int forks_to_make(void) {
#ifdef UNDER_ASAN
    return FORKS / 3;
#else
    return under_valgrind() ? 5 : FORKS;
#endif
}

static void test_forks_while_busy(void) {
    SECTION("forks while other threads start processes, create and free handles, and create and destroy pools");
    churn_pool = pool_create(2, NULL);
    REQUIRE(churn_pool != NULL);
    pthread_t t[3];
    REQUIRE(pthread_create(&t[0], NULL, process_loop, NULL) == 0);
    REQUIRE(pthread_create(&t[1], NULL, async_loop, NULL) == 0);
    REQUIRE(pthread_create(&t[2], NULL, pool_loop, NULL) == 0);
    int n = forks_to_make(), hung = 0, failed = 0;
    for (int i = 0; i < n; i++) {
        pid_t pid = fork_settled();
        REQUIRE(pid >= 0);
        if (pid == 0) _exit(child_starts_afresh());
        int st = wait_child(pid, 30);
        if (st == -1) {
            hung++;
            fprintf(stderr, "fork: child %d of %d hung (killed)\n", i, n);
        } else if (!WIFEXITED(st) || WEXITSTATUS(st) != 0) {
            failed++;
            fprintf(stderr, "fork: child %d of %d ended with status %#x\n", i, n, st);
        }
    }
    atomic_store(&stop, 1);
    for (int i = 0; i < 3; i++) pthread_join(t[i], NULL);
    fprintf(stderr, "fork: %d children forked\n", n);
    CHECK_EQ(hung, 0);
    CHECK_EQ(failed, 0);
    CHECK_EQ(atomic_load(&loop_failures), 0);
    pool_destroy(churn_pool);
}

int main(void) {
    test_begin("fork", 55);
    gate_open();
    setup();
    SECTION("fork: the child calls everything");
    pid_t pid = fork_settled();
    REQUIRE(pid >= 0);
    if (pid == 0) child_calls_everything();
    int st = wait_child(pid, 40);
    CHECK(st != -1 && WIFEXITED(st));
    CHECK_EQ(WEXITSTATUS(st), 0);
    parent_checks();
    test_forks_while_busy();
    return test_finish();
}
