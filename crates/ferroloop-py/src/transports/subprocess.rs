//! `ChildWatch`: a child process's exit as one more reactor owner.
//!
//! Owns the child's pidfd (core `process::Child`) and its registration with
//! the reactor (read interest: a pidfd becomes readable when the child ends).
//! When it fires, the child is reaped here (`waitid(P_PIDFD)`, never
//! `waitpid(-1)`), the pidfd leaves the reactor and is closed, and the
//! subprocess transport hears of it through `ferroloop._subprocess.child_exited`
//! (Python: asyncio's own `_process_exited` bookkeeping follows). No thread,
//! no `SIGCHLD`, no child watcher of asyncio or of the policy: it works the
//! same from a loop in any thread.
//!
//! Signals go through the pidfd (`pidfd_send_signal`), so once the child is
//! reaped a signal is a silent no-op and can never reach a recycled pid.
//!
//! Without pidfds (`start(..., pidfd=False)`), the descriptor on the reactor is
//! an eventfd woken by core's process-wide `SIGCHLD` handler; the reap is
//! `waitpid(pid, WNOHANG)` of this one pid, and `poll()` is the loop's periodic
//! safety check (re-installs the handler if Python's `signal.signal` replaced
//! it, then looks at the child as a wake-up would).
//!
//! Invariants: the pidfd leaves the reactor before it is closed (the owner
//! table is keyed by descriptor number); no `Watching` borrow is held while
//! Python code runs or a Python object is dropped.

use ferroloop_core::process::{Child, Reaped};
use ferroloop_core::{Interest, Readiness};
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};

use crate::capi::exc;
use crate::errors::{is_exit, os_error};
use crate::gil_cell::GilCell;
use crate::pyimports;
use crate::reactor::{IoEvent, IoOwner, IoRef, Reactor};

struct Watching {
    /// The child, until it is reaped.
    child: Option<Child>,
    /// The subprocess transport told of the exit.
    transport: Option<Py<PyAny>>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "ChildWatch", frozen)]
pub(crate) struct ChildWatch {
    /// The loop, for its exception handler (an error path).
    loop_: Py<PyAny>,
    reactor: Py<Reactor>,
    pid: i32,
    st: GilCell<Watching>,
}

/// How the reactor and the ready queue call a watch: readable means ended.
impl IoOwner for ChildWatch {
    fn wants(_: &Bound<'_, Self>, ev: &Readiness) -> Interest {
        Interest { read: ev.readable, write: false }
    }

    fn run(slf: &Bound<'_, Self>, _: IoEvent) -> PyResult<()> {
        Self::on_ready(slf)
    }
}

impl ChildWatch {
    /// The pidfd fired: reap, leave the reactor, tell the transport.
    fn on_ready(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let reaped = match &this.st.borrow(py).child {
            Some(child) => child.try_wait(),
            None => return Ok(()),
        };
        let returncode = match reaped {
            Ok(Reaped::Running) => return Ok(()),
            Ok(Reaped::Exited(status)) => Some(status.0),
            // Reaped by someone else (`Popen.poll()`), or the status cannot be
            // read: Python takes what `Popen` saw, as asyncio's watchers do.
            Ok(Reaped::Elsewhere) | Err(_) => None,
        };
        let (child, transport) = this.finish(py);
        drop(child);
        let Some(transport) = transport else { return Ok(()) };
        match pyimports::child_exited(py)?.call1((transport.bind(py), this.pid, returncode)) {
            Err(err) if !is_exit(py, &err) => this.report(py, err, &transport),
            res => res.map(drop),
        }
    }

    /// Leaves the reactor and hands back the child (to close) and the
    /// transport, to use or drop once no borrow is held.
    fn finish(&self, py: Python<'_>) -> (Option<Child>, Option<Py<PyAny>>) {
        let (child, transport) = {
            let mut st = self.st.borrow_mut(py);
            (st.child.take(), st.transport.take())
        };
        if let Some(c) = &child {
            self.reactor.get().unregister_io(py, c.fd());
        }
        (child, transport)
    }

    /// An exception of the exit's bookkeeping goes to the loop's exception
    /// handler, as one of asyncio's watcher callback would (`Handle._run`).
    fn report(&self, py: Python<'_>, err: PyErr, transport: &Py<PyAny>) -> PyResult<()> {
        let context = PyDict::new(py);
        context.set_item("message", "Exception in callback ChildWatch.on_ready()")?;
        let err = err.into_value(py).into_bound(py).into_any();
        context.set_item("exception", &err)?;
        context.set_item("transport", transport)?;
        let handled = exc::handling(&err);
        self.loop_.bind(py).call_method1(pyo3::intern!(py, "call_exception_handler"), (context,))?;
        drop(handled);
        Ok(())
    }
}

#[pymethods]
impl ChildWatch {
    /// Starts watching `pid`, a child of this process not yet reaped, for the
    /// loop `loop_` (whose reactor is `reactor`); `transport` hears of the exit.
    #[staticmethod]
    fn start<'py>(
        loop_: Bound<'py, PyAny>,
        reactor: Bound<'py, Reactor>,
        pid: i32,
        transport: Bound<'py, PyAny>,
        pidfd: bool,
    ) -> PyResult<Bound<'py, ChildWatch>> {
        let py = loop_.py();
        reactor.get().check_closed()?;
        let child = if pidfd { Child::open(pid) } else { Child::open_fallback(pid) };
        let child = child.map_err(|e| os_error(&e))?;
        let fd = child.fd();
        let watch = Bound::new(
            py,
            ChildWatch {
                loop_: loop_.unbind(),
                reactor: reactor.clone().unbind(),
                pid,
                st: GilCell::new(Watching { child: Some(child), transport: Some(transport.unbind()) }),
            },
        )?;
        let io = IoRef::of(watch.clone().unbind());
        if let Err(e) = reactor.get().register_io(py, fd, io, Interest { read: true, write: false }) {
            let dropped = watch.get().st.borrow_mut(py).transport.take();
            drop(dropped);
            return Err(os_error(&e));
        }
        Ok(watch)
    }

    /// Whether this kernel (and its security policy) allows pidfds.
    #[staticmethod]
    fn supported() -> bool {
        Child::supported()
    }

    /// Puts the no-pidfd `SIGCHLD` handler back in front of the one just set
    /// by `signal.signal` (if any child was ever watched without a pidfd).
    #[staticmethod]
    fn rearm() -> PyResult<bool> {
        ferroloop_core::sys::sigchld::reinstall_if_used().map_err(|e| os_error(&e))
    }

    #[getter]
    fn pid(&self) -> i32 {
        self.pid
    }

    /// Whether the child is still unreaped here.
    fn watching(&self, py: Python<'_>) -> bool {
        self.st.borrow(py).child.is_some()
    }

    /// The no-pidfd safety check: re-installs the `SIGCHLD` handler if it was
    /// replaced, then reaps the child if it ended. Returns whether it is still
    /// watched.
    fn poll(slf: &Bound<'_, Self>) -> PyResult<bool> {
        let py = slf.py();
        if let Some(child) = &slf.get().st.borrow(py).child {
            child.rearm().map_err(|e| os_error(&e))?;
        }
        Self::on_ready(slf)?;
        Ok(slf.get().watching(py))
    }

    /// Sends `sig` through the pidfd (or `kill` on the unreaped pid); nothing once the child was reaped.
    fn send_signal(&self, py: Python<'_>, sig: i32) -> PyResult<()> {
        match &self.st.borrow(py).child {
            Some(child) => child.send_signal(sig).map_err(|e| os_error(&e)),
            None => Ok(()),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.reactor)?;
        let Some(st) = self.st.try_borrow_for_gc() else { return Ok(()) };
        if let Some(t) = &st.transport {
            visit.call(t)?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let dropped = self.st.borrow_mut(py).transport.take();
            drop(dropped);
        });
    }
}
