//! What the workers have: the code and memory of the creating process as they were when the
//! pool was created (workers are forks of that moment). Submissions are checked against it.

use super::*;
use crate::sys::{elf, peek};

/// Address ranges, `[start, end)`.
type Ranges = Vec<(usize, usize)>;

/// Taken at creation: the objects loaded then (workers have exactly these), the loader's
/// generation then, the other executable ranges of the time (code outside any object, such as
/// JIT output), every address range that was mapped, and where the objects' static data and
/// the `brk` heap lay.
pub(super) struct Snapshot {
    objects: Vec<dl::Object>,
    generation: (u64, u64),
    anonymous: Ranges,
    /// Sorted, disjoint, adjacent ranges merged.
    mapped: Ranges,
    /// The ranges mapped shared (the host and the workers see the same bytes), sorted.
    shared: Ranges,
    /// The objects' loaded segments: (start, end, writable, index in `objects`), sorted.
    statics: Vec<(usize, usize, bool, usize)>,
    /// The variables of each object's static data, read from its file when first needed.
    variables: Vec<std::sync::OnceLock<Option<Ranges>>>,
    /// Where the heap that `malloc` grows with `brk` starts: from here to the program break,
    /// memory is mapped.
    pub(super) brk_start: usize,
}

impl Snapshot {
    pub(super) fn now() -> Snapshot {
        let objects = dl::objects();
        let now = proc::mapped_ranges();
        let anonymous = now.executable.into_iter().filter(|&(lo, _)| !objects.iter().any(|o| o.contains(lo))).collect();
        let raw = now.readable;
        let brk = peek::program_break();
        let brk_start = raw.iter().find(|&&(lo, hi)| lo < brk && brk <= hi).map_or(brk, |r| r.0);
        let mut mapped: Ranges = Vec::with_capacity(raw.len());
        for (lo, hi) in raw {
            match mapped.last_mut() {
                Some(last) if last.1 == lo => last.1 = hi,
                _ => mapped.push((lo, hi)),
            }
        }
        let mut statics: Vec<_> = objects
            .iter()
            .enumerate()
            .flat_map(|(i, o)| {
                let ro = o.readonly.iter().map(move |&(lo, hi)| (lo, hi, false, i));
                ro.chain(o.data.iter().map(move |&(lo, hi)| (lo, hi, true, i)))
            })
            .collect();
        statics.sort_unstable();
        let variables = objects.iter().map(|_| Default::default()).collect();
        let shared = now.shared;
        Snapshot { objects, generation: dl::generation(), anonymous, mapped, shared, statics, variables, brk_start }
    }

    /// Fails unless `func` is code the workers have: in an object loaded at creation and, if
    /// objects were loaded or unloaded since, still that same object (not another library
    /// loaded at the same address after a dlclose).
    pub(super) fn check_func(&self, func: usize, loader: &Loader) -> Result<()> {
        let refuse = |why: &str| Err(Error::inval(format!("function {func:#x} {why}: workers cannot run it")));
        let Some(then) = self.objects.iter().find(|o| o.contains(func)) else {
            if self.anonymous.iter().any(|&(lo, hi)| (lo..hi).contains(&func)) {
                return Ok(());
            }
            return refuse("is not in code that was loaded when the pool was created (a library loaded later?)");
        };
        if loader.generation() == self.generation {
            return Ok(());
        }
        match dl::objects().into_iter().find(|o| o.contains(func)) {
            Some(now) if now.base == then.base && now.id == then.id => Ok(()),
            _ => refuse(
                "is in a library that was unloaded after the pool was created (another may be loaded in its place)",
            ),
        }
    }

    /// The end of the memory that was mapped at creation from `addr` on; None if `addr` was
    /// not mapped then.
    pub(super) fn created_end(&self, addr: usize) -> Option<usize> {
        let i = self.mapped.partition_point(|&(lo, _)| lo <= addr);
        (i > 0 && addr < self.mapped[i - 1].1).then(|| self.mapped[i - 1].1)
    }

    /// Whether `addr` was in memory mapped shared at creation: workers see it as it is now.
    pub(super) fn shared_at(&self, addr: usize) -> bool {
        let i = self.shared.partition_point(|&(lo, _)| lo <= addr);
        i > 0 && addr < self.shared[i - 1].1
    }

    /// The loaded segment of an object loaded at creation that holds `addr`, if that object is
    /// surely still loaded (none was unloaded since): where it ends, and for writable static
    /// data, where the variable at `addr` ends, if the object's symbols say so.
    pub(super) fn static_at(&self, addr: usize, loader: &Loader) -> Option<Static> {
        let i = self.statics.partition_point(|s| s.0 <= addr);
        let &(_, end, writable, obj) = self.statics[..i].last().filter(|s| addr < s.1)?;
        if loader.generation().1 != self.generation.1 {
            return None;
        }
        if !writable {
            return Some(Static::Constant);
        }
        let vars = self.variables[obj].get_or_init(|| elf::variables(&self.objects[obj]));
        let var = vars.as_deref().and_then(|v| {
            // The nearest variable starting at or before `addr` that holds it.
            let j = v.partition_point(|&(lo, _)| lo <= addr);
            v[..j].iter().rev().take(8).find(|&&(_, hi)| addr < hi).map(|&(_, hi)| hi)
        });
        Some(Static::Data { end, variable_end: var })
    }
}

/// The loader's generation (objects loaded, unloaded), read at most once per submission: each
/// read takes the loader's lock.
#[derive(Default)]
pub(super) struct Loader(std::cell::Cell<Option<(u64, u64)>>);

impl Loader {
    fn generation(&self) -> (u64, u64) {
        let g = self.0.get().unwrap_or_else(dl::generation);
        self.0.set(Some(g));
        g
    }
}

/// Where static memory of an object loaded at creation lies (`Snapshot::static_at`).
pub(super) enum Static {
    /// Constants or code: the same bytes in every process.
    Constant,
    /// Writable static data, mapped up to `end`; the variable there ends at `variable_end`.
    Data { end: usize, variable_end: Option<usize> },
}
