//! Objects shared by the host's threads and every process it forks: message queues, locks and
//! events, in one shared memory arena. Each is safe against a peer killed at any instruction.

pub mod arena;
mod callers;
pub mod channel;
pub mod sync;
