//! `Handle` and `TimerHandle`: what `call_soon`/`call_later` return.
//!
//! Both wrap a [`HandleCore`] (callback, args, context, loop, cancel flag); the
//! loop's queues hold them as `event_loop::ready::Ready`. They mirror `asyncio.Handle` and
//! `asyncio.TimerHandle`: same methods, repr, comparisons and private
//! attributes that asyncio code reads (`_callback`, `_args`, `_cancelled`,
//! `_source_traceback`, `_when`, ...). As in uvloop, `TimerHandle` is not a
//! Python subclass of `Handle` (docs/differences.md).
//!
//! Invariant: `call` is `None` once cancelled (the callback is released at
//! once, as asyncio does); `cancelled` only goes from false to true.

use std::sync::atomic::{AtomicBool, Ordering};

use pyo3::prelude::*;
use pyo3::pyclass::CompareOp;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyString, PyTuple};
use pyo3::{PyTraverseError, PyVisit};

use super::run_guard::RunGuard;
use crate::capi::freelist::{self, FreeList, Pooled};
use crate::capi::{call, context, exc, gc};
use crate::errors::is_exit;
use crate::gil_cell::{GilCell, GilPy};
use crate::pyimports::{
    extract_stack, handle_repr, report_callback_error, run_cancelled_handle, threadsafe_handle_type,
};

/// Set once the free lists are installed. The types are shared by every
/// module object, and `register` runs for each: PyO3 (0.28+) makes a new one
/// per fresh import, and `importlib.reload` runs it again on the same one.
static FREE_LISTS: PyOnceLock<()> = PyOnceLock::new();

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Handle>()?;
    m.add_class::<TimerHandle>()?;
    FREE_LISTS.get_or_init(m.py(), || {
        // SAFETY: the first run, so neither type has an instance yet.
        unsafe {
            freelist::install::<Handle>(m.py());
            freelist::install::<TimerHandle>(m.py());
        }
    });
    Ok(())
}

static HANDLES: FreeList = FreeList::new();
static TIMERS: FreeList = FreeList::new();

// SAFETY: both are GC types (they define __traverse__), final in Python,
// and each has its own list.
unsafe impl Pooled for Handle {
    fn free_list() -> &'static FreeList {
        &HANDLES
    }
}

// SAFETY: as for Handle.
unsafe impl Pooled for TimerHandle {
    fn free_list() -> &'static FreeList {
        &TIMERS
    }
}

pub(crate) struct Call {
    callback: GilPy<PyAny>,
    args: GilPy<PyTuple>,
}

/// The state shared by both handle types.
///
/// The context a handle copies for itself (no `context=` given) is kept out
/// of the cycle collector while only this handle refers to it and the handle
/// is untracked (see [`new_handle`]); it is tracked as soon as it escapes
/// (`get_context()`, the handle becoming tracked) and when the handle goes.
/// Invariant: an untracked context here is always such a private copy, as
/// every context Python code can reach is tracked.
pub(crate) struct HandleCore {
    call: GilCell<Option<Call>>,
    context: GilPy<PyAny>,
    loop_: GilPy<PyAny>,
    cancelled: AtomicBool,
    source_traceback: Option<Py<PyAny>>,
    /// asyncio keeps the repr of a handle cancelled in debug mode.
    repr: GilCell<Option<Py<PyString>>>,
    /// Whether `cancel()`/`cancelled()` wait for a running callback.
    guard: RunGuard,
}

impl HandleCore {
    pub(crate) fn new(
        loop_: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        debug: Option<u8>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let context = match context {
            Some(ctx) if !ctx.is_none() => ctx.unbind(),
            _ => {
                // A fresh copy, tracked, and only we hold it.
                let ctx = context::copy_current(py)?;
                // SAFETY: a live Context (a GC type); HandleCore's drop tracks
                // it again before the last reference can go.
                unsafe { gc::untrack(ctx.as_ptr()) };
                ctx.unbind()
            }
        };
        let source_traceback = match debug {
            Some(trim) => Some(extract_stack(py)?.call1((trim,))?.unbind()),
            None => None,
        };
        Ok(Self {
            call: GilCell::new(Some(Call {
                callback: GilPy::new(callback.unbind()),
                args: GilPy::new(args.unbind()),
            })),
            context: GilPy::new(context),
            loop_: GilPy::new(loop_.clone().unbind()),
            cancelled: AtomicBool::new(false),
            source_traceback,
            repr: GilCell::new(None),
            guard: RunGuard::plain(),
        })
    }

    /// Makes `cancel()` and `cancelled()` from other threads wait while the
    /// callback runs, as asyncio's `_ThreadSafeHandle` (see run_guard.rs).
    pub(crate) fn into_threadsafe(mut self) -> Self {
        self.guard = RunGuard::threadsafe();
        self
    }

    /// Lets the collector see the context (it is escaping, or the handle is
    /// tracked from now on).
    pub(crate) fn track_context(&self) {
        let ctx = self.context.as_ptr();
        // SAFETY: a live object (we hold a reference). Only a Context can be
        // our private copy; `context=` may be anything, even a non-GC object.
        if unsafe { context::is_exact_ptr(ctx) } {
            // SAFETY: a live Context (a GC type), and the GIL is held (our
            // callers' invariant: a handle is only touched with it).
            unsafe { gc::ensure_tracked(ctx) };
        }
    }

    /// The context, for Python code: from now on the collector sees it.
    fn context(&self, py: Python<'_>) -> Py<PyAny> {
        self.track_context();
        self.context.clone_ref(py)
    }

    pub(crate) fn is_cancelled(&self) -> bool {
        self.cancelled.load(Ordering::Relaxed)
    }

    /// The task whose step or wake-up this handle runs, if it runs one and
    /// is not cancelled (per-task accounting; see `task_kinds::task_of`).
    pub(crate) fn task<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        if self.is_cancelled() {
            return None;
        }
        let call = self.call.borrow(py);
        let callback = call.as_ref()?.callback.bind(py);
        if !super::task_kinds::may_be_step(callback) {
            return None;
        }
        // Our own reference: `task_of` may run Python code (a method's name).
        let callback = callback.clone();
        drop(call);
        super::task_kinds::task_of(&callback)
    }

    pub(crate) fn loop_obj<'py>(&self, py: Python<'py>) -> &Bound<'py, PyAny> {
        self.loop_.bind(py)
    }

    /// Marks cancelled; returns false if it already was. The callback and
    /// args are released after the flag is set and the borrow dropped.
    fn cancel(&self, slf: &Bound<'_, PyAny>) -> PyResult<bool> {
        let py = slf.py();
        self.guard.wait_idle(py);
        if self.cancelled.load(Ordering::Relaxed) {
            return Ok(false);
        }
        self.cancelled.store(true, Ordering::Relaxed);
        if loop_debug(self.loop_obj(py)) {
            // asyncio keeps the repr, taken once cancelled, with the callback.
            let repr = slf.repr()?.unbind();
            *self.repr.borrow_mut(py) = Some(repr);
        }
        let released = self.call.borrow_mut(py).take();
        drop(released);
        Ok(true)
    }

    /// Runs the callback in its context. Errors other than `SystemExit` and
    /// `KeyboardInterrupt` go to the loop's exception handler; those two are
    /// returned, as asyncio lets them leave `run_forever`.
    pub(crate) fn run(&self, slf: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        // Strong references of our own: the callback may cancel this handle.
        let Some((callback, args)) =
            self.call.borrow(py).as_ref().map(|c| (c.callback.bind(py).clone(), c.args.bind(py).clone()))
        else {
            return Ok(());
        };
        let running = self.guard.enter();
        let result = call_in_context(py, self.context.bind(py), &callback, &args);
        drop(running);
        match result {
            Ok(()) => Ok(()),
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => {
                let report = report_callback_error(py)?;
                exc::while_handling(py, err, |e| report.call1((slf, callback, args, e)))?;
                Ok(())
            }
        }
    }

    /// `_run()` called on a cancelled handle (the loop itself skips them).
    /// asyncio's `cancel()` set its callback and arguments to `None`, so its
    /// `_run` reports the `TypeError` of `context.run(None, *None)`; 3.14's
    /// `_ThreadSafeHandle` returns at once when cancelled.
    fn run_cancelled(&self, slf: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        if self.guard.is_threadsafe() && threadsafe_handle_type(py)?.is_some() {
            return Ok(());
        }
        run_cancelled_handle(py)?.call1((slf,)).map(drop)
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(call) = self.call.try_borrow_for_gc() {
            if let Some(c) = call.as_ref() {
                visit.call(&*c.callback)?;
                visit.call(&*c.args)?;
            }
        }
        visit.call(&*self.context)?;
        visit.call(&*self.loop_)?;
        if let Some(tb) = &self.source_traceback {
            visit.call(tb)?;
        }
        Ok(())
    }

    /// Drops the callback and its arguments (the GC's `__clear__`).
    fn release(&self, py: Python<'_>) {
        let released = self.call.borrow_mut(py).take();
        drop(released);
    }
}

impl Drop for HandleCore {
    fn drop(&mut self) {
        // Before our reference goes: whoever else holds the context needs the
        // collector to see it, and a context's deallocation unlinks it from
        // the collector's list without checking that it is on one.
        self.track_context();
    }
}

/// `context.run(callback, *args)` through the C API, without building a
/// bound method or a new argument tuple.
fn call_in_context<'py>(
    py: Python<'py>,
    ctx: &Bound<'py, PyAny>,
    cb: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<()> {
    if !context::is_exact(ctx) {
        // Not a Context: do what asyncio does, `context.run(callback, *args)`.
        let mut call_args = vec![cb.clone()];
        call_args.extend(args.iter());
        ctx.call_method1(pyo3::intern!(py, "run"), PyTuple::new(py, call_args)?)?;
        return Ok(());
    }
    call_in_exact_context(ctx, || call::call(cb, args, None))
}

/// Enters `ctx` (an exact `contextvars.Context`), makes the call `call`,
/// drops its result and leaves `ctx`.
#[inline]
pub(crate) fn call_in_exact_context<'py>(
    ctx: &Bound<'py, PyAny>,
    call: impl FnOnce() -> PyResult<Bound<'py, PyAny>>,
) -> PyResult<()> {
    let _entered = context::enter(ctx)?;
    // The result is released before the context is left, as Context.run does.
    call().map(drop)
}

/// What a handle needs of its loop. The loop's module registers it at import
/// ([`set_loop_hooks`]), so that this layer does not name the loop's type.
pub(crate) struct LoopHooks {
    /// Whether `loop_` is a native loop in debug mode.
    pub(crate) debug: fn(&Bound<'_, PyAny>) -> bool,
    /// A timer still in `loop_`'s timer queue was cancelled.
    pub(crate) timer_cancelled: fn(&Bound<'_, PyAny>),
}

static HOOKS: std::sync::OnceLock<LoopHooks> = std::sync::OnceLock::new();

/// Called once, by the loop's module, before any handle exists.
pub(crate) fn set_loop_hooks(hooks: LoopHooks) {
    let _ = HOOKS.set(hooks);
}

fn loop_debug(loop_: &Bound<'_, PyAny>) -> bool {
    HOOKS.get().is_some_and(|h| (h.debug)(loop_))
}

/// The Python-visible methods both handle types share.
///
/// PyO3 takes one `#[pymethods]` block per class (the `multiple-pymethods`
/// feature costs an allocation on every type lookup, i.e. every method call),
/// so each type's own methods are passed in and spliced into the block.
macro_rules! handle_methods {
    ($ty:ty, { $($own:tt)* }) => {
        #[pymethods]
        impl $ty {
            $($own)*

            fn cancelled(&self, py: Python<'_>) -> bool {
                self.core.guard.wait_idle(py);
                self.core.is_cancelled()
            }

            fn get_context(&self, py: Python<'_>) -> Py<PyAny> {
                self.core.context(py)
            }

            fn _run(slf: &Bound<'_, Self>) -> PyResult<()> {
                let core = &slf.get().core;
                if core.is_cancelled() {
                    return core.run_cancelled(slf.as_any());
                }
                core.run(slf.as_any())
            }

            fn __repr__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
                let py = slf.py();
                if let Some(r) = slf.get().core.repr.borrow(py).as_ref() {
                    return Ok(r.clone_ref(py).into_any());
                }
                Ok(handle_repr(py)?.call1((slf,))?.unbind())
            }

            #[getter]
            fn _callback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core.call.borrow(py).as_ref().map(|c| c.callback.clone_ref(py))
            }

            #[getter]
            fn _args(&self, py: Python<'_>) -> Option<Py<PyTuple>> {
                self.core.call.borrow(py).as_ref().map(|c| c.args.clone_ref(py))
            }

            #[getter]
            fn _cancelled(&self) -> bool {
                self.core.is_cancelled()
            }

            #[getter]
            fn _loop(&self, py: Python<'_>) -> Py<PyAny> {
                self.core.loop_.clone_ref(py)
            }

            #[getter]
            fn _context(&self, py: Python<'_>) -> Py<PyAny> {
                self.core.context(py)
            }

            #[getter]
            fn _source_traceback(&self, py: Python<'_>) -> Option<Py<PyAny>> {
                self.core.source_traceback.as_ref().map(|t| t.clone_ref(py))
            }

            fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
                self.core.traverse(&visit)
            }

            fn __clear__(&self) {
                Python::attach(|py| self.core.release(py));
            }
        }
    };
}

/// How handles meet the cycle collector.
///
/// A handle the loop runs once (`call_soon`, timers) is created *untracked*:
/// while it sits in the loop's ready queue or timer heap, the loop's own
/// `__traverse__` visits the handle's references in its place (each such
/// handle is in exactly one loop container, so each reference is visited
/// exactly once). When it leaves the loop ([`Queued`]'s drop) and somebody
/// else still holds it, it is tracked from then on, so a cycle through it is
/// collected as with asyncio. Most handles are never seen by user code, and
/// this spares the collector a pass over every one of them.
///
/// Reader, writer and signal handles can sit in two containers at once (the
/// watch table and the ready queue), so they are tracked from the start.
pub(crate) fn new_handle<T>(py: Python<'_>, value: T, tracked: bool) -> PyResult<Py<T>>
where
    T: HasCore + Into<pyo3::PyClassInitializer<T>>,
{
    let obj = Py::new(py, value)?;
    if tracked {
        obj.get().core().track_context();
    }
    // SAFETY: obj is a live, fully initialised object of a GC type (it defines
    // __traverse__), and the GIL is held (py); our free list hands back
    // untracked objects, a fresh allocation is tracked: we put it in the
    // state wanted. A handle's deallocation checks before it untracks.
    unsafe {
        let is_tracked = gc::is_tracked(obj.as_ptr());
        if tracked && !is_tracked {
            gc::track(obj.as_ptr());
        } else if !tracked && is_tracked {
            gc::untrack(obj.as_ptr());
        }
    }
    Ok(obj)
}

/// The two handle types, as the loop's queues see them.
pub(crate) trait HasCore: pyo3::PyClass<Frozen = pyo3::pyclass::boolean_struct::True> + Sync {
    fn core(&self) -> &HandleCore;
}

impl HasCore for Handle {
    fn core(&self) -> &HandleCore {
        &self.core
    }
}

impl HasCore for TimerHandle {
    fn core(&self) -> &HandleCore {
        &self.core
    }
}

/// A handle held by one of the loop's containers. Dropping it (the handle
/// leaves the loop) tracks the handle, and its context, if anyone else still
/// refers to it.
///
/// Invariant: only dropped with the GIL held (inside the loop's methods, its
/// GC slots or its deallocation), which the raw refcount read relies on.
pub(crate) struct Queued<T: HasCore>(pub(crate) GilPy<T>);

impl<T: HasCore> Queued<T> {
    pub(crate) fn new(handle: Py<T>) -> Self {
        Self(GilPy::new(handle))
    }

    /// Whether the collector sees this handle itself (else the loop visits
    /// its references).
    pub(crate) fn is_tracked(&self) -> bool {
        // SAFETY: a live object; see the type's invariant about the GIL.
        unsafe { gc::is_tracked(self.0.as_ptr()) }
    }
}

impl<T: HasCore> Drop for Queued<T> {
    fn drop(&mut self) {
        let ptr = self.0.as_ptr();
        // SAFETY: the GIL is held (type invariant) and ptr is live: we still
        // own one reference, so a count above one means another holder.
        if unsafe { gc::refcnt(ptr) } > 1 && !self.is_tracked() {
            self.0.get().core().track_context();
            // SAFETY: as above; a handle is of a GC type.
            unsafe { gc::ensure_tracked(ptr) };
        }
    }
}

/// A callback scheduled with `call_soon`, a reader/writer or a signal handler.
#[pyclass(module = "ferroloop._ferroloop", name = "Handle", frozen, weakref)]
pub(crate) struct Handle {
    pub(crate) core: HandleCore,
}

handle_methods!(Handle, {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        slf.get().core.cancel(slf.as_any()).map(drop)
    }

    /// asyncio's `_ThreadSafeHandle` for a `call_soon_threadsafe` handle
    /// where the running Python has that class, so that `isinstance` and the
    /// repr answer as there (docs/differences.md).
    #[getter(__class__)]
    fn class(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.get().core.guard.is_threadsafe() {
            if let Some(cls) = threadsafe_handle_type(py)? {
                return Ok(cls.clone().unbind());
            }
        }
        Ok(slf.get_type().into_any().unbind())
    }
});

/// A callback scheduled with `call_later` or `call_at`.
#[pyclass(module = "ferroloop._ferroloop", name = "TimerHandle", frozen, weakref)]
pub(crate) struct TimerHandle {
    pub(crate) core: HandleCore,
    pub(crate) when: f64,
    /// The deadline exactly as given to `call_at` (asyncio returns it as is).
    when_obj: Option<Py<PyAny>>,
    /// In the loop's timer queue (cleared when it becomes due).
    scheduled: AtomicBool,
}

impl TimerHandle {
    pub(crate) fn new(core: HandleCore, when: f64, when_obj: Option<Py<PyAny>>) -> Self {
        Self { core, when, when_obj, scheduled: AtomicBool::new(true) }
    }

    pub(crate) fn unschedule(&self) {
        self.scheduled.store(false, Ordering::Relaxed);
    }

    fn when_value(&self, py: Python<'_>) -> Py<PyAny> {
        match &self.when_obj {
            Some(w) => w.clone_ref(py),
            None => PyFloat::new(py, self.when).into_any().unbind(),
        }
    }
}

handle_methods!(TimerHandle, {
    fn cancel(slf: &Bound<'_, Self>) -> PyResult<()> {
        let this = slf.get();
        if this.core.cancel(slf.as_any())? && this.scheduled.load(Ordering::Relaxed) {
            if let Some(hooks) = HOOKS.get() {
                (hooks.timer_cancelled)(this.core.loop_obj(slf.py()));
            }
        }
        Ok(())
    }

    fn when(&self, py: Python<'_>) -> Py<PyAny> {
        self.when_value(py)
    }

    #[getter]
    fn _when(&self, py: Python<'_>) -> Py<PyAny> {
        self.when_value(py)
    }

    #[getter]
    fn _scheduled(&self) -> bool {
        self.scheduled.load(Ordering::Relaxed)
    }

    fn __hash__(&self, py: Python<'_>) -> PyResult<isize> {
        // asyncio: hash(self._when)
        self.when_value(py).bind(py).hash()
    }

    fn __richcmp__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>, op: CompareOp) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Ok(other) = other.cast::<TimerHandle>() else {
            return Ok(py.NotImplemented());
        };
        let (a, b) = (slf.get(), other.get());
        let result = match op {
            CompareOp::Lt => a.when < b.when,
            CompareOp::Gt => a.when > b.when,
            CompareOp::Le => a.when < b.when || a.eq(b, py)?,
            CompareOp::Ge => a.when > b.when || a.eq(b, py)?,
            CompareOp::Eq => a.eq(b, py)?,
            CompareOp::Ne => !a.eq(b, py)?,
        };
        Ok(pyo3::types::PyBool::new(py, result).to_owned().into_any().unbind())
    }
});

impl TimerHandle {
    /// asyncio's `TimerHandle.__eq__`: same deadline, callback, args and state.
    fn eq(&self, other: &Self, py: Python<'_>) -> PyResult<bool> {
        if std::ptr::eq(self, other) {
            return Ok(true);
        }
        if self.when != other.when || self.core.is_cancelled() != other.core.is_cancelled() {
            return Ok(false);
        }
        let (a, b) = (self.core.call.borrow(py), other.core.call.borrow(py));
        match (a.as_ref(), b.as_ref()) {
            (None, None) => Ok(true),
            (Some(x), Some(y)) => {
                let (xc, xa, yc, ya) = (
                    x.callback.clone_ref(py),
                    x.args.clone_ref(py),
                    y.callback.clone_ref(py),
                    y.args.clone_ref(py),
                );
                drop((a, b));
                Ok(xc.bind(py).eq(yc.bind(py))? && xa.bind(py).eq(ya.bind(py))?)
            }
            _ => Ok(false),
        }
    }
}

/// A timer as the timer queue holds it.
pub(crate) type QueuedTimer = Queued<TimerHandle>;

impl ferroloop_core::TimerEntry for QueuedTimer {
    fn is_cancelled(&self) -> bool {
        self.0.get().core.is_cancelled()
    }
}
