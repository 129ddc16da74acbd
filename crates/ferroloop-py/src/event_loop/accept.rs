//! A server's accept loop: asyncio's `_accept_connection` without a task per
//! connection (the set-up callback, plain or TLS, is the Python layer's).
//!
//! asyncio accepts up to `backlog` connections per readiness of the listening
//! socket; each goes through `socket.accept()` (two enum conversions and a
//! Python `socket` built around the new fd), `setblocking(False)`, and a new
//! task whose first step (the next iteration) calls the protocol factory and
//! makes the transport; the batch ends with a `BlockingIOError` raised and
//! caught. Here the batch is `accept4` calls that end on `EAGAIN` without an
//! exception, and each connection's set-up is one callback queued where the
//! task's first step would have been, in a copy of the current context as the
//! task's would be: the protocol factory and `connection_made` run in the same
//! iterations and contexts as on asyncio. The Python layer takes asyncio's own
//! path where a task is observable (a task factory) and in debug mode.
//!
//! Must not: handle an accept error other than "nothing left" (the caller
//! hands those to asyncio's code, which logs them or backs off on `EMFILE`).

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::net::{self, SockAddr};
use ferroloop_core::sys;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::Loop;
use crate::capi::context;
use crate::errors::os_error;
use crate::sockaddr;

/// What one server's accept loop needs, the same for each of its batches.
pub(super) struct Listener<'py> {
    /// The listening socket's fd.
    pub fd: RawFd,
    /// `socket.socket`, called as `(family, type, proto, fileno)`.
    pub socket_type: Bound<'py, PyAny>,
    /// The listening socket's `(family, type, proto)`, which accepted ones share.
    pub kind: (i32, i32, i32),
    /// Called as `setup(protocol_factory, conn, extra, server)` for each
    /// connection, from the ready queue.
    pub setup: Bound<'py, PyAny>,
    pub protocol_factory: Bound<'py, PyAny>,
    pub server: Bound<'py, PyAny>,
}

impl Loop {
    /// Accepts up to `backlog` connections; returns once none is waiting. An
    /// error other than that is raised, the connections accepted before it
    /// already queued (as asyncio's loop has made their tasks by then).
    pub(super) fn accept_connections(
        slf: &Bound<'_, Self>,
        l: &Listener<'_>,
        backlog: usize,
    ) -> PyResult<()> {
        let py = slf.py();
        let mut addr = SockAddr::default();
        for _ in 0..backlog {
            let fd = match net::accept(l.fd, &mut addr) {
                Ok(fd) => fd,
                Err(e) if is_nothing_left(&e) => return Ok(()),
                Err(e) => return Err(os_error(&e)),
            };
            let conn = match l.socket_type.call1((l.kind.0, l.kind.1, l.kind.2, fd)) {
                Ok(conn) => conn,
                Err(e) => {
                    let _ = sys::close(fd); // no socket object owns it
                    return Err(e);
                }
            };
            conn.call_method1(pyo3::intern!(py, "setblocking"), (false,))?;
            let extra = PyDict::new(py);
            extra.set_item(pyo3::intern!(py, "peername"), sockaddr::to_python(py, &addr)?)?;
            let args =
                PyTuple::new(py, [l.protocol_factory.clone(), conn, extra.into_any(), l.server.clone()])?;
            Self::call_soon_impl(slf, l.setup.clone(), args, Some(context::copy_current(py)?))?;
        }
        Ok(())
    }
}

/// The errors on which asyncio's accept loop ends its batch quietly
/// (`BlockingIOError`, `ConnectionAbortedError`; `EINTR` is retried below it).
fn is_nothing_left(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::ConnectionAborted)
}

/// Called by a server's readiness callback (`_net.py`).
#[pymethods]
impl Loop {
    /// A server's accept loop on the listening socket `fd` (whose
    /// `(family, type, proto)` is `kind`): accepts up to `backlog` connections
    /// and queues `setup(protocol_factory, conn, extra, server)` for each, in a
    /// copy of the current context. Raises the accept error that is not "none
    /// left".
    #[allow(clippy::too_many_arguments)]
    fn _accept_connections(
        slf: &Bound<'_, Self>,
        fd: RawFd,
        backlog: usize,
        socket_type: Bound<'_, PyAny>,
        kind: (i32, i32, i32),
        setup: Bound<'_, PyAny>,
        protocol_factory: Bound<'_, PyAny>,
        server: Bound<'_, PyAny>,
    ) -> PyResult<()> {
        let listener = Listener { fd, socket_type, kind, setup, protocol_factory, server };
        Self::accept_connections(slf, &listener, backlog)
    }
}
