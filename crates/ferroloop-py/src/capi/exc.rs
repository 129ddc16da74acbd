//! The exception being handled (`sys.exc_info()`), set for the length of a
//! call: what asyncio's `except BaseException as exc:` block gives the code it
//! runs, here for reports made from Rust after the error was fetched.
//!
//! `PyErr_GetExcInfo`/`PyErr_SetExcInfo` exist on every supported version
//! (3.11+ keeps only the value; 3.10 the type, value and traceback), so one
//! pair of calls serves all of them.

use pyo3::ffi;
use pyo3::prelude::*;

use super::RawObject;

/// The handled exception before [`handling`], put back when this drops.
#[must_use = "the exception is handled only until the guard drops"]
pub(crate) struct Handling<'py> {
    _py: Python<'py>,
    saved: (RawObject, RawObject, RawObject),
}

/// Makes `exc` (an exception instance) the exception being handled on this
/// thread until the guard drops, as inside an `except` block: `sys.exc_info()`
/// returns it, `logging.exception` logs its traceback, and an exception raised
/// meanwhile takes it as its `__context__`.
pub(crate) fn handling<'py>(exc: &Bound<'py, PyAny>) -> Handling<'py> {
    let py = exc.py();
    let mut saved: (RawObject, RawObject, RawObject) =
        (std::ptr::null_mut(), std::ptr::null_mut(), std::ptr::null_mut());
    // SAFETY: the GIL is held (a Bound); the three out-pointers receive new
    // references or NULL, which the guard owns until it gives them back.
    unsafe { ffi::PyErr_GetExcInfo(&raw mut saved.0, &raw mut saved.1, &raw mut saved.2) };
    let tb = exc.getattr(pyo3::intern!(py, "__traceback__")).ok().filter(|t| !t.is_none());
    let typ = exc.get_type();
    // SAFETY: PyErr_SetExcInfo steals one reference to each argument (NULL
    // allowed for the traceback): the new references made here.
    unsafe {
        ffi::PyErr_SetExcInfo(
            typ.into_ptr(),
            exc.clone().into_ptr(),
            tb.map_or(std::ptr::null_mut(), Bound::into_ptr),
        );
    }
    Handling { _py: py, saved }
}

impl Drop for Handling<'_> {
    fn drop(&mut self) {
        let (typ, value, tb) = self.saved;
        // SAFETY: the GIL is held (the guard holds the token); the references
        // taken by PyErr_GetExcInfo are handed back, and stolen.
        unsafe { ffi::PyErr_SetExcInfo(typ, value, tb) };
    }
}

/// Calls `f` with the value of `err` while it is the exception being handled
/// (see [`handling`]): a report made the way asyncio makes it, from inside
/// its `except` block.
pub(crate) fn while_handling<'py, R>(
    py: Python<'py>,
    err: PyErr,
    f: impl FnOnce(Bound<'py, PyAny>) -> R,
) -> R {
    let exc = err.into_value(py).into_bound(py).into_any();
    let handled = handling(&exc);
    let out = f(exc);
    drop(handled);
    out
}
