//! Loaded objects (the executable and its shared libraries), through `dl_iterate_phdr`: their
//! executable ranges and an identity (GNU build-id, else the file's device, inode and mtime),
//! so the pool can tell whether a function is still the code its workers have.

use std::ffi::CStr;
use std::os::raw::{c_int, c_void};

/// Held around every call into the loader, and by a forking thread across fork() (proc.rs).
static LOCK: std::sync::Mutex<()> = std::sync::Mutex::new(());

pub(super) fn lock() -> std::sync::MutexGuard<'static, ()> {
    LOCK.lock().unwrap_or_else(|e| e.into_inner())
}

/// One loaded object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Object {
    /// Load bias (`dlpi_addr`).
    pub base: usize,
    /// Executable segments, as address ranges.
    pub code: Vec<(usize, usize)>,
    /// Loaded segments that are not writable (code, constants), as address ranges.
    pub readonly: Vec<(usize, usize)>,
    /// Writable loaded segments (static data: `.data`, `.bss`), as address ranges.
    pub data: Vec<(usize, usize)>,
    /// The same on every machine that runs the same build: the build-id, else the file's name
    /// and size (the device, inode and time of `id` differ from node to node).
    pub portable: Vec<u8>,
    /// The path it was loaded from ("" for the main program).
    pub name: String,
    /// Build-id, or a description of the file when it has none.
    pub id: Vec<u8>,
}

impl Object {
    pub fn contains(&self, addr: usize) -> bool {
        self.code.iter().any(|&(lo, hi)| (lo..hi).contains(&addr))
    }
}

/// glibc's `struct dl_phdr_info`, with the load and unload counters the libc crate leaves out.
#[repr(C)]
struct PhdrInfo {
    addr: usize,
    name: *const libc::c_char,
    phdr: *const libc::Elf64_Phdr,
    phnum: u16,
    adds: u64,
    subs: u64,
}

/// (objects loaded, objects unloaded) since the process started: unchanged means the set of
/// loaded objects is the same.
pub fn generation() -> (u64, u64) {
    unsafe extern "C" fn first(info: *mut libc::dl_phdr_info, size: usize, data: *mut c_void) -> c_int {
        if size >= std::mem::size_of::<PhdrInfo>() {
            // SAFETY: glibc passes a struct at least `size` bytes long; ours is a prefix of it.
            let i = unsafe { &*(info as *const PhdrInfo) };
            // SAFETY: `data` is the `(u64, u64)` passed below.
            unsafe { *(data as *mut (u64, u64)) = (i.adds, i.subs) };
        }
        1 // the counters are the same in every entry: stop at the first
    }
    let mut g = (0u64, 0u64);
    let _one = lock();
    // SAFETY: the callback only reads the entry it is given and writes `g`.
    unsafe { libc::dl_iterate_phdr(Some(first), &mut g as *mut _ as *mut c_void) };
    g
}

/// Every loaded object.
pub fn objects() -> Vec<Object> {
    unsafe extern "C" fn each(info: *mut libc::dl_phdr_info, _: usize, data: *mut c_void) -> c_int {
        // SAFETY: glibc passes a valid entry; `data` is the Vec passed below.
        let (info, out) = unsafe { (&*info, &mut *(data as *mut Vec<Object>)) };
        out.push(object(info));
        0
    }
    let mut v: Vec<Object> = Vec::new();
    let _one = lock();
    // SAFETY: the callback reads the entries it is given and pushes to `v`.
    unsafe { libc::dl_iterate_phdr(Some(each), &mut v as *mut _ as *mut c_void) };
    v
}

fn object(info: &libc::dl_phdr_info) -> Object {
    let base = info.dlpi_addr as usize;
    // SAFETY: dlpi_phdr points to dlpi_phnum program headers of a loaded object.
    let phdrs = unsafe { std::slice::from_raw_parts(info.dlpi_phdr, info.dlpi_phnum as usize) };
    let range = |p: &libc::Elf64_Phdr| (base + p.p_vaddr as usize, base + (p.p_vaddr + p.p_memsz) as usize);
    let loads = phdrs.iter().filter(|p| p.p_type == libc::PT_LOAD);
    let code = loads.clone().filter(|p| p.p_flags & libc::PF_X != 0).map(range).collect();
    let readonly = loads.clone().filter(|p| p.p_flags & libc::PF_W == 0).map(range).collect();
    let data = loads.filter(|p| p.p_flags & libc::PF_W != 0).map(range).collect();
    let bid = phdrs
        .iter()
        .filter(|p| p.p_type == libc::PT_NOTE)
        .find_map(|p| build_id(base + p.p_vaddr as usize, p.p_memsz as usize));
    let name = c_name(info.dlpi_name).to_string();
    let portable = bid.clone().unwrap_or_else(|| {
        let path = if name.is_empty() { "/proc/self/exe" } else { name.as_str() };
        let size = std::fs::metadata(path).map(|m| m.len()).unwrap_or(0);
        let base_name =
            std::path::Path::new(&name).file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
        format!("{base_name}|{size}").into_bytes()
    });
    let id = bid.unwrap_or_else(|| file_id(info.dlpi_name));
    Object { base, code, readonly, data, id, portable, name }
}

fn c_name<'a>(name: *const libc::c_char) -> &'a str {
    // SAFETY: dlpi_name is a NUL-terminated string ("" for the main program) that lives as long
    // as the object stays loaded; callers copy it at once.
    if name.is_null() {
        ""
    } else {
        unsafe { CStr::from_ptr(name) }.to_str().unwrap_or("")
    }
}

/// An address as another process running the same objects can find it: the identity of the
/// object that holds it and the offset from that object's load address (ASLR moves objects,
/// never what is inside them).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Ref {
    pub id: Vec<u8>,
    pub offset: u64,
}

/// The reference of `addr`: in an object's code if `code`, else in its read-only data
/// (constants: the same bytes in every process that runs the build; writable static data is
/// not, since each process may have changed its own copy). None if no loaded object holds it
/// there (heap, stack, anonymous memory, writable data).
pub fn reference(addr: usize, code: bool) -> Option<Ref> {
    objects().into_iter().find_map(|o| {
        let ranges = if code { &o.code } else { &o.readonly };
        ranges
            .iter()
            .any(|&(lo, hi)| (lo..hi).contains(&addr))
            .then(|| Ref { offset: (addr - o.base) as u64, id: o.portable })
    })
}

/// The address a reference names in this process, if an object of that build is loaded and
/// holds that offset (in its code if `code`, else in its read-only data).
pub fn resolve(r: &Ref, code: bool) -> Option<usize> {
    objects().into_iter().find(|o| o.portable == r.id).and_then(|o| {
        let addr = o.base.checked_add(r.offset as usize)?;
        let ranges = if code { &o.code } else { &o.readonly };
        ranges.iter().any(|&(lo, hi)| (lo..hi).contains(&addr)).then_some(addr)
    })
}

/// How many objects were loaded when this library was: the program and the libraries it was
/// linked with (or, for a library loaded later, what was there then), not what MPI or anyone
/// else loads on its own afterwards.
static AT_START: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);

extern "C" fn note_start() {
    AT_START.store(objects().len(), std::sync::atomic::Ordering::Relaxed);
}

#[used]
#[link_section = ".init_array"]
static NOTE_START: extern "C" fn() = note_start;

/// A hash of the identities of the objects loaded at start (the kernel's vDSO left out: it
/// differs between kernels, never the program), in load order: equal in two processes when
/// they run the same program built the same way.
pub fn program_hash() -> u64 {
    let n = AT_START.load(std::sync::atomic::Ordering::Relaxed);
    let mut h: u64 = 0xcbf2_9ce4_8422_2325; // FNV-1a
    for o in objects().into_iter().take(n).filter(|o| !o.name.contains("linux-vdso") && !o.name.contains("linux-gate"))
    {
        for &b in o.portable.iter().chain(&[0xff]) {
            h = (h ^ b as u64).wrapping_mul(0x100_0000_01b3);
        }
    }
    h
}

/// The GNU build-id in a loaded PT_NOTE segment, if there is one.
fn build_id(addr: usize, len: usize) -> Option<Vec<u8>> {
    // SAFETY: the note segment is mapped for `len` bytes (it is part of a loaded object).
    build_id_in(unsafe { std::slice::from_raw_parts(addr as *const u8, len) })
}

/// The GNU build-id in the notes `notes` (a PT_NOTE segment's bytes), if there is one.
pub(super) fn build_id_in(notes: &[u8]) -> Option<Vec<u8>> {
    const NT_GNU_BUILD_ID: u32 = 3;
    let align4 = |x: usize| (x + 3) & !3;
    let word = |at: usize| u32::from_ne_bytes(notes[at..at + 4].try_into().expect("4 bytes"));
    let mut off = 0;
    while off + 12 <= notes.len() {
        let (namesz, descsz, kind) = (word(off) as usize, word(off + 4) as usize, word(off + 8));
        let name = off + 12;
        let desc = name.checked_add(align4(namesz))?;
        if desc.checked_add(descsz)? > notes.len() {
            return None;
        }
        if kind == NT_GNU_BUILD_ID && &notes[name..name + namesz] == b"GNU\0" {
            return Some(notes[desc..desc + descsz].to_vec());
        }
        off = desc + align4(descsz);
    }
    None
}

/// For objects without a build-id: the file's name, device, inode and modification time.
fn file_id(name: *const libc::c_char) -> Vec<u8> {
    file_id_of(c_name(name))
}

pub(super) fn file_id_of(name: &str) -> Vec<u8> {
    let path = if name.is_empty() { "/proc/self/exe" } else { name };
    let meta = std::fs::metadata(path).ok();
    use std::os::unix::fs::MetadataExt;
    format!("{name}|{:?}", meta.map(|m| (m.dev(), m.ino(), m.mtime(), m.mtime_nsec()))).into_bytes()
}
