//! Time: the one clock of the loop and the timer queue.
//!
//! A loop made for tests may run on a virtual clock instead ([`Clock`],
//! `clock.rs`); everything else here is about the real one.
//!
//! The clock is `CLOCK_MONOTONIC` read as seconds in an `f64`, exactly what
//! Python's `time.monotonic()` returns, so `loop.time()` equals it and deadlines
//! computed in Python (`loop.time() + delay`) compare with ours without skew.
//!
//! Deadline rounding lives here and only here: a timer is due when
//! `when < now + CLOCK_RESOLUTION` (asyncio's `_run_once` rule), and the poll
//! timeout is `when - now` rounded *up* to whole milliseconds by the poller, so a
//! wake-up never comes before the deadline.

mod clock;
mod queue;

pub use clock::{Clock, VirtualClock, Wait};
pub use queue::{TimerEntry, TimerQueue};

use crate::sys;

/// Resolution of `CLOCK_MONOTONIC` as Python reports it on Linux
/// (`time.get_clock_info('monotonic').resolution`).
pub const CLOCK_RESOLUTION: f64 = 1e-9;

/// asyncio's cap on one poll timeout (`MAXIMUM_SELECT_TIMEOUT`), one day.
pub const MAX_POLL_TIMEOUT: f64 = 24.0 * 3600.0;

/// Seconds on the monotonic clock, bit-for-bit what `time.monotonic()` returns.
pub fn monotonic() -> f64 {
    let ts = sys::clock_monotonic();
    // CPython computes `sec * 1e9 + nsec` in 64-bit integer nanoseconds
    // (`_PyTime_t`), converts that to a double and divides (a multiple of 1e9
    // gives the same double either way). i64 holds 292 years of uptime, and its
    // conversion is one instruction where i128's is a library call.
    #[allow(clippy::useless_conversion)] // time_t and c_long are i32 on 32-bit targets
    let ns = i64::from(ts.tv_sec).saturating_mul(1_000_000_000).saturating_add(i64::from(ts.tv_nsec));
    ns as f64 / 1e9
}

/// The poll timeout for the earliest deadline `when` at time `now`, clamped to
/// `[0, MAX_POLL_TIMEOUT]`. A NaN deadline is due at once (asyncio's `max(0, nan)`).
pub fn timeout_until(when: f64, now: f64) -> std::time::Duration {
    let secs = when - now;
    if secs.is_nan() || secs <= 0.0 {
        return std::time::Duration::ZERO;
    }
    std::time::Duration::from_secs_f64(secs.min(MAX_POLL_TIMEOUT))
}
