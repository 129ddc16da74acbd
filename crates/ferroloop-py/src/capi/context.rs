//! `contextvars.Context` through the C API: a copy of the current context,
//! the exact type check, and entering a context for the length of a callback
//! (what `Context.run` does, without a bound method or an argument tuple).

use pyo3::ffi;
use pyo3::prelude::*;

use super::RawObject;

/// `contextvars.copy_context()`: a new context, tracked by the collector.
#[inline]
pub(crate) fn copy_current(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    // SAFETY: the token says the GIL is held; the result is a new reference
    // or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyContext_CopyCurrent()) }
}

/// Whether `obj` is exactly a `contextvars.Context` (which cannot be subclassed).
#[inline(always)]
pub(crate) fn is_exact(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a Bound is a live object.
    unsafe { is_exact_ptr(obj.as_ptr()) }
}

/// [`is_exact`], for a caller that holds only the pointer.
///
/// # Safety
/// `obj` is a live object.
#[inline(always)]
pub(crate) unsafe fn is_exact_ptr(obj: RawObject) -> bool {
    // SAFETY: a type check on a live object (the caller's guarantee).
    unsafe { ffi::PyContext_CheckExact(obj) != 0 }
}

/// A context entered on this thread by [`enter`], left when this drops.
///
/// Holds the context's pointer itself (not the `&Bound`), so leaving reads
/// no memory. Not `Send` (a `Borrowed` is not): it is dropped on the thread
/// that entered.
#[must_use = "the context is left as soon as the guard drops"]
pub(crate) struct Entered<'a, 'py>(Borrowed<'a, 'py, PyAny>);

/// Makes `ctx` the thread's current context until the guard drops. Fails as
/// `Context.run` does: a `TypeError` if `ctx` is not a `Context`, a
/// `RuntimeError` if it is entered already.
#[inline(always)]
pub(crate) fn enter<'a, 'py>(ctx: &'a Bound<'py, PyAny>) -> PyResult<Entered<'a, 'py>> {
    // SAFETY: a live object and the GIL (a Bound); PyContext_Enter checks the
    // type itself, and returns -1 with an exception set when it fails.
    if unsafe { ffi::PyContext_Enter(ctx.as_ptr()) } < 0 {
        return Err(PyErr::fetch(ctx.py()));
    }
    Ok(Entered(ctx.as_borrowed()))
}

impl Drop for Entered<'_, '_> {
    #[inline(always)]
    fn drop(&mut self) {
        // SAFETY: entered by `enter` on this thread, with the GIL held (the
        // guard holds a Borrowed); leaving cannot fail then, as whatever ran
        // inside left every context it entered (`Context.run` pairs them).
        unsafe { ffi::PyContext_Exit(self.0.as_ptr()) };
    }
}
