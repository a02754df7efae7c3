//! Landlock (Linux 5.13+): the filesystem a worker may use, and, from ABI 4 and 6, no TCP and
//! no abstract unix socket outside its domain (signals are seccomp's: the worker signals the
//! zygote, which Landlock's signal scope would refuse). Raw syscalls: the three calls and
//! their structs are small and stable, and best effort across ABIs is a mask per version.

use std::ffi::CString;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

#[repr(C)]
struct RulesetAttr {
    handled_access_fs: u64,
    handled_access_net: u64,
    scoped: u64,
}

#[repr(C, packed)]
struct PathBeneathAttr {
    allowed_access: u64,
    parent_fd: i32,
}

const CREATE_RULESET_VERSION: u32 = 1;
const RULE_PATH_BENEATH: u32 = 1;

const EXECUTE: u64 = 1 << 0;
const WRITE_FILE: u64 = 1 << 1;
const READ_FILE: u64 = 1 << 2;
const READ_DIR: u64 = 1 << 3;
const REMOVE_DIR: u64 = 1 << 4;
const REMOVE_FILE: u64 = 1 << 5;
const MAKE_CHAR: u64 = 1 << 6;
const MAKE_DIR: u64 = 1 << 7;
const MAKE_REG: u64 = 1 << 8;
const MAKE_SOCK: u64 = 1 << 9;
const MAKE_FIFO: u64 = 1 << 10;
const MAKE_BLOCK: u64 = 1 << 11;
const MAKE_SYM: u64 = 1 << 12;
const REFER: u64 = 1 << 13; // ABI 2
const TRUNCATE: u64 = 1 << 14; // ABI 3
const IOCTL_DEV: u64 = 1 << 15; // ABI 5

const NET_BIND_TCP: u64 = 1 << 0; // ABI 4
const NET_CONNECT_TCP: u64 = 1 << 1;

const SCOPE_ABSTRACT_UNIX_SOCKET: u64 = 1 << 0; // ABI 6

/// Every filesystem right Landlock knows at `abi`.
fn fs_rights(abi: i64) -> u64 {
    let mut r = (1 << 13) - 1;
    if abi >= 2 {
        r |= REFER;
    }
    if abi >= 3 {
        r |= TRUNCATE;
    }
    if abi >= 5 {
        r |= IOCTL_DEV;
    }
    r
}

/// The Landlock ABI the kernel offers, or why there is none.
pub fn abi() -> Result<i64, String> {
    // SAFETY: the version query takes no attribute (NULL, 0).
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<RulesetAttr>(),
            0usize,
            CREATE_RULESET_VERSION,
        )
    };
    if v >= 1 {
        return Ok(v);
    }
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) => "Landlock: this kernel has no Landlock (Linux 5.13 or later, built with it)".into(),
        Some(libc::EOPNOTSUPP) => "Landlock: disabled at boot (add landlock to the kernel's lsm= list)".into(),
        _ => format!("Landlock: {}", super::describe(&e)),
    })
}

/// A ruleset allowing reading `read` and reading and writing `write`, recursively (every
/// other filesystem access refused); with ABI 4, no TCP bind or connect; with ABI 6, no
/// abstract unix socket outside the domain. Made once, in the host: the paths are resolved
/// now, so a task that later renames or replaces a listed path changes nothing for the
/// workers that come after it. A path that cannot be opened is an error naming it.
pub fn ruleset(read: &[CString], write: &[CString]) -> Result<OwnedFd, String> {
    let abi = abi()?;
    let all = fs_rights(abi);
    let attr = RulesetAttr {
        handled_access_fs: all,
        handled_access_net: if abi >= 4 { NET_BIND_TCP | NET_CONNECT_TCP } else { 0 },
        scoped: if abi >= 6 { SCOPE_ABSTRACT_UNIX_SOCKET } else { 0 },
    };
    // Older kernels reject the struct's later fields: pass only what they know.
    let size = match abi {
        1..=3 => std::mem::size_of::<u64>(),
        4 | 5 => 2 * std::mem::size_of::<u64>(),
        _ => std::mem::size_of::<RulesetAttr>(),
    };
    // SAFETY: `attr` is a valid ruleset_attr of at least `size` bytes.
    let fd = unsafe { libc::syscall(libc::SYS_landlock_create_ruleset, &attr as *const RulesetAttr, size, 0u32) };
    if fd < 0 {
        return Err(format!("Landlock: create_ruleset: {}", super::last_error()));
    }
    // SAFETY: a new descriptor (close-on-exec) that we own.
    let ruleset = unsafe { OwnedFd::from_raw_fd(fd as i32) };
    let read_rights = READ_FILE | READ_DIR;
    let write_rights = read_rights
        | WRITE_FILE
        | REMOVE_DIR
        | REMOVE_FILE
        | MAKE_DIR
        | MAKE_REG
        | MAKE_SYM
        | MAKE_SOCK
        | MAKE_FIFO
        | (all & (REFER | TRUNCATE));
    for (paths, rights) in [(read, read_rights), (write, write_rights)] {
        for p in paths {
            add_path(&ruleset, p, rights)?;
        }
    }
    let _ = (EXECUTE, MAKE_CHAR, MAKE_BLOCK); // handled (refused everywhere), never granted
    Ok(ruleset)
}

/// Confines the calling thread and those it starts later with `ruleset` (`no_new_privs` must
/// be set).
pub fn restrict_self(ruleset: i32) -> Result<(), String> {
    // SAFETY: restricts the calling thread with a ruleset descriptor the caller holds.
    if unsafe { libc::syscall(libc::SYS_landlock_restrict_self, ruleset, 0u32) } != 0 {
        return Err(format!("Landlock: restrict_self: {}", super::last_error()));
    }
    Ok(())
}

fn add_path(ruleset: &OwnedFd, path: &CString, rights: u64) -> Result<(), String> {
    // SAFETY: a valid C string; O_PATH opens without reading.
    let fd = unsafe { libc::open(path.as_ptr(), libc::O_PATH | libc::O_CLOEXEC) };
    if fd < 0 {
        return Err(format!("sandbox path {:?}: {}", path, super::last_error()));
    }
    // SAFETY: a new descriptor that we own.
    let fd = unsafe { OwnedFd::from_raw_fd(fd) };
    // A file takes only file rights (directory rights on it are EINVAL).
    // SAFETY: fstat into a zeroed stat.
    let is_dir = unsafe {
        let mut st: libc::stat = std::mem::zeroed();
        libc::fstat(fd.as_raw_fd(), &mut st) == 0 && st.st_mode & libc::S_IFMT == libc::S_IFDIR
    };
    let rights = if is_dir { rights } else { rights & (READ_FILE | WRITE_FILE | TRUNCATE | EXECUTE | IOCTL_DEV) };
    let attr = PathBeneathAttr { allowed_access: rights, parent_fd: fd.as_raw_fd() };
    // SAFETY: a valid path_beneath attribute and our ruleset.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_landlock_add_rule,
            ruleset.as_raw_fd(),
            RULE_PATH_BENEATH,
            &attr as *const PathBeneathAttr,
            0u32,
        )
    };
    if rc != 0 {
        return Err(format!("sandbox path {:?}: Landlock add_rule: {}", path, super::last_error()));
    }
    Ok(())
}
