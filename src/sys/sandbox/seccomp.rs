//! The worker's seccomp-bpf filter: a deny list of what a computing task never needs (new
//! processes, exec, network, other processes, kernel facilities), with argument checks where
//! a call is fine on the worker itself (threads, signals to itself). Written by hand: the
//! program is one jump per rule, and the checks need the worker's own pid at install time.

use std::io;

/// What a refused call does: SIGSYS (the handler in `mod.rs` notes the call, then the worker
/// dies of it), or an errno the caller's library falls back on.
#[derive(Clone, Copy)]
enum Act {
    Trap,
    Errno(u32),
}

/// An argument condition under which the call is allowed (else `Trap`).
enum Unless {
    /// Always refused.
    Never,
    /// Allowed when one of these conjunctions holds: (argument, value of its low 32 bits).
    AnyOf(Vec<Vec<(u8, u32)>>),
    /// Allowed when argument `arg` has every bit of `mask` (low 32 bits).
    ArgHas(u8, u32),
    /// Allowed unless the low 32 bits of argument `arg` equal `v` and argument `arg2` is not
    /// NULL (64 bits).
    ArgIsAndSet(u8, u32, u8),
}

struct Rule {
    nr: i64,
    act: Act,
    unless: Unless,
}

#[cfg(target_arch = "x86_64")]
const AUDIT_ARCH: u32 = 0xC000_003E;
#[cfg(target_arch = "aarch64")]
const AUDIT_ARCH: u32 = 0xC000_00B7;

// Classic BPF opcodes.
const LD_W_ABS: u16 = 0x20;
const JEQ_K: u16 = 0x15;
const JSET_K: u16 = 0x45;
const JGE_K: u16 = 0x35;
const RET_K: u16 = 0x06;

// struct seccomp_data: nr, arch, instruction_pointer, args[6].
const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
fn arg_lo(i: u8) -> u32 {
    16 + 8 * i as u32
}
fn arg_hi(i: u8) -> u32 {
    arg_lo(i) + 4
}

fn stmt(code: u16, k: u32) -> libc::sock_filter {
    libc::sock_filter { code, jt: 0, jf: 0, k }
}
fn jump(code: u16, k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter { code, jt, jf, k }
}

/// The rules for a worker whose pid is `me` and whose parent (the zygote) is `zygote`.
fn rules(me: i32, zygote: i32) -> Vec<Rule> {
    use libc::*;
    let (me, zygote) = (me as u32, zygote as u32);
    let own = |arg| Unless::AnyOf(vec![vec![(arg, me)]]);
    let trap = |nr| Rule { nr, act: Act::Trap, unless: Unless::Never };
    let mut v = vec![
        // New processes (threads stay allowed: clone with CLONE_THREAD). clone3's flags sit
        // behind a pointer the filter cannot read: ENOSYS makes libc fall back on clone.
        Rule { nr: SYS_clone, act: Act::Trap, unless: Unless::ArgHas(0, CLONE_THREAD as u32) },
        Rule { nr: SYS_clone3, act: Act::Errno(ENOSYS as u32), unless: Unless::Never },
        trap(SYS_execve),
        trap(SYS_execveat),
        // Network.
        trap(SYS_socket),
        trap(SYS_connect),
        trap(SYS_bind),
        trap(SYS_listen),
        trap(SYS_accept),
        trap(SYS_accept4),
        // Other processes: signals only to itself (its group is itself alone), and the one
        // the worker sends the zygote when a task ends and the host asked for an event fd.
        Rule {
            nr: SYS_kill,
            act: Act::Trap,
            unless: Unless::AnyOf(vec![vec![(0, me)], vec![(0, 0)], vec![(0, zygote), (1, SIGUSR1 as u32)]]),
        },
        Rule { nr: SYS_tgkill, act: Act::Trap, unless: own(0) },
        Rule { nr: SYS_rt_sigqueueinfo, act: Act::Trap, unless: own(0) },
        Rule { nr: SYS_rt_tgsigqueueinfo, act: Act::Trap, unless: own(0) },
        trap(SYS_tkill),
        trap(SYS_pidfd_open),
        trap(SYS_pidfd_send_signal),
        trap(SYS_pidfd_getfd),
        trap(SYS_ptrace),
        trap(SYS_process_vm_readv),
        trap(SYS_process_vm_writev),
        trap(SYS_process_madvise),
        trap(SYS_kcmp),
        // The filesystem's and kernel's machinery.
        trap(SYS_mount),
        trap(SYS_umount2),
        trap(SYS_pivot_root),
        trap(SYS_chroot),
        trap(SYS_unshare),
        trap(SYS_setns),
        trap(SYS_open_tree),
        trap(SYS_move_mount),
        trap(SYS_fsopen),
        trap(SYS_fsconfig),
        trap(SYS_fsmount),
        trap(SYS_fspick),
        trap(SYS_mount_setattr),
        trap(SYS_open_by_handle_at),
        trap(SYS_name_to_handle_at),
        trap(SYS_bpf),
        trap(SYS_io_uring_setup),
        trap(SYS_io_uring_enter),
        trap(SYS_io_uring_register),
        trap(SYS_userfaultfd),
        trap(SYS_perf_event_open),
        trap(SYS_add_key),
        trap(SYS_request_key),
        trap(SYS_keyctl),
        trap(SYS_personality),
        trap(SYS_kexec_load),
        trap(SYS_kexec_file_load),
        trap(SYS_init_module),
        trap(SYS_finit_module),
        trap(SYS_delete_module),
        trap(SYS_reboot),
        trap(SYS_swapon),
        trap(SYS_swapoff),
        trap(SYS_acct),
        trap(SYS_quotactl),
        trap(SYS_syslog),
        trap(SYS_vhangup),
        // The SIGSYS handler that names refused calls stays ours.
        Rule { nr: SYS_rt_sigaction, act: Act::Trap, unless: Unless::ArgIsAndSet(0, SIGSYS as u32, 1) },
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([trap(SYS_fork), trap(SYS_vfork), trap(SYS_iopl), trap(SYS_ioperm), trap(SYS_uselib)]);
    v
}

/// How many calls the filter refuses (or checks), for the pool's report.
pub fn rule_count() -> usize {
    rules(0, 0).len()
}

/// The name of a refused system call, for messages.
pub fn name(nr: i64) -> Option<&'static str> {
    use libc::*;
    let names: &[(i64, &str)] = &[
        (SYS_clone, "clone() of a new process"),
        (SYS_execve, "execve()"),
        (SYS_execveat, "execveat()"),
        (SYS_socket, "socket()"),
        (SYS_connect, "connect()"),
        (SYS_bind, "bind()"),
        (SYS_listen, "listen()"),
        (SYS_accept, "accept()"),
        (SYS_accept4, "accept4()"),
        (SYS_kill, "kill() of another process"),
        (SYS_tgkill, "tgkill() of another process"),
        (SYS_rt_sigqueueinfo, "rt_sigqueueinfo() to another process"),
        (SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo() to another process"),
        (SYS_tkill, "tkill()"),
        (SYS_pidfd_open, "pidfd_open()"),
        (SYS_pidfd_send_signal, "pidfd_send_signal()"),
        (SYS_pidfd_getfd, "pidfd_getfd()"),
        (SYS_ptrace, "ptrace()"),
        (SYS_process_vm_readv, "process_vm_readv()"),
        (SYS_process_vm_writev, "process_vm_writev()"),
        (SYS_process_madvise, "process_madvise()"),
        (SYS_kcmp, "kcmp()"),
        (SYS_mount, "mount()"),
        (SYS_umount2, "umount2()"),
        (SYS_pivot_root, "pivot_root()"),
        (SYS_chroot, "chroot()"),
        (SYS_unshare, "unshare()"),
        (SYS_setns, "setns()"),
        (SYS_open_tree, "open_tree()"),
        (SYS_move_mount, "move_mount()"),
        (SYS_fsopen, "fsopen()"),
        (SYS_fsconfig, "fsconfig()"),
        (SYS_fsmount, "fsmount()"),
        (SYS_fspick, "fspick()"),
        (SYS_mount_setattr, "mount_setattr()"),
        (SYS_open_by_handle_at, "open_by_handle_at()"),
        (SYS_name_to_handle_at, "name_to_handle_at()"),
        (SYS_bpf, "bpf()"),
        (SYS_io_uring_setup, "io_uring_setup()"),
        (SYS_io_uring_enter, "io_uring_enter()"),
        (SYS_io_uring_register, "io_uring_register()"),
        (SYS_userfaultfd, "userfaultfd()"),
        (SYS_perf_event_open, "perf_event_open()"),
        (SYS_add_key, "add_key()"),
        (SYS_request_key, "request_key()"),
        (SYS_keyctl, "keyctl()"),
        (SYS_personality, "personality()"),
        (SYS_kexec_load, "kexec_load()"),
        (SYS_kexec_file_load, "kexec_file_load()"),
        (SYS_init_module, "init_module()"),
        (SYS_finit_module, "finit_module()"),
        (SYS_delete_module, "delete_module()"),
        (SYS_reboot, "reboot()"),
        (SYS_swapon, "swapon()"),
        (SYS_swapoff, "swapoff()"),
        (SYS_acct, "acct()"),
        (SYS_quotactl, "quotactl()"),
        (SYS_syslog, "syslog()"),
        (SYS_vhangup, "vhangup()"),
        (SYS_rt_sigaction, "rt_sigaction() of SIGSYS"),
        #[cfg(target_arch = "x86_64")]
        (SYS_fork, "fork()"),
        #[cfg(target_arch = "x86_64")]
        (SYS_vfork, "vfork()"),
        #[cfg(target_arch = "x86_64")]
        (SYS_iopl, "iopl()"),
        #[cfg(target_arch = "x86_64")]
        (SYS_ioperm, "ioperm()"),
        #[cfg(target_arch = "x86_64")]
        (SYS_uselib, "uselib()"),
    ];
    names.iter().find(|(n, _)| *n == nr).map(|(_, s)| *s)
}

/// Compiles the filter for a worker (pid `me`, parent `zygote`). Layout: check the architecture (a
/// foreign one, or x32 numbers, kill the process), load the number, then per rule a jump to its
/// block; no rule matched: allow.
fn program(me: i32, zygote: i32) -> Vec<libc::sock_filter> {
    let allow = libc::SECCOMP_RET_ALLOW;
    let trap = libc::SECCOMP_RET_TRAP;
    let ret = |a: Act| match a {
        Act::Trap => trap,
        Act::Errno(e) => libc::SECCOMP_RET_ERRNO | (e & 0xffff),
    };
    let mut p = vec![
        stmt(LD_W_ABS, OFF_ARCH),
        jump(JEQ_K, AUDIT_ARCH, 1, 0),
        stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS),
        stmt(LD_W_ABS, OFF_NR),
    ];
    #[cfg(target_arch = "x86_64")]
    p.extend([jump(JGE_K, 0x4000_0000, 0, 1), stmt(RET_K, libc::SECCOMP_RET_KILL_PROCESS)]);
    for r in rules(me, zygote) {
        // Each block ends in a return, and reloads nothing: a miss falls to the next rule with
        // the number still in A.
        let block: Vec<libc::sock_filter> = match r.unless {
            Unless::Never => vec![stmt(RET_K, ret(r.act))],
            Unless::AnyOf(conjs) => {
                // Per conjunction: a load and a test per term (a failed test skips to the next
                // conjunction), then allow. None held: refuse.
                let mut b = Vec::new();
                for c in conjs {
                    for (j, &(a, v)) in c.iter().enumerate() {
                        let rest = 2 * (c.len() - j - 1) + 1;
                        b.push(stmt(LD_W_ABS, arg_lo(a)));
                        b.push(jump(JEQ_K, v, 0, rest as u8));
                    }
                    b.push(stmt(RET_K, allow));
                }
                b.push(stmt(RET_K, ret(r.act)));
                b
            }
            Unless::ArgHas(a, mask) => vec![
                stmt(LD_W_ABS, arg_lo(a)),
                // JSET tests any bit: one bit per mask here.
                jump(JSET_K, mask, 1, 0),
                stmt(RET_K, ret(r.act)),
                stmt(RET_K, allow),
            ],
            Unless::ArgIsAndSet(a, v, b) => vec![
                stmt(LD_W_ABS, arg_lo(a)),
                jump(JEQ_K, v, 0, 5), // another value: allow
                stmt(LD_W_ABS, arg_lo(b)),
                jump(JEQ_K, 0, 0, 2), // low word set: refuse
                stmt(LD_W_ABS, arg_hi(b)),
                jump(JEQ_K, 0, 1, 0), // both words 0 (NULL): allow
                stmt(RET_K, ret(r.act)),
                stmt(RET_K, allow),
            ],
        };
        let nr = u32::try_from(r.nr).expect("syscall numbers are small");
        p.push(jump(JEQ_K, nr, 0, block.len() as u8));
        p.extend(block);
    }
    p.push(stmt(RET_K, allow));
    p
}

/// Installs the filter on every thread of the process (`no_new_privs` must be set). Returns
/// the number of rules.
pub fn install(me: i32, zygote: i32) -> Result<usize, String> {
    let prog = program(me, zygote);
    let fprog = libc::sock_fprog { len: prog.len() as u16, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: a valid filter program that outlives the call (the kernel copies it).
    let rc = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            libc::SECCOMP_FILTER_FLAG_TSYNC,
            &fprog as *const libc::sock_fprog,
        )
    };
    match rc {
        0 => Ok(rules(me, zygote).len()),
        rc if rc > 0 => Err(format!("seccomp: thread {rc} could not take the filter")),
        _ => Err(format!("seccomp: {}", io::Error::last_os_error())),
    }
}

/// Whether the kernel takes seccomp filters, or why not.
pub fn available() -> Result<(), String> {
    // SAFETY: asks whether an action is available; reads only the given word.
    let action = libc::SECCOMP_RET_TRAP;
    let rc = unsafe {
        libc::syscall(libc::SYS_seccomp, 2u32 /* SECCOMP_GET_ACTION_AVAIL */, 0u32, &action as *const u32)
    };
    if rc == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EINVAL) => "seccomp: this kernel has no seccomp filters".into(),
        _ => format!("seccomp: {e}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump lands inside the program, and every rule's number has a name for messages.
    #[test]
    fn jumps_stay_inside_and_every_refusal_is_named() {
        let p = program(1234, 1000);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "jump at {i} leaves the program");
            }
        }
        assert_eq!(p.last().unwrap().k, libc::SECCOMP_RET_ALLOW);
        for r in rules(1234, 1000) {
            if matches!(r.act, Act::Trap) {
                assert!(name(r.nr).is_some(), "syscall {} has no name", r.nr);
            }
        }
    }
}
