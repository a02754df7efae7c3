//! Outcomes of pool operations: a status with fixed numbers and a message naming what failed.

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
}

impl Status {
    pub fn from_i32(v: i32) -> Status {
        match v {
            0 => Status::Ok,
            1 => Status::Inval,
            2 => Status::NoMem,
            3 => Status::Sys,
            4 => Status::TimedOut,
            5 => Status::Task,
            6 => Status::Crashed,
            7 => Status::Closed,
            9 => Status::Cancelled,
            10 => Status::Done,
            _ => Status::Panic,
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Status::Ok => "success",
            Status::Inval => "invalid argument",
            Status::NoMem => "out of memory",
            Status::Sys => "system call failed",
            Status::TimedOut => "timed out",
            Status::Task => "task returned an error code",
            Status::Crashed => "worker process died while running the task",
            Status::Closed => "pool is closed or terminated",
            Status::Panic => "internal error (panic caught at the library boundary)",
            Status::Cancelled => "cancelled",
            Status::Done => "no more results",
        }
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
