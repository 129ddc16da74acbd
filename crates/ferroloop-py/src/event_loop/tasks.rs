//! `create_task` with a native fast path.
//!
//! asyncio's `create_task` is `Task(coro, loop=self, name=..., context=...)`
//! plus checks. With no task factory, no debug mode and only keyword
//! arguments that the running Python's `create_task` accepts, we call the C
//! `Task` type directly (vectorcall, no dict); everything else goes to the
//! interpreter's own `BaseEventLoop.create_task`, so errors and factory
//! semantics are asyncio's on every version.

use std::sync::atomic::Ordering;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::GILOnceCell;
use pyo3::types::{PyDict, PyString, PyTuple};

use super::Loop;
use crate::pyimports::task_type;

/// Keyword arguments the running Python's `create_task` takes.
fn accepted_kwarg(py: Python<'_>, key: &Bound<'_, PyAny>) -> bool {
    let Ok(key) = key.downcast::<PyString>() else { return false };
    let Ok(key) = key.to_str() else { return false };
    match key {
        "name" => true,
        "context" => py.version_info() >= (3, 11),
        _ => false,
    }
}

fn loop_kwnames(py: Python<'_>) -> &Bound<'_, PyTuple> {
    static KWNAMES: GILOnceCell<Py<PyTuple>> = GILOnceCell::new();
    KWNAMES.get_or_init(py, || PyTuple::new(py, [pyo3::intern!(py, "loop")]).unwrap().unbind()).bind(py)
}

/// `callable(arg, loop=loop)` (or `callable(loop=loop)`) through vectorcall,
/// without building a kwargs dict.
pub(super) fn call_with_loop(
    slf: &Bound<'_, Loop>,
    callable: &Bound<'_, PyAny>,
    arg: Option<&Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let py = slf.py();
    // Slot 0 is scratch space the callee may use (PY_VECTORCALL_ARGUMENTS_OFFSET).
    let args = match arg {
        Some(a) => [std::ptr::null_mut(), a.as_ptr(), slf.as_ptr()],
        None => [std::ptr::null_mut(), slf.as_ptr(), std::ptr::null_mut()],
    };
    let nargs = usize::from(arg.is_some());
    // SAFETY: the argument pointers are borrowed live objects for the duration
    // of the call; kwnames is a 1-tuple naming the last argument; the result
    // is a new reference or NULL with an exception set.
    let obj = unsafe {
        ffi::PyObject_Vectorcall(
            callable.as_ptr(),
            args.as_ptr().add(1),
            nargs | ffi::PY_VECTORCALL_ARGUMENTS_OFFSET,
            loop_kwnames(py).as_ptr(),
        )
    };
    // SAFETY: see above.
    Ok(unsafe { Bound::from_owned_ptr_or_err(py, obj)? }.unbind())
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
            // Called as a method so no Python frame of ours sits between the
            // user's and asyncio's (it trims its own frame off the traceback).
            let slow = slf.getattr(pyo3::intern!(py, "_create_task_slow"))?;
            return Ok(slow.call((coro,), kwargs.as_ref())?.unbind());
        }
        this.check_closed()?;
        let task_type = task_type(py)?;
        if let Some(kw) = kwargs.filter(|kw| !kw.is_empty()) {
            kw.set_item(pyo3::intern!(py, "loop"), slf)?;
            return Ok(task_type.call((coro,), Some(&kw))?.unbind());
        }
        call_with_loop(slf, task_type, Some(&coro))
    }
}
