/* The notebook's Process example, extended: each process sends its result back to the parent
 * through a queue (multiprocessing.Queue), a lock keeps their lines whole, and an event tells
 * them all to start at once. */
#include <pool.h>
#include <stdio.h>
#include <stdlib.h>

static pool_queue_t *results;
static pool_lock_t *print_lock;
static pool_event_t *start;

/* multiprocessing.Process.run: waits for the start signal, computes, reports. */
static int run(void *arg) {
    int id = *(int *)arg;
    if (pool_event_wait(start, 10) != POOL_OK) return 1;
    int st = pool_lock_acquire(print_lock, -1);
    if (st != POOL_OK && st != POOL_EOWNERDEAD) return 1; /* EOWNERDEAD: a holder died; ours now */
    printf("Invoked run()\n");
    printf("Process ID is %d\n", id);
    fflush(stdout);
    pool_lock_release(print_lock);
    long result[2] = {id, (long)id * id};
    return pool_queue_put(results, result, sizeof result, 10) == POOL_OK ? 0 : 1;
}

static void check(int status, const char *what) {
    if (status != POOL_OK) {
        fprintf(stderr, "%s: %s (%s)\n", what, pool_strerror(status), pool_last_error());
        exit(1);
    }
}

int main(void) {
    results = pool_queue_create(1024);
    print_lock = pool_lock_create();
    start = pool_event_create();
    if (!results || !print_lock || !start) {
        fprintf(stderr, "%s\n", pool_last_error());
        return 1;
    }
    int ids[] = {100, 0, 1};
    pool_process_t *p[3];
    for (int i = 0; i < 3; i++) {
        p[i] = pool_process_create(run, &ids[i]);
        check(pool_process_start(p[i]), "pool_process_start");
    }
    check(pool_event_set(start), "pool_event_set"); /* all three go */
    long sum = 0;
    for (int i = 0; i < 3; i++) {
        long r[2];
        size_t len;
        check(pool_queue_get(results, r, sizeof r, &len, 10), "pool_queue_get");
        sum += r[1];
    }
    for (int i = 0; i < 3; i++) {
        check(pool_process_join(p[i], -1), "pool_process_join");
        pool_process_free(p[i]);
    }
    printf("sum of squares from the processes: %ld\n", sum);
    pool_queue_free(results);
    pool_lock_free(print_lock);
    pool_event_free(start);
    return sum == 100 * 100 + 0 + 1 ? 0 : 1;
}
