//! What the workers have: the code and memory of the creating process as they were when the
//! pool was created (workers are forks of that moment). Submissions are checked against it.

use super::*;

/// Taken at creation: the objects loaded then (workers have exactly these), the loader's
/// generation then, the other executable ranges of the time (code outside any object, such as
/// JIT output), and every address range that was mapped.
pub(super) struct Snapshot {
    objects: Vec<dl::Object>,
    generation: (u64, u64),
    anonymous: Vec<(usize, usize)>,
    /// Sorted, disjoint.
    mapped: Vec<(usize, usize)>,
}

impl Snapshot {
    pub(super) fn now() -> Snapshot {
        let objects = dl::objects();
        let anonymous =
            proc::executable_ranges().into_iter().filter(|&(lo, _)| !objects.iter().any(|o| o.contains(lo))).collect();
        let mut mapped = proc::readable_ranges();
        mapped.sort_unstable();
        Snapshot { objects, generation: dl::generation(), anonymous, mapped }
    }

    /// Fails unless `func` is code the workers have: in an object loaded at creation and, if
    /// objects were loaded or unloaded since, still that same object (not another library
    /// loaded at the same address after a dlclose).
    pub(super) fn check_func(&self, func: usize) -> Result<()> {
        let refuse = |why: &str| Err(Error::inval(format!("function {func:#x} {why}: workers cannot run it")));
        let Some(then) = self.objects.iter().find(|o| o.contains(func)) else {
            if self.anonymous.iter().any(|&(lo, hi)| (lo..hi).contains(&func)) {
                return Ok(());
            }
            return refuse("is not in code that was loaded when the pool was created (a library loaded later?)");
        };
        if dl::generation() == self.generation {
            return Ok(());
        }
        match dl::objects().into_iter().find(|o| o.contains(func)) {
            Some(now) if now.base == then.base && now.id == then.id => Ok(()),
            _ => refuse(
                "is in a library that was unloaded after the pool was created (another may be loaded in its place)",
            ),
        }
    }

    /// Fails if `ctx` (passed by address, not copied) points into memory that did not exist at
    /// creation and is not the pool's own: workers do not have it, and would read garbage.
    pub(super) fn check_ctx(&self, ctx: usize, pool: std::ops::Range<usize>) -> Result<()> {
        if ctx == 0 || pool.contains(&ctx) {
            return Ok(());
        }
        let i = self.mapped.partition_point(|&(lo, _)| lo <= ctx);
        if i > 0 && ctx < self.mapped[i - 1].1 {
            return Ok(());
        }
        Err(Error::inval(format!(
            "ctx {ctx:#x} points into memory allocated after the pool was created, which workers do not have \
             (pass ctx_size to copy it with the call, or allocate it before pool_create)"
        )))
    }
}
