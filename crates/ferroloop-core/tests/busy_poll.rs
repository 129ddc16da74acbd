//! Busy polling: the adaptive window opens after a poll woken early, events
//! and notifications that arrive while the poller spins are delivered (none
//! is lost), a poll's timeout still bounds it, and a long idle sleep closes
//! the window again.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixStream;
use std::thread;
use std::time::{Duration, Instant};

mod common;

use common::{pair, PATIENCE, READ};
use ferroloop_core::{Poller, Readiness};

const TOKEN: usize = 5;

/// Opens the window: a blocking poll that finds data at once was woken well
/// within `max`. Returns the reader and writer used.
fn open_window(poller: &Poller) -> (UnixStream, UnixStream) {
    let (a, mut b) = pair();
    poller.register(a.as_raw_fd(), TOKEN, READ).unwrap();
    for _ in 0..100 {
        b.write_all(b"x").unwrap();
        let mut out = Vec::new();
        poller.poll(Some(PATIENCE), &mut out).unwrap();
        assert!(out.iter().any(|r| r.token == TOKEN));
        // Re-arm the edge trigger for the next round.
        std::io::Read::read(&mut &a, &mut [0; 16]).unwrap();
        poller.rearm(a.as_raw_fd(), TOKEN, READ).unwrap();
        if !poller.busy_poll_window().is_zero() {
            return (a, b);
        }
    }
    panic!("the busy-poll window never opened");
}

#[test]
fn the_window_is_closed_until_a_poll_is_woken_early() {
    let poller = Poller::new().unwrap();
    assert_eq!(poller.busy_poll_window(), Duration::ZERO, "off by default");
    poller.set_busy_poll(Duration::from_secs(8));
    assert_eq!(poller.busy_poll_window(), Duration::ZERO, "closed until traffic is seen");
    open_window(&poller);
    assert!(poller.busy_poll_window() <= Duration::from_secs(8));
}

#[test]
fn an_event_that_arrives_during_the_spin_is_reported() {
    let poller = Poller::new().unwrap();
    poller.set_busy_poll(Duration::from_secs(8)); // window: 1 s once open
    let (_a, b) = open_window(&poller);
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        (&b).write_all(b"late").unwrap();
        b
    });
    let mut out = Vec::new();
    poller.poll(Some(PATIENCE), &mut out).unwrap();
    writer.join().unwrap();
    assert_eq!(out, [Readiness { token: TOKEN, readable: true, writable: false, closed: false }]);
}

#[test]
fn a_notification_ends_the_spin() {
    let poller = Poller::new().unwrap();
    poller.set_busy_poll(Duration::from_secs(8));
    let _pair = open_window(&poller);
    let notifier = poller.notifier().clone();
    let started = Instant::now();
    let waker = thread::spawn(move || {
        thread::sleep(Duration::from_millis(5));
        notifier.notify().unwrap();
    });
    let mut out = Vec::new();
    poller.poll(None, &mut out).unwrap();
    waker.join().unwrap();
    assert!(out.is_empty(), "notifications are consumed, not reported");
    assert!(started.elapsed() < PATIENCE);
    // The notification was consumed: the next poll sleeps to its timeout.
    poller.poll(Some(Duration::from_millis(1)), &mut out).unwrap();
    assert!(out.is_empty());
}

#[test]
fn the_timeout_bounds_the_spin() {
    let poller = Poller::new().unwrap();
    poller.set_busy_poll(Duration::from_secs(8)); // window: 1 s once open
    let _pair = open_window(&poller);
    let started = Instant::now();
    let mut out = Vec::new();
    poller.poll(Some(Duration::from_millis(10)), &mut out).unwrap();
    assert!(out.is_empty());
    assert!(started.elapsed() < Duration::from_millis(500), "spun past the timeout");
}

#[test]
fn a_long_sleep_closes_the_window() {
    let poller = Poller::new().unwrap();
    poller.set_busy_poll(Duration::from_millis(2));
    let _pair = open_window(&poller);
    let mut out = Vec::new();
    // Each idle poll outlasts the largest window: the window halves each time.
    for _ in 0..8 {
        poller.poll(Some(Duration::from_millis(20)), &mut out).unwrap();
    }
    assert!(out.is_empty());
    assert_eq!(poller.busy_poll_window(), Duration::ZERO);
}

#[test]
fn zero_turns_busy_polling_off() {
    let poller = Poller::new().unwrap();
    poller.set_busy_poll(Duration::from_secs(8));
    open_window(&poller);
    poller.set_busy_poll(Duration::ZERO);
    assert_eq!(poller.busy_poll_window(), Duration::ZERO);
    let (a, mut b) = pair();
    poller.register(a.as_raw_fd(), TOKEN + 1, READ).unwrap();
    b.write_all(b"x").unwrap();
    let mut out = Vec::new();
    poller.poll(Some(PATIENCE), &mut out).unwrap();
    assert!(out.iter().any(|r| r.token == TOKEN + 1));
    assert_eq!(poller.busy_poll_window(), Duration::ZERO, "stays closed when off");
}
