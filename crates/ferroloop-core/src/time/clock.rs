//! The loop's clock: real (`CLOCK_MONOTONIC`) or virtual (for tests).
//!
//! A virtual clock is a number of seconds that moves only when told: by
//! [`VirtualClock::advance`]/[`VirtualClock::jump_to`] (from any thread), or, in
//! autojump mode, by the run loop when it would otherwise sleep until a timer:
//! it then moves to that timer's deadline instead (see [`Clock::plan_wait`]).
//!
//! Ground rules:
//! - Only the loop's own time (`loop.time()`, timer deadlines, the poll's
//!   timeout) follows this clock. Health figures and debug-mode timing keep
//!   reading [`monotonic`]: a slow callback is slow in real seconds.
//! - A virtual clock never moves backwards; `jump_to` an earlier time is a no-op.
//! - The clock never jumps while a callback is ready, and never past a moment
//!   at which a descriptor that is ready would have been seen: the run loop
//!   polls (for at most the autojump threshold, in real time) first, and jumps
//!   only when that poll reported nothing.
//! - `Send + Sync`: the value is an atomic, so another thread may read or
//!   advance it while the loop runs.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use super::{monotonic, timeout_until};

/// A clock that moves only when told (see the module doc).
#[derive(Debug)]
pub struct VirtualClock {
    now: AtomicU64,
    autojump: AtomicBool,
    /// Real seconds to wait for I/O before an autojump, as f64 bits.
    threshold: AtomicU64,
}

impl VirtualClock {
    /// A clock at `start` seconds; with `autojump`, idle waits jump to the
    /// next deadline after `threshold` real seconds without I/O.
    pub fn new(start: f64, autojump: bool, threshold: f64) -> Self {
        Self {
            now: AtomicU64::new(start.to_bits()),
            autojump: AtomicBool::new(autojump),
            threshold: AtomicU64::new(threshold.max(0.0).to_bits()),
        }
    }

    /// The virtual time now.
    pub fn now(&self) -> f64 {
        f64::from_bits(self.now.load(Ordering::Acquire))
    }

    /// Moves the clock to `when` if that is later; returns the time after.
    pub fn jump_to(&self, when: f64) -> f64 {
        let mut cur = self.now.load(Ordering::Acquire);
        loop {
            let old = f64::from_bits(cur);
            // NaN and earlier times leave the clock as it is.
            if when.is_nan() || when <= old {
                return old;
            }
            match self.now.compare_exchange_weak(cur, when.to_bits(), Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return when,
                Err(seen) => cur = seen,
            }
        }
    }

    /// Moves the clock forward by `seconds` (negative: not at all).
    pub fn advance(&self, seconds: f64) -> f64 {
        self.jump_to(self.now() + seconds.max(0.0))
    }

    pub fn autojump(&self) -> bool {
        self.autojump.load(Ordering::Relaxed)
    }

    pub fn set_autojump(&self, on: bool) {
        self.autojump.store(on, Ordering::Relaxed);
    }

    pub fn threshold(&self) -> f64 {
        f64::from_bits(self.threshold.load(Ordering::Relaxed))
    }

    pub fn set_threshold(&self, seconds: f64) {
        self.threshold.store(seconds.max(0.0).to_bits(), Ordering::Relaxed);
    }
}

/// How the run loop waits when no callback is ready (see [`Clock::plan_wait`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Wait {
    /// The real poll timeout (None: until I/O arrives).
    pub timeout: Option<Duration>,
    /// When the poll reports nothing: the virtual time to jump to.
    pub jump: Option<f64>,
}

/// The loop's time source: real, or virtual for tests.
#[derive(Debug, Default)]
pub enum Clock {
    #[default]
    Real,
    Virtual(VirtualClock),
}

impl Clock {
    /// The loop's time now.
    #[inline]
    pub fn now(&self) -> f64 {
        match self {
            Clock::Real => monotonic(),
            Clock::Virtual(v) => v.now(),
        }
    }

    pub fn as_virtual(&self) -> Option<&VirtualClock> {
        match self {
            Clock::Real => None,
            Clock::Virtual(v) => Some(v),
        }
    }

    /// The poll's wait when no callback is ready and `next` is the earliest
    /// deadline (None: no timer). On the real clock, the time to that
    /// deadline. On a virtual one: no wait when it is due; with autojump, the
    /// threshold in real time, then a jump to the deadline if nothing
    /// happened; without, until I/O arrives (or the clock is advanced from
    /// another thread, which wakes the poll).
    pub fn plan_wait(&self, next: Option<f64>) -> Wait {
        match self {
            Clock::Real => Wait { timeout: next.map(|when| timeout_until(when, monotonic())), jump: None },
            Clock::Virtual(v) => match next {
                None => Wait { timeout: None, jump: None },
                Some(when) => {
                    let due = timeout_until(when, v.now());
                    if due.is_zero() {
                        Wait { timeout: Some(Duration::ZERO), jump: None }
                    } else if v.autojump() {
                        let threshold = Duration::from_secs_f64(v.threshold().min(super::MAX_POLL_TIMEOUT));
                        Wait { timeout: Some(threshold), jump: Some(when) }
                    } else {
                        Wait { timeout: None, jump: None }
                    }
                }
            },
        }
    }
}

#[cfg(test)]
#[allow(clippy::float_cmp)] // the clock's values are set exactly, never computed
mod tests {
    use super::*;

    #[test]
    fn virtual_moves_only_forward() {
        let v = VirtualClock::new(100.0, false, 0.0);
        assert_eq!(v.now(), 100.0);
        assert_eq!(v.advance(2.5), 102.5);
        assert_eq!(v.jump_to(50.0), 102.5);
        assert_eq!(v.jump_to(f64::NAN), 102.5);
        assert_eq!(v.advance(-3.0), 102.5);
        assert_eq!(v.jump_to(200.0), 200.0);
    }

    #[test]
    fn autojump_plans_a_jump_to_the_deadline() {
        let c = Clock::Virtual(VirtualClock::new(0.0, true, 0.0));
        assert_eq!(c.plan_wait(Some(30.0)), Wait { timeout: Some(Duration::ZERO), jump: Some(30.0) });
        assert_eq!(c.plan_wait(Some(0.0)), Wait { timeout: Some(Duration::ZERO), jump: None });
        assert_eq!(c.plan_wait(None), Wait { timeout: None, jump: None });
    }

    #[test]
    fn threshold_is_the_real_wait() {
        let c = Clock::Virtual(VirtualClock::new(0.0, true, 0.25));
        assert_eq!(c.plan_wait(Some(5.0)).timeout, Some(Duration::from_millis(250)));
        c.as_virtual().unwrap().set_autojump(false);
        assert_eq!(c.plan_wait(Some(5.0)), Wait { timeout: None, jump: None });
    }

    #[test]
    fn real_clock_waits_until_the_deadline() {
        let w = Clock::Real.plan_wait(Some(monotonic() + 10.0));
        assert!(w.timeout.unwrap() > Duration::from_secs(9));
        assert_eq!(w.jump, None);
    }
}
