//! libpool: a process pool with a stable C ABI, modelled on Python's `multiprocessing`.
//!
//! - [`core`]: pools, workers, the zygote, shared memory and processes, in safe Rust.
//! - [`sys`]: the Linux layer (fork, futex, memfd, pidfd, signalfd, prctl): the only libc caller.
//! - [`ffi`]: the exported C functions; they check and convert arguments, nothing more.
//!
//! The C API is documented in `include/pool.h`, generated from `src/ffi` by cbindgen.

pub mod core;
pub mod ffi;
mod sys;
