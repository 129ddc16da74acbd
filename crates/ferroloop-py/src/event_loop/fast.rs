//! Direct C entry points for the methods CPython's own C code calls per step.
//!
//! The C `Task` schedules every step with `loop.call_soon(step, context=ctx)`
//! and the C `Future` every done callback the same way, so `call_soon` is the
//! hottest call into the loop. PyO3's generated wrapper for it (trampoline,
//! generic argument parsing into `*args`/`context`, a second type check of
//! `self`) cost about as much as the work itself. Here the method is a plain
//! `METH_FASTCALL | METH_KEYWORDS` function installed on the type in place of
//! PyO3's: it takes the shapes real callers use (`callback, *args` with or
//! without `context=`) and passes any other call to PyO3's method, kept as
//! `_call_soon_generic`, so errors keep their wording.
//!
//! Invariants: the descriptor only calls us with `self` an instance of `Loop`
//! (CPython's method descriptors check that), the GIL held, and `args`
//! holding `nargs` positional arguments followed by one per name in `kwnames`.

use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use super::Loop;

/// Replaces PyO3's `call_soon` on the type with [`call_soon`].
pub(super) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    let py = ty.py();
    let generic = ty.getattr("call_soon")?;
    ty.setattr("_call_soon_generic", generic)?;
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: c"call_soon".as_ptr(),
        ml_meth: ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: call_soon },
        ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ml_doc: c"call_soon($self, callback, *args, context=None)\n--\n\nArrange for a callback to be called as soon as possible.".as_ptr(),
    }));
    // SAFETY: ty is a live type object and def lives for the rest of the
    // process; the result is a new reference or NULL with an exception set.
    let descr = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr("call_soon", descr)
}

/// `call_soon(callback, *args, context=None)`.
unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: called by CPython with the GIL held (module invariant).
    let py = unsafe { Python::assume_gil_acquired() };
    let result = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: the module invariants: args holds nargs positionals then
        // one value per keyword name; self is a Loop.
        unsafe { call_soon_body(py, slf, args, nargs, kwnames) }
    }));
    match result {
        Ok(Ok(obj)) => obj,
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PanicException::new_err("ferroloop: internal error in call_soon").restore(py);
            std::ptr::null_mut()
        }
    }
}

unsafe fn call_soon_body(
    py: Python<'_>,
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let nargs_u = usize::try_from(nargs).unwrap_or(0);
    // SAFETY: see the caller.
    let slf = unsafe { Bound::from_borrowed_ptr(py, slf) };
    let context = if kwnames.is_null() {
        None
    } else {
        // SAFETY: kwnames is a tuple of str (vectorcall protocol).
        let names = unsafe { Bound::from_borrowed_ptr(py, kwnames).downcast_into_unchecked::<PyTuple>() };
        if names.len() != 1 || !is_context(&names.get_item(0)?) {
            return generic(py, &slf, args, nargs, kwnames);
        }
        // SAFETY: the one keyword value follows the positionals.
        Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(nargs_u)) })
    };
    if nargs_u == 0 {
        return generic(py, &slf, args, nargs, kwnames);
    }
    // SAFETY: args[0..nargs] are live borrowed references.
    let (callback, rest) = unsafe {
        let positional = std::slice::from_raw_parts(args, nargs_u);
        (Bound::from_borrowed_ptr(py, positional[0]), tuple_of(py, &positional[1..])?)
    };
    // SAFETY: the descriptor checked that self is a Loop.
    let this = unsafe { slf.downcast_unchecked::<Loop>() };
    Ok(Loop::call_soon_impl(this, callback, rest, context)?.into_ptr())
}

/// A new tuple of borrowed references (the empty tuple is CPython's shared one).
///
/// # Safety
/// Every pointer is a live object; the GIL is held.
unsafe fn tuple_of<'py>(py: Python<'py>, items: &[*mut ffi::PyObject]) -> PyResult<Bound<'py, PyTuple>> {
    let len = ffi::Py_ssize_t::try_from(items.len()).unwrap_or(ffi::Py_ssize_t::MAX);
    // SAFETY: a new reference or NULL with an exception set; each slot is
    // filled once with a new reference, as PyTuple_SET_ITEM steals it.
    unsafe {
        let tuple = Bound::from_owned_ptr_or_err(py, ffi::PyTuple_New(len))?;
        for (i, &item) in (0..).zip(items) {
            ffi::Py_INCREF(item);
            ffi::PyTuple_SET_ITEM(tuple.as_ptr(), i, item);
        }
        Ok(tuple.downcast_into_unchecked())
    }
}

fn is_context(name: &Bound<'_, PyAny>) -> bool {
    let expected = pyo3::intern!(name.py(), "context");
    // Keyword names are interned by the compiler: identity is the usual hit.
    name.is(expected) || name.downcast::<PyString>().is_ok_and(|s| s.to_str().is_ok_and(|s| s == "context"))
}

/// Any other call: PyO3's method, for its checks and messages.
fn generic(
    py: Python<'_>,
    slf: &Bound<'_, PyAny>,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let method = slf.getattr(pyo3::intern!(py, "_call_soon_generic"))?;
    let nargsf = usize::try_from(nargs).unwrap_or(0);
    // SAFETY: args holds nargs positionals and one value per keyword name
    // (vectorcall protocol); the result is a new reference or NULL with an
    // exception set.
    unsafe {
        let res = ffi::PyObject_Vectorcall(method.as_ptr(), args, nargsf, kwnames);
        Bound::from_owned_ptr_or_err(py, res).map(Bound::into_ptr)
    }
}
