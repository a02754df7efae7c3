//! The engine, in safe Rust over the OS layer. Knows nothing of C types.

#[macro_use]
pub mod killpoint;
pub mod callbacks;
pub mod error;
mod heap;
pub mod ipc;
pub mod iter;
pub mod job;
pub mod map;
pub mod pool;
pub mod process;
mod queue;
pub mod remote;
mod shm;
pub mod stream;
pub mod wake;
pub mod worker;
mod zygote;

/// What a sandboxed pool's workers may use of the filesystem (`Options::sandbox`).
pub use crate::sys::sandbox::Policy as SandboxPolicy;
pub use error::{Error, Result, Status};
pub use job::{AsyncResult, Outcome};
pub use map::MapArgs;
pub use pool::{CallOptions, Options, Pool, DEFAULT_START_TIMEOUT};
pub use process::Process;
