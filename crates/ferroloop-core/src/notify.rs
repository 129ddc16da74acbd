//! Cross-thread wake-up of a loop blocked in poll, with coalescing.
//!
//! Protocol: the loop thread calls `begin_sleep` just before blocking and
//! `end_sleep` after. Another thread first publishes its work (for ferroloop,
//! a callback in the ready queue, under the GIL), then calls [`Notifier::notify`].
//! `notify` writes to the kernel waker only when the loop is asleep (or about to
//! be) and nobody has woken it yet, so a burst of N notifications costs one
//! system call, not N. No wake-up is lost: `begin_sleep` returns true when a
//! notification raced in before the sleep, and the poller then does not block.
//!
//! The work must be published under a lock that the loop also takes to read
//! it (ferroloop's GIL, the tests' mutex): the lock orders a `notify` that
//! finds a wake-up already pending (and so writes nothing) before the loop's
//! next read of its work.
//!
//! This is the one type of the core touched from other threads.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Mutex, PoisonError};

use mio::{Registry, Token, Waker};

const AWAKE: u8 = 0;
const SLEEPING: u8 = 1;
const NOTIFIED: u8 = 2;

pub struct Notifier {
    /// `None` once the poller is closed (its fd released at once); the
    /// lock is taken only to wake a sleeping loop.
    waker: Mutex<Option<Waker>>,
    state: AtomicU8,
}

const _: () = {
    const fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Notifier>();
};

impl Notifier {
    pub(crate) fn new(registry: &Registry, token: Token) -> io::Result<Self> {
        Ok(Self { waker: Mutex::new(Some(Waker::new(registry, token)?)), state: AtomicU8::new(AWAKE) })
    }

    /// Releases the waker's fd; later notifications do nothing.
    pub(crate) fn close(&self) {
        let waker = self.waker.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(waker);
    }

    /// Wakes the loop if it sleeps; cheap (one atomic) when it is awake.
    pub fn notify(&self) -> io::Result<()> {
        // Already notified and not yet consumed: the loop will not block
        // before it has run what the caller published (under the GIL, before
        // this call). Reading first keeps the line shared between posters.
        if self.state.load(Ordering::Acquire) == NOTIFIED {
            return Ok(());
        }
        // One swap, so no `begin_sleep` can slip between reading the state and
        // marking it (a load-then-CAS lost the wake-up when it did). From
        // SLEEPING we own the kernel wake-up; from AWAKE the mark alone keeps
        // the next `begin_sleep` from blocking; from NOTIFIED it is done already.
        if self.state.swap(NOTIFIED, Ordering::AcqRel) == SLEEPING {
            match &*self.waker.lock().unwrap_or_else(PoisonError::into_inner) {
                Some(waker) => waker.wake(),
                None => Ok(()),
            }
        } else {
            Ok(())
        }
    }

    /// Called by the loop before blocking. Returns true when a notification
    /// arrived since the last `end_sleep`: the loop must then not block.
    pub fn begin_sleep(&self) -> bool {
        self.state.compare_exchange(AWAKE, SLEEPING, Ordering::AcqRel, Ordering::Acquire).is_err()
    }

    /// Whether a notification is waiting: the loop must not sleep.
    pub fn is_pending(&self) -> bool {
        self.state.load(Ordering::Acquire) == NOTIFIED
    }

    /// Called by the loop after the poll returns.
    pub fn end_sleep(&self) {
        self.state.store(AWAKE, Ordering::Release);
    }
}
