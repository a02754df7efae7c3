//! Outcomes of pool operations: a status with fixed numbers and a message naming what failed.

use std::ffi::CStr;
use std::fmt;

/// Status codes. The numbers are part of the C ABI and never change.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Ok = 0,
    Inval = 1,
    NoMem = 2,
    Sys = 3,
    TimedOut = 4,
    Task = 5,
    Crashed = 6,
    Closed = 7,
    Panic = 8,
    Cancelled = 9,
    Done = 10,
    Corrupt = 11,
    OwnerDead = 12,
}

impl Status {
    /// The status with this number, if any.
    pub fn of(v: i32) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::Inval,
            2 => Status::NoMem,
            3 => Status::Sys,
            4 => Status::TimedOut,
            5 => Status::Task,
            6 => Status::Crashed,
            7 => Status::Closed,
            8 => Status::Panic,
            9 => Status::Cancelled,
            10 => Status::Done,
            11 => Status::Corrupt,
            12 => Status::OwnerDead,
            _ => return None,
        })
    }

    /// The status stored in shared memory as a number (written by this library only).
    pub fn from_i32(v: i32) -> Status {
        Status::of(v).unwrap_or(Status::Panic)
    }

    /// A static description (NUL-terminated, so it can be handed out as a C string).
    pub fn describe_c(self) -> &'static CStr {
        match self {
            Status::Ok => c"success",
            Status::Inval => c"invalid argument",
            Status::NoMem => c"out of memory",
            Status::Sys => c"system call failed",
            Status::TimedOut => c"timed out",
            Status::Task => c"task returned an error code",
            Status::Crashed => c"worker process died while running the task",
            Status::Closed => c"pool is closed or terminated",
            Status::Panic => c"internal error (panic caught at the library boundary)",
            Status::Cancelled => c"cancelled",
            Status::Done => c"no more results",
            Status::Corrupt => c"the pool's shared memory was overwritten; the pool is terminated",
            Status::OwnerDead => c"the lock was taken, but its previous holder died holding it",
        }
    }

    pub fn describe(self) -> &'static str {
        self.describe_c().to_str().expect("ASCII")
    }
}

/// A failure: its status and a message for `pool_last_error`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Error {
    pub status: Status,
    pub msg: String,
}

impl Error {
    pub fn new(status: Status, msg: impl Into<String>) -> Error {
        Error { status, msg: msg.into() }
    }
    pub fn inval(msg: impl Into<String>) -> Error {
        Error::new(Status::Inval, msg)
    }
    pub fn closed(msg: impl Into<String>) -> Error {
        Error::new(Status::Closed, msg)
    }
    pub fn sys(what: &str, e: std::io::Error) -> Error {
        Error::new(Status::Sys, format!("{what}: {e}"))
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.msg)
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;
