/* The notebook's Pool scenarios on every rank of an MPI job, then a heavier job: counting the
 * primes below 20 million in 400 blocks, one of which crashes its worker on purpose. That block
 * fails alone, with a message naming where it ran; the other 399 finish; the job goes on.
 *   mpicc mpi_primes.c -lpool_mpi -lpool -o mpi_primes && mpirun -np 4 ./mpi_primes */
#include <pool_mpi.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define BLOCKS 400
#define LIMIT 20000000L
#define CRASHING_BLOCK 123

static int rank;

static int square(const void *in, void *out, void *ctx) {
    (void)ctx;
    long x = *(const long *)in;
    *(long *)out = x * x;
    return 0;
}

/* The number of primes in block b of [2, LIMIT), and the rank that counted them. */
struct count {
    long primes;
    long rank;
};

static int count_primes(const void *in, void *out, void *ctx) {
    (void)ctx;
    long b = *(const long *)in, lo = 2 + b * (LIMIT / BLOCKS), hi = lo + LIMIT / BLOCKS, n = 0;
    if (b == CRASHING_BLOCK) raise(SIGSEGV); /* a bug in user code: this block fails alone */
    for (long x = lo | 1; x < hi; x += 2) {
        int prime = 1;
        for (long d = 3; d * d <= x && prime; d += 2) prime = x % d != 0;
        n += prime;
    }
    ((struct count *)out)->primes = n + (lo == 2);
    ((struct count *)out)->rank = rank;
    return 0;
}

static void print_longs(const long *v, int n) {
    printf("[");
    for (int i = 0; i < n; i++) printf(i ? ", %ld" : "%ld", v[i]);
    printf("]\n");
}

int main(int argc, char **argv) {
    int provided, size;
    MPI_Init_thread(&argc, &argv, MPI_THREAD_MULTIPLE, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    pool_t *pool = pool_create_mpi(MPI_COMM_WORLD, 0, 2, NULL);
    if (!pool) {
        int st = pool_last_status();
        if (st != POOL_EDONE) fprintf(stderr, "rank %d: pool_create_mpi: %s\n", rank, pool_last_error());
        MPI_Finalize();
        return st == POOL_EDONE ? 0 : 1; /* the other ranks served the root until it was done */
    }
    printf("%d workers on %d ranks\n", pool_workers(pool), size);

    long xs[] = {2, 3, 4, 6}, ys[4];
    pool_map(pool, square, xs, sizeof xs[0], ys, sizeof ys[0], 4, NULL);
    print_longs(ys, 4);
    long in[100], out[100];
    pool_async_t *r[100];
    for (int i = 0; i < 100; i++) {
        in[i] = i;
        r[i] = pool_apply_async(pool, square, &in[i], sizeof in[i], &out[i], sizeof out[i], NULL);
    }
    for (int i = 0; i < 100; i++) {
        pool_async_get(r[i], -1);
        pool_async_free(r[i]);
    }
    print_longs(out, 100);

    static long blocks[BLOCKS];
    static struct count counts[BLOCKS];
    static int statuses[BLOCKS];
    for (long b = 0; b < BLOCKS; b++) blocks[b] = b;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 1;
    mo.statuses = statuses;
    double t0 = MPI_Wtime();
    int st = pool_map_ex(pool, count_primes, blocks, sizeof blocks[0], counts, sizeof counts[0], BLOCKS, NULL, &mo);
    double took = MPI_Wtime() - t0;
    printf("map: %s (%s)\n", pool_strerror(st), st ? pool_last_error() : "");
    long primes = 0, per_rank[64] = {0};
    int failed = 0;
    for (int b = 0; b < BLOCKS; b++) {
        if (statuses[b] != POOL_OK) {
            failed++;
            continue;
        }
        primes += counts[b].primes;
        if (counts[b].rank >= 0 && counts[b].rank < 64) per_rank[counts[b].rank]++;
    }
    printf("%ld primes below %ld outside the failed block(s); %d block(s) failed; %.2f s\n", primes, LIMIT, failed, took);
    for (int i = 0; i < size && i < 64; i++) printf("rank %d counted %ld blocks\n", i, per_rank[i]);
    pool_destroy(pool);
    MPI_Finalize();
    return failed == 1 ? 0 : 1;
}
