//! The OS layer: the only place that calls libc. Linux-specific by design (memfd, futex,
//! pidfd, signalfd, prctl).

pub mod dl;
pub mod elf;
pub mod fork;
pub mod futex;
pub mod mem;
pub mod peek;
pub mod proc;
pub mod robust;
pub mod sandbox;
pub mod thread;
