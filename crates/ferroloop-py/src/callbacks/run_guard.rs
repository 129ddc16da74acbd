//! The guard that makes a `call_soon_threadsafe` handle's `cancel()` and
//! `cancelled()` wait for its callback, where the running Python's asyncio does.
//!
//! asyncio (3.14, and the maintenance releases it was backported to) returns an
//! `events._ThreadSafeHandle` from `call_soon_threadsafe`: a handle with an
//! `RLock` held around the callback, by `cancel()` and by `cancelled()`. So a
//! thread that cancels, or asks, while the callback runs on the loop's thread
//! waits until it has returned; the loop's own thread (the callback itself
//! included) never waits, the lock being re-entrant.
//!
//! Here the guard is one word per handle instead of a lock object: `PLAIN` for
//! every handle that needs no guard, `IDLE` for a guarded handle whose callback
//! is not running, else the id of the thread running it. The loop stores and
//! clears that id around the callback (two stores, and no lock when no one waits);
//! a waiter parks on one process-wide condition variable. The GIL makes the
//! check-then-run of the callback atomic with respect to other threads, which
//! is what asyncio's `_run` re-checks `_cancelled` under its lock for.
//!
//! Ground rules: the waiter releases the GIL while it waits (the callback
//! needs it to finish); no wake-up is lost: a waiter registers in `WAITERS`
//! before it reads the state under `LOCK`, and `leave` clears the state before
//! it reads `WAITERS` (both sequentially consistent), so either the waiter sees
//! the handle idle or `leave` sees the waiter and notifies under `LOCK`.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use ferroloop_core::sys;
use pyo3::Python;

const PLAIN: u64 = u64::MAX;
const IDLE: u64 = 0;

static WAITERS: AtomicUsize = AtomicUsize::new(0);
static LOCK: Mutex<()> = Mutex::new(());
static DONE: Condvar = Condvar::new();

/// The running state of one handle's callback (see the module docs).
pub(crate) struct RunGuard(AtomicU64);

impl RunGuard {
    /// For a handle whose `cancel()` never waits.
    pub(crate) const fn plain() -> Self {
        Self(AtomicU64::new(PLAIN))
    }

    /// For a handle made by `call_soon_threadsafe` where asyncio guards it.
    pub(crate) const fn threadsafe() -> Self {
        Self(AtomicU64::new(IDLE))
    }

    pub(crate) fn is_threadsafe(&self) -> bool {
        self.0.load(Ordering::Relaxed) != PLAIN
    }

    /// Marks the callback as running on this thread until the returned token
    /// is dropped (also when the callback raised).
    pub(crate) fn enter(&self) -> Option<Running<'_>> {
        if self.0.load(Ordering::Relaxed) == PLAIN {
            return None;
        }
        self.0.store(sys::thread_id(), Ordering::SeqCst);
        Some(Running(self))
    }

    /// Returns once the callback is not running on another thread, the GIL
    /// released meanwhile.
    pub(crate) fn wait_idle(&self, py: Python<'_>) {
        let state = self.0.load(Ordering::SeqCst);
        if state == PLAIN || state == IDLE || state == sys::thread_id() {
            return;
        }
        py.detach(|| {
            WAITERS.fetch_add(1, Ordering::SeqCst);
            let mut lock = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            while !matches!(self.0.load(Ordering::SeqCst), IDLE | PLAIN) {
                lock = DONE.wait(lock).unwrap_or_else(std::sync::PoisonError::into_inner);
            }
            drop(lock);
            WAITERS.fetch_sub(1, Ordering::SeqCst);
        });
    }
}

/// A callback running under a [`RunGuard`]; dropping it marks it idle and
/// wakes the threads waiting for that.
pub(crate) struct Running<'a>(&'a RunGuard);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        self.0 .0.store(IDLE, Ordering::SeqCst);
        if WAITERS.load(Ordering::SeqCst) > 0 {
            let lock = LOCK.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            DONE.notify_all();
            drop(lock);
        }
    }
}

const _: () = {
    const fn send_sync<T: Send + Sync>() {}
    send_sync::<RunGuard>();
};
