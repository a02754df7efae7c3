/* The multiprocessing notebook, in C: a Process, then Pool.map, map_async and apply_async. */
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

/* multiprocessing.Process.run */
static int run(void *arg) {
    printf("Invoked run()\n");
    sleep(1);
    printf("Process ID is %d\n", *(int *)arg);
    return 0;
}

static void check(int status, const char *what) {
    if (status != POOL_OK) {
        fprintf(stderr, "%s: %s (%s)\n", what, pool_strerror(status), pool_last_error());
        exit(1);
    }
}

static void start_and_join(int id) {
    pool_process_t *p = pool_process_create(run, &id);
    check(pool_process_start(p), "pool_process_start");
    check(pool_process_join(p, -1), "pool_process_join");
    pool_process_free(p);
}

static void print_longs(const long *v, int n) {
    printf("[");
    for (int i = 0; i < n; i++) printf(i ? ", %ld" : "%ld", v[i]);
    printf("]\n");
}

int main(void) {
    start_and_join(100);
    start_and_join(0);
    start_and_join(1);

    pool_t *all = pool_create(0, NULL); /* Pool(): one worker per CPU */
    if (!all) { fprintf(stderr, "pool_create: %s\n", pool_last_error()); return 1; }
    pool_destroy(all);

    pool_t *pool = pool_create(2, NULL); /* Pool(processes=2) */
    if (!pool) { fprintf(stderr, "pool_create: %s\n", pool_last_error()); return 1; }

    long xs[] = {2, 3, 4, 6}, ys[4], zs[4];
    check(pool_map(pool, square, xs, sizeof xs[0], ys, sizeof ys[0], 4, NULL), "pool_map");
    pool_async_t *a = pool_map_async(pool, square, xs, sizeof xs[0], zs, sizeof zs[0], 4, NULL);
    if (!a) { fprintf(stderr, "pool_map_async: %s\n", pool_last_error()); return 1; }
    print_longs(ys, 4);
    check(pool_async_get(a, -1), "pool_async_get");
    pool_async_free(a);
    print_longs(zs, 4);

    long in[100], out[100];
    pool_async_t *r[100];
    for (int i = 0; i < 100; i++) {
        in[i] = i;
        r[i] = pool_apply_async(pool, square, &in[i], sizeof in[i], &out[i], sizeof out[i], NULL);
        if (!r[i]) { fprintf(stderr, "pool_apply_async: %s\n", pool_last_error()); return 1; }
    }
    for (int i = 0; i < 100; i++) {
        check(pool_async_get(r[i], -1), "pool_async_get");
        pool_async_free(r[i]);
    }
    print_longs(out, 100);
    printf("%d\n", 99 * 99);

    check(pool_close(pool), "pool_close");
    check(pool_join(pool), "pool_join");
    pool_destroy(pool);
    return 0;
}
