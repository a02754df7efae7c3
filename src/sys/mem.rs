//! Shared memory: one memfd per pool, mapped `MAP_SHARED` before any fork so that every process
//! of the pool sees it at the same address. The fd is closed right after mapping: nothing leaks
//! into children, and the memory is released when the last mapping goes.

use std::io;
use std::os::raw::c_int;

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
        Self::shared(name, len, false).map(|(m, _)| m)
    }

    /// A shared mapping and a read-only descriptor of the same memory: a mapping made from it
    /// can never be made writable (the kernel refuses `mprotect` and `mremap` to writable on a
    /// mapping of a file opened read-only). Needs /proc, to reopen the memfd read-only.
    pub fn new_shared_with_reader(name: &str, len: usize) -> io::Result<(Mapping, super::proc::OwnedFd)> {
        let (m, reader) = Self::shared(name, len, true)?;
        Ok((m, reader.expect("asked for")))
    }

    fn shared(name: &str, len: usize, reader: bool) -> io::Result<(Mapping, Option<super::proc::OwnedFd>)> {
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
        let m = Mapping { base: base as *mut u8, len };
        if !reader {
            return Ok((m, None));
        }
        let path = std::ffi::CString::new(format!("/proc/self/fd/{}", fd.0)).expect("no NUL");
        // SAFETY: opens a new, read-only description of our own memfd by its /proc link.
        let ro = unsafe { libc::open(path.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC) };
        if ro < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok((m, Some(super::proc::OwnedFd(ro))))
    }

    /// An anonymous shared mapping: shared with every process forked after it, named by
    /// nothing (no descriptor, no file).
    pub fn new_anon_shared(len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh anonymous mapping; no existing memory is affected.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
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
    // MADV_POPULATE_WRITE / MADV_POPULATE_READ (not in every libc crate version).
    let advice = if write { 23 } else { 22 };
    // SAFETY: advisory call on a range of our own mapping; it only faults pages in.
    unsafe { libc::madvise(start as *mut libc::c_void, end - start, advice) };
}

const PAGE: usize = 4096;

/// Makes `[ptr, ptr+len)` of a shared read-write mapping read as zeros: whole pages are punched
/// out of the file (they come back zeroed, and only if written), the partial pages at the ends
/// are cleared.
pub fn discard(ptr: *mut u8, len: usize) {
    let (start, end) = (ptr as usize, ptr as usize + len);
    let (a, b) = (start.next_multiple_of(PAGE), end & !(PAGE - 1));
    // SAFETY: advisory call on whole pages of the caller's own shared mapping.
    if b > a && unsafe { libc::madvise(a as *mut libc::c_void, b - a, libc::MADV_REMOVE) } == 0 {
        // SAFETY: the partial pages at both ends lie inside the caller's range.
        unsafe {
            std::ptr::write_bytes(ptr, 0, a - start);
            std::ptr::write_bytes(b as *mut u8, 0, end - b);
        }
    } else {
        // SAFETY: the caller's range, writable.
        unsafe { std::ptr::write_bytes(ptr, 0, len) };
    }
}

/// `mremap` as the system call itself: libraries loaded into the host (UCX, under MPICH or Open
/// MPI's UCX transport) hook the libc function and drop its fifth argument, the fixed address.
///
/// # Safety
/// As `mremap(2)`: `old` must be a mapping of ours and `new` (with MREMAP_FIXED) a range we own.
unsafe fn mremap(old: *mut u8, old_len: usize, len: usize, flags: libc::c_int, new: *mut u8) -> io::Result<*mut u8> {
    // SAFETY: forwarded from the caller.
    let p = unsafe { libc::syscall(libc::SYS_mremap, old, old_len, len, flags, new) };
    if p == -1 {
        return Err(io::Error::last_os_error());
    }
    Ok(p as usize as *mut u8)
}

/// Maps the pages of the shared mapping `[base, base+len)` a second time, read-write, at an
/// address of the kernel's choosing.
pub fn alias(base: *mut u8, len: usize) -> io::Result<*mut u8> {
    // SAFETY: mremap with old_size 0 duplicates a shared mapping; `base` is one of ours.
    unsafe { mremap(base, 0, len, libc::MREMAP_MAYMOVE, std::ptr::null_mut()) }
}

/// Replaces `[base, base+len)` of this process with a read-only shared mapping of the file
/// `reader` (opened read-only) from its start: same pages, never writable again here.
pub fn remap_read_only(base: *mut u8, len: usize, reader: c_int) -> io::Result<()> {
    // SAFETY: MAP_FIXED over a range the caller owns (its own mapping of the same file).
    let p = unsafe {
        libc::mmap(base as *mut libc::c_void, len, libc::PROT_READ, libc::MAP_SHARED | libc::MAP_FIXED, reader, 0)
    };
    if p == libc::MAP_FAILED {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Unmaps `[base, base+len)`: this process loses it for good (a mapping of a memfd whose
/// descriptor it does not hold cannot be made again).
pub fn unmap(base: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: the caller hands over a range of its own that nothing uses any more.
    if unsafe { libc::munmap(base as *mut libc::c_void, len) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes `[ptr, ptr+len)` read-only in this process.
pub fn protect_read_only(ptr: *mut u8, len: usize) -> io::Result<()> {
    // SAFETY: a range of our own mapping; only its protection changes.
    if unsafe { libc::mprotect(ptr as *mut libc::c_void, len, libc::PROT_READ) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn round_up(len: usize) -> usize {
    len.max(1).next_multiple_of(PAGE)
}

/// A private area of address space with an inaccessible guard page on each side: a task that
/// runs past either end of what it was given faults at once instead of writing into memory
/// that is not its own.
pub struct Guarded {
    /// Start of the reservation (the first guard page), and its usable length between guards.
    start: *mut u8,
    usable: usize,
}

impl Default for Guarded {
    fn default() -> Guarded {
        Guarded { start: std::ptr::null_mut(), usable: 0 }
    }
}

impl Guarded {
    /// Reserves (inaccessible) room for `len` bytes between guards, reusing the current
    /// reservation if it is big enough. Returns the start of the usable part.
    fn reserve(&mut self, len: usize) -> io::Result<*mut u8> {
        let need = round_up(len);
        if need > self.usable {
            self.release();
            let total = need + 2 * PAGE;
            // SAFETY: a fresh private reservation; nothing else is mapped there.
            let p = unsafe {
                libc::mmap(
                    std::ptr::null_mut(),
                    total,
                    libc::PROT_NONE,
                    libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                    -1,
                    0,
                )
            };
            if p == libc::MAP_FAILED {
                return Err(io::Error::last_os_error());
            }
            self.start = p as *mut u8;
            self.usable = need;
        }
        // SAFETY: one page into our reservation.
        Ok(unsafe { self.start.add(PAGE) })
    }

    /// Private read-write memory for `len` bytes, page-aligned, followed by a guard page at the
    /// next page boundary. Contents are whatever was written last.
    pub fn area(&mut self, len: usize) -> io::Result<*mut u8> {
        let fresh = round_up(len) > self.usable;
        let p = self.reserve(len)?;
        if fresh {
            // SAFETY: the usable part of our own reservation.
            if unsafe { libc::mprotect(p as *mut libc::c_void, self.usable, libc::PROT_READ | libc::PROT_WRITE) } != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(p)
    }

    /// Maps the shared pages `[src, src+len)` (page-aligned, `len` a multiple of the page size)
    /// read-write between the guards, and returns where. `unwindow` takes them out again.
    /// A process forked meanwhile does not get the window: a task's child writing there after
    /// the task ended would change whatever the pages hold by then (it faults instead).
    pub fn window(&mut self, src: *mut u8, len: usize) -> io::Result<*mut u8> {
        let at = self.reserve(len)?;
        // SAFETY: duplicates pages of our shared mapping over our own reservation (MAP_FIXED
        // semantics only replace the reservation's inaccessible pages).
        unsafe { mremap(src, 0, len, libc::MREMAP_MAYMOVE | libc::MREMAP_FIXED, at) }?;
        // SAFETY: advice on the window just mapped, which is ours.
        if unsafe { libc::madvise(at as *mut libc::c_void, len, libc::MADV_DONTFORK) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(at)
    }

    /// Puts the inaccessible reservation back where a window was.
    pub fn unwindow(&mut self) {
        if self.usable == 0 {
            return;
        }
        // SAFETY: replaces our own window with fresh inaccessible pages.
        unsafe {
            libc::mmap(
                self.start.add(PAGE) as *mut libc::c_void,
                self.usable,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE | libc::MAP_FIXED,
                -1,
                0,
            )
        };
    }

    fn release(&mut self) {
        if !self.start.is_null() {
            // SAFETY: our own reservation, not used any more.
            unsafe { libc::munmap(self.start as *mut libc::c_void, self.usable + 2 * PAGE) };
            self.start = std::ptr::null_mut();
            self.usable = 0;
        }
    }
}

impl Drop for Guarded {
    fn drop(&mut self) {
        self.release();
    }
}
