//! Processes: exit, reaping, pidfds, signals, process groups, prctl, /proc, eventfds. Forking
//! and the fork handlers are in `fork.rs`.

use std::io;
use std::os::raw::c_int;

pub use super::fork::{add_fork_hook, fork, getpid, init_once, Forked, SameProcess};
pub use super::fork::{register_fd, register_map, unregister_fd, unregister_map};

/// A file descriptor closed on drop.
#[derive(Debug)]
pub struct OwnedFd(pub c_int);

impl Drop for OwnedFd {
    fn drop(&mut self) {
        // SAFETY: we own this descriptor and close it once.
        unsafe {
            libc::close(self.0);
        }
    }
}

/// Leaves at once without flushing stdio (for a process whose buffers are someone else's copies).
pub fn exit_silently(code: i32) -> ! {
    // SAFETY: _exit never returns and touches nothing of ours.
    unsafe { libc::_exit(code) }
}

/// Leaves a forked child at once: flushes stdio, then `_exit` (no atexit handlers of the host).
pub fn exit_now(code: i32) -> ! {
    flush_stdio();
    // SAFETY: _exit never returns and touches nothing of ours.
    unsafe { libc::_exit(code) }
}

/// Decoded wait status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Code(i32),
    Signal { sig: i32, core: bool },
}

impl Exit {
    pub fn from_raw(status: c_int) -> Exit {
        if libc::WIFSIGNALED(status) {
            Exit::Signal { sig: libc::WTERMSIG(status), core: libc::WCOREDUMP(status) }
        } else {
            Exit::Code(libc::WEXITSTATUS(status))
        }
    }
    /// Python's convention: the exit status, or -N when killed by signal N.
    pub fn python_code(self) -> i32 {
        match self {
            Exit::Code(c) => c,
            Exit::Signal { sig, .. } => -sig,
        }
    }
}

impl std::fmt::Display for Exit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Exit::Code(c) => write!(f, "exited with status {c}"),
            Exit::Signal { sig, core } => {
                write!(f, "killed by signal {sig} ({})", signal_name(sig))?;
                if core {
                    f.write_str(", core dumped")?;
                }
                Ok(())
            }
        }
    }
}

pub fn signal_name(sig: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string (or NULL).
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return format!("signal {sig}");
    }
    // SAFETY: non-NULL strsignal result is a NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// Reaps `pid` (our own child only). `block`: wait for it. Returns None while it runs;
/// Err(ECHILD) if someone else reaped it.
pub fn reap(pid: libc::pid_t, block: bool) -> io::Result<Option<Exit>> {
    let mut status: c_int = 0;
    loop {
        // SAFETY: waits for one specific child; `status` is a valid out pointer.
        let r = unsafe { libc::waitpid(pid, &mut status, if block { 0 } else { libc::WNOHANG }) };
        if r == pid {
            return Ok(Some(Exit::from_raw(status)));
        }
        if r == 0 {
            return Ok(None);
        }
        let e = io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EINTR) {
            return Err(e);
        }
    }
}

/// Reaps any child of this process that has exited (used only in the zygote, whose children
/// are all its own workers).
pub fn reap_any() -> Option<(libc::pid_t, Exit)> {
    let mut status: c_int = 0;
    // SAFETY: valid out pointer; WNOHANG never blocks.
    let r = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
    (r > 0).then(|| (r, Exit::from_raw(status)))
}

/// A process we watch and signal: through a pidfd (race-free, pollable) where the kernel has
/// them, else by pid (old kernels, valgrind), polling for its exit. The pidfd is registered so
/// that children the library forks do not inherit it.
pub struct PidHandle {
    pub pid: libc::pid_t,
    fd: Option<OwnedFd>,
}

impl PidHandle {
    pub fn open(pid: libc::pid_t) -> PidHandle {
        // SAFETY: plain syscall.
        let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) } as c_int;
        let fd = (fd >= 0).then(|| {
            // SAFETY: fcntl on our own fresh descriptor.
            unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
            register_fd(fd);
            OwnedFd(fd)
        });
        PidHandle { pid, fd }
    }

    /// The pollable descriptor, or -1 (which poll ignores) without pidfds.
    pub fn poll_fd(&self) -> c_int {
        self.fd.as_ref().map_or(-1, |f| f.0)
    }

    /// Waits up to `timeout_ms` (-1: forever) for our child to exit, without reaping it.
    pub fn exited(&self, timeout_ms: c_int) -> bool {
        if let Some(fd) = &self.fd {
            return poll_readable(fd.0, timeout_ms);
        }
        let start = std::time::Instant::now();
        loop {
            // SAFETY: waitid with WNOWAIT only looks; `info` is a valid out pointer.
            let done = unsafe {
                let mut info: libc::siginfo_t = std::mem::zeroed();
                let r = libc::waitid(
                    libc::P_PID,
                    self.pid as libc::id_t,
                    &mut info,
                    libc::WEXITED | libc::WNOHANG | libc::WNOWAIT,
                );
                r != 0 || info.si_pid() != 0
            };
            if done {
                return true;
            }
            if timeout_ms >= 0 && start.elapsed().as_millis() >= timeout_ms as u128 {
                return false;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
    }

    pub fn signal(&self, sig: i32) -> io::Result<()> {
        // SAFETY: plain syscalls; without a pidfd the pid is our own unreaped child.
        let r = match &self.fd {
            Some(fd) => unsafe { libc::syscall(libc::SYS_pidfd_send_signal, fd.0, sig, 0usize, 0u32) as c_int },
            None => unsafe { libc::kill(self.pid, sig) },
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for PidHandle {
    fn drop(&mut self) {
        if let Some(fd) = &self.fd {
            unregister_fd(fd.0);
        }
    }
}

/// Waits until `fd` is readable (a pidfd: the process exited) or `timeout_ms` passes (-1: none).
pub fn poll_readable(fd: c_int, timeout_ms: c_int) -> bool {
    let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
    let deadline =
        (timeout_ms >= 0).then(|| std::time::Instant::now() + std::time::Duration::from_millis(timeout_ms as u64));
    loop {
        // Interrupted by a signal: wait only for the time left, however often that happens.
        let left = deadline.map_or(-1, |d| d.saturating_duration_since(std::time::Instant::now()).as_millis() as c_int);
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, left) };
        if r >= 0 {
            return r > 0;
        }
        if io::Error::last_os_error().raw_os_error() != Some(libc::EINTR) {
            return false;
        }
    }
}

pub fn kill(pid: libc::pid_t, sig: i32) {
    if pid > 0 {
        // SAFETY: plain syscall; callers only signal their own live children.
        unsafe { libc::kill(pid, sig) };
    }
}

pub fn errno() -> i32 {
    io::Error::last_os_error().raw_os_error().unwrap_or(0)
}

extern "C" {
    // Not in the libc crate for Linux.
    fn pthread_setcancelstate(state: c_int, oldstate: *mut c_int) -> c_int;
}
/// PTHREAD_CANCEL_DISABLE in glibc and musl.
const PTHREAD_CANCEL_DISABLE: c_int = 1;

/// Keeps the calling thread from being cancelled (pthread_cancel) until dropped, then restores
/// its previous state: a cancellation point inside the library would unwind through Rust
/// frames, which is undefined behaviour (glibc aborts the process). A cancel that arrives
/// meanwhile stays pending and acts at the caller's next cancellation point.
pub struct NoCancel(c_int);

impl NoCancel {
    pub fn enter() -> NoCancel {
        let mut old = 0;
        // SAFETY: changes only the calling thread's state; `old` is a valid out pointer.
        unsafe { pthread_setcancelstate(PTHREAD_CANCEL_DISABLE, &mut old) };
        NoCancel(old)
    }
}

impl Drop for NoCancel {
    fn drop(&mut self) {
        let mut old = 0;
        // SAFETY: as in `enter`; not a cancellation point itself.
        unsafe { pthread_setcancelstate(self.0, &mut old) };
    }
}

pub fn getppid() -> libc::pid_t {
    // SAFETY: always succeeds.
    unsafe { libc::getppid() }
}

/// Sends `sig` to every process of process group `pgid`.
pub fn kill_group(pgid: libc::pid_t, sig: i32) {
    if pgid > 1 {
        // SAFETY: plain syscall on a group this library created.
        unsafe { libc::kill(-pgid, sig) };
    }
}

/// Puts the calling process in a process group of its own (a task's `kill(0, sig)` then reaches
/// only the pool's processes, and Ctrl-C at a terminal only the host's group).
pub fn own_process_group() {
    // SAFETY: plain syscall on ourselves.
    unsafe { libc::setpgid(0, 0) };
}

/// Same, from the parent, for child `pid` (whichever of the two runs first wins the race).
pub fn set_process_group(pid: libc::pid_t) {
    // SAFETY: plain syscall on our own child.
    unsafe { libc::setpgid(pid, pid) };
}

/// Orphaned descendants are reparented to this process instead of init, so it can reap them
/// and kill whatever is left when it ends.
pub fn become_subreaper() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) };
}

/// The pids of this (single-threaded) process's children, zombies included.
pub fn own_children() -> Vec<libc::pid_t> {
    let me = getpid();
    std::fs::read_to_string(format!("/proc/{me}/task/{me}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// True once `pid` has exited (gone, or a zombie).
pub fn is_dead(pid: libc::pid_t) -> bool {
    match state(pid) {
        // A leader that ended with pthread_exit shows Z while its other threads run on.
        Some('Z' | 'X') => threads(pid).is_none_or(|n| n <= 1),
        Some(_) => false,
        // Gone, or /proc unreadable here (a sandbox): only a failed kill(0) says gone.
        // SAFETY: signal 0 only checks that the process exists.
        None => (unsafe { libc::kill(pid, 0) }) != 0 && errno() == libc::ESRCH,
    }
}

/// Whether `pid` is stopped by a signal (SIGSTOP, SIGTSTP...), not by a debugger.
pub fn is_stopped(pid: libc::pid_t) -> bool {
    state(pid) == Some('T')
}

/// The threads of `pid` (/proc/<pid>/status), None if it is gone.
fn threads(pid: libc::pid_t) -> Option<u64> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    s.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok())
}

/// The state letter of `pid` in /proc/<pid>/stat (None if it is gone).
fn state(pid: libc::pid_t) -> Option<char> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s[s.rfind(')')? + 1..].trim_start().chars().next()
}

/// Waits for any signal handler to run (parks the caller).
pub fn pause() {
    // SAFETY: plain syscall.
    unsafe { libc::pause() };
}

/// Drops `sig` if it is pending for this process, without running its handler.
pub fn discard_pending(sig: i32) {
    // SAFETY: sigset_t initialised before use; the mask is restored after.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        let mut old: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, sig);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, &mut old);
        let zero = libc::timespec { tv_sec: 0, tv_nsec: 0 };
        while libc::sigtimedwait(&set, std::ptr::null_mut(), &zero) == sig {}
        libc::pthread_sigmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

/// Has `sig` interrupt this process's blocking calls (a handler that does nothing, installed
/// without SA_RESTART): a futex wait then returns, and the caller looks at why.
pub fn interrupt_waits_on(sig: i32) {
    extern "C" fn nothing(_: c_int) {}
    // SAFETY: a sigaction built from zeroed memory, with a handler that touches nothing.
    unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = nothing as *const () as usize;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(sig, &sa, std::ptr::null_mut());
    }
}

/// Ends this process the way another one ended: the same exit status, or the same signal (with
/// its default action, and no core file: the process that got it first wrote any).
pub fn die_like(e: Exit) -> ! {
    if let Exit::Signal { sig, .. } = e {
        // SAFETY: plain calls on ourselves; the process ends here.
        unsafe {
            let none = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
            libc::setrlimit(libc::RLIMIT_CORE, &none);
            libc::signal(sig, libc::SIG_DFL);
            set_mask(&[sig], libc::SIG_UNBLOCK);
            libc::kill(libc::getpid(), sig);
        }
        exit_silently(128 + sig); // a signal whose default action is not to end a process
    }
    exit_silently(e.python_code())
}

/// Asks the kernel to SIGKILL this process when its parent (the forking thread) dies.
pub fn die_with_parent() {
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL as libc::c_ulong, 0, 0, 0) };
}

pub fn set_name(name: impl AsRef<[u8]>) {
    let c = std::ffi::CString::new(name.as_ref()).unwrap_or_default();
    // SAFETY: PR_SET_NAME copies at most 16 bytes from a valid C string.
    unsafe { libc::prctl(libc::PR_SET_NAME, c.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// In a fresh worker: default dispositions for the fatal signals (so a crash is reported as
/// one, whatever handler the host had), SIGINT ignored (the host decides on Ctrl-C), and an
/// empty signal mask.
pub fn reset_signals_for_worker() {
    for sig in [libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGILL, libc::SIGABRT, libc::SIGTERM, libc::SIGCHLD] {
        // SAFETY: setting a default disposition in our own (child) process.
        unsafe { libc::signal(sig, libc::SIG_DFL) };
    }
    // SAFETY: as above.
    unsafe { libc::signal(libc::SIGINT, libc::SIG_IGN) };
    set_mask(&[], libc::SIG_SETMASK);
}

/// Changes the calling thread's signal mask (`how`: SIG_BLOCK / SIG_SETMASK).
pub fn set_mask(sigs: &[i32], how: c_int) {
    // SAFETY: sigset_t is initialised by sigemptyset before use.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(how, &set, std::ptr::null_mut());
    }
}

/// A signalfd for `sigs` (which the caller has blocked).
pub fn signalfd(sigs: &[i32]) -> io::Result<OwnedFd> {
    // SAFETY: sigset_t initialised before use; signalfd returns a new descriptor.
    let fd = unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in sigs {
            libc::sigaddset(&mut set, s);
        }
        libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK)
    };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd(fd))
}

/// Reads one pending signal number from a signalfd, if any.
pub fn read_signal(fd: &OwnedFd) -> Option<i32> {
    // SAFETY: signalfd_siginfo is plain data; read fills at most its size.
    unsafe {
        let mut info: libc::signalfd_siginfo = std::mem::zeroed();
        let n = libc::read(fd.0, &mut info as *mut _ as *mut libc::c_void, std::mem::size_of_val(&info));
        (n == std::mem::size_of_val(&info) as isize).then_some(info.ssi_signo as i32)
    }
}

/// Waits for any of `fds` to be readable, at most `timeout_ms` (-1: no limit).
pub fn poll_any(fds: &[c_int], timeout_ms: c_int) -> Vec<bool> {
    let mut p: Vec<libc::pollfd> =
        fds.iter().map(|&fd| libc::pollfd { fd, events: libc::POLLIN, revents: 0 }).collect();
    // SAFETY: `p` is a valid array of pollfd of the given length.
    let r = unsafe { libc::poll(p.as_mut_ptr(), p.len() as libc::nfds_t, timeout_ms) };
    p.iter().map(|x| r > 0 && x.revents != 0).collect()
}

/// The number of CPUs this process may run on (its affinity mask).
pub fn usable_cpus() -> usize {
    // SAFETY: cpu_set_t is plain data; sched_getaffinity fills it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) == 0 {
            let n = libc::CPU_COUNT(&set);
            if n > 0 {
                return n as usize;
            }
        }
    }
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

pub fn monotonic_ns() -> u64 {
    // SAFETY: valid out pointer; CLOCK_MONOTONIC always exists.
    unsafe {
        let mut ts: libc::timespec = std::mem::zeroed();
        libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts);
        ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
    }
}

/// This process's resident memory in bytes (from /proc/self/statm). Where /proc cannot be read
/// (a sandboxed worker), its peak resident memory instead: a worker past the bound once is
/// replaced, never one that stays past it unseen.
pub fn resident_bytes() -> u64 {
    resident_bytes_of(0)
}

/// The resident memory of process `pid` (0: this one), as [`resident_bytes`].
pub fn resident_bytes_of(pid: libc::pid_t) -> u64 {
    let path = if pid == 0 { "/proc/self/statm".to_string() } else { format!("/proc/{pid}/statm") };
    let Ok(s) = std::fs::read_to_string(path) else {
        if pid != 0 {
            return 0;
        }
        // SAFETY: getrusage fills a zeroed struct for ourselves.
        let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
        return ru.ru_maxrss.max(0) as u64 * 1024;
    };
    let pages: u64 = s.split(' ').nth(1).and_then(|x| x.parse().ok()).unwrap_or(0);
    // SAFETY: sysconf with a valid name.
    pages * unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u64
}

/// One line of /proc/<pid>/maps: its address range, permissions and the mapped file's identity
/// (device and inode; 0 for anonymous memory).
struct MapLine {
    lo: usize,
    hi: usize,
    perms: String,
    file: FileId,
}

/// A mapped file's identity in /proc/<pid>/maps: device and inode.
pub type FileId = (String, u64);

/// The mappings of process `pid` (0: this one); empty if its maps cannot be read.
fn maps(pid: libc::pid_t) -> Vec<MapLine> {
    let path = if pid == 0 { "/proc/self/maps".to_string() } else { format!("/proc/{pid}/maps") };
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let (lo, hi) = f.next()?.split_once('-')?;
            let perms = f.next()?.to_string();
            let (dev, inode) = (f.nth(1)?.to_string(), f.next()?.parse().ok()?);
            let (lo, hi) = (usize::from_str_radix(lo, 16).ok()?, usize::from_str_radix(hi, 16).ok()?);
            Some(MapLine { lo, hi, perms, file: (dev, inode) })
        })
        .collect()
}

/// The address ranges mapped in this process now (one read of /proc/self/maps), sorted.
pub struct Ranges {
    /// Mapped executable.
    pub executable: Vec<(usize, usize)>,
    /// Mapped readable.
    pub readable: Vec<(usize, usize)>,
    /// Mapped shared (`MAP_SHARED`).
    pub shared: Vec<(usize, usize)>,
}

pub fn mapped_ranges() -> Ranges {
    let maps = maps(0);
    let with = |perm: char| maps.iter().filter(|m| m.perms.contains(perm)).map(|m| (m.lo, m.hi)).collect();
    Ranges { executable: with('x'), readable: with('r'), shared: with('s') }
}

/// The pids of every process this one can see in /proc.
pub fn all_pids() -> Vec<libc::pid_t> {
    std::fs::read_dir("/proc")
        .map(|d| d.flatten().filter_map(|e| e.file_name().to_str()?.parse().ok()).collect())
        .unwrap_or_default()
}

/// The file mapped at `addr` in this process (to tell the processes that map a given memfd
/// from any others, whatever their pids).
pub fn mapping_at(addr: usize) -> Option<FileId> {
    maps(0).into_iter().find(|m| m.lo <= addr && addr < m.hi).map(|m| m.file)
}

/// Whether process `pid` maps file `id` anywhere outside `range` (false if its maps cannot be
/// read).
pub fn maps_outside(pid: libc::pid_t, id: &FileId, range: &std::ops::Range<usize>) -> bool {
    maps(pid).iter().any(|m| &m.file == id && (m.lo < range.start || m.hi > range.end))
}

/// A pipe, both ends close-on-exec: (read end, write end).
pub fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as c_int; 2];
    // SAFETY: a valid array of two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok((OwnedFd(fds[0]), OwnedFd(fds[1])))
}

/// Flushes every stdio output stream of this process (`fflush(NULL)`).
pub fn flush_stdio() {
    // SAFETY: fflush(NULL) flushes all open output streams; always valid.
    unsafe { libc::fflush(std::ptr::null_mut()) };
}

/// Closes descriptor `fd`, which the caller owns and never uses again.
pub fn close_fd(fd: c_int) {
    // SAFETY: as the caller says.
    unsafe { libc::close(fd) };
}

/// Closes every descriptor from 3 up but those in `keep` (`close_range`, Linux 5.9; on older
/// kernels nothing is closed).
pub fn close_all_but(keep: &[c_int]) {
    let mut keep: Vec<c_int> = keep.iter().copied().filter(|&fd| fd >= 3).collect();
    keep.sort_unstable();
    let mut lo = 3u32;
    for k in keep.into_iter().map(|k| k as u32) {
        if k > lo {
            // SAFETY: closes descriptors of this process nobody uses any more.
            unsafe { libc::syscall(libc::SYS_close_range, lo, k - 1, 0u32) };
        }
        lo = lo.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, lo, u32::MAX, 0u32) };
}

/// Makes `fd` non-blocking.
pub fn set_nonblocking(fd: c_int) {
    // SAFETY: plain fcntl calls on a descriptor the caller owns.
    unsafe {
        let fl = libc::fcntl(fd, libc::F_GETFL);
        libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
    }
}

/// Puts a copy of `fd` at descriptor number `target` (a child's stdout or stderr).
pub fn dup_onto(fd: c_int, target: c_int) -> io::Result<()> {
    // SAFETY: dup2 between descriptors of this process.
    if unsafe { libc::dup2(fd, target) } < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// What a read of a non-blocking descriptor found.
pub enum ReadNow {
    Data(usize),
    /// Nothing now (or a failure: nothing to read either way).
    Empty,
    /// End of file: the writers closed their ends.
    End,
}

/// Reads what non-blocking `fd` holds now into `buf`.
pub fn read_now(fd: c_int, buf: &mut [u8]) -> ReadNow {
    // SAFETY: reads into the caller's buffer, at most its size.
    match unsafe { libc::read(fd, buf.as_mut_ptr() as *mut libc::c_void, buf.len()) } {
        0 => ReadNow::End,
        n if n > 0 => ReadNow::Data(n as usize),
        _ => ReadNow::Empty,
    }
}

/// Writes all of `data` to `fd` (as a plain write would, waiting if it must); a failure drops
/// the rest.
pub fn write_all(fd: c_int, mut data: &[u8]) {
    while !data.is_empty() {
        // SAFETY: writes bytes of the caller's slice.
        let w = unsafe { libc::write(fd, data.as_ptr() as *const libc::c_void, data.len()) };
        if w < 0 && errno() == libc::EINTR {
            continue;
        }
        if w <= 0 {
            return;
        }
        data = &data[w as usize..];
    }
}

/// Whether descriptors `a` and `b` of this process are the same open file (`kcmp`; false where
/// the kernel cannot tell).
pub fn same_open_file(a: c_int, b: c_int) -> bool {
    const KCMP_FILE: c_int = 0;
    // SAFETY: compares two descriptors of this process; reads nothing of ours.
    let me = unsafe { libc::getpid() };
    // SAFETY: as above.
    (unsafe { libc::syscall(libc::SYS_kcmp, me, me, KCMP_FILE, a, b) }) == 0
}

/// A nonblocking eventfd for the host and every process forked after it.
pub fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(OwnedFd(fd))
}

/// Resets a nonblocking eventfd's counter; true if it was nonzero.
pub fn eventfd_drain(fd: c_int) -> bool {
    let mut v: u64 = 0;
    // SAFETY: reads 8 bytes into a valid u64 from a nonblocking eventfd.
    unsafe { libc::read(fd, &mut v as *mut u64 as *mut libc::c_void, 8) == 8 }
}

/// Adds one to an eventfd's counter (never blocks: the fd is nonblocking).
pub fn eventfd_signal(fd: c_int) {
    let one: u64 = 1;
    // SAFETY: writes 8 bytes from a valid u64 to an eventfd.
    unsafe { libc::write(fd, &one as *const u64 as *const libc::c_void, 8) };
}
