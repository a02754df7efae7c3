//! The worker sandbox (`POOL_SANDBOX_COMPUTE`): what a worker can reach once its initializer
//! ran. In order: the descriptors it inherited are closed, `no_new_privs`, Landlock (the
//! listed paths only), and the seccomp filter last (it refuses calls the steps before make).
//! A refused call kills the worker with SIGSYS after the handler here noted which call it was.

mod landlock;
mod seccomp;

use std::ffi::CString;
use std::io;
use std::os::raw::{c_int, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU32, Ordering::SeqCst};

/// What a sandboxed worker may use of the filesystem.
#[derive(Clone, Debug, Default)]
pub struct Policy {
    pub read: Vec<CString>,
    pub write: Vec<CString>,
}

/// Whether this kernel gives everything the sandbox needs; if so, a line saying what a worker
/// will get (for the pool's report), else what is missing.
pub fn probe(p: &Policy) -> Result<String, String> {
    let abi = landlock::abi()?;
    seccomp::available()?;
    for path in p.read.iter().chain(&p.write) {
        // SAFETY: a valid C string; F_OK only checks existence.
        if unsafe { libc::access(path.as_ptr(), libc::F_OK) } != 0 {
            return Err(format!("sandbox path {:?}: {}", path, io::Error::last_os_error()));
        }
    }
    let list = |v: &[CString]| {
        if v.is_empty() {
            "nothing".to_string()
        } else {
            v.iter().map(|c| c.to_string_lossy().into_owned()).collect::<Vec<_>>().join(", ")
        }
    };
    Ok(format!(
        "compute sandbox: inherited descriptors closed; no_new_privs; Landlock ABI {abi}: reads {}, writes {}{}{}; \
         seccomp: {} refused system calls (new processes, exec, network, signals to other processes, ptrace and \
         process_vm_*, mount and namespaces, bpf, io_uring, userfaultfd, perf_event_open, keyrings, personality, \
         modules, reboot)",
        list(&p.read),
        list(&p.write),
        if abi >= 4 { ", TCP refused" } else { "" },
        if abi >= 6 { ", abstract unix sockets scoped" } else { "" },
        seccomp::rule_count()
    ))
}

/// Where the SIGSYS handler notes a refused call (number + 1).
static REFUSED: AtomicPtr<AtomicU32> = AtomicPtr::new(std::ptr::null_mut());

extern "C" fn on_sigsys(_sig: c_int, info: *mut libc::siginfo_t, _ctx: *mut c_void) {
    // siginfo for SIGSYS: signo, errno, code (and padding), then call_addr, syscall, arch.
    // SAFETY: the kernel passes a valid siginfo; the offset is the Linux ABI's.
    let nr = unsafe { *((info as *const u8).add(16 + std::mem::size_of::<usize>()) as *const c_int) };
    let at = REFUSED.load(SeqCst);
    if !at.is_null() {
        // SAFETY: set once to a word that lives as long as the process (shared memory).
        let _ = unsafe { &*at }.compare_exchange(0, nr as u32 + 1, SeqCst, SeqCst);
    }
    // SA_RESETHAND made SIGSYS fatal again, and SA_NODEFER lets it through at once.
    // SAFETY: signals our own thread.
    unsafe { libc::syscall(libc::SYS_tgkill, libc::getpid(), libc::syscall(libc::SYS_gettid), libc::SIGSYS) };
}

/// The name of the call a worker was refused, from the number its handler noted (+1).
pub fn refused_call(noted: u32) -> String {
    let nr = noted as i64 - 1;
    seccomp::name(nr).map_or_else(|| format!("system call {nr}"), str::to_string)
}

/// Confines the calling process for life. `refused` receives the number (+1) of a call the
/// sandbox refuses, before the worker dies of it. Fails (nothing is half applied that the
/// caller would go on with: the worker must exit) with a message naming what failed.
pub fn confine(p: &Policy, zygote: i32, inherited: &[c_int], refused: &'static AtomicU32) -> Result<(), String> {
    let threads = std::fs::read_dir("/proc/self/task").map(|d| d.count()).unwrap_or(1);
    if threads > 1 {
        // Landlock applies to the calling thread and those it starts later: a thread the
        // initializer left running would stay unconfined.
        return Err(format!(
            "the initializer left {} threads running besides the worker's; Landlock cannot confine threads that \
             already run: start them in tasks instead (they then live in the sandbox)",
            threads - 1
        ));
    }
    for &fd in inherited {
        if fd > 2 {
            // SAFETY: closes a descriptor this process inherited from the host.
            unsafe { libc::close(fd) };
        }
    }
    REFUSED.store(refused as *const AtomicU32 as *mut AtomicU32, SeqCst);
    // SAFETY: a sigaction built from zeroed memory, with our handler.
    let rc = unsafe {
        let mut sa: libc::sigaction = std::mem::zeroed();
        sa.sa_sigaction = on_sigsys as *const () as usize;
        sa.sa_flags = libc::SA_SIGINFO | libc::SA_RESETHAND | libc::SA_NODEFER;
        libc::sigemptyset(&mut sa.sa_mask);
        libc::sigaction(libc::SIGSYS, &sa, std::ptr::null_mut())
    };
    if rc != 0 {
        return Err(format!("sigaction(SIGSYS): {}", io::Error::last_os_error()));
    }
    // SAFETY: plain prctl on ourselves.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(format!("no_new_privs: {}", io::Error::last_os_error()));
    }
    landlock::restrict(&p.read, &p.write)?;
    // SAFETY: getpid has no preconditions.
    seccomp::install(unsafe { libc::getpid() }, zygote)?;
    Ok(())
}

/// The descriptors open in this process (to close those inherited once the initializer ran).
pub fn open_fds() -> Vec<c_int> {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else { return Vec::new() };
    let listed: Vec<c_int> = dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok()).collect();
    // Without the listing's own descriptor, closed by now (the initializer may reuse it).
    // SAFETY: F_GETFD only asks whether the descriptor is open.
    listed.into_iter().filter(|&fd| unsafe { libc::fcntl(fd, libc::F_GETFD) } != -1).collect()
}
