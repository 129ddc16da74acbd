//! The native `Loop`: scheduling, timers, the run loop, fd watching, signals.
//!
//! Owns all loop state (`State`, behind a [`GilCell`]) and the OS resources
//! (poller, signal channel). `ferroloop.Loop` in Python subclasses this type and
//! adds the cold, policy-level methods (exception handler, executors, asyncgens,
//! `run_until_complete`); the hot path never leaves Rust.
//!
//! Methods follow `asyncio.AbstractEventLoop`'s order; submodules hold the run
//! loop (`run`), fd watching (`fdwatch`) and signals (`signals`).
//!
//! Invariants: no `State` borrow is held while Python code runs or while a
//! Python object is dropped (drops can run finalisers that re-enter the loop);
//! objects to drop are moved out first. Flags read from other threads
//! (`call_soon_threadsafe`, `stop` from a callback) are atomics.

mod accept;
mod fast;
mod fdwatch;
mod probes;
mod ready;
mod run;
mod signals;
mod sockops;
mod tasks;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use ferroloop_core::time::{Clock, VirtualClock};
use ferroloop_core::{sys, Poller, SignalChannel, TimerQueue};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyDict, PyTuple};

use crate::callbacks::{new_handle, Handle, HandleCore, Queued, QueuedTimer, TaskCall, TimerHandle};
use crate::errors::os_error;
use crate::gil_cell::GilCell;
use crate::pyimports::{check_callback, future_type, threadsafe_handle_type};
use crate::reactor::{Reactor, Token};
use ready::Ready;

/// Set once the direct entries are installed: once per process, as for the
/// free lists (`callbacks::register`). Run again, `fast::install` would take
/// its own entries for PyO3's methods.
static FAST_ENTRIES: PyOnceLock<()> = PyOnceLock::new();

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Loop>()?;
    crate::callbacks::set_loop_hooks(crate::callbacks::LoopHooks {
        debug: |lp| lp.cast::<Loop>().is_ok_and(|l| l.get().debug()),
        timer_cancelled: |lp| {
            if let Ok(l) = lp.cast::<Loop>() {
                l.get().timer_cancelled(lp.py());
            }
        },
    });
    FAST_ENTRIES.get_or_try_init(m.py(), || fast::install(&m.py().get_type::<Loop>())).map(drop)
}

#[derive(Default)]
struct State {
    ready: VecDeque<Ready>,
    timers: TimerQueue<QueuedTimer>,
    signal_handlers: HashMap<i32, Py<Handle>>,
    /// The poller's report, reused by every iteration.
    events: Vec<ferroloop_core::Readiness>,
    /// Native I/O events of this iteration, completed before the ready queue
    /// runs (run.rs); reused by every iteration.
    io: Vec<Ready>,
    signums: Vec<u8>,
    /// `{"loop": self}`, the keyword arguments of every `Future`/`Task` the
    /// fast paths make (tasks.rs); made on first use.
    loop_kwargs: Option<Py<PyDict>>,
    /// What `set_debug` was given when not a bool: asyncio keeps the object
    /// (`get_debug()` returns it), the native flag holds its truth value.
    debug_value: Option<Py<PyAny>>,
    /// Lag histograms, utilization and counters (probes.rs).
    stats: ferroloop_core::health::LoopStats,
    /// asyncio's `_current_handle`: the handle running in debug mode (run.rs),
    /// which the default exception handler reads for its source traceback.
    current_handle: Option<Py<PyAny>>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "Loop", subclass, frozen)]
pub(crate) struct Loop {
    state: GilCell<State>,
    /// The descriptors, the poller, and whether the loop is closed; shared
    /// with the transports.
    reactor: Py<Reactor>,
    signals: SignalChannel,
    running: AtomicBool,
    stopping: AtomicBool,
    debug: AtomicBool,
    /// `threading.get_ident()` of the running thread; 0 when not running.
    thread_id: AtomicU64,
    /// A task factory is set: `create_task` takes asyncio's own path.
    has_task_factory: AtomicBool,
    /// The heartbeat the health watchdog reads, and whether to record.
    probes: probes::Probes,
    /// The loop's time: real, or virtual for a loop made by `ferroloop.testing`.
    clock: Clock,
}

impl Loop {
    /// Sets `_current_handle`; the one it replaces is dropped with no borrow held.
    fn set_current_handle(&self, py: Python<'_>, handle: Option<Py<PyAny>>) {
        let old = std::mem::replace(&mut self.state.borrow_mut(py).current_handle, handle);
        drop(old);
    }

    /// Drops every queued callback and watcher (close, GC clear).
    fn release_all(&self, py: Python<'_>) {
        let (ready, timers, handlers, kwargs) = {
            let mut st = self.state.borrow_mut(py);
            let ready = std::mem::take(&mut st.ready);
            let timers = st.timers.clear();
            let handlers = std::mem::take(&mut st.signal_handlers);
            (ready, timers, handlers, st.loop_kwargs.take())
        };
        self.reactor().release(py);
        for t in &timers {
            t.0.get().unschedule();
        }
        drop((ready, timers, handlers, kwargs));
    }

    fn virtual_clock(&self) -> PyResult<&VirtualClock> {
        self.clock.as_virtual().ok_or_else(|| PyRuntimeError::new_err("this loop runs on real time"))
    }

    pub(crate) fn reactor(&self) -> &Reactor {
        self.reactor.get()
    }

    /// The shared `{"loop": self}` dict (see `tasks::call_with_loop`).
    fn loop_kwargs<'py>(&self, slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyDict>> {
        let py = slf.py();
        if let Some(kw) = &self.state.borrow(py).loop_kwargs {
            return Ok(kw.bind(py).clone());
        }
        let kw = PyDict::new(py);
        kw.set_item(pyo3::intern!(py, "loop"), slf)?;
        self.state.borrow_mut(py).loop_kwargs = Some(kw.clone().unbind());
        Ok(kw)
    }

    pub(crate) fn debug(&self) -> bool {
        self.debug.load(Ordering::Relaxed)
    }

    pub(crate) fn check_closed(&self) -> PyResult<()> {
        self.reactor().check_closed()
    }

    fn check_thread(&self) -> PyResult<()> {
        let tid = self.thread_id.load(Ordering::Relaxed);
        if tid != 0 && tid != sys::thread_id() {
            return Err(PyRuntimeError::new_err(
                "Non-thread-safe operation invoked on an event loop other than the current one",
            ));
        }
        Ok(())
    }

    /// Debug-mode checks of a user callback (asyncio only makes them in debug).
    fn check_callback(&self, callback: &Bound<'_, PyAny>, method: &str) -> PyResult<()> {
        check_callback(callback.py())?.call1((callback, method))?;
        Ok(())
    }

    /// A handle's core. In debug mode it records where it was created;
    /// `trim` is how many asyncio-internal frames asyncio's own method would
    /// have cut from that traceback, so both keep the same number of frames.
    fn new_core(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        trim: u8,
    ) -> PyResult<HandleCore> {
        let debug = slf.get().debug().then_some(trim);
        HandleCore::new(slf.as_any(), callback, args, context, debug)
    }

    pub(super) fn call_soon_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::queue_soon(slf, callback, args, context, "call_soon", true)
    }

    pub(super) fn call_soon_threadsafe_impl(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        let handle = Self::queue_soon(slf, callback, args, context, "call_soon_threadsafe", false)?;
        slf.get().reactor().poller().notifier().notify().map_err(|e| os_error(&e))?;
        Ok(handle)
    }

    /// The body `call_soon` and `call_soon_threadsafe` share: asyncio's checks
    /// (in debug mode; the thread check only where `loop_thread_only`), then a
    /// new handle at the back of the ready queue.
    fn queue_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        method: &str,
        loop_thread_only: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.debug() {
            if loop_thread_only {
                this.check_thread()?;
            }
            this.check_callback(&callback, method)?;
        }
        let mut core = Self::new_core(slf, callback, args, context, 2)?;
        if !loop_thread_only && threadsafe_handle_type(py)?.is_some() {
            core = core.into_threadsafe();
        }
        let handle = new_handle(py, Handle { core }, false)?;
        this.push_ready(py, Ready::Plain(Queued::new(handle.clone_ref(py))));
        Ok(handle)
    }

    pub(super) fn call_later_impl(
        slf: &Bound<'_, Self>,
        delay: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if delay.is_none() {
            return Err(PyTypeError::new_err("delay must not be None"));
        }
        let now = slf.get().clock.now();
        let exact = delay.is_exact_instance_of::<pyo3::types::PyFloat>()
            || delay.is_exact_instance_of::<pyo3::types::PyInt>();
        let when = if exact {
            now + delay.extract::<f64>()?
        } else {
            // asyncio computes `self.time() + delay`: Python's `+` gives its
            // exact result or error (Fraction works, Decimal raises TypeError).
            now.into_pyobject(slf.py())?.add(&delay)?.extract::<f64>()?
        };
        Self::schedule_timer(slf, 3, when, None, callback, args, context)
    }

    pub(super) fn call_at_impl(
        slf: &Bound<'_, Self>,
        when: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        if when.is_none() {
            return Err(PyTypeError::new_err("when cannot be None"));
        }
        let value = when.extract::<f64>()?;
        let when_obj =
            if when.is_exact_instance_of::<pyo3::types::PyFloat>() { None } else { Some(when.unbind()) };
        Self::schedule_timer(slf, 2, value, when_obj, callback, args, context)
    }

    pub(super) fn create_future_impl(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        tasks::call_with_loop(slf, &future_type(slf.py())?, None)
    }

    /// `call_soon` of a C `Task`'s own callback (see `task_calls`): queued
    /// without a handle, unless the loop is closed or in debug mode, where
    /// the general path gives the error or the handle. Returns whether it
    /// was queued.
    pub(super) fn queue_task_call(&self, py: Python<'_>, call: impl FnOnce() -> TaskCall) -> bool {
        if self.reactor().is_closed() || self.debug() {
            return false;
        }
        self.push_ready(py, Ready::Task(call()));
        true
    }

    fn push_ready(&self, py: Python<'_>, cb: Ready) {
        self.state.borrow_mut(py).ready.push_back(cb);
    }

    /// Called by `TimerHandle.cancel` for a timer still in the queue.
    pub(crate) fn timer_cancelled(&self, py: Python<'_>) {
        let mut dead = Vec::new();
        self.state.borrow_mut(py).timers.note_cancelled(&mut dead);
        drop(dead);
    }

    fn schedule_timer(
        slf: &Bound<'_, Self>,
        trim: u8,
        when: f64,
        when_obj: Option<Py<PyAny>>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        if this.debug() {
            this.check_thread()?;
            this.check_callback(&callback, "call_at")?;
        }
        let core = Self::new_core(slf, callback, args, context, trim)?;
        let timer = new_handle(py, TimerHandle::new(core, when, when_obj), false)?;
        this.state.borrow_mut(py).timers.push(when, Queued::new(timer.clone_ref(py)));
        Ok(timer)
    }
}

/// The largest busy-poll window (see `ferroloop_core::poller`), from
/// `FERROLOOP_BUSY_POLL_US`; off (0) unless set. Off by default because each
/// spin is a run of non-blocking polls: at one connection the benchmark
/// server made ~55 system calls per echoed message with a 200 µs window
/// (`perf stat -e raw_syscalls:sys_enter`), against ~2.9 without, and a
/// loop with traffic every few hundred µs would keep its CPU busy.
fn busy_poll_max() -> PyResult<Duration> {
    const DEFAULT_US: u64 = 0;
    let Some(raw) = std::env::var_os("FERROLOOP_BUSY_POLL_US") else {
        return Ok(Duration::from_micros(DEFAULT_US));
    };
    raw.to_str()
        .and_then(|v| v.trim().parse::<u64>().ok())
        .filter(|us| *us <= 1_000_000)
        .map(Duration::from_micros)
        .ok_or_else(|| {
            PyValueError::new_err(format!(
                "FERROLOOP_BUSY_POLL_US must be a whole number of microseconds from 0 to 1000000, not {raw:?}"
            ))
        })
}

#[pymethods]
impl Loop {
    /// `virtual_time`: `(start, autojump, threshold)` for a loop on a
    /// virtual clock (`ferroloop.testing`); None for real time.
    #[new]
    #[pyo3(signature = (*, virtual_time = None))]
    fn new(py: Python<'_>, virtual_time: Option<(f64, bool, f64)>) -> PyResult<Self> {
        crate::transports::stream::prime_allocator();
        let poller = Poller::new().map_err(|e| os_error(&e))?;
        poller.set_busy_poll(busy_poll_max()?);
        let signals = SignalChannel::new().map_err(|e| os_error(&e))?;
        poller
            .register(
                signals.read_fd(),
                Token::SIGNALS.raw(),
                ferroloop_core::Interest { read: true, write: false },
            )
            .map_err(|e| os_error(&e))?;
        Ok(Self {
            state: GilCell::new(State::default()),
            reactor: Py::new(py, Reactor::new(poller))?,
            signals,
            running: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
            debug: AtomicBool::new(false),
            thread_id: AtomicU64::new(0),
            has_task_factory: AtomicBool::new(false),
            probes: probes::Probes::new(),
            clock: match virtual_time {
                None => Clock::Real,
                Some((start, autojump, threshold)) => {
                    Clock::Virtual(VirtualClock::new(start, autojump, threshold))
                }
            },
        })
    }

    // ---- lifecycle -------------------------------------------------------

    fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    fn is_running(&self) -> bool {
        self.running.load(Ordering::Relaxed)
    }

    fn is_closed(&self) -> bool {
        self.reactor().is_closed()
    }

    /// The reactor native transports register with.
    #[getter]
    fn _reactor(&self, py: Python<'_>) -> Py<Reactor> {
        self.reactor.clone_ref(py)
    }

    fn _check_closed(&self) -> PyResult<()> {
        self.check_closed()
    }

    fn _check_thread(&self) -> PyResult<()> {
        self.check_thread()
    }

    #[getter]
    fn _current_handle(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        self.state.borrow(py).current_handle.as_ref().map(|h| h.clone_ref(py))
    }

    #[setter(_current_handle)]
    fn current_handle_set(&self, py: Python<'_>, handle: Option<Py<PyAny>>) {
        self.set_current_handle(py, handle);
    }

    #[getter]
    fn _stopping(&self) -> bool {
        self.stopping.load(Ordering::Relaxed)
    }

    #[getter]
    fn _thread_id(&self, py: Python<'_>) -> Py<PyAny> {
        match self.thread_id.load(Ordering::Relaxed) {
            0 => py.None(),
            tid => tid.into_pyobject(py).map_or_else(|_| py.None(), |v| v.into_any().unbind()),
        }
    }

    /// Marks the loop closed and drops every queued callback (asyncio's close
    /// clears `_ready` and `_scheduled`); fd watchers are unregistered. The
    /// poller, its waker and the signal channel release their fds now, as
    /// asyncio's close() closes its selector and self-pipe. The loop counts
    /// as closed first, as asyncio sets `_closed` before it clears its
    /// queues: a finaliser that the dropping runs and that calls back into
    /// the loop (`call_soon`) gets "Event loop is closed".
    fn _close_native(&self, py: Python<'_>) {
        self.reactor().close(py);
        self.release_all(py);
        self.health_closed();
        self.health_tasks_clear(py);
        self.signals.close();
    }

    // ---- debug -----------------------------------------------------------

    fn get_debug(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.state.borrow(py).debug_value {
            Some(v) => v.clone_ref(py),
            None => PyBool::new(py, self.debug()).to_owned().into_any().unbind(),
        }
    }

    /// Stores `set_debug`'s value: its truth value for the native checks,
    /// and the object itself for `get_debug` unless it is a bool.
    fn _set_debug_flag(&self, enabled: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = enabled.py();
        let flag = enabled.is_truthy()?;
        let kept = (!enabled.is_instance_of::<PyBool>()).then(|| enabled.clone().unbind());
        self.debug.store(flag, Ordering::Relaxed);
        let old = std::mem::replace(&mut self.state.borrow_mut(py).debug_value, kept);
        drop(old);
        Ok(())
    }

    // ---- scheduling ------------------------------------------------------

    fn time(&self) -> f64 {
        self.clock.now()
    }

    // ---- virtual time (ferroloop.testing) --------------------------------

    /// `(now, autojump, threshold)` of a virtual clock; None on real time.
    fn _virtual_clock(&self) -> Option<(f64, bool, f64)> {
        self.clock.as_virtual().map(|v| (v.now(), v.autojump(), v.threshold()))
    }

    /// Moves a virtual clock to `when` (later only), or by `seconds`; wakes
    /// the poll, so that a call from another thread is seen at once.
    #[pyo3(signature = (*, when = None, seconds = None))]
    fn _virtual_clock_move(&self, when: Option<f64>, seconds: Option<f64>) -> PyResult<f64> {
        let v = self.virtual_clock()?;
        let now = match (when, seconds) {
            (Some(w), None) => v.jump_to(w),
            (None, Some(s)) => v.advance(s),
            _ => return Err(PyValueError::new_err("give when or seconds")),
        };
        self.reactor().poller().notifier().notify().map_err(|e| os_error(&e))?;
        Ok(now)
    }

    /// Sets a virtual clock's autojump mode and its real-time threshold.
    fn _virtual_clock_set(&self, autojump: bool, threshold: f64) -> PyResult<()> {
        let v = self.virtual_clock()?;
        v.set_autojump(autojump);
        v.set_threshold(threshold);
        self.reactor().poller().notifier().notify().map_err(|e| os_error(&e))
    }

    // call_soon, call_soon_threadsafe, call_later, call_at and create_future
    // are replaced at import by direct entries (fast.rs), which hand any call
    // they do not take (odd keywords, missing arguments) to these.

    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::call_soon_impl(slf, callback, args, context)
    }

    #[pyo3(signature = (callback, *args, context=None))]
    fn call_soon_threadsafe(
        slf: &Bound<'_, Self>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::call_soon_threadsafe_impl(slf, callback, args, context)
    }

    #[pyo3(signature = (delay, callback, *args, context=None))]
    fn call_later(
        slf: &Bound<'_, Self>,
        delay: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        Self::call_later_impl(slf, delay, callback, args, context)
    }

    #[pyo3(signature = (when, callback, *args, context=None))]
    fn call_at(
        slf: &Bound<'_, Self>,
        when: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<TimerHandle>> {
        Self::call_at_impl(slf, when, callback, args, context)
    }

    fn _timer_handle_cancelled(&self, py: Python<'_>, _handle: Bound<'_, PyAny>) {
        self.timer_cancelled(py);
    }

    // ---- futures ---------------------------------------------------------

    fn create_future(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        Self::create_future_impl(slf)
    }

    // ---- tasks (tasks.rs) ------------------------------------------------

    #[pyo3(signature = (coro, **kwargs))]
    fn create_task(
        slf: &Bound<'_, Self>,
        coro: Bound<'_, PyAny>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        Self::create_task_impl(slf, coro, kwargs)
    }

    fn __traverse__(&self, visit: pyo3::PyVisit<'_>) -> Result<(), pyo3::PyTraverseError> {
        let Some(st) = self.state.try_borrow_for_gc() else { return Ok(()) };
        for cb in &st.ready {
            cb.traverse(&visit)?;
        }
        visit.call(&self.reactor)?;
        for h in st.signal_handlers.values() {
            visit.call(h)?;
        }
        st.timers.for_each(|t| Ready::traverse_timer(t, &visit))?;
        if let Some(kw) = &st.loop_kwargs {
            visit.call(kw)?;
        }
        for v in [&st.debug_value, &st.current_handle].into_iter().flatten() {
            visit.call(v)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            self.release_all(py);
            let old = {
                let mut st = self.state.borrow_mut(py);
                (st.debug_value.take(), st.current_handle.take())
            };
            drop(old);
        });
    }
}
