//! The CPython C API beyond what PyO3 wraps: the only module of this crate
//! that names `pyo3::ffi`, as `ferroloop_core::sys` is the only one that
//! calls libc (`make lint` checks it: `.ci/check_layers.py`).
//!
//! One file per subject, each a set of small wrappers, safe where the
//! arguments can carry the proof (a `Bound` is a live object and the GIL)
//! and `unsafe` with a `# Safety` contract where a caller holds only a raw
//! pointer (a GC slot, a drop without a `Python` token). They are on the
//! hottest paths of the loop (every `call_soon`, every task step): each is
//! inlined, and does what the C call it wraps did at its call site, no more.
//!
//! - [`bytes`]: receiving into a new `bytes`, unsent output, raw buffers.
//! - [`call`]: calls by `tp_call` and vectorcall, tuples of borrowed items.
//! - [`cfunction`]: identity of builtin functions and C types.
//! - [`context`]: `contextvars.Context` copy, type check, enter and exit.
//! - [`exc`]: the exception being handled (`sys.exc_info()`) during a report.
//! - [`freelist`]: `tp_alloc`/`tp_free` slots for the handle types.
//! - [`gc`]: the cycle collector's tracking, and reference counts.
//! - [`methods`]: C methods (`METH_FASTCALL`, `METH_NOARGS`) installed on a
//!   type, and the trampoline their entries run in.
//! - [`unicode`]: file-system decoding.

// `#[inline(always)]` marks the wrappers on the hottest paths (a callback's
// context, its call, the collector's flags, a reference released): each
// stands for the C call that was written where it is used.
#![allow(clippy::inline_always)]

pub(crate) mod bytes;
pub(crate) mod call;
pub(crate) mod cfunction;
pub(crate) mod context;
pub(crate) mod exc;
pub(crate) mod freelist;
pub(crate) mod gc;
pub(crate) mod methods;
pub(crate) mod unicode;

use pyo3::ffi;

/// A Python object as the C API passes it: a pointer that carries neither a
/// lifetime nor a reference of its own.
pub(crate) type RawObject = *mut ffi::PyObject;

/// The C API's `Py_ssize_t`: sizes and argument counts.
pub(crate) type SsizeT = ffi::Py_ssize_t;

/// Whether this thread holds the GIL (for debug assertions).
#[inline]
pub(crate) fn gil_held() -> bool {
    // SAFETY: callable at any time from any thread.
    unsafe { ffi::PyGILState_Check() == 1 }
}
