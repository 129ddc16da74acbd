//! The heartbeat: what a watchdog on another thread may read of a running loop.
//!
//! The loop thread is the only writer of `seq` and `phase`: `seq` moves once
//! per callback (a relaxed load and store, no read-modify-write, no clock),
//! `phase` twice per iteration (around the poll). A watchdog reads both; if
//! the loop is in `Phase::Callback` and `seq` has not moved for longer than
//! its threshold, the callback numbered `seq` is blocking the loop.
//!
//! `phase` is one word that also says when the poll in progress began: 0
//! stopped, 1 in callbacks, 2 polling since a time not known, anything else
//! polling since `f64::from_bits(word)` (a clock value the loop read anyway).
//! So the store the loop makes before it polls publishes the poll's start,
//! and a reader on another thread ([`Heartbeat::poll_start`]) can count the
//! poll in progress as idle time without waiting for it to end.
//!
//! `armed` is the watchdog's request: "tell me when callback `seq` ends", and
//! `armed_at` when the watchdog first saw that callback running (so it has run
//! at least since then). The loop compares `armed` with the callback it just
//! ran (one relaxed load); only on a match does it take the slow path. The
//! watchdog (`watchdog.rs`) arms each callback it sees running, at most once
//! per period, without the GIL: a call that holds the GIL throughout is then
//! still timed, and reported by the loop when it returns.
//!
//! Relaxed ordering is enough for `seq` and `phase`: each is a value read on
//! its own, and a stale read only delays a report by one period. `armed_at`
//! is written before `armed` with release ordering, and the loop reads
//! `armed` with acquire ordering on the slow path only.

use std::sync::atomic::{AtomicU64, Ordering};

/// What the loop thread is doing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Not inside `run_forever`.
    Stopped = 0,
    /// Waiting in the poller (idle).
    Polling = 1,
    /// Running callbacks or loop bookkeeping.
    Callback = 2,
}

/// See the module docs.
pub struct Heartbeat {
    seq: AtomicU64,
    /// See the module docs: the phase, and the poll's start while polling.
    phase: AtomicU64,
    armed: AtomicU64,
    /// `f64::to_bits` of the loop clock when `armed` was first seen running.
    armed_at: AtomicU64,
    /// The watchdog's last sighting (watchdog thread only).
    seen: AtomicU64,
}

const NOT_ARMED: u64 = u64::MAX;

const STOPPED: u64 = 0;
const CALLBACK: u64 = 1;
/// Polling, since a time not known; larger words are the poll's start.
const POLLING: u64 = 2;

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Heartbeat>();
};

impl Default for Heartbeat {
    fn default() -> Self {
        Self {
            seq: AtomicU64::new(0),
            phase: AtomicU64::new(STOPPED),
            armed: AtomicU64::new(NOT_ARMED),
            armed_at: AtomicU64::new(0),
            seen: AtomicU64::new(NOT_ARMED),
        }
    }
}

impl Heartbeat {
    /// Loop thread only: numbers the callback about to run; returns its number.
    #[inline]
    pub fn begin_callback(&self) -> u64 {
        let next = self.seq.load(Ordering::Relaxed).wrapping_add(1);
        self.seq.store(next, Ordering::Relaxed);
        next
    }

    /// Loop thread only: whether the watchdog asked to hear of `seq`'s end.
    #[inline]
    #[must_use]
    pub fn is_armed(&self, seq: u64) -> bool {
        self.armed.load(Ordering::Relaxed) == seq
    }

    /// Loop thread only (`Phase::Polling`: since a time not known; see
    /// [`Heartbeat::polling_since`]).
    #[inline]
    pub fn set_phase(&self, phase: Phase) {
        let word = match phase {
            Phase::Stopped => STOPPED,
            Phase::Polling => POLLING,
            Phase::Callback => CALLBACK,
        };
        self.phase.store(word, Ordering::Relaxed);
    }

    /// Loop thread only: the loop polls, since `since` (loop clock, > 0) if
    /// known. One store, as [`Heartbeat::set_phase`].
    #[inline]
    pub fn polling_since(&self, since: Option<f64>) {
        // A positive time's bits are far above the small words; a clock
        // reading of 0.0 (never seen) would count as "not known".
        let word = since.map_or(POLLING, |t| t.to_bits().max(POLLING));
        self.phase.store(word, Ordering::Relaxed);
    }

    /// Any thread: when the poll in progress began (loop clock), if the loop
    /// is polling and said when it started.
    #[must_use]
    pub fn poll_start(&self) -> Option<f64> {
        let word = self.phase.load(Ordering::Relaxed);
        (word > POLLING).then(|| f64::from_bits(word))
    }

    /// Any thread: the number of callbacks begun so far.
    #[must_use]
    pub fn seq(&self) -> u64 {
        self.seq.load(Ordering::Relaxed)
    }

    /// Any thread: the current phase and callback number.
    #[must_use]
    pub fn read(&self) -> (Phase, u64) {
        let phase = match self.phase.load(Ordering::Relaxed) {
            STOPPED => Phase::Stopped,
            CALLBACK => Phase::Callback,
            _ => Phase::Polling,
        };
        (phase, self.seq.load(Ordering::Relaxed))
    }

    /// Any thread: asks the loop to report when callback `seq`, seen running
    /// at `since` (loop clock), ends; `None` withdraws the request.
    pub fn arm(&self, seq: Option<u64>, since: f64) {
        self.armed_at.store(since.to_bits(), Ordering::Relaxed);
        self.armed.store(seq.unwrap_or(NOT_ARMED), Ordering::Release);
    }

    /// Loop thread, slow path: when the armed callback was first seen running.
    #[must_use]
    pub fn armed_since(&self) -> f64 {
        let _ = self.armed.load(Ordering::Acquire);
        f64::from_bits(self.armed_at.load(Ordering::Relaxed))
    }

    /// Watchdog thread: a look at the loop at `now`. A callback not seen
    /// before is armed, with `now` as the time it has run since.
    pub fn observe(&self, now: f64) {
        let (phase, seq) = self.read();
        if phase == Phase::Callback && self.seen.load(Ordering::Relaxed) != seq {
            self.seen.store(seq, Ordering::Relaxed);
            self.arm(Some(seq), now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seq_phase_and_arming() {
        let hb = Heartbeat::default();
        assert_eq!(hb.read(), (Phase::Stopped, 0));
        hb.set_phase(Phase::Callback);
        let s = hb.begin_callback();
        assert_eq!(hb.read(), (Phase::Callback, 1));
        assert!(!hb.is_armed(s));
        hb.arm(Some(s), 2.5);
        assert!(hb.is_armed(s));
        assert!(!hb.is_armed(s + 1));
        assert!((hb.armed_since() - 2.5).abs() < f64::EPSILON);
        hb.arm(None, 0.0);
        assert!(!hb.is_armed(s));
        hb.observe(3.0);
        assert!(hb.is_armed(s));
        hb.arm(None, 0.0);
        hb.observe(4.0); // seen already: not armed again
        assert!(!hb.is_armed(s));
        hb.set_phase(Phase::Polling);
        assert_eq!(hb.read().0, Phase::Polling);
        assert_eq!(hb.poll_start(), None);
    }

    #[test]
    fn the_poll_in_progress_says_when_it_began() {
        let hb = Heartbeat::default();
        hb.polling_since(Some(12.5));
        assert_eq!(hb.read(), (Phase::Polling, 0));
        assert_eq!(hb.poll_start(), Some(12.5));
        hb.polling_since(None);
        assert_eq!((hb.read().0, hb.poll_start()), (Phase::Polling, None));
        hb.polling_since(Some(0.0));
        assert_eq!((hb.read().0, hb.poll_start()), (Phase::Polling, None));
        hb.set_phase(Phase::Callback);
        assert_eq!((hb.read().0, hb.poll_start()), (Phase::Callback, None));
        hb.set_phase(Phase::Stopped);
        assert_eq!((hb.read().0, hb.poll_start()), (Phase::Stopped, None));
    }

    #[test]
    fn readable_from_another_thread() {
        let hb = std::sync::Arc::new(Heartbeat::default());
        for _ in 0..10 {
            hb.begin_callback();
        }
        let other = std::sync::Arc::clone(&hb);
        assert_eq!(std::thread::spawn(move || other.seq()).join().unwrap_or(0), 10);
    }
}
