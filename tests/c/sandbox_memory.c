/* POOL_SANDBOX_COMPUTE: a task that takes over its process cannot write the pool's memory,
 * so it cannot rewrite another caller's result. The initializer (trusted, run before the
 * sandbox) keeps a copy of /proc/self/maps: every shared mapping its worker had (the pool's
 * memory, the worker's own read-write view of it, the memory of queues, locks and events). A hostile task then tries them all: mprotect to
 * read-write, a duplicate by mremap made read-write, and a write to 4096 addresses spread over
 * each (and every page of its first MiB), catching the faults. In a sandboxed pool nothing may succeed, while
 * innocent maps from another thread keep getting their exact bytes; in a plain pool the same
 * probe does find a way to write (the probe is real). */
#include "check.h"

#include <pthread.h>
#include <setjmp.h>
#include <fcntl.h>
#include <linux/futex.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/mman.h>
#include <sys/stat.h>

#define MAX_RANGES 16

struct ranges {
    int n;
    uintptr_t lo[MAX_RANGES], hi[MAX_RANGES];
};

/* What the initializer saw: the pool's mappings in its worker (each worker has its own copy). */
static struct ranges seen;

static void snapshot_maps(void *arg) {
    (void)arg;
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return;
    char line[512];
    while (fgets(line, sizeof line, f) && seen.n < MAX_RANGES) {
        unsigned long lo, hi;
        char perms[8];
        if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3 && perms[3] == 's') {
            seen.lo[seen.n] = lo;
            seen.hi[seen.n] = hi;
            seen.n++;
        }
    }
    fclose(f);
}

struct found {
    long ranges;       /* pool mappings known to the task */
    long probes;       /* addresses tried */
    long writable;     /* of which a write went through */
    long mprotect_ok;  /* mprotect(PROT_WRITE) calls that succeeded */
    long mremap_ok;    /* duplicates made writable */
};

static sigjmp_buf probe_jmp;

static void on_fault(int sig) {
    (void)sig;
    siglongjmp(probe_jmp, 1);
}

/* Writes the byte at `p` back onto itself, if it can: never changes memory. */
static int try_write(uintptr_t p) {
    if (sigsetjmp(probe_jmp, 1) != 0) return 0;
    volatile char *c = (volatile char *)p;
    char v = *c;
    *c = v;
    return 1;
}

enum { TRY_REMAP = 1, NO_WRITES = 2 };

static int attack(const void *in, void *out, void *ctx) {
    (void)ctx;
    const int *what = in; /* TRY_REMAP: also try mprotect and mremap; NO_WRITES: only those */
    struct found f;
    memset(&f, 0, sizeof f);
    struct sigaction sa, old_segv, old_bus;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_fault;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGSEGV, &sa, &old_segv);
    sigaction(SIGBUS, &sa, &old_bus);
    for (int i = 0; i < seen.n; i++) {
        uintptr_t lo = seen.lo[i], hi = seen.hi[i];
        f.ranges++;
        uintptr_t stride = ((hi - lo) / 4096 + 4095) & ~(uintptr_t)4095;
        for (uintptr_t p = lo; p < hi && !(*what & NO_WRITES); p += (p - lo < (1u << 20)) ? 4096 : stride) {
            f.probes++;
            f.writable += try_write(p);
        }
        if (*what & TRY_REMAP) {
            if (mprotect((void *)lo, hi - lo, PROT_READ | PROT_WRITE) == 0) f.mprotect_ok++;
            void *dup = mremap((void *)lo, 0, hi - lo, MREMAP_MAYMOVE);
            if (dup != MAP_FAILED) {
                if (mprotect(dup, hi - lo, PROT_READ | PROT_WRITE) == 0) f.mremap_ok++;
                munmap(dup, hi - lo);
            }
        }
    }
    sigaction(SIGSEGV, &old_segv, NULL);
    sigaction(SIGBUS, &old_bus, NULL);
    memcpy(out, &f, sizeof f);
    return 0;
}

static int triple(const void *in, void *out, void *ctx) {
    (void)ctx;
    *(long *)out = 3 * *(const long *)in;
    return 0;
}

/* A sandboxed pool of one worker, `tasks` tasks per process (0: the default); NULL, checked to
 * be POOL_ESYS, on a system without the sandbox. */
static pool_t *one_sandboxed(uint64_t tasks) {
    pool_options_t o;
    pool_options_init(&o);
    o.sandbox = POOL_SANDBOX_COMPUTE;
    o.sandbox_tasks_per_process = tasks;
    pool_t *p = pool_create(1, &o);
    if (!p) CHECK_ST(pool_last_status(), POOL_ESYS);
    return p;
}

/* ---- A thread a task left behind kills its process between items ---- */

/* The flag lives in pool_shm_alloc memory, which tasks read; the host sets it. */
static void *crash_when_told(void *arg) {
    const volatile int *flag = arg;
    while (!*flag) usleep(1000);
    *(volatile int *)(uintptr_t)8 = 1; /* SIGSEGV: the whole process goes */
    return NULL;
}

/* Returns its pid, leaving a thread that crashes once the host sets the flag `in` points to. */
static int leave_crasher_at(const void *in, void *out, void *ctx) {
    (void)ctx;
    void *flag = *(void *const *)in;
    pthread_t t;
    if (pthread_create(&t, NULL, crash_when_told, flag) != 0) return 1;
    pthread_detach(t);
    *(long *)out = getpid();
    return 0;
}

/* Whether process `pid` is gone or a zombie. */
static int dead(long pid) {
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/%ld/stat", pid);
    FILE *f = fopen(path, "r");
    if (!f) return 1;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    char *paren = strrchr(buf, ')');
    return !paren || paren[2] == 'Z' || paren[2] == 'X';
}

static void test_death_between_items(void) {
    SECTION("a thread a task left kills the task's process between items: the next item runs");
    pool_t *p = one_sandboxed(1000); /* the next item goes to the same process */
    if (!p) return;
    int *flag = pool_shm_alloc(p, sizeof(int));
    REQUIRE(flag != NULL);
    for (int round = 0; round < 3; round++) {
        *flag = 0;
        long pid = 0;
        const volatile int *const addr = flag;
        CHECK_ST(pool_apply(p, leave_crasher_at, &addr, sizeof addr, &pid, sizeof pid, NULL), POOL_OK);
        REQUIRE(pid > 0);
        *flag = 1;
        double t0 = now_s();
        while (!dead(pid) && now_s() - t0 < 60) sleep_s(0.001);
        CHECK(dead(pid));
        long x = 14 + round, y = 0;
        int st = pool_apply(p, triple, &x, sizeof x, &y, sizeof y, NULL);
        if (st != POOL_OK) fprintf(stderr, "  round %d: %s: %s\n", round, pool_strerror(st), pool_last_error());
        CHECK_ST(st, POOL_OK);
        CHECK_EQ(y, 3 * x);
    }
    pool_shm_free(p, flag);
    pool_destroy(p);
}

/* ---- A thread a hostile task leaves keeps writing where its output was ---- */

static void *scribble(void *arg) {
    volatile long *out = arg;
    for (;;) out[0] = 0x0bad0bad;
    return NULL;
}

/* Leaves a thread writing its output's place forever. */
static int leave_scribbler(const void *in, void *out, void *ctx) {
    (void)in, (void)ctx;
    pthread_t t;
    return pthread_create(&t, NULL, scribble, out) == 0 ? 0 : 1;
}

static int my_pid(const void *in, void *out, void *ctx) {
    (void)in, (void)ctx;
    *(long *)out = getpid();
    return 0;
}

static void test_fresh_process_per_task(void) {
    SECTION("a fresh process for every task: a thread a hostile task left never reaches the next result");
    pool_options_t o;
    pool_options_init(&o);
    o.sandbox = POOL_SANDBOX_COMPUTE;
    pool_t *p = pool_create(1, &o);
    if (!p) {
        CHECK_ST(pool_last_status(), POOL_ESYS);
        return;
    }
    long last = 0;
    for (int round = 0; round < 20; round++) {
        /* Its own result is the scribbler's to spoil: only its status is checked. */
        long spoiled = 0, x = round, y = 0, pid = 0;
        CHECK_ST(pool_apply(p, leave_scribbler, NULL, 0, &spoiled, sizeof spoiled, NULL), POOL_OK);
        int st = pool_apply(p, triple, &x, sizeof x, &y, sizeof y, NULL);
        CHECK_ST(st, POOL_OK);
        CHECK_EQ(y, 3 * x);
        CHECK_ST(pool_apply(p, my_pid, NULL, 0, &pid, sizeof pid, NULL), POOL_OK);
        CHECK(pid > 0 && pid != last); /* each task in a process of its own */
        last = pid;
    }
    pool_destroy(p);

    SECTION("sandbox_tasks_per_process: one process for that many tasks");
    o.sandbox_tasks_per_process = 1000;
    p = pool_create(1, &o);
    REQUIRE(p != NULL);
    CHECK(strstr(pool_sandbox_report(p), "every 1000 tasks") != NULL);
    long first = 0, pid = 0;
    CHECK_ST(pool_apply(p, my_pid, NULL, 0, &first, sizeof first, NULL), POOL_OK);
    for (int i = 0; i < 10; i++) {
        CHECK_ST(pool_apply(p, my_pid, NULL, 0, &pid, sizeof pid, NULL), POOL_OK);
        CHECK_EQ(pid, first);
    }
    pool_destroy(p);

    o.sandbox = POOL_SANDBOX_NONE;
    CHECK(pool_create(1, &o) == NULL);
    CHECK_ST(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("sandbox_tasks_per_process");
}

/* ---- Futexes of the pool's read-only words, and the parent-death signal ---- */

/* Tries to requeue the waiters of its own input's word (read-only pool memory, as the worker's
 * idle wait is) and to clear its parent-death signal: out[k] = errno of each (0: it worked). */
static int requeue_and_pdeathsig(const void *in, void *out, void *ctx) {
    (void)ctx;
    long *res = out;
    static int elsewhere;
    uint32_t v = *(const uint32_t *)in;
    res[0] = syscall(SYS_futex, in, FUTEX_CMP_REQUEUE, 0, 1, &elsewhere, v) < 0 ? errno : 0;
    res[1] = syscall(SYS_futex, in, FUTEX_REQUEUE, 0, 1, &elsewhere, 0) < 0 ? errno : 0;
    res[2] = prctl(PR_SET_PDEATHSIG, 0) < 0 ? errno : 0;
    res[3] = syscall(SYS_futex, in, FUTEX_WAKE, 1, NULL, NULL, 0) < 0 ? errno : 0; /* allowed */
    return 0;
}

static void test_futex_and_pdeathsig(void) {
    SECTION("no futex requeue of the pool's words, no clearing the parent-death signal");
    pool_t *p = one_sandboxed(0);
    if (!p) return;
    uint32_t word = 7;
    long res[4] = {-1, -1, -1, -1};
    CHECK_ST(pool_apply(p, requeue_and_pdeathsig, &word, sizeof word, res, sizeof res, NULL), POOL_OK);
    CHECK_EQ(res[0], ENOSYS);
    CHECK_EQ(res[1], ENOSYS);
    CHECK_EQ(res[2], EPERM);
    CHECK_EQ(res[3], 0);
    pool_destroy(p);
}

/* ---- The host's stdout is not the task's to change ---- */

/* Prints a line, then tries to truncate, chmod and make non-blocking what it has as stdout. */
static int spoil_stdout(const void *in, void *out, void *ctx) {
    (void)in, (void)ctx;
    printf("a line from a task\n");
    fflush(stdout);
    long tried = 0;
    tried += ftruncate(1, 0) == 0;
    tried += fchmod(1, 04777) == 0;
    tried += fcntl(1, F_SETFL, O_NONBLOCK | O_APPEND) == 0;
    *(long *)out = tried;
    return 0;
}

static void test_stdout(void) {
    SECTION("a task cannot truncate, chmod or change the flags of the host's stdout file");
    char path[] = "/tmp/pool-sandbox-stdout-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    fflush(stdout);
    int saved = dup(1);
    REQUIRE(saved >= 0 && dup2(fd, 1) == 1);
    printf("a line from the host\n");
    fflush(stdout);
    pool_t *p = one_sandboxed(0);
    if (p) {
        long tried = -1;
        CHECK_ST(pool_apply(p, spoil_stdout, NULL, 0, &tried, sizeof tried, NULL), POOL_OK);
        pool_destroy(p);
    }
    int host_flags = fcntl(1, F_GETFL);
    fflush(stdout);
    dup2(saved, 1);
    close(saved);
    struct stat st;
    REQUIRE(fstat(fd, &st) == 0);
    char buf[256] = {0};
    ssize_t n = pread(fd, buf, sizeof buf - 1, 0);
    close(fd);
    unlink(path);
    CHECK(n > 0 && strncmp(buf, "a line from the host\n", 21) == 0); /* not truncated */
    if (p) CHECK(strstr(buf, "a line from a task\n") != NULL);      /* what it printed got there */
    CHECK_EQ(st.st_mode & 07777, 0600);                               /* mkstemp's mode */
    CHECK_EQ(host_flags & O_NONBLOCK, 0);
}

/* ---- What tasks print: whole lines, and stdout and stderr in the order written ---- */

/* Task `in` writes 2,000 whole lines, one write() each, then alternates stderr and stdout. */
static int print_lines(const void *in, void *out, void *ctx) {
    (void)out, (void)ctx;
    int id = *(const int *)in;
    char buf[200];
    for (int i = 0; i < 2000; i++) {
        int n = snprintf(buf, sizeof buf, "LINE %d %04d %0100d\n", id, i, 0);
        if (write(1, buf, (size_t)n) != n) return 1;
    }
    for (int i = 0; i < 5; i++) {
        dprintf(2, "E%d.%d\n", id, i);
        dprintf(1, "O%d.%d\n", id, i);
    }
    return 0;
}

static void test_printing(void) {
    SECTION("what tasks print: whole lines, stdout and stderr in the order written (2>&1)");
    char path[] = "/tmp/pool-sandbox-print-XXXXXX";
    int fd = mkstemp(path);
    REQUIRE(fd >= 0);
    fflush(stdout);
    int saved_out = dup(1), saved_err = dup(2);
    REQUIRE(dup2(fd, 1) == 1 && dup2(fd, 2) == 2); /* one open file, as 2>&1 makes */
    pool_options_t o;
    pool_options_init(&o);
    o.sandbox = POOL_SANDBOX_COMPUTE;
    pool_t *p = pool_create(2, &o);
    int ids[8] = {0, 1, 2, 3, 4, 5, 6, 7}, outs[8], st = POOL_OK;
    if (p) {
        pool_map_options_t mo;
        pool_map_options_init(&mo);
        mo.chunksize = 1;
        st = pool_map_ex(p, print_lines, ids, sizeof(int), outs, sizeof(int), 8, NULL, &mo);
        pool_destroy(p);
    }
    dup2(saved_out, 1);
    dup2(saved_err, 2);
    close(saved_out);
    close(saved_err);
    if (!p) {
        close(fd);
        unlink(path);
        CHECK_ST(pool_last_status(), POOL_ESYS);
        return;
    }
    if (st != POOL_OK) fprintf(stderr, "  %s\n", pool_last_error());
    CHECK_ST(st, POOL_OK);
    FILE *f = fdopen(fd, "r");
    REQUIRE(f != NULL);
    rewind(f);
    char line[512];
    int lines = 0, torn = 0, next_e[8] = {0}, next_o[8] = {0}, order_bad = 0;
    while (fgets(line, sizeof line, f)) {
        int id, i;
        char rest[200];
        if (sscanf(line, "LINE %d %d %199s", &id, &i, rest) == 3 && strlen(line) == 5 + 2 + 5 + 101) {
            lines++;
        } else if (sscanf(line, "E%d.%d", &id, &i) == 2 && id >= 0 && id < 8) {
            order_bad += i != next_e[id] || next_o[id] != i; /* E i comes right after O i-1 */
            next_e[id] = i + 1;
        } else if (sscanf(line, "O%d.%d", &id, &i) == 2 && id >= 0 && id < 8) {
            order_bad += i != next_o[id] || next_e[id] != i + 1;
            next_o[id] = i + 1;
        } else {
            torn++;
        }
    }
    fclose(f);
    unlink(path);
    CHECK_EQ(lines, 8 * 2000);
    CHECK_EQ(torn, 0);
    CHECK_EQ(order_bad, 0);
}

static pool_t *shared_pool;
static atomic_int innocent_stop, innocent_bad, innocent_done;

/* Maps whose every result is checked, from another thread, while the attacks run. */
static void *innocent(void *arg) {
    (void)arg;
    for (long i = 0; !atomic_load(&innocent_stop); i++) {
        long xs[256], ys[256];
        for (int k = 0; k < 256; k++) xs[k] = i * 256 + k, ys[k] = -1;
        int st = pool_map(shared_pool, triple, xs, sizeof(long), ys, sizeof(long), 256, NULL);
        for (int k = 0; k < 256; k++) atomic_fetch_add(&innocent_bad, st != POOL_OK || ys[k] != 3 * xs[k]);
        atomic_fetch_add(&innocent_done, 1);
    }
    return NULL;
}

static pool_t *make_pool(int sandbox) {
    pool_options_t o;
    pool_options_init(&o);
    o.sandbox = sandbox;
    o.initializer = snapshot_maps;
    return pool_create(2, &o);
}

static void test_sandboxed(void) {
    SECTION("a hostile task against every mapping of the pool its worker had");
    shared_pool = make_pool(POOL_SANDBOX_COMPUTE);
    if (!shared_pool) {
        CHECK_ST(pool_last_status(), POOL_ESYS);
        fprintf(stderr, "  no sandbox here (%s): skipped\n", pool_last_error());
        return;
    }
    pthread_t t;
    pthread_create(&t, NULL, innocent, NULL);
    for (int round = 0; round < 4; round++) {
        int what = round % 2 ? TRY_REMAP : 0;
        struct found f;
        memset(&f, 0xff, sizeof f);
        CHECK_ST(pool_apply(shared_pool, attack, &what, sizeof what, &f, sizeof f, NULL), POOL_OK);
        if (round == 0)
            fprintf(stderr, "  %ld pool mappings known, %ld addresses probed: %ld writable, %ld mprotect, %ld mremap\n",
                    f.ranges, f.probes, f.writable, f.mprotect_ok, f.mremap_ok);
        CHECK(f.ranges >= 1);
        CHECK(f.probes > 100);
        CHECK_EQ(f.writable, 0);
        CHECK_EQ(f.mprotect_ok, 0);
        CHECK_EQ(f.mremap_ok, 0);
    }
    /* Innocent maps ran beside the attacks, and after them. */
    int until = atomic_load(&innocent_done) + 3;
    double t0 = now_s();
    while (atomic_load(&innocent_done) < until && now_s() - t0 < 120) sleep_s(0.01);
    atomic_store(&innocent_stop, 1);
    pthread_join(t, NULL);
    CHECK(atomic_load(&innocent_done) >= until);
    CHECK_EQ(atomic_load(&innocent_bad), 0);
    long x = 14, y = 0;
    CHECK_ST(pool_apply(shared_pool, triple, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
    CHECK_EQ(y, 42);
    pool_destroy(shared_pool);
}

static void test_plain_control(void) {
    SECTION("the same probe in a plain pool finds a way to write");
    pool_t *p = make_pool(POOL_SANDBOX_NONE);
    REQUIRE(p != NULL);
    /* Without writes: a byte written back onto itself could race with the pool's own words. */
    int what = TRY_REMAP | NO_WRITES;
    struct found f;
    memset(&f, 0, sizeof f);
    CHECK_ST(pool_apply(p, attack, &what, sizeof what, &f, sizeof f, NULL), POOL_OK);
    fprintf(stderr, "  plain pool: %ld mappings, %ld made writable by mprotect, %ld by mremap\n", f.ranges,
            f.mprotect_ok, f.mremap_ok);
    CHECK(f.ranges >= 1);
    CHECK(f.mprotect_ok > 0);
    pool_destroy(p);
}

int main(void) {
    test_begin("sandbox_memory", 300);
    test_sandboxed();
    test_plain_control();
    test_death_between_items();
    test_fresh_process_per_task();
    test_stdout();
    test_futex_and_pdeathsig();
    test_printing();
    return test_finish();
}
