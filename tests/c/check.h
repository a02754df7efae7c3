/* Tiny check helpers shared by the C API tests (the .c files in tests/c, driven by tests/c_api.rs).
 *
 * Every CHECK prints the failed expression, its location and pool_last_error() to stderr and
 * counts the failure; test_finish() makes main return 1 if anything failed. SECTION() names the
 * part of the test running now, so a hang (caught by test_begin's alarm) or a crash says where.
 * Checks are meant for the host process only: a task runs in a worker, whose counter nobody reads.
 */
#ifndef POOL_TEST_CHECK_H
#define POOL_TEST_CHECK_H

#include <pool.h>

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

static atomic_int check_failures_;
static const char *volatile check_section_ = "start";
static const char *check_name_ = "test";
static pid_t check_pid_;

/* Seconds on the monotonic clock. */
static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Sleeps `s` seconds (restarting after signals). */
static inline void sleep_s(double s) {
    struct timespec ts = {(time_t)s, (long)((s - (double)(time_t)s) * 1e9)};
    while (nanosleep(&ts, &ts) == -1 && errno == EINTR) {
    }
}

/* True when running under valgrind (its preload is in LD_PRELOAD). */
static inline int under_valgrind(void) {
    const char *pre = getenv("LD_PRELOAD");
    return pre && strstr(pre, "vgpreload");
}

/* UNDER_ASAN: 1 in a build with AddressSanitizer (GCC's macro, or clang's feature test). */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifndef UNDER_ASAN
#define UNDER_ASAN 0
#endif

/* POOL_TEST_SLACK, a factor (1 if unset). */
static inline double slack_env_(void) {
    const char *env = getenv("POOL_TEST_SLACK");
    double f = env ? atof(env) : 0;
    return f > 0 ? f : 1;
}

/* `valgrind` under valgrind, `asan` under AddressSanitizer, 1 otherwise; times POOL_TEST_SLACK. */
static inline double by_tool_(double valgrind, double asan) {
    return (under_valgrind() ? valgrind : UNDER_ASAN ? asan : 1) * slack_env_();
}

/* How many times longer than a quiet native run things may take here: 20 under valgrind (every
 * process runs ~20x slower), 3 under AddressSanitizer, 1 otherwise; times POOL_TEST_SLACK when
 * set (a factor, for a machine slower still). Every bound on a wait in these tests is a hang
 * guard, generous for a busy machine, multiplied by this. */
static inline double slack(void) {
    return by_tool_(20, 3);
}

/* `secs` of hang guard, stretched by slack(). */
static inline double guard_s(double secs) {
    return secs * slack();
}

/* A task_timeout the test waits out (a task that must be cut short), yet never reached by the
 * test's quick tasks: stretched x10 under valgrind and x2 under AddressSanitizer, less than
 * guard_s, since each one costs its full length every run. */
static inline double timeout_s(double secs) {
    return secs * by_tool_(10, 2);
}

static inline void check_fail_(const char *file, int line, const char *what) {
    fprintf(stderr, "%s:%d: [%s] FAILED: %s\n    pool_last_error(): \"%s\"\n", file, line, check_section_, what,
            pool_last_error());
    atomic_fetch_add(&check_failures_, 1);
}

/* A boolean check. */
#define CHECK(cond)                                               \
    do {                                                          \
        if (!(cond)) check_fail_(__FILE__, __LINE__, #cond);      \
    } while (0)

/* A check that stops the test (e.g. a handle the rest needs). */
#define REQUIRE(cond)                                                              \
    do {                                                                           \
        if (!(cond)) {                                                             \
            check_fail_(__FILE__, __LINE__, #cond);                                \
            fprintf(stderr, "%s: REQUIRE failed, giving up\n", check_name_);       \
            exit(1);                                                               \
        }                                                                          \
    } while (0)

static inline int check_status_(const char *file, int line, const char *expr, int got, int want) {
    if (got != want) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s returned %d (%s), expected %d (%s)", expr, got, pool_strerror(got), want,
                 pool_strerror(want));
        check_fail_(file, line, buf);
        return 0;
    }
    return 1;
}

/* `expr` (a pool_status) must equal `want`; evaluates to 1 if it did. */
#define CHECK_ST(expr, want) check_status_(__FILE__, __LINE__, #expr, (expr), (want))

static inline int check_eq_long_(const char *file, int line, const char *expr, long long got, long long want) {
    if (got != want) {
        char buf[1024];
        snprintf(buf, sizeof buf, "%s == %lld, expected %lld", expr, got, want);
        check_fail_(file, line, buf);
        return 0;
    }
    return 1;
}

/* Integer equality with both values in the message. */
#define CHECK_EQ(expr, want) check_eq_long_(__FILE__, __LINE__, #expr, (long long)(expr), (long long)(want))

static inline int check_err_has_(const char *file, int line, const char *needle) {
    const char *e = pool_last_error();
    if (e == NULL || strstr(e, needle) == NULL) {
        char buf[512];
        snprintf(buf, sizeof buf, "pool_last_error() should mention \"%s\"", needle);
        check_fail_(file, line, buf);
        return 0;
    }
    return 1;
}

/* pool_last_error() must contain `needle`. */
#define CHECK_ERR_HAS(needle) check_err_has_(__FILE__, __LINE__, (needle))

/* pool_last_error() must be a non-empty string. */
#define CHECK_ERR_SET() CHECK(pool_last_error() != NULL && pool_last_error()[0] != '\0')

static inline int check_took_(const char *file, int line, const char *what, double took, double bound) {
    double limit = guard_s(bound);
    fprintf(stderr, "  %s: %.2f s (hang guard %.0f s)\n", what, took, limit);
    if (took < limit) return 1;
    char buf[512];
    snprintf(buf, sizeof buf, "%s took %.2f s, past its hang guard of %.0f s", what, took, limit);
    check_fail_(file, line, buf);
    return 0;
}

/* A hang guard on a step that must not wait for anything slow (a sleeping task, a long
 * timeout): prints how long it took since `t0` (now_s()) and fails only past guard_s(bound).
 * Pick `bound` well below what the step would take if it did wait, and well above what it
 * takes on a loaded machine. */
#define CHECK_TOOK(t0, bound, what) check_took_(__FILE__, __LINE__, (what), now_s() - (t0), (bound))

/* Waits (polling every millisecond) until `cond` holds or guard_s(secs) pass. */
#define WAIT_UNTIL(cond, secs)                                                          \
    do {                                                                                \
        for (double wait_t0_ = now_s(); !(cond) && now_s() - wait_t0_ < guard_s(secs);) \
            sleep_s(0.001);                                                             \
    } while (0)

/* Names the part of the test about to run (shown in failures, crashes and timeouts). */
#define SECTION(name)                                                 \
    do {                                                              \
        check_section_ = (name);                                      \
        fprintf(stderr, "%s: -- %s\n", check_name_, check_section_);  \
    } while (0)

static inline void check_write_str_(const char *s) {
    ssize_t r = write(2, s, strlen(s));
    (void)r;
}

static inline void check_on_alarm_(int sig) {
    (void)sig;
    check_write_str_(check_name_);
    check_write_str_(": TIMEOUT (hang) in section: ");
    check_write_str_(check_section_);
    check_write_str_("\n");
    _exit(124);
}

static inline void check_on_crash_(int sig) {
    if (getpid() == check_pid_) {
        check_write_str_(check_name_);
        check_write_str_(": CRASHED (signal in the test process) in section: ");
        check_write_str_(check_section_);
        check_write_str_("\n");
    }
    signal(sig, SIG_DFL);
    raise(sig);
}

/* Arms the watchdog: SIGALRM (a hang, named by its section) after `secs` of a quiet native run,
 * stretched 3x for a loaded machine, and 10x more under valgrind (faults.c took 615 s of its
 * 825 s there at load 22: each worker it starts is a new valgrind) or 2x under AddressSanitizer.
 * The harness (tests/c_api.rs) kills a program only after 4 x 55 s natively, 8 x 55 s under ASan
 * and 32 x 55 s under valgrind, so the watchdog speaks first. */
static inline void watchdog_arm(unsigned secs) {
    alarm((unsigned)(secs * 3 * by_tool_(10, 2)));
}

/* Call first in main: names the test, arms the watchdog (`watchdog_secs`, 55 at most: see
 * watchdog_arm), disables core dumps (tests crash workers on purpose), and reports crashes of
 * the test process itself with the section. Workers and children do not inherit the alarm; the
 * library may reset the handlers in them. */
static inline void test_begin(const char *name, unsigned watchdog_secs) {
    check_name_ = name;
    check_pid_ = getpid();
    struct rlimit no_core = {0, 0};
    setrlimit(RLIMIT_CORE, &no_core);
    signal(SIGALRM, check_on_alarm_);
    signal(SIGSEGV, check_on_crash_);
    signal(SIGBUS, check_on_crash_);
    signal(SIGABRT, check_on_crash_);
    signal(SIGFPE, check_on_crash_);
    setvbuf(stderr, NULL, _IONBF, 0);
    watchdog_arm(watchdog_secs);
}

/* Call last: returns main's exit status. */
static inline int test_finish(void) {
    alarm(0);
    int f = atomic_load(&check_failures_);
    if (f != 0) {
        fprintf(stderr, "%s: %d check(s) FAILED\n", check_name_, f);
        return 1;
    }
    fprintf(stderr, "%s: all checks passed\n", check_name_);
    return 0;
}

/* Anonymous shared memory created by the host: written by workers and children, read by the
 * host. Create it before pool_create so that workers see the mapping. */
static inline void *shared_alloc(size_t bytes) {
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
        perror("mmap");
        exit(1);
    }
    return p;
}

/* A gate in shared memory (create it with gate_open() before pool_create): tasks and processes
 * that wait at it return once the host sets `release`. */
struct gate {
    atomic_int release; /* blocking tasks and processes return once this is set */
    atomic_int started; /* blocking tasks that have started */
};
static struct gate *gate;

static inline void gate_open(void) {
    gate = shared_alloc(sizeof *gate);
}

static inline void wait_release(void) {
    WAIT_UNTIL(atomic_load(&gate->release), 30);
}

/* Counts itself started, waits at the gate, then squares its long. */
static inline int blocks(const void *in, void *out, void *ctx) {
    (void)ctx;
    atomic_fetch_add(&gate->started, 1);
    wait_release();
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* The state letter of `pid` in /proc (R, S, T, Z, ...); 0 once it is gone. */
static inline char proc_state(pid_t pid) {
    char path[64], buf[512];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f) return 0;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    const char *p = strrchr(buf, ')');
    return p ? p[2] : 0;
}

/* True once `pid` has exited (gone, or a zombie). */
static inline int is_dead(pid_t pid) {
    char s = proc_state(pid);
    return s == 0 || s == 'Z' || s == 'X';
}

/* How many children this (single-threaded) process has. */
static inline int count_children(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    FILE *f = fopen(path, "r");
    int n = 0, pid;
    while (f && fscanf(f, "%d", &pid) == 1) n++;
    if (f) fclose(f);
    return n;
}

/* Descriptors open in this process. */
static inline int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    int n = 0;
    while (d && readdir(d) != NULL) n++;
    if (d) closedir(d);
    return n;
}

/* Mappings of pools' shared memory in this process. */
static inline int pool_mappings(void) {
    FILE *f = fopen("/proc/self/maps", "r");
    char line[512];
    int n = 0;
    while (f && fgets(line, sizeof line, f)) n += strstr(line, "memfd:libpool") != NULL;
    if (f) fclose(f);
    return n;
}

/* What a pool makes a process hold: children, descriptors, mappings of pools' memory. */
struct holdings {
    int children, fds, maps;
};

static inline struct holdings holdings_now(void) {
    struct holdings h = {count_children(), count_fds(), pool_mappings()};
    return h;
}

/* The process holds what it held at `before` (say, after a pool_create that failed). */
#define CHECK_HOLDS_AS(before)                                  \
    do {                                                        \
        struct holdings now_ = holdings_now();                  \
        CHECK_EQ(now_.children, (before).children);             \
        CHECK_EQ(now_.fds, (before).fds);                       \
        CHECK_EQ(now_.maps, (before).maps);                     \
    } while (0)

/* This (single-threaded) process's only child, such as a pool's zygote; -1 if none. */
static inline pid_t only_child(void) {
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/task/%d/children", (int)getpid(), (int)getpid());
    FILE *f = fopen(path, "r");
    int pid = -1;
    if (f) {
        if (fscanf(f, "%d", &pid) != 1) pid = -1;
        fclose(f);
    }
    return pid;
}

/* Tasks several tests use (they run in workers). */

static inline int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static inline int sleeps(const void *in, void *out, void *ctx) {
    (void)ctx;
    sleep_s(*(const double *)in);
    if (out) *(long *)out = 42;
    return 0;
}

static inline int getpid_task(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    *(int *)out = getpid();
    return 0;
}

/* A pool_submit task that hands back its input. */
static inline int echo_task(const void *in, size_t len, void *ctx) {
    (void)ctx;
    return pool_out_write(in, len);
}

/* A process body that exits with 0. */
static inline int returns_0(void *arg) {
    (void)arg;
    return 0;
}

static inline int returns_7(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    return 7;
}

#endif /* POOL_TEST_CHECK_H */
