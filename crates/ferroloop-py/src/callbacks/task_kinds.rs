//! Which callables are the C `Task`'s own step and wake-up, and which task
//! each belongs to.
//!
//! CPython's C `Task` schedules each of its steps with
//! `loop.call_soon(step, context=ctx)` and each wake-up (the future it awaited
//! is done) with `loop.call_soon(wakeup, fut, context=ctx)`. Those two
//! callables are private to CPython: no other code can hold one, so the loop
//! may queue them without a handle (`task_calls`).
//!
//! Which callables they are is learnt once, when `ferroloop` is imported, by
//! running one task on a stand-in loop (`ferroloop._loop`), and differs by
//! version: 3.10-3.11 have a private type for each, 3.12+ a private type for
//! the step and a builtin function (identified by its method definition) for
//! the wake-up. When the probe finds anything else (a Python `Task`), nothing
//! is registered and every callback gets a handle.
//!
//! Per-task accounting (`ferroloop.health.track_tasks`) asks which task a
//! step or wake-up belongs to ([`task_of`]), whether it was queued bare or in
//! a handle: the builtin wake-up's bound `self`; for the private types, their
//! first field (CPython's `sw_task`/`ww_task`), read only where the probe
//! proved, on the sample task, that the field holds the task; a Python
//! `Task`'s bound `__step`/`__wakeup` method's `self`.
//!
//! Names no other file of this package: handles and queued task calls both
//! ask it, it asks neither.

use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

use crate::capi::cfunction::{self, MethodDef, TypeObject};

/// The step's type (`TaskStepMethWrapper`).
static STEP_TYPE: AtomicPtr<TypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// The wake-up's type where it has one of its own (`TaskWakeupMethWrapper`, up to 3.11).
static WAKEUP_TYPE: AtomicPtr<TypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// The wake-up's method definition where it is a builtin function (3.12+).
static WAKEUP_DEF: AtomicPtr<MethodDef> = AtomicPtr::new(std::ptr::null_mut());
/// The step's first field is its task (checked on the sample).
static STEP_HOLDS_TASK: AtomicBool = AtomicBool::new(false);
/// The wake-up's type's first field is its task (checked on the sample).
static WAKEUP_HOLDS_TASK: AtomicBool = AtomicBool::new(false);
/// `types.MethodType` (a static type): a Python `Task`'s steps are its bound
/// methods. Set when the module is made.
static METHOD_TYPE: AtomicPtr<TypeObject> = AtomicPtr::new(std::ptr::null_mut());
/// Keeps the registered samples (and so their types) alive.
static SAMPLES: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let method = m.py().import("types")?.getattr("MethodType")?.cast_into::<pyo3::types::PyType>()?;
    METHOD_TYPE.store(method.as_type_ptr(), Ordering::Relaxed);
    m.add_function(wrap_pyfunction!(_register_task_callbacks, m)?)
}

/// Registers a step and a wake-up callback as the C `Task` passes them to
/// `call_soon` (called once, by `ferroloop._loop`); returns whether both
/// were recognised. `task` is the task they belong to, when known: with it,
/// [`task_of`] learns whether their first field is the task.
#[pyfunction]
#[pyo3(signature = (step, wakeup, task = None))]
fn _register_task_callbacks(
    step: Bound<'_, PyAny>,
    wakeup: Bound<'_, PyAny>,
    task: Option<Bound<'_, PyAny>>,
) -> bool {
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
    if let Some(task) = &task {
        STEP_HOLDS_TASK.store(first_slot_is(&step, task), Ordering::Relaxed);
        if wakeup_def.is_none() {
            WAKEUP_HOLDS_TASK.store(first_slot_is(&wakeup, task), Ordering::Relaxed);
        }
    }
    match wakeup_def {
        Some(def) => WAKEUP_DEF.store(def, Ordering::Relaxed),
        None => WAKEUP_TYPE.store(wakeup.get_type().as_type_ptr(), Ordering::Relaxed),
    }
    true
}

/// Whether `callback` may be a task's step or wake-up (what [`task_of`]
/// looks into): a cheap test by type, calling nothing.
#[inline]
pub(crate) fn may_be_step(callback: &Bound<'_, PyAny>) -> bool {
    let ty = callback.get_type_ptr();
    std::ptr::eq(ty, STEP_TYPE.load(Ordering::Relaxed))
        || std::ptr::eq(ty, WAKEUP_TYPE.load(Ordering::Relaxed))
        || std::ptr::eq(ty, METHOD_TYPE.load(Ordering::Relaxed))
        || cfunction::is_builtin(callback)
}

/// Whether the first field of `sample` (one of the C `Task`'s private
/// callables) is `task`, the task it was made for.
fn first_slot_is(sample: &Bound<'_, PyAny>, task: &Bound<'_, PyAny>) -> bool {
    if !cfunction::has_first_slot(sample) {
        return false;
    }
    // SAFETY: the sample is an instance of a private C type of `_asyncio`
    // (checked by the caller) large enough for one field; its structs
    // (`TaskStepMethWrapper`, `TaskWakeupMethWrapper`) begin with
    // `PyObject_HEAD` and then a strong reference to their task, which this
    // comparison confirms before the layout is ever relied on.
    unsafe { cfunction::first_slot(sample) }.is_some_and(|t| t.is(task))
}

/// The task a step or wake-up callback belongs to, if `callback` is one: a
/// C `Task`'s own callable (where the layout was confirmed at import), or a
/// Python `Task`'s bound `__step`/`__wakeup`.
pub(crate) fn task_of<'py>(callback: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    let ty = callback.get_type_ptr();
    if std::ptr::eq(ty, STEP_TYPE.load(Ordering::Relaxed)) {
        // SAFETY: an instance of the step type, whose first field was shown
        // to be its task at registration (STEP_HOLDS_TASK).
        return STEP_HOLDS_TASK
            .load(Ordering::Relaxed)
            .then(|| unsafe { cfunction::first_slot(callback) })?;
    }
    if std::ptr::eq(ty, WAKEUP_TYPE.load(Ordering::Relaxed)) {
        // SAFETY: as above, for the wake-up type (WAKEUP_HOLDS_TASK).
        return WAKEUP_HOLDS_TASK
            .load(Ordering::Relaxed)
            .then(|| unsafe { cfunction::first_slot(callback) })?;
    }
    let def = WAKEUP_DEF.load(Ordering::Relaxed);
    if !def.is_null() && cfunction::method_def(callback).is_some_and(|d| std::ptr::eq(d, def)) {
        return cfunction::bound_self(callback);
    }
    if !std::ptr::eq(ty, METHOD_TYPE.load(Ordering::Relaxed)) {
        return None;
    }
    let py = callback.py();
    let name = callback.getattr(pyo3::intern!(py, "__name__")).ok()?;
    let ours = name.eq(pyo3::intern!(py, "__step")).unwrap_or(false)
        || name.eq(pyo3::intern!(py, "__wakeup")).unwrap_or(false);
    if !ours {
        return None;
    }
    callback.getattr(pyo3::intern!(py, "__self__")).ok()
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
