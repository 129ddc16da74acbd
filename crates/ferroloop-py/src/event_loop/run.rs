//! The run loop: one iteration is asyncio's `_run_once`.
//!
//! 1. re-arm fds dispatched last time, compute the poll timeout (0 when
//!    callbacks are ready or the loop is stopping, else the next deadline);
//! 2. poll, with the GIL released only when the poll may block;
//! 3. turn readiness into ready callbacks (readers, writers, signal handlers),
//!    then let Python run its own signal handlers (Ctrl-C raises here);
//! 4. move due timers (`when < now + resolution`) to the ready queue;
//! 5. complete the native I/O that became ready (stream transports' reads and
//!    flushes, parked `sock_*` operations) at once, as uvloop does from its
//!    poll phase: what they wake (a task awaiting `sock_recv`, a stream
//!    reader's waiter) is queued behind the callbacks already ready and the
//!    due timers, in the order asyncio would queue it, but runs in this
//!    iteration instead of after another (zero-timeout) poll. When callbacks
//!    were queued before the poll, native I/O waits its turn in the ready
//!    queue behind them instead, as asyncio's reader handles do (one may
//!    cancel a `sock_*` operation, or create what a protocol callback needs);
//! 6. run the callbacks that were ready at this point, FIFO, one at a time, so
//!    that `KeyboardInterrupt`/`SystemExit` leave the rest queued.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::Ordering;
use std::time::Duration;

use ferroloop_core::health::Phase;
use ferroloop_core::time::{VirtualClock, Wait, CLOCK_RESOLUTION};
use ferroloop_core::{monotonic, sys, Readiness};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyFloat;

use super::ready::Ready;
use super::Loop;
use crate::callbacks::{HandleCore, Queued};
use crate::errors::os_error;
use crate::pyimports::warn_slow_callback;
use crate::reactor::Fired;

impl Loop {
    /// Runs the native I/O events of this iteration; on an exception the
    /// events not yet run go to the ready queue, so none is lost.
    fn complete_io(slf: &Bound<'_, Self>, io: &mut Vec<Ready>) -> PyResult<()> {
        let py = slf.py();
        let mut result = Ok(());
        let mut ran = 0;
        for cb in io.iter() {
            result = Self::run_one(slf, cb);
            ran += 1;
            if result.is_err() {
                break;
            }
        }
        io.drain(..ran);
        slf.get().requeue(py, io);
        result
    }

    /// Puts the native I/O events left in `io` in the ready queue (an
    /// exception left the iteration before they ran) and gives the emptied
    /// scratch vector back to the state.
    fn requeue(&self, py: Python<'_>, io: &mut Vec<Ready>) {
        let mut st = self.state.borrow_mut(py);
        st.ready.extend(io.drain(..));
        st.io = std::mem::take(io);
    }

    /// The poll timeout, the event buffer, and whether any fd or signal
    /// handler is registered (else a non-blocking poll has nothing to report).
    /// The poll's timeout, the events buffer, whether anything is watched
    /// (a poll could report something) and whether no timer is pending.
    fn prepare_poll(&self, py: Python<'_>) -> PyResult<(Wait, Vec<Readiness>, bool, bool)> {
        let (watching, pending) = self.reactor().before_poll(py);
        let mut dead = Vec::new();
        let mut st = self.state.borrow_mut(py);
        if pending {
            self.reactor().take_pending(py, |(io, event)| st.ready.push_back(Ready::Io(io, event)));
        }
        let wait = if !st.ready.is_empty() || self.stopping.load(Ordering::Relaxed) {
            Wait { timeout: Some(Duration::ZERO), jump: None }
        } else {
            match st.timers.next_deadline(&mut dead) {
                // asyncio 3.13 hands a NaN deadline's timeout to select(),
                // which raises; earlier versions clamp it to 0 (due now).
                Some(when) if when.is_nan() && py.version_info() >= (3, 13) => {
                    drop(st);
                    drop(dead);
                    return Err(PyValueError::new_err("cannot convert float NaN to integer"));
                }
                next => self.clock.plan_wait(next),
            }
        };
        let events = std::mem::take(&mut st.events);
        let watching = watching || !st.signal_handlers.is_empty();
        let no_timers = st.timers.is_empty();
        drop(st);
        drop(dead);
        Ok((wait, events, watching, no_timers))
    }

    /// Moves the transport events queued since the last call (re-reads,
    /// reading resumed) to the back of the ready queue.
    fn take_pending_io(&self, py: Python<'_>) {
        let mut st = self.state.borrow_mut(py);
        self.reactor().take_pending(py, |(io, event)| st.ready.push_back(Ready::Io(io, event)));
    }

    /// Queues the handles of ready fds, and puts native I/O events in `io`;
    /// returns whether a signal arrived.
    fn dispatch_events(&self, py: Python<'_>, events: &mut Vec<Readiness>, io: &mut Vec<Ready>) -> bool {
        let mut st = self.state.borrow_mut(py);
        // Native I/O (a parked sock_* operation, a transport's read or flush)
        // completes at once only when no callback was queued before the poll;
        // otherwise it waits behind them, as asyncio's reader handles do: one
        // of them may cancel the operation (an accept or a receive made for a
        // future then cancelled would lose a connection or data), or set up
        // what the protocol's callback expects (a task's first step).
        let sock_io_first = st.ready.is_empty();
        let mut dead = Vec::new();
        let signalled = self.reactor().dispatch(py, events, &mut dead, |fired| match fired {
            Fired::Handle(h) => st.ready.push_back(Ready::Plain(Queued::new(h))),
            Fired::Sock(fd, write) if sock_io_first => io.push(Ready::Sock(fd, write)),
            Fired::Sock(fd, write) => st.ready.push_back(Ready::Sock(fd, write)),
            Fired::Io(r, event) if sock_io_first => io.push(Ready::Io(r, event)),
            Fired::Io(r, event) => st.ready.push_back(Ready::Io(r, event)),
        });
        drop(st);
        drop(dead);
        signalled
    }

    /// Moves the due timers to the ready queue; `now` is the iteration's
    /// clock when health recording is on (each timer's lateness is recorded
    /// against it), else the clock is read here.
    fn move_due_timers(&self, py: Python<'_>, now: Option<f64>) {
        let mut dead = Vec::new();
        let mut guard = self.state.borrow_mut(py);
        let st = &mut *guard;
        if st.timers.is_empty() {
            return;
        }
        // On a virtual clock, due is by its time (and so is the lag).
        let virt = self.clock.as_virtual().map(VirtualClock::now);
        // Lag is recorded (when health read the clock) against the loop's own time.
        let now = now.map(|real| virt.unwrap_or(real));
        let end = virt.or(now).unwrap_or_else(monotonic) + CLOCK_RESOLUTION;
        while let Some(timer) = st.timers.pop_due(end, &mut dead) {
            let t = timer.0.get();
            t.unschedule();
            if let Some(now) = now {
                st.stats.timer_lag.record_secs(now - t.when, 1);
            }
            st.ready.push_back(Ready::Timer(timer));
        }
        drop(guard);
        drop(dead);
    }

    /// A handle in debug mode: asyncio's `_current_handle` while it runs, and
    /// its slow-callback warning, timed here (only a slow one's report is
    /// Python). The comparison is Python's, as asyncio's: a
    /// `slow_callback_duration` that is not a number raises there.
    fn run_debug(slf: &Bound<'_, Self>, obj: &Bound<'_, PyAny>, core: &HandleCore) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.set_current_handle(py, Some(obj.clone().unbind()));
        let t0 = monotonic();
        let res = core.run(obj).and_then(|()| {
            let seconds = monotonic() - t0;
            let limit = slf.getattr(pyo3::intern!(py, "slow_callback_duration"))?;
            if PyFloat::new(py, seconds).ge(&limit)? {
                warn_slow_callback(py)?.call1((obj, seconds))?;
            }
            Ok(())
        });
        this.set_current_handle(py, None);
        res
    }

    /// Runs the callbacks queued when it starts, FIFO, one at a time.
    /// `now`: the iteration's clock and whether callbacks were queued
    /// before its poll, when health recording is on.
    fn run_ready(slf: &Bound<'_, Self>, now: Option<(f64, bool)>) -> PyResult<()> {
        let this = slf.get();
        let ntodo = {
            let mut st = this.state.borrow_mut(slf.py());
            let n = st.ready.len();
            if let Some((now, carried)) = now {
                st.stats.batch(now, n, carried);
            }
            n
        };
        for _ in 0..ntodo {
            let Some(cb) = this.state.borrow_mut(slf.py()).ready.pop_front() else { break };
            Self::run_one(slf, &cb)?;
        }
        trim_ready(&mut this.state.borrow_mut(slf.py()).ready);
        Ok(())
    }

    /// Runs one ready item: every callback the loop runs (a user handle, a
    /// timer, a C Task's step, a transport's read or flush, a parked `sock_*`
    /// operation) goes through here, and this is where debug-mode timing is.
    /// An error is `SystemExit`/`KeyboardInterrupt` (or the exception
    /// handler's own failure): the rest of the queue stays for the next run.
    /// Health: each callback gets the next heartbeat number (a store, no
    /// clock), and if the watchdog asked about that number, its end is
    /// reported (probes.rs), once.
    /// With instrumentation hooks set or per-task accounting on (one word,
    /// one branch when neither is) the callback is timed and handed to them
    /// (probes.rs).
    #[inline]
    fn run_one(slf: &Bound<'_, Self>, cb: &Ready) -> PyResult<()> {
        let instruments = crate::health::instruments();
        if instruments != 0 {
            return Self::run_instrumented(slf, cb, instruments);
        }
        Self::run_one_probed(slf, cb)
    }

    #[inline]
    pub(super) fn run_one_probed(slf: &Bound<'_, Self>, cb: &Ready) -> PyResult<()> {
        let this = slf.get();
        if !this.probes.on {
            return Self::run_one_inner(slf, cb);
        }
        let seq = this.probes.heartbeat.begin_callback();
        let res = Self::run_one_inner(slf, cb);
        if this.probes.heartbeat.is_armed(seq) {
            Self::health_callback_ended(slf, cb, seq);
        }
        res
    }

    #[inline]
    fn run_one_inner(slf: &Bound<'_, Self>, cb: &Ready) -> PyResult<()> {
        let py = slf.py();
        let (core, obj) = match cb {
            Ready::Plain(h) => (&h.0.get().core, h.0.as_any()),
            Ready::Timer(t) => (&t.0.get().core, t.0.as_any()),
            Ready::Task(call) => return call.run(slf.as_any()),
            Ready::Io(io, event) => return io.run(py, *event),
            Ready::Sock(fd, write) => return Self::run_sock_op(slf, *fd, *write),
        };
        if core.is_cancelled() {
            return Ok(());
        }
        if slf.get().debug() {
            Self::run_debug(slf, obj.bind(py), core)
        } else {
            core.run(obj.bind(py))
        }
    }
}

/// The run loop's entries: `run_forever`'s body (`_loop.py`) and asyncio's
/// `_run_once`.
#[pymethods]
impl Loop {
    /// One iteration, for tests and for code that drives the loop by hand.
    #[pyo3(name = "_run_once")]
    pub(super) fn run_once(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (Wait { timeout, jump }, mut events, watching, no_timers) = this.prepare_poll(py)?;
        let instruments = crate::health::instruments();
        // With instruments on, the end of the last callback timed (if it was
        // the last one to run, under the same setting) stands for the clock
        // read before the poll.
        let chained = if instruments == 0 { None } else { this.probes.take_chain(instruments) };
        // Callbacks were queued before the poll (it does not block then); a
        // virtual clock's autojump may also poll without blocking.
        let carried = timeout == Some(Duration::ZERO) && jump.is_none();
        // Health: the clock before and after the poll (the one after is the
        // timers' "now" too); a skipped poll takes no time and no second read.
        // An iteration that polls nothing and has no timers reads no clock of
        // its own, so health reads one there only to sample (`Probes::sample`).
        let read = this.probes.on
            && (chained.is_some()
                || instruments != 0
                || !carried
                || watching
                || !no_timers
                || this.probes.sample());
        let before = if read { Some(chained.unwrap_or_else(monotonic)) } else { None };
        if this.probes.on && !read {
            this.state.borrow_mut(py).stats.unread();
        }
        let mut polled = true;
        let res = if timeout == Some(Duration::ZERO) {
            if watching {
                this.set_polling(before);
                this.reactor().poller().poll(timeout, &mut events)
            } else {
                // Nothing is registered that a non-blocking poll could report:
                // cross-thread callbacks are already in the ready queue (pushed
                // under the GIL) and Python-level signal handlers run in
                // check_signals below. Skipping it is exact, not a heuristic.
                polled = false;
                Ok(())
            }
        } else {
            // Publishes the poll's start with the phase (one store): a
            // snapshot from another thread counts the poll as idle so far.
            this.set_polling(before);
            py.detach(|| this.reactor().poller().poll(timeout, &mut events))
        };
        if polled {
            // A skipped poll leaves the phase as it was: callbacks.
            this.set_phase(Phase::Callback);
        }
        let now = before.map(|t0| {
            let t1 = if polled { monotonic() } else { t0 };
            this.state.borrow_mut(py).stats.polled(t0, t1, events.len());
            t1
        });
        if instruments != 0 {
            // The first step after the poll starts at its clock read, when
            // there is one: the moving of due timers counts in that step.
            this.probes.set_chain(now, instruments);
        }
        match res {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                this.state.borrow_mut(py).events = events;
                return Err(os_error(&e));
            }
        }
        if let (Some(when), true) = (jump, events.is_empty()) {
            // A virtual clock with nothing to do until `when` (no I/O, and no
            // callback queued from another thread meanwhile): go there.
            if let Some(v) = this.clock.as_virtual().filter(|_| this.state.borrow(py).ready.is_empty()) {
                v.jump_to(when);
            }
        }
        if events.is_empty() {
            // Nothing was polled (or nothing is ready): the common case of
            // callback-only iterations skips the I/O bookkeeping.
            this.state.borrow_mut(py).events = events;
            py.check_signals()?;
            this.move_due_timers(py, now);
            return Self::run_ready(slf, now.map(|t| (t, carried)));
        }
        let mut io = std::mem::take(&mut this.state.borrow_mut(py).io);
        let signalled = this.dispatch_events(py, &mut events, &mut io);
        this.state.borrow_mut(py).events = events;
        let early = if signalled { Self::dispatch_signals(slf) } else { Ok(()) };
        if let Err(err) = early.and_then(|()| py.check_signals()) {
            this.requeue(py, &mut io);
            return Err(err);
        }
        this.move_due_timers(py, now);
        if io.is_empty() {
            this.state.borrow_mut(py).io = io;
        } else {
            Self::complete_io(slf, &mut io)?;
            // What the completions asked for (a re-read) runs in this
            // iteration, behind what is queued already.
            this.take_pending_io(py);
        }
        Self::run_ready(slf, now.map(|t| (t, carried)))
    }

    /// The body of `run_forever`; the Python layer does the asyncio
    /// bookkeeping (running-loop registration, asyncgen hooks) around it.
    #[pyo3(name = "_run_forever_native")]
    fn run_forever_native(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        this.running.store(true, Ordering::Relaxed);
        this.health_watch();
        this.thread_id.store(sys::thread_id(), Ordering::Relaxed);
        // Iterations whose poll is skipped leave the phase alone: it starts
        // as callbacks.
        this.set_phase(Phase::Callback);
        let result = loop {
            if let Err(e) = Self::run_once(slf) {
                break Err(e);
            }
            if this.stopping.load(Ordering::Relaxed) {
                break Ok(());
            }
        };
        this.set_phase(Phase::Stopped);
        // A later run starts afresh: no callback ran just before it.
        this.probes.break_chain();
        // The native watchdog thread looks only at running loops (it ends
        // when none is left).
        this.health_unwatch();
        if this.probes.on {
            this.state.borrow_mut(slf.py()).stats.stopped(monotonic());
        }
        this.stopping.store(false, Ordering::Relaxed);
        this.running.store(false, Ordering::Relaxed);
        this.thread_id.store(0, Ordering::Relaxed);
        result
    }
}

/// What the ready queue keeps of its memory once a burst is over.
const READY_KEPT: usize = 1024;

/// A queue buffer at least this large (in entries: 1 MiB) goes back to the
/// system when dropped, not only to the C heap.
const READY_RELEASED: usize = 1 << 15;

/// A burst of callbacks (a hundred thousand `call_soon`s) grows the ready
/// queue's one buffer; once the queue has drained to at most [`READY_KEPT`]
/// entries, a buffer of more than four times that is replaced by one of
/// [`READY_KEPT`] (so a steady load does not reallocate it each iteration).
/// asyncio's `deque` frees its blocks as it empties; a large buffer freed
/// here, and the smaller ones its growth left behind in the C heap, would
/// stay resident, so after one of [`READY_RELEASED`] entries or more the C
/// heap's free pages go back to the system (at most once per such burst,
/// which itself ran tens of thousands of callbacks).
fn trim_ready(ready: &mut VecDeque<Ready>) {
    let capacity = ready.capacity();
    if capacity <= 4 * READY_KEPT || ready.len() > READY_KEPT {
        return;
    }
    let mut kept = VecDeque::with_capacity(READY_KEPT);
    kept.extend(ready.drain(..));
    drop(std::mem::replace(ready, kept));
    if capacity >= READY_RELEASED {
        sys::release_free_heap();
    }
}
