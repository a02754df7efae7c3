/* bench_pool WORKLOAD ARGS...: the libpool side of the benchmark (benches/run.sh runs it; the
 * arguments of each workload are at the head of its file). */
#include "bench.h"

/* Weak: run.sh leaves out a workload's file that does not compile against the library's header
 * (an older library, `make bench BASE=...`); its entry point is then NULL. */
#pragma weak w1_main
#pragma weak w1diag_main
#pragma weak w2_main
#pragma weak w2diag_main
#pragma weak w3_main
#pragma weak w4_main
#pragma weak w5_main
#pragma weak w5diag_main
#pragma weak w6_main
#pragma weak w7_main
#pragma weak wc_main
#pragma weak ws_main

static const struct {
    const char *name, *file;
    void (*run)(int, char **);
} workloads[] = {
    {"w1", "w1.c", w1_main}, {"w1diag", "w1.c", w1diag_main}, {"w2", "w2.c", w2_main},
    {"w2diag", "w2.c", w2diag_main}, {"w3", "w2.c", w3_main}, {"w4", "w4.c", w4_main},
    {"w5", "w5.c", w5_main}, {"w5diag", "w5.c", w5diag_main}, {"w6", "w6.c", w6_main},
    {"w7", "w7.c", w7_main}, {"wc", "wc.c", wc_main}, {"ws", "ws.c", ws_main},
};

int main(int argc, char **argv) {
    for (size_t i = 0; argc > 1 && i < sizeof workloads / sizeof workloads[0]; i++) {
        if (strcmp(argv[1], workloads[i].name)) continue;
        if (workloads[i].run) workloads[i].run(argc - 1, argv + 1);
        else printf("SKIP %s benches/pool/%s does not compile against this library's header\n", argv[1], workloads[i].file);
        return 0;
    }
    die("usage: bench_pool w1|w1diag|w2|w2diag|w3|w4|w5|w5diag|w6|w7|wc|ws ARGS (see benches/pool/*.c)");
}
