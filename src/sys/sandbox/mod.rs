//! The worker sandbox (`POOL_SANDBOX_COMPUTE`): what a worker can reach once its initializer
//! ran. The host prepares it once (`prepare`: the Landlock ruleset, with the listed paths
//! resolved then); each worker then confines itself (`confine`): stdin from /dev/null, the
//! descriptors it inherited closed, every capability dropped, `no_new_privs`, Landlock, and
//! the seccomp filter last (it refuses calls the steps before make). A refused call kills the
//! worker with SIGSYS after the handler here noted which call it was.

mod landlock;
mod seccomp;

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering::SeqCst};

/// The last OS error as C programmers know it (strerror's text, without Rust's "(os error N)").
fn last_error() -> String {
    describe(&io::Error::last_os_error())
}

fn describe(e: &io::Error) -> String {
    let s = e.to_string();
    s.split(" (os error").next().unwrap_or(&s).to_string()
}

/// What a sandboxed worker's tasks may use of the filesystem, and how many tasks one process
/// runs before a fresh one replaces it.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub read: Vec<CString>,
    pub write: Vec<CString>,
    /// Tasks per sandboxed process (0: 1, a fresh process for every task).
    pub tasks_per_process: u64,
}

/// A sandbox ready for workers: the Landlock ruleset (a descriptor the workers inherit) and a
/// line saying what a worker gets.
pub struct Prepared {
    pub ruleset: OwnedFd,
    pub report: String,
}

/// Checks that this kernel gives everything the sandbox needs and builds the ruleset, or says
/// what is missing.
pub fn prepare(p: &Policy) -> Result<Prepared, String> {
    let abi = landlock::abi()?;
    seccomp::available()?;
    let ruleset = landlock::ruleset(&p.read, &p.write)?;
    let list = |v: &[CString]| {
        if v.is_empty() {
            return "nothing".to_string();
        }
        let shown = v.iter().map(|c| {
            let s = c.to_string_lossy().into_owned();
            std::fs::canonicalize(&s).map_or(s, |r| r.display().to_string())
        });
        shown.collect::<Vec<_>>().join(", ")
    };
    let fresh = match p.tasks_per_process {
        0 | 1 => "a fresh one for every task".to_string(),
        n => format!("a fresh one every {n} tasks"),
    };
    let report = format!(
        "compute sandbox: tasks run in a process of their own that maps the pool's memory read-only ({fresh}); \
         stdin /dev/null, inherited descriptors closed, a process group of its own, no capabilities, \
         no_new_privs; Landlock ABI {abi}: reads {}, writes {}{}{}; seccomp: {} calls refused or checked (new \
         processes and namespaces, exec, sockets, signals and limits of other processes, ptrace and process_vm_*, \
         descriptor owners, terminal input, mount, bpf, io_uring, userfaultfd, perf_event_open, keyrings, \
         personality, modules, reboot; metadata changes and file watches fail with EPERM)",
        list(&p.read),
        list(&p.write),
        if abi >= 4 { ", TCP refused" } else { "" },
        if abi >= 6 { ", abstract unix sockets scoped" } else { "" },
        seccomp::rule_count()
    );
    Ok(Prepared { ruleset, report })
}

/// Where the SIGSYS handler notes a refused call (number + 1).
static REFUSED: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

/// `si_code` of a SIGSYS raised by a seccomp filter.
const SYS_SECCOMP: c_int = 1;

extern "C" fn on_sigsys(_sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    // SAFETY: the kernel passes a valid siginfo.
    let code = unsafe { (*info).si_code };
    if code != SYS_SECCOMP {
        return; // a SIGSYS the task sent itself: nothing was refused
    }
    // siginfo for SIGSYS: signo, errno, code (and padding), then call_addr, syscall, arch.
    // SAFETY: as above; the offset is the Linux ABI's.
    let nr = unsafe { *((info as *const u8).add(16 + std::mem::size_of::<usize>()) as *const c_int) };
    let at = REFUSED.load(SeqCst);
    if !at.is_null() {
        // SAFETY: set once to a word that lives as long as the process (shared memory).
        let _ = unsafe { &*at }.compare_exchange(0, nr as u32 + 1, SeqCst, SeqCst);
    }
    // Another refused call, with SIGSYS blocked in this handler: the kernel then makes SIGSYS
    // fatal and the worker dies of it (no handler runs again).
    // SAFETY: a call the filter refuses (ptrace); it never returns.
    unsafe { libc::syscall(libc::SYS_ptrace, -1, 0, 0, 0) };
}

/// The name of the call a worker was refused, from the number its handler noted (+1);
/// `UNKNOWN` when it died of SIGSYS without a note.
pub fn refused_call(noted: u32) -> String {
    if noted == UNKNOWN {
        return "a system call (which one is unknown: SIGSYS was blocked, by the task or by a libc call that \
                starts a process, such as system() or posix_spawn(), which the sandbox refuses; or another \
                system call ABI was used)"
            .into();
    }
    let nr = noted as i64 - 1;
    seccomp::name(nr).map_or_else(|| format!("system call {nr}"), str::to_string)
}

/// What the zygote records for a sandboxed worker that died of SIGSYS with no call noted.
pub(crate) const UNKNOWN: u32 = u32::MAX;

/// Checks that the worker runs alone once its initializer ran: no thread besides its own, no
/// child. Its executor, forked from it, would inherit neither a running thread (an OpenMP team
/// the initializer started would hang in the executor) nor a reachable child outside the sandbox.
pub fn check_alone() -> Result<(), String> {
    let proc_err =
        |what: &str, e: io::Error| format!("{what}: {} (the sandbox needs /proc to check the worker)", describe(&e));
    let threads = std::fs::read_dir("/proc/self/task").map_err(|e| proc_err("/proc/self/task", e))?.count();
    if threads > 1 {
        return Err(format!(
            "the initializer left {} running besides the worker's; tasks run in a process forked from the \
             worker, where those threads would not exist: start them in tasks instead (they then live in the \
             sandbox)",
            if threads == 2 { "1 thread".to_string() } else { format!("{} threads", threads - 1) }
        ));
    }
    // SAFETY: getpid has no preconditions.
    let me = unsafe { libc::getpid() };
    let children = std::fs::read_to_string(format!("/proc/self/task/{me}/children")).unwrap_or_default();
    if let Some(pid) = children.split_whitespace().next() {
        return Err(format!(
            "the initializer left a process running (pid {pid}); it would stay outside the sandbox, reachable by tasks"
        ));
    }
    Ok(())
}

/// What a sandboxed worker gives up once its initializer ran, before its first executor (which
/// inherits all of it): stdin becomes /dev/null, the descriptors it had before the initializer
/// (`inherited`) are closed but `keep`, every capability is dropped, `no_new_privs` is set. The
/// worker runs no task code; doing this once here spares each executor the cost.
pub fn harden(inherited: &[c_int], keep: &[c_int]) -> Result<(), String> {
    stdin_from_null()?;
    for &fd in inherited {
        if fd > 2 && !keep.contains(&fd) {
            // SAFETY: closes a descriptor this process inherited from the host.
            unsafe { libc::close(fd) };
        }
    }
    drop_capabilities()?;
    // SAFETY: plain prctl on ourselves.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", last_error()));
    }
    Ok(())
}

/// Confines the calling process (an executor, single-threaded, forked from a worker that went
/// through `harden`) for life with the ruleset `ruleset` (closed here). `refused` receives the
/// number (+1) of a call the sandbox refuses, before the process dies of it. Fails with a
/// message naming what failed: the process must then exit.
pub fn confine(ruleset: c_int, refused: &'static AtomicU32) -> Result<(), String> {
    REFUSED.store(refused as *const AtomicU32 as *mut AtomicU32, SeqCst);
    // SAFETY: a sigaction built from zeroed memory, with our handler.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(format!("sigaction(SIGSYS): {}", last_error()));
    }
    landlock::restrict_self(ruleset)?;
    // SAFETY: the ruleset descriptor this process inherited; no longer needed.
    unsafe { libc::close(ruleset) };
    // SAFETY: getpid has no preconditions.
    seccomp::install(unsafe { libc::getpid() })?;
    Ok(())
}

/// Stdin becomes /dev/null: a task cannot read what is typed for the host.
fn stdin_from_null() -> Result<(), String> {
    // SAFETY: a valid path; dup2 onto 0 then closing the temporary descriptor.
    unsafe {
        let fd = libc::open(c"/dev/null".as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
        if fd < 0 {
            return Err(format!("/dev/null: {}", last_error()));
        }
        let ok = libc::dup2(fd, 0) == 0;
        libc::close(fd);
        if !ok {
            return Err(format!("stdin from /dev/null: {}", last_error()));
        }
    }
    Ok(())
}

/// Drops every capability a worker of a privileged host has: the bounding set (while
/// CAP_SETPCAP is still there), the ambient set, then the effective, permitted and
/// inheritable sets. A worker without capabilities has nothing to drop.
fn drop_capabilities() -> Result<(), String> {
    for cap in 0..64 {
        // SAFETY: plain prctl; EINVAL past the last capability, EPERM without CAP_SETPCAP.
        unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap, 0, 0, 0) };
    }
    // SAFETY: plain prctl on ourselves.
    unsafe { libc::prctl(libc::PR_CAP_AMBIENT, libc::PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0) };
    #[repr(C)]
    struct Header {
        version: u32,
        pid: c_int,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    let hdr = Header { version: 0x2008_0522, pid: 0 }; // _LINUX_CAPABILITY_VERSION_3
    let data = [Data { effective: 0, permitted: 0, inheritable: 0 }; 2];
    // SAFETY: capset with a version-3 header and its two data words.
    if unsafe { libc::syscall(libc::SYS_capset, &hdr as *const Header, data.as_ptr()) } != 0 {
        return Err(format!("dropping capabilities: {}", last_error()));
    }
    Ok(())
}

/// The descriptors open in this process (to close those inherited once the initializer ran).
pub fn open_fds() -> Result<Vec<c_int>, String> {
    let dir = std::fs::read_dir("/proc/self/fd").map_err(|e| {
        format!("/proc/self/fd: {} (the sandbox needs /proc to close inherited descriptors)", describe(&e))
    })?;
    let listed: Vec<c_int> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    // Without the listing's own descriptor, closed by now (the initializer may reuse it).
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    Ok(listed.into_iter().filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1).collect())
}

/// The ruleset descriptor's number, for the zygote and the workers to keep across fork.
pub fn ruleset_fd(p: &Prepared) -> c_int {
    p.ruleset.as_raw_fd()
}
