/* pool.h against the packaged library: a map over worker processes, results checked. */
#include <pool.h>

#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

static int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int worker_pid(const void *in, void *out, void *ctx) {
    (void)in;
    (void)ctx;
    *(long *)out = (long)getpid();
    return 0;
}

int main(void) {
    enum { N = 1000 };
    static long xs[N], ys[N];
    pool_t *pool = pool_create(2, NULL);
    if (!pool) {
        fprintf(stderr, "pool_create: %s\n", pool_last_error());
        return 1;
    }
    for (int i = 0; i < N; i++) xs[i] = i;
    int s = pool_map(pool, square, xs, sizeof xs[0], ys, sizeof ys[0], N, NULL);
    if (s != POOL_OK) {
        fprintf(stderr, "pool_map: %s (%s)\n", pool_strerror(s), pool_last_error());
        return 1;
    }
    long sum = 0;
    for (int i = 0; i < N; i++) {
        if (ys[i] != xs[i] * xs[i]) {
            fprintf(stderr, "pool_map: item %d is %ld\n", i, ys[i]);
            return 1;
        }
        sum += ys[i];
    }
    long pids[8];
    s = pool_map(pool, worker_pid, xs, sizeof xs[0], pids, sizeof pids[0], 8, NULL);
    if (s != POOL_OK) {
        fprintf(stderr, "pool_map: %s (%s)\n", pool_strerror(s), pool_last_error());
        return 1;
    }
    for (int i = 0; i < 8; i++) {
        if (pids[i] == (long)getpid()) {
            fprintf(stderr, "pool_map ran item %d in the calling process\n", i);
            return 1;
        }
    }
    if (pool_close(pool) != POOL_OK || pool_join(pool) != POOL_OK) {
        fprintf(stderr, "pool_close/pool_join: %s\n", pool_last_error());
        return 1;
    }
    pool_destroy(pool);
    printf("test_c: libpool %s, sum of squares 0..999 = %ld\n", pool_version(), sum);
    return sum == 332833500L ? 0 : 1;
}
