/* Queues, locks and events keep their promises whatever their users do in between:
 * - an event's set wakes every thread and process that was waiting, even if it is cleared at
 *   once (Python's Event.wait returns True to each of them);
 * - the shared memory of a freed queue, lock or event comes back however many processes died
 *   inside calls on it (SIGKILLed while blocked in get, holding a lock, waiting on an event),
 *   and is never reused under a process stopped inside a call: it comes back once that process
 *   has left. */
#include "check.h"

#include <dirent.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <sys/wait.h>

/* Arena size for this program (set before the first pool_* call): small enough that an object
 * of BIG bytes fits only once, so a second one fits only if the first one's memory came back. */
#define IPC_SIZE "8M"
#define BIG ((size_t)6 << 20)

/* Waits (a hang guard) until `pid` sleeps: once it is about to call a blocking function,
 * sleeping means it is blocked in there. */
static void wait_asleep(pid_t pid) {
    double t0 = now_s();
    while (proc_state(pid) != 'S' && now_s() - t0 < guard_s(60)) sleep_s(0.001);
    CHECK(proc_state(pid) == 'S');
}

/* ---- 1. an event set then cleared at once wakes every waiter ----------------------------- */

/* The waiters are stopped (SIGSTOP) while the event is set and cleared, so that none can run in
 * between, as happens on a loaded machine: a waiter must still learn that a set woke it. One
 * process waits in 4 threads, 3 in their main thread. */
static pool_event_t *ev;
static atomic_int *asleep_count; /* waiters about to wait (shared with the children) */

static void *event_waiter(void *arg) {
    (void)arg;
    atomic_fetch_add(asleep_count, 1);
    return (void *)(intptr_t)pool_event_wait(ev, guard_s(60));
}

static int threads_waiting(void) {
    pthread_t t[4];
    for (int i = 0; i < 4; i++) pthread_create(&t[i], NULL, event_waiter, NULL);
    int bad = 0;
    for (int i = 0; i < 4; i++) {
        void *r;
        pthread_join(t[i], &r);
        bad += (intptr_t)r != POOL_OK;
    }
    return bad;
}

/* Waits (a hang guard) until every thread of `pid` sleeps. */
static void wait_all_asleep(pid_t pid) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task", (int)pid);
    double t0 = now_s();
    for (int all = 0; !all && now_s() - t0 < guard_s(60);) {
        all = 1;
        DIR *d = opendir(path);
        REQUIRE(d != NULL);
        for (struct dirent *e; (e = readdir(d));)
            if (e->d_name[0] != '.' && proc_state((pid_t)atoi(e->d_name)) != 'S') all = 0;
        closedir(d);
        if (!all) sleep_s(0.001);
    }
}

static void test_set_then_clear(void) {
    SECTION("event: set then clear at once wakes every waiting thread and process with POOL_OK");
    ev = pool_event_create();
    REQUIRE(ev != NULL);
    asleep_count = shared_alloc(sizeof *asleep_count);
    pid_t kids[4];
    for (int i = 0; i < 4; i++) {
        if ((kids[i] = fork()) == 0) {
            if (i == 0) _exit(threads_waiting());
            atomic_fetch_add(asleep_count, 1);
            _exit(pool_event_wait(ev, guard_s(60)) == POOL_OK ? 0 : 1);
        }
    }
    while (atomic_load(asleep_count) < 7) sleep_s(0.001);
    for (int i = 0; i < 4; i++) wait_all_asleep(kids[i]);
    for (int i = 0; i < 4; i++) kill(kids[i], SIGSTOP);
    for (int i = 0; i < 4; i++)
        while (proc_state(kids[i]) != 'T') sleep_s(0.001);
    CHECK_ST(pool_event_set(ev), POOL_OK);
    CHECK_ST(pool_event_clear(ev), POOL_OK);
    for (int i = 0; i < 4; i++) kill(kids[i], SIGCONT);
    for (int i = 0; i < 4; i++) {
        int ws;
        waitpid(kids[i], &ws, 0);
        CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    }
    /* A wait that starts after the clear is not woken by that set. */
    CHECK_ST(pool_event_wait(ev, 0.05), POOL_ETIMEDOUT);
    CHECK(!pool_event_is_set(ev));
    pool_event_free(ev);
}

/* ---- 2. memory comes back however many processes died inside calls ----------------------- */

/* What the blocked processes do: 0 get from a queue, 1 hold a lock (then block), 2 wait. */
static pool_queue_t *q;
static pool_lock_t *lk;

static void blocked_call(int what) {
    char b[8];
    size_t n;
    switch (what) {
    case 0:
        pool_queue_get(q, b, sizeof b, &n, -1);
        break;
    case 1:
    {
        int st = pool_lock_acquire(lk, -1);
        if (st == POOL_OK || st == POOL_EOWNERDEAD) pause();
        break;
    }
    default:
        pool_event_wait(ev, -1);
    }
    _exit(0);
}

/* Creates one big object of kind `what` (the others' handles set to NULL). */
static int create_big(int what) {
    q = NULL;
    lk = NULL;
    ev = NULL;
    if (what == 0) q = pool_queue_create(BIG);
    if (what == 1) lk = pool_lock_create();
    if (what == 2) ev = pool_event_create();
    return q || lk || ev;
}

static void free_it(int what) {
    if (what == 0) pool_queue_free(q);
    if (what == 1) pool_lock_free(lk);
    if (what == 2) pool_event_free(ev);
}

static void test_reuse_after_deaths(void) {
    const char *names[3] = {"queue get", "lock held", "event wait"};
    for (int what = 0; what < 3; what++) {
        for (int nkids = 1; nkids <= 12; nkids += 11) {
            SECTION("arena: memory comes back after processes die inside calls");
            fprintf(stderr, "  %d processes killed in %s\n", nkids, names[what]);
            /* A lock or event is small: fill the arena with a big queue beside it instead. */
            REQUIRE(create_big(what));
            pool_queue_t *filler = NULL;
            if (what != 0) {
                filler = pool_queue_create(BIG);
                REQUIRE(filler != NULL);
            }
            pid_t kids[12];
            for (int i = 0; i < nkids; i++)
                if ((kids[i] = fork()) == 0) blocked_call(what);
            for (int i = 0; i < nkids; i++) {
                /* Blocked in the call (the lock: one holds it, pausing; the others wait for it). */
                wait_asleep(kids[i]);
            }
            for (int i = 0; i < nkids; i++) kill(kids[i], SIGKILL);
            for (int i = 0; i < nkids; i++) waitpid(kids[i], NULL, 0);
            double t0 = now_s();
            free_it(what);
            fprintf(stderr, "  free took %.3f s\n", now_s() - t0);
            if (filler) pool_queue_free(filler);
            /* Everything freed: a big queue fits again (twice over the arena otherwise). */
            pool_queue_t *again = pool_queue_create(BIG);
            CHECK(again != NULL);
            if (!again) fprintf(stderr, "  %s\n", pool_last_error());
            pool_queue_free(again);
        }
    }
}

/* ---- 3. never reused under a process stopped inside a call -------------------------------- */

/* The stopped caller is a thread of a process whose main thread ended with pthread_exit: the
 * process shows as a zombie ('Z') while that thread still lives. */
static atomic_int *getter_tid;

static void *leader_gone_getter(void *arg) {
    (void)arg;
    char b[8];
    size_t n;
    atomic_store(getter_tid, (int)syscall(SYS_gettid));
    _exit(pool_queue_get(q, b, sizeof b, &n, -1) == POOL_EINVAL ? 0 : 1);
}

static void test_stopped_caller(int leader_gone) {
    SECTION("arena: a queue freed while a stopped process is inside get is reused only after it left");
    fprintf(stderr, "  %s\n", leader_gone ? "a thread of a process whose main thread exited" : "a process");
    q = pool_queue_create(BIG);
    REQUIRE(q != NULL);
    getter_tid = shared_alloc(sizeof *getter_tid);
    pid_t kid = fork();
    if (kid == 0 && !leader_gone) {
        char b[8];
        size_t n;
        _exit(pool_queue_get(q, b, sizeof b, &n, -1) == POOL_EINVAL ? 0 : 1);
    }
    if (kid == 0) {
        pthread_t t;
        pthread_create(&t, NULL, leader_gone_getter, NULL);
        pthread_exit(NULL);
    }
    pid_t caller = kid;
    if (leader_gone) {
        WAIT_UNTIL(atomic_load(getter_tid) != 0 && proc_state(kid) == 'Z', 60);
        caller = atomic_load(getter_tid);
    }
    wait_asleep(caller);
    kill(kid, SIGSTOP);
    while (proc_state(caller) != 'T') sleep_s(0.001);
    pool_queue_free(q); /* returns although the caller cannot leave */
    pool_queue_t *under = pool_queue_create(BIG);
    CHECK(under == NULL); /* its memory is still the stopped process's */
    CHECK_ERR_HAS("do not fit");
    pool_queue_free(under);
    kill(kid, SIGCONT);
    int ws;
    waitpid(kid, &ws, 0);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0); /* woke, saw the queue freed: POOL_EINVAL */
    pool_queue_t *after = pool_queue_create(BIG);
    CHECK(after != NULL);
    pool_queue_free(after);
}

int main(void) {
    setenv("POOL_IPC_SIZE", IPC_SIZE, 1);
    test_begin("ipc_recovery", 55);
    test_set_then_clear();
    test_reuse_after_deaths();
    test_stopped_caller(0);
    test_stopped_caller(1);
    return test_finish();
}
