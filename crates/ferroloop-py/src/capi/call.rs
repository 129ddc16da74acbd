//! Calls through the C API where PyO3's would cost more: `tp_call` with the
//! tuple and dict already made, vectorcall with the arguments where they are,
//! and a tuple of borrowed items.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{RawObject, SsizeT};

/// `callable(*args, **kwargs)` through `tp_call`, passing the tuple and the
/// dict as they are (the C `Task` and `Future` have no vectorcall entry, so
/// keywords by vectorcall would make a dict per call).
#[inline(always)]
pub(crate) fn call<'py>(
    callable: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
    kwargs: Option<&Bound<'py, PyDict>>,
) -> PyResult<Bound<'py, PyAny>> {
    let kwargs = kwargs.map_or(std::ptr::null_mut(), Bound::as_ptr);
    // SAFETY: live objects borrowed for the call and the GIL (Bounds); kwargs
    // is a dict or NULL; the result is a new reference or NULL with an
    // exception set.
    unsafe {
        let res = ffi::PyObject_Call(callable.as_ptr(), args.as_ptr(), kwargs);
        Bound::from_owned_ptr_or_err(callable.py(), res)
    }
}

/// `callable()`, or `callable(arg)` when there is one, by the vectorcall
/// protocol: no argument tuple is made.
#[inline(always)]
pub(crate) fn vectorcall_opt<'py>(
    callable: &Bound<'py, PyAny>,
    arg: Option<Borrowed<'_, 'py, PyAny>>,
) -> PyResult<Bound<'py, PyAny>> {
    let args = [arg.map_or(std::ptr::null_mut(), Borrowed::as_ptr)];
    // SAFETY: `args` holds `arg` when there is one, a live object.
    unsafe { vectorcall_raw(callable, args.as_ptr(), usize::from(arg.is_some()), std::ptr::null_mut()) }
}

/// A vectorcall with the arguments as CPython hands them to a
/// `METH_FASTCALL | METH_KEYWORDS` entry, keyword names included.
///
/// # Safety
/// `args` holds `nargsf` live positional arguments followed by one live value
/// per name in `kwnames`, which is a tuple of `str` or NULL.
#[inline(always)]
pub(crate) unsafe fn vectorcall_raw<'py>(
    callable: &Bound<'py, PyAny>,
    args: *const RawObject,
    nargsf: usize,
    kwnames: RawObject,
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: the caller's guarantees, and the GIL (a Bound); the result is
    // a new reference or NULL with an exception set.
    unsafe {
        let res = ffi::PyObject_Vectorcall(callable.as_ptr(), args, nargsf, kwnames);
        Bound::from_owned_ptr_or_err(callable.py(), res)
    }
}

/// A new tuple of `items`, each given a new reference (no items: CPython's
/// shared empty tuple).
#[inline]
pub(crate) fn tuple_from_borrowed<'py>(
    py: Python<'py>,
    items: &[Borrowed<'_, 'py, PyAny>],
) -> PyResult<Bound<'py, PyTuple>> {
    let len = SsizeT::try_from(items.len()).unwrap_or(SsizeT::MAX);
    // SAFETY: a new reference or NULL with an exception set; each slot is
    // filled once with a new reference to a live item, as PyTuple_SET_ITEM
    // steals it.
    unsafe {
        let tuple = Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(len))?;
        for (i, item) in (0..).zip(items) {
            let item = item.as_ptr();
            ffi::Py_INCREF(item);
            ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i, item);
        }
        Ok(tuple.cast_into_unchecked())
    }
}
