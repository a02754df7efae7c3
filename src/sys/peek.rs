//! Reading memory that may not be there without faulting: another process's
//! (`process_vm_readv`), or our own at an address nothing vouches for; and where memory that
//! is surely mapped lies (the calling thread's stack, the heap below the program break).

use std::io;
use std::os::raw::c_void;

/// Reads up to `buf.len()` bytes at `addr` in process `pid`: how many could be read, fewer
/// where its mapping ends, 0 if none (unmapped or unreadable there). Fails when the kernel
/// will not let us read that process at all (EPERM: Yama's ptrace_scope, another user;
/// ENOSYS or EPERM under a seccomp filter; ESRCH: it has no memory any more).
pub fn read_process(pid: libc::pid_t, addr: usize, buf: &mut [u8]) -> io::Result<usize> {
    if buf.is_empty() {
        return Ok(0);
    }
    let local = libc::iovec { iov_base: buf.as_mut_ptr() as *mut c_void, iov_len: buf.len() };
    let remote = libc::iovec { iov_base: addr as *mut c_void, iov_len: buf.len() };
    // SAFETY: `local` is our own writable buffer of its length; the kernel checks `remote`
    // against the other process's mappings and never faults us.
    let n = unsafe { libc::process_vm_readv(pid, &local, 1, &remote, 1, 0) };
    if n < 0 {
        let e = io::Error::last_os_error();
        return if e.raw_os_error() == Some(libc::EFAULT) { Ok(0) } else { Err(e) };
    }
    Ok(n as usize)
}

/// `read_process` on this process: how many bytes at `addr` are readable here (copied into
/// `buf`). Where `process_vm_readv` is filtered out (seccomp), through `/proc/self/mem`, which
/// a process may always read for itself.
pub fn read_own(addr: usize, buf: &mut [u8]) -> io::Result<usize> {
    match read_process(super::proc::getpid(), addr, buf) {
        Err(e) if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM | libc::EACCES)) => {
            let f = std::fs::File::open("/proc/self/mem")?;
            let mut n = 0;
            while n < buf.len() {
                // SAFETY: `buf[n..]` is our own writable buffer; pread on /proc/self/mem fails
                // with EIO where nothing is mapped instead of faulting.
                let r = unsafe {
                    libc::pread(
                        std::os::fd::AsRawFd::as_raw_fd(&f),
                        buf[n..].as_mut_ptr() as *mut c_void,
                        buf.len() - n,
                        (addr + n) as libc::off_t,
                    )
                };
                if r <= 0 {
                    break;
                }
                n += r as usize;
            }
            Ok(n)
        }
        r => r,
    }
}

/// The calling thread's stack, `[lowest, highest)` address, as far as it may grow (for the
/// main thread, down to its RLIMIT_STACK or the mapping below it). None if unknown.
pub fn thread_stack() -> Option<(usize, usize)> {
    // SAFETY: pthread_getattr_np fills the attribute object, which is destroyed after use;
    // pthread_attr_getstack only writes the two out values.
    unsafe {
        let mut attr: libc::pthread_attr_t = std::mem::zeroed();
        if libc::pthread_getattr_np(libc::pthread_self(), &mut attr) != 0 {
            return None;
        }
        let (mut lo, mut size): (*mut c_void, usize) = (std::ptr::null_mut(), 0);
        let r = libc::pthread_attr_getstack(&attr, &mut lo, &mut size);
        libc::pthread_attr_destroy(&mut attr);
        (r == 0 && size > 0).then(|| (lo as usize, lo as usize + size))
    }
}

/// An address in the calling thread's current stack frame or below it: everything from here
/// to the top of the stack is mapped while the caller runs.
#[inline(never)]
pub fn stack_pointer() -> usize {
    let here = 0u8;
    std::hint::black_box(&here) as *const u8 as usize
}

/// The program break: the heap `malloc` grows with `brk` is mapped up to here.
pub fn program_break() -> usize {
    // SAFETY: sbrk(0) only reads the current break.
    unsafe { libc::sbrk(0) as usize }
}
