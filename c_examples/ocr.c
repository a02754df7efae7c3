/*
 * ocr: OCR page images in parallel with Tesseract, one engine per worker process.
 *
 *   ocr [-p N] [-t SECONDS] [-l LANG] [-F] [-P] [-S DIR]... [page ...]   (no pages: stdin)
 *
 * Prints each page's text in page order, after a line `==> page <path> <==` (or, with -F, each
 * page's text followed by a form feed), and a progress line on stderr when it is a terminal.
 * Loading Tesseract's model costs about 0.2 s, a fifth of a page's OCR here, so each worker
 * loads it once, in the pool's initializer, instead of once a page as the tesseract command
 * does. A page that crashes the engine or hangs takes only its worker down (the pool replaces
 * it) and fails alone: it is reported on stderr and printed as an empty page. Exit status: 0,
 * 1 if any page failed, 2 for bad arguments or workers that could not start.
 *
 * With -S DIR (repeatable) the workers are sandboxed (POOL_SANDBOX_COMPUTE) once the engine is
 * loaded: a page is read only from under the directories given, and a decoder exploited by a
 * hostile image can open no other file, start no process, reach no network, signal nobody.
 *
 * Each engine runs one OpenMP thread: the workers already keep every core busy, and Tesseract's
 * parallel regions (num_threads clauses: 4 threads in Debian's 5.3) would otherwise add three
 * threads to every worker, which only spin against each other (8 pages on 2 cores: 4x the
 * wall time, 6x the CPU time).
 * The usual OMP_THREAD_LIMIT=1 cannot be set from here: the OpenMP runtime, loaded with
 * Tesseract, reads it before main runs. So each worker sets max-active-levels to 0, which the
 * OpenMP spec defines to run every parallel region with one thread, num_threads clause or not.
 * A user who sets OMP_THREAD_LIMIT decides instead: up to that many threads an engine. On a
 * machine busy with other work, OMP_WAIT_POLICY=passive should come with it: the runtime's
 * threads spin while they wait, against the other programs (2 pages, 2 workers, beside two
 * CPU-bound programs on 2 cores: 12.8 s with OMP_THREAD_LIMIT=2, 1.7 s with passive added).
 *
 * Testing hook: OCR_FAULT=crash:SUBSTR,hang:SUBSTR makes the task abort() or sleep forever
 * for pages whose path contains SUBSTR (each kind may be given several times).
 */
#define _GNU_SOURCE /* RTLD_DEFAULT */
#include <pool.h>

#include <allheaders.h>
#include <tesseract/capi.h>

#include <dlfcn.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_TEXT (16u << 20) /* a page's text: far above any real page, bounds a runaway */
#define MAX_FAULTS 16
#define MAX_SANDBOX_DIRS 64

static void usage(void) {
    fprintf(stderr,
            "usage: ocr [-p N] [-t SECONDS] [-l LANG] [-F] [-P] [-S DIR]... [page ...]\n"
            "  pages are image paths (PNG, TIFF, JPEG...); none: one path a line on stdin\n"
            "  -p N        worker processes, each with its own engine (default: one per CPU)\n"
            "  -t SECONDS  a page running longer fails with a timeout (default 60)\n"
            "  -l LANG     Tesseract language (default eng)\n"
            "  -F          separate pages with a form feed instead of '==> page PATH <==' lines\n"
            "  -P          show progress on stderr even when it is not a terminal\n"
            "  -S DIR      sandboxed workers that read pages only under DIR (repeatable)\n"
            "  each engine runs one OpenMP thread; OMP_THREAD_LIMIT=N, if set, allows N instead\n"
            "  (on a busy machine, with OMP_WAIT_POLICY=passive: spinning threads are slow there)\n"
            "  OCR_FAULT=crash:SUBSTR,hang:SUBSTR  testing hook: abort / hang on matching pages\n");
}

/* ---- worker side: these globals are set before pool_create, so every worker sees them --- */

static const char *g_lang = "eng";
static TessBaseAPI *g_api; /* this worker's engine, made by the initializer */

enum { FAULT_CRASH, FAULT_HANG };
static struct { int kind; const char *substr; } g_faults[MAX_FAULTS];
static size_t g_nfaults;

/* One thread for every parallel region of this worker, unless the OpenMP runtime took a thread
 * limit from the user's OMP_THREAD_LIMIT at load (it ignores a value it cannot parse, and so does
 * this check: it asks the runtime, not the environment). The runtime is whichever one Tesseract
 * was linked with, found by name; none (Tesseract built without OpenMP): nothing to do. */
static void one_openmp_thread(void) {
    void *set = dlsym(RTLD_DEFAULT, "omp_set_max_active_levels");
    void *get = dlsym(RTLD_DEFAULT, "omp_get_thread_limit");
    if (!set) return;
    if (get) {
        int (*thread_limit)(void);
        memcpy(&thread_limit, &get, sizeof get); /* ISO C has no void * to function cast */
        if (thread_limit() < INT_MAX) return;    /* INT_MAX: no limit set */
    }
    void (*set_max_active_levels)(int);
    memcpy(&set_max_active_levels, &set, sizeof set);
    set_max_active_levels(0);
}

/* pool initializer_ex: a worker that cannot load the model refuses, and pool_create fails. */
static int engine_init(void *initarg) {
    (void)initarg;
    one_openmp_thread();
    g_api = TessBaseAPICreate();
    if (!g_api) {
        pool_task_error("TessBaseAPICreate failed");
        return 1;
    }
    if (TessBaseAPIInit3(g_api, NULL, g_lang) != 0) {
        char msg[200];
        snprintf(msg, sizeof msg,
                 "Tesseract cannot load language '%s' (is tesseract-ocr-%s installed? "
                 "TESSDATA_PREFIX?)", g_lang, g_lang);
        pool_task_error(msg);
        return 1;
    }
    TessBaseAPISetPageSegMode(g_api, PSM_AUTO);
    return 0;
}

static void inject_fault(const char *path) {
    for (size_t i = 0; i < g_nfaults; i++) {
        if (!strstr(path, g_faults[i].substr)) continue;
        if (g_faults[i].kind == FAULT_CRASH) abort();
        for (;;) pause(); /* hang until the pool's timeout kills this worker */
    }
}

/* Task: input is the page's path (NUL included); result is its UTF-8 text. */
static int ocr_page(const void *in, size_t in_len, void *ctx) {
    (void)ctx;
    const char *path = in;
    if (in_len == 0 || path[in_len - 1] != '\0') {
        pool_task_error("item is not a NUL-terminated path");
        return 1;
    }
    inject_fault(path);
    FILE *f = fopen(path, "rb");
    if (!f) {
        char msg[300];
        snprintf(msg, sizeof msg, "cannot read the image: %s%s", strerror(errno),
                 errno == EACCES ? " (outside the sandbox's directories?)" : "");
        pool_task_error(msg);
        return 1;
    }
    PIX *pix = pixReadStream(f, 0);
    fclose(f);
    if (!pix) {
        pool_task_error("cannot read the image (not a format leptonica reads, or damaged)");
        return 1;
    }
    TessBaseAPISetImage2(g_api, pix);
    char *text = TessBaseAPIGetUTF8Text(g_api);
    int rc = 0;
    if (!text) {
        pool_task_error("Tesseract could not recognise the page");
        rc = 1;
    } else if (pool_out_write(text, strlen(text)) != POOL_OK) {
        pool_task_error("page text longer than the result limit");
        rc = 1;
    }
    TessDeleteText(text);
    /* Drop the image and the recognition results now, not when the next page comes. */
    TessBaseAPIClear(g_api);
    pixDestroy(&pix);
    return rc;
}

/* ---- host side -------------------------------------------------------------------------- */

static int parse_faults(char *spec) {
    for (char *save = NULL, *tok = strtok_r(spec, ",", &save); tok;
         tok = strtok_r(NULL, ",", &save)) {
        int kind;
        if (strncmp(tok, "crash:", 6) == 0) kind = FAULT_CRASH;
        else if (strncmp(tok, "hang:", 5) == 0) kind = FAULT_HANG;
        else return -1;
        const char *substr = strchr(tok, ':') + 1;
        if (!*substr || g_nfaults == MAX_FAULTS) return -1;
        g_faults[g_nfaults].kind = kind;
        g_faults[g_nfaults].substr = substr;
        g_nfaults++;
    }
    return 0;
}

typedef struct {
    char **paths;
    size_t n, cap;
} pathlist_t;

static int add_path(pathlist_t *l, char *path) {
    if (l->n == l->cap) {
        size_t cap = l->cap ? 2 * l->cap : 64;
        char **p = realloc(l->paths, cap * sizeof *p);
        if (!p) return -1;
        l->paths = p;
        l->cap = cap;
    }
    l->paths[l->n++] = path;
    return 0;
}

/* One path a line; empty lines are skipped. */
static int read_paths(FILE *f, pathlist_t *l) {
    char *line = NULL;
    size_t cap = 0;
    ssize_t len;
    while ((len = getline(&line, &cap, f)) != -1) {
        while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = '\0';
        if (len == 0) continue;
        char *copy = strdup(line);
        if (!copy || add_path(l, copy)) { free(copy); free(line); return -1; }
    }
    int err = ferror(f);
    free(line);
    return err ? -1 : 0;
}

static int g_progress_shown;

static void show_progress(pool_stream_t *s) {
    size_t done, total;
    if (pool_stream_progress(s, &done, &total) != POOL_OK) return;
    fprintf(stderr, "\r[%zu/%zu pages]", done, total);
    fflush(stderr);
    g_progress_shown = 1;
}

/* Messages start on a line of their own, not after the progress line. */
static void end_progress_line(void) {
    if (g_progress_shown) fputc('\n', stderr);
    g_progress_shown = 0;
}

int main(int argc, char **argv) {
    long workers = 0;
    double timeout = 60;
    int formfeed = 0, progress = isatty(STDERR_FILENO);
    const char *sandbox_dirs[MAX_SANDBOX_DIRS + 1] = {NULL};
    size_t nsandbox = 0;
    int opt;
    while ((opt = getopt(argc, argv, "p:t:l:FPS:h")) != -1) {
        char *end;
        switch (opt) {
        case 'p':
            errno = 0;
            workers = strtol(optarg, &end, 10);
            if (errno || end == optarg || *end || workers < 1 || workers > 1024) {
                fprintf(stderr, "ocr: -p wants 1..1024 workers, got '%s'\n", optarg);
                usage();
                return 2;
            }
            break;
        case 't':
            errno = 0;
            timeout = strtod(optarg, &end);
            if (errno || end == optarg || *end || !(timeout > 0 && timeout <= 1e6)) {
                fprintf(stderr, "ocr: -t wants seconds > 0, got '%s'\n", optarg);
                usage();
                return 2;
            }
            break;
        case 'l':
            if (!*optarg) { usage(); return 2; }
            g_lang = optarg;
            break;
        case 'S':
            if (!*optarg || nsandbox == MAX_SANDBOX_DIRS) { usage(); return 2; }
            sandbox_dirs[nsandbox++] = optarg;
            break;
        case 'F': formfeed = 1; break;
        case 'P': progress = 1; break;
        case 'h': usage(); return 0;
        default: usage(); return 2;
        }
    }

    const char *fault_env = getenv("OCR_FAULT");
    char *fault_spec = fault_env ? strdup(fault_env) : NULL;
    if (fault_env && (!fault_spec || parse_faults(fault_spec))) {
        fprintf(stderr, "ocr: OCR_FAULT must be kind:SUBSTR[,kind:SUBSTR...] with kind crash "
                        "or hang, got '%s'\n", fault_env);
        return 2;
    }

    pathlist_t pages = {0};
    for (int i = optind; i < argc; i++)
        if (add_path(&pages, argv[i])) { perror("ocr"); return 2; }
    if (optind == argc) {
        if (isatty(STDIN_FILENO)) { usage(); return 2; }
        if (read_paths(stdin, &pages)) { perror("ocr: reading page paths from stdin"); return 2; }
    }
    if (pages.n == 0) {
        fprintf(stderr, "ocr: no pages given\n");
        usage();
        return 2;
    }

    pool_options_t popts;
    pool_options_init(&popts);
    popts.initializer_ex = engine_init; /* the model is loaded before the sandbox closes in */
    if (nsandbox > 0) {
        popts.sandbox = POOL_SANDBOX_COMPUTE;
        popts.sandbox_read_paths = sandbox_dirs;
    }
    pool_t *pool = pool_create((int)workers, &popts);
    if (!pool) {
        fprintf(stderr, "ocr: cannot start the OCR workers: %s\n", pool_last_error());
        return 2;
    }

    pool_buf_t *items = malloc(pages.n * sizeof *items);
    if (!items) { perror("ocr"); pool_destroy(pool); return 2; }
    for (size_t i = 0; i < pages.n; i++)
        items[i] = (pool_buf_t){.data = pages.paths[i], .len = strlen(pages.paths[i]) + 1};

    pool_stream_options_t sopts;
    pool_stream_options_init(&sopts);
    sopts.ordered = true;
    sopts.task_timeout = timeout;
    pool_stream_t *s = pool_stream(pool, ocr_page, items, pages.n, MAX_TEXT, NULL, &sopts);
    if (!s) {
        fprintf(stderr, "ocr: pool_stream: %s\n", pool_last_error());
        pool_destroy(pool);
        return 2;
    }

    size_t failed = 0;
    int out_err = 0;
    if (progress) show_progress(s);
    for (;;) {
        const void *data = NULL;
        size_t len = 0, index = SIZE_MAX;
        /* Wait as long as it takes: the pool's task_timeout bounds every page. (The stream's
         * progress counts results handed back, so waking early would not move it.) */
        int st = pool_stream_next(s, &data, &len, &index, -1);
        if (st == POOL_EDONE) break;
        if (index >= pages.n) { /* a failure not tied to a page: give up */
            end_progress_line();
            fprintf(stderr, "ocr: %s: %s\n", pool_strerror(st), pool_last_error());
            failed++;
            break;
        }
        const char *path = pages.paths[index];
        if (st != POOL_OK) {
            end_progress_line();
            const char *what = st == POOL_ECRASHED    ? "crashed the OCR engine"
                               : st == POOL_ETIMEDOUT ? "timed out"
                                                      : "failed";
            fprintf(stderr, "ocr: page %s %s: %s\n", path, what, pool_last_error());
            failed++;
            data = "";
            len = 0; /* an empty page keeps the pages after it in their places */
        }
        if (formfeed)
            out_err |= fwrite(data, 1, len, stdout) != len || putchar('\f') == EOF;
        else
            out_err |= printf("==> page %s <==\n", path) < 0 ||
                       fwrite(data, 1, len, stdout) != len ||
                       (len > 0 && ((const char *)data)[len - 1] != '\n' && putchar('\n') == EOF);
        if (out_err) break;
        if (progress) show_progress(s);
    }
    end_progress_line();
    pool_stream_free(s);
    pool_close(pool);
    pool_join(pool);
    pool_destroy(pool);
    free(items);
    if (optind == argc) /* the paths were read from stdin */
        for (size_t i = 0; i < pages.n; i++) free(pages.paths[i]);
    free(pages.paths);
    free(fault_spec); /* g_faults pointed into it */
    if (out_err || fflush(stdout) != 0) {
        fprintf(stderr, "ocr: write error: %s\n", strerror(errno));
        return 2;
    }
    if (failed) {
        fprintf(stderr, "ocr: %zu of %zu pages failed\n", failed, pages.n);
        return 1;
    }
    return 0;
}
