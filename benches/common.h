/* Shared helpers of the C benchmark programs (benches/run.sh builds and runs them).
 * Every program prints its figures as lines "RESULT <key> <value>" on stdout; run.sh collects
 * them and benches/report.py turns them into the table and BENCHMARKS.md. */
#ifndef BENCH_COMMON_H
#define BENCH_COMMON_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static inline double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* Sorts v in place and returns the q-quantile (0 <= q <= 1, nearest rank). */
static inline double quantile(double *v, size_t n, double q) {
    qsort(v, n, sizeof *v, cmp_double);
    size_t i = (size_t)(q * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

static inline double median(double *v, size_t n) {
    return quantile(v, n, 0.5);
}

static inline void result(const char *key, double value) {
    printf("RESULT %s %.9g\n", key, value);
    fflush(stdout);
}

static inline void die(const char *what) {
    fprintf(stderr, "bench: %s\n", what);
    exit(1);
}

/* The W4 task: a calibrated CPU-bound loop (a 64-bit LCG; each step depends on the previous one,
 * so the compiler can neither vectorise nor shortcut it). */
static __attribute__((noinline, unused)) unsigned long busy(unsigned long iters, unsigned long seed) {
    unsigned long x = seed;
    for (unsigned long i = 0; i < iters; i++) {
        x = x * 6364136223846793005UL + 1442695040888963407UL;
        __asm__ volatile("" : "+r"(x));
    }
    return x;
}

/* The W5 transform: out = in ^ 0x5a5a... (word by word; memory bound like a copy). */
static inline void xor_bytes(const void *in, void *out, size_t len) {
    const unsigned long *s = in;
    unsigned long *d = out;
    for (size_t i = 0; i < len / sizeof(long); i++) d[i] = s[i] ^ 0x5a5a5a5a5a5a5a5aUL;
}

/* Fills a 1 MiB-block input with a pattern that differs from block to block. */
static inline void fill_pattern(unsigned char *p, size_t len, unsigned seed) {
    unsigned long *w = (unsigned long *)p;
    for (size_t i = 0; i < len / sizeof(long); i++) w[i] = (i * 0x9e3779b97f4a7c15UL) ^ seed;
}

#endif
