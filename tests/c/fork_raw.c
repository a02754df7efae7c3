/* Forks that run no fork handler (glibc's _Fork, a raw fork system call) are told apart as well
 * as fork() is: the library keeps its pid in a page the kernel zeroes in every child.
 * - the host's child gets POOL_EINVAL for the inherited pool and Process, and its
 *   pool_destroy leaves the parent's pool working;
 * - a task that forks this way and returns in both processes: the child leaves at once and
 *   never acts as the worker (the result is the task's own, without the child's failure), and
 *   nothing runs twice. */
#include "check.h"

#include <sys/syscall.h>
#include <sys/wait.h>

/* A fork that skips pthread_atfork handlers. */
static pid_t raw_fork(void) {
#if defined(__GLIBC__) && (__GLIBC__ > 2 || (__GLIBC__ == 2 && __GLIBC_MINOR__ >= 34))
    return _Fork();
#else
    return (pid_t)syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
#endif
}

#define N 500
static atomic_int *runs; /* shared with the workers: starts per item */

/* Both processes return into the pool's code: the child with a failure, which would show (the
 * apply failing, or its record in the result) if the child acted as the worker. (The child does
 * not write `out`: its own write to shared memory, where results are written in place, would
 * be user code's, not the library's.) */
static int fork_and_return(const void *in, void *out, void *ctx) {
    (void)in, (void)ctx;
    if (raw_fork() == 0) return 5;
    *(long *)out = 7;
    return 0;
}

static int count(const void *in, void *out, void *ctx) {
    (void)ctx;
    long i = *(const long *)in;
    atomic_fetch_add(&runs[i], 1);
    *(long *)out = i * i;
    return 0;
}

static int sleeper(void *arg) {
    (void)arg;
    sleep(3600); /* killed by the test */
    return 3;
}

static int map_once_each(pool_t *p) {
    static long xs[N], ys[N];
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 1;
    for (long i = 0; i < N; i++) xs[i] = i, ys[i] = -1, runs[i] = 0;
    int st = pool_map_ex(p, count, xs, sizeof xs[0], ys, sizeof ys[0], N, NULL, &mo);
    int bad = 0;
    for (long i = 0; i < N; i++) bad += runs[i] != 1 || ys[i] != i * i;
    return st == POOL_OK && bad == 0;
}

int main(void) {
    test_begin("fork_raw", 55);
    runs = shared_alloc(N * sizeof *runs);
    pool_t *p = pool_create(2, NULL);
    REQUIRE(p != NULL);

    SECTION("a task forks without fork handlers and both processes return: the child leaves");
    for (int i = 0; i < 10; i++) {
        long x = 0, y = 0;
        CHECK_ST(pool_apply(p, fork_and_return, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
        CHECK_EQ(y, 7);
    }
    CHECK(map_once_each(p));

    SECTION("the host forks without fork handlers: the child cannot use the parent's pool or Process");
    pool_process_t *pr = pool_process_create(sleeper, NULL);
    REQUIRE(pr != NULL);
    CHECK_ST(pool_process_start(pr), POOL_OK);
    fflush(NULL);
    pid_t c = raw_fork();
    if (c == 0) {
        long a = 3, b = 0;
        int bad = pool_apply(p, count, &a, sizeof a, &b, sizeof b, NULL) != POOL_EINVAL;
        bad += pool_process_kill(pr) != POOL_EINVAL;
        pool_process_free(pr);
        pool_destroy(p); /* releases the child's copy only */
        _exit(bad);
    }
    int ws = 0;
    CHECK_EQ(waitpid(c, &ws, 0), c);
    CHECK(WIFEXITED(ws) && WEXITSTATUS(ws) == 0);
    CHECK(pool_process_is_alive(pr));
    CHECK(map_once_each(p));
    CHECK_ST(pool_process_kill(pr), POOL_OK);
    CHECK_ST(pool_process_join(pr, guard_s(30)), POOL_OK);
    pool_process_free(pr);
    pool_destroy(p);
    return test_finish();
}
