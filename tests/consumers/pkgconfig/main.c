/* The seed scenarios in C, linked through pkg-config, with their results checked. Prints what
 * c_examples/seed.c prints; exits nonzero on any mismatch. EXPECTED_VERSION comes from
 * `pkg-config --modversion pool`, so pool.pc, pool.h and the library are checked to agree. */
#include <pool.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#ifndef EXPECTED_VERSION
#error "build with -DEXPECTED_VERSION=\"$(pkg-config --modversion pool)\""
#endif

static int failures = 0;

static void expect(int ok, const char *what) {
    if (!ok) {
        fprintf(stderr, "FAIL: %s\n", what);
        failures++;
    }
}

static void check(int status, const char *what) {
    if (status != POOL_OK) {
        fprintf(stderr, "FAIL: %s: %s (%s)\n", what, pool_strerror(status), pool_last_error());
        exit(1);
    }
}

static int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

static int run(void *arg) {
    printf("Invoked run()\n");
    sleep(1);
    printf("Process ID is %d\n", *(int *)arg);
    return 0;
}

static void print_longs(const long *v, int n) {
    printf("[");
    for (int i = 0; i < n; i++) printf(i ? ", %ld" : "%ld", v[i]);
    printf("]\n");
}

int main(void) {
    char version[32];
    snprintf(version, sizeof version, "%d.%d.%d", POOL_VERSION_MAJOR, POOL_VERSION_MINOR, POOL_VERSION_PATCH);
    expect(strcmp(pool_version(), EXPECTED_VERSION) == 0, "pool_version() equals pkg-config --modversion");
    expect(strcmp(version, EXPECTED_VERSION) == 0, "POOL_VERSION_* equal pkg-config --modversion");

    int ids[] = {100, 0, 1};
    for (int i = 0; i < 3; i++) {
        pool_process_t *p = pool_process_create(run, &ids[i]);
        expect(p != NULL, "pool_process_create");
        if (!p) return 1;
        check(pool_process_start(p), "pool_process_start");
        check(pool_process_join(p, -1), "pool_process_join");
        int code = -1;
        check(pool_process_exitcode(p, &code), "pool_process_exitcode");
        expect(code == 0, "process exit code 0");
        pool_process_free(p);
    }

    pool_t *all = pool_create(0, NULL);
    if (!all) { fprintf(stderr, "FAIL: pool_create: %s\n", pool_last_error()); return 1; }
    expect(pool_workers(all) >= 1, "Pool() has workers");
    pool_destroy(all);

    pool_t *pool = pool_create(2, NULL);
    if (!pool) { fprintf(stderr, "FAIL: pool_create: %s\n", pool_last_error()); return 1; }
    expect(pool_workers(pool) == 2, "Pool(2) has 2 workers");

    long xs[] = {2, 3, 4, 6}, ys[4], zs[4];
    check(pool_map(pool, square, xs, sizeof xs[0], ys, sizeof ys[0], 4, NULL), "pool_map");
    pool_async_t *a = pool_map_async(pool, square, xs, sizeof xs[0], zs, sizeof zs[0], 4, NULL);
    if (!a) { fprintf(stderr, "FAIL: pool_map_async: %s\n", pool_last_error()); return 1; }
    print_longs(ys, 4);
    check(pool_async_get(a, -1), "pool_async_get");
    expect(pool_async_ready(a) && pool_async_successful(a), "map_async ready and successful");
    pool_async_free(a);
    print_longs(zs, 4);
    for (int i = 0; i < 4; i++) expect(ys[i] == xs[i] * xs[i] && zs[i] == xs[i] * xs[i], "map results");

    long in[100], out[100];
    pool_async_t *r[100];
    for (int i = 0; i < 100; i++) {
        in[i] = i;
        r[i] = pool_apply_async(pool, square, &in[i], sizeof in[i], &out[i], sizeof out[i], NULL);
        if (!r[i]) { fprintf(stderr, "FAIL: pool_apply_async: %s\n", pool_last_error()); return 1; }
    }
    for (int i = 0; i < 100; i++) {
        check(pool_async_get(r[i], -1), "pool_async_get");
        pool_async_free(r[i]);
        expect(out[i] == (long)i * i, "apply_async result");
    }
    print_longs(out, 100);
    printf("%ld\n", out[99]);

    check(pool_close(pool), "pool_close");
    check(pool_join(pool), "pool_join");
    pool_destroy(pool);

    if (failures) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    return 0;
}
