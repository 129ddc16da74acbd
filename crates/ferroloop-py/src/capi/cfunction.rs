//! Builtin functions and C types by identity: what `callbacks::task_calls`
//! needs to recognise the C `Task`'s private callables.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyType;

/// A type object, only ever compared by address here.
pub(crate) type TypeObject = ffi::PyTypeObject;

/// A builtin function's definition, only ever compared by address here.
pub(crate) type MethodDef = ffi::PyMethodDef;

/// Whether `obj` is exactly a builtin function (`builtin_function_or_method`).
#[inline(always)]
pub(crate) fn is_builtin(obj: &Bound<'_, PyAny>) -> bool {
    // SAFETY: a type check on a live object.
    unsafe { ffi::PyCFunction_CheckExact(obj.as_ptr()) != 0 }
}

/// The definition behind a builtin function (by [`is_builtin`]), else `None`.
#[inline(always)]
pub(crate) fn method_def(obj: &Bound<'_, PyAny>) -> Option<*mut MethodDef> {
    // SAFETY: m_ml of an exact builtin function object (checked first), live
    // for as long as obj (a Bound).
    is_builtin(obj).then(|| unsafe { (*obj.as_ptr().cast::<ffi::PyCFunctionObject>()).m_ml })
}

/// Whether Python code may subclass `ty` (`Py_TPFLAGS_BASETYPE`).
#[inline]
pub(crate) fn is_subclassable(ty: &Bound<'_, PyType>) -> bool {
    // SAFETY: reading the flags of a live type object, through the C API's
    // accessor (`tp_flags` is an atomic on free-threaded builds).
    unsafe { ffi::PyType_HasFeature(ty.as_type_ptr(), ffi::Py_TPFLAGS_BASETYPE) != 0 }
}
