//! Forking with library hygiene: the registry of what the library holds (a forked child drops
//! it), the fork handlers that keep the library's locks consistent across any fork in the
//! process (the host's own too), and the pid cache they keep right.

use std::cell::RefCell;
use std::io;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering::*};
use std::sync::{Mutex, MutexGuard, OnceLock};

/// Everything the library holds that a forked child must drop: descriptors and mappings of
/// every pool. The fork handlers hold this lock across every fork, so a child sees a consistent
/// list, unlocked.
struct Registry {
    fds: Vec<c_int>,
    maps: Vec<(usize, usize)>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { fds: Vec::new(), maps: Vec::new() });

fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(|e| e.into_inner())
}

pub fn register_fd(fd: c_int) {
    registry().fds.push(fd);
}
pub fn unregister_fd(fd: c_int) {
    registry().fds.retain(|&f| f != fd);
}
pub fn register_map(base: usize, len: usize) {
    registry().maps.push((base, len));
}
pub fn unregister_map(base: usize) {
    registry().maps.retain(|&(b, _)| b != base);
}

pub enum Forked {
    Parent(libc::pid_t),
    Child,
}

/// Forks. In the child, closes every library descriptor and unmaps every pool mapping except
/// `keep_map` and `keep_fds` (those of the pool the child belongs to, if any), which stay
/// registered. stdio is flushed first so that buffered output is never duplicated. The child
/// must end with [`super::proc::exit_now`].
pub fn fork(keep_map: Option<usize>, keep_fds: &[c_int]) -> io::Result<Forked> {
    // Without the fork handlers (pthread_atfork failed), the registry is held across fork here.
    let held = (!HANDLERS.load(SeqCst)).then(registry);
    // SAFETY: fflush(NULL) flushes all open output streams; always valid.
    unsafe { libc::fflush(std::ptr::null_mut()) };
    // SAFETY: glibc's fork makes malloc and stdio usable in the child even when other threads
    // hold their locks; the fork handlers below do the same for the library's own locks.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        return Err(io::Error::last_os_error());
    }
    if pid > 0 {
        return Ok(Forked::Parent(pid));
    }
    let mut reg = held.unwrap_or_else(registry);
    for &fd in reg.fds.iter().filter(|fd| !keep_fds.contains(fd)) {
        // SAFETY: library-owned descriptors, duplicated by fork, closed in the child only.
        unsafe { libc::close(fd) };
    }
    for &(base, len) in &reg.maps {
        if Some(base) != keep_map {
            super::mem::unmap_in_child(base, len);
        }
    }
    reg.fds.retain(|fd| keep_fds.contains(fd));
    reg.maps.retain(|&(b, _)| Some(b) == keep_map);
    drop(reg);
    Ok(Forked::Child)
}

// ---- Any fork in the process (the host's own too): the library's locks and the pid cache.

/// This process's pid, kept right across fork() by the child handler, so that checking the
/// owner of a pool on every call costs no system call. 0 until first asked.
static PID: AtomicI32 = AtomicI32::new(0);
/// Whether the fork handlers are installed: only then may the pid be cached.
static HANDLERS: AtomicBool = AtomicBool::new(false);
/// Another module's locks that a fork must not catch held (the C handle registry).
static HOOKS: OnceLock<ForkHooks> = OnceLock::new();

#[derive(Clone, Copy)]
pub struct ForkHooks {
    /// Takes the locks, in the thread about to fork.
    pub prepare: fn(),
    /// Releases whatever `prepare` took in this thread; runs in the parent and in the child.
    pub release: fn(),
}

/// Has `hooks` run around every fork of this process (set once, when the library is loaded).
pub fn set_fork_hooks(hooks: ForkHooks) {
    let _ = HOOKS.set(hooks);
}

/// The locks a forking thread holds from before fork() until after it: the registry's, and the
/// one around the library's calls into the dynamic loader (`dl.rs`: a child forked while another
/// thread was inside `dl_iterate_phdr` would find the loader's lock held forever).
type Held = (MutexGuard<'static, Registry>, MutexGuard<'static, ()>);

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

extern "C" fn before_fork() {
    if let Some(h) = HOOKS.get() {
        (h.prepare)();
    }
    let g = (registry(), super::dl::lock());
    // Without thread-local storage (a thread being torn down) the guards are dropped: no worse
    // than having no handler.
    let _ = HELD.try_with(|h| *h.borrow_mut() = Some(g));
}

fn after_fork() {
    let _ = HELD.try_with(|h| h.borrow_mut().take());
    if let Some(h) = HOOKS.get() {
        (h.release)();
    }
}

extern "C" fn after_fork_parent() {
    after_fork();
}

extern "C" fn after_fork_child() {
    // SAFETY: always succeeds.
    PID.store(unsafe { libc::getpid() }, Relaxed);
    after_fork(); // the child's only thread is the one that took the locks, so it may release them
}

extern "C" fn install_fork_handlers() {
    // SAFETY: registers handlers that take and release only this library's own locks; they
    // neither panic nor unwind.
    let r = unsafe {
        libc::pthread_atfork(
            Some(before_fork as unsafe extern "C" fn()),
            Some(after_fork_parent as unsafe extern "C" fn()),
            Some(after_fork_child as unsafe extern "C" fn()),
        )
    };
    HANDLERS.store(r == 0, SeqCst);
}

/// Installs the fork handlers when the library is loaded, before any thread can use it (a lazy
/// install could race with a fork and leave a child with a lock held, or a stale pid).
#[used]
#[link_section = ".init_array"]
static INSTALL_FORK_HANDLERS: extern "C" fn() = install_fork_handlers;

/// This process's pid (cached: see `PID`).
pub fn getpid() -> libc::pid_t {
    let p = PID.load(Relaxed);
    if p != 0 {
        return p;
    }
    // SAFETY: always succeeds.
    let p = unsafe { libc::getpid() };
    if HANDLERS.load(SeqCst) {
        PID.store(p, Relaxed);
    }
    p
}
