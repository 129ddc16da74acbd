//! Free lists for the handle types: `tp_alloc`/`tp_free` slots of our own.
//!
//! Every `call_soon` makes a `Handle` and every timer a `TimerHandle`, so
//! their allocation is on the hottest path of the loop. PyO3's
//! `#[pyclass(freelist = N)]` takes a mutex and looks the type object up on
//! each allocation and each release; these lists are guarded by the GIL
//! instead and keep the type pointer they serve.
//!
//! A type opts in by naming its list ([`Pooled`]); the slots are installed
//! on the type object once, when the module is loaded ([`install`]). PyO3
//! reads `tp_alloc` and `tp_free` from the type each time, so it goes
//! through them from then on.
//!
//! Invariants: the slots are only called with the GIL held (CPython's
//! contract for them); a list only holds released objects of its own type,
//! whose memory came from `PyType_GenericAlloc` (a GC allocation: both handle
//! types define `__traverse__`), untracked by the type's `tp_dealloc`.

use std::cell::UnsafeCell;
use std::ffi::c_void;
use std::sync::atomic::{AtomicPtr, Ordering};

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::PyTypeInfo;

/// Released objects kept for reuse per type. A burst of queued callbacks
/// larger than this allocates afresh. Small on purpose: a kept object also
/// keeps the allocator's pool and arena around it, and the objects kept after
/// a burst lie scattered over the burst's arenas, so a list of thousands held
/// megabytes of otherwise empty arenas after a burst was collected (4096
/// kept about 4 MiB). A thousand cover the steady state of a program that
/// queues its callbacks a thousand at a time (a batch's handles freed as the
/// next batch's are made): at 256, such a batch cost 7% more instructions per
/// callback, and a collected burst of 100k leaves under 2 MiB at 1024 as at 256.
const CAPACITY: usize = 1024;

/// A pyclass whose instances come from a free list of its own.
///
/// # Safety
/// The type is a GC type (it defines `__traverse__`), cannot be subclassed
/// from Python, and no other type returns the same list.
pub(crate) unsafe trait Pooled: PyTypeInfo {
    fn free_list() -> &'static FreeList;
}

/// Puts the free-list slots in `T`'s type object.
///
/// # Safety
/// Called once, before any object of `T` exists.
pub(crate) unsafe fn install<T: Pooled>(py: Python<'_>) {
    let ty = T::type_object_raw(py);
    T::free_list().ty.store(ty, Ordering::Relaxed);
    // SAFETY: a heap type we created; its slots may be changed before use,
    // and CPython re-reads tp_alloc/tp_free on every call.
    unsafe {
        (*ty).tp_alloc = Some(alloc_slot::<T>);
        (*ty).tp_free = Some(free_slot::<T>);
    }
}

unsafe extern "C" fn alloc_slot<T: Pooled>(
    ty: *mut ffi::PyTypeObject,
    n: ffi::Py_ssize_t,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls tp_alloc with the GIL held and a live type.
    unsafe { T::free_list().alloc(ty, n) }
}

unsafe extern "C" fn free_slot<T: Pooled>(obj: *mut c_void) {
    // SAFETY: CPython calls tp_free with the GIL held, from T's dealloc.
    unsafe { T::free_list().free(obj) }
}

pub(crate) struct FreeList {
    /// The type this list serves (set by [`install`]).
    ty: AtomicPtr<ffi::PyTypeObject>,
    items: UnsafeCell<Vec<*mut ffi::PyObject>>,
}

// SAFETY: `items` is only touched from the slots below, which CPython calls
// with the GIL held (module invariant), so two threads never meet in it.
unsafe impl Sync for FreeList {}

impl FreeList {
    pub(crate) const fn new() -> Self {
        Self { ty: AtomicPtr::new(std::ptr::null_mut()), items: UnsafeCell::new(Vec::new()) }
    }

    /// `tp_alloc`: a released object of our type if one is kept, else a new one.
    ///
    /// # Safety
    /// The GIL is held; `subtype` is a live type object.
    unsafe fn alloc(&self, subtype: *mut ffi::PyTypeObject, nitems: ffi::Py_ssize_t) -> *mut ffi::PyObject {
        if nitems == 0 && std::ptr::eq(subtype, self.ty.load(Ordering::Relaxed)) {
            // SAFETY: GIL held (see the Sync impl); no other borrow is live.
            let items = unsafe { &mut *self.items.get() };
            if let Some(obj) = items.pop() {
                // SAFETY: a released object of this very type (list
                // invariant); PyObject_Init sets its type, takes a reference
                // to the (heap) type and makes the reference count one, as a
                // fresh allocation would. PyO3 then writes every field.
                return unsafe { ffi::PyObject_Init(obj, subtype) };
            }
        }
        // SAFETY: the caller's guarantees.
        unsafe { ffi::PyType_GenericAlloc(subtype, nitems) }
    }

    /// `tp_free`: keeps the memory for the next [`FreeList::alloc`] while there is room.
    ///
    /// The object's reference to its heap type (`PyObject_Init` or
    /// `PyType_GenericAlloc` took it) is not released here: PyO3's
    /// `tp_dealloc` releases it after calling `tp_free` (since PyO3 0.29).
    ///
    /// # Safety
    /// The GIL is held; `obj` is an object of this list's type whose
    /// `tp_dealloc` has run.
    unsafe fn free(&self, obj: *mut c_void) {
        let obj = obj.cast::<ffi::PyObject>();
        // SAFETY: GIL held (see the Sync impl); no other borrow is live.
        let items = unsafe { &mut *self.items.get() };
        if items.len() < CAPACITY {
            items.push(obj);
        } else {
            // SAFETY: GC memory from PyType_GenericAlloc (list invariant).
            unsafe { ffi::PyObject_GC_Del(obj.cast()) };
        }
    }
}
