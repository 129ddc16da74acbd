//! The loop clock: `monotonic()` is `CLOCK_MONOTONIC` as Python reads it, and
//! `timeout_until` turns a deadline into a poll timeout that never wakes early.

use std::time::{Duration, Instant};

use ferroloop_core::time::{timeout_until, CLOCK_RESOLUTION, MAX_POLL_TIMEOUT};
use ferroloop_core::{monotonic, sys, Poller};

#[test]
fn monotonic_never_goes_backwards() {
    let mut last = monotonic();
    for _ in 0..200_000 {
        let now = monotonic();
        assert!(now >= last, "{now} < {last}");
        last = now;
    }
}

#[test]
fn monotonic_is_clock_monotonic_in_seconds() {
    // The conversion is monotone, so a raw read taken between two of ours
    // must land between them exactly.
    let before = monotonic();
    let ts = sys::clock_monotonic();
    let after = monotonic();
    let raw = (i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)) as f64 / 1e9;
    assert!(before <= raw && raw <= after, "{before} <= {raw} <= {after}");
}

#[test]
fn monotonic_ticks_with_std_instant() {
    // std's Instant reads CLOCK_MONOTONIC too. Nesting one interval inside the
    // other bounds the difference without any timing tolerance, except the
    // rounding of two f64 values around the current uptime.
    let eps = 1e-6;
    let outer = Instant::now();
    let t0 = monotonic();
    std::thread::sleep(Duration::from_millis(20));
    let t1 = monotonic();
    let outer = outer.elapsed().as_secs_f64();
    assert!(t1 - t0 <= outer + eps, "{} > {outer}", t1 - t0);

    let t0 = monotonic();
    let inner = Instant::now();
    std::thread::sleep(Duration::from_millis(20));
    let inner = inner.elapsed().as_secs_f64();
    let t1 = monotonic();
    assert!(t1 - t0 >= inner - eps, "{} < {inner}", t1 - t0);
    assert!(inner >= 0.020);
}

#[test]
fn clock_resolution_is_below_one_tick_of_uptime() {
    // Adding the resolution to a current reading must change it, or the
    // "due within the resolution" rule would be a no-op.
    let now = monotonic();
    assert!(now + CLOCK_RESOLUTION > now);
}

#[test]
fn timeout_until_is_the_plain_difference_in_range() {
    assert_eq!(timeout_until(101.5, 100.0), Duration::from_millis(1500));
    assert_eq!(timeout_until(100.000_001, 100.0).as_micros(), 1);
    // Sub-millisecond timeouts stay non-zero: the poller rounds them up.
    assert!(timeout_until(100.0 + 1e-7, 100.0) > Duration::ZERO);
}

#[test]
fn timeout_until_clamps_past_and_nan_to_zero() {
    let now = 1000.0;
    for when in [now, now - 1.0, -1e300, f64::NEG_INFINITY, f64::NAN] {
        assert_eq!(timeout_until(when, now), Duration::ZERO, "when {when}");
    }
    assert_eq!(timeout_until(5.0, f64::NAN), Duration::ZERO);
    assert_eq!(timeout_until(f64::INFINITY, f64::INFINITY), Duration::ZERO);
}

#[test]
fn timeout_until_caps_huge_deadlines() {
    let cap = Duration::from_secs_f64(MAX_POLL_TIMEOUT);
    assert_eq!(cap, Duration::from_secs(86_400));
    for when in [1000.0 + MAX_POLL_TIMEOUT, 1e12, 1e300, f64::MAX, f64::INFINITY] {
        assert_eq!(timeout_until(when, 1000.0), cap, "when {when}");
    }
    assert_eq!(timeout_until(0.0, f64::NEG_INFINITY), cap);
}

#[test]
fn poll_timeout_never_wakes_before_the_deadline() {
    let poller = Poller::new().unwrap();
    let mut out = Vec::new();
    for delay in [0.000_2, 0.000_9, 0.001_5, 0.003] {
        let deadline = monotonic() + delay;
        poller.poll(Some(timeout_until(deadline, monotonic())), &mut out).unwrap();
        let now = monotonic();
        assert!(now >= deadline, "woke {:.1} µs early for {delay}", (deadline - now) * 1e6);
    }
    assert!(out.is_empty());
}
