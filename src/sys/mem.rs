//! Shared memory: one memfd per pool, mapped `MAP_SHARED` before any fork so that every process
//! of the pool sees it at the same address. The fd is closed right after mapping: nothing leaks
//! into children, and the memory is released when the last mapping goes.

use std::io;

/// A shared, sparse mapping. Pages cost memory only once touched.
pub struct Mapping {
    base: *mut u8,
    len: usize,
}

// SAFETY: the mapping is plain memory; all concurrent access to it goes through atomics or
// through regions handed out to one party at a time by the pool's own protocol.
unsafe impl Send for Mapping {}
// SAFETY: see above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub fn new_shared(name: &str, len: usize) -> io::Result<Mapping> {
        let cname = std::ffi::CString::new(name).expect("no NUL in name");
        // SAFETY: plain syscall with a valid C string.
        let fd = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let fd = super::proc::OwnedFd(fd);
        // SAFETY: fd is ours; ftruncate on a memfd makes a sparse file.
        if unsafe { libc::ftruncate(fd.0, len as libc::off_t) } != 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a fresh shared mapping of our own memfd; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_NORESERVE,
                fd.0,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Mapping { base: base as *mut u8, len })
    }

    pub fn base(&self) -> *mut u8 {
        self.base
    }

    pub fn len(&self) -> usize {
        self.len
    }

    /// Gives the pages of `[off, off+len)` back to the system (the range reads as zeros after).
    pub fn release(&self, off: usize, len: usize) {
        debug_assert!(off + len <= self.len);
        // SAFETY: the range is inside our mapping and no party uses it (the heap freed it).
        unsafe {
            libc::madvise(self.base.add(off) as *mut libc::c_void, len, libc::MADV_REMOVE);
        }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmapping our own mapping; no references into it outlive `self`.
        unsafe {
            libc::munmap(self.base as *mut libc::c_void, self.len);
        }
    }
}

/// Unmaps a range in a freshly forked child (another pool's memory it must not keep alive).
pub fn unmap_in_child(base: usize, len: usize) {
    // SAFETY: only called in a forked child on a range it will never touch.
    unsafe {
        libc::munmap(base as *mut libc::c_void, len);
    }
}

/// Faults in the pages of `[ptr, ptr+len)` in one system call (`MADV_POPULATE_*`, Linux 5.14),
/// which is several times faster than taking one page fault at a time during a big copy.
/// Small ranges and older kernels are left to ordinary faults.
pub fn populate(ptr: *const u8, len: usize, write: bool) {
    const MIN: usize = 256 << 10;
    if len < MIN {
        return;
    }
    let start = (ptr as usize) & !4095;
    let end = ptr as usize + len;
    let advice = if write { 23 } else { 22 }; // MADV_POPULATE_WRITE / MADV_POPULATE_READ
                                              // SAFETY: advisory call on a range of our own mapping; it only faults pages in.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
}
