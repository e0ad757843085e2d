//! The server's memory pool: DataFusion's fair spill pool, except that spilling operators may
//! borrow memory nobody is using.
//!
//! DataFusion's [`FairSpillPool`](datafusion::execution::memory_pool::FairSpillPool) caps
//! every operator that can spill at an even share of the pool, counted over every such
//! operator registered at the time, running or not. A protected query registers dozens
//! (rule 7's measurement, the per-set, per-person and per-cell aggregations, each in every
//! partition), so at 1M patients prevalence's per-person aggregation (3.6M groups) was held
//! to its share and spilled 189 MB in 8 spills (7.6 s of compute against 2.2–3.8 s without
//! spilling), with the pool less than a quarter used.
//!
//! [`SpillPool`] keeps the fair share as a guarantee and lets a spilling operator grow past it
//! while the pool as a whole stays at most half full. The other half is left to operators
//! that cannot spill (hash-join build sides, which fail the query when they cannot get
//! memory) and to other spilling operators' fair shares. Unlike the fair pool, no grant ever
//! takes the pool past its limit.

use std::fmt;
use std::sync::Mutex;

use datafusion::common::{DataFusionError, Result};
use datafusion::execution::memory_pool::{
    MemoryConsumer, MemoryLimit, MemoryPool, MemoryReservation, human_readable_size,
};

/// A bounded memory pool where spilling operators get an even share of what the others do
/// not hold, and may borrow beyond it while the pool is at most half full.
#[derive(Debug)]
pub struct SpillPool {
    size: usize,
    state: Mutex<State>,
}

#[derive(Debug, Default)]
struct State {
    /// Registered consumers that can spill.
    spillers: usize,
    /// Bytes held by consumers that can spill.
    spillable: usize,
    /// Bytes held by consumers that cannot.
    unspillable: usize,
}

impl SpillPool {
    /// A pool of `size` bytes.
    pub fn new(size: usize) -> Self {
        SpillPool {
            size,
            state: Mutex::new(State::default()),
        }
    }

    /// DataFusion's resources error (the server reports it as `RESOURCE_EXHAUSTED`; spilling
    /// operators spill on it). `used` is passed in: the caller holds the state's lock.
    fn insufficient(
        &self,
        reservation: &MemoryReservation,
        additional: usize,
        available: usize,
        used: usize,
    ) -> DataFusionError {
        DataFusionError::ResourcesExhausted(format!(
            "Failed to allocate additional {} for {} with {} already allocated for this \
             reservation - {} remain available for the total memory pool: {}",
            human_readable_size(additional),
            reservation.consumer().name(),
            human_readable_size(reservation.size()),
            human_readable_size(available),
            self.describe(used),
        ))
    }

    /// The pool as DataFusion's pools print themselves, with `used` bytes held.
    fn describe(&self, used: usize) -> String {
        format!(
            "{}(used: {}, pool_size: {})",
            self.name(),
            human_readable_size(used),
            human_readable_size(self.size)
        )
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is three counters updated in one step each: a panic elsewhere cannot
        // leave it half-updated.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl MemoryPool for SpillPool {
    fn name(&self) -> &str {
        "spill"
    }

    fn register(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            self.state().spillers += 1;
        }
    }

    fn unregister(&self, consumer: &MemoryConsumer) {
        if consumer.can_spill() {
            let mut s = self.state();
            s.spillers = s.spillers.saturating_sub(1);
        }
    }

    fn grow(&self, reservation: &MemoryReservation, additional: usize) {
        let mut s = self.state();
        if reservation.consumer().can_spill() {
            s.spillable += additional;
        } else {
            s.unspillable += additional;
        }
    }

    fn shrink(&self, reservation: &MemoryReservation, shrink: usize) {
        let mut s = self.state();
        if reservation.consumer().can_spill() {
            s.spillable = s.spillable.saturating_sub(shrink);
        } else {
            s.unspillable = s.unspillable.saturating_sub(shrink);
        }
    }

    fn try_grow(&self, reservation: &MemoryReservation, additional: usize) -> Result<()> {
        let mut s = self.state();
        let used = s.spillable + s.unspillable;
        let after = used.saturating_add(additional);
        let free = self.size.saturating_sub(used);
        if after > self.size {
            return Err(self.insufficient(reservation, additional, free, used));
        }
        if reservation.consumer().can_spill() {
            let fair = self.size.saturating_sub(s.unspillable) / s.spillers.max(1);
            let within_share = reservation.size().saturating_add(additional) <= fair;
            let borrowing_ok = after <= self.size / 2;
            if !within_share && !borrowing_ok {
                let left = fair.saturating_sub(reservation.size());
                return Err(self.insufficient(reservation, additional, left, used));
            }
            s.spillable += additional;
        } else {
            s.unspillable += additional;
        }
        Ok(())
    }

    fn reserved(&self) -> usize {
        let s = self.state();
        s.spillable + s.unspillable
    }

    fn memory_limit(&self) -> MemoryLimit {
        MemoryLimit::Finite(self.size)
    }
}

impl fmt::Display for SpillPool {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe(self.reserved()))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn pool(size: usize) -> Arc<dyn MemoryPool> {
        Arc::new(SpillPool::new(size))
    }

    fn spiller(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name)
            .with_can_spill(true)
            .register(pool)
    }

    fn holder(pool: &Arc<dyn MemoryPool>, name: &str) -> MemoryReservation {
        MemoryConsumer::new(name).register(pool)
    }

    #[test]
    fn spillers_borrow_up_to_half_the_pool_then_keep_to_their_share() {
        let p = pool(1000);
        let a = spiller(&p, "a");
        let b = spiller(&p, "b");
        let _idle = [spiller(&p, "c"), spiller(&p, "d")];
        // Fair share: 1000 / 4 = 250. Borrowing past it while the pool stays half empty.
        a.try_grow(400).expect("granted");
        a.try_grow(100).expect("granted");
        assert_eq!(p.reserved(), 500);
        // Past half the pool and past its share: refused (the operator spills).
        let e = a.try_grow(1).expect_err("refused");
        assert!(matches!(e, DataFusionError::ResourcesExhausted(_)), "{e}");
        // Another spiller still gets its fair share, though the pool is past half.
        b.try_grow(250).expect("granted");
        assert!(b.try_grow(1).is_err());
        assert_eq!(p.reserved(), 750);
        // Freed memory can be borrowed again.
        a.shrink(400);
        a.try_grow(50).expect("granted");
        assert_eq!(p.reserved(), 400);
    }

    #[test]
    fn no_grant_takes_the_pool_past_its_limit() {
        let p = pool(1000);
        let join = holder(&p, "hash join");
        let s = spiller(&p, "aggregate");
        // A consumer that cannot spill takes what is free, first come first served.
        join.try_grow(900).expect("granted");
        // The spiller's share is what the others do not hold: 100.
        assert!(s.try_grow(101).is_err());
        s.try_grow(100).expect("granted");
        assert_eq!(p.reserved(), 1000);
        let e = join.try_grow(1).expect_err("refused");
        assert!(
            e.to_string().contains("Failed to allocate additional"),
            "{e}"
        );
        assert_eq!(p.reserved(), 1000);
        drop(s);
        assert_eq!(p.reserved(), 900);
        join.try_grow(100).expect("granted");
        assert!(spiller(&p, "late").try_grow(1).is_err());
    }

    #[test]
    fn shares_follow_registration() {
        let p = pool(1000);
        let a = spiller(&p, "a");
        let others: Vec<_> = (0..9).map(|i| spiller(&p, &format!("s{i}"))).collect();
        // Ten spillers: share 100; the pool is empty, so borrowing covers up to 500.
        a.try_grow(500).expect("granted");
        assert!(a.try_grow(1).is_err());
        a.shrink(500);
        // Hold 600 elsewhere: no borrowing, only the share.
        let big = holder(&p, "build side");
        big.try_grow(600).expect("granted");
        // Share: (1000 - 600) / 10 = 40.
        assert!(a.try_grow(41).is_err());
        a.try_grow(40).expect("granted");
        // Nine spillers gone: the last one's share is the 400 the holder leaves.
        drop(others);
        a.try_grow(360).expect("granted");
        assert_eq!(p.reserved(), 1000);
        assert!(matches!(p.memory_limit(), MemoryLimit::Finite(1000)));
    }
}
