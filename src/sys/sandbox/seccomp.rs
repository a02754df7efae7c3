//! The worker's seccomp-bpf filter: a deny list of what a computing task never needs (new
//! processes, exec, network, other processes, kernel facilities), with argument checks where
//! a call is fine on the worker itself (threads, signals to itself). Written by hand: the
//! program is one jump per rule, and the checks need the worker's own pid at install time.

/// What a refused call does: SIGSYS (the handler in `mod.rs` notes the call, then the worker
/// dies of it), or an errno the caller's library falls back on.
#[derive(Clone, Copy)]
enum Act {
    Trap,
    Errno(u32),
}

/// A test of one 32-bit half of an argument.
#[derive(Clone, Copy)]
enum Test {
    Eq(u32),
    Ne(u32),
    /// Has this bit (a single bit).
    Has(u32),
    /// Has none of these bits.
    HasNone(u32),
}

/// A term of a condition: argument `arg`'s low (or high) 32 bits pass `test`.
#[derive(Clone, Copy)]
struct Term {
    arg: u8,
    hi: bool,
    test: Test,
}

fn lo(arg: u8, test: Test) -> Term {
    Term { arg, hi: false, test }
}
fn hi(arg: u8, test: Test) -> Term {
    Term { arg, hi: true, test }
}

/// When the call is allowed (else `act`).
enum Unless {
    /// Never: always refused.
    Never,
    /// When one of these conjunctions of terms holds.
    AnyOf(Vec<Vec<Term>>),
}

struct Rule {
    nr: i64,
    act: Act,
    unless: Unless,
}

// From <linux/fcntl.h> and <linux/sockios.h> (the same on every architecture we build for).
const F_SETSIG: u32 = 10;
const F_SETOWN_EX: u32 = 15;
const FIOSETOWN: u32 = 0x8901;
const SIOCSPGRP: u32 = 0x8902;

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

/// The rules for an executor whose pid is `me`.
#[allow(clippy::unnecessary_cast)] // libc's constants are c_int on some targets, c_uint on others
fn rules(me: i32) -> Vec<Rule> {
    use libc::*;
    use Test::*;
    let me = me as u32;
    let trap = |nr| Rule { nr, act: Act::Trap, unless: Unless::Never };
    let eperm = |nr| Rule { nr, act: Act::Errno(EPERM as u32), unless: Unless::Never };
    let only = |nr, act, conjs| Rule { nr, act, unless: Unless::AnyOf(conjs) };
    // Argument `arg` is 0 (this process) or this worker's pid.
    let ours = |arg| vec![vec![lo(arg, Eq(0))], vec![lo(arg, Eq(me))]];
    let ns = (CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNET)
        as u32;
    let mut v = vec![
        // New processes (threads stay allowed: clone with CLONE_THREAD and no new namespace).
        // clone3's flags sit behind a pointer the filter cannot read: ENOSYS makes libc fall
        // back on clone.
        only(SYS_clone, Act::Trap, vec![vec![lo(0, Has(CLONE_THREAD as u32)), lo(0, HasNone(ns))]]),
        Rule { nr: SYS_clone3, act: Act::Errno(ENOSYS as u32), unless: Unless::Never },
        trap(SYS_execve),
        trap(SYS_execveat),
        // Network, and local sockets (a socketpair's datagram socket reaches any bound path).
        // socket() fails softly (EACCES), as Landlock does for files: libc opens sockets on its
        // own (nscd for getpwnam, syslog, DNS) and falls back or fails with an error.
        Rule { nr: SYS_socket, act: Act::Errno(EACCES as u32), unless: Unless::Never },
        trap(SYS_socketpair),
        trap(SYS_connect),
        trap(SYS_bind),
        trap(SYS_listen),
        trap(SYS_accept),
        trap(SYS_accept4),
        // Other processes: signals only to itself (its process group is itself alone). A
        // SIGSYS it queues itself could forge the handler's report: refused. Signal 0 only asks
        // whether a process exists: the queues' recovery asks it of peers.
        only(SYS_kill, Act::Trap, vec![vec![lo(0, Eq(me))], vec![lo(0, Eq(0))], vec![lo(1, Eq(0))]]),
        only(SYS_tgkill, Act::Trap, vec![vec![lo(0, Eq(me))]]),
        only(SYS_rt_sigqueueinfo, Act::Trap, vec![vec![lo(0, Eq(me)), lo(1, Ne(SIGSYS as u32))]]),
        only(SYS_rt_tgsigqueueinfo, Act::Trap, vec![vec![lo(0, Eq(me)), lo(2, Ne(SIGSYS as u32))]]),
        trap(SYS_tkill),
        trap(SYS_pidfd_open),
        trap(SYS_pidfd_send_signal),
        trap(SYS_pidfd_getfd),
        trap(SYS_ptrace),
        trap(SYS_process_vm_readv),
        trap(SYS_process_vm_writev),
        trap(SYS_process_madvise),
        trap(SYS_kcmp),
        trap(SYS_setpgid),
        only(SYS_prlimit64, Act::Trap, ours(0)),
        // A descriptor's owner gets SIGIO (any signal, F_SETSIG): none for a sandboxed task.
        only(SYS_fcntl, Act::Trap, vec![vec![lo(1, Ne(F_SETOWN as u32)), lo(1, Ne(F_SETSIG)), lo(1, Ne(F_SETOWN_EX))]]),
        // Terminals and socket owners: no typing into the host's terminal, no SIGIO owner.
        only(
            SYS_ioctl,
            Act::Trap,
            vec![vec![
                lo(1, Ne(TIOCSTI as u32)),
                lo(1, Ne(TIOCLINUX as u32)),
                lo(1, Ne(TIOCCONS as u32)),
                lo(1, Ne(TIOCSPGRP as u32)),
                lo(1, Ne(TIOCSCTTY as u32)),
                lo(1, Ne(FIOSETOWN)),
                lo(1, Ne(SIOCSPGRP)),
            ]],
        ),
        // Scheduling of other processes: EPERM (a thread that sets its own by thread id gets it
        // too: set it on the process, pid 0).
        only(SYS_sched_setaffinity, Act::Errno(EPERM as u32), ours(0)),
        only(SYS_sched_setscheduler, Act::Errno(EPERM as u32), ours(0)),
        only(SYS_sched_setparam, Act::Errno(EPERM as u32), ours(0)),
        only(SYS_sched_setattr, Act::Errno(EPERM as u32), ours(0)),
        only(
            SYS_setpriority,
            Act::Errno(EPERM as u32),
            vec![
                vec![lo(0, Eq(PRIO_PROCESS as u32)), lo(1, Eq(0))],
                vec![lo(0, Eq(PRIO_PROCESS as u32)), lo(1, Eq(me))],
            ],
        ),
        only(
            SYS_ioprio_set,
            Act::Errno(EPERM as u32),
            vec![vec![lo(0, Eq(1)), lo(1, Eq(0))], vec![lo(0, Eq(1)), lo(1, Eq(me))]],
        ),
        // Metadata, which Landlock does not guard: EPERM everywhere (descriptor-based calls on
        // files the task could open stay allowed).
        eperm(SYS_fchmodat),
        eperm(SYS_fchmodat2),
        eperm(SYS_fchownat),
        eperm(SYS_setxattr),
        eperm(SYS_lsetxattr),
        eperm(SYS_removexattr),
        eperm(SYS_lremovexattr),
        eperm(SYS_utimensat),
        eperm(SYS_inotify_add_watch),
        eperm(SYS_fanotify_init),
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
        // Futexes wait and wake only: a requeue would move the workers' waits on the pool's
        // (read-only, but futex-able) words to an address nobody wakes. ENOSYS for the rest, as
        // for a kernel without them (glibc's condition variables have not used them since 2.25).
        only(SYS_futex, Act::Errno(ENOSYS as u32), futex_ops()),
        Rule { nr: SYS_FUTEX_REQUEUE, act: Act::Errno(ENOSYS as u32), unless: Unless::Never },
        // Its parent-death signal stays: an executor that outlived its worker would be an
        // orphan nobody stops.
        only(SYS_prctl, Act::Errno(EPERM as u32), vec![vec![lo(0, Ne(PR_SET_PDEATHSIG as u32))]]),
        // The SIGSYS handler that names refused calls stays ours (reading it is fine).
        only(SYS_rt_sigaction, Act::Trap, vec![vec![lo(0, Ne(SIGSYS as u32))], vec![lo(1, Eq(0)), hi(1, Eq(0))]]),
    ];
    #[cfg(target_arch = "x86_64")]
    v.extend([
        trap(SYS_fork),
        trap(SYS_vfork),
        trap(SYS_iopl),
        trap(SYS_ioperm),
        trap(SYS_uselib),
        eperm(SYS_chmod),
        eperm(SYS_chown),
        eperm(SYS_lchown),
        eperm(SYS_utime),
        eperm(SYS_utimes),
        eperm(SYS_futimesat),
        eperm(SYS_inotify_init),
    ]);
    v
}

/// `futex_requeue` (Linux 6.7), not in every libc crate version.
const SYS_FUTEX_REQUEUE: i64 = 456;

/// The futex operations a task may use, with and without the private and realtime-clock flags:
/// wait, wake, wake-op (glibc before 2.25), the priority-inheritance locks, and the bitset
/// forms. Not the requeues.
fn futex_ops() -> Vec<Vec<Term>> {
    let ops = [0u32, 1, 5, 6, 7, 8, 9, 10, 13];
    let flags = [0u32, 128, 256, 384];
    ops.iter().flat_map(|&op| flags.iter().map(move |&f| vec![lo(1, Test::Eq(op | f))])).collect()
}

/// How many calls the filter refuses (or checks), for the pool's report.
pub fn rule_count() -> usize {
    rules(0).len()
}

/// The name of a refused system call, for messages.
pub fn name(nr: i64) -> Option<&'static str> {
    use libc::*;
    let names: &[(i64, &str)] = &[
        (SYS_clone, "clone() of a new process or namespace"),
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
        (SYS_rt_sigqueueinfo, "rt_sigqueueinfo() to another process, or of SIGSYS"),
        (SYS_rt_tgsigqueueinfo, "rt_tgsigqueueinfo() to another process, or of SIGSYS"),
        (SYS_tkill, "tkill()"),
        (SYS_pidfd_open, "pidfd_open()"),
        (SYS_pidfd_send_signal, "pidfd_send_signal()"),
        (SYS_pidfd_getfd, "pidfd_getfd()"),
        (SYS_ptrace, "ptrace()"),
        (SYS_process_vm_readv, "process_vm_readv()"),
        (SYS_process_vm_writev, "process_vm_writev()"),
        (SYS_process_madvise, "process_madvise()"),
        (SYS_kcmp, "kcmp()"),
        (SYS_socketpair, "socketpair()"),
        (SYS_setpgid, "setpgid()"),
        (SYS_prlimit64, "prlimit64() of another process"),
        (SYS_fcntl, "fcntl() making a descriptor signal its owner (F_SETOWN, F_SETSIG)"),
        (SYS_ioctl, "ioctl() of a terminal's input or owner (TIOCSTI, TIOCSPGRP, FIOSETOWN...)"),
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

/// Compiles the filter for an executor (pid `me`). Layout: check the architecture (a
/// foreign one, or x32 numbers, kill the process), load the number, then per rule a jump to its
/// block; no rule matched: allow.
fn program(me: i32) -> Vec<libc::sock_filter> {
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
    for r in rules(me) {
        // Each block ends in a return, and reloads nothing: a miss falls to the next rule with
        // the number still in A.
        let block: Vec<libc::sock_filter> = match r.unless {
            Unless::Never => vec![stmt(RET_K, ret(r.act))],
            Unless::AnyOf(conjs) => {
                // Per conjunction: a load and a test per term (a failed test skips to the next
                // conjunction), then allow. None held: refuse.
                let mut b = Vec::new();
                for c in conjs {
                    for (j, t) in c.iter().enumerate() {
                        let rest = (2 * (c.len() - j - 1) + 1) as u8; // to the next conjunction
                        b.push(stmt(LD_W_ABS, if t.hi { arg_hi(t.arg) } else { arg_lo(t.arg) }));
                        b.push(match t.test {
                            Test::Eq(v) => jump(JEQ_K, v, 0, rest),
                            Test::Ne(v) => jump(JEQ_K, v, rest, 0),
                            Test::Has(bit) => {
                                assert!(bit.is_power_of_two(), "one bit");
                                jump(JSET_K, bit, 0, rest)
                            }
                            Test::HasNone(mask) => jump(JSET_K, mask, rest, 0),
                        });
                    }
                    b.push(stmt(RET_K, allow));
                }
                b.push(stmt(RET_K, ret(r.act)));
                b
            }
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
pub fn install(me: i32) -> Result<usize, String> {
    let prog = program(me);
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
        0 => Ok(rules(me).len()),
        rc if rc > 0 => Err(format!("seccomp: thread {rc} could not take the filter")),
        _ => Err(format!("seccomp: {}", super::last_error())),
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
    let e = std::io::Error::last_os_error();
    Err(match e.raw_os_error() {
        Some(libc::ENOSYS) | Some(libc::EINVAL) => "seccomp: this kernel has no seccomp filters".into(),
        _ => format!("seccomp: {}", super::describe(&e)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every jump lands inside the program, and every rule's number has a name for messages.
    #[test]
    fn jumps_stay_inside_and_every_refusal_is_named() {
        let p = program(1234);
        for (i, ins) in p.iter().enumerate() {
            if ins.code & 0x07 == 0x05 {
                assert!(i + 1 + (ins.jt.max(ins.jf) as usize) < p.len(), "jump at {i} leaves the program");
            }
        }
        assert_eq!(p.last().unwrap().k, libc::SECCOMP_RET_ALLOW);
        for r in rules(1234) {
            if matches!(r.act, Act::Trap) {
                assert!(name(r.nr).is_some(), "syscall {} has no name", r.nr);
            }
        }
    }
}
