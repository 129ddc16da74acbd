//! Direct C entry points for the methods CPython's own C code calls per step.
//!
//! The C `Task` schedules every step with `loop.call_soon(step, context=ctx)`
//! and the C `Future` every done callback the same way, so `call_soon` is the
//! hottest call into the loop. PyO3's generated wrapper (trampoline, generic
//! parsing into `*args`/`context`, a second type check of `self`) cost about
//! as much as the work itself. So `call_soon`, `call_soon_threadsafe`,
//! `call_later`, `call_at`, `create_task` and `create_future` are plain `METH_FASTCALL`
//! (`METH_NOARGS`) functions installed on the type in place of PyO3's. They
//! take the shapes real callers use (`[delay,] callback, *args` with or
//! without `context=`) and pass any other call to PyO3's method, kept as
//! `_<name>_generic`, so errors keep their wording.
//!
//! Invariants: CPython's method descriptors only call us with `self` an
//! instance of `Loop` and the GIL held, and `args` holds `nargs` positional
//! arguments followed by one per name in `kwnames`.

use std::ffi::CStr;

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyString, PyTuple, PyType};

use super::Loop;
use crate::callbacks::TaskCall;
use crate::capi::call::{tuple_from_borrowed, vectorcall_raw};
use crate::capi::methods::{self, borrowed_args, new_none, trampoline, Entry, FastcallKeywords};
use crate::capi::{context, RawObject, SsizeT};

/// The scheduling methods: `name(<leading...>, callback, *args, context=None)`.
struct Scheduler {
    name: &'static CStr,
    doc: &'static CStr,
    entry: FastcallKeywords,
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
        replace(ty, s.name, Entry::FastcallKeywords(s.entry), s.doc)?;
    }
    let doc = c"create_task($self, coro, **kwargs)\n--\n\nSchedule or begin executing a coroutine object.";
    replace(ty, c"create_task", Entry::FastcallKeywords(create_task), doc)?;
    let doc = c"create_future($self, /)\n--\n\nCreate a Future object attached to the loop.";
    replace(ty, c"create_future", Entry::NoArgs(create_future), doc)
}

/// Moves PyO3's method `name` to `_<name>_generic` and puts `entry` in its place.
fn replace(ty: &Bound<'_, PyType>, name: &'static CStr, entry: Entry, doc: &'static CStr) -> PyResult<()> {
    let text = name.to_str().map_err(|e| pyo3::exceptions::PyValueError::new_err(e.to_string()))?;
    let generic = ty.getattr(text)?;
    ty.setattr(format!("_{text}_generic").as_str(), generic)?;
    ty.setattr(text, methods::descriptor(ty, name, entry, doc)?)
}

/// What a scheduling method does with its parsed arguments.
type Body = for<'py> fn(
    &Bound<'py, Loop>,
    Option<Bound<'py, PyAny>>,
    Bound<'py, PyAny>,
    Bound<'py, PyTuple>,
    Option<Bound<'py, PyAny>>,
) -> PyResult<RawObject>;

macro_rules! scheduler_entry {
    ($entry:ident, $generic:literal, $leading:literal, $body:expr) => {
        unsafe extern "C" fn $entry(
            slf: RawObject,
            args: *const RawObject,
            nargs: SsizeT,
            kwnames: RawObject,
        ) -> RawObject {
            // SAFETY: CPython calls us as the module invariants say.
            unsafe { scheduler(slf, args, nargs, kwnames, $leading, $generic, $body) }
        }
    };
}

/// `call_soon(callback, *args, context=None)`: a C `Task`'s own callback is
/// queued without a handle (see `task_calls`), anything else as usual.
unsafe extern "C" fn call_soon(
    slf: RawObject,
    args: *const RawObject,
    nargs: SsizeT,
    kwnames: RawObject,
) -> RawObject {
    // SAFETY: CPython calls us as the module invariants say.
    unsafe {
        if queue_task_call(slf, args, nargs, kwnames) {
            return new_none(Python::assume_attached());
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
unsafe fn queue_task_call(slf: RawObject, args: *const RawObject, nargs: SsizeT, kwnames: RawObject) -> bool {
    if kwnames.is_null() || !(1..=2).contains(&nargs) {
        return false;
    }
    // SAFETY: the caller holds the GIL; args holds nargs positionals and one
    // value per keyword name; kwnames is a tuple (vectorcall protocol).
    unsafe {
        let py = Python::assume_attached();
        let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
        if !only_context(&names) {
            return false;
        }
        let nargs = usize::try_from(nargs).unwrap_or(0);
        let callback = Bound::from_borrowed_ptr(py, *args);
        let context = Bound::from_borrowed_ptr(py, *args.add(nargs));
        if !context::is_exact(&context) || !crate::callbacks::is_task_callback(&callback) {
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

/// `create_task(coro)`; any call with keywords goes to PyO3's method.
unsafe extern "C" fn create_task(
    slf: RawObject,
    args: *const RawObject,
    nargs: SsizeT,
    kwnames: RawObject,
) -> RawObject {
    // SAFETY: CPython calls us as the module invariants say.
    unsafe {
        trampoline("_create_task_generic", |py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            if nargs != 1 || !kwnames.is_null() {
                return generic(&slf, "_create_task_generic", args, nargs, kwnames);
            }
            let coro = Bound::from_borrowed_ptr(py, *args);
            Ok(Loop::create_task_impl(slf.cast_unchecked::<Loop>(), coro, None)?.into_ptr())
        })
    }
}

/// `create_future()`.
unsafe extern "C" fn create_future(slf: RawObject, _: RawObject) -> RawObject {
    // SAFETY: CPython calls us as the module invariants say.
    unsafe {
        trampoline("create_future", |py| {
            let slf = Bound::from_borrowed_ptr(py, slf);
            Ok(Loop::create_future_impl(slf.cast_unchecked::<Loop>())?.into_ptr())
        })
    }
}

/// Parses `(<leading>, callback, *args, context=None)` and runs `body`; any
/// other shape of call goes to PyO3's method named `generic`.
///
/// # Safety
/// The module invariants.
unsafe fn scheduler(
    slf: RawObject,
    args: *const RawObject,
    nargs: SsizeT,
    kwnames: RawObject,
    leading: bool,
    generic_name: &'static str,
    body: Body,
) -> RawObject {
    // SAFETY: the caller's guarantees (module invariants).
    unsafe {
        trampoline(generic_name, |py| {
            let nargs_u = usize::try_from(nargs).unwrap_or(0);
            let slf = Bound::from_borrowed_ptr(py, slf);
            let context = if kwnames.is_null() {
                None
            } else {
                let names = Bound::from_borrowed_ptr(py, kwnames).cast_into_unchecked::<PyTuple>();
                if !only_context(&names) {
                    return generic(&slf, generic_name, args, nargs, kwnames);
                }
                Some(Bound::from_borrowed_ptr(py, *args.add(nargs_u)))
            };
            let first = usize::from(leading);
            if nargs_u <= first {
                return generic(&slf, generic_name, args, nargs, kwnames);
            }
            let positional = borrowed_args(py, args, nargs_u);
            let lead = leading.then(|| positional[0].to_owned());
            let callback = positional[first].to_owned();
            let rest = tuple_from_borrowed(py, &positional[first + 1..])?;
            body(slf.cast_unchecked::<Loop>(), lead, callback, rest, context)
        })
    }
}

/// Whether `names` (a call's keyword names) is `("context",)`. The C `Future`
/// and `Task` pass one tuple of their module's with every call, whose string
/// is not interned (so not our interned "context"): the first such tuple
/// seen is kept, and later calls with it compare one pointer.
fn only_context(names: &Bound<'_, PyTuple>) -> bool {
    static SEEN: PyOnceLock<Py<PyTuple>> = PyOnceLock::new();
    let py = names.py();
    if SEEN.get(py).is_some_and(|seen| names.is(seen)) {
        return true;
    }
    let yes = names.len() == 1 && names.get_item(0).is_ok_and(|n| is_context(&n));
    if yes && SEEN.get(py).is_none() {
        let _ = SEEN.set(py, names.clone().unbind());
    }
    yes
}

fn is_context(name: &Bound<'_, PyAny>) -> bool {
    let expected = pyo3::intern!(name.py(), "context");
    // Keyword names are interned by the compiler: identity is the usual hit.
    name.is(expected) || name.cast::<PyString>().is_ok_and(|s| s.to_str().is_ok_and(|s| s == "context"))
}

/// Any other call: PyO3's method, for its checks and messages.
fn generic(
    slf: &Bound<'_, PyAny>,
    name: &str,
    args: *const RawObject,
    nargs: SsizeT,
    kwnames: RawObject,
) -> PyResult<RawObject> {
    let method = slf.getattr(name)?;
    let nargsf = usize::try_from(nargs).unwrap_or(0);
    // SAFETY: args holds nargs positionals and one value per keyword name
    // (vectorcall protocol, module invariants).
    unsafe { vectorcall_raw(&method, args, nargsf, kwnames).map(Bound::into_ptr) }
}
