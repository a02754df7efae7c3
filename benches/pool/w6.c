/* W6: start-up.
 *   bench_pool w6 HEAP_MIB REPS   pool_create -> first result (pool_apply) -> pool_destroy, in a
 *                                 host with HEAP_MIB of touched heap: medians of REPS (after a
 *                                 warm-up), and of a bare fork of this host (diagnostic) */
#include "bench.h"
#include <sys/wait.h>
#include <unistd.h>

void w6_main(int argc, char **argv) {
    size_t heap_mib = (size_t)arg(argc, argv, 1, 0);
    int reps = (int)arg(argc, argv, 2, 3);
    char *heap = NULL;
    if (heap_mib) {
        heap = malloc(heap_mib * MIB);
        if (!heap) die("out of memory");
        memset(heap, 1, heap_mib * MIB);
    }
    double *tf = calloc(reps, sizeof *tf), *td = calloc(reps, sizeof *td), *tk = calloc(reps, sizeof *tk);
    if (!tf || !td || !tk) die("out of memory");
    for (int r = -1; r < reps; r++) {
        long x = 7, y = 0;
        double t0 = now_s();
        pool_t *pool = make_pool();
        check(pool_apply(pool, square, &x, sizeof x, &y, sizeof y, NULL), "pool_apply");
        double t1 = now_s();
        pool_destroy(pool);
        double t2 = now_s();
        if (y != 49) die("W6: wrong result");
        if (r >= 0) {
            tf[r] = t1 - t0;
            td[r] = t2 - t1;
        }
    }
    /* Diagnostic: one bare fork of this process (child exits at once, parent reaps it). */
    for (int r = 0; r < reps; r++) {
        double t0 = now_s();
        pid_t pid = fork();
        if (pid == 0) _exit(0);
        if (pid < 0 || waitpid(pid, NULL, 0) != pid) die("fork");
        tk[r] = now_s() - t0;
    }
    char key[64];
    snprintf(key, sizeof key, "w6.diag.%zu.fork_s", heap_mib);
    result(key, median(tk, reps));
    snprintf(key, sizeof key, "w6.pool.%zu.first_s", heap_mib);
    result(key, median(tf, reps));
    snprintf(key, sizeof key, "w6.pool.%zu.destroy_s", heap_mib);
    result(key, median(td, reps));
    if (heap) {
        volatile char c = heap[heap_mib * MIB - 1];
        (void)c;
        free(heap);
    }
    free(tf);
    free(td);
    free(tk);
}
