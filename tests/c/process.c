/* multiprocessing.Process: create / start / join / is_alive / terminate / kill / exitcode /
 * pid / free, exit codes (-N for signal N), and no zombies. */
#include "check.h"

#include <pthread.h>
#include <sys/wait.h>

static int returns_arg(void *arg) {
    return *(int *)arg;
}

/* Ended only by a signal. */
static int sleeps_an_hour(void *arg) {
    (void)arg;
    sleep_s(3600);
    return 0;
}

/* Long enough that the looks at it while it runs take far less, even on a loaded machine. */
static int sleeps_2(void *arg) {
    (void)arg;
    sleep_s(2);
    return 5;
}

static int segfaults(void *arg) {
    (void)arg;
    raise(SIGSEGV);
    return 0;
}

static int aborts(void *arg) {
    (void)arg;
    abort();
}

static int exits_7(void *arg) {
    (void)arg;
    _exit(7);
}

/* Writes into a host FILE* without a newline; the library flushes stdio at exit. */
static int writes_to_file(void *arg) {
    fputs("child", (FILE *)arg);
    return 0;
}

/* Writes into shared memory, proving the child ran with the argument. */
static int writes_shared(void *arg) {
    int *slot = arg;
    *slot = getpid();
    return 0;
}

/* Polls until the process is no longer alive (without joining); returns the seconds it took,
 * or -1 after `limit` seconds. */
static double wait_not_alive(pool_process_t *p, double limit) {
    double t0 = now_s();
    while (pool_process_is_alive(p)) {
        if (now_s() - t0 > limit) return -1;
        sleep_s(0.01);
    }
    return now_s() - t0;
}

static void check_no_child(int pid, const char *what) {
    int st;
    errno = 0;
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (!(r == -1 && errno == ECHILD)) {
        fprintf(stderr, "  %s: waitpid(%d, WNOHANG) = %d, errno %d (%s); expected -1/ECHILD\n", what, pid, (int)r,
                errno, strerror(errno));
        CHECK(!"the child was reaped (no zombie left)");
    }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d", pid);
    if (access(path, F_OK) == 0) {
        /* The pid may have been reused by an unrelated process; only a zombie child of ours counts. */
        char stat[512] = "";
        snprintf(path, sizeof path, "/proc/%d/stat", pid);
        FILE *f = fopen(path, "r");
        if (f) {
            if (!fgets(stat, sizeof stat, f)) stat[0] = '\0';
            fclose(f);
        }
        const char *close = strrchr(stat, ')');
        int ppid = 0;
        char state = '?';
        if (close && sscanf(close + 1, " %c %d", &state, &ppid) == 2 && ppid == getpid()) {
            fprintf(stderr, "  %s: pid %d still exists (state %c) as our child\n", what, pid, state);
            CHECK(!"the child is gone");
        }
    }
}

static void test_lifecycle(void) {
    SECTION("pool_process_create(NULL)");
    CHECK(pool_process_create(NULL, NULL) == NULL);
    CHECK_ERR_SET();

    SECTION("before start");
    int arg = 42;
    pool_process_t *p = pool_process_create(returns_arg, &arg);
    REQUIRE(p != NULL);
    CHECK_EQ(pool_process_pid(p), -1);
    CHECK(!pool_process_is_alive(p));
    CHECK_ST(pool_process_join(p, -1), POOL_EINVAL);
    CHECK_ERR_SET();
    CHECK_ST(pool_process_join(p, 0), POOL_EINVAL);
    int code = 999;
    CHECK_ST(pool_process_exitcode(p, &code), POOL_EINVAL);
    CHECK_EQ(code, 999);
    CHECK_ST(pool_process_terminate(p), POOL_EINVAL);
    CHECK_ST(pool_process_kill(p), POOL_EINVAL);

    SECTION("start, exit code = return value");
    CHECK_ST(pool_process_start(p), POOL_OK);
    int pid = pool_process_pid(p);
    CHECK(pid > 0 && pid != getpid());
    CHECK_ST(pool_process_start(p), POOL_EINVAL); /* twice */
    CHECK_ERR_SET();
    CHECK_EQ(pool_process_pid(p), pid);
    CHECK_ST(pool_process_join(p, -1), POOL_OK);
    CHECK(!pool_process_is_alive(p));
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, 42);
    CHECK_ST(pool_process_join(p, -1), POOL_OK); /* again: fine */
    CHECK_ST(pool_process_join(p, 0), POOL_OK);
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, 42);
    CHECK_ST(pool_process_terminate(p), POOL_OK); /* exited: no-op */
    CHECK_ST(pool_process_kill(p), POOL_OK);
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, 42);
    CHECK_EQ(pool_process_pid(p), pid);
    CHECK_ST(pool_process_start(p), POOL_EINVAL); /* still no restart after it ended */
    pool_process_free(p);
    check_no_child(pid, "joined child");

    SECTION("exit code 0 and 255");
    int vals[] = {0, 1, 255};
    for (int i = 0; i < 3; i++) {
        p = pool_process_create(returns_arg, &vals[i]);
        REQUIRE(p != NULL);
        CHECK_ST(pool_process_start(p), POOL_OK);
        CHECK_ST(pool_process_join(p, guard_s(10)), POOL_OK);
        CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
        CHECK_EQ(code, vals[i]);
        pool_process_free(p);
    }

    SECTION("is_alive while running, false after exit without join");
    p = pool_process_create(sleeps_2, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    CHECK(pool_process_is_alive(p));
    code = 999;
    CHECK_ST(pool_process_exitcode(p, &code), POOL_ETIMEDOUT);
    CHECK_EQ(code, 999);
    double t0 = now_s();
    CHECK_ST(pool_process_join(p, 0.1), POOL_ETIMEDOUT);
    double took = now_s() - t0;
    CHECK(took >= 0.09);
    check_took_(__FILE__, __LINE__, "pool_process_join(p, 0.1)", took, 1);
    CHECK_ST(pool_process_join(p, 0), POOL_ETIMEDOUT);
    CHECK(pool_process_is_alive(p));
    double gone = wait_not_alive(p, guard_s(10));
    CHECK(gone >= 0);
    CHECK(!pool_process_is_alive(p));
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, 5);
    CHECK_ST(pool_process_join(p, 0), POOL_OK);
    pool_process_free(p);
}

static void expect_death(pool_process_fn fn, int want, const char *what, int how) {
    SECTION(what);
    pool_process_t *p = pool_process_create(fn, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    if (how == SIGTERM) CHECK_ST(pool_process_terminate(p), POOL_OK);
    if (how == SIGKILL) CHECK_ST(pool_process_kill(p), POOL_OK);
    CHECK_ST(pool_process_join(p, guard_s(10)), POOL_OK);
    CHECK(!pool_process_is_alive(p));
    int code = 999;
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, want);
    int pid = pool_process_pid(p);
    pool_process_free(p);
    check_no_child(pid, what);
}

static void test_deaths(void) {
    expect_death(sleeps_an_hour, -SIGTERM, "pool_process_terminate -> -15", SIGTERM);
    expect_death(sleeps_an_hour, -SIGKILL, "pool_process_kill -> -9", SIGKILL);
    expect_death(segfaults, -SIGSEGV, "segfault -> -11", 0);
    expect_death(aborts, -SIGABRT, "abort -> -6", 0);
    expect_death(exits_7, 7, "_exit(7) -> 7", 0);

    SECTION("terminate, then is_alive turns false without join");
    pool_process_t *p = pool_process_create(sleeps_an_hour, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    sleep_s(0.05);
    CHECK(pool_process_is_alive(p));
    CHECK_ST(pool_process_terminate(p), POOL_OK);
    CHECK(wait_not_alive(p, guard_s(10)) >= 0);
    int code = 0;
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, -SIGTERM);
    CHECK_ST(pool_process_kill(p), POOL_OK); /* exited: no-op */
    pool_process_free(p);

    SECTION("pool_process_free of a running child leaves no zombie");
    p = pool_process_create(sleeps_an_hour, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    int pid = pool_process_pid(p);
    CHECK(pid > 0);
    double t0 = now_s();
    pool_process_free(p);
    CHECK_TOOK(t0, 10, "pool_process_free of a running child");
    check_no_child(pid, "pool_process_free of a running child");

    SECTION("pool_process_free of an exited, never joined child leaves no zombie");
    int zero = 0;
    p = pool_process_create(returns_arg, &zero);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    pid = pool_process_pid(p);
    sleep_s(0.2);
    pool_process_free(p);
    check_no_child(pid, "pool_process_free of an exited child");

    SECTION("pool_process_free of a never started process");
    pool_process_free(pool_process_create(returns_arg, &zero));
}

static void test_many_and_io(void) {
    SECTION("20 processes at once, each with its own argument");
    int *slots = shared_alloc(20 * sizeof(int));
    int args[20];
    pool_process_t *ps[20];
    for (int i = 0; i < 20; i++) {
        args[i] = i + 100;
        ps[i] = pool_process_create(returns_arg, &args[i]);
        REQUIRE(ps[i] != NULL);
        CHECK_ST(pool_process_start(ps[i]), POOL_OK);
    }
    for (int i = 19; i >= 0; i--) {
        CHECK_ST(pool_process_join(ps[i], guard_s(10)), POOL_OK);
        int code = -1;
        CHECK_ST(pool_process_exitcode(ps[i], &code), POOL_OK);
        CHECK_EQ(code, i + 100);
        pool_process_free(ps[i]);
    }

    SECTION("the child sees its argument (shared memory)");
    pool_process_t *p = pool_process_create(writes_shared, &slots[3]);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    CHECK_ST(pool_process_join(p, guard_s(10)), POOL_OK);
    CHECK_EQ(slots[3], pool_process_pid(p));
    pool_process_free(p);

    SECTION("stdio: buffered output is neither duplicated nor lost");
    int fds[2];
    REQUIRE(pipe(fds) == 0);
    FILE *w = fdopen(fds[1], "w");
    REQUIRE(w != NULL);
    setvbuf(w, NULL, _IOFBF, 4096);
    fputs("parent-", w); /* still in the buffer at fork */
    p = pool_process_create(writes_to_file, w);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    CHECK_ST(pool_process_join(p, guard_s(10)), POOL_OK);
    int code = -1;
    CHECK_ST(pool_process_exitcode(p, &code), POOL_OK);
    CHECK_EQ(code, 0);
    pool_process_free(p);
    fputs("-end", w);
    fclose(w);
    char buf[256];
    size_t got = 0;
    ssize_t r;
    while (got < sizeof buf - 1 && (r = read(fds[0], buf + got, sizeof buf - 1 - got)) > 0) got += (size_t)r;
    buf[got] = '\0';
    close(fds[0]);
    if (strcmp(buf, "parent-child-end") != 0) {
        fprintf(stderr, "  pipe got \"%s\", expected \"parent-child-end\"\n", buf);
        CHECK(!"stdio output exactly once, in order");
    }
}

/* ---- waits under attack (hostile testing) ---------------------------------------------------- */

static int pauses_forever(void *arg) {
    (void)arg;
    for (;;) pause();
    return 0;
}

static pool_process_t *raced;
static atomic_int join_done;
static int join_status = -1;

static void *joins_forever(void *arg) {
    (void)arg;
    join_status = pool_process_join(raced, -1);
    atomic_store(&join_done, 1);
    return NULL;
}

struct terminator {
    int alive, pid, status;
    double took; /* is_alive + pid, while the join waits */
};

static void *terminates(void *arg) {
    struct terminator *t = arg;
    double t0 = now_s();
    t->alive = pool_process_is_alive(raced);
    t->pid = pool_process_pid(raced);
    t->took = now_s() - t0;
    t->status = pool_process_terminate(raced);
    return NULL;
}

static void test_terminate_during_join(void) {
    SECTION("pool_process_terminate from another thread while one waits in pool_process_join(-1): both return");
    raced = pool_process_create(pauses_forever, NULL);
    REQUIRE(raced != NULL);
    CHECK_ST(pool_process_start(raced), POOL_OK);
    int pid = pool_process_pid(raced);
    REQUIRE(pid > 0);
    atomic_store(&join_done, 0);
    pthread_t j, t;
    REQUIRE(pthread_create(&j, NULL, joins_forever, NULL) == 0);
    sleep_s(0.2); /* the join waits */
    struct terminator term = {0, 0, -1, -1};
    REQUIRE(pthread_create(&t, NULL, terminates, &term) == 0);
    WAIT_UNTIL(atomic_load(&join_done), 30);
    CHECK(atomic_load(&join_done));
    if (!atomic_load(&join_done)) kill(pid, SIGKILL); /* unblock both threads */
    pthread_join(t, NULL);
    pthread_join(j, NULL);
    /* The waiting join does not lock the object: the other thread's calls answered at once
     * (had they waited for the join, they would have waited for the 30 s guard above). */
    CHECK(term.alive);
    CHECK_EQ(term.pid, pid);
    check_took_(__FILE__, __LINE__, "is_alive and pid during a join", term.took, 5);
    CHECK_ST(term.status, POOL_OK);
    CHECK_ST(join_status, POOL_OK);
    int code = 0;
    CHECK_ST(pool_process_exitcode(raced, &code), POOL_OK);
    CHECK_EQ(code, -SIGTERM);
    CHECK(!pool_process_is_alive(raced));
    pool_process_free(raced);
    check_no_child(pid, "terminated during a join");
}

static void on_usr1(int sig) {
    (void)sig;
}

static atomic_int stop_ticking;

/* Interrupts `arg` (a pthread_t) with SIGUSR1 every 20 ms, for guard_s(10) at most. */
static void *ticks(void *arg) {
    pthread_t target = *(pthread_t *)arg;
    for (double t0 = now_s(); !atomic_load(&stop_ticking) && now_s() - t0 < guard_s(10);) {
        pthread_kill(target, SIGUSR1);
        sleep_s(0.02);
    }
    return NULL;
}

static void test_join_timeout_under_signals(void) {
    SECTION("pool_process_join(p, 1.0) interrupted by a signal every 20 ms still returns after about 1 s");
    pool_process_t *p = pool_process_create(pauses_forever, NULL);
    REQUIRE(p != NULL);
    CHECK_ST(pool_process_start(p), POOL_OK);
    struct sigaction sa, old;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_usr1; /* no SA_RESTART: every signal interrupts the wait */
    sigemptyset(&sa.sa_mask);
    REQUIRE(sigaction(SIGUSR1, &sa, &old) == 0);
    atomic_store(&stop_ticking, 0);
    pthread_t self = pthread_self(), t;
    REQUIRE(pthread_create(&t, NULL, ticks, &self) == 0);
    double t0 = now_s();
    CHECK_ST(pool_process_join(p, 1.0), POOL_ETIMEDOUT);
    double took = now_s() - t0;
    atomic_store(&stop_ticking, 1);
    pthread_join(t, NULL);
    CHECK(took >= 0.9);
    /* Not restarted with the full timeout at every signal (then it ends with the ticks). */
    check_took_(__FILE__, __LINE__, "pool_process_join(p, 1.0) under signals", took, 5);
    CHECK(pool_process_is_alive(p));
    CHECK_ST(pool_process_kill(p), POOL_OK);
    CHECK_ST(pool_process_join(p, guard_s(10)), POOL_OK);
    sigaction(SIGUSR1, &old, NULL);
    pool_process_free(p);
}

int main(void) {
    test_begin("process", 50);
    test_lifecycle();
    test_deaths();
    test_many_and_io();
    test_terminate_during_join();
    test_join_timeout_under_signals();
    return test_finish();
}
