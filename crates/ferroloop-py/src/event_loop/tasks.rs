//! `create_task` with a native fast path.
//!
//! asyncio's `create_task` is `Task(coro, loop=self, name=..., context=...)`
//! plus checks. With no task factory, no debug mode and only keyword
//! arguments that the running Python's `create_task` accepts, we call
//! `tasks.Task` (the C type unless swapped) directly; everything else goes to the
//! interpreter's own `BaseEventLoop.create_task`, so errors and factory
//! semantics are asyncio's on every version.

use std::sync::atomic::Ordering;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::Loop;
use crate::capi::call::{call, vectorcall_opt};
use crate::pyimports::{base_create_task, running_loop, task_type};

/// Keyword arguments the running Python's `create_task` takes.
fn accepted_kwarg(py: Python<'_>, key: &Bound<'_, PyAny>) -> bool {
    let Ok(key) = key.cast::<PyString>() else { return false };
    let Ok(key) = key.to_str() else { return false };
    match key {
        "name" => true,
        "context" => py.version_info() >= (3, 11),
        _ => false,
    }
}

/// `callable(arg, loop=loop)` (or `callable(loop=loop)`).
///
/// The C `Future` and `Task` types have no vectorcall entry, so a vectorcall
/// with keyword names would make the interpreter build a kwargs dict per
/// call; instead the loop keeps one `{"loop": loop}` dict (neither type's
/// `__init__` changes its kwargs) and passes it through `tp_call`.
pub(super) fn call_with_loop(
    slf: &Bound<'_, Loop>,
    callable: &Bound<'_, PyAny>,
    arg: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    let kwargs = slf.get().loop_kwargs(slf)?;
    let args = match arg {
        Some(a) => PyTuple::new(py, [a])?,
        None => PyTuple::empty(py),
    };
    Ok(call(callable, &args, Some(&kwargs))?.unbind())
}

impl Loop {
    /// The body of `create_task`.
    pub(super) fn create_task_impl(
        slf: &Bound<'_, Self>,
        coro: Bound<'_, PyAny>,
        kwargs: Option<Bound<'_, PyDict>>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let fast = !this.has_task_factory.load(Ordering::Relaxed)
            && !this.debug()
            && kwargs.as_ref().is_none_or(|kw| kw.keys().iter().all(|k| accepted_kwarg(py, &k)));
        if !fast {
            // asyncio's own function, called straight from here so no Python
            // frame of ours sits between the user's and asyncio's.
            let slow = base_create_task(py)?;
            return Ok(slow.call((slf, coro), kwargs.as_ref())?.unbind());
        }
        this.check_closed()?;
        let task_type = task_type(py)?;
        if let Some(kw) = kwargs.filter(|kw| !kw.is_empty()) {
            kw.set_item(pyo3::intern!(py, "loop"), slf)?;
            return Ok(task_type.call((coro,), Some(&kw))?.unbind());
        }
        // Running, the loop is the one `Task` finds for itself: no keyword
        // to pass, so no keyword parsing in its `__init__`.
        let running = match running_loop(py)? {
            Some(f) => Some(f.call0()?),
            None => None,
        };
        if running.is_some_and(|r| r.is(slf)) {
            return Ok(vectorcall_opt(&task_type, Some(coro.as_borrowed()))?.unbind());
        }
        call_with_loop(slf, &task_type, Some(&coro))
    }
}

/// Called by `set_task_factory` (`_loop.py`).
#[pymethods]
impl Loop {
    fn _set_has_task_factory(&self, value: bool) {
        self.has_task_factory.store(value, Ordering::Relaxed);
    }
}
