//! The poller over raw fds: readiness reports carry the caller's token, the
//! edge trigger fires again only after `rearm`, and (de)registration copes with
//! fds the kernel has already forgotten.

use std::io::{Read, Write};
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

mod common;

use common::{pair, PATIENCE, READ};
use ferroloop_core::{sys, syscall, Interest, Poller, Readiness};

const WRITE: Interest = Interest { read: false, write: true };
const BOTH: Interest = Interest { read: true, write: true };
const NONE: Interest = Interest { read: false, write: false };

/// Long enough for any pending event to show up; nothing here waits on a timer.
const SETTLE: Duration = Duration::from_millis(50);

/// One poll; the reports for `token` only.
fn poll_token(poller: &Poller, timeout: Duration, token: usize) -> Vec<Readiness> {
    let mut out = Vec::new();
    poller.poll(Some(timeout), &mut out).unwrap();
    out.retain(|r| r.token == token);
    out
}

fn readable(token: usize) -> Readiness {
    Readiness { token, readable: true, writable: false, closed: false }
}

#[test]
fn readable_event_carries_the_token() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    poller.register(a.as_raw_fd(), 7, READ).unwrap();
    assert!(poll_token(&poller, Duration::ZERO, 7).is_empty(), "nothing to read yet");
    b.write_all(b"ping").unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 7), [readable(7)]);
}

#[test]
fn edge_trigger_fires_again_only_after_rearm() {
    let poller = Poller::new().unwrap();
    let (mut a, mut b) = pair();
    poller.register(a.as_raw_fd(), 3, READ).unwrap();
    b.write_all(b"data").unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 3), [readable(3)]);
    // Not drained, but the edge was consumed: silence...
    assert!(poll_token(&poller, SETTLE, 3).is_empty());
    // ...until the caller re-arms, which re-evaluates readiness (level-triggered emulation).
    poller.rearm(a.as_raw_fd(), 3, READ).unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 3), [readable(3)]);
    poller.rearm(a.as_raw_fd(), 3, READ).unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 3), [readable(3)]);
    // Drained and re-armed: nothing more to report.
    let mut buf = [0u8; 16];
    assert_eq!(a.read(&mut buf).unwrap(), 4);
    poller.rearm(a.as_raw_fd(), 3, READ).unwrap();
    assert!(poll_token(&poller, SETTLE, 3).is_empty());
}

#[test]
fn write_interest_on_a_fresh_socket_is_reported() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    poller.register(a.as_raw_fd(), 11, WRITE).unwrap();
    assert_eq!(
        poll_token(&poller, PATIENCE, 11),
        [Readiness { token: 11, readable: false, writable: true, closed: false }]
    );
}

#[test]
fn read_and_write_interest_report_both_in_one_event() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    b.write_all(b"x").unwrap();
    poller.register(a.as_raw_fd(), 12, BOTH).unwrap();
    assert_eq!(
        poll_token(&poller, PATIENCE, 12),
        [Readiness { token: 12, readable: true, writable: true, closed: false }]
    );
}

#[test]
fn rearm_changes_the_interest() {
    let poller = Poller::new().unwrap();
    let (a, _b) = pair();
    poller.register(a.as_raw_fd(), 13, READ).unwrap();
    assert!(poll_token(&poller, SETTLE, 13).is_empty());
    poller.rearm(a.as_raw_fd(), 13, WRITE).unwrap();
    assert_eq!(
        poll_token(&poller, PATIENCE, 13),
        [Readiness { token: 13, readable: false, writable: true, closed: false }]
    );
    // The token can change with the interest.
    poller.rearm(a.as_raw_fd(), 14, WRITE).unwrap();
    assert!(poll_token(&poller, PATIENCE, 14).iter().all(|r| r.writable));
}

#[test]
fn peer_hang_up_reports_readable_and_writable() {
    let poller = Poller::new().unwrap();
    let (a, b) = pair();
    poller.register(a.as_raw_fd(), 21, READ).unwrap();
    drop(b);
    // Like select(): the failure shows in both directions, and `closed` says no edge will follow.
    assert_eq!(
        poll_token(&poller, PATIENCE, 21),
        [Readiness { token: 21, readable: true, writable: true, closed: true }]
    );
}

#[test]
fn deregister_stops_reports_and_tolerates_forgotten_fds() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    poller.register(a.as_raw_fd(), 31, READ).unwrap();
    poller.deregister(a.as_raw_fd()).unwrap();
    b.write_all(b"late").unwrap();
    assert!(poll_token(&poller, SETTLE, 31).is_empty());
    // Twice (ENOENT) is fine.
    poller.deregister(a.as_raw_fd()).unwrap();

    // Registered, then closed without deregistering: the kernel already forgot it.
    let (c, _d) = pair();
    let fd = c.as_raw_fd();
    poller.register(fd, 32, READ).unwrap();
    drop(c);
    poller.deregister(fd).unwrap();
}

#[test]
fn deregister_of_a_closed_fd_is_ok() {
    let poller = Poller::new().unwrap();
    let (r, w) = sys::socketpair_nonblocking().unwrap();
    poller.register(r, 33, READ).unwrap();
    sys::close(r).unwrap();
    sys::close(w).unwrap();
    // The number may be reused by a parallel test by now; either way this is Ok.
    poller.deregister(r).unwrap();
}

#[test]
fn empty_interest_unregisters_and_rearm_registers_again() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();
    let fd = a.as_raw_fd();
    // An empty interest watches nothing...
    poller.register(fd, 41, NONE).unwrap();
    b.write_all(b"1").unwrap();
    assert!(poll_token(&poller, SETTLE, 41).is_empty());
    // ...and a later rearm starts watching it.
    poller.rearm(fd, 41, READ).unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 41), [readable(41)]);
    // Rearming to nothing deregisters; rearming to something registers again.
    poller.rearm(fd, 41, NONE).unwrap();
    b.write_all(b"2").unwrap();
    assert!(poll_token(&poller, SETTLE, 41).is_empty());
    poller.rearm(fd, 42, READ).unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 42), [readable(42)]);
}

/// Closes `fd`, ignoring errors (test cleanup).
fn close_quietly(fd: RawFd) {
    let _ = sys::close(fd);
}

#[test]
fn rearm_after_the_fd_number_was_reused_registers_the_new_file() {
    let poller = Poller::new().unwrap();
    let (old, old_peer) = sys::socketpair_nonblocking().unwrap();
    let (new, new_peer) = sys::socketpair_nonblocking().unwrap();
    poller.register(old, 51, READ).unwrap();
    // Make `old`'s number name the new socket: the old file closes and the
    // kernel drops its registration, so the re-arm meets ENOENT.
    syscall!(dup2(new, old)).unwrap();
    poller.rearm(old, 51, READ).unwrap();
    sys::write(new_peer, b"n").unwrap();
    assert_eq!(poll_token(&poller, PATIENCE, 51), [readable(51)]);
    for fd in [old, old_peer, new, new_peer] {
        close_quietly(fd);
    }
}

#[test]
fn poll_appends_and_reports_many_sources() {
    let poller = Poller::new().unwrap();
    let pairs: Vec<_> = (0..64).map(|_| pair()).collect();
    for (i, (a, _)) in pairs.iter().enumerate() {
        poller.register(a.as_raw_fd(), 100 + i, READ).unwrap();
    }
    for (_, b) in &pairs {
        (&*b).write_all(b"!").unwrap();
    }
    let sentinel = Readiness { token: usize::MAX, readable: false, writable: false, closed: false };
    let mut out = vec![sentinel];
    while out.len() < 1 + pairs.len() {
        poller.poll(Some(PATIENCE), &mut out).unwrap();
    }
    assert_eq!(out[0], sentinel, "poll appends, it does not clear");
    let mut tokens: Vec<usize> = out[1..].iter().map(|r| r.token).collect();
    tokens.sort_unstable();
    assert_eq!(tokens, (100..100 + pairs.len()).collect::<Vec<_>>());
    assert!(out[1..].iter().all(|r| r.readable && !r.writable));
}

#[test]
fn close_releases_the_fds_and_fails_later_calls() {
    // (That the fds are closed is checked from Python, counting /proc/self/fd: tests here run
    // in parallel threads of one process.)
    let (a, _b) = pair();
    let poller = Poller::new().unwrap();
    let signals = ferroloop_core::SignalChannel::new().unwrap();
    poller.register(a.as_raw_fd(), 5, READ).unwrap();
    poller.close();
    signals.close();
    let mut out = Vec::new();
    let err = poller.poll(Some(Duration::ZERO), &mut out).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EBADF));
    assert_eq!(poller.register(a.as_raw_fd(), 5, READ).unwrap_err().raw_os_error(), Some(libc::EBADF));
    poller.deregister(a.as_raw_fd()).unwrap();
    poller.notifier().notify().unwrap();
    assert_eq!((signals.read_fd(), signals.write_fd()), (-1, -1));
    assert_eq!(signals.send(2).unwrap_err().raw_os_error(), Some(libc::EBADF));
    let mut got = Vec::new();
    signals.drain(&mut got);
    assert!(got.is_empty());
    poller.close();
    signals.close();
}
