//! The C ABI: one file per C object. Every function here checks its arguments, converts them,
//! calls the core and converts the result back; panics never cross into C.

#[macro_use]
mod macros;
pub mod error;
pub mod iter;
pub mod options;
pub mod pool;
pub mod process;
pub mod result;
