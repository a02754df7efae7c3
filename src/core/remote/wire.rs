//! The messages between the root's runner and the other ranks, as bytes: little-endian fixed
//! fields, length-prefixed strings and byte strings. A reader never trusts what it reads:
//! every field is bounds-checked and a short or malformed message is an error, never a panic.

use crate::sys::dl::Ref;

/// Message tags (the transport carries them beside the bytes).
pub(super) const HELLO: i32 = 1; // rank -> root, at creation
pub(super) const WELCOME: i32 = 2; // root -> rank: go on, or fail with a message
pub(super) const TASK: i32 = 3; // root -> rank
pub(super) const CANCEL: i32 = 4; // root -> rank
pub(super) const RESULT: i32 = 5; // rank -> root
pub(super) const STOP: i32 = 6; // root -> rank: the root's pool is gone
pub(super) const BYE: i32 = 7; // rank -> root: its pool is gone too

/// Version of this format: ranks built from different libpool versions refuse each other.
pub(super) const VERSION: u32 = 2; // 2: a K_BLOCK task ends with its first item and count

#[derive(Default)]
pub struct Writer(pub Vec<u8>);

impl Writer {
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn i32(&mut self, v: i32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn bytes(&mut self, b: &[u8]) -> &mut Self {
        self.u64(b.len() as u64);
        self.0.extend_from_slice(b);
        self
    }
    pub fn str(&mut self, s: &str) -> &mut Self {
        self.bytes(s.as_bytes())
    }
    pub fn reference(&mut self, r: &Ref) -> &mut Self {
        self.bytes(&r.id).u64(r.offset)
    }
}

pub struct Reader<'a>(pub &'a [u8]);

/// A malformed message (a bug or a mismatched peer).
#[derive(Debug)]
pub struct Malformed;

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Malformed> {
        if n > self.0.len() {
            return Err(Malformed);
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u32(&mut self) -> Result<u32, Malformed> {
        Ok(u32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Malformed)?))
    }
    pub fn i32(&mut self) -> Result<i32, Malformed> {
        Ok(i32::from_le_bytes(self.take(4)?.try_into().map_err(|_| Malformed)?))
    }
    pub fn u64(&mut self) -> Result<u64, Malformed> {
        Ok(u64::from_le_bytes(self.take(8)?.try_into().map_err(|_| Malformed)?))
    }
    pub fn bytes(&mut self) -> Result<&'a [u8], Malformed> {
        let n = usize::try_from(self.u64()?).map_err(|_| Malformed)?;
        self.take(n)
    }
    pub fn str(&mut self) -> Result<String, Malformed> {
        Ok(String::from_utf8_lossy(self.bytes()?).into_owned())
    }
    pub fn reference(&mut self) -> Result<Ref, Malformed> {
        Ok(Ref { id: self.bytes()?.to_vec(), offset: self.u64()? })
    }
}

/// How a task's `ctx` crosses: none, its bytes (it was copied with `ctx_size`), or a place in
/// a loaded object's static data.
pub(super) const CTX_NULL: u32 = 0;
pub(super) const CTX_BYTES: u32 = 1;
pub(super) const CTX_STATIC: u32 = 2;

/// One failure of a remote item, as a `Rec` plus its message.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Failure {
    pub item: u64,
    pub status: i32,
    pub code: i32,
    pub pid: i32,
    pub wstatus: i32,
    pub msg: String,
}

impl Failure {
    pub fn write(&self, w: &mut Writer) {
        w.u64(self.item).i32(self.status).i32(self.code).i32(self.pid).i32(self.wstatus).str(&self.msg);
    }
    pub fn read(r: &mut Reader) -> Result<Failure, Malformed> {
        Ok(Failure {
            item: r.u64()?,
            status: r.i32()?,
            code: r.i32()?,
            pid: r.i32()?,
            wstatus: r.i32()?,
            msg: r.str()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_short_messages() {
        let mut w = Writer::default();
        let f = Failure { item: 3, status: 6, code: -1, pid: 42, wstatus: 9, msg: "on rank 2".into() };
        w.u32(7).reference(&Ref { id: vec![1, 2, 3], offset: 99 });
        f.write(&mut w);
        let mut r = Reader(&w.0);
        assert_eq!(r.u32().unwrap(), 7);
        assert_eq!(r.reference().unwrap(), Ref { id: vec![1, 2, 3], offset: 99 });
        assert_eq!(Failure::read(&mut r).unwrap(), f);
        assert!(r.u32().is_err());
        for cut in 0..w.0.len() {
            let mut r = Reader(&w.0[..cut]);
            let ok = r.u32().is_ok() && r.reference().is_ok() && Failure::read(&mut r).is_ok();
            assert!(!ok, "a message cut at {cut} bytes must not read whole");
        }
        let mut huge = Writer::default();
        huge.u64(u64::MAX);
        assert!(Reader(&huge.0).bytes().is_err());
    }
}
