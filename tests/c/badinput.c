/* Every exported function with bad arguments: NULL handles, NULL functions, NULL buffers with
 * n > 0, zero item sizes, size overflows, NaN timeouts, uninitialised options, wrong states, a
 * ctx_size with a NULL ctx or of SIZE_MAX.
 * Each gets its documented result (a status, NULL, false, 0 or -1), a pool_last_error()
 * message where it returns a status or a handle, and never a crash. Table-driven. */
#include "check.h"

#include <math.h>

static pool_t *g_pool;
static pool_async_t *g_apply;  /* a finished pool_apply_async */
static pool_async_t *g_map;    /* a finished pool_map_async */
static pool_async_t *g_var;    /* a finished pool_submit */
static pool_process_t *g_new;  /* created, never started */
static pool_process_t *g_done; /* started and joined */
static long g_in[4] = {1, 2, 3, 4}, g_out[4];
static const void *g_data;
static size_t g_len;
static int g_code;
static pool_options_t opts_zero;  /* never initialised: struct_size 0 */
static pool_options_t opts_small; /* struct_size 1 */
static pool_options_t opts_nan;   /* task_timeout NaN */
static pool_map_options_t g_mopts;      /* initialised */
static pool_map_options_t g_mopts_zero; /* never initialised: struct_size 0 */
static pool_map_options_t g_mopts_nan;  /* task_timeout NaN */
static pool_task_info_t g_info;
static pool_call_options_t g_copts_ctx8;   /* ctx_size 8 (with a NULL ctx below) */
static pool_call_options_t g_copts_ctxmax; /* ctx_size SIZE_MAX */
static pool_map_options_t g_mopts_ctx8;
static pool_map_options_t g_mopts_ctxmax;

static int count_source(void *item, size_t index, void *ctx) {
    (void)ctx;
    *(long *)item = (long)index;
    return index < 4 ? 0 : 1;
}

#define BIG (SIZE_MAX / 8 + 1) /* BIG * 8 overflows size_t */

enum kind {
    ST,   /* returns a pool_status: expect == want (or want2), and a fresh message */
    PTR,  /* returns a handle: expect NULL, a fresh message, pool_last_status() EINVAL (or want2) */
    VAL,  /* returns a plain value (bool, count, pid): expect == want, no message needed */
    VOID, /* returns nothing: just must not crash */
};

/* name, kind, call, expected, alternative expected (-1: none) */
#define CASES(X)                                                                                              \
    X(create_opts_zero, PTR, pool_create(2, &opts_zero), 0, -1)                                               \
    X(create_opts_small, PTR, pool_create(2, &opts_small), 0, -1)                                             \
    X(create_opts_nan, PTR, pool_create(2, &opts_nan), 0, -1)                                                 \
    X(workers_null, VAL, pool_workers(NULL), 0, -1)                                                           \
    X(map_null_pool, ST, pool_map(NULL, square, g_in, 8, g_out, 8, 4, NULL), POOL_EINVAL, -1)                 \
    X(map_null_fn, ST, pool_map(g_pool, NULL, g_in, 8, g_out, 8, 4, NULL), POOL_EINVAL, -1)                   \
    X(map_null_in, ST, pool_map(g_pool, square, NULL, 8, g_out, 8, 4, NULL), POOL_EINVAL, -1)                 \
    X(map_null_out, ST, pool_map(g_pool, square, g_in, 8, NULL, 8, 4, NULL), POOL_EINVAL, -1)                 \
    X(map_in_size_0, ST, pool_map(g_pool, square, g_in, 0, g_out, 8, 4, NULL), POOL_EINVAL, -1)               \
    X(map_out_size_0, ST, pool_map(g_pool, square, g_in, 8, g_out, 0, 4, NULL), POOL_EINVAL, -1)              \
    X(map_n_overflow, ST, pool_map(g_pool, square, g_in, 8, g_out, 8, BIG, NULL), POOL_EINVAL, -1)            \
    X(map_n_max, ST, pool_map(g_pool, square, g_in, 8, g_out, 8, SIZE_MAX, NULL), POOL_EINVAL, -1)            \
    X(map_in_size_max, ST, pool_map(g_pool, square, g_in, SIZE_MAX, g_out, 8, 2, NULL), POOL_EINVAL, -1)      \
    X(map_out_size_max, ST, pool_map(g_pool, square, g_in, 8, g_out, SIZE_MAX, 2, NULL), POOL_EINVAL, -1)     \
    X(map_null_pool_n0, ST, pool_map(NULL, square, NULL, 8, NULL, 8, 0, NULL), POOL_EINVAL, -1)               \
    X(map_null_fn_n0, ST, pool_map(g_pool, NULL, NULL, 8, NULL, 8, 0, NULL), POOL_EINVAL, -1)                 \
    X(mapa_null_pool, PTR, pool_map_async(NULL, square, g_in, 8, g_out, 8, 4, NULL), 0, -1)                   \
    X(mapa_null_fn, PTR, pool_map_async(g_pool, NULL, g_in, 8, g_out, 8, 4, NULL), 0, -1)                     \
    X(mapa_null_in, PTR, pool_map_async(g_pool, square, NULL, 8, g_out, 8, 4, NULL), 0, -1)                   \
    X(mapa_null_out, PTR, pool_map_async(g_pool, square, g_in, 8, NULL, 8, 4, NULL), 0, -1)                   \
    X(mapa_in_size_0, PTR, pool_map_async(g_pool, square, g_in, 0, g_out, 8, 4, NULL), 0, -1)                 \
    X(mapa_out_size_0, PTR, pool_map_async(g_pool, square, g_in, 8, g_out, 0, 4, NULL), 0, -1)                \
    X(mapa_n_overflow, PTR, pool_map_async(g_pool, square, g_in, 8, g_out, 8, BIG, NULL), 0, -1)              \
    X(mapa_n_max, PTR, pool_map_async(g_pool, square, g_in, 8, g_out, 8, SIZE_MAX, NULL), 0, -1)              \
    X(mapa_out_size_max, PTR, pool_map_async(g_pool, square, g_in, 8, g_out, SIZE_MAX, 2, NULL), 0, -1)       \
    X(mapa_null_pool_n0, PTR, pool_map_async(NULL, square, NULL, 8, NULL, 8, 0, NULL), 0, -1)                 \
    X(mapex_null_pool, ST, pool_map_ex(NULL, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts), POOL_EINVAL, -1)  \
    X(mapex_null_fn, ST, pool_map_ex(g_pool, NULL, g_in, 8, g_out, 8, 4, NULL, NULL), POOL_EINVAL, -1)        \
    X(mapex_null_in, ST, pool_map_ex(g_pool, square, NULL, 8, g_out, 8, 4, NULL, NULL), POOL_EINVAL, -1)      \
    X(mapex_null_out, ST, pool_map_ex(g_pool, square, g_in, 8, NULL, 8, 4, NULL, NULL), POOL_EINVAL, -1)      \
    X(mapex_size_0, ST, pool_map_ex(g_pool, square, g_in, 0, g_out, 8, 4, NULL, NULL), POOL_EINVAL, -1)       \
    X(mapex_overflow, ST, pool_map_ex(g_pool, square, g_in, 8, g_out, 8, BIG, NULL, NULL), POOL_EINVAL, -1)   \
    X(mapex_opts_zero, ST, pool_map_ex(g_pool, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts_zero),            \
      POOL_EINVAL, -1)                                                                                        \
    X(mapex_opts_nan, ST, pool_map_ex(g_pool, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts_nan),              \
      POOL_EINVAL, -1)                                                                                        \
    X(mapaex_null_pool, PTR, pool_map_async_ex(NULL, square, g_in, 8, g_out, 8, 4, NULL, NULL), 0, -1)        \
    X(mapaex_null_fn, PTR, pool_map_async_ex(g_pool, NULL, g_in, 8, g_out, 8, 4, NULL, NULL), 0, -1)          \
    X(mapaex_null_in, PTR, pool_map_async_ex(g_pool, square, NULL, 8, g_out, 8, 4, NULL, NULL), 0, -1)        \
    X(mapaex_size_0, PTR, pool_map_async_ex(g_pool, square, g_in, 8, g_out, 0, 4, NULL, NULL), 0, -1)         \
    X(mapaex_overflow, PTR, pool_map_async_ex(g_pool, square, g_in, 8, g_out, 8, SIZE_MAX, NULL, NULL), 0,    \
      -1)                                                                                                     \
    X(mapaex_opts_zero, PTR, pool_map_async_ex(g_pool, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts_zero),    \
      0, -1)                                                                                                  \
    X(mapaex_opts_nan, PTR, pool_map_async_ex(g_pool, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts_nan), 0,   \
      -1)                                                                                                     \
    X(applyex_ctx_null, ST, pool_apply_ex(g_pool, square, g_in, 8, g_out, 8, NULL, &g_copts_ctx8),            \
      POOL_EINVAL, -1)                                                                                        \
    X(applyaex_ctx_null, PTR, pool_apply_async_ex(g_pool, square, g_in, 8, g_out, 8, NULL, &g_copts_ctx8),    \
      0, -1)                                                                                                  \
    X(submitex_ctx_null, PTR, pool_submit_ex(g_pool, echo_task, g_in, 8, 8, NULL, &g_copts_ctx8), 0, -1)      \
    X(mapex_ctx_null, ST, pool_map_ex(g_pool, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts_ctx8),             \
      POOL_EINVAL, -1)                                                                                        \
    X(mapaex_ctx_null, PTR, pool_map_async_ex(g_pool, square, g_in, 8, g_out, 8, 4, NULL, &g_mopts_ctx8),     \
      0, -1)                                                                                                  \
    X(imap_ctx_null, PTR, pool_imap(g_pool, square, g_in, 8, 8, 4, NULL, &g_mopts_ctx8), 0, -1)               \
    X(imapu_ctx_null, PTR, pool_imap_unordered(g_pool, square, g_in, 8, 8, 4, NULL, &g_mopts_ctx8), 0, -1)    \
    X(imaps_ctx_null, PTR,                                                                                    \
      pool_imap_source(g_pool, square, count_source, NULL, 8, 8, NULL, true, &g_mopts_ctx8), 0, -1)           \
    X(applyex_ctx_max, ST, pool_apply_ex(g_pool, square, g_in, 8, g_out, 8, &g_code, &g_copts_ctxmax),        \
      POOL_ENOMEM, -1)                                                                               \
    X(applyaex_ctx_max, PTR,                                                                                  \
      pool_apply_async_ex(g_pool, square, g_in, 8, g_out, 8, &g_code, &g_copts_ctxmax), 0, POOL_ENOMEM)       \
    X(submitex_ctx_max, PTR, pool_submit_ex(g_pool, echo_task, g_in, 8, 8, &g_code, &g_copts_ctxmax),         \
      0, POOL_ENOMEM)                                                                                         \
    X(mapex_ctx_max, ST, pool_map_ex(g_pool, square, g_in, 8, g_out, 8, 4, &g_code, &g_mopts_ctxmax),         \
      POOL_ENOMEM, -1)                                                                               \
    X(mapaex_ctx_max, PTR, pool_map_async_ex(g_pool, square, g_in, 8, g_out, 8, 4, &g_code, &g_mopts_ctxmax), \
      0, POOL_ENOMEM)                                                                                         \
    X(imap_ctx_max, PTR, pool_imap(g_pool, square, g_in, 8, 8, 4, &g_code, &g_mopts_ctxmax), 0, POOL_ENOMEM)  \
    X(map_options_init_null, VOID, (pool_map_options_init(NULL), 0), 0, -1)                                   \
    X(apply_null_pool, ST, pool_apply(NULL, square, g_in, 8, g_out, 8, NULL), POOL_EINVAL, -1)                \
    X(apply_null_fn, ST, pool_apply(g_pool, NULL, g_in, 8, g_out, 8, NULL), POOL_EINVAL, -1)                  \
    X(apply_null_in, ST, pool_apply(g_pool, square, NULL, 8, g_out, 8, NULL), POOL_EINVAL, -1)                \
    X(apply_null_out, ST, pool_apply(g_pool, square, g_in, 8, NULL, 8, NULL), POOL_EINVAL, -1)                \
    X(apply_in_size_max, ST, pool_apply(g_pool, square, g_in, SIZE_MAX, g_out, 8, NULL), POOL_EINVAL,         \
      POOL_ENOMEM)                                                                                            \
    X(apply_out_size_max, ST, pool_apply(g_pool, square, g_in, 8, g_out, SIZE_MAX, NULL), POOL_EINVAL,        \
      POOL_ENOMEM)                                                                                            \
    X(applya_null_pool, PTR, pool_apply_async(NULL, square, g_in, 8, g_out, 8, NULL), 0, -1)                  \
    X(applya_null_fn, PTR, pool_apply_async(g_pool, NULL, g_in, 8, g_out, 8, NULL), 0, -1)                    \
    X(applya_null_in, PTR, pool_apply_async(g_pool, square, NULL, 8, g_out, 8, NULL), 0, -1)                  \
    X(applya_null_out, PTR, pool_apply_async(g_pool, square, g_in, 8, NULL, 8, NULL), 0, -1)                  \
    X(applya_in_size_max, PTR, pool_apply_async(g_pool, square, g_in, SIZE_MAX, g_out, 8, NULL), 0, POOL_ENOMEM) \
    X(applya_out_size_max, PTR, pool_apply_async(g_pool, square, g_in, 8, g_out, SIZE_MAX, NULL), 0, POOL_ENOMEM) \
    X(submit_null_pool, PTR, pool_submit(NULL, echo_task, g_in, 8, 8, NULL), 0, -1)                            \
    X(submit_null_fn, PTR, pool_submit(g_pool, NULL, g_in, 8, 8, NULL), 0, -1)                                \
    X(submit_null_in, PTR, pool_submit(g_pool, echo_task, NULL, 8, 8, NULL), 0, -1)                            \
    X(submit_in_len_max, PTR, pool_submit(g_pool, echo_task, g_in, SIZE_MAX, 8, NULL), 0, POOL_ENOMEM)         \
    X(submit_max_out_max, PTR, pool_submit(g_pool, echo_task, g_in, 8, SIZE_MAX, NULL), 0, POOL_ENOMEM)        \
    X(out_write_host, ST, pool_out_write(g_in, 8), POOL_EINVAL, -1)                                           \
    X(out_write_host_0, ST, pool_out_write(g_in, 0), POOL_EINVAL, -1)                                         \
    X(out_write_null, ST, pool_out_write(NULL, 8), POOL_EINVAL, -1)                                           \
    X(close_null, ST, pool_close(NULL), POOL_EINVAL, -1)                                                      \
    X(terminate_null, ST, pool_terminate(NULL), POOL_EINVAL, -1)                                              \
    X(join_null, ST, pool_join(NULL), POOL_EINVAL, -1)                                                        \
    X(join_open_pool, ST, pool_join(g_pool), POOL_EINVAL, -1)                                                 \
    X(get_null, ST, pool_async_get(NULL, -1), POOL_EINVAL, -1)                                                     \
    X(get_null_0, ST, pool_async_get(NULL, 0), POOL_EINVAL, -1)                                                    \
    X(get_nan, ST, pool_async_get(g_apply, NAN), POOL_EINVAL, -1)                                                  \
    X(wait_null, ST, pool_async_wait(NULL, -1), POOL_EINVAL, -1)                                                   \
    X(wait_nan, ST, pool_async_wait(g_apply, NAN), POOL_EINVAL, -1)                                                \
    X(wait_map_nan, ST, pool_async_wait(g_map, NAN), POOL_EINVAL, -1)                                              \
    X(ready_null, VAL, pool_async_ready(NULL), 0, -1)                                                              \
    X(successful_null, VAL, pool_async_successful(NULL), 0, -1)                                                    \
    X(result_null, ST, pool_async_result(NULL, &g_data, &g_len), POOL_EINVAL, -1)                                  \
    X(result_null_data, ST, pool_async_result(g_var, NULL, &g_len), POOL_EINVAL, -1)                               \
    X(result_null_len, ST, pool_async_result(g_var, &g_data, NULL), POOL_EINVAL, -1)                               \
    X(result_apply, ST, pool_async_result(g_apply, &g_data, &g_len), POOL_EINVAL, -1)                              \
    X(result_map, ST, pool_async_result(g_map, &g_data, &g_len), POOL_EINVAL, -1)                                  \
    X(cancel_null, ST, pool_async_cancel(NULL), POOL_EINVAL, -1)                                                   \
    X(info_null, ST, pool_async_info(NULL, &g_info, sizeof g_info), POOL_EINVAL, -1)                               \
    X(info_null_info, ST, pool_async_info(g_apply, NULL, sizeof g_info), POOL_EINVAL, -1)                          \
    X(info_short, ST, pool_async_info(g_apply, &g_info, offsetof(pool_task_info_t, message) - 1), POOL_EINVAL, -1)                       \
    X(info_zero_size, ST, pool_async_info(g_apply, &g_info, 0), POOL_EINVAL, -1)                                   \
    X(free_null, VOID, (pool_async_free(NULL), 0), 0, -1)                                                          \
    X(destroy_null, VOID, (pool_destroy(NULL), 0), 0, -1)                                                     \
    X(options_init_null, VOID, (pool_options_init(NULL), 0), 0, -1)                                           \
    X(process_create_null, PTR, pool_process_create(NULL, NULL), 0, -1)                                            \
    X(process_create_null_arg, PTR, pool_process_create(NULL, &g_code), 0, -1)                                     \
    X(process_start_null, ST, pool_process_start(NULL), POOL_EINVAL, -1)                                           \
    X(process_start_twice, ST, pool_process_start(g_done), POOL_EINVAL, -1)                                        \
    X(process_join_null, ST, pool_process_join(NULL, -1), POOL_EINVAL, -1)                                         \
    X(process_join_new, ST, pool_process_join(g_new, -1), POOL_EINVAL, -1)                                         \
    X(process_join_new_0, ST, pool_process_join(g_new, 0), POOL_EINVAL, -1)                                        \
    X(process_join_nan, ST, pool_process_join(g_done, NAN), POOL_EINVAL, -1)                                       \
    X(process_alive_null, VAL, pool_process_is_alive(NULL), 0, -1)                                                 \
    X(process_alive_new, VAL, pool_process_is_alive(g_new), 0, -1)                                                 \
    X(process_terminate_null, ST, pool_process_terminate(NULL), POOL_EINVAL, -1)                                   \
    X(process_terminate_new, ST, pool_process_terminate(g_new), POOL_EINVAL, -1)                                   \
    X(process_kill_null, ST, pool_process_kill(NULL), POOL_EINVAL, -1)                                             \
    X(process_kill_new, ST, pool_process_kill(g_new), POOL_EINVAL, -1)                                             \
    X(process_exitcode_null, ST, pool_process_exitcode(NULL, &g_code), POOL_EINVAL, -1)                            \
    X(process_exitcode_new, ST, pool_process_exitcode(g_new, &g_code), POOL_EINVAL, -1)                            \
    X(process_exitcode_null_code, ST, pool_process_exitcode(g_done, NULL), POOL_EINVAL, -1)                        \
    X(process_pid_null, VAL, pool_process_pid(NULL), -1, -1)                                                       \
    X(process_pid_new, VAL, pool_process_pid(g_new), -1, -1)                                                       \
    X(process_free_null, VOID, (pool_process_free(NULL), 0), 0, -1)

#define DEFINE_CASE(name, kind, call, want, want2) \
    static intptr_t case_##name(void) { return (intptr_t)(call); }
CASES(DEFINE_CASE)

struct bad_case {
    const char *name;
    const char *call;
    enum kind kind;
    intptr_t (*run)(void);
    intptr_t want, want2;
};

#define ROW(name, kind, call, want, want2) {#name, #call, kind, case_##name, (intptr_t)(want), (intptr_t)(want2)},
static const struct bad_case table[] = {CASES(ROW)};

/* Two failures with distinct, known messages: a case's message is fresh (its own) if it
 * differs from the marker set just before it, for one of the two markers. */
static void marker(int which, char *msg, size_t cap) {
    int st = which == 0 ? pool_process_start(NULL) : pool_close(NULL);
    if (st != POOL_EINVAL) {
        fprintf(stderr, "marker %d returned %d\n", which, st);
        CHECK(st == POOL_EINVAL);
    }
    snprintf(msg, cap, "%s", pool_last_error());
}

static void run_case(const struct bad_case *c) {
    char mark[2][512], got[512];
    marker(0, mark[0], sizeof mark[0]);
    marker(1, mark[1], sizeof mark[1]);
    if (strcmp(mark[0], mark[1]) == 0 || mark[0][0] == '\0') {
        CHECK(!"the two marker failures give distinct, non-empty messages");
        return;
    }
    int fresh = 0;
    intptr_t r = 0;
    for (int m = 0; m < 2 && !fresh; m++) {
        marker(m, mark[m], sizeof mark[m]);
        r = c->run();
        snprintf(got, sizeof got, "%s", pool_last_error());
        fresh = strcmp(got, mark[m]) != 0;
        if (c->kind == PTR && r != 0) break; /* unexpected handle: reported below */
    }
    char what[1024];
    /* pool_last_status() reports the same failure. */
    int last = pool_last_status();
    if (c->kind == ST && r != POOL_OK && last != (int)r) {
        snprintf(what, sizeof what, "%s: pool_last_status() = %d but the call returned %d", c->name, last, (int)r);
        check_fail_(__FILE__, __LINE__, what);
    }
    if (c->kind == PTR && r == 0 && last != (int)c->want2 && last != POOL_EINVAL) {
        snprintf(what, sizeof what, "%s: returned NULL; pool_last_status() = %d (%s), expected POOL_EINVAL", c->name,
                 last, pool_strerror(last));
        check_fail_(__FILE__, __LINE__, what);
    }
    switch (c->kind) {
    case ST:
        if (r != c->want && r != c->want2) {
            snprintf(what, sizeof what, "%s: %s returned %d (%s), expected %d (%s)", c->name, c->call, (int)r,
                     pool_strerror((int)r), (int)c->want, pool_strerror((int)c->want));
            check_fail_(__FILE__, __LINE__, what);
        } else if (!fresh || got[0] == '\0') {
            snprintf(what, sizeof what, "%s: %s set no pool_last_error() message", c->name, c->call);
            check_fail_(__FILE__, __LINE__, what);
        }
        break;
    case PTR:
        if (r != 0) {
            snprintf(what, sizeof what, "%s: %s returned a handle, expected NULL", c->name, c->call);
            check_fail_(__FILE__, __LINE__, what);
        } else if (!fresh || got[0] == '\0') {
            snprintf(what, sizeof what, "%s: %s returned NULL but set no pool_last_error() message", c->name, c->call);
            check_fail_(__FILE__, __LINE__, what);
        }
        break;
    case VAL:
        if (r != c->want) {
            snprintf(what, sizeof what, "%s: %s returned %ld, expected %ld", c->name, c->call, (long)r, (long)c->want);
            check_fail_(__FILE__, __LINE__, what);
        }
        break;
    case VOID:
        break;
    }
}

/* Each call of the hostile-testing report (a NULL ctx with ctx_size 8 used to crash the host
 * copying from NULL; ctx_size SIZE_MAX in a map used to abort it allocating that much), with
 * the status it gets now and a message naming what is wrong. */
static void test_ctx_size(void) {
    long y[4] = {0, 0, 0, 0}, c = 5;
    CHECK_ST(pool_apply_ex(g_pool, square, g_in, 8, y, 8, NULL, &g_copts_ctx8), POOL_EINVAL);
    CHECK_ERR_HAS("ctx is NULL");
    CHECK_ST(pool_map_ex(g_pool, square, g_in, 8, y, 8, 4, NULL, &g_mopts_ctx8), POOL_EINVAL);
    CHECK_ERR_HAS("ctx is NULL");
    CHECK(pool_submit_ex(g_pool, echo_task, g_in, 8, 8, NULL, &g_copts_ctx8) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("ctx is NULL");
    CHECK(pool_imap(g_pool, square, g_in, 8, 8, 4, NULL, &g_mopts_ctx8) == NULL);
    CHECK_EQ(pool_last_status(), POOL_EINVAL);
    CHECK_ERR_HAS("ctx is NULL");
    /* SIZE_MAX: larger than the shared heap could ever hold. */
    CHECK_ST(pool_map_ex(g_pool, square, g_in, 8, y, 8, 4, &c, &g_mopts_ctxmax), POOL_ENOMEM);
    CHECK_ERR_HAS("ctx_size");
    CHECK_ST(pool_apply_ex(g_pool, square, g_in, 8, y, 8, &c, &g_copts_ctxmax), POOL_ENOMEM);
    CHECK_ERR_HAS("ctx_size");
    CHECK(y[0] == 0 && y[3] == 0); /* nothing ran */
    /* The pool took none of it: ctx copies still work. */
    pool_map_options_t mo;
    pool_map_options_init(&mo);
    mo.ctx_size = sizeof c;
    CHECK_ST(pool_map_ex(g_pool, square, g_in, 8, y, 8, 4, &c, &mo), POOL_OK);
    CHECK_EQ(y[3], 16);
}

/* Sizes that can never fit are refused with the name the caller gave the size: in_len and
 * max_out for pool_submit, in_size and out_size for the others; never an internal error. */
static void test_size_names(void) {
    size_t huge = (size_t)1 << 50; /* more than any pool's shared heap */
    long y[2] = {0, 0};
    CHECK(pool_submit(g_pool, echo_task, g_in, 8, SIZE_MAX, NULL) == NULL);
    CHECK_ERR_HAS("max_out");
    CHECK(strstr(pool_last_error(), "out_size") == NULL);
    CHECK(pool_submit(g_pool, echo_task, g_in, SIZE_MAX, 8, NULL) == NULL);
    CHECK_ERR_HAS("in_len");
    CHECK(pool_submit(g_pool, echo_task, g_in, 8, huge, NULL) == NULL);
    CHECK_EQ(pool_last_status(), POOL_ENOMEM);
    CHECK_ERR_HAS("max_out");
    CHECK_ST(pool_apply(g_pool, square, g_in, 8, y, huge, NULL), POOL_ENOMEM);
    CHECK_ERR_HAS("out_size");
    CHECK_ST(pool_map(g_pool, square, g_in, 8, y, huge, 1, NULL), POOL_ENOMEM);
    CHECK_ERR_HAS("out_size");
    pool_iter_t *it = pool_imap(g_pool, square, g_in, 8, SIZE_MAX, 2, NULL, NULL);
    if (it != NULL) { /* refused at the first item */
        size_t index = 99;
        int st = pool_iter_next(it, y, &index, 30);
        CHECK(st == POOL_EINVAL || st == POOL_ENOMEM);
        pool_iter_free(it);
    }
    CHECK_ERR_HAS("out_size");
    CHECK(y[0] == 0 && y[1] == 0); /* nothing ran */
}

int main(void) {
    test_begin("badinput", 50);

    SECTION("setup");
    opts_small.struct_size = 1;
    pool_options_init(&opts_nan);
    opts_nan.task_timeout = NAN;
    pool_map_options_init(&g_mopts);
    pool_map_options_init(&g_mopts_nan);
    g_mopts_nan.task_timeout = NAN;
    pool_call_options_init(&g_copts_ctx8);
    g_copts_ctx8.ctx_size = 8;
    pool_call_options_init(&g_copts_ctxmax);
    g_copts_ctxmax.ctx_size = SIZE_MAX;
    pool_map_options_init(&g_mopts_ctx8);
    g_mopts_ctx8.ctx_size = 8;
    pool_map_options_init(&g_mopts_ctxmax);
    g_mopts_ctxmax.ctx_size = SIZE_MAX;
    g_pool = pool_create(2, NULL);
    REQUIRE(g_pool != NULL);
    long x = 3, y = 0;
    g_apply = pool_apply_async(g_pool, square, &x, sizeof x, &y, sizeof y, NULL);
    REQUIRE(g_apply != NULL);
    REQUIRE(pool_async_get(g_apply, -1) == POOL_OK);
    g_map = pool_map_async(g_pool, square, g_in, sizeof g_in[0], g_out, sizeof g_out[0], 4, NULL);
    REQUIRE(g_map != NULL);
    REQUIRE(pool_async_get(g_map, -1) == POOL_OK);
    g_var = pool_submit(g_pool, echo_task, "abc", 3, 16, NULL);
    REQUIRE(g_var != NULL);
    REQUIRE(pool_async_get(g_var, -1) == POOL_OK);
    g_new = pool_process_create(returns_0, NULL);
    REQUIRE(g_new != NULL);
    g_done = pool_process_create(returns_0, NULL);
    REQUIRE(g_done != NULL);
    REQUIRE(pool_process_start(g_done) == POOL_OK);
    REQUIRE(pool_process_join(g_done, -1) == POOL_OK);

    SECTION("the table");
    size_t n = sizeof table / sizeof table[0];
    for (size_t i = 0; i < n; i++) {
        check_section_ = table[i].name; /* a crash or hang names the case */
        run_case(&table[i]);
    }
    fprintf(stderr, "badinput: %zu cases run\n", n);

    SECTION("ctx_size with a NULL ctx, or SIZE_MAX: refused with a message, the host unharmed");
    test_ctx_size();

    SECTION("sizes too large: the message names the size as the caller called it");
    test_size_names();

    SECTION("outputs are written only on success");
    g_code = 12345;
    CHECK_ST(pool_process_exitcode(g_new, &g_code), POOL_EINVAL);
    CHECK_EQ(g_code, 12345);
    g_data = &g_code;
    g_len = 777;
    CHECK_ST(pool_async_result(g_apply, &g_data, &g_len), POOL_EINVAL);
    CHECK(g_data == &g_code);
    CHECK_EQ(g_len, 777);
    CHECK_ST(pool_process_exitcode(g_done, &g_code), POOL_OK);
    CHECK_EQ(g_code, 0);
    CHECK_EQ(g_out[0], 1);
    CHECK_EQ(g_out[3], 16);

    SECTION("failed calls left everything usable");
    CHECK_ST(pool_async_get(g_apply, 0), POOL_OK);
    CHECK_EQ(y, 9);
    CHECK_ST(pool_async_result(g_var, &g_data, &g_len), POOL_OK);
    CHECK_EQ(g_len, 3);
    CHECK(g_len == 3 && memcmp(g_data, "abc", 3) == 0);
    long in[1000], out[1000];
    for (int i = 0; i < 1000; i++) in[i] = i, out[i] = -1;
    CHECK_ST(pool_map(g_pool, square, in, sizeof in[0], out, sizeof out[0], 1000, NULL), POOL_OK);
    for (int i = 0; i < 1000; i++)
        if (out[i] != (long)i * i) { CHECK_EQ(out[i], (long)i * i); break; }
    CHECK_EQ(pool_workers(g_pool), 2);
    CHECK(!pool_process_is_alive(g_done));
    CHECK(pool_process_pid(g_done) > 0);

    SECTION("edge values that are valid: infinite and huge timeouts");
    CHECK_ST(pool_async_get(g_apply, INFINITY), POOL_OK);
    CHECK_ST(pool_async_get(g_apply, -INFINITY), POOL_OK);
    CHECK_ST(pool_async_wait(g_apply, 1e300), POOL_OK);
    CHECK_ST(pool_async_get(g_map, INFINITY), POOL_OK);
    CHECK_ST(pool_process_join(g_done, INFINITY), POOL_OK);
    CHECK_ST(pool_process_join(g_done, 1e300), POOL_OK);
    pool_options_t o;
    pool_options_init(&o);
    o.task_timeout = INFINITY;
    pool_t *p = pool_create(1, &o);
    CHECK(p != NULL);
    if (p) {
        x = 5;
        CHECK_ST(pool_apply(p, square, &x, sizeof x, &y, sizeof y, NULL), POOL_OK);
        CHECK_EQ(y, 25);
        pool_destroy(p);
    }
    o.task_timeout = -1; /* <= 0: no limit */
    p = pool_create(1, &o);
    CHECK(p != NULL);
    pool_destroy(p);
    o.task_timeout = 1e300;
    p = pool_create(1, &o);
    CHECK(p != NULL);
    pool_destroy(p);

    SECTION("a timeout of NaN on a pending result is rejected at once");
    double t0 = now_s();
    CHECK_ST(pool_async_get(g_map, NAN), POOL_EINVAL);
    CHECK_TOOK(t0, 1, "pool_async_get with a NaN timeout");

    SECTION("teardown");
    pool_async_free(g_apply);
    pool_async_free(g_map);
    pool_async_free(g_var);
    pool_process_free(g_new);
    pool_process_free(g_done);
    CHECK_ST(pool_close(g_pool), POOL_OK);
    CHECK_ST(pool_join(g_pool), POOL_OK);
    pool_destroy(g_pool);
    return test_finish();
}
