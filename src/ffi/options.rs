//! `pool_options_t`: pool creation options, extensible without breaking the ABI.

use super::callbacks::Callback;
use super::result::pool_async_t;
use crate::core::worker::Init;
use crate::core::{CallOptions, Error, Options, DEFAULT_START_TIMEOUT};
use std::os::raw::c_void;
use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

/// Options for `pool_create`. Always call `pool_options_init` first: it fills the defaults and
/// stamps `struct_size`, which lets later versions add fields without breaking the ABI.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_options_t {
    /// sizeof(pool_options_t) as the caller was compiled; set by `pool_options_init`.
    pub struct_size: usize,
    /// Runs once in every worker process when it starts (replacements included), before any
    /// task. NULL for none.
    pub initializer: Option<unsafe extern "C" fn(initarg: *mut c_void)>,
    /// Argument for `initializer`; must point into memory that exists at `pool_create`.
    pub initarg: *mut c_void,
    /// Tasks (an apply, or a map chunk) a worker runs before it is replaced; 0 = unlimited.
    pub max_tasks_per_child: u64,
    /// Seconds one item may run before its worker is stopped (SIGTERM, then SIGKILL 100 ms
    /// later) and the item fails with `POOL_ETIMEDOUT`; <= 0 for no limit.
    pub task_timeout: f64,
    /// Resident memory in bytes past which a worker is replaced once its current task ends
    /// (for tasks that leak); 0 for no limit.
    pub max_rss: u64,
    /// Virtual size in bytes of the pool's shared memory, which holds the data of the tasks in
    /// flight (a single input or result can be nearly this big). Only pages in use cost memory.
    /// 0 for the default: 32 GiB, or the `POOL_SHM_SIZE` environment variable (e.g. "1G"),
    /// handy under valgrind, whose leak checker reads all of it.
    pub shm_size: usize,
    /// Like `initializer`, but it can fail: it returns 0 to go on, anything else to refuse
    /// (after `pool_task_error(message)` if it wants to say why). A refusal at start-up makes
    /// `pool_create` fail with `POOL_ETASK` and a message carrying the code and that message
    /// (e.g. a worker that cannot load its model or open its database); refusals of replacement
    /// workers count as deaths in the initializer. Gets `initarg`. Set at most one of the two
    /// initializers. NULL for none.
    pub initializer_ex: Option<unsafe extern "C" fn(initarg: *mut c_void) -> std::os::raw::c_int>,
    /// Seconds a worker may take to start (its initializer, if any, included) before it is
    /// killed; 0 for the default (300 s), < 0 for no bound. At `pool_create`, a worker still
    /// starting then makes `pool_create` fail with `POOL_ETIMEDOUT` and a message naming the
    /// initializer and the bound; every worker is gone by then (no process, descriptor or
    /// mapping is left). A replacement worker (after a crash, `max_tasks_per_child`, `max_rss`)
    /// past the bound is killed too and counts as a death in the initializer: after three in a
    /// row the pool reports itself broken (`POOL_ECRASHED`, naming the hang), so queued and
    /// later work fails instead of waiting forever. Size it for the slowest start you accept,
    /// tools included: valgrind makes start-up 20 to 50 times slower.
    pub start_timeout: f64,
    /// `POOL_SANDBOX_NONE` (0, the default) or `POOL_SANDBOX_COMPUTE`: tasks run in a process of
    /// their own, forked from their worker once its initializer ran (a fresh one for every task
    /// unless `sandbox_tasks_per_process` says otherwise), which maps the pool's memory
    /// read-only: a task can write its own outputs and nothing else of the pool's
    /// (`pool_shm_alloc` buffers included), and queues, locks and events are refused to it
    /// (`POOL_EINVAL`). That process is confined for life: a
    /// process group of its own it cannot leave, stdin from /dev/null, the other descriptors it inherited closed
    /// (those the initializer opened stay), every capability dropped, `no_new_privs`; no
    /// filesystem but reading `sandbox_read_paths` and writing `sandbox_write_paths` (Landlock:
    /// other opens fail with `EACCES`; metadata changes and file watches with `EPERM`; `stat`
    /// and `access` still work everywhere); `socket` fails with `EACCES`; no new process or
    /// namespace, `execve`, `ptrace`, `process_vm_*`, signal or rlimit of another process,
    /// mount, `bpf`, `io_uring`, `userfaultfd`, `perf_event_open`, keyring or `personality`
    /// (seccomp: such a call kills the worker, and its item fails alone with `POOL_ECRASHED`
    /// naming the call). Threads stay allowed; the initializer must leave none running, nor any
    /// process (else `pool_create` fails with `POOL_ESYS`). If the system cannot give all of it
    /// (no Landlock, no seccomp, no /proc), `pool_create` fails with `POOL_ESYS` saying what is
    /// missing, never with a weaker sandbox; `pool_sandbox_report` says what workers get.
    pub sandbox: std::os::raw::c_int,
    /// NULL-terminated list of files and directories (recursively) a sandboxed worker may read;
    /// NULL for none. Read and resolved at `pool_create` only (relative paths against the
    /// working directory then); a path that does not exist is `POOL_EINVAL`, as are paths
    /// given while `sandbox` is `POOL_SANDBOX_NONE`.
    pub sandbox_read_paths: *const *const std::os::raw::c_char,
    /// NULL-terminated list of files and directories (recursively) a sandboxed worker may read,
    /// write, create and remove in; NULL for none. As `sandbox_read_paths` otherwise.
    pub sandbox_write_paths: *const *const std::os::raw::c_char,
    /// Tasks (an apply, or a map chunk) one sandboxed process runs before a fresh one, forked
    /// from the worker as it was after its initializer, replaces it. 0 or 1 (the default): a
    /// fresh process for every task, so a task that takes its process over can never touch
    /// the results of the tasks after it (another caller's, say). More trades that away for
    /// speed: the fork and sandbox set-up (about 0.5 ms here) are then paid once per
    /// that many tasks, and a hijacked process can falsify the results of the tasks it runs
    /// until it is replaced. Set only with a sandbox (`POOL_EINVAL` otherwise).
    pub sandbox_tasks_per_process: u64,
}

/// `pool_options_t.sandbox`: no sandbox (the default).
pub const POOL_SANDBOX_NONE: std::os::raw::c_int = 0;
/// `pool_options_t.sandbox`: workers confined to computing on what they are given.
pub const POOL_SANDBOX_COMPUTE: std::os::raw::c_int = 1;

/// Per-call options for `pool_map_ex` / `pool_map_async_ex`. Call `pool_map_options_init`
/// first.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_map_options_t {
    /// sizeof(pool_map_options_t) as the caller was compiled; set by `pool_map_options_init`.
    pub struct_size: usize,
    /// Items per task sent to a worker; 0 (the default) chooses automatically.
    pub chunksize: usize,
    /// If not NULL, an array of `n` ints that receives every item's status (`POOL_OK`,
    /// `POOL_ETASK`, `POOL_ECRASHED`, ...), so one bad item never hides the others. Written by
    /// the time the map returns or its result is ready; never after `pool_async_free`.
    pub statuses: *mut std::os::raw::c_int,
    /// Seconds each item may run, overriding the pool's `task_timeout`; <= 0 keeps the pool's.
    pub task_timeout: f64,
    /// If > 0, `ctx` points to `ctx_size` bytes that are copied with the call: every item sees
    /// them as they were when the call was made, wherever they live (memory allocated after
    /// `pool_create` included). Tasks get a read-only copy (a task that writes it crashes its
    /// worker). Each chunk carries its own copy: keep it small, and put big read-only tables in
    /// memory allocated before `pool_create` or from `pool_shm_alloc`. A copy that holds a
    /// pointer (in its first 4 KiB) into the calling thread's stack or into memory mapped after
    /// `pool_create` is refused (`POOL_EINVAL`): workers would follow it to stale bytes or to
    /// nothing.
    ///
    /// 0 (the default): `ctx` is passed as it is, and workers see the memory there as it was at
    /// `pool_create`. The call checks that this is what the caller has: it compares the bytes
    /// at `ctx` with the workers' copy (a global's whole variable, up to 1 KiB, when the
    /// program's symbol table gives its size; elsewhere the first 64 bytes) and fails with
    /// `POOL_EINVAL`, naming `ctx`, if they differ (a struct filled or allocated after
    /// `pool_create`) or if `ctx` is in memory mapped after `pool_create`. Constants, shared
    /// memory (`pool_shm_alloc`, `MAP_SHARED` mappings made before the pool) and NULL always
    /// pass; an address that is not mapped at all (a number cast to a pointer) is passed
    /// through untouched. When only bytes after a small object changed, the call is refused
    /// too: pass `ctx_size`.
    pub ctx_size: usize,
    /// `pool_map_async_ex` only (others refuse it: `POOL_EINVAL`): called once, with the map's
    /// status, when its result is ready (see `pool_callback_fn`).
    pub callback: pool_callback_fn,
    /// Passed to `callback`.
    pub callback_arg: *mut c_void,
    /// With `ctx_size`: true refuses (`POOL_EINVAL`) a copied `ctx` holding a pointer into this
    /// process's own memory (its heap, stacks, writable data), where workers read what was there
    /// at `pool_create` and what they write stays in the worker; only values, and pointers to
    /// memory workers share (`pool_shm_alloc`, `MAP_SHARED` mappings made before the pool) or to
    /// constants, pass. pool.hpp sets it for loop bodies. False (the default): such a pointer
    /// passes if the first bytes it points to are still what workers have.
    pub ctx_shared_pointers_only: bool,
}

/// Per-call options for `pool_apply_ex`, `pool_apply_async_ex` and `pool_submit_ex`. Call
/// `pool_call_options_init` first.
#[repr(C)]
#[allow(non_camel_case_types)]
pub struct pool_call_options_t {
    /// sizeof(pool_call_options_t) as the caller was compiled; set by `pool_call_options_init`.
    pub struct_size: usize,
    /// Seconds the task may run, overriding the pool's `task_timeout`; <= 0 keeps the pool's.
    pub task_timeout: f64,
    /// As in `pool_map_options_t`: if > 0, `ctx_size` bytes at `ctx` are copied with the call.
    pub ctx_size: usize,
    /// `pool_apply_async_ex` and `pool_submit_ex` only (`pool_apply_ex` refuses it:
    /// `POOL_EINVAL`): called once, with the task's status, when its result is ready (see
    /// `pool_callback_fn`).
    pub callback: pool_callback_fn,
    /// Passed to `callback`.
    pub callback_arg: *mut c_void,
}

/// A completion callback: `a` is the result that became ready, `status` its status (as
/// `pool_async_get` would return it; on failure `pool_last_error()` holds the message), `arg` the
/// `callback_arg` given with it. Called once per result, from the pool's callback thread (one
/// per pool, started on first use), one callback at a time for a pool, in the order results
/// are found ready. During the call `a` is valid: `pool_async_result`, `pool_async_info` work, and the
/// callback may `pool_async_free` it. A result freed before its callback started gets none; an
/// `pool_async_free` from another thread while the callback runs (any other thread: the
/// caller's, or another pool's callback thread) waits for it to return, so what the callback
/// reads may be freed once `pool_async_free` returns. The one exception is a wait that would
/// deadlock: two callbacks that free each other's results at the same time (or a longer circle
/// of them) do not wait for each other. Keep callbacks short: the next
/// waits. A callback may submit work, even to its own pool, and may destroy any pool (the
/// callbacks still pending then get `POOL_ECLOSED`; `pool_destroy` called from a callback
/// does not wait for the destroyed pool's callback thread).
#[allow(non_camel_case_types)]
pub type pool_callback_fn =
    Option<unsafe extern "C" fn(a: *mut pool_async_t, status: std::os::raw::c_int, arg: *mut c_void)>;

/// Fills `opts` with the defaults (no initializer, unlimited tasks per child, no timeout, the
/// default start-up bound) and stamps its size. NULL is a no-op.
///
/// Thread safety: safe from any thread on distinct structs.
#[no_mangle]
pub extern "C" fn pool_options_init(opts: *mut pool_options_t) {
    super::macros::boundary(|| {
        // SAFETY: the caller passes a writable pool_options_t or NULL (checked).
        if let Some(o) = unsafe { opts.as_mut() } {
            *o = pool_options_t {
                struct_size: std::mem::size_of::<pool_options_t>(),
                initializer: None,
                initarg: std::ptr::null_mut(),
                max_tasks_per_child: 0,
                task_timeout: 0.0,
                max_rss: 0,
                shm_size: 0,
                initializer_ex: None,
                start_timeout: 0.0,
                sandbox: POOL_SANDBOX_NONE,
                sandbox_read_paths: std::ptr::null(),
                sandbox_write_paths: std::ptr::null(),
                sandbox_tasks_per_process: 0,
            };
        }
    })
}

/// Converts C options (NULL: defaults) to core options.
pub(crate) fn convert(opts: *const pool_options_t) -> Result<Options, Error> {
    // SAFETY: the caller passes a readable pool_options_t or NULL (checked).
    let Some(o) = (unsafe { opts.as_ref() }) else { return Ok(Options::default()) };
    // The first release's layout ended at task_timeout; fields after it are read only when the
    // caller's struct_size says it has them.
    let has = |end: usize| o.struct_size >= end;
    if !has(std::mem::offset_of!(pool_options_t, max_rss)) || o.struct_size > 1 << 16 {
        return Err(Error::inval("pool_options_t was not initialised with pool_options_init (bad struct_size)"));
    }
    if o.task_timeout.is_nan() {
        return Err(Error::inval("task_timeout is NaN"));
    }
    let start = if has(std::mem::offset_of!(pool_options_t, start_timeout) + 8) { o.start_timeout } else { 0.0 };
    let start_timeout = match start {
        s if s.is_nan() => return Err(Error::inval("start_timeout is NaN")),
        s if s < 0.0 => None,
        s => seconds(s).or(Some(DEFAULT_START_TIMEOUT)),
    };
    let checked = if has(std::mem::offset_of!(pool_options_t, initializer_ex) + 8) { o.initializer_ex } else { None };
    let initializer = match (o.initializer, checked) {
        (Some(_), Some(_)) => return Err(Error::inval("set initializer or initializer_ex, not both")),
        (Some(f), None) => Some(Init::Plain(f, o.initarg as usize)),
        (None, Some(f)) => Some(Init::Checked(f, o.initarg as usize)),
        (None, None) => None,
    };
    Ok(Options {
        initializer,
        max_tasks_per_child: o.max_tasks_per_child,
        task_timeout: seconds(o.task_timeout),
        max_rss: if has(std::mem::offset_of!(pool_options_t, max_rss) + 8) { o.max_rss } else { 0 },
        shm_size: if has(std::mem::offset_of!(pool_options_t, shm_size) + 8) { o.shm_size } else { 0 },
        start_timeout,
        sandbox: sandbox(
            o,
            has(std::mem::offset_of!(pool_options_t, sandbox_write_paths) + 8),
            has(std::mem::offset_of!(pool_options_t, sandbox_tasks_per_process) + 8),
        )?,
    })
}

/// The sandbox asked for, from a struct that `has` the sandbox fields.
fn sandbox(o: &pool_options_t, has: bool, has_tasks: bool) -> Result<Option<crate::sys::sandbox::Policy>, Error> {
    if !has {
        return Ok(None);
    }
    let tasks_per_process = if has_tasks { o.sandbox_tasks_per_process } else { 0 };
    let lists = [("sandbox_read_paths", o.sandbox_read_paths), ("sandbox_write_paths", o.sandbox_write_paths)];
    match o.sandbox {
        POOL_SANDBOX_NONE => match lists.iter().find(|(_, l)| !l.is_null()) {
            Some((name, _)) => Err(Error::inval(format!("{name} is set but sandbox is POOL_SANDBOX_NONE"))),
            None if tasks_per_process != 0 => {
                Err(Error::inval("sandbox_tasks_per_process is set but sandbox is POOL_SANDBOX_NONE"))
            }
            None => Ok(None),
        },
        POOL_SANDBOX_COMPUTE => {
            let [read, write] = lists.map(|(name, l)| paths(name, l));
            Ok(Some(crate::sys::sandbox::Policy { read: read?, write: write?, tasks_per_process }))
        }
        s => Err(Error::inval(format!("sandbox is {s}: use POOL_SANDBOX_NONE (0) or POOL_SANDBOX_COMPUTE (1)"))),
    }
}

/// A NULL-terminated list of paths (NULL: none), copied.
fn paths(name: &str, list: *const *const std::os::raw::c_char) -> Result<Vec<std::ffi::CString>, Error> {
    const MAX: usize = 4096;
    let mut v = Vec::new();
    if list.is_null() {
        return Ok(v);
    }
    for i in 0..=MAX {
        // SAFETY: the caller passes a NULL-terminated array (checked up to MAX entries).
        let p = unsafe { *list.add(i) };
        if p.is_null() {
            return Ok(v);
        }
        // SAFETY: each entry is a NUL-terminated string (caller's contract).
        let s = unsafe { std::ffi::CStr::from_ptr(p) };
        if s.to_bytes().is_empty() {
            return Err(Error::inval(format!("{name}[{i}] is an empty path")));
        }
        // A path that is not there is the caller's mistake (a typo), not the system's.
        let path = std::path::Path::new(std::ffi::OsStr::from_bytes(s.to_bytes()));
        if let Err(e) = std::fs::metadata(path) {
            let why = e.to_string();
            let why = why.split(" (os error").next().unwrap_or(&why);
            return Err(Error::inval(format!("{name}[{i}] {:?}: {why}", path.display().to_string())));
        }
        v.push(s.to_owned());
    }
    Err(Error::inval(format!("{name} has more than {MAX} entries (is it NULL-terminated?)")))
}

pub(crate) fn seconds(s: f64) -> Option<Duration> {
    (s > 0.0).then(|| Duration::from_secs_f64(s.min(1e9)))
}

/// Fills `opts` with the defaults (automatic chunks, no statuses, the pool's timeout) and
/// stamps its size. NULL is a no-op.
///
/// Thread safety: safe from any thread on distinct structs.
#[no_mangle]
pub extern "C" fn pool_map_options_init(opts: *mut pool_map_options_t) {
    super::macros::boundary(|| {
        // SAFETY: the caller passes a writable pool_map_options_t or NULL (checked).
        if let Some(o) = unsafe { opts.as_mut() } {
            *o = pool_map_options_t {
                struct_size: std::mem::size_of::<pool_map_options_t>(),
                chunksize: 0,
                statuses: std::ptr::null_mut(),
                task_timeout: 0.0,
                ctx_size: 0,
                callback: None,
                callback_arg: std::ptr::null_mut(),
                ctx_shared_pointers_only: false,
            };
        }
    })
}

/// Map options in core terms.
#[derive(Default)]
pub(crate) struct MapOpts {
    pub chunksize: usize,
    pub statuses: usize,
    pub timeout: Option<Duration>,
    pub ctx_size: usize,
    pub callback: Option<Callback>,
    pub shared_pointers_only: bool,
}

/// Reads the fields an options struct's `struct_size` covers: `first` is the size of its first
/// release (smaller means not initialised); larger than 64 KiB is garbage.
pub(crate) fn covered(
    struct_size: usize,
    first: usize,
    what: &str,
    init: &str,
) -> Result<impl Fn(usize) -> bool, Error> {
    if struct_size < first || struct_size > 1 << 16 {
        return Err(Error::inval(format!("{what} was not initialised with {init} (bad struct_size)")));
    }
    Ok(move |end: usize| struct_size >= end)
}

/// Map options in core terms (NULL: the defaults).
pub(crate) fn convert_map(opts: *const pool_map_options_t) -> Result<MapOpts, Error> {
    // SAFETY: the caller passes a readable pool_map_options_t or NULL (checked).
    let Some(o) = (unsafe { opts.as_ref() }) else { return Ok(MapOpts::default()) };
    let first = std::mem::offset_of!(pool_map_options_t, ctx_size);
    let has = covered(o.struct_size, first, "pool_map_options_t", "pool_map_options_init")?;
    if o.task_timeout.is_nan() {
        return Err(Error::inval("task_timeout is NaN"));
    }
    let cb_end = std::mem::offset_of!(pool_map_options_t, callback_arg) + 8;
    Ok(MapOpts {
        chunksize: o.chunksize,
        statuses: o.statuses as usize,
        timeout: seconds(o.task_timeout),
        ctx_size: if has(std::mem::offset_of!(pool_map_options_t, ctx_size) + 8) { o.ctx_size } else { 0 },
        callback: if has(cb_end) { o.callback.map(|f| Callback(f, o.callback_arg as usize)) } else { None },
        shared_pointers_only: has(std::mem::offset_of!(pool_map_options_t, ctx_shared_pointers_only) + 1)
            && o.ctx_shared_pointers_only,
    })
}

/// Fills `opts` with the defaults (the pool's timeout, `ctx` passed as it is) and stamps its
/// size. NULL is a no-op.
///
/// Thread safety: safe from any thread on distinct structs.
#[no_mangle]
pub extern "C" fn pool_call_options_init(opts: *mut pool_call_options_t) {
    super::macros::boundary(|| {
        // SAFETY: the caller passes a writable pool_call_options_t or NULL (checked).
        if let Some(o) = unsafe { opts.as_mut() } {
            *o = pool_call_options_t {
                struct_size: std::mem::size_of::<pool_call_options_t>(),
                task_timeout: 0.0,
                ctx_size: 0,
                callback: None,
                callback_arg: std::ptr::null_mut(),
            };
        }
    })
}

/// Call options in core terms (NULL: the defaults), and the completion callback if any.
pub(crate) fn convert_call(opts: *const pool_call_options_t) -> Result<(CallOptions, Option<Callback>), Error> {
    // SAFETY: the caller passes a readable pool_call_options_t or NULL (checked).
    let Some(o) = (unsafe { opts.as_ref() }) else { return Ok((CallOptions::default(), None)) };
    let first = std::mem::offset_of!(pool_call_options_t, ctx_size) + 8; // the first release's size
    let has = covered(o.struct_size, first, "pool_call_options_t", "pool_call_options_init")?;
    if o.task_timeout.is_nan() {
        return Err(Error::inval("task_timeout is NaN"));
    }
    let cb_end = std::mem::offset_of!(pool_call_options_t, callback_arg) + 8;
    let callback = if has(cb_end) { o.callback.map(|f| Callback(f, o.callback_arg as usize)) } else { None };
    Ok((CallOptions { ctx_size: o.ctx_size, timeout: seconds(o.task_timeout) }, callback))
}
