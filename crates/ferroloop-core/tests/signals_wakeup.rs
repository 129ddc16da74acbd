//! The signal wake-up channel: a byte written to its write end, as `CPython`'s
//! C-level handler does for `signal.set_wakeup_fd`, wakes the poller and comes
//! back from `drain` in arrival order.

use std::sync::atomic::{AtomicI32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use ferroloop_core::{sys, syscall, Interest, Poller, Readiness, SignalChannel};

const READ: Interest = Interest { read: true, write: false };
const TOKEN: usize = 9;
const PATIENCE: Duration = Duration::from_secs(10);

/// A poller watching a fresh channel under [`TOKEN`].
fn setup() -> (Poller, SignalChannel) {
    let poller = Poller::new().unwrap();
    let channel = SignalChannel::new().unwrap();
    poller.register(channel.read_fd(), TOKEN, READ).unwrap();
    (poller, channel)
}

/// Polls until the channel is reported readable (retrying on `EINTR`, as the
/// loop does); returns how many polls were interrupted.
fn wait_readable(poller: &Poller) -> usize {
    let deadline = Instant::now() + PATIENCE;
    let mut interrupted = 0;
    let mut out = Vec::new();
    loop {
        let left =
            deadline.checked_duration_since(Instant::now()).expect("the channel never woke the poller");
        match poller.poll(Some(left), &mut out) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => interrupted += 1,
            Err(e) => panic!("poll failed: {e}"),
        }
        if out.iter().any(|r| r.token == TOKEN) {
            assert_eq!(out, [Readiness { token: TOKEN, readable: true, writable: false, closed: false }]);
            return interrupted;
        }
    }
}

fn drain(channel: &SignalChannel) -> Vec<u8> {
    let mut got = Vec::new();
    channel.drain(&mut got);
    got
}

#[test]
fn send_wakes_the_poller_and_drain_returns_the_byte() {
    let (poller, channel) = setup();
    channel.send(libc::SIGINT as u8).unwrap();
    wait_readable(&poller);
    assert_eq!(drain(&channel), [libc::SIGINT as u8]);
    assert!(drain(&channel).is_empty());
}

#[test]
fn signals_drain_in_arrival_order() {
    let (poller, channel) = setup();
    let sent = [2u8, 15, 10, 1, 2, 17];
    for signum in sent {
        channel.send(signum).unwrap();
    }
    wait_readable(&poller);
    assert_eq!(drain(&channel), sent);
    // The next signal is a new edge: the poller reports it again.
    channel.send(28).unwrap();
    wait_readable(&poller);
    assert_eq!(drain(&channel), [28]);
}

#[test]
fn drain_of_an_empty_channel_returns_at_once() {
    let channel = SignalChannel::new().unwrap();
    let start = Instant::now();
    assert!(drain(&channel).is_empty());
    assert!(start.elapsed() < Duration::from_secs(1));
}

#[test]
fn a_full_channel_refuses_without_blocking_and_drains_everything() {
    let (poller, channel) = setup();
    // CPython's handler ignores EAGAIN; it must never block inside a handler.
    let mut sent = 0usize;
    let err = loop {
        match channel.send(sent as u8) {
            Ok(()) => sent += 1,
            Err(e) => break e,
        }
        assert!(sent < 64 << 20, "the channel never filled up");
    };
    assert_eq!(err.kind(), std::io::ErrorKind::WouldBlock);
    wait_readable(&poller);
    let got = drain(&channel);
    assert_eq!(got.len(), sent);
    assert!(got.iter().enumerate().all(|(i, &b)| b == i as u8));
}

#[test]
fn write_from_another_thread_wakes_a_blocked_poller() {
    let (poller, channel) = setup();
    let write_fd = channel.write_fd();
    let writer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(30));
        sys::write(write_fd, &[libc::SIGTERM as u8]).unwrap();
    });
    wait_readable(&poller);
    assert_eq!(drain(&channel), [libc::SIGTERM as u8]);
    writer.join().unwrap();
}

#[test]
fn the_channel_is_nonblocking_and_close_on_exec() {
    let channel = SignalChannel::new().unwrap();
    for fd in [channel.read_fd(), channel.write_fd()] {
        let flags = syscall!(fcntl(fd, libc::F_GETFL)).unwrap();
        assert_ne!(flags & libc::O_NONBLOCK, 0, "fd {fd} blocks");
        let fd_flags = syscall!(fcntl(fd, libc::F_GETFD)).unwrap();
        assert_ne!(fd_flags & libc::FD_CLOEXEC, 0, "fd {fd} leaks into children");
    }
}

#[test]
fn drop_closes_both_ends() {
    // A duplicate keeps one socket alive, so fd-number reuse cannot fool us;
    // it then sees its peer, the channel's other end, closed by the drop.
    let channel = SignalChannel::new().unwrap();
    let read_dup = syscall!(dup(channel.read_fd())).unwrap();
    drop(channel);
    assert_eq!(sys::read(read_dup, &mut [0u8; 4]).unwrap(), 0, "the write end is still open");
    sys::close(read_dup).unwrap();

    let channel = SignalChannel::new().unwrap();
    let write_dup = syscall!(dup(channel.write_fd())).unwrap();
    drop(channel);
    // Rust's runtime ignores SIGPIPE, so this fails with EPIPE instead of killing us.
    let err = sys::write(write_dup, &[1]).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EPIPE), "the read end is still open");
    sys::close(write_dup).unwrap();
}

/// The write end the test signal handler writes to, as `CPython`'s wake-up fd.
static WAKEUP_FD: AtomicI32 = AtomicI32::new(-1);

/// What `CPython`'s C-level handler does: write the signal number, one byte.
/// Async-signal-safe: one atomic load and one `write(2)` to a non-blocking
/// socket with room, which succeeds and so leaves `errno` alone.
extern "C" fn wakeup_handler(signum: libc::c_int) {
    let fd = WAKEUP_FD.load(Ordering::Relaxed);
    if fd >= 0 {
        let _ = sys::write(fd, &[signum as u8]);
    }
}

#[test]
fn a_real_signal_interrupts_the_poll_and_its_number_arrives() {
    let (poller, channel) = setup();
    WAKEUP_FD.store(channel.write_fd(), Ordering::Relaxed);
    let handler = wakeup_handler as extern "C" fn(libc::c_int);
    // SAFETY: the handler is async-signal-safe (see above) and stays valid for
    // the life of the process; no other test of this binary uses SIGUSR1.
    let previous = unsafe { libc::signal(libc::SIGUSR1, handler as libc::sighandler_t) };
    assert_ne!(previous, libc::SIG_ERR);

    // SAFETY: pthread_self has no preconditions.
    let target = unsafe { libc::pthread_self() };
    let killer = thread::spawn(move || {
        thread::sleep(Duration::from_millis(50));
        // SAFETY: `target` is this test's thread, alive until `killer` is
        // joined below; SIGUSR1 has a handler installed, so it cannot kill us.
        let rc = unsafe { libc::pthread_kill(target, libc::SIGUSR1) };
        assert_eq!(rc, 0);
    });
    // The signal lands while we block: epoll_wait fails with EINTR (it is never
    // restarted), and the handler's byte makes the channel readable.
    let interrupted = wait_readable(&poller);
    killer.join().unwrap();
    assert!(interrupted <= 1, "{interrupted} interruptions for one signal");
    assert_eq!(drain(&channel), [libc::SIGUSR1 as u8]);
    WAKEUP_FD.store(-1, Ordering::Relaxed);
}
