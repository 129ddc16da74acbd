//! The timer queue: one binary min-heap of deadlines, O(1) cancel.
//!
//! Ordering: earliest deadline first, ties in scheduling order (a sequence
//! number), matching asyncio whose heap compares `(when, insertion)` in effect
//! for equal deadlines scheduled by one caller. A NaN deadline sorts first.
//!
//! Cancellation is lazy: the owner marks an entry cancelled (the entry reports
//! it through [`TimerEntry::is_cancelled`]) and tells the queue with
//! [`TimerQueue::note_cancelled`]. Cancelled entries are skipped when they reach
//! the top, and the heap is compacted once they are more than a quarter of it
//! (and it has more than [`COMPACT_MIN`] entries), so memory is reclaimed even
//! when nothing ever becomes due: amortised O(1) per cancel, as each
//! compaction removes at least a quarter of what it reads. asyncio waits for
//! half; a quarter measured ~10% faster on call_later churn with half of the
//! timers cancelled, where every cancelled entry left to reach the top costs
//! a full sift through a heap twice the size.
//!
//! Dropping an item can run arbitrary code in the embedding (a Python
//! finaliser), so the queue never drops items itself: every method that
//! removes entries moves them into a caller-supplied `dead` vector, which the
//! caller drops once it is safe to.

use std::cmp::Ordering;
use std::collections::BinaryHeap;

/// Below this many entries the heap is never compacted (asyncio uses 100).
pub(crate) const COMPACT_MIN: usize = 100;

/// An item stored in the queue.
pub trait TimerEntry {
    /// Whether the item was cancelled after it was pushed.
    fn is_cancelled(&self) -> bool;
}

struct Slot<T> {
    when: f64,
    seq: u64,
    item: T,
}

impl<T> Slot<T> {
    fn key(&self) -> f64 {
        if self.when.is_nan() {
            f64::NEG_INFINITY
        } else {
            self.when
        }
    }
}

impl<T> PartialEq for Slot<T> {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl<T> Eq for Slot<T> {}
impl<T> PartialOrd for Slot<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl<T> Ord for Slot<T> {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key().total_cmp(&self.key()).then_with(|| other.seq.cmp(&self.seq))
    }
}

/// A min-heap of timers with lazy, counted cancellation.
pub struct TimerQueue<T> {
    heap: BinaryHeap<Slot<T>>,
    next_seq: u64,
    cancelled: usize,
}

impl<T> Default for TimerQueue<T> {
    fn default() -> Self {
        Self { heap: BinaryHeap::new(), next_seq: 0, cancelled: 0 }
    }
}

impl<T: TimerEntry> TimerQueue<T> {
    pub fn new() -> Self {
        Self::default()
    }

    /// Number of entries held, cancelled ones included.
    pub fn len(&self) -> usize {
        self.heap.len()
    }

    pub fn is_empty(&self) -> bool {
        self.heap.is_empty()
    }

    /// Number of held entries known to be cancelled.
    pub fn cancelled(&self) -> usize {
        self.cancelled
    }

    /// Adds `item` due at `when`.
    pub fn push(&mut self, when: f64, item: T) {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.heap.push(Slot { when, seq, item });
    }

    /// Records that one held entry was cancelled; compacts when they are over
    /// a quarter of the heap.
    pub fn note_cancelled(&mut self, dead: &mut Vec<T>) {
        self.cancelled += 1;
        if self.heap.len() > COMPACT_MIN && self.cancelled * 4 > self.heap.len() {
            self.compact(dead);
        }
    }

    /// Drops every cancelled entry and rebuilds the heap in O(n).
    pub fn compact(&mut self, dead: &mut Vec<T>) {
        let slots = std::mem::take(&mut self.heap).into_vec();
        let mut live = Vec::with_capacity(slots.len() - self.cancelled.min(slots.len()));
        for slot in slots {
            if slot.item.is_cancelled() {
                dead.push(slot.item);
            } else {
                live.push(slot);
            }
        }
        self.heap = BinaryHeap::from(live);
        self.cancelled = 0;
    }

    /// Pops cancelled entries off the top; returns how many were dropped.
    pub fn prune_top(&mut self, dead: &mut Vec<T>) -> usize {
        let mut n = 0;
        while self.heap.peek().is_some_and(|s| s.item.is_cancelled()) {
            if let Some(slot) = self.heap.pop() {
                dead.push(slot.item);
            }
            n += 1;
        }
        self.cancelled = self.cancelled.saturating_sub(n);
        n
    }

    /// Deadline of the earliest live entry (after pruning cancelled ones).
    pub fn next_deadline(&mut self, dead: &mut Vec<T>) -> Option<f64> {
        self.prune_top(dead);
        self.heap.peek().map(|s| s.when)
    }

    /// Deadline of the earliest live entry, without pruning (for a reader
    /// that must not change the queue: a health snapshot). O(1) unless the
    /// top entry was cancelled, then one pass over the heap.
    #[must_use]
    pub fn earliest_live(&self) -> Option<f64> {
        let top = self.heap.peek()?;
        if !top.item.is_cancelled() {
            return Some(top.when);
        }
        self.heap.iter().filter(|s| !s.item.is_cancelled()).map(|s| s.when).min_by(f64::total_cmp)
    }

    /// Pops the earliest live entry if it is due before `end`; cancelled
    /// entries met on the way are dropped.
    pub fn pop_due(&mut self, end: f64, dead: &mut Vec<T>) -> Option<T> {
        loop {
            let top = self.heap.peek()?;
            if !top.when.is_nan() && top.when >= end {
                return None;
            }
            let slot = self.heap.pop()?;
            if slot.item.is_cancelled() {
                self.cancelled = self.cancelled.saturating_sub(1);
                dead.push(slot.item);
                continue;
            }
            return Some(slot.item);
        }
    }

    /// Visits every held item (for a garbage collector's traversal).
    pub fn for_each<E>(&self, mut f: impl FnMut(&T) -> Result<(), E>) -> Result<(), E> {
        self.heap.iter().try_for_each(|s| f(&s.item))
    }

    /// Removes everything (loop close).
    pub fn clear(&mut self) -> Vec<T> {
        self.cancelled = 0;
        std::mem::take(&mut self.heap).into_vec().into_iter().map(|s| s.item).collect()
    }
}
