//! Direct C entry points for the methods CPython's own C code calls per step.
//!
//! The C `Task` schedules every step with `loop.call_soon(step, context=ctx)`
//! and the C `Future` every done callback the same way, so `call_soon` is the
//! hottest call into the loop. PyO3's generated wrapper (trampoline, generic
//! parsing into `*args`/`context`, a second type check of `self`) cost about
//! as much as the work itself. So `call_soon`, `call_soon_threadsafe`,
//! `call_later`, `call_at` and `create_future` are plain `METH_FASTCALL`
//! (`METH_NOARGS`) functions installed on the type in place of PyO3's. They
//! take the shapes real callers use (`[delay,] callback, *args` with or
//! without `context=`) and pass any other call to PyO3's method, kept as
//! `_<name>_generic`, so errors keep their wording.
//!
//! Invariants: CPython's method descriptors only call us with `self` an
//! instance of `Loop` and the GIL held, and `args` holds `nargs` positional
//! arguments followed by one per name in `kwnames`.

use std::ffi::CStr;
use std::panic::{catch_unwind, AssertUnwindSafe};

use pyo3::ffi;
use pyo3::panic::PanicException;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple, PyType};

use super::Loop;
use crate::callbacks::TaskCall;

/// The scheduling methods: `name(<leading...>, callback, *args, context=None)`.
struct Scheduler {
    name: &'static CStr,
    doc: &'static CStr,
    entry: ffi::PyCFunctionFastWithKeywords,
}

const SCHEDULERS: [Scheduler; 4] = [
    Scheduler {
        name: c"call_soon",
        doc: c"call_soon($self, callback, *args, context=None)\n--\n\nArrange for a callback to be called as soon as possible.",
        entry: call_soon,
    },
    Scheduler {
        name: c"call_soon_threadsafe",
        doc: c"call_soon_threadsafe($self, callback, *args, context=None)\n--\n\nLike call_soon(), but thread-safe.",
        entry: call_soon_threadsafe,
    },
    Scheduler {
        name: c"call_later",
        doc: c"call_later($self, delay, callback, *args, context=None)\n--\n\nArrange for a callback to be called at a given time.",
        entry: call_later,
    },
    Scheduler {
        name: c"call_at",
        doc: c"call_at($self, when, callback, *args, context=None)\n--\n\nLike call_later(), but uses an absolute time.",
        entry: call_at,
    },
];

/// Replaces PyO3's scheduling methods and `create_future` on the type with
/// the entries below; PyO3's stay reachable as `_<name>_generic`.
pub(super) fn install(ty: &Bound<'_, PyType>) -> PyResult<()> {
    for s in &SCHEDULERS {
        let entry = ffi::PyMethodDefPointer { PyCFunctionFastWithKeywords: s.entry };
        replace(ty, s.name, entry, ffi::METH_FASTCALL | ffi::METH_KEYWORDS, s.doc)?;
    }
    let doc = c"create_future($self, /)\n--\n\nCreate a Future object attached to the loop.";
    let entry = ffi::PyMethodDefPointer { PyCFunction: create_future };
    replace(ty, c"create_future", entry, ffi::METH_NOARGS, doc)
}

/// Moves PyO3's method `name` to `_<name>_generic` and puts `entry` in its place.
fn replace(
    ty: &Bound<'_, PyType>,
    name: &'static CStr,
    entry: ffi::PyMethodDefPointer,
    flags: std::ffi::c_int,
    doc: &'static CStr,
) -> PyResult<()> {
    let text = name.to_str().map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let generic = ty.getattr(text)?;
    ty.setattr(format!("_{text}_generic").as_str(), generic)?;
    // The descriptor keeps a pointer to its definition for the rest of the
    // process (the module is never unloaded).
    let def = Box::leak(Box::new(ffi::PyMethodDef {
        ml_name: name.as_ptr(),
        ml_meth: entry,
        ml_flags: flags,
        ml_doc: doc.as_ptr(),
    }));
    // SAFETY: ty is a live type object and def outlives it; the result is a
    // new reference or NULL with an exception set.
    let descr =
        unsafe { Bound::from_owned_ptr_or_err(ty.py(), ffi::PyDescr_NewMethod(ty.as_type_ptr(), def))? };
    ty.setattr(text, descr)
}

/// What a scheduling method does with its parsed arguments.
type Body = for<'py> fn(
    &Bound<'py, Loop>,
    Option<Bound<'py, PyAny>>,
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyAny>>,
) -> PyResult<*mut ffi::PyObject>;

macro_rules! scheduler_entry {
    ($entry:ident, $generic:literal, $leading:literal, $body:expr) => {
        unsafe extern "C" fn $entry(
            slf: *mut ffi::PyObject,
            args: *const *mut ffi::PyObject,
            nargs: ffi::Py_ssize_t,
            kwnames: *mut ffi::PyObject,
        ) -> *mut ffi::PyObject {
            // SAFETY: CPython calls us as the module invariants say.
            unsafe { scheduler(slf, args, nargs, kwnames, $leading, $generic, $body) }
        }
    };
}

/// `call_soon(callback, *args, context=None)`: a C `Task`'s own callback is
/// queued without a handle (see `task_calls`), anything else as usual.
unsafe extern "C" fn call_soon(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    // SAFETY: CPython calls us as the module invariants say.
    unsafe {
        if queue_task_call(slf, args, nargs, kwnames) {
            return ffi::Py_NewRef(ffi::Py_None());
        }
        scheduler(slf, args, nargs, kwnames, false, "_call_soon_generic", |lp, _, cb, rest, ctx| {
            Ok(Loop::call_soon_impl(lp, cb, rest, ctx)?.into_ptr())
        })
    }
}

/// The C `Task`'s shape of call, `call_soon(cb[, arg], context=ctx)` with its
/// own callback and a real context: queued at once; false for any other call.
///
/// # Safety
/// The module invariants.
unsafe fn queue_task_call(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> bool {
    if kwnames.is_null() || !(1..=2).contains(&nargs) {
        return false;
    }
    // SAFETY: the caller holds the GIL; args holds nargs positionals and one
    // value per keyword name; kwnames is a tuple (vectorcall protocol).
    unsafe {
        let py = Python::assume_attached();
        let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
        if names.len() != 1 || !names.get_item(0).is_ok_and(|n| is_context(&n)) {
            return false;
        }
        let nargs = usize::try_from(nargs).unwrap_or(0);
        let callback = Bound::from_borrowed_ptr(py, *args);
        let context = Bound::from_borrowed_ptr(py, *args.add(nargs));
        if ffi::PyContext_CheckExact(context.as_ptr()) == 0 || !crate::callbacks::is_task_callback(&callback)
        {
            return false;
        }
        let arg = (nargs == 2).then(|| Bound::from_borrowed_ptr(py, *args.add(1)));
        let lp = Bound::from_borrowed_ptr(py, slf);
        lp.cast_unchecked::<Loop>().get().queue_task_call(py, || TaskCall::new(callback, arg, context))
    }
}
scheduler_entry!(call_soon_threadsafe, "_call_soon_threadsafe_generic", false, |lp, _, cb, rest, ctx| {
    Ok(Loop::call_soon_threadsafe_impl(lp, cb, rest, ctx)?.into_ptr())
});
scheduler_entry!(call_later, "_call_later_generic", true, |lp, delay, cb, rest, ctx| {
    let delay = delay.unwrap_or_else(|| lp.py().None().into_bound(lp.py()));
    Ok(Loop::call_later_impl(lp, delay, cb, rest, ctx)?.into_ptr())
});
scheduler_entry!(call_at, "_call_at_generic", true, |lp, when, cb, rest, ctx| {
    let when = when.unwrap_or_else(|| lp.py().None().into_bound(lp.py()));
    Ok(Loop::call_at_impl(lp, when, cb, rest, ctx)?.into_ptr())
});

/// `create_future()`.
unsafe extern "C" fn create_future(slf: *mut ffi::PyObject, _: *mut ffi::PyObject) -> *mut ffi::PyObject {
    // SAFETY: CPython calls us as the module invariants say.
    unsafe {
        guarded("create_future", |py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            Ok(Loop::create_future_impl(slf.cast_unchecked::<Loop>())?.into_ptr())
        })
    }
}

/// Runs `f` with the GIL token, turning its error, or a panic, into a raised
/// exception and NULL.
///
/// # Safety
/// The GIL is held.
unsafe fn guarded(
    what: &str,
    f: impl FnOnce(Python<'_>) -> PyResult<*mut ffi::PyObject>,
) -> *mut ffi::PyObject {
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

/// Parses `(<leading>, callback, *args, context=None)` and runs `body`; any
/// other shape of call goes to PyO3's method named `generic`.
///
/// # Safety
/// The module invariants.
unsafe fn scheduler(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
    leading: bool,
    generic_name: &'static str,
    body: Body,
) -> *mut ffi::PyObject {
    // SAFETY: the caller's guarantees (module invariants).
    unsafe {
        guarded(generic_name, |py| {
            let nargs_u = usize::try_from(nargs).unwrap_or(0);
            let slf = Bound::from_borrowed_ptr(py, slf);
            let context = if kwnames.is_null() {
                None
            } else {
                let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
                if names.len() != 1 || !is_context(&names.get_item(0)?) {
                    return generic(py, &slf, generic_name, args, nargs, kwnames);
                }
                Some(Bound::from_borrowed_ptr(py, *args.add(nargs_u)))
            };
            let first = usize::from(leading);
            if nargs_u <= first {
                return generic(py, &slf, generic_name, args, nargs, kwnames);
            }
            let positional = std::slice::from_raw_parts(args, nargs_u);
            let lead = leading.then(|| Bound::from_borrowed_ptr(py, positional[0]));
            let callback = Bound::from_borrowed_ptr(py, positional[first]);
            let rest = tuple_of(py, &positional[first + 1..])?;
            body(slf.cast_unchecked::<Loop>(), lead, callback, rest, context)
        })
    }
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
        Ok(tuple.cast_into_unchecked())
    }
}

fn is_context(name: &Bound<'_, PyAny>) -> bool {
    let expected = pyo3::intern!(name.py(), "context");
    // Keyword names are interned by the compiler: identity is the usual hit.
    name.is(expected) || name.cast::<PyString>().is_ok_and(|s| s.to_str().is_ok_and(|s| s == "context"))
}

/// Any other call: PyO3's method, for its checks and messages.
fn generic(
    py: Python<'_>,
    slf: &Bound<'_, PyAny>,
    name: &str,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<*mut ffi::PyObject> {
    let method = slf.getattr(name)?;
    let nargsf = usize::try_from(nargs).unwrap_or(0);
    // SAFETY: args holds nargs positionals and one value per keyword name
    // (vectorcall protocol); the result is a new reference or NULL with an
    // exception set.
    unsafe {
        let res = ffi::PyObject_Vectorcall(method.as_ptr(), args, nargsf, kwnames);
        Bound::from_owned_ptr_or_err(py, res).map(Bound::into_ptr)
    }
}
