/* libpool_mpi under mpirun -np 4 (tests/mpi/run.sh runs each mode, under Open MPI and MPICH).
 *   basic     maps, applies, submits across ranks: results equal to a local pool's, every item
 *             run exactly once (each run appends to a per-rank log), crash / error / timeout /
 *             cancel statuses of remote items with messages naming the rank; streams and block
 *             maps spread over the ranks, failing items alone; functions in the program, in a
 *             linked library and in a plugin; ctx by value and static; close/join
 *   refused   a rank runs another build of this program (MPMD launch): every rank fails
 *   killrank  a task SIGKILLs its own rank's process mid-map: the job must end, non-zero
 *   level     MPI initialised with MPI_THREAD_SERIALIZED: every rank fails with a message
 *   badarg    rank 2 alone passes workers_per_rank -1: every rank fails, none waits forever
 *   diffroot  ranks disagree on the root: every rank fails
 *   opts      the other ranks have small heaps and a short task_timeout of their own: big items
 *             wait for room there (never fail for it), and the root's timeout (none) applies */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <pool_mpi.h>

int triple(const void *in, void *out, void *ctx); /* mpitask.so */

/* A second build with -DOTHER_BUILD differs in its code, so in its build-id too. */
#ifdef OTHER_BUILD
static const char flavour[] = "other build";
#else
static const char flavour[] = "main build";
#endif

static int my_rank = -1;
static const char *log_dir;
static const int64_t static_ctx = 1000; /* constant data: the same bytes on every rank */
static int64_t writable_ctx = 5;        /* writable: each rank has its own copy */
static int failures;

#define CHECK(c)                                                                   \
    do {                                                                           \
        if (!(c)) {                                                                \
            fprintf(stderr, "rank %d: %s:%d: CHECK(%s) failed\n", my_rank,        \
                    __FILE__, __LINE__, #c);                                       \
            failures++;                                                            \
        }                                                                          \
    } while (0)

/* Appends the item to this rank's log: counts how often each item ran, on which rank. */
static void note(int64_t x) {
    char path[512], line[64];
    snprintf(path, sizeof path, "%s/rank%d.log", log_dir, my_rank);
    int fd = open(path, O_WRONLY | O_CREAT | O_APPEND, 0644);
    int n = snprintf(line, sizeof line, "%lld\n", (long long)x);
    if (fd >= 0) {
        if (write(fd, line, (size_t)n) != n) abort();
        close(fd);
    }
}

/* Squares; 13 crashes, 15 returns 7 with a message. */
static int work(const void *in, void *out, void *ctx) {
    int64_t x = *(const int64_t *)in;
    note(x);
    switch (x % 100) {
    case 13: raise(SIGSEGV); break;
    case 15: pool_task_error("fifteen"); return 7;
    }
    *(int64_t *)out = x * x + (ctx ? *(const int64_t *)ctx : 0);
    return 0;
}

static int plus_ctx_slowly(const void *in, void *out, void *ctx) {
    usleep(5000);
    *(int64_t *)out = *(const int64_t *)in + *(const int64_t *)ctx;
    return 0;
}

static int copy_mib(const void *in, void *out, void *ctx) {
    (void)ctx;
    memcpy(out, in, 1 << 20);
    return 0;
}

/* Copies 3 MiB after 30 ms (longer than the other ranks' own task_timeout in mode opts). */
static int copy_slowly(const void *in, void *out, void *ctx) {
    (void)ctx;
    usleep(30000);
    memcpy(out, in, 3 << 20);
    return 0;
}

static int slow_rank(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    usleep(20000);
    *(int64_t *)out = my_rank;
    return 0;
}

static int hang(const void *in, void *out, void *ctx) {
    (void)in; (void)out; (void)ctx;
    for (;;) pause();
    return 0;
}

static int shout(const void *in, size_t len, void *ctx) {
    (void)ctx;
    char buf[256];
    size_t n = len < sizeof buf ? len : sizeof buf;
    for (size_t i = 0; i < n; i++) {
        char c = ((const char *)in)[i];
        buf[i] = c >= 'a' && c <= 'z' ? (char)(c - 32) : c;
    }
    return pool_out_write(buf, n) == POOL_OK ? 0 : 1;
}

/* Kills the worker's zygote (its parent), on rank 1 only: that rank's local pool ends. */
static int kill_my_zygote(const void *in, void *out, void *ctx) {
    (void)in; (void)ctx;
    if (my_rank == 1) kill(getppid(), SIGKILL);
    usleep(100000);
    *(int64_t *)out = my_rank;
    return 0;
}

static int source_items(void *item, size_t index, void *ctx) {
    (void)ctx;
    if (index >= 1500) return 1;
    *(int64_t *)item = (int64_t)index;
    return 0;
}

/* Kills the rank process it runs under (its worker's parent's parent), on rank 2 only. */
static int kill_my_rank(const void *in, void *out, void *ctx) {
    (void)ctx;
    usleep(10000);
    if (my_rank == 2 && *(const int64_t *)in == 50) {
        char path[64];
        snprintf(path, sizeof path, "/proc/%d/stat", getppid());
        FILE *f = fopen(path, "r");
        int pid = 0, ppid = 0;
        char comm[64], state;
        if (f && fscanf(f, "%d %63s %c %d", &pid, comm, &state, &ppid) == 4) kill(ppid, SIGKILL);
        if (f) fclose(f);
    }
    *(int64_t *)out = 1;
    return 0;
}

/* How many ranks ran some of the work (per_rank[r]: items rank r ran). */
static int ranks_used(const int *per_rank, int nranks) {
    int used = 0;
    for (int r = 0; r < nranks && r < 64; r++) used += per_rank[r] > 0;
    return used;
}

/* Marks this rank as having run an item of the stream or block map now running (a file in the
 * log directory; clear_marks() removes them before each), then waits, 60 s at most, until
 * another rank has too: a worker busy waiting keeps the root sending work to the other ranks,
 * however the machine schedules them (quick items could all stay on the root's own workers). */
static void meet_another_rank(void) {
    char path[512];
    snprintf(path, sizeof path, "%s/part.%d", log_dir, my_rank);
    int fd = open(path, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
    for (int i = 0; i < 60000; i++, usleep(1000))
        for (int r = 0; r < 64; r++) {
            snprintf(path, sizeof path, "%s/part.%d", log_dir, r);
            if (r != my_rank && access(path, F_OK) == 0) return;
        }
}

static void clear_marks(void) {
    char path[512];
    for (int r = 0; r < 64; r++) {
        snprintf(path, sizeof path, "%s/part.%d", log_dir, r);
        unlink(path);
    }
}

/* A stream item ("item N..."): "<rank>:" then the input upper-cased, written in place, once
 * another rank took part (meet_another_rank); items N % 100 == 13 crash.
 * Items of "big" streams (max_out 1 MiB: a guarded window) add a 300 KB tail of 'x's. */
static int stamp(const void *in, size_t len, void *ctx) {
    const int big = ctx != NULL && *(const int *)ctx;
    const char *s = in;
    meet_another_rank();
    if (len > 5 && atoi(s + 5) % 100 == 13) raise(SIGSEGV);
    size_t tail = big ? 300000 : 0, avail = 0;
    char *out = pool_out_reserve(len + 16 + tail, &avail);
    if (!out) return 2;
    int n = snprintf(out, avail, "%d:", my_rank);
    for (size_t i = 0; i < len; i++) out[n + i] = s[i] >= 'a' && s[i] <= 'z' ? (char)(s[i] - 32) : s[i];
    memset(out + n + len, 'x', tail);
    return pool_out_commit((size_t)n + len + tail) == POOL_OK ? 0 : 3;
}

/* Source items: item i is i % 200 bytes of (char)i, 2000 items. */
static int source_bytes(void *buf, size_t cap, size_t *len, size_t index, void *ctx) {
    (void)ctx;
    if (index >= 2000) return 1;
    *len = index % 200;
    if (*len > cap) return 2;
    memset(buf, (char)index, *len);
    return 0;
}

/* Its rank, then its input. */
static int rank_and_echo(const void *in, size_t len, void *ctx) {
    (void)ctx;
    int64_t r = my_rank;
    return pool_out_write(&r, sizeof r) == POOL_OK && pool_out_write(in, len) == POOL_OK ? 0 : 1;
}

/* A block map's function: out[j] = {2 * in[j], rank}, once another rank took part
 * (meet_another_rank); checks it got its own span; the block holding item 777 fails. */
static int double_block(const void *in, void *out, size_t count, size_t first, void *ctx) {
    (void)ctx;
    meet_another_rank();
    const int64_t *x = in;
    int64_t(*y)[2] = out;
    for (size_t j = 0; j < count; j++) {
        if (x[j] != (int64_t)(first + j)) return 9; /* not the block it was told */
        y[j][0] = 2 * x[j];
        y[j][1] = my_rank;
    }
    return first <= 777 && 777 < first + count ? 5 : 0;
}

/* Streams across ranks: ordered results written in place (staged and windowed), a crashing
 * item failing alone, an unordered source stream; then a block map with a failing block. Work
 * runs on several ranks; each result comes back once, in its turn when ordered. */
static void streams_and_blocks(pool_t *pool, int nranks) {
    for (int big = 0; big <= 1; big++) {
        enum { NS = 240 };
        static char text[NS][32];
        pool_buf_t bufs[NS];
        for (int i = 0; i < NS; i++) {
            bufs[i].len = (size_t)snprintf(text[i], sizeof text[i], "item %d%s", i, i % 3 ? "" : " abc");
            bufs[i].data = text[i];
        }
        pool_stream_options_t so;
        pool_stream_options_init(&so);
        so.ctx_size = sizeof big;
        clear_marks();
        pool_stream_t *s = pool_stream(pool, stamp, bufs, NS, big ? 1 << 20 : 64, &big, &so);
        CHECK(s != NULL);
        int per_rank[64] = {0}, next = 0, rc;
        const void *data;
        size_t len, idx;
        while (s && (rc = pool_stream_next(s, &data, &len, &idx, 60)) != POOL_EDONE && rc != POOL_ETIMEDOUT) {
            CHECK(idx == (size_t)next);
            if (idx % 100 == 13) {
                CHECK(rc == POOL_ECRASHED && data == NULL);
            } else if (rc == POOL_OK) {
                const char *d = data, *colon = memchr(d, ':', len < 4 ? len : 4);
                int r = atoi(d);
                CHECK(colon != NULL && r >= 0 && r < nranks);
                if (r >= 0 && r < 64) per_rank[r]++;
                size_t tail = big ? 300000 : 0, head = colon ? (size_t)(colon - d) + 1 : 0;
                CHECK(len == head + bufs[idx].len + tail);
                for (size_t i = 0; colon && i < bufs[idx].len && head + i < len; i++) {
                    char c = text[idx][i];
                    CHECK(d[head + i] == (c >= 'a' && c <= 'z' ? c - 32 : c));
                }
                for (size_t i = len - tail; i < len; i++)
                    if (d[i] != 'x') { CHECK(d[i] == 'x'); break; }
            } else {
                fprintf(stderr, "rank 0: stream item %zu: %d %s\n", idx, rc, pool_last_error());
                CHECK(rc == POOL_OK);
            }
            next++;
        }
        CHECK(next == NS);
        pool_stream_free(s);
        int used = ranks_used(per_rank, nranks);
        printf("stream (%s results): items ran on %d ranks\n", big ? "1 MiB" : "small", used);
        CHECK(used >= 2);
    }

    pool_stream_options_t so;
    pool_stream_options_init(&so);
    so.ordered = false;
    pool_stream_t *s = pool_stream_source(pool, rank_and_echo, source_bytes, NULL, 256, 512, NULL, &so);
    CHECK(s != NULL);
    static char seen[2000];
    memset(seen, 0, sizeof seen);
    int got = 0, rc;
    const void *data;
    size_t len, idx;
    while (s && (rc = pool_stream_next(s, &data, &len, &idx, 60)) == POOL_OK) {
        CHECK(idx < 2000 && !seen[idx]++);
        CHECK(len == 8 + idx % 200);
        const unsigned char *d = data;
        for (size_t i = 8; i < len; i++)
            if (d[i] != (unsigned char)idx) { CHECK(d[i] == (unsigned char)idx); break; }
        got++;
    }
    CHECK(s == NULL || rc == POOL_EDONE);
    CHECK(got == 2000);
    pool_stream_free(s);

    enum { NB = 5000 };
    static int64_t in[NB], out[NB][2];
    static int st[NB];
    for (int i = 0; i < NB; i++) in[i] = i;
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.chunksize = 50;
    mo.statuses = st;
    clear_marks();
    CHECK(pool_map_blocks(pool, double_block, in, sizeof in[0], out, sizeof out[0], NB, NULL, &mo) == POOL_ETASK);
    int per_rank[64] = {0};
    for (int i = 0; i < NB; i++) {
        int failing = i / 50 == 777 / 50;
        CHECK(st[i] == (failing ? POOL_ETASK : POOL_OK));
        if (!failing) {
            CHECK(out[i][0] == 2 * i);
            if (out[i][1] >= 0 && out[i][1] < 64) per_rank[out[i][1]]++;
        }
    }
    int used = ranks_used(per_rank, nranks);
    printf("block map: blocks ran on %d ranks\n", used);
    CHECK(used >= 2);
}

/* How many times item x ran, over every rank's log. */
static void count_runs(int n, int *runs, int nranks) {
    memset(runs, 0, sizeof(int) * (size_t)n);
    for (int r = 0; r < nranks; r++) {
        char path[512];
        snprintf(path, sizeof path, "%s/rank%d.log", log_dir, r);
        FILE *f = fopen(path, "r");
        long long x;
        while (f && fscanf(f, "%lld", &x) == 1)
            if (x >= 0 && x < n) runs[x]++;
        if (f) fclose(f);
    }
}

static void basic(pool_t *pool, int nranks) {
    CHECK(pool_workers(pool) == 2 * nranks);
    enum { N = 4000 };
    static int64_t in[N], out[N], local_out[N];
    static int st[N], runs[N];
    for (int i = 0; i < N; i++) in[i] = i;
    /* The same map on a local pool. */
    pool_t *local = pool_create(2, NULL);
    CHECK(local != NULL);
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.statuses = st;
    mo.chunksize = 9;
    pool_map_ex(local, work, in, sizeof in[0], local_out, sizeof out[0], N, NULL, &mo);
    pool_destroy(local);
    for (int r = 0; r < nranks; r++) { /* the local run's log entries do not count */
        char path[512];
        snprintf(path, sizeof path, "%s/rank%d.log", log_dir, r);
        unlink(path);
    }
    int rc = pool_map_ex(pool, work, in, sizeof in[0], out, sizeof out[0], N, NULL, &mo);
    CHECK(rc == POOL_ECRASHED);
    count_runs(N, runs, nranks);
    int remote_msgs = 0;
    for (int i = 0; i < N; i++) {
        int64_t x = in[i];
        CHECK(runs[x] == 1);
        int want = x % 100 == 13 ? POOL_ECRASHED : x % 100 == 15 ? POOL_ETASK : POOL_OK;
        CHECK(st[i] == want);
        if (want == POOL_OK) CHECK(out[i] == local_out[i] && out[i] == x * x);
    }
    /* Messages of remote failures name the rank; a task's own message comes through. */
    for (int i = 0; i < 300; i++) {
        int64_t x = 15;
        pool_async_t *a = pool_apply_async(pool, work, &x, sizeof x, NULL, 0, NULL);
        CHECK(pool_async_get(a, 30) == POOL_ETASK);
        pool_task_info_t info;
        CHECK(pool_async_info(a, &info, sizeof info) == POOL_OK);
        CHECK(info.task_code == 7 && strstr(info.message, "fifteen"));
        if (strstr(info.message, "on rank ")) remote_msgs++;
        pool_async_free(a);
    }
    (void)remote_msgs; /* applies one at a time mostly stay on the root: no claim on the count */

    /* Every rank takes part: a slow map spreads over all of them. */
    static int64_t ranks_out[400];
    mo.statuses = NULL;
    mo.chunksize = 1;
    CHECK(pool_map_ex(pool, slow_rank, in, sizeof in[0], ranks_out, sizeof ranks_out[0], 400, NULL, &mo) == POOL_OK);
    int per_rank[64] = {0};
    for (int i = 0; i < 400; i++)
        if (ranks_out[i] >= 0 && ranks_out[i] < 64) per_rank[ranks_out[i]]++;
    for (int r = 0; r < nranks; r++) {
        printf("rank %d ran %d of 400 slow items\n", r, per_rank[r]);
        CHECK(per_rank[r] >= 400 / nranks / 3); /* balanced, not piled up on one rank */
    }

    /* Timeouts and cancels of work on other ranks. */
    pool_call_options_t co;
    pool_call_options_init(&co);
    co.task_timeout = 0.3;
    pool_async_t *h[12];
    for (int i = 0; i < 12; i++) h[i] = pool_apply_async_ex(pool, hang, in, sizeof in[0], NULL, 0, NULL, &co);
    int remote_timeouts = 0;
    for (int i = 0; i < 12; i++) {
        CHECK(pool_async_get(h[i], 30) == POOL_ETIMEDOUT);
        if (strstr(pool_last_error(), "on rank ")) remote_timeouts++;
        pool_async_free(h[i]);
    }
    CHECK(remote_timeouts > 0);
    for (int i = 0; i < 12; i++) h[i] = pool_apply_async(pool, hang, in, sizeof in[0], NULL, 0, NULL);
    usleep(300000);
    for (int i = 0; i < 12; i++) {
        CHECK(pool_async_cancel(h[i]) == POOL_OK);
        CHECK(pool_async_get(h[i], 30) == POOL_ECANCELLED);
        pool_async_free(h[i]);
    }

    /* Functions in a linked library and in a plugin; ctx copied and static; variable size. */
    void *plugin = dlopen(getenv("POOL_MPI_PLUGIN"), RTLD_NOW);
    CHECK(plugin != NULL);
    pool_fn ptriple = plugin ? (pool_fn)(uintptr_t)dlsym(plugin, "triple") : NULL;
    static int64_t t_out[500], p_out[500], c_out[500], s_out[500];
    mo.chunksize = 3;
    CHECK(pool_map_ex(pool, triple, in, sizeof in[0], t_out, sizeof t_out[0], 500, NULL, &mo) == POOL_OK);
    if (ptriple) CHECK(pool_map_ex(pool, ptriple, in, sizeof in[0], p_out, sizeof p_out[0], 500, NULL, &mo) == POOL_OK);
    int64_t *heap_ctx = malloc(sizeof *heap_ctx);
    *heap_ctx = 7;
    mo.ctx_size = sizeof *heap_ctx;
    CHECK(pool_map_ex(pool, work, in + 20, sizeof in[0], c_out, sizeof c_out[0], 90, heap_ctx, &mo) == POOL_OK);
    mo.ctx_size = 0;
    CHECK(pool_map_ex(pool, work, in + 20, sizeof in[0], s_out, sizeof s_out[0], 90, (void *)&static_ctx, &mo) == POOL_OK);
    /* Writable static data is refused on other ranks (their copies may differ), never wrong. */
    static int st_w[90];
    static int64_t w_out[90];
    mo.statuses = st_w;
    mo.chunksize = 1;
    pool_map_ex(pool, plus_ctx_slowly, in + 20, sizeof in[0], w_out, sizeof w_out[0], 90, &writable_ctx, &mo);
    int refused = 0;
    for (int i = 0; i < 90; i++) {
        int64_t x = in[20 + i];
        refused += st_w[i] == POOL_EINVAL;
        if (st_w[i] == POOL_OK) CHECK(w_out[i] == x + 5);
    }
    CHECK(refused > 0);
    mo.statuses = NULL;
    for (int i = 0; i < 500; i++) {
        CHECK(t_out[i] == 3 * in[i]);
        if (ptriple) CHECK(p_out[i] == 3 * in[i]);
    }
    for (int i = 0; i < 90; i++) {
        CHECK(c_out[i] == in[20 + i] * in[20 + i] + 7);
        CHECK(s_out[i] == in[20 + i] * in[20 + i] + 1000);
    }
    free(heap_ctx);
    pool_async_t *v[40];
    for (int i = 0; i < 40; i++) v[i] = pool_submit(pool, shout, "hello ranks", 11, 64, NULL);
    for (int i = 0; i < 40; i++) {
        const void *data;
        size_t len;
        CHECK(pool_async_get(v[i], 30) == POOL_OK);
        CHECK(pool_async_result(v[i], &data, &len) == POOL_OK && len == 11 && memcmp(data, "HELLO RANKS", 11) == 0);
        pool_async_free(v[i]);
    }

    streams_and_blocks(pool, nranks);

    /* Iterators (bounded windows over every rank), progress and the event fd. */
    mo.chunksize = 5;
    pool_iter_t *it = pool_imap(pool, work, in + 20, sizeof in[0], sizeof out[0], 1900, NULL, &mo);
    CHECK(it != NULL);
    int64_t y;
    size_t idx, got = 0;
    int rc1;
    while (it && (rc1 = pool_iter_next(it, &y, &idx, 30)) != POOL_EDONE && rc1 != POOL_ETIMEDOUT) {
        int64_t x = in[20 + idx];
        CHECK(idx == got);
        CHECK(rc1 == (x % 100 == 13 ? POOL_ECRASHED : x % 100 == 15 ? POOL_ETASK : POOL_OK));
        if (rc1 == POOL_OK) CHECK(y == x * x);
        got++;
    }
    CHECK(got == 1900);
    pool_iter_free(it);
    mo.chunksize = 1;
    it = pool_imap_source(pool, slow_rank, source_items, NULL, sizeof(int64_t), sizeof(int64_t), NULL, false, &mo);
    CHECK(it != NULL);
    int seen[1500] = {0};
    got = 0;
    int rc2;
    while (it && (rc2 = pool_iter_next(it, &y, &idx, 30)) == POOL_OK) {
        CHECK(idx < 1500 && !seen[idx]++ && y >= 0 && y < nranks);
        got++;
    }
    CHECK(got == 1500);
    pool_iter_free(it);
    int efd = pool_event_fd(pool);
    CHECK(efd >= 0);
    pool_async_t *pm = pool_map_async_ex(pool, slow_rank, in, sizeof in[0], out, sizeof out[0], 300, NULL, &mo);
    size_t done = 0, total = 0;
    int progressed = 0;
    while (!pool_async_ready(pm)) {
        CHECK(pool_async_progress(pm, &done, &total) == POOL_OK && total == 300 && done <= 300);
        progressed |= done > 0 && done < 300;
        usleep(5000);
    }
    CHECK(progressed);
    CHECK(pool_async_get(pm, 0) == POOL_OK);
    pool_async_free(pm);
    struct pollfd pfd = {efd, POLLIN, 0};
    CHECK(poll(&pfd, 1, 5000) == 1);

    /* A rank whose local pool dies (its zygote killed) fails what ran there, then carries on. */
    static int64_t z_out[8];
    int z_st[8];
    mo.statuses = z_st;
    pool_map_ex(pool, kill_my_zygote, in, sizeof in[0], z_out, sizeof z_out[0], 8, NULL, &mo);
    int closed = 0;
    for (int i = 0; i < 8; i++) closed += z_st[i] == POOL_ECLOSED;
    printf("zygote of rank 1 killed: %d of 8 items closed\n", closed);
    mo.statuses = NULL;
    CHECK(pool_map_ex(pool, slow_rank, in, sizeof in[0], ranks_out, sizeof ranks_out[0], 400, NULL, &mo) == POOL_OK);
    memset(per_rank, 0, sizeof per_rank);
    for (int i = 0; i < 400; i++)
        if (ranks_out[i] >= 0 && ranks_out[i] < 64) per_rank[ranks_out[i]]++;
    CHECK(per_rank[1] > 0); /* rank 1 runs work again, in a new local pool */

    /* Big results (1 MiB per item: written through guarded windows, which must work under
     * MPI libraries that hook mremap, as UCX does under MPICH). */
    {
        enum { BIG = 1 << 20, NB = 24 };
        char *bin = malloc((size_t)BIG * NB), *bout = malloc((size_t)BIG * NB);
        for (size_t i = 0; i < (size_t)BIG * NB; i++) bin[i] = (char)(i * 7 + i / BIG);
        pool_map_options_t bo;
        pool_map_options_init(&bo);
        bo.chunksize = 1;
        CHECK(pool_map_ex(pool, copy_mib, bin, BIG, bout, BIG, NB, NULL, &bo) == POOL_OK);
        CHECK(memcmp(bin, bout, (size_t)BIG * NB) == 0);
        free(bin);
        free(bout);
    }

    /* close + join waits for work still running on other ranks. */
    static int64_t j_out[200];
    pool_async_t *m = pool_map_async_ex(pool, slow_rank, in, sizeof in[0], j_out, sizeof j_out[0], 200, NULL, &mo);
    CHECK(pool_close(pool) == POOL_OK);
    CHECK(pool_join(pool) == POOL_OK);
    CHECK(pool_async_get(m, 0) == POOL_OK);
    pool_async_free(m);
    if (plugin) dlclose(plugin);
}

int main(int argc, char **argv) {
    const char *mode = argc > 1 ? argv[1] : "basic";
    int level = strcmp(mode, "level") == 0 ? MPI_THREAD_SERIALIZED : MPI_THREAD_MULTIPLE, provided;
    MPI_Init_thread(&argc, &argv, level, &provided);
    int nranks;
    MPI_Comm_rank(MPI_COMM_WORLD, &my_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &nranks);
    log_dir = getenv("POOL_MPI_LOGS");
    if (!log_dir) log_dir = "/tmp";
    setvbuf(stdout, NULL, _IONBF, 0);
    if (strcmp(mode, "basic") == 0 && getenv("POOL_MPI_PLUGIN")) {
        /* The plugin is loaded on every rank before the pool is created. */
        if (!dlopen(getenv("POOL_MPI_PLUGIN"), RTLD_NOW)) fprintf(stderr, "dlopen: %s\n", dlerror());
    }
    pool_options_t small;
    pool_options_init(&small);
    small.shm_size = 16 << 20; /* room for about two 6 MiB tasks at a time */
    small.task_timeout = 0.01; /* ignored: the root's timeout applies */
    int opts_mode = strcmp(mode, "opts") == 0;
    int workers = strcmp(mode, "badarg") == 0 && my_rank == 2 ? -1 : 2;
    int root = strcmp(mode, "diffroot") == 0 && my_rank >= 2 ? 1 : 0;
    pool_t *pool = pool_create_mpi(MPI_COMM_WORLD, root, workers, opts_mode && my_rank != 0 ? &small : NULL);
    int st = pool_last_status();
    if (strcmp(mode, "refused") == 0 || strcmp(mode, "level") == 0 || strcmp(mode, "badarg") == 0 ||
        strcmp(mode, "diffroot") == 0) {
        /* Every rank fails, with a message. */
        const char *want = strcmp(mode, "level") == 0      ? "MPI_THREAD_MULTIPLE"
                           : strcmp(mode, "badarg") == 0   ? "workers_per_rank is -1"
                           : strcmp(mode, "diffroot") == 0 ? "disagree on the root"
                                                           : "different program";
        CHECK(pool == NULL && st == POOL_EINVAL && strstr(pool_last_error(), want));
        printf("rank %d: refused as expected: %s\n", my_rank, pool_last_error());
        if (pool) pool_destroy(pool);
    } else if (my_rank != 0) {
        CHECK(pool == NULL && st == POOL_EDONE);
        if (st != POOL_EDONE) fprintf(stderr, "rank %d: %s\n", my_rank, pool_last_error());
    } else if (!pool) {
        fprintf(stderr, "rank 0: pool_create_mpi: %s\n", pool_last_error());
        failures++;
    } else if (opts_mode) {
        enum { ITEM = 3 << 20, NI = 24 };
        char *bin = malloc((size_t)ITEM * NI), *bout = malloc((size_t)ITEM * NI);
        for (size_t i = 0; i < (size_t)ITEM * NI; i++) bin[i] = (char)(i * 13 + i / ITEM);
        static int sts[NI];
        pool_map_options_t mo;
        pool_map_options_init(&mo);
        mo.chunksize = 1;
        mo.statuses = sts;
        int rc = pool_map_ex(pool, copy_slowly, bin, ITEM, bout, ITEM, NI, NULL, &mo);
        if (rc != POOL_OK) fprintf(stderr, "rank 0: %s\n", pool_last_error());
        CHECK(rc == POOL_OK);
        CHECK(memcmp(bin, bout, (size_t)ITEM * NI) == 0);
        free(bin);
        free(bout);
        pool_destroy(pool);
    } else if (strcmp(mode, "killrank") == 0) {
        static int64_t in[4000], out[4000];
        for (int i = 0; i < 4000; i++) in[i] = i % 100;
        pool_map(pool, kill_my_rank, in, sizeof in[0], out, sizeof out[0], 4000, NULL);
        fprintf(stderr, "rank 0: the map ended although rank 2 died: MPI should have ended the job\n");
        pool_destroy(pool);
        failures++;
    } else {
        basic(pool, nranks);
        pool_destroy(pool);
    }
    MPI_Barrier(MPI_COMM_WORLD);
    MPI_Finalize();
    if (failures == 0) printf("rank %d: ok (%s, %s)\n", my_rank, mode, flavour);
    return failures ? 1 : 0;
}
