//! `GilCell`: a `RefCell` whose accesses are serialised by the GIL, and
//! `GilPy`: a reference released without asking whether the GIL is held.
//!
//! Invariants: every borrow takes a `Python<'_>` token, so two threads never
//! touch the cell at once on GIL builds (free-threaded builds are a non-goal;
//! the module is declared `gil_used`). A borrow must never be held across a
//! call into Python: Python code can re-enter the loop, or release the GIL and
//! let another thread in. Keep borrows to a few lines, then drop them.

use std::cell::{Ref, RefCell, RefMut};
use std::mem::ManuallyDrop;
use std::ops::Deref;

use pyo3::{Py, Python};

use crate::capi;

pub(crate) struct GilCell<T>(RefCell<T>);

// SAFETY: all access requires a `Python` token, i.e. holding the GIL, which
// serialises threads; the RefCell flag then catches re-entrant misuse on one
// thread with a panic instead of aliasing.
unsafe impl<T: Send> Sync for GilCell<T> {}

impl<T> GilCell<T> {
    pub(crate) const fn new(value: T) -> Self {
        Self(RefCell::new(value))
    }

    pub(crate) fn borrow<'a>(&'a self, _py: Python<'_>) -> Ref<'a, T> {
        self.0.borrow()
    }

    pub(crate) fn borrow_mut<'a>(&'a self, _py: Python<'_>) -> RefMut<'a, T> {
        self.0.borrow_mut()
    }

    /// For the GC's `__traverse__`, which runs with the GIL held but may not
    /// acquire a `Python` token; returns `None` if a borrow is live.
    pub(crate) fn try_borrow_for_gc(&self) -> Option<Ref<'_, T>> {
        self.0.try_borrow().ok()
    }
}

/// A `Py<T>` held by something that is only ever dropped with the GIL held
/// (a field of a pyclass, an entry of the loop's queues). Its drop
/// decrements the reference count at once, where `Py<T>`'s drop must first
/// ask a thread-local whether this thread holds the GIL: that lookup was a
/// measurable share of every `call_soon`.
///
/// Invariant: dropped with the GIL held (checked in debug builds).
pub(crate) struct GilPy<T>(ManuallyDrop<Py<T>>);

impl<T> GilPy<T> {
    pub(crate) fn new(obj: Py<T>) -> Self {
        Self(ManuallyDrop::new(obj))
    }
}

impl<T> Deref for GilPy<T> {
    type Target = Py<T>;

    fn deref(&self) -> &Py<T> {
        &self.0
    }
}

impl<T> Drop for GilPy<T> {
    fn drop(&mut self) {
        debug_assert!(capi::gil_held(), "GilPy dropped without the GIL");
        // SAFETY: the GIL is held (type invariant) and we own one reference,
        // which ManuallyDrop keeps Py<T>'s own drop from releasing again.
        unsafe { capi::gc::decref(self.0.as_ptr()) };
    }
}
