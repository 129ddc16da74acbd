//! C methods on a type: a method definition and its descriptor, for entries
//! that CPython calls with no PyO3 wrapper in between, the trampoline such an
//! entry runs its body in, and its view of its arguments.
//!
//! An entry is called by CPython's method descriptor with the GIL held and
//! `self` an instance of the type; a `METH_FASTCALL | METH_KEYWORDS` entry
//! gets `nargs` positional arguments followed by one value per name in
//! `kwnames` (a tuple of `str`, or NULL).

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::PyType;

use super::RawObject;

/// A `METH_FASTCALL | METH_KEYWORDS` entry: `(self, args, nargs, kwnames)`.
pub(crate) type FastcallKeywords = ffi::PyCFunctionFastWithKeywords;

/// A `METH_NOARGS` entry: `(self, NULL)`.
pub(crate) type NoArgs = ffi::PyCFunction;

/// The C function behind a method, with the calling convention it takes.
#[derive(Clone, Copy)]
pub(crate) enum Entry {
    FastcallKeywords(FastcallKeywords),
    NoArgs(NoArgs),
}

/// A method descriptor for `ty` named `name` that calls `entry`.
///
/// The descriptor keeps a pointer to its definition for the rest of the
/// process, so the definition is leaked (the module is never unloaded).
pub(crate) fn descriptor<'py>(
    ty: &Bound<'py, PyType>,
    name: &'static CStr,
    entry: Entry,
    doc: &'static CStr,
) -> PyResult<Bound<'py, PyAny>> {
    let (ml_meth, ml_flags) = match entry {
        Entry::FastcallKeywords(f) => (
            ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: f },
            ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
        ),
        Entry::NoArgs(f) => (ffi::PyMethodDefPointer { PyCFunction: f }, ffi::METH_NOARGS),
    };
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth,
        ml_flags,
        ml_doc: doc.as_ptr(),
    }));
    // SAFETY: ty is a live type object and def outlives it; the result is a
    // new reference or NULL with an exception set.
    unsafe { Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), def)) }
}

/// Runs an entry's body `f` with the GIL token, turning its error, or a
/// panic, into a raised exception and NULL (`what` names the method in the
/// panic's message).
///
/// # Safety
/// The GIL is held.
#[inline]
pub(crate) unsafe fn trampoline(what: &str, f: impl FnOnce(Python<'_>) -> PyResult<RawObject>) -> RawObject {
    // SAFETY: the caller holds the GIL.
    let py = unsafe { Python::assume_attached() };
    match catch_unwind(AssertUnwindSafe(|| f(py))) {
        Ok(Ok(obj)) => obj,
        Ok(Err(err)) => {
            err.restore(py);
            std::ptr::null_mut()
        }
        Err(_) => {
            PanicException::new_err(format!("ferroloop: internal error in {what}")).restore(py);
            std::ptr::null_mut()
        }
    }
}

/// An entry's first `n` arguments, borrowed for the call.
///
/// # Safety
/// `args` points to at least `n` live objects that outlive `'a` (CPython's
/// arguments live for the call).
#[inline]
pub(crate) unsafe fn borrowed_args<'a, 'py>(
    _py: Python<'py>,
    args: *const RawObject,
    n: usize,
) -> &'a [Borrowed<'a, 'py, PyAny>] {
    if n == 0 {
        return &[];
    }
    // SAFETY: `Borrowed` is a transparent non-null object pointer (and the
    // token says the GIL is held); the caller's guarantees for the rest.
    unsafe { std::slice::from_raw_parts(args.cast::<Borrowed<'a, 'py, PyAny>>(), n) }
}

/// A new reference to `None`, as an entry returns it.
#[inline(always)]
pub(crate) fn new_none(_py: Python<'_>) -> RawObject {
    // SAFETY: the token says the GIL is held; None is immortal or at least
    // always alive, and the caller owns the reference taken here.
    unsafe { ffi::Py_NewRef(ffi::Py_None()) }
}
