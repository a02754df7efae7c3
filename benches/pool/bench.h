/* The libpool side of the benchmark: one program, bench_pool, built from the files of this
 * directory (benches/run.sh builds it). Each workload lives in a file of its own and has an entry
 * point `<name>_main(argc, argv)` (argv[0] is the workload's name); main.c dispatches.
 *
 * The same sources are built against older libraries too (`make bench BASE=<commit>`): run.sh
 * probes the library's header and passes -DHAVE_<feature> for what it has (HAVE_MAP_BLOCKS,
 * HAVE_CALL_OPTIONS, HAVE_WAIT_ANY, HAVE_CALLBACK, BENCH_UNPREFIXED_ASYNC); a workload file that
 * still does not compile is left out, and main.c reports that workload as skipped.
 *
 * Figures go to stdout as "RESULT key value" (benches/report.py reads them); a figure a library
 * cannot give is a line "SKIP key why". Keys *.diag.* are diagnostics the report uses to explain
 * the figures. Every timed result is checked. */
#ifndef BENCH_POOL_H
#define BENCH_POOL_H

#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include "common.h"
#include <pool.h>

/* Libraries before the pool_ prefix of the result calls (92f6dbf and older). */
#ifdef BENCH_UNPREFIXED_ASYNC
#define pool_async_get async_get
#define pool_async_free async_free
#define pool_async_wait async_wait
#endif

#define WORKERS 2
#define MIB (1UL << 20)

void check(int st, const char *what);
pool_t *make_pool(void);
long *alloc_longs(size_t n, int touch);
/* out = in * in over longs: the task of W1, W2, W3 and W7. */
int square(const void *in, void *out, void *ctx);
/* Integer argument i of argv, or dflt when absent. */
long arg(int argc, char **argv, int i, long dflt);
/* A figure this library cannot give: a line "SKIP key why". */
void skip(const char *key, const char *why);

/* ---- CPU time ---------------------------------------------------------------------------------- */
double thread_cpu_s(void);
double process_cpu_s(void);
/* The host and all its descendants (the zygote and the workers): pids into out, host first. */
int family(int root, int *out, int max);

/* Where the time of a phase goes: wall time, and CPU of the calling (host) thread and of the
 * pool's processes, per repetition. */
struct cpu_probe {
    double wall, hu, hs, wu, ws;
};
void probe_start(struct cpu_probe *p);
void probe_stop(struct cpu_probe *p, int reps);
void probe_report(const char *prefix, const struct cpu_probe *p);

/* ---- W2's round trip, also used by WS ------------------------------------------------------------ */
/* One apply_async + get + free at a time, `calls` of them after as many warm-up calls: the run's
 * p50 and p99, its slowest call, and the p50 of the pool_apply_async call alone (the host's side
 * of a submission). ctx_size > 0 copies ctx with each call (needs HAVE_CALL_OPTIONS). */
struct w2_figures {
    double p50, p99, worst, submit_p50;
};
struct w2_figures w2_calls(pool_t *pool, pool_fn fn, void *ctx, size_t ctx_size, int calls);

/* ---- workloads (see each file's head for its arguments) ----------------------------------------- */
void w1_main(int argc, char **argv);
void w1diag_main(int argc, char **argv);
void w2_main(int argc, char **argv);
void w2diag_main(int argc, char **argv);
void w3_main(int argc, char **argv);
void w4_main(int argc, char **argv);
void w5_main(int argc, char **argv);
void w5diag_main(int argc, char **argv);
void w6_main(int argc, char **argv);
void w7_main(int argc, char **argv);
void wc_main(int argc, char **argv);
void ws_main(int argc, char **argv);

#endif
