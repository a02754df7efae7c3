//! The data symbols of a loaded object, read from its file: where each variable of its static
//! data starts and ends (the symbol table is not loaded into memory, so it is read from disk,
//! once, from the file the object was loaded from).

use super::dl::{build_id_in, file_id_of, Object};
use std::fs::File;
use std::os::unix::fs::FileExt;

const SHT_SYMTAB: u32 = 2;
const SHT_DYNSYM: u32 = 11;
const STT_OBJECT: u8 = 1;
const PT_NOTE: u32 = 4;
/// Symbol tables larger than this are not read (a program with millions of symbols).
const MAX_TABLE: u64 = 64 << 20;

/// The variables of object `o`'s static data: `[start, end)` in this process, sorted. None when
/// its file cannot be read, is not the one loaded (rebuilt since), or has no symbol table
/// (stripped); objects loaded from memory (the vDSO) have none.
pub fn variables(o: &Object) -> Option<Vec<(usize, usize)>> {
    let path = if o.name.is_empty() { "/proc/self/exe" } else { o.name.as_str() };
    let f = File::open(path).ok()?;
    let hdr = read(&f, 0, 64)?;
    if &hdr[..4] != b"\x7fELF" || hdr[4] != 2 {
        return None; // not a 64-bit ELF file
    }
    let (phoff, phnum) = (u64_at(&hdr, 32), u16_at(&hdr, 56) as u64);
    let (shoff, shnum) = (u64_at(&hdr, 40), u16_at(&hdr, 60) as u64);
    let phdrs = read(&f, phoff, phnum * 56)?;
    let notes = phdrs.chunks_exact(56).filter(|p| u32_at(p, 0) == PT_NOTE);
    let id = notes.filter_map(|p| read(&f, u64_at(p, 8), u64_at(p, 32)).and_then(|n| build_id_in(&n))).next();
    if id.unwrap_or_else(|| file_id_of(&o.name)) != o.id {
        return None;
    }
    let shdrs = read(&f, shoff, shnum * 64)?;
    let table = |kind| shdrs.chunks_exact(64).find(|s| u32_at(s, 4) == kind);
    let symtab = table(SHT_SYMTAB).or_else(|| table(SHT_DYNSYM))?;
    let size = u64_at(symtab, 32);
    if size > MAX_TABLE {
        return None;
    }
    let syms = read(&f, u64_at(symtab, 24), size)?;
    let mut vars: Vec<(usize, usize)> = syms
        .chunks_exact(24)
        .filter(|s| s[4] & 0xf == STT_OBJECT && u16_at(s, 6) != 0 && u64_at(s, 16) > 0)
        .map(|s| {
            let start = o.base.wrapping_add(u64_at(s, 8) as usize);
            (start, start.wrapping_add(u64_at(s, 16) as usize))
        })
        .collect();
    vars.sort_unstable();
    vars.dedup();
    Some(vars)
}

fn read(f: &File, off: u64, len: u64) -> Option<Vec<u8>> {
    let mut buf = vec![0u8; usize::try_from(len).ok()?];
    f.read_exact_at(&mut buf, off).ok()?;
    Some(buf)
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_ne_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_ne_bytes(b[at..at + 8].try_into().expect("8 bytes"))
}
