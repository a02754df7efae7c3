//! Forking with library hygiene: the registry of what the library holds (a forked child drops
//! it), the fork handlers that keep the library's locks consistent across any fork in the
//! process (the host's own too), and the pid cache they keep right.

use std::any::Any;
use std::cell::RefCell;
use std::io;
use std::os::raw::c_int;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicPtr, Ordering::*};
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

/// This process's pid, cached so that checking the owner of a pool on every call costs no
/// system call: in a page the kernel zeroes in the child of every fork (MADV_WIPEONFORK), so
/// the cache is right after any fork, even one that runs no fork handler (glibc's `_Fork`, a
/// raw `clone`). 0 until first asked; null where the kernel cannot wipe it (before Linux 4.14):
/// no cache then.
static PID: AtomicPtr<AtomicI32> = AtomicPtr::new(std::ptr::null_mut());
/// Whether the fork handlers are installed.
static HANDLERS: AtomicBool = AtomicBool::new(false);
/// Other modules' locks that a fork must not catch held (the C handle registry, the registry of
/// callback waits): each hook takes its locks in the forking thread and hands back the guards,
/// dropped once fork() returns (in the parent, and in the child, whose only thread is the one
/// that took them).
pub type ForkHook = fn() -> Box<dyn Any>;
static HOOKS: [OnceLock<ForkHook>; 4] = [const { OnceLock::new() }; 4];

/// Has `hook` run before every fork of this process (added when the library is loaded).
pub fn add_fork_hook(hook: ForkHook) {
    let added = HOOKS.iter().any(|slot| slot.set(hook).is_ok());
    debug_assert!(added, "more fork hooks than slots");
}

/// Held while a lazily made thing is being made (`init_once`).
static INITS: Mutex<()> = Mutex::new(());

/// `cell.get_or_init(f)`, but never caught halfway by a fork. A child forked while another
/// thread was inside `get_or_init` would wait forever for an initialisation that no thread of
/// its own runs; here it runs under `INITS`, which the forking thread holds across fork(), so
/// a fork waits for it to finish and the child finds the cell either made or empty.
pub fn init_once<T>(cell: &'static OnceLock<T>, f: impl FnOnce() -> T) -> &'static T {
    if let Some(v) = cell.get() {
        return v;
    }
    let _one = INITS.lock().unwrap_or_else(|e| e.into_inner());
    cell.get_or_init(f)
}

/// The locks a forking thread holds from before fork() until after it: the other modules'
/// (hooks), the lazy initialisations', the registry's, and the one around the library's calls
/// into the dynamic loader (`dl.rs`: a child forked while another thread was inside
/// `dl_iterate_phdr` would find the loader's lock held forever).
type Held = (Vec<Box<dyn Any>>, MutexGuard<'static, ()>, MutexGuard<'static, Registry>, MutexGuard<'static, ()>);

thread_local! {
    static HELD: RefCell<Option<Held>> = const { RefCell::new(None) };
}

extern "C" fn before_fork() {
    let hooks = HOOKS.iter().filter_map(OnceLock::get).map(|hook| hook()).collect();
    let inits = INITS.lock().unwrap_or_else(|e| e.into_inner());
    let g = (hooks, inits, registry(), super::dl::lock());
    // Without thread-local storage (a thread being torn down) the guards are dropped: no worse
    // than having no handler.
    let _ = HELD.try_with(|h| *h.borrow_mut() = Some(g));
}

fn after_fork() {
    let _ = HELD.try_with(|h| h.borrow_mut().take());
}

extern "C" fn after_fork_parent() {
    after_fork();
}

extern "C" fn after_fork_child() {
    after_fork(); // the child's only thread is the one that took the locks, so it may release them
}

/// The page of the pid cache (see `PID`), or null.
fn pid_page() -> *mut AtomicI32 {
    // SAFETY: a fresh private anonymous page, never unmapped; MADV_WIPEONFORK only changes what
    // children see of it.
    unsafe {
        let p = libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        );
        if p == libc::MAP_FAILED {
            return std::ptr::null_mut();
        }
        if libc::madvise(p, 4096, libc::MADV_WIPEONFORK) != 0 {
            libc::munmap(p, 4096);
            return std::ptr::null_mut();
        }
        p as *mut AtomicI32
    }
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
    PID.store(pid_page(), SeqCst);
}

/// Installs the fork handlers when the library is loaded, before any thread can use it (a lazy
/// install could race with a fork and leave a child with a lock held, or a stale pid).
#[used]
#[link_section = ".init_array"]
static INSTALL_FORK_HANDLERS: extern "C" fn() = install_fork_handlers;

/// This process's pid (cached: see `PID`).
pub fn getpid() -> libc::pid_t {
    let page = PID.load(Relaxed);
    // SAFETY: set once at load time to a page that is never unmapped (or null).
    let cache = unsafe { page.as_ref() };
    if let Some(p) = cache.map(|c| c.load(Relaxed)).filter(|&p| p != 0) {
        return p;
    }
    // SAFETY: always succeeds.
    let p = unsafe { libc::getpid() };
    if let Some(c) = cache {
        c.store(p, Relaxed);
    }
    p
}

/// A check, cheap enough for every item of a map, that the calling process is still the one
/// that made it: one load of the wipe-on-fork pid page (a child forked since sees 0 there, or its
/// own pid once it asked), a system call per check only where there is no page.
#[derive(Clone, Copy)]
pub struct SameProcess {
    page: Option<&'static AtomicI32>,
    pid: libc::pid_t,
}

impl SameProcess {
    pub fn now() -> SameProcess {
        let pid = getpid(); // fills the page
                            // SAFETY: set once at load time to a page that is never unmapped (or null).
        SameProcess { page: unsafe { PID.load(Relaxed).as_ref() }, pid }
    }

    /// True in a process forked since `now()`.
    #[inline]
    pub fn forked(&self) -> bool {
        match self.page {
            Some(c) => c.load(Relaxed) != self.pid && getpid() != self.pid,
            None => getpid() != self.pid,
        }
    }
}

/// For tests: forks as a host would (plain fork(), every fork handler) and runs `f` in the
/// child. Some(what `f` said), or None if the child was still there after a generous hang guard
/// (it is then killed).
#[cfg(test)]
pub(crate) fn in_forked_child(f: impl FnOnce() -> bool) -> Option<bool> {
    // SAFETY: the child only runs `f` and leaves with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", io::Error::last_os_error());
    if pid == 0 {
        let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or(false);
        super::proc::exit_silently(i32::from(!ok));
    }
    let until = std::time::Instant::now() + std::time::Duration::from_secs(20);
    loop {
        if let Some(exit) = super::proc::reap(pid, false).expect("our own child") {
            return Some(exit == super::proc::Exit::Code(0));
        }
        if std::time::Instant::now() > until {
            super::proc::kill(pid, libc::SIGKILL);
            let _ = super::proc::reap(pid, true);
            return None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_fork_during_a_lazy_initialisation_waits_for_it() {
        static CELL: OnceLock<u32> = OnceLock::new();
        let (inside, told) = std::sync::mpsc::channel();
        let maker = std::thread::spawn(move || {
            *init_once(&CELL, || {
                inside.send(()).unwrap();
                std::thread::sleep(Duration::from_millis(100)); // a fork now catches it halfway
                7
            })
        });
        told.recv().unwrap();
        // The child finds the cell made (the fork waited): with a plain get_or_init it waited
        // forever for the maker's copy, which it does not have.
        assert_eq!(in_forked_child(|| *init_once(&CELL, || 8) == 7), Some(true), "the child hung or saw no 7");
        assert_eq!(maker.join().unwrap(), 7);
    }
}
