#ifndef POOL_H
#define POOL_H

/*
 * libpool: a process pool for C and C++.
 *
 * DO NOT EDIT: generated from src/ffi by cbindgen (cbindgen.toml).
 * Regenerate with `POOL_BLESS=1 cargo test --test header`; the tests fail if it drifts.
 *
 * Conventions: every function may be called from any thread unless its comment says
 * otherwise; functions returning int return a pool_status (POOL_OK is 0) and, on failure, leave
 * a message for pool_last_error() on the calling thread; functions returning a handle return
 * NULL on failure; *_free(NULL) and pool_destroy(NULL) are no-ops. Work submitted to a pool
 * runs in other processes, forked when the pool was created: the function pointers passed to it
 * must be code loaded then, and a ctx passed by address is seen as it was then. Calls refuse a
 * ctx whose bytes changed since (or that did not exist then) with POOL_EINVAL: pass ctx_size to
 * copy it with the call (see pool_map_options_t).
 *
 * Misuse is answered, not punished: every call checks its handle before it touches anything.
 * A handle already freed (or destroyed), one of another type, or a pointer libpool never
 * returned gets POOL_EINVAL (NULL, false, 0 or -1 from functions returning those; void
 * functions only set pool_last_error()), never a crash or a hang. Inside a task (in a worker),
 * every function that takes or creates a pool, result, iterator, stream or process handle
 * answers POOL_EINVAL: a task cannot drive its own pool (pool_out_write, pool_out_reserve,
 * pool_out_commit and pool_task_error are meant for tasks). In a child forked by the host, such
 * a handle inherited from the parent gets POOL_EINVAL and leaves the parent's pool, results and
 * processes untouched; freeing it releases only the child's copy. The child can create and
 * use pools and processes of its own.
 * Queues, locks and events (pool_queue_t, pool_lock_t, pool_event_t) are the exception, made to
 * be shared: their handles work in the host's threads, tasks, Process children and their forks.
 *
 * Cancellation: no libpool function is a cancellation point. A thread cancelled (pthread_cancel)
 * while blocked in one finishes the call, and the cancel takes effect at its next cancellation
 * point after the call returns. To cancel a waiting thread promptly, wait in a loop with a
 * timeout (pool_async_get, pool_iter_next, pool_process_join) and call pthread_testcancel between waits.
 * Callbacks run by the calling thread (a pool_imap_source or pool_stream_source source) run
 * with cancellation disabled.
 */

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
/* Opaque handles. */
typedef struct pool_s pool_t;
typedef struct pool_async_s pool_async_t;
typedef struct pool_process_s pool_process_t;
typedef struct pool_iter_s pool_iter_t;
typedef struct pool_stream_s pool_stream_t;
typedef struct pool_queue_s pool_queue_t;
typedef struct pool_lock_s pool_lock_t;
typedef struct pool_event_s pool_event_t;


/**
 * Library version, kept equal to Cargo.toml by a test.
 */
#define POOL_VERSION_MAJOR 0

#define POOL_VERSION_MINOR 1

#define POOL_VERSION_PATCH 0

/**
 * `pool_options_t.sandbox`: no sandbox (the default).
 */
#define POOL_SANDBOX_NONE 0

/**
 * `pool_options_t.sandbox`: workers confined to computing on what they are given.
 */
#define POOL_SANDBOX_COMPUTE 1

/**
 * Largest message part a transport is asked to carry (1 GiB: fits an `int` count). Longer
 * messages are cut into parts of this size, sent in order with the same tag.
 */
#define POOL_TRANSPORT_MAX_PART (1 << 30)

/**
 * Status codes returned by libpool functions. The values are fixed and never reused.
 */
typedef enum {
  /**
   * Success.
   */
  POOL_OK = 0,
  /**
   * An argument is invalid (NULL, zero size, overflow, wrong state, wrong process).
   */
  POOL_EINVAL = 1,
  /**
   * Out of memory, or the pool's shared memory cannot hold the data.
   */
  POOL_ENOMEM = 2,
  /**
   * A system call failed; `pool_last_error()` names it and gives the errno text.
   */
  POOL_ESYS = 3,
  /**
   * Not ready within the timeout, or the task ran past the pool's `task_timeout`.
   */
  POOL_ETIMEDOUT = 4,
  /**
   * The task function returned nonzero; `pool_last_error()` gives its code.
   */
  POOL_ETASK = 5,
  /**
   * The worker running the task died (signal or exit); `pool_last_error()` says how.
   */
  POOL_ECRASHED = 6,
  /**
   * The pool is closed or terminated.
   */
  POOL_ECLOSED = 7,
  /**
   * An internal error was caught at the library boundary (a bug in libpool).
   */
  POOL_EPANIC = 8,
  /**
   * The work was cancelled with `pool_async_cancel`.
   */
  POOL_ECANCELLED = 9,
  /**
   * An iterator has returned every result (`pool_iter_next`).
   */
  POOL_EDONE = 10,
  /**
   * The pool's shared memory was found overwritten (a task wrote where no task can write
   * without looking for it): the results it held cannot be trusted, so they fail with this
   * status and the pool is terminated.
   */
  POOL_ECORRUPT = 11,
  /**
   * `pool_lock_acquire` took the lock, but its previous holder died holding it: what the
   * lock protects may be half-updated. The caller holds the lock.
   */
  POOL_EOWNERDEAD = 12,
} pool_status;

/**
 * A block of a map, run in a worker process: items `first .. first+count-1`, their inputs at
 * `input` (`count * in_size` bytes, NULL if `in_size` is 0) and their outputs to write at `out`
 * (`count * out_size` bytes, NULL if `out_size` is 0). Return 0 for success; anything else
 * fails the whole block with that code.
 */
typedef int (*pool_block_fn)(const void *input, void *out, size_t count, size_t first, void *ctx);

/**
 * A completion callback: `a` is the result that became ready, `status` its status (as
 * `pool_async_get` would return it; on failure `pool_last_error()` holds the message), `arg` the
 * `callback_arg` given with it. Called once per result, from the pool's callback thread (one
 * per pool, started on first use), one callback at a time for a pool, in the order results
 * are found ready. During the call `a` is valid: `pool_async_result`, `pool_async_info` work, and the
 * callback may `pool_async_free` it. A result freed before its callback started gets none; an
 * `pool_async_free` from another thread while the callback runs (any other thread: the
 * caller's, or another pool's callback thread) waits for it to return, so what the callback
 * reads may be freed once `pool_async_free` returns. The one exception is a wait that would
 * deadlock: two callbacks that free each other's results at the same time (or a longer circle
 * of them) do not wait for each other. Keep callbacks short: the next
 * waits. A callback may submit work, even to its own pool, and may destroy any pool (the
 * callbacks still pending then get `POOL_ECLOSED`; `pool_destroy` called from a callback
 * does not wait for the destroyed pool's callback thread).
 */
typedef void (*pool_callback_fn)(pool_async_t *a, int status, void *arg);

/**
 * Per-call options for `pool_map_ex` / `pool_map_async_ex`. Call `pool_map_options_init`
 * first.
 */
typedef struct {
  /**
   * sizeof(pool_map_options_t) as the caller was compiled; set by `pool_map_options_init`.
   */
  size_t struct_size;
  /**
   * Items per task sent to a worker; 0 (the default) chooses automatically.
   */
  size_t chunksize;
  /**
   * If not NULL, an array of `n` ints that receives every item's status (`POOL_OK`,
   * `POOL_ETASK`, `POOL_ECRASHED`, ...), so one bad item never hides the others. Written by
   * the time the map returns or its result is ready; never after `pool_async_free`.
   */
  int *statuses;
  /**
   * Seconds each item may run, overriding the pool's `task_timeout`; <= 0 keeps the pool's.
   */
  double task_timeout;
  /**
   * If > 0, `ctx` points to `ctx_size` bytes that are copied with the call: every item sees
   * them as they were when the call was made, wherever they live (memory allocated after
   * `pool_create` included). Tasks get a read-only copy (a task that writes it crashes its
   * worker). Each chunk carries its own copy: keep it small, and put big read-only tables in
   * memory allocated before `pool_create` or from `pool_shm_alloc`. A copy that holds a
   * pointer (in its first 4 KiB) into the calling thread's stack or into memory mapped after
   * `pool_create` is refused (`POOL_EINVAL`): workers would follow it to stale bytes or to
   * nothing.
   *
   * 0 (the default): `ctx` is passed as it is, and workers see the memory there as it was at
   * `pool_create`. The call checks that this is what the caller has: it compares the bytes
   * at `ctx` with the workers' copy (a global's whole variable, up to 1 KiB, when the
   * program's symbol table gives its size; elsewhere the first 64 bytes) and fails with
   * `POOL_EINVAL`, naming `ctx`, if they differ (a struct filled or allocated after
   * `pool_create`) or if `ctx` is in memory mapped after `pool_create`. Constants, shared
   * memory (`pool_shm_alloc`, `MAP_SHARED` mappings made before the pool) and NULL always
   * pass; an address that is not mapped at all (a number cast to a pointer) is passed
   * through untouched. When only bytes after a small object changed, the call is refused
   * too: pass `ctx_size`.
   */
  size_t ctx_size;
  /**
   * `pool_map_async_ex` only (others refuse it: `POOL_EINVAL`): called once, with the map's
   * status, when its result is ready (see `pool_callback_fn`).
   */
  pool_callback_fn callback;
  /**
   * Passed to `callback`.
   */
  void *callback_arg;
  /**
   * With `ctx_size`: true refuses (`POOL_EINVAL`) a copied `ctx` holding a pointer into this
   * process's own memory (its heap, stacks, writable data), where workers read what was there
   * at `pool_create` and what they write stays in the worker; only values, and pointers to
   * memory workers share (`pool_shm_alloc`, `MAP_SHARED` mappings made before the pool) or to
   * constants, pass. pool.hpp sets it for loop bodies. False (the default): such a pointer
   * passes if the first bytes it points to are still what workers have.
   */
  bool ctx_shared_pointers_only;
} pool_map_options_t;

/**
 * A task function, run in a worker process: `input` points to one input item, `out` to its
 * result slot (NULL when the item or result size is 0). Return 0 for success; any other value
 * is the task's own error code (the call then reports `POOL_ETASK`).
 */
typedef int (*pool_fn)(const void *input, void *out, void *ctx);

/**
 * Produces input item `index` (0, 1, 2, ...) into `item` (`in_size` bytes) for
 * `pool_imap_source`. Return 0 for an item, 1 when there are no more, any other value for an
 * error (which also ends the input; `pool_iter_next` reports it after the last result).
 * Runs in the thread calling `pool_iter_next`, never in a worker.
 */
typedef int (*pool_source_fn)(void *item, size_t index, void *source_ctx);

/**
 * Options for `pool_create`. Always call `pool_options_init` first: it fills the defaults and
 * stamps `struct_size`, which lets later versions add fields without breaking the ABI.
 */
typedef struct {
  /**
   * sizeof(pool_options_t) as the caller was compiled; set by `pool_options_init`.
   */
  size_t struct_size;
  /**
   * Runs once in every worker process when it starts (replacements included), before any
   * task. NULL for none.
   */
  void (*initializer)(void *initarg);
  /**
   * Argument for `initializer`; must point into memory that exists at `pool_create`.
   */
  void *initarg;
  /**
   * Tasks (an apply, or a map chunk) a worker runs before it is replaced; 0 = unlimited.
   */
  uint64_t max_tasks_per_child;
  /**
   * Seconds one item may run before its worker is stopped (SIGTERM, then SIGKILL 100 ms
   * later) and the item fails with `POOL_ETIMEDOUT`; <= 0 for no limit.
   */
  double task_timeout;
  /**
   * Resident memory in bytes past which a worker is replaced once its current task ends
   * (for tasks that leak); 0 for no limit.
   */
  uint64_t max_rss;
  /**
   * Virtual size in bytes of the pool's shared memory, which holds the data of the tasks in
   * flight (a single input or result can be nearly this big). Only pages in use cost memory.
   * 0 for the default: 32 GiB, or the `POOL_SHM_SIZE` environment variable (e.g. "1G"),
   * handy under valgrind, whose leak checker reads all of it.
   */
  size_t shm_size;
  /**
   * Like `initializer`, but it can fail: it returns 0 to go on, anything else to refuse
   * (after `pool_task_error(message)` if it wants to say why). A refusal at start-up makes
   * `pool_create` fail with `POOL_ETASK` and a message carrying the code and that message
   * (e.g. a worker that cannot load its model or open its database); refusals of replacement
   * workers count as deaths in the initializer. Gets `initarg`. Set at most one of the two
   * initializers. NULL for none.
   */
  int (*initializer_ex)(void *initarg);
  /**
   * Seconds a worker may take to start (its initializer, if any, included) before it is
   * killed; 0 for the default (300 s), < 0 for no bound. At `pool_create`, a worker still
   * starting then makes `pool_create` fail with `POOL_ETIMEDOUT` and a message naming the
   * initializer and the bound; every worker is gone by then (no process, descriptor or
   * mapping is left). A replacement worker (after a crash, `max_tasks_per_child`, `max_rss`)
   * past the bound is killed too and counts as a death in the initializer: after three in a
   * row the pool reports itself broken (`POOL_ECRASHED`, naming the hang), so queued and
   * later work fails instead of waiting forever. Size it for the slowest start you accept,
   * tools included: valgrind makes start-up 20 to 50 times slower.
   */
  double start_timeout;
  /**
   * `POOL_SANDBOX_NONE` (0, the default) or `POOL_SANDBOX_COMPUTE`: tasks run in a process of
   * their own, forked from their worker once its initializer ran (a fresh one for every task
   * unless `sandbox_tasks_per_process` says otherwise), which maps the pool's memory
   * read-only: a task can write its own outputs and nothing else of the pool's
   * (`pool_shm_alloc` buffers included), and queues, locks and events are refused to it
   * (`POOL_EINVAL`). That process is confined for life: a
   * process group of its own it cannot leave, stdin from /dev/null, the other descriptors it inherited closed
   * (those the initializer opened stay), every capability dropped, `no_new_privs`; no
   * filesystem but reading `sandbox_read_paths` and writing `sandbox_write_paths` (Landlock:
   * other opens fail with `EACCES`; metadata changes and file watches with `EPERM`; `stat`
   * and `access` still work everywhere); `socket` fails with `EACCES`; no new process or
   * namespace, `execve`, `ptrace`, `process_vm_*`, signal or rlimit of another process,
   * mount, `bpf`, `io_uring`, `userfaultfd`, `perf_event_open`, keyring or `personality`
   * (seccomp: such a call kills the worker, and its item fails alone with `POOL_ECRASHED`
   * naming the call). Threads stay allowed; the initializer must leave none running, nor any
   * process (else `pool_create` fails with `POOL_ESYS`). If the system cannot give all of it
   * (no Landlock, no seccomp, no /proc), `pool_create` fails with `POOL_ESYS` saying what is
   * missing, never with a weaker sandbox; `pool_sandbox_report` says what workers get.
   */
  int sandbox;
  /**
   * NULL-terminated list of files and directories (recursively) a sandboxed worker may read;
   * NULL for none. Read and resolved at `pool_create` only (relative paths against the
   * working directory then); a path that does not exist is `POOL_EINVAL`, as are paths
   * given while `sandbox` is `POOL_SANDBOX_NONE`.
   */
  const char *const *sandbox_read_paths;
  /**
   * NULL-terminated list of files and directories (recursively) a sandboxed worker may read,
   * write, create and remove in; NULL for none. As `sandbox_read_paths` otherwise.
   */
  const char *const *sandbox_write_paths;
  /**
   * Tasks (an apply, or a map chunk) one sandboxed process runs before a fresh one, forked
   * from the worker as it was after its initializer, replaces it. 0 or 1 (the default): a
   * fresh process for every task, so a task that takes its process over can never touch
   * the results of the tasks after it (another caller's, say). More trades that away for
   * speed: the fork and sandbox set-up (about 0.5 ms here) are then paid once per
   * that many tasks, and a hijacked process can falsify the results of the tasks it runs
   * until it is replaced. Set only with a sandbox (`POOL_EINVAL` otherwise).
   */
  uint64_t sandbox_tasks_per_process;
} pool_options_t;

/**
 * Per-call options for `pool_apply_ex`, `pool_apply_async_ex` and `pool_submit_ex`. Call
 * `pool_call_options_init` first.
 */
typedef struct {
  /**
   * sizeof(pool_call_options_t) as the caller was compiled; set by `pool_call_options_init`.
   */
  size_t struct_size;
  /**
   * Seconds the task may run, overriding the pool's `task_timeout`; <= 0 keeps the pool's.
   */
  double task_timeout;
  /**
   * As in `pool_map_options_t`: if > 0, `ctx_size` bytes at `ctx` are copied with the call.
   */
  size_t ctx_size;
  /**
   * `pool_apply_async_ex` and `pool_submit_ex` only (`pool_apply_ex` refuses it:
   * `POOL_EINVAL`): called once, with the task's status, when its result is ready (see
   * `pool_callback_fn`).
   */
  pool_callback_fn callback;
  /**
   * Passed to `callback`.
   */
  void *callback_arg;
} pool_call_options_t;

/**
 * A variable-size task, run in a worker process: `input` holds `in_len` bytes (NULL if 0); the
 * result is written with `pool_out_write`. Return 0 for success, any other value is the
 * task's own error code.
 */
typedef int (*pool_task_fn)(const void *input, size_t in_len, void *ctx);

/**
 * A function run in a child process by `pool_process_start`; its return value (0-255) is the
 * child's exit status.
 */
typedef int (*pool_process_fn)(void *arg);

/**
 * Options for `pool_process_create_ex`. Call `pool_process_options_init` first.
 */
typedef struct {
  /**
   * sizeof(pool_process_options_t) as the caller was compiled; set by `pool_process_options_init`.
   */
  size_t struct_size;
  /**
   * A daemon child is killed (SIGKILL) when the host process ends, however it ends (even by
   * SIGKILL), as Python's `daemon=True` processes are; a plain child outlives its parent.
   * (Linux ties this to the thread that called `pool_process_start`: start daemons from a thread
   * that lives as long as the process, such as the main thread.)
   */
  bool daemon;
  /**
   * The child's name in `ps` and `/proc/<pid>/comm` (the first 15 bytes), or NULL to keep
   * the host's. Copied by `pool_process_create_ex`.
   */
  const char *name;
} pool_process_options_t;

/**
 * How a finished task ended; for a map, its lowest-index failing item (`item` >= 0), or
 * `POOL_OK` and `item` -1 if every item succeeded.
 */
typedef struct {
  /**
   * The result's status.
   */
  int status;
  /**
   * The task's own return value (nonzero for `POOL_ETASK`).
   */
  int task_code;
  /**
   * The worker process that ran it, 0 if none did.
   */
  int pid;
  /**
   * The worker's exit status if it exited while running the task, else -1.
   */
  int exit_code;
  /**
   * The signal that killed the worker while running the task, else 0.
   */
  int signal;
  /**
   * Whether that signal dumped core.
   */
  bool core_dumped;
  /**
   * For maps, the index of the item described; -1 otherwise.
   */
  int64_t item;
  /**
   * The task's own message (`pool_task_error`), NUL-terminated; "" if it gave none. Written
   * only if `info_size` covers it (callers built before it existed pass a smaller size).
   */
  char message[256];
} pool_task_info_t;

/**
 * Options for `pool_stream` and `pool_stream_source`. Call `pool_stream_options_init` first.
 */
typedef struct {
  /**
   * sizeof(pool_stream_options_t) as the caller was compiled; set by the init function.
   */
  size_t struct_size;
  /**
   * Results in item order (true, the default), or as they complete (`*index` says which).
   */
  bool ordered;
  /**
   * Items submitted and not yet handed back, at most: what bounds the stream's memory
   * (about `window * (max_in + max_out)` bytes of shared memory). 0 (the default): twice
   * the workers, plus two.
   */
  size_t window;
  /**
   * Seconds each item may run, overriding the pool's `task_timeout`; <= 0 keeps the pool's.
   */
  double task_timeout;
  /**
   * As in `pool_map_options_t`: if > 0, `ctx_size` bytes at `ctx` are copied when the stream
   * starts, and every item sees those bytes (each item in flight carries a copy: keep it
   * small).
   */
  size_t ctx_size;
} pool_stream_options_t;

/**
 * One input buffer of `pool_stream`: `len` bytes at `data` (NULL if `len` is 0).
 */
typedef struct {
  const void *data;
  size_t len;
} pool_buf_t;

/**
 * Produces input item `index` (0, 1, 2, ...) for `pool_stream_source`: writes at most `cap`
 * bytes to `buf` (the pool's shared memory: the task reads them there, no copy) and their
 * count to `*len`. Return 0 for an item, 1 when there are no more, any other value for an
 * error (which ends the input; `pool_stream_next` reports it after the last result). Runs in
 * the thread calling `pool_stream_next`, never in a worker.
 */
typedef int (*pool_stream_source_fn)(void *buf,
                                     size_t cap,
                                     size_t *len,
                                     size_t index,
                                     void *source_ctx);

/**
 * A message transport between the processes (ranks) of one pool, given to
 * `pool_create_distributed`. Every callback is called from one thread at a time (on the root,
 * the pool's runner thread; elsewhere the thread that called `pool_create_distributed`), never
 * with more than `POOL_TRANSPORT_MAX_PART` bytes. Tags are small positive ints.
 */
typedef struct {
  /**
   * `sizeof(pool_transport_t)`.
   */
  size_t struct_size;
  /**
   * Passed to every callback.
   */
  void *ctx;
  /**
   * This process's rank, the number of ranks, and the rank that gets the pool.
   */
  int rank;
  int size;
  int root;
  /**
   * Sends `len` bytes to rank `dest` with `tag`. May return before the message is received
   * but must not keep `buf`. Returns 0, or -1 on failure.
   */
  int (*send)(void *ctx, int dest, int tag, const void *buf, size_t len);
  /**
   * Looks for an arrived message without blocking: 1 with its source, tag and length set, 0
   * if there is none, -1 on failure.
   */
  int (*probe)(void *ctx, int *source, int *tag, size_t *len);
  /**
   * Receives the next message from `source` with `tag`, `len` bytes (as probed, or the next
   * part of a long message), waiting for it. Returns 0, or -1 on failure.
   */
  int (*recv)(void *ctx, int source, int tag, void *buf, size_t len);
  /**
   * Called once when the pool no longer needs the transport (may be NULL).
   */
  void (*release)(void *ctx);
  /**
   * If not NULL, the transport cannot work (it says why): `pool_create_distributed` fails
   * with `POOL_EINVAL` and this message, without sending anything.
   */
  const char *error;
} pool_transport_t;

#ifdef __cplusplus
extern "C" {
#endif // __cplusplus

/**
 * `pool_map` for functions that take a block of consecutive items per call (`pool_block_fn`):
 * one call per chunk instead of one per item, for items too small to pay a call each (a loop
 * the compiler can vectorise, a library call that takes arrays). `opts->chunksize` is the
 * block size (0: automatic, a few blocks per worker). Item sizes may be 0 (a loop over
 * indices with no data: `input`/`out` may then be NULL). A block that fails (returns nonzero,
 * crashes, times out: `task_timeout` applies to a whole block) fails alone: each of its items
 * gets its status in `opts->statuses`, and the map returns the status of the lowest failed
 * block, with `pool_last_error()` naming its first item. Buffers from `pool_shm_alloc` are
 * used in place (no copy); others are copied through shared memory block by block.
 * Ownership: `input` and `out` stay the caller's. Thread safety: any thread. Not a cancellation
 * point (as `pool_map`).
 */
int pool_map_blocks(pool_t *pool,
                    pool_block_fn f,
                    const void *input,
                    size_t in_size,
                    void *out,
                    size_t out_size,
                    size_t n,
                    void *ctx,
                    const pool_map_options_t *opts);

/**
 * `pool_map_blocks` returning at once with a handle (as `pool_map_async_ex`: buffers and
 * `statuses` stay valid until the result is ready or the handle freed; a `callback` in `opts`
 * is called when it is ready).
 * Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
 */
pool_async_t *pool_map_blocks_async(pool_t *pool,
                                    pool_block_fn f,
                                    const void *input,
                                    size_t in_size,
                                    void *out,
                                    size_t out_size,
                                    size_t n,
                                    void *ctx,
                                    const pool_map_options_t *opts);

/**
 * The version of the library as "MAJOR.MINOR.PATCH" (a static string).
 *
 * Thread safety: safe from any thread.
 */
const char *pool_version(void);

/**
 * A static, human-readable description of a status code ("unknown status" for others).
 *
 * Ownership: the string is static; do not free it. Thread safety: safe from any thread.
 */
const char *pool_strerror(int status);

/**
 * A message about the calling thread's most recent failure: what failed and why (the item
 * index, the task's return code, the signal that killed a worker, the errno text). Empty
 * ("") if nothing failed yet on this thread.
 *
 * Ownership: owned by the library; valid until the next libpool call on this thread.
 * Thread safety: each thread has its own message.
 */
const char *pool_last_error(void);

/**
 * The status of the calling thread's most recent failure (`POOL_OK` if none yet): useful after
 * a function that returns NULL, such as `pool_create` or `pool_apply_async`.
 *
 * Thread safety: each thread has its own status.
 */
int pool_last_status(void);

/**
 * Creates a queue that holds up to `max_bytes` of messages (each message takes its length
 * rounded up to 8, plus 8 bytes; any single message of up to `max_bytes` fits). The queue
 * lives in shared memory made before the library's first fork, so it works in the host's
 * threads, in `Process` children, in pool tasks (whatever pool they belong to, created before
 * or after the queue) and in what those fork; its size is `POOL_IPC_SIZE` (default 64 MiB, at
 * most 4 GiB, read once, before the first pool, process or queue). Returns NULL on failure
 * (`POOL_EINVAL` for 0, `POOL_ENOMEM` when the shared memory is full).
 * Ownership: free it with `pool_queue_free`, once, from any process that has it.
 * Thread safety: every queue function may be called from any thread of any of those processes.
 * Limits: every call on a queue, lock or event counts itself in a table of 16384 (process,
 * object) pairs while it runs; a call that finds it full fails with `POOL_ENOMEM`. An object
 * whose creating process dies inside its `_create` call, after the object was made and before
 * the call returned, is never freed (nobody has its handle).
 */
pool_queue_t *pool_queue_create(size_t max_bytes);

/**
 * Appends the `len` bytes at `data` as one message, waiting up to `timeout` seconds (negative:
 * forever; 0: not at all) while the queue is full (`POOL_ETIMEDOUT`). A message that can never
 * fit is refused at once (`POOL_EINVAL`); after `pool_queue_close`, `POOL_ECLOSED`. Messages
 * arrive whole and, from one producer, in order. A producer or consumer killed at any instant
 * (SIGKILL included) never leaves the queue locked or a message half-written.
 * Ownership: the bytes are copied. Not a cancellation point.
 */
int pool_queue_put(pool_queue_t *q, const void *data, size_t len, double timeout);

/**
 * Takes the oldest message into `buf` (`cap` bytes), waiting up to `timeout` seconds (negative:
 * forever; 0: not at all) while the queue is empty (`POOL_ETIMEDOUT`). `*len` gets the
 * message's length. If the message is longer than `cap`, returns `POOL_ENOMEM` with `*len` set
 * to its length and leaves it in the queue: call again with a buffer that big. After
 * `pool_queue_close`, what was queued is still handed out, then `POOL_ECLOSED`.
 * `len` may be NULL only if the caller does not need the length. Not a cancellation point.
 */
int pool_queue_get(pool_queue_t *q, void *buf, size_t cap, size_t *len, double timeout);

/**
 * Closes the queue: every waiting and later `pool_queue_put` returns `POOL_ECLOSED`;
 * `pool_queue_get` hands out what is left, then returns `POOL_ECLOSED` (waiters wake).
 */
int pool_queue_close(pool_queue_t *q);

/**
 * Frees the queue. Calls waiting in it (in any process) return `POOL_EINVAL`, as does any
 * later use of the handle, in every process. Its memory is reused once no live process is
 * inside a call on it: processes that died inside calls (any number, SIGKILL included) do not
 * count; one stopped inside (SIGSTOP, a debugger) delays the reuse until it has left, without
 * delaying this call more than a fraction of a second.
 * NULL is a no-op; a handle already freed sets `pool_last_error()` and does nothing.
 */
void pool_queue_free(pool_queue_t *q);

/**
 * Creates a lock shared by the host's threads and every process it forks (like
 * `pool_queue_create`). Unlike a plain mutex, a holder that dies (SIGKILL included) does not
 * lose it: the next `pool_lock_acquire` gets it with `POOL_EOWNERDEAD`. Returns NULL on failure.
 * Ownership: free it with `pool_lock_free`. Thread safety: any thread of any of those processes.
 */
pool_lock_t *pool_lock_create(void);

/**
 * Takes the lock, waiting up to `timeout` seconds (negative: forever; 0: not at all;
 * `POOL_ETIMEDOUT`). `POOL_OK`, or `POOL_EOWNERDEAD`: taken, but the previous holder died
 * holding it (repair what it protects; the lock stays usable). A thread that already holds it
 * gets `POOL_EINVAL`. The lock belongs to the calling thread until it releases it.
 * Not a cancellation point.
 */
int pool_lock_acquire(pool_lock_t *l, double timeout);

/**
 * Releases the lock; `POOL_EINVAL` unless the calling thread holds it.
 */
int pool_lock_release(pool_lock_t *l);

/**
 * Frees the lock (see `pool_queue_free`). NULL is a no-op. Its memory is reused only once no
 * thread holds it (a holder that dies releases it).
 */
void pool_lock_free(pool_lock_t *l);

/**
 * Creates an event (a flag, initially clear) that threads and processes wait on (shared like
 * `pool_queue_create`). Returns NULL on failure. Ownership: free it with `pool_event_free`.
 * Thread safety: any thread of any of those processes.
 */
pool_event_t *pool_event_create(void);

/**
 * Sets the event: every thread and process waiting in `pool_event_wait` wakes and gets
 * `POOL_OK`, even if the event is cleared before it runs again (as Python's `Event.wait`
 * returns True to every thread a `set()` woke); later waits return at once until it is
 * cleared. A setter killed inside this call leaves the event set or not set, and waiters
 * notice a set within a fraction of a second even if the wake-up was lost with it.
 */
int pool_event_set(pool_event_t *e);

/**
 * Clears the event.
 */
int pool_event_clear(pool_event_t *e);

/**
 * Whether the event is set (false, with `pool_last_error()` set, for a bad handle).
 */
bool pool_event_is_set(pool_event_t *e);

/**
 * Waits up to `timeout` seconds (negative: forever) until the event is set: `POOL_OK` if it
 * is set, or was set while this call waited (even if cleared since); else `POOL_ETIMEDOUT`.
 * Not a cancellation point.
 */
int pool_event_wait(pool_event_t *e, double timeout);

/**
 * Frees the event (see `pool_queue_free`); waiters return `POOL_EINVAL`. NULL is a no-op.
 */
void pool_event_free(pool_event_t *e);

/**
 * Like `pool_imap`, for input of any length produced on demand: `source` writes each item
 * straight into the pool's shared memory as workers need more, so neither the input nor the
 * results ever need to be in memory at once. `ordered`: results in item order, or as they
 * complete. `opts` may be NULL (`chunksize` 0 picks up to 1024 items per chunk).
 * Returns NULL on failure with `pool_last_error()` set.
 * Ownership: free with `pool_iter_free`. Thread safety: any thread.
 */
pool_iter_t *pool_imap_source(pool_t *pool,
                              pool_fn f,
                              pool_source_fn source,
                              void *source_ctx,
                              size_t in_size,
                              size_t out_size,
                              void *ctx,
                              bool ordered,
                              const pool_map_options_t *opts);

/**
 * Like `pool_map`, but results come back one at a time through `pool_iter_next`, in item
 * order, as they complete. Only a few chunks are in flight and waiting to be read at any time:
 * a consumer slower than the workers holds them back (backpressure), so memory stays bounded
 * for any `n`. `opts` may be NULL (its `statuses` field is ignored: each result carries its
 * own status). `input` must stay valid until the iterator is freed.
 * Returns NULL on failure with `pool_last_error()` set.
 * Ownership: free with `pool_iter_free`. Thread safety: any thread.
 */
pool_iter_t *pool_imap(pool_t *pool,
                       pool_fn f,
                       const void *input,
                       size_t in_size,
                       size_t out_size,
                       size_t n,
                       void *ctx,
                       const pool_map_options_t *opts);

/**
 * `pool_imap` whose results come back in the order they complete (`*index` tells which item
 * each one is). Same arguments, errors and ownership as `pool_imap`.
 * Thread safety: any thread.
 */
pool_iter_t *pool_imap_unordered(pool_t *pool,
                                 pool_fn f,
                                 const void *input,
                                 size_t in_size,
                                 size_t out_size,
                                 size_t n,
                                 void *ctx,
                                 const pool_map_options_t *opts);

/**
 * Waits up to `timeout` seconds (negative: forever) for the next result. On `POOL_OK` its
 * output is in `out` (`out_size` bytes) and `*index` says which item it is. If that item
 * failed, returns its status (`POOL_ETASK`, `POOL_ECRASHED`, ...) with `*index` set, `out`
 * untouched and `pool_last_error()` saying why; the next call goes on with the other items.
 * `POOL_ETIMEDOUT`: nothing ready yet. `POOL_EDONE`: every result was returned. A return that
 * is about no item (these two, a source's own status, a refusal) sets `*index` to `SIZE_MAX`.
 * If the pool
 * stops taking work before the input ends (joined, terminated, zygote killed, or found
 * corrupt), what was submitted still comes back, then each array item never submitted with
 * `POOL_ECLOSED` ("never run" after `POOL_ECORRUPT`) and its index (a source: the status
 * once), then `POOL_EDONE`. Called from
 * inside the same iterator's source, returns `POOL_EINVAL` (it would wait for itself).
 * `index` may be NULL. Thread safety: one consumer at a time (calls are serialised). Not a
 * cancellation point: a cancel takes effect after it returns; to cancel a waiting thread
 * promptly, wait in a loop with a timeout and call `pthread_testcancel` between waits.
 */
int pool_iter_next(pool_iter_t *it, void *out, size_t *index, double timeout);

/**
 * Frees an iterator; work for results not yet read is cancelled (once a `pool_iter_next` still
 * running in another thread has returned). NULL is a no-op.
 * Ownership: `it` is invalid afterwards: any later call with it (a second `pool_iter_free`
 * included) does nothing but report `POOL_EINVAL` ("not a live handle"). In a forked child,
 * only the child's copy of the handle is released. Thread safety: any thread.
 */
void pool_iter_free(pool_iter_t *it);

/**
 * Fills `opts` with the defaults (no initializer, unlimited tasks per child, no timeout, the
 * default start-up bound) and stamps its size. NULL is a no-op.
 *
 * Thread safety: safe from any thread on distinct structs.
 */
void pool_options_init(pool_options_t *opts);

/**
 * Fills `opts` with the defaults (automatic chunks, no statuses, the pool's timeout) and
 * stamps its size. NULL is a no-op.
 *
 * Thread safety: safe from any thread on distinct structs.
 */
void pool_map_options_init(pool_map_options_t *opts);

/**
 * Fills `opts` with the defaults (the pool's timeout, `ctx` passed as it is) and stamps its
 * size. NULL is a no-op.
 *
 * Thread safety: safe from any thread on distinct structs.
 */
void pool_call_options_init(pool_call_options_t *opts);

/**
 * Creates a pool of `workers` worker processes (0: one per CPU this process may run on;
 * negative: `POOL_EINVAL`). `opts` may be NULL for the defaults; otherwise it must have been
 * initialised with `pool_options_init`. The workers are running, their initializer done, when
 * this returns.
 *
 * Workers are forked from a helper process forked here, so every worker, including one that
 * replaces a dead one, sees the process memory as it is now: functions passed later must be
 * code loaded at this call, and a `ctx` passed later by address is seen as it is now (calls
 * refuse one whose bytes changed since, or that did not exist: pass `ctx_size` to copy it
 * with the call; see `pool_map_options_t`). Tasks run on a copy of the calling thread's stack
 * (fork semantics): create pools from a thread whose stack is big enough for the tasks (the
 * main thread's, or a default-sized thread stack).
 *
 * Returns NULL on failure with `pool_last_error()` saying why: fork or shared memory
 * (`POOL_ESYS`), an initializer that crashed or exited (`POOL_ECRASHED`), refused
 * (`initializer_ex`: `POOL_ETASK`) or did not return within `start_timeout` (`POOL_ETIMEDOUT`;
 * the default bound is 300 s). Whatever the failure, no process, descriptor or mapping of the
 * pool is left.
 * Ownership: the caller owns the pool and releases it with `pool_destroy`.
 * Thread safety: safe from any thread; the pool may be used from any thread.
 */
pool_t *pool_create(int workers, const pool_options_t *opts);

/**
 * The number of worker processes of `pool` (0 if `pool` is NULL; 0 with `pool_last_error()`
 * set if it is not a live pool).
 *
 * Thread safety: safe from any thread.
 */
int pool_workers(const pool_t *pool);

/**
 * Applies `f` to `n` items in parallel and waits: item i is read from `input + i*in_size` and
 * its result written to `out + i*out_size`. Items are cut into chunks automatically and
 * streamed through shared memory, so memory stays bounded for any `n`. When the pool's shared
 * memory is full (of running work, or of other calls' results not yet read), fewer chunks
 * are in flight and the map waits for room; only a chunk that can never fit fails
 * (`POOL_ENOMEM`). So do block maps, iterators and streams.
 *
 * Returns `POOL_OK` when every item succeeded; otherwise the status of the lowest-index
 * failure (`POOL_ETASK`, `POOL_ECRASHED`, `POOL_ETIMEDOUT`, `POOL_ECLOSED`), with
 * `pool_last_error()` naming the item. The results of the items that succeeded are written in
 * every case. `n == 0` is a no-op returning `POOL_OK` (buffers may then be NULL). Item sizes
 * must be > 0.
 * Ownership: `input` and `out` stay the caller's. Thread safety: safe from any thread,
 * concurrently with other calls on the same pool. Not a cancellation point: a cancel takes
 * effect after it returns; to cancel promptly, use `pool_map_async` and wait in a loop with a
 * timeout and `pthread_testcancel`.
 */
int pool_map(pool_t *pool,
             pool_fn f,
             const void *input,
             size_t in_size,
             void *out,
             size_t out_size,
             size_t n,
             void *ctx);

/**
 * `pool_map` with per-call options (`opts` may be NULL): chunk size, per-item statuses, a
 * per-item timeout.
 * Thread safety: safe from any thread. Not a cancellation point (as `pool_map`).
 */
int pool_map_ex(pool_t *pool,
                pool_fn f,
                const void *input,
                size_t in_size,
                void *out,
                size_t out_size,
                size_t n,
                void *ctx,
                const pool_map_options_t *opts);

/**
 * Like `pool_map` but returns at once with a handle to wait on (`pool_async_get`). `input` and `out`
 * must stay valid until the result is ready or the handle freed; `out` is never written after
 * `pool_async_free` returns. `n == 0` gives a handle that is already ready.
 *
 * Returns NULL on failure (bad argument, closed pool) with `pool_last_error()` set.
 * Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
 */
pool_async_t *pool_map_async(pool_t *pool,
                             pool_fn f,
                             const void *input,
                             size_t in_size,
                             void *out,
                             size_t out_size,
                             size_t n,
                             void *ctx);

/**
 * `pool_map_async` with per-call options (`opts` may be NULL; a `statuses` array must stay
 * valid like `out`).
 * Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
 */
pool_async_t *pool_map_async_ex(pool_t *pool,
                                pool_fn f,
                                const void *input,
                                size_t in_size,
                                void *out,
                                size_t out_size,
                                size_t n,
                                void *ctx,
                                const pool_map_options_t *opts);

/**
 * Runs `f` on one input in a worker and waits for it. `input`/`out` may be NULL when their size
 * is 0. Returns the task's status (`POOL_ETASK` if it returned nonzero, `POOL_ECRASHED` if its
 * worker died, ...).
 * Thread safety: safe from any thread. Not a cancellation point: a cancel takes effect after
 * it returns (`pool_apply_async` and a timeout loop cancel promptly).
 */
int pool_apply(pool_t *pool,
               pool_fn f,
               const void *input,
               size_t in_size,
               void *out,
               size_t out_size,
               void *ctx);

/**
 * `pool_apply` with per-call options (`opts` may be NULL): a task timeout, a copy of `ctx`.
 * Thread safety: safe from any thread. Not a cancellation point (as `pool_apply`).
 */
int pool_apply_ex(pool_t *pool,
                  pool_fn f,
                  const void *input,
                  size_t in_size,
                  void *out,
                  size_t out_size,
                  void *ctx,
                  const pool_call_options_t *opts);

/**
 * Like `pool_apply` but returns at once with a handle. The input is copied before this
 * returns; `out` must stay valid until the result is ready or the handle freed.
 *
 * Returns NULL on failure with `pool_last_error()` set: `POOL_ENOMEM` when the pool's shared
 * memory is full of results nobody has collected and no running work will free any (this
 * call waits for running work to free room, not for readers).
 * Ownership: the caller frees the handle with `pool_async_free`. Thread safety: any thread.
 */
pool_async_t *pool_apply_async(pool_t *pool,
                               pool_fn f,
                               const void *input,
                               size_t in_size,
                               void *out,
                               size_t out_size,
                               void *ctx);

/**
 * `pool_apply_async` with per-call options (`opts` may be NULL): a task timeout, a copy of
 * `ctx`. Ownership and thread safety as `pool_apply_async`.
 */
pool_async_t *pool_apply_async_ex(pool_t *pool,
                                  pool_fn f,
                                  const void *input,
                                  size_t in_size,
                                  void *out,
                                  size_t out_size,
                                  void *ctx,
                                  const pool_call_options_t *opts);

/**
 * Submits a variable-size task: `in_len` bytes of input (any length the pool's shared memory
 * holds, 1 GiB and more), a result whose length the task decides as it runs, written with
 * `pool_out_write`, up to `max_out` bytes. Only the pages actually written cost memory.
 * Get the result with `pool_async_result` (zero copy: it stays valid until `pool_async_free`).
 *
 * Returns NULL on failure with `pool_last_error()` set (sizes that never fit: `POOL_EINVAL`
 * or `POOL_ENOMEM`, naming `in_len` or `max_out`).
 * Ownership: the input is copied before this returns; the caller frees the handle with
 * `pool_async_free`. Thread safety: any thread.
 */
pool_async_t *pool_submit(pool_t *pool,
                          pool_task_fn f,
                          const void *input,
                          size_t in_len,
                          size_t max_out,
                          void *ctx);

/**
 * `pool_submit` with per-call options (`opts` may be NULL): a task timeout, a copy of `ctx`.
 * Ownership and thread safety as `pool_submit`.
 */
pool_async_t *pool_submit_ex(pool_t *pool,
                             pool_task_fn f,
                             const void *input,
                             size_t in_len,
                             size_t max_out,
                             void *ctx,
                             const pool_call_options_t *opts);

/**
 * Called from inside a task, before it returns nonzero: attaches `message` (a NUL-terminated
 * string; at most 255 bytes are kept) to the task's failure. The caller then finds it in
 * `pool_last_error()` (after the item index and the task's code, for maps and iterators) and
 * in `pool_async_info`'s `message`. A task that succeeds drops it; the first 16 failing items of a
 * map chunk carry one each. Returns `POOL_EINVAL` outside a task or for NULL.
 * Thread safety: call only from the task's own worker process.
 */
int pool_task_error(const char *message);

/**
 * Called from inside a task started with `pool_submit`: appends `len` bytes to its result.
 * Returns `POOL_ENOMEM` if the result would exceed the task's `max_out`, `POOL_EINVAL`
 * outside such a task or for NULL `data` with `len > 0`. A refusal (of this, of
 * `pool_out_reserve` or `pool_out_commit`) also becomes the task's message unless it gave one
 * (`pool_task_error`): a task that then fails, say by returning the status it got, fails with
 * the reason ("task returned 2: pool_out_write of ... bytes refused: ... max_out ...").
 * Thread safety: call only from the task's own worker process.
 */
int pool_out_write(const void *data, size_t len);

/**
 * Called from inside a task of `pool_submit` or `pool_stream`, to write its result in place
 * (e.g. as zlib's `next_out`): returns where the result ends now, with room for `*avail`
 * bytes (everything left up to `max_out`, at least `min_len`). Write there, then append what
 * was written with `pool_out_commit`. Writing past `*avail` bytes never reaches other results:
 * it faults at the next page boundary (the worker dies, the item fails with `POOL_ECRASHED`). Big results (`max_out`
 * of 256 KiB or more) are written in place; smaller ones through private memory that the
 * commit copies in. Returns NULL with `pool_last_error()` set (`POOL_ENOMEM`) if fewer than
 * `min_len` bytes are left, or outside such a task (`POOL_EINVAL`); NULL `avail` is
 * `POOL_EINVAL`.
 * Thread safety: call only from the task's own worker process and thread.
 */
void *pool_out_reserve(size_t min_len,
                       size_t *avail);

/**
 * Appends to the task's result the first `len` bytes written where the last
 * `pool_out_reserve` pointed; that reservation then ends (reserve again to write more).
 * Returns `POOL_EINVAL`, even for `len` 0, if no reservation is open (none was made, or the
 * last one already ended with a commit or a `pool_out_write`), if `len` is more than it gave
 * room for, or outside a task of `pool_submit` or `pool_stream`.
 * Thread safety: call only from the task's own worker process and thread.
 */
int pool_out_commit(size_t len);

/**
 * Stops accepting work; work already submitted (maps included) still finishes. A second call
 * is a no-op. Thread safety: any thread.
 */
int pool_close(pool_t *pool);

/**
 * Stops the pool at once: workers are killed; unfinished results end with `POOL_ECLOSED`.
 * Submissions racing it in other threads get `POOL_ECLOSED`; iterators hand back what had run,
 * then each item never submitted with `POOL_ECLOSED`, then `POOL_EDONE`; the event fd
 * (`pool_event_fd`) becomes readable. Thread safety: any thread.
 */
int pool_terminate(pool_t *pool);

/**
 * Waits for the workers to exit after `pool_close` (once all submitted work is done, however
 * long it takes; a `pool_terminate` from another thread cuts it short) or
 * `pool_terminate`. Before either, returns `POOL_EINVAL`. Once it is called, submissions are
 * refused (`POOL_ECLOSED`): iterators stop feeding, hand back what they submitted, then each
 * item never submitted with `POOL_ECLOSED`, then `POOL_EDONE`.
 * Thread safety: any thread. Not a cancellation point: a cancel takes effect after it returns.
 */
int pool_join(pool_t *pool);

/**
 * Terminates the pool unless it was closed, joins it and frees it. Async handles and
 * iterators stay valid (unfinished ones report `POOL_ECLOSED`) and must still be freed. NULL is
 * a no-op. Calls blocked on the pool in other threads return soon (`POOL_ECLOSED` once it is
 * terminated; after `pool_close` they finish their work first).
 * Ownership: `pool` is invalid afterwards: any later call with it (a second `pool_destroy`
 * included) does nothing but report `POOL_EINVAL` ("not a live handle") in
 * `pool_last_error()`. In a forked child, only the child's copy of the handle is released (the
 * parent's pool is untouched). Thread safety: any thread.
 */
void pool_destroy(pool_t *pool);

/**
 * Allocates `size` bytes of the pool's shared memory, which every worker sees at the same
 * address: inputs and outputs placed here are never copied (`pool_map`, `pool_apply*` and
 * `pool_submit` use them in place). Contents are unspecified until written. Returns NULL with
 * `pool_last_error()` set when the pool's shared memory (`shm_size`) is full.
 * Ownership: free with `pool_shm_free` on the same pool, after the work using it has ended;
 * the memory goes away with the pool in any case. Thread safety: any thread.
 */
void *pool_shm_alloc(pool_t *pool, size_t size);

/**
 * Frees memory from `pool_shm_alloc`. NULL is a no-op; any other pointer not from
 * `pool_shm_alloc` on this pool is `POOL_EINVAL`. Thread safety: any thread.
 */
int pool_shm_free(pool_t *pool, void *ptr);

/**
 * A descriptor for event loops (epoll, poll, libuv): it polls readable whenever a result of
 * this pool became ready since it was last read, and when the pool ends (terminated,
 * destroyed, or its zygote killed from outside: a watcher thread started by the first call
 * notices). Read 8 bytes from it to reset it (it is an eventfd), then look at your handles
 * with `pool_async_ready`. Returns -1 with `pool_last_error()` set on failure. Until the first call,
 * the workers do not signal it (no cost).
 * Ownership: the pool owns the descriptor; do not close it. It stays valid while the pool or
 * any of its async handles lives. Thread safety: any thread.
 */
int pool_event_fd(pool_t *pool);

/**
 * Creates a process object that will run `f(arg)`; nothing is started yet. Returns NULL (with
 * `pool_last_error()`) if `f` is NULL.
 * Ownership: the caller frees it with `pool_process_free`. Thread safety: any thread.
 */
pool_process_t *pool_process_create(pool_process_fn f, void *arg);

/**
 * Fills `opts` with the defaults (not a daemon, the host's name) and stamps its size. NULL is
 * a no-op. Thread safety: any thread on distinct structs.
 */
void pool_process_options_init(pool_process_options_t *opts);

/**
 * `pool_process_create` with options (`opts` NULL: the defaults). Returns NULL (with
 * `pool_last_error()`) if `f` is NULL or `opts` was not initialised with
 * `pool_process_options_init`. Ownership: free it with `pool_process_free`; `opts` stays the caller's.
 * Thread safety: any thread.
 */
pool_process_t *pool_process_create_ex(pool_process_fn f,
                                       void *arg,
                                       const pool_process_options_t *opts);

/**
 * Forks: the child runs `f(arg)`, flushes stdio and exits with the return value. Starting
 * twice is `POOL_EINVAL`. stdio is flushed before the fork so no output is duplicated.
 * Thread safety: any thread (safe in a host running many threads).
 */
int pool_process_start(pool_process_t *p);

/**
 * Waits up to `timeout` seconds (negative: forever) for the child to exit and reaps it.
 * `POOL_ETIMEDOUT` while it still runs; `POOL_EINVAL` before `pool_process_start`.
 * Thread safety: any thread. Not a cancellation point: a cancel takes effect after it
 * returns; to cancel a waiting thread promptly, wait in a loop with a timeout and call
 * `pthread_testcancel` between waits.
 */
int pool_process_join(pool_process_t *p, double timeout);

/**
 * True while the child runs; false before start, once it has exited (no join needed), for
 * NULL, and (with `pool_last_error()` set) if `p` is not a live handle. Thread safety: any thread.
 */
bool pool_process_is_alive(pool_process_t *p);

/**
 * Sends SIGTERM to the child (a no-op once it has exited). `POOL_EINVAL` before start.
 * Thread safety: any thread.
 */
int pool_process_terminate(pool_process_t *p);

/**
 * Sends SIGKILL to the child (a no-op once it has exited). `POOL_EINVAL` before start.
 * Thread safety: any thread.
 */
int pool_process_kill(pool_process_t *p);

/**
 * Once the child has finished: `POOL_OK` and `*code` = its exit status, or `-N` if it was
 * killed by signal N (as Python). Before that, `POOL_ETIMEDOUT` (running) or `POOL_EINVAL`
 * (not started, NULL `code`); `*code` is written only on success.
 * Thread safety: any thread.
 */
int pool_process_exitcode(const pool_process_t *p, int *code);

/**
 * The child's pid, or -1 before `pool_process_start`, for NULL, and (with `pool_last_error()` set)
 * if `p` is not a live handle. Thread safety: any thread.
 */
int pool_process_pid(const pool_process_t *p);

/**
 * Frees the process object. A child still running is killed and reaped (no zombie is left),
 * once calls on the object still running in other threads (a `pool_process_join`) have returned.
 * NULL is a no-op.
 * Ownership: `p` is invalid afterwards: any later call with it (a second `pool_process_free`
 * included) does nothing but report `POOL_EINVAL` ("not a live handle"). In a forked child,
 * only the child's copy of the object is released (the parent's child process is untouched).
 * Thread safety: any thread.
 */
void pool_process_free(pool_process_t *p);

/**
 * Waits up to `timeout` seconds (negative: forever) and returns the result's status: the same
 * one every time once finished (`POOL_OK`, or the failure with `pool_last_error()` set); or
 * `POOL_ETIMEDOUT` if it is not ready yet (the work goes on).
 * Thread safety: any thread; several threads may wait on one handle. Not a cancellation
 * point: a cancel takes effect after it returns; to cancel a waiting thread promptly, wait in
 * a loop with a timeout and call `pthread_testcancel` between waits.
 */
int pool_async_get(pool_async_t *a, double timeout);

/**
 * Waits up to `timeout` seconds (negative: forever): `POOL_OK` once the result is ready,
 * whatever its status; `POOL_ETIMEDOUT` otherwise.
 * Thread safety: any thread. Not a cancellation point (as `pool_async_get`).
 */
int pool_async_wait(pool_async_t *a, double timeout);

/**
 * True once the result is ready (false for NULL; false with `pool_last_error()` set if `a` is
 * not a live handle). Never blocks.
 * Thread safety: any thread.
 */
bool pool_async_ready(const pool_async_t *a);

/**
 * Waits up to `timeout` seconds (negative: forever; 0: not at all) until one of the `n`
 * results in `handles` is ready, and sets `*index` to the first ready one (lowest index).
 * `POOL_OK` then (collect it with `pool_async_get`); `POOL_ETIMEDOUT` if none was ready in time;
 * `POOL_EINVAL` if `handles` or `index` is NULL, `n` is 0, or an entry is not a live result
 * (the message names its index). Results of several pools may be mixed. After a few
 * microseconds of looking, sleeps until one of the results ends (as `pool_async_get` sleeps on
 * its own result: other tasks of the pools do not wake it), then looks again: a waiting thread
 * costs next to no CPU. Past 100 task results (or 127 with the pools of its map results), and
 * for map results, it sleeps instead until their pools end any task or map, so a busy pool
 * wakes it more often.
 * Thread safety: any thread; the handles may be waited on by other threads too. Not a
 * cancellation point.
 */
int pool_async_wait_any(pool_async_t *const *handles, size_t n, double timeout, size_t *index);

/**
 * True if the result is ready and succeeded (false if not ready or NULL; false with
 * `pool_last_error()` set if `a` is not a live handle). Never blocks.
 * Thread safety: any thread.
 */
bool pool_async_successful(const pool_async_t *a);

/**
 * The result of a `pool_submit` task once it succeeded: `*data` points to `*len` bytes that
 * stay valid, unchanged, until `pool_async_free`. Does not wait: returns `POOL_ETIMEDOUT` if not
 * ready, the task's failure status if it failed, `POOL_EINVAL` for other kinds of results.
 * `data` and `len` are written only on success.
 * Ownership: the bytes belong to the handle. Thread safety: any thread.
 */
int pool_async_result(pool_async_t *a, const void **data, size_t *len);

/**
 * Cancels the work behind `a`: what has not started is dropped, what runs is killed (its
 * worker is replaced), and it ends with `POOL_ECANCELLED`; for a map, every item not yet done.
 * Returns `POOL_OK` once the result is ready (work that had already finished keeps its own
 * status, which `pool_async_get` reports).
 * Thread safety: any thread. Not a cancellation point.
 */
int pool_async_cancel(pool_async_t *a);

/**
 * Fills `*info` (`info_size` = sizeof(pool_task_info_t)) once the result is ready.
 * `POOL_ETIMEDOUT` if not ready (nothing written), `POOL_EINVAL` for NULL or a short struct.
 * Thread safety: any thread.
 */
int pool_async_info(pool_async_t *a, pool_task_info_t *info, size_t info_size);

/**
 * A map's progress: `*done` items have ended out of `*total` (a single task counts as one
 * item; a map of 0 items reports 0 of 0). Never blocks; out-params written only on success.
 * Thread safety: any thread.
 */
int pool_async_progress(const pool_async_t *a, size_t *done, size_t *total);

/**
 * Frees a handle, at any time: a task still pending is detached (it runs, but the caller's
 * `out` is never written after this returns); a map stops there (what runs is cancelled, the
 * items not yet submitted never run). If its results are written in place into
 * `pool_shm_alloc` memory, the work is cancelled and this waits until nothing writes there any
 * more (so that memory can be reused at once), even while another thread waits on the handle
 * (that wait then returns `POOL_ECANCELLED`, or the work's own outcome if it ended first).
 * Otherwise a call on the handle still running in another thread (a `pool_async_get`) is not
 * cut short: it finishes, may still collect the result into `out`, and the handle is detached
 * or stopped as above when it returns. NULL is a no-op.
 * Ownership: `a` is invalid afterwards: any later call with it (a second `pool_async_free`
 * included) does nothing but report `POOL_EINVAL` ("not a live handle"). In a forked child,
 * only the child's copy of the handle is released. Thread safety: any thread.
 */
void pool_async_free(pool_async_t *a);

/**
 * A line saying what the sandbox gives each worker of `pool` (the Landlock ABI and the paths
 * it may read and write, the seccomp filter's refusals), for logs; NULL if `pool` has no
 * sandbox, or is NULL (or not a live pool: then with `pool_last_error()` set).
 *
 * Ownership: the string belongs to the pool and stays valid until `pool_destroy`.
 * Thread safety: safe from any thread.
 */
const char *pool_sandbox_report(const pool_t *pool);

/**
 * Fills `opts` with the defaults (ordered, automatic window, the pool's timeout, `ctx` passed
 * as it is) and stamps its size. NULL is a no-op.
 * Thread safety: safe from any thread on distinct structs.
 */
void pool_stream_options_init(pool_stream_options_t *opts);

/**
 * Runs `f` (a `pool_task_fn`) on each of the `n` buffers of `items` in the pool's workers and
 * hands back the results one at a time through `pool_stream_next`: variable-size input and
 * output per item, at most `max_out` bytes of result each, written by the task with
 * `pool_out_write` or `pool_out_reserve`/`pool_out_commit`. At most `opts->window` items are
 * submitted and not yet handed back: a consumer slower than the workers holds them back
 * (backpressure), so memory stays bounded for any `n`; when the pool's shared memory is
 * full, fewer items are in flight. Each buffer is copied into shared memory when its item is
 * submitted; an item too big to ever fit fails alone (`POOL_ENOMEM`). `opts` may be NULL (the
 * defaults).
 * Returns NULL on failure with `pool_last_error()` set (`POOL_ENOMEM` if `max_out` can never
 * fit).
 * Ownership: `items` and the buffers it points to must stay valid until the stream is freed
 * (with `pool_stream_free`). Thread safety: any thread.
 */
pool_stream_t *pool_stream(pool_t *pool,
                           pool_task_fn f,
                           const pool_buf_t *items,
                           size_t n,
                           size_t max_out,
                           void *ctx,
                           const pool_stream_options_t *opts);

/**
 * Like `pool_stream`, for input of any length produced on demand: `source` writes each item
 * (up to `max_in` bytes) straight into the pool's shared memory as workers need more, so
 * neither the input nor the results ever need to be in memory at once (about `window *
 * (max_in + max_out)` bytes of shared memory at most; fewer items are in flight when the
 * pool's shared memory holds fewer). `opts` may be NULL.
 * Returns NULL on failure with `pool_last_error()` set (`POOL_ENOMEM` if one item's `max_in +
 * max_out` can never fit in the pool's shared memory).
 * Ownership: free with `pool_stream_free`. Thread safety: any thread.
 */
pool_stream_t *pool_stream_source(pool_t *pool,
                                  pool_task_fn f,
                                  pool_stream_source_fn source,
                                  void *source_ctx,
                                  size_t max_in,
                                  size_t max_out,
                                  void *ctx,
                                  const pool_stream_options_t *opts);

/**
 * Waits up to `timeout` seconds (negative: forever) for the next result. On `POOL_OK`,
 * `*data` points to its `*len` bytes (zero copy: they stay valid, unchanged, until the next
 * `pool_stream_next` on this stream or `pool_stream_free`) and `*index` says which item it
 * is. If that item failed, returns its status (`POOL_ETASK`, `POOL_ECRASHED`,
 * `POOL_ETIMEDOUT`, ...) with `*index` set, `*data` NULL, `*len` 0 and `pool_last_error()`
 * saying why; the next call goes on with the other items. Nothing ready in time:
 * `POOL_ETIMEDOUT` with `*index` set to `SIZE_MAX` (an item that timed out has its own index).
 * `POOL_EDONE`: every result was returned. A source that failed: its status (`POOL_ETASK`,
 * `POOL_EINVAL` for a length over `max_in`) once after the last result, then `POOL_EDONE`.
 * If the pool stops taking work before the input ends (even because it was found corrupt),
 * what was submitted still comes back, then each array item never submitted with
 * `POOL_ECLOSED` and its index (a source: the status once), then `POOL_EDONE`. Called from inside the same stream's source: `POOL_EINVAL`.
 * `data`, `len` and `index` may be NULL. Thread safety: one consumer at a time (calls are
 * serialised). Not a cancellation point (see `pool_iter_next`).
 */
int pool_stream_next(pool_stream_t *s,
                     const void **data,
                     size_t *len,
                     size_t *index,
                     double timeout);

/**
 * Items finished so far (`*done`: handed back, or ended and waiting their turn, so an ordered
 * stream's progress moves on while an earlier item still runs) and how many there will be
 * (`*total`: `n` for an array; for a source, 0 until it has ended). Either pointer may be NULL.
 * Thread safety: any thread (waits for a `pool_stream_next` running in another thread).
 */
int pool_stream_progress(pool_stream_t *s, size_t *done, size_t *total);

/**
 * Frees a stream: work for results not yet handed back is cancelled, and the last result's
 * bytes become invalid. A `pool_stream_next` waiting in another thread returns `POOL_EINVAL`
 * (within 0.2 s), handing out nothing; the cancel happens once it has returned. NULL is a no-op.
 * Ownership: `s` is invalid afterwards (a later call with it reports `POOL_EINVAL`). In a
 * forked child, only the child's copy of the handle is released. Thread safety: any thread.
 */
void pool_stream_free(pool_stream_t *s);

/**
 * Creates one pool over every rank of `transport`, `workers_per_rank` workers on each (0: one
 * per CPU). Collective: every rank calls it. On the root rank it returns the pool: every pool
 * function works on it, and its work runs on the workers of all ranks (the root's own
 * included). On every other rank it runs the tasks it is sent in local workers of its own,
 * until the root's pool is destroyed, then returns NULL with `pool_last_status() ==
 * POOL_EDONE`; any other status is a real failure (on every rank, e.g. ranks that run
 * different programs). Each rank uses its own `opts` (initializer, limits, `start_timeout`),
 * except `task_timeout`: the root's applies to every item. A rank whose workers fail to start
 * (an initializer that crashed, refused or hung past its `start_timeout`) fails every rank
 * with its status and a message naming it.
 *
 * Functions cross ranks as (build-id of the object holding them, offset), so they must be in
 * the program, a library it links, or a plugin loaded on every rank before this call; `ctx`
 * must be NULL, copied (`ctx_size`) or in constant (read-only) data. Other items fail with
 * `POOL_EINVAL`. A rank whose own arguments are wrong fails every rank (none waits forever).
 * Ownership: the transport's `ctx` stays the caller's until `release` is called.
 * Thread safety: call from one thread per rank.
 */
pool_t *pool_create_distributed(const pool_transport_t *transport,
                                int workers_per_rank,
                                const pool_options_t *opts);

#ifdef __cplusplus
}  // extern "C"
#endif  // __cplusplus

#endif  /* POOL_H */
