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

/// The object a builtin function is bound to (`m_self`), when `obj` is an
/// exact builtin function bound to one (not a module function's module).
#[inline]
pub(crate) fn bound_self<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    if !is_builtin(obj) {
        return None;
    }
    // SAFETY: m_self of an exact builtin function object (checked above): a
    // reference it holds, or null; borrowed for as long as obj lives.
    let me = unsafe { (*obj.as_ptr().cast::<ffi::PyCFunctionObject>()).m_self };
    // SAFETY: a non-null object pointer kept alive by obj; the new Bound
    // takes its own reference.
    (!me.is_null()).then(|| unsafe { Bound::from_borrowed_ptr(obj.py(), me) })
}

/// Whether instances of `obj`'s type are big enough to hold an object
/// pointer right after the object header (the first field of a C struct
/// that starts with `PyObject_HEAD`), so that [`first_slot`] may read it.
#[inline]
pub(crate) fn has_first_slot(obj: &Bound<'_, PyAny>) -> bool {
    let ty = obj.get_type_ptr();
    // SAFETY: reading the instance size of a live object's type.
    let size = unsafe { (*ty).tp_basicsize };
    usize::try_from(size).is_ok_and(|s| s >= std::mem::size_of::<WithFirstSlot>())
}

/// The start of a C struct that begins `PyObject_HEAD; PyObject *first;`.
#[repr(C)]
struct WithFirstSlot {
    head: ffi::PyObject,
    first: super::RawObject,
}

/// The object in the first field after the object header of `obj`, if not null.
///
/// # Safety
///
/// `obj`'s type must be a C type whose struct begins with `PyObject_HEAD`
/// followed by an object pointer that the object keeps a reference to (the
/// caller proves it once per type, e.g. against a sample whose content it
/// knows), and [`has_first_slot`] must hold for it.
#[inline]
pub(crate) unsafe fn first_slot<'py>(obj: &Bound<'py, PyAny>) -> Option<Bound<'py, PyAny>> {
    // SAFETY: by the contract, the field exists at this offset and holds an
    // object pointer or null; obj keeps it alive and the Bound takes its own
    // reference.
    unsafe {
        let slot = (*obj.as_ptr().cast::<WithFirstSlot>()).first;
        (!slot.is_null()).then(|| Bound::from_borrowed_ptr(obj.py(), slot))
    }
}
