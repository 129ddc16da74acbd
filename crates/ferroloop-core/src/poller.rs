//! Readiness polling over mio (epoll on Linux, kqueue on the BSDs and macOS).
//!
//! Owns the `mio::Poll` and its event buffer. Sources are raw fds identified by
//! a caller-chosen token; mio is edge-triggered, so a caller that wants
//! level-triggered semantics (asyncio's `add_reader`) calls [`Poller::rearm`]
//! after dispatching, which re-evaluates readiness in the kernel.
//!
//! Token 0 is reserved for the cross-thread [`crate::Notifier`].

use std::io;
use std::os::fd::RawFd;
use std::sync::Arc;
use std::time::Duration;

use mio::unix::SourceFd;
use std::sync::Mutex;

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
pub struct Poller {
    registry: Registry,
    poll: Mutex<(Poll, Events)>,
    notifier: Arc<Notifier>,
}

impl Poller {
    pub fn new() -> io::Result<Self> {
        let poll = Poll::new()?;
        let notifier = Arc::new(Notifier::new(poll.registry(), Token(NOTIFY_TOKEN))?);
        let registry = poll.registry().try_clone()?;
        Ok(Self { registry, poll: Mutex::new((poll, Events::with_capacity(1024))), notifier })
    }

    /// The cross-thread wake-up handle.
    pub fn notifier(&self) -> &Arc<Notifier> {
        &self.notifier
    }

    /// Starts watching `fd` under `token` (never [`NOTIFY_TOKEN`]).
    pub fn register(&self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        debug_assert_ne!(token, NOTIFY_TOKEN);
        match interest.to_mio() {
            Some(i) => self.registry.register(&mut SourceFd(&fd), Token(token), i),
            None => Ok(()),
        }
    }

    /// Changes the interest of a registered fd; also re-arms its edge trigger.
    pub fn rearm(&self, fd: RawFd, token: usize, interest: Interest) -> io::Result<()> {
        match interest.to_mio() {
            Some(i) => match self.registry.reregister(&mut SourceFd(&fd), Token(token), i) {
                // The kernel dropped the registration when the fd was closed;
                // the number may now name a new file: register it afresh.
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => {
                    self.registry.register(&mut SourceFd(&fd), Token(token), i)
                }
                r => r,
            },
            None => self.deregister(fd),
        }
    }

    /// Stops watching `fd`. An fd the kernel already forgot (closed) is fine.
    pub fn deregister(&self, fd: RawFd) -> io::Result<()> {
        match self.registry.deregister(&mut SourceFd(&fd)) {
            Err(e) if matches!(e.raw_os_error(), Some(libc::EBADF | libc::ENOENT)) => Ok(()),
            r => r,
        }
    }

    /// Waits for readiness up to `timeout` (`None`: forever) and appends the
    /// reports to `out`. Notifier wake-ups are consumed here, not reported.
    /// `EINTR` is returned as `ErrorKind::Interrupted` for the caller to handle.
    pub fn poll(&self, timeout: Option<Duration>, out: &mut Vec<Readiness>) -> io::Result<()> {
        let mut guard = self.poll.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let (poll, events) = &mut *guard;
        let blocking = timeout != Some(Duration::ZERO);
        let timeout = if blocking && self.notifier.begin_sleep() { Some(Duration::ZERO) } else { timeout };
        let res = poll.poll(events, timeout);
        if blocking {
            self.notifier.end_sleep();
        }
        res?;
        for ev in events.iter() {
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
}
