//! The timer queue: ordering, due-ness, lazy cancellation and reclaiming,
//! plus a long random run checked against a naive model.

// Exact float comparisons are the point here: deadlines are stored, never computed.
#![allow(clippy::float_cmp)]

use std::cell::Cell;
use std::rc::Rc;

use ferroloop_core::time::CLOCK_RESOLUTION;
use ferroloop_core::{TimerEntry, TimerQueue};

/// The queue's compaction floor (`time::queue::COMPACT_MIN`, asyncio's 100).
const COMPACT_MIN: usize = 100;

/// A timer as the loop would hold it: an id and a cancel flag shared with its handle.
struct Timer {
    id: usize,
    cancelled: Rc<Cell<bool>>,
}

impl TimerEntry for Timer {
    fn is_cancelled(&self) -> bool {
        self.cancelled.get()
    }
}

/// The queue as the loop drives it, with the `dead` vector it hands removed
/// entries to.
#[derive(Default)]
struct Fixture {
    q: TimerQueue<Timer>,
    dead: Vec<Timer>,
}

impl Fixture {
    /// Pushes a timer and returns its cancel flag.
    fn push(&mut self, when: f64, id: usize) -> Rc<Cell<bool>> {
        let cancelled = Rc::new(Cell::new(false));
        self.q.push(when, Timer { id, cancelled: Rc::clone(&cancelled) });
        cancelled
    }

    /// Cancels as the loop does: flag the entry, then tell the queue.
    fn cancel(&mut self, flag: &Cell<bool>) {
        flag.set(true);
        self.q.note_cancelled(&mut self.dead);
    }

    fn pop_due(&mut self, end: f64) -> Option<usize> {
        self.q.pop_due(end, &mut self.dead).map(|t| t.id)
    }

    /// Pops every entry due before `end`, as ids.
    fn drain_due(&mut self, end: f64) -> Vec<usize> {
        std::iter::from_fn(|| self.pop_due(end)).collect()
    }

    fn next_deadline(&mut self) -> Option<f64> {
        self.q.next_deadline(&mut self.dead)
    }

    fn prune_top(&mut self) -> usize {
        self.q.prune_top(&mut self.dead)
    }

    /// Ids of the entries handed back so far, in the order they were handed.
    fn dead_ids(&self) -> Vec<usize> {
        self.dead.iter().map(|t| t.id).collect()
    }

    /// Drops the handed-back entries, checking that only cancelled ones were
    /// handed back; returns how many there were.
    fn bury(&mut self) -> usize {
        assert!(self.dead.iter().all(TimerEntry::is_cancelled), "a live entry was handed back");
        let n = self.dead.len();
        self.dead.clear();
        n
    }
}

#[test]
fn orders_by_deadline() {
    let mut f = Fixture::default();
    for (id, when) in [5.0, 1.0, 3.0, 2.0, 4.0].into_iter().enumerate() {
        f.push(when, id);
    }
    assert_eq!(f.next_deadline(), Some(1.0));
    assert_eq!(f.drain_due(f64::INFINITY), [1, 3, 2, 4, 0]);
    assert!(f.q.is_empty());
    assert_eq!(f.next_deadline(), None);
}

#[test]
fn ties_pop_in_scheduling_order() {
    let mut f = Fixture::default();
    // Interleave two deadlines so that the heap has to reorder to keep ties stable.
    for id in 0..50 {
        f.push(if id % 2 == 0 { 7.0 } else { 3.0 }, id);
    }
    let odd: Vec<usize> = (0..50).filter(|i| i % 2 == 1).collect();
    let even: Vec<usize> = (0..50).filter(|i| i % 2 == 0).collect();
    assert_eq!(f.drain_due(5.0), odd);
    assert_eq!(f.drain_due(8.0), even);
}

#[test]
fn nan_deadline_sorts_first_and_is_due_at_once() {
    let mut f = Fixture::default();
    f.push(1.0, 0);
    f.push(f64::NAN, 1);
    f.push(-1e300, 2);
    f.push(f64::NAN, 3);
    assert!(f.next_deadline().is_some_and(f64::is_nan));
    // Due whatever `end` is, even before every finite deadline; NaNs keep their order.
    assert_eq!(f.drain_due(f64::NEG_INFINITY), [1, 3]);
    assert_eq!(f.next_deadline(), Some(-1e300));
    assert_eq!(f.drain_due(0.0), [2]);
    assert_eq!(f.drain_due(1.0), Vec::<usize>::new());
    assert_eq!(f.drain_due(1.5), [0]);
}

#[test]
fn pop_due_respects_end_and_clock_resolution() {
    let now = 12_345.678;
    let mut f = Fixture::default();
    f.push(now + CLOCK_RESOLUTION / 2.0, 0);
    f.push(now + CLOCK_RESOLUTION, 1);
    f.push(now + 1.0, 2);
    // asyncio's rule: due when `when < now + resolution`.
    assert!(f.pop_due(now).is_none());
    assert_eq!(f.drain_due(now + CLOCK_RESOLUTION), [0]);
    assert_eq!(f.q.len(), 2);
    assert_eq!(f.drain_due(now + 2.0 * CLOCK_RESOLUTION), [1]);
    // A deadline equal to `end` is not due.
    assert!(f.pop_due(now + 1.0).is_none());
    assert_eq!(f.drain_due(now + 1.0 + CLOCK_RESOLUTION), [2]);
}

#[test]
fn cancelled_entries_are_never_returned() {
    let mut f = Fixture::default();
    let flags: Vec<_> = (0..20).map(|id| f.push((id % 5) as f64, id)).collect();
    for flag in flags.iter().step_by(2) {
        f.cancel(flag);
    }
    assert_eq!(f.q.cancelled(), 10);
    let got = f.drain_due(2.5);
    assert!(got.iter().all(|id| id % 2 == 1), "{got:?}");
    assert_eq!(got, [5, 15, 1, 11, 7, 17]);
    // The cancelled entries met on the way were dropped and uncounted.
    assert_eq!(f.q.len(), 4 + f.q.cancelled());
    let rest = f.drain_due(f64::INFINITY);
    assert_eq!(rest, [3, 13, 9, 19]);
    assert!(f.q.is_empty());
    assert_eq!(f.q.cancelled(), 0);
}

#[test]
fn next_deadline_skips_cancelled_top() {
    let mut f = Fixture::default();
    let a = f.push(1.0, 0);
    let b = f.push(f64::NAN, 1);
    f.push(2.0, 2);
    f.cancel(&a);
    f.cancel(&b);
    assert_eq!(f.next_deadline(), Some(2.0));
    assert_eq!((f.q.len(), f.q.cancelled()), (1, 0));
}

#[test]
fn prune_top_drops_only_the_cancelled_prefix() {
    let mut f = Fixture::default();
    let flags: Vec<_> = (0..6).map(|id| f.push(id as f64, id)).collect();
    // Cancel 0, 1 (the top) and 4 (buried under the live 2).
    for i in [0, 1, 4] {
        f.cancel(&flags[i]);
    }
    assert_eq!(f.prune_top(), 2);
    assert_eq!((f.q.len(), f.q.cancelled()), (4, 1));
    assert_eq!(f.prune_top(), 0, "a live top stops pruning");
    assert_eq!(f.drain_due(f64::INFINITY), [2, 3, 5]);
    assert_eq!(f.q.cancelled(), 0);
}

#[test]
fn clear_returns_everything_and_resets() {
    let mut f = Fixture::default();
    let a = f.push(1.0, 0);
    f.push(2.0, 1);
    f.cancel(&a);
    let mut ids: Vec<usize> = f.q.clear().into_iter().map(|t| t.id).collect();
    ids.sort_unstable();
    assert_eq!(ids, [0, 1]);
    assert!(f.q.is_empty());
    assert_eq!(f.q.cancelled(), 0);
}

#[test]
fn removed_entries_are_handed_back_not_dropped() {
    let mut f = Fixture::default();
    let flags: Vec<_> = (0..COMPACT_MIN + 10).map(|id| f.push(id as f64, id)).collect();
    f.cancel(&flags[0]);
    f.cancel(&flags[1]);
    assert_eq!(f.prune_top(), 1 + 1);
    f.cancel(&flags[3]);
    assert_eq!(f.pop_due(10.0), Some(2));
    assert_eq!(f.pop_due(10.0), Some(4), "the cancelled 3 was skipped");
    assert_eq!(f.dead_ids(), [0, 1, 3]);
    // The queue kept the items alive: each flag is still shared with its timer.
    assert!([0, 1, 3].iter().all(|&i| Rc::strong_count(&flags[i]) == 2));
    f.bury();
    assert!([0, 1, 3].iter().all(|&i| Rc::strong_count(&flags[i]) == 1));
    // Compaction hands back everything it removes, too.
    for flag in &flags[5..] {
        f.cancel(flag);
    }
    let handed = f.dead.len();
    assert!(handed > 0, "compaction ran");
    assert_eq!(handed + f.q.len(), COMPACT_MIN + 5);
    assert!(f.dead.iter().all(|t| t.id >= 5 && Rc::strong_count(&t.cancelled) == 2));
    assert_eq!(f.bury(), handed);
}

#[test]
fn schedule_and_cancel_a_million_stays_bounded() {
    const N: usize = 1_000_000;
    let mut f = Fixture::default();
    let (mut max_len, mut buried) = (0, 0);
    for id in 0..N {
        // Far-future deadlines: nothing ever becomes due, only compaction reclaims.
        let flag = f.push(1e9 + id as f64, id);
        max_len = max_len.max(f.q.len());
        f.cancel(&flag);
        buried += f.bury();
    }
    assert!(max_len <= COMPACT_MIN + 1, "max_len {max_len}");
    assert!(f.q.len() <= COMPACT_MIN + 1);
    assert_eq!(f.q.len(), f.q.cancelled());
    assert_eq!(buried + f.q.len(), N, "every entry is either held or handed back");
    assert!(f.pop_due(f64::INFINITY).is_none());
    assert_eq!(buried + f.bury(), N);
    assert!(f.q.is_empty());
}

#[test]
fn cancel_churn_next_to_live_timers_stays_bounded() {
    const LIVE: usize = 1_000;
    let mut f = Fixture::default();
    for id in 0..LIVE {
        f.push(id as f64, id);
    }
    let mut max_len = 0;
    for id in LIVE..LIVE + 1_000_000 {
        let flag = f.push(0.5 + (id % 997) as f64, id);
        max_len = max_len.max(f.q.len());
        f.cancel(&flag);
        f.bury();
    }
    // Compaction fires once cancelled entries outnumber live ones.
    assert!(max_len <= 2 * LIVE + 1, "max_len {max_len}");
    assert_eq!(f.drain_due(f64::INFINITY), (0..LIVE).collect::<Vec<_>>());
}

/// xorshift64*: a tiny deterministic generator, enough to shuffle operations.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// The naive model: a flat list scanned in full for every query.
struct ModelEntry {
    when: f64,
    seq: usize,
    cancelled: Rc<Cell<bool>>,
}

fn model_key(e: &ModelEntry) -> (f64, usize) {
    (if e.when.is_nan() { f64::NEG_INFINITY } else { e.when }, e.seq)
}

/// Index of the earliest live entry of the model.
fn model_top(model: &[ModelEntry]) -> Option<usize> {
    (0..model.len()).min_by(|&a, &b| {
        let (ka, sa) = model_key(&model[a]);
        let (kb, sb) = model_key(&model[b]);
        ka.total_cmp(&kb).then(sa.cmp(&sb))
    })
}

fn random_when(rng: &mut Rng) -> f64 {
    match rng.below(40) {
        0 => f64::NAN,
        1 => f64::NEG_INFINITY,
        2 => f64::INFINITY,
        // Few distinct values, so ties are common.
        _ => rng.below(64) as f64 * 0.25,
    }
}

fn same_when(a: Option<f64>, b: Option<f64>) -> bool {
    match (a, b) {
        (Some(x), Some(y)) => x.to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()),
        (None, None) => true,
        _ => false,
    }
}

#[test]
fn random_operations_match_a_naive_model() {
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut f = Fixture::default();
    let mut model: Vec<ModelEntry> = Vec::new();
    let mut seq = 0;
    for step in 0..200_000 {
        match rng.below(20) {
            0..=7 => {
                let when = random_when(&mut rng);
                let cancelled = f.push(when, seq);
                model.push(ModelEntry { when, seq, cancelled });
                seq += 1;
            }
            8..=13 if !model.is_empty() => {
                let e = model.swap_remove(rng.below(model.len() as u64) as usize);
                f.cancel(&e.cancelled);
                assert!(
                    f.q.len() <= COMPACT_MIN || 2 * f.q.cancelled() <= f.q.len(),
                    "step {step}: {} of {} held entries are cancelled",
                    f.q.cancelled(),
                    f.q.len()
                );
            }
            14 => {
                let want = model_top(&model).map(|i| model[i].when);
                assert!(same_when(f.next_deadline(), want), "step {step}");
            }
            15 => {
                f.prune_top();
            }
            16 => {
                f.q.compact(&mut f.dead);
                assert_eq!((f.q.len(), f.q.cancelled()), (model.len(), 0), "step {step}");
            }
            _ => {
                let end = random_when(&mut rng);
                let expected = model_top(&model).filter(|&i| {
                    let when = model[i].when;
                    when.is_nan() || end.is_nan() || when < end
                });
                let got = f.pop_due(end);
                assert_eq!(got, expected.map(|i| model[i].seq), "step {step}, end {end}");
                if let Some(i) = expected {
                    model.swap_remove(i);
                }
            }
        }
        f.bury();
        assert_eq!(f.q.len(), model.len() + f.q.cancelled(), "step {step}");
    }
    let mut rest = f.drain_due(f64::NAN);
    rest.sort_unstable();
    let mut want: Vec<usize> = model.iter().map(|e| e.seq).collect();
    want.sort_unstable();
    assert_eq!(rest, want);
}

#[test]
fn compaction_starts_once_cancelled_entries_pass_a_quarter() {
    const N: usize = 400;
    let mut f = Fixture::default();
    let flags: Vec<_> = (0..N).map(|id| f.push(id as f64, id)).collect();
    // Cancel from the back, so that no cancelled entry reaches the top.
    for flag in flags.iter().rev().take(N / 4) {
        f.cancel(flag);
    }
    assert_eq!((f.q.len(), f.q.cancelled()), (N, N / 4), "a quarter exactly: kept");
    f.cancel(&flags[N - N / 4 - 1]);
    assert_eq!((f.q.len(), f.q.cancelled()), (N - N / 4 - 1, 0), "one more: compacted");
    assert_eq!(f.bury(), N / 4 + 1);
    assert_eq!(f.drain_due(f64::INFINITY), (0..N - N / 4 - 1).collect::<Vec<_>>());
}

#[test]
fn earliest_live_skips_cancelled_entries_without_changing_the_queue() {
    let mut f = Fixture::default();
    assert_eq!(f.q.earliest_live(), None);
    let first = f.push(1.0, 0);
    f.push(3.0, 1);
    let second = f.push(2.0, 2);
    assert_eq!(f.q.earliest_live(), Some(1.0));
    first.set(true); // flagged, not yet noted: the queue still holds it on top
    assert_eq!(f.q.earliest_live(), Some(2.0));
    second.set(true);
    assert_eq!(f.q.earliest_live(), Some(3.0));
    assert_eq!(f.q.len(), 3);
    f.cancel(&first);
    assert_eq!(f.q.earliest_live(), Some(3.0));
}
