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

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::handles::{call_in_exact_context, new_handle, Handle, HandleCore};
use crate::errors::is_exit;
use crate::gil_cell::GilPy;
use crate::pyimports::report_callback_error;

/// The step's type (`TaskStepMethWrapper`).
static STEP_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// The wake-up's type where it has one of its own (`TaskWakeupMethWrapper`, up to 3.11).
static WAKEUP_TYPE: AtomicPtr<ffi::PyTypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// The wake-up's method definition where it is a builtin function (3.12+).
static WAKEUP_DEF: AtomicPtr<ffi::PyMethodDef> = AtomicPtr::new(std::ptr::null_mut());
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
    let builtin = |obj: &Bound<'_, PyAny>| {
        // SAFETY: a type check on a live object.
        unsafe { ffi::PyCFunction_CheckExact(obj.as_ptr()) != 0 }
    };
    let plain = |obj: &Bound<'_, PyAny>| {
        // Private C types only: never a Python function, method or class.
        let ty = obj.get_type();
        // SAFETY: reading the flags of a live type object (through the C
        // API's accessor: `tp_flags` is an atomic on free-threaded builds).
        let subclassable = unsafe { ffi::PyType_HasFeature(ty.as_type_ptr(), ffi::Py_TPFLAGS_BASETYPE) != 0 };
        !builtin(obj)
            && !obj.is_instance_of::<pyo3::types::PyFunction>()
            && ty.qualname().is_ok_and(|n| n.to_string().starts_with("Task"))
            && !subclassable
    };
    if SAMPLES.get(py).is_some() || !plain(&step) {
        return false;
    }
    let wakeup_def = if builtin(&wakeup) {
        if !wakeup.getattr("__name__").is_ok_and(|n| n.to_string() == "task_wakeup") {
            return false;
        }
        // SAFETY: an exact builtin function object, whose m_ml is its definition.
        Some(unsafe { (*wakeup.as_ptr().cast::<ffi::PyCFunctionObject>()).m_ml })
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
    let ptr = callback.as_ptr();
    // SAFETY: reading the type of a live object.
    let ty = unsafe { ffi::Py_TYPE(ptr) };
    if std::ptr::eq(ty, STEP_TYPE.load(Ordering::Relaxed))
        || std::ptr::eq(ty, WAKEUP_TYPE.load(Ordering::Relaxed))
    {
        return true;
    }
    let def = WAKEUP_DEF.load(Ordering::Relaxed);
    // SAFETY: a type check, then m_ml of an exact builtin function object.
    !def.is_null()
        && unsafe { ffi::PyCFunction_CheckExact(ptr) != 0 }
        && std::ptr::eq(unsafe { (*ptr.cast::<ffi::PyCFunctionObject>()).m_ml }, def)
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
        let args = [self.arg.as_ref().map_or(std::ptr::null_mut(), |a| a.as_ptr())];
        let nargs = usize::from(self.arg.is_some());
        // SAFETY: the context is an exact Context (checked when queued);
        // callback and arg are live (this entry owns them for the call); the
        // result is a new reference or NULL with an exception set.
        let out = unsafe {
            call_in_exact_context(py, self.context.as_ptr(), || {
                ffi::PyObject_Vectorcall(self.callback.as_ptr(), args.as_ptr(), nargs, std::ptr::null_mut())
            })
        };
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
