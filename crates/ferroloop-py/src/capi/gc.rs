//! The cycle collector's tracking of an object, and reference counts where
//! PyO3's smart pointers would ask whether the GIL is held.
//!
//! These take raw pointers: their callers are GC slots, drops and queue
//! entries that hold no `Python` token but run with the GIL held by
//! invariant.

use pyo3::ffi;

use super::{RawObject, SsizeT};

/// Whether the collector tracks `obj` (false for an object of a non-GC type).
///
/// # Safety
/// `obj` is a live object; the GIL is held.
#[inline(always)]
pub(crate) unsafe fn is_tracked(obj: RawObject) -> bool {
    // SAFETY: the caller's guarantees.
    unsafe { ffi::PyObject_GC_IsTracked(obj) != 0 }
}

/// Puts `obj` under the collector's watch.
///
/// # Safety
/// `obj` is a live object of a GC type that is not tracked now (tracking
/// twice is a fatal error); the GIL is held.
#[inline(always)]
pub(crate) unsafe fn track(obj: RawObject) {
    // SAFETY: the caller's guarantees.
    unsafe { ffi::PyObject_GC_Track(obj.cast()) }
}

/// Puts `obj` under the collector's watch if it is not already.
///
/// # Safety
/// `obj` is a live object of a GC type; the GIL is held.
#[inline(always)]
pub(crate) unsafe fn ensure_tracked(obj: RawObject) {
    // SAFETY: the caller's guarantees; tracked only when it is not.
    unsafe {
        if !is_tracked(obj) {
            track(obj);
        }
    }
}

/// Takes `obj` from the collector's watch (nothing if it is not tracked).
///
/// # Safety
/// `obj` is a live object of a GC type; the GIL is held; and if its type's
/// deallocation unlinks it from the collector without checking that it is
/// tracked (a `Context`'s does), it is tracked again before its last
/// reference goes.
#[inline(always)]
pub(crate) unsafe fn untrack(obj: RawObject) {
    // SAFETY: the caller's guarantees.
    unsafe { ffi::PyObject_GC_UnTrack(obj.cast()) }
}

/// The reference count of `obj`.
///
/// # Safety
/// `obj` is a live object; the GIL is held.
#[inline(always)]
pub(crate) unsafe fn refcnt(obj: RawObject) -> SsizeT {
    // SAFETY: the caller's guarantees.
    unsafe { ffi::Py_REFCNT(obj) }
}

/// Releases a reference now, without asking whether the GIL is held.
///
/// # Safety
/// The GIL is held; `obj` is live and the caller owns the reference it gives
/// up here (and does not use it again).
#[inline(always)]
pub(crate) unsafe fn decref(obj: RawObject) {
    // SAFETY: the caller's guarantees.
    unsafe { ffi::Py_DECREF(obj) }
}
