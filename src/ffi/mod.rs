//! The C ABI: one file per C object. Every function here checks its arguments, converts them,
//! calls the core and converts the result back; panics never cross into C.

// Exported functions take raw pointers from C by design; each one checks them (NULL) before use
// and documents what it needs, so marking them `unsafe` would add nothing for C callers.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

#[macro_use]
mod macros;
mod blocks;
mod callbacks;
pub mod error;
mod handles;
pub mod ipc;
pub mod iter;
pub mod options;
pub mod pool;
pub mod process;
mod reentry;
pub mod result;
pub mod sandbox;
pub mod stream;
pub mod transport;
