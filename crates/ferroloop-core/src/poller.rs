//! Readiness polling over mio (epoll on Linux, kqueue on the BSDs and macOS).
//!
//! Owns the `mio::Poll` and its event buffer. Sources are raw fds identified by
//! a caller-chosen token; mio is edge-triggered, so a caller that wants
//! level-triggered semantics (asyncio's `add_reader`) calls [`Poller::rearm`]
//! after dispatching, which re-evaluates readiness in the kernel.
//!
//! Token 0 is reserved for the cross-thread [`crate::Notifier`].
//!
//! Busy polling: before a poll that would block, the poller may first poll
//! without blocking for a short, adaptive window ([`BusyPoll`]), so that a
//! reply arriving microseconds later is picked up without the thread going
//! to sleep. A sleeping thread's wake-up is what a ping-pong of small
//! messages mostly waits on, and on virtual machines (whose idle CPU exits
//! to the hypervisor) it costs tens of microseconds of latency and CPU.
//! The window follows the traffic, as Linux's guest halt-polling does: it
//! grows when a blocking poll was woken within the maximum window (spinning
//! would have caught it), and halves when the poll slept longer, so an idle
//! or sparsely used loop stops spinning after a few polls. It is off unless
//! [`Poller::set_busy_poll`] turns it on: every spin is a run of system calls.

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::unix::SourceFd;
use std::sync::{Mutex, PoisonError, RwLock};

use mio::{Events, Poll, Registry, Token};

use crate::notify::Notifier;

/// The token of the notifier's wake-up events.
pub const NOTIFY_TOKEN: usize = 0;

/// Which directions a source is watched for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct Interest {
    pub read: bool,
    pub write: bool,
}

impl Interest {
    fn to_mio(self) -> Option<mio::Interest> {
        match (self.read, self.write) {
            (true, true) => Some(mio::Interest::READABLE | mio::Interest::WRITABLE),
            (true, false) => Some(mio::Interest::READABLE),
            (false, true) => Some(mio::Interest::WRITABLE),
            (false, false) => None,
        }
    }
}

/// One readiness report. Errors and hang-ups count as both readable and
/// writable, as `select()` reports them, so the callback sees the failure.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Readiness {
    pub token: usize,
    pub readable: bool,
    pub writable: bool,
    /// The peer closed its side or the socket failed: a reader that stops at a
    /// short read must read again to see the end of stream or the error,
    /// since no further edge will come.
    pub closed: bool,
}

/// The loop's poller. Registration takes `&self` (mio's registry is thread
/// safe); only the loop thread polls, under an uncontended lock, so the type
/// is `Sync` and the poll can run with the GIL released.
///
/// [`Poller::close`] releases its fds (the epoll fd, the registry's copy of
/// it, the notifier's waker) at once, as asyncio's `close()` closes its
/// selector; afterwards every operation fails with `EBADF` (deregistering
/// succeeds: nothing is watched any more).
pub struct Poller {
    /// `None` once closed. Read-locked (uncontended) for each registration.
    registry: RwLock<Option<Registry>>,
    poll: Mutex<PollState>,
    notifier: Arc<Notifier>,
}

struct PollState {
    /// `None` once closed.
    poll: Option<Poll>,
    events: Events,
    busy: BusyPoll,
}

/// How a busy-poll spin ended.
enum Spun {
    Events,
    Notified,
    Nothing,
}

/// The adaptive busy-poll window (see the module docs).
#[derive(Clone, Copy, Debug, Default)]
struct BusyPoll {
    /// The largest window; zero disables busy polling.
    max: Duration,
    /// The window used before the next blocking poll.
    window: Duration,
}

impl BusyPoll {
    /// A window smaller than this is not worth a spin: it becomes zero.
    fn floor(&self) -> Duration {
        self.max / 8
    }

    /// A blocking poll was woken by an event after `waited`, or (`woken`
    /// false) returned at its timeout.
    fn update(&mut self, waited: Duration, woken: bool) {
        if woken && waited <= self.max {
            self.window = (self.window * 2).max(self.floor()).min(self.max);
        } else if waited > self.max {
            self.window /= 2;
            if self.window < self.floor() {
                self.window = Duration::ZERO;
            }
        }
    }
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let notifier = Arc::new(Notifier::new(poll.registry(), Token(NOTIFY_TOKEN))?);
        let registry = poll.registry().try_clone()?;
        let state =
            PollState { poll: Some(poll), events: Events::with_capacity(1024), busy: BusyPoll::default() };
        Ok(Self { registry: RwLock::new(Some(registry)), poll: Mutex::new(state), notifier })
    }

    /// Closes the poller's fds now; see the type's docs. Must not be called
    /// while another thread polls (the loop refuses to close while running).
    pub fn close(&self) {
        let registry = self.registry.write().unwrap_or_else(PoisonError::into_inner).take();
        let poll = self.poll.lock().unwrap_or_else(PoisonError::into_inner).poll.take();
        self.notifier.close();
        drop((registry, poll));
    }

    /// Runs `f` on the registry, or fails with `EBADF` once closed.
    fn with_registry<R>(&self, f: impl FnOnce(&Registry) -> io::Result<R>) -> io::Result<R> {
        match &*self.registry.read().unwrap_or_else(PoisonError::into_inner) {
            Some(registry) => f(registry),
            None => Err(closed()),
        }
    }

    /// Sets the largest busy-poll window; zero (the default) turns busy
    /// polling off.
    pub fn set_busy_poll(&self, max: Duration) {
        let mut st = self.poll.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        st.busy = BusyPoll { max, window: Duration::ZERO };
    }

    /// The current busy-poll window (for tests and diagnostics).
    pub fn busy_poll_window(&self) -> Duration {
        self.poll.lock().unwrap_or_else(std::sync::PoisonError::into_inner).busy.window
    }

    /// The cross-thread wake-up handle.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Starts watching `fd` under `token` (never [`NOTIFY_TOKEN`]).
    pub fn register(&self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        debug_assert_ne!(token, NOTIFY_TOKEN);
        match interest.to_mio() {
            Some(i) => self.with_registry(|r| r.register(&mut SourceFd(&fd), Token(token), i)),
            None => Ok(()),
        }
    }

    /// Changes the interest of a registered fd; also re-arms its edge trigger.
    pub fn rearm(&self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        match interest.to_mio() {
            Some(i) => self.with_registry(|r| match r.reregister(&mut SourceFd(&fd), Token(token), i) {
                // The kernel dropped the registration when the fd was closed;
                // the number may now name a new file: register it afresh.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    r.register(&mut SourceFd(&fd), Token(token), i)
                }
                r => r,
            }),
            None => self.deregister(fd),
        }
    }

    /// Stops watching `fd`. An fd the kernel already forgot (closed) is fine.
    pub fn deregister(&self, fd: RawFd) -> io::Result<()> {
        match self.with_registry(|r| r.deregister(&mut SourceFd(&fd))) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::ENOENT)) => Ok(()),
            r => r,
        }
    }

    /// Waits for readiness up to `timeout` (`None`: forever) and appends the
    /// reports to `out`. Notifier wake-ups are consumed here, not reported.
    /// `EINTR` is returned as `ErrorKind::Interrupted` for the caller to handle.
    pub fn poll(&self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        let mut guard = self.poll.lock().unwrap_or_else(PoisonError::into_inner);
        let st = &mut *guard;
        if st.poll.is_none() {
            return Err(closed());
        }
        let mut timeout = timeout;
        let mut caught = false;
        if timeout != Some(Duration::ZERO) && !st.busy.window.is_zero() {
            let started = Instant::now();
            let limit = timeout.map_or(st.busy.window, |t| t.min(st.busy.window));
            match self.spin(st, started, limit)? {
                Spun::Events => caught = true,
                // begin_sleep below sees the notification and does not block.
                Spun::Notified => {}
                Spun::Nothing => timeout = timeout.map(|t| t.saturating_sub(started.elapsed())),
            }
        }
        if caught {
            // The spin's last poll left its events in st.events.
        } else if timeout == Some(Duration::ZERO) {
            st.poll_once(timeout)?;
        } else {
            let timeout = if self.notifier.begin_sleep() { Some(Duration::ZERO) } else { timeout };
            let started = (!st.busy.max.is_zero()).then(Instant::now);
            let res = st.poll_once(timeout);
            self.notifier.end_sleep();
            res?;
            if let Some(started) = started {
                st.busy.update(started.elapsed(), !st.events.is_empty());
            }
        }
        for ev in &st.events {
            let token = ev.token().0;
            if token == NOTIFY_TOKEN {
                continue;
            }
            let failed = ev.is_error() || ev.is_read_closed() || ev.is_write_closed();
            out.push(Readiness {
                token,
                readable: ev.is_readable() || failed,
                writable: ev.is_writable() || failed,
                closed: failed,
            });
        }
        Ok(())
    }

    /// Polls without blocking until something is ready (its events are left
    /// in `st.events`), a notification is pending, or `limit` has passed
    /// since `started`.
    fn spin(&self, st: &mut PollState, started: Instant, limit: Duration) -> io::Result<Spun> {
        loop {
            if self.notifier.is_pending() {
                return Ok(Spun::Notified);
            }
            st.poll_once(Some(Duration::ZERO))?;
            if !st.events.is_empty() {
                return Ok(Spun::Events);
            }
            if started.elapsed() >= limit {
                return Ok(Spun::Nothing);
            }
            std::hint::spin_loop();
        }
    }
}

impl PollState {
    fn poll_once(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        match &mut self.poll {
            Some(poll) => poll.poll(&mut self.events, timeout),
            None => Err(closed()),
        }
    }
}

/// The error of an operation on a closed poller.
fn closed() -> io::Error {
    io::Error::from_raw_os_error(libc::EBADF)
}
