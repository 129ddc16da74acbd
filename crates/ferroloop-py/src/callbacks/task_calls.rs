//! The C `Task`'s own callbacks, queued without a handle object.
//!
//! CPython's C `Task` schedules each of its steps with
//! `loop.call_soon(step, context=ctx)` and each wake-up (the future it awaited
//! is done) with `loop.call_soon(wakeup, fut, context=ctx)`, and drops the
//! handle it gets back unread (`_asynciomodule.c`, `call_soon`). Those two
//! callables are private to CPython: no other code can hold one. So for them
//! the loop queues the callback itself and gives back `None` instead of
//! building, and then freeing, a `Handle` that nobody reads: two of the three
//! objects a task step used to cost.
//!
//! Which callables they are is learnt once, when `ferroloop` is imported, by
//! running one task on a stand-in loop (`ferroloop._loop`), and differs by
//! version: 3.10-3.11 have a private type for each, 3.12+ a private type for
//! the step and a builtin function (identified by its method definition) for
//! the wake-up. When the probe finds anything else (a Python `Task`), nothing
//! is registered and every callback gets a handle.
//!
//! Not in debug mode: there, every callback gets a handle, which records where
//! it was made and is named in slow-callback warnings.

use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::handles::{call_in_exact_context, new_handle, Handle, HandleCore};
use crate::capi::call::vectorcall_opt;
use crate::capi::cfunction::{self, MethodDef, TypeObject};
use crate::errors::is_exit;
use crate::gil_cell::GilPy;
use crate::pyimports::report_callback_error;

/// The step's type (`TaskStepMethWrapper`).
static STEP_TYPE: AtomicPtr<TypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// The wake-up's type where it has one of its own (`TaskWakeupMethWrapper`, up to 3.11).
static WAKEUP_TYPE: AtomicPtr<TypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// The wake-up's method definition where it is a builtin function (3.12+).
static WAKEUP_DEF: AtomicPtr<MethodDef> = AtomicPtr::new(std::ptr::null_mut());
/// Keeps the registered samples (and so their types) alive.
static SAMPLES: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_register_task_callbacks, m)?)
}

/// Registers a step and a wake-up callback as the C `Task` passes them to
/// `call_soon` (called once, by `ferroloop._loop`); returns whether both
/// were recognised.
#[pyfunction]
fn _register_task_callbacks(step: Bound<'_, PyAny>, wakeup: Bound<'_, PyAny>) -> bool {
    let py = step.py();
    let plain = |obj: &Bound<'_, PyAny>| {
        // Private C types only: never a Python function, method or class.
        let ty = obj.get_type();
        !cfunction::is_builtin(obj)
            && !obj.is_instance_of::<pyo3::types::PyFunction>()
            && ty.qualname().is_ok_and(|n| n.to_string().starts_with("Task"))
            && !cfunction::is_subclassable(&ty)
    };
    if SAMPLES.get(py).is_some() || !plain(&step) {
        return false;
    }
    let wakeup_def = if let Some(def) = cfunction::method_def(&wakeup) {
        if !wakeup.getattr("__name__").is_ok_and(|n| n.to_string() == "task_wakeup") {
            return false;
        }
        Some(def)
    } else if plain(&wakeup) {
        None
    } else {
        return false;
    };
    if SAMPLES.set(py, (step.clone().unbind(), wakeup.clone().unbind())).is_err() {
        return false;
    }
    STEP_TYPE.store(step.get_type().as_type_ptr(), Ordering::Relaxed);
    match wakeup_def {
        Some(def) => WAKEUP_DEF.store(def, Ordering::Relaxed),
        None => WAKEUP_TYPE.store(wakeup.get_type().as_type_ptr(), Ordering::Relaxed),
    }
    true
}

/// Whether `callback` is one of the C `Task`'s own callbacks.
pub(crate) fn is_task_callback(callback: &Bound<'_, PyAny>) -> bool {
    let ty = callback.get_type_ptr();
    if std::ptr::eq(ty, STEP_TYPE.load(Ordering::Relaxed))
        || std::ptr::eq(ty, WAKEUP_TYPE.load(Ordering::Relaxed))
    {
        return true;
    }
    let def = WAKEUP_DEF.load(Ordering::Relaxed);
    !def.is_null() && cfunction::method_def(callback).is_some_and(|d| std::ptr::eq(d, def))
}

/// A queued C `Task` callback: what its handle would have held.
pub(crate) struct TaskCall {
    callback: GilPy<PyAny>,
    arg: Option<GilPy<PyAny>>,
    /// Always an exact `contextvars.Context` (checked when queued).
    context: GilPy<PyAny>,
}

impl TaskCall {
    pub(crate) fn new(
        callback: Bound<'_, PyAny>,
        arg: Option<Bound<'_, PyAny>>,
        context: Bound<'_, PyAny>,
    ) -> Self {
        Self {
            callback: GilPy::new(callback.unbind()),
            arg: arg.map(|a| GilPy::new(a.unbind())),
            context: GilPy::new(context.unbind()),
        }
    }

    /// Runs the callback in its context. An exception other than
    /// `KeyboardInterrupt`/`SystemExit` goes to the loop's exception handler
    /// with a handle made for the report, as for any callback.
    pub(crate) fn run(&self, loop_: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = loop_.py();
        let arg = self.arg.as_ref().map(|a| a.bind_borrowed(py));
        // The context is an exact Context (checked when queued).
        let out =
            call_in_exact_context(self.context.bind(py), || vectorcall_opt(self.callback.bind(py), arg));
        match out {
            Ok(()) => Ok(()),
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => self.report(loop_, err),
        }
    }

    fn report(&self, loop_: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
        let py = loop_.py();
        let callback = self.callback.bind(py).clone();
        let args = match &self.arg {
            Some(a) => PyTuple::new(py, [a.bind(py)])?,
            None => PyTuple::empty(py),
        };
        let context = Some(self.context.bind(py).clone());
        let core = HandleCore::new(loop_, callback.clone(), args.clone(), context, None)?;
        let handle = new_handle(py, Handle { core }, true)?;
        report_callback_error(py)?.call1((handle, callback, args, err.into_value(py)))?;
        Ok(())
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&*self.callback)?;
        if let Some(a) = &self.arg {
            visit.call(&**a)?;
        }
        visit.call(&*self.context)
    }
}
