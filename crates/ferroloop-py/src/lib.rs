//! `ferroloop._ferroloop`: everything of ferroloop that touches a Python object.
//!
//! Owns the native `Loop` base class (subclassed by `ferroloop.Loop` in Python,
//! which adds the cold, policy-level methods), the `Handle`/`TimerHandle` types
//! returned to users, and the conversion of OS errors to Python exceptions.
//!
//! Must not: call libc directly (that is `ferroloop_core::sys`'s job), name
//! `pyo3::ffi` outside `capi`, or hold a borrow of loop state while calling
//! into Python (see `gil_cell`).

mod callbacks;
mod capi;
mod errors;
mod event_loop;
mod gil_cell;
mod health;
mod pyimports;
mod reactor;
mod sockaddr;
mod transports;

use pyo3::prelude::*;

// Needs the GIL: GilCell, GilPy and the free lists rely on it to serialise threads.
#[pymodule(gil_used = true)]
fn _ferroloop(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    callbacks::register(m)?;
    reactor::register(m)?;
    health::register(m)?;
    event_loop::register(m)?;
    transports::register(m)?;
    Ok(())
}
