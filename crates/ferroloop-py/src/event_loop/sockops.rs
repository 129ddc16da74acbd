//! Native `sock_recv`, `sock_recv_into`, `sock_sendall`, `sock_accept`,
//! `sock_connect` (the connect and, once writable, its `SO_ERROR`), and
//! the datagram calls `sock_recvfrom`, `sock_recvfrom_into` and `sock_sendto`.
//!
//! asyncio's versions try the call, and on `EAGAIN` register a reader or
//! writer, wait, and unregister: three extra system calls and several Python
//! frames per wait. Here the attempt is a direct system call (no exception
//! object on `EAGAIN`), a completed call returns its result at once, and a
//! waiting call parks an operation on the fd, which stays registered
//! (edge-triggered, read and write) between operations: each wait costs one
//! nothing while the same socket object waits again (its edge-triggered
//! registration is still armed), else one `epoll_ctl(MOD)`, falling back to
//! `ADD` when the kernel forgot a closed-and-reused fd.
//!
//! The parked operations live in the reactor's descriptor table, as one kind
//! of owner; this module runs them. An fd watched by `add_reader`/`add_writer`
//! or owned by a transport is not handled here (the Python layer then uses
//! asyncio's own code); a new owner taking an fd drops its parked operations.
//!
//! A parked operation whose future is already done (the awaiting task was
//! cancelled) is dropped when the fd next becomes ready or another operation
//! replaces it, so a cancelled call leaves the socket usable.

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::net::{self, datagram, SockAddr};
use pyo3::exceptions::{PyBlockingIOError, PyOSError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyTuple, PyWeakrefReference};

use super::Loop;
use crate::capi::bytes::{recv_bytes, recv_bytes_with, RawBuffer, Unsent};
use crate::errors::os_error;
use crate::reactor::{IoEvent, OpKind, SockOp};
use crate::sockaddr;

/// What an attempt gave.
enum Outcome {
    Done(Py<PyAny>),
    Failed(PyErr),
    Again(OpKind),
}

fn done(fut: &Bound<'_, PyAny>) -> bool {
    fut.call_method0(pyo3::intern!(fut.py(), "done")).and_then(|d| d.is_truthy()).unwrap_or(true)
}

fn again(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

/// The bytes of `buf` to receive into, of any format, or the `TypeError`
/// of CPython's `socket.recv_into` for a read-only or non-contiguous one.
fn writable_buffer(buf: &Bound<'_, PyAny>) -> PyResult<RawBuffer> {
    RawBuffer::get(buf, true).map_err(|_| {
        let name = buf.get_type().name().map_or_else(|_| "?".to_owned(), |n| n.to_string());
        pyo3::exceptions::PyTypeError::new_err(format!(
            "recv_into() argument 1 must be read-write bytes-like object, not {name}"
        ))
    })
}

/// Sends from `pos` until done or the socket is full.
fn send_from(py: Python<'_>, fd: RawFd, data: &[u8], mut pos: usize) -> Result<Option<usize>, PyErr> {
    let _ = py;
    while pos < data.len() {
        match net::send(fd, &data[pos..]) {
            Ok(k) => pos += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) if again(&e) => return Ok(Some(pos)),
            Err(e) => return Err(os_error(&e)),
        }
    }
    Ok(None)
}

fn attempt(py: Python<'_>, fd: RawFd, kind: OpKind) -> Outcome {
    match kind {
        OpKind::Recv { n } => match recv_bytes(py, fd, n) {
            Ok((Ok(_), Some(data))) => Outcome::Done(data.into_any().unbind()),
            Ok((Ok(_), None)) => Outcome::Done(PyBytes::new(py, b"").into_any().unbind()),
            Ok((Err(e), _)) if again(&e) => Outcome::Again(OpKind::Recv { n }),
            Ok((Err(e), _)) => Outcome::Failed(os_error(&e)),
            Err(e) => Outcome::Failed(e),
        },
        OpKind::RecvInto { buf } => {
            let res = writable_buffer(buf.bind(py)).map(|mut view| net::recv(fd, view.as_mut_slice()));
            match res {
                Ok(Ok(k)) => {
                    Outcome::Done(k.into_pyobject(py).map_or_else(|_| py.None(), |v| v.into_any().unbind()))
                }
                Ok(Err(e)) if again(&e) => Outcome::Again(OpKind::RecvInto { buf }),
                Ok(Err(e)) => Outcome::Failed(os_error(&e)),
                Err(e) => Outcome::Failed(e),
            }
        }
        OpKind::SendAll { data, pos } => match send_from(py, fd, data.bytes(py), pos) {
            Ok(None) => Outcome::Done(py.None()),
            Ok(Some(pos)) => Outcome::Again(OpKind::SendAll { data, pos }),
            Err(e) => Outcome::Failed(e),
        },
        OpKind::RecvFrom { n } => {
            let mut from = SockAddr::default();
            match recv_bytes_with(py, n, |buf| datagram::recv_from(fd, buf, &mut from)) {
                Ok((Ok(_), data)) => {
                    let data = data.unwrap_or_else(|| PyBytes::new(py, b""));
                    pair(py, data.into_any().unbind(), &from)
                }
                Ok((Err(e), _)) if again(&e) => Outcome::Again(OpKind::RecvFrom { n }),
                Ok((Err(e), _)) => Outcome::Failed(os_error(&e)),
                Err(e) => Outcome::Failed(e),
            }
        }
        OpKind::RecvFromInto { buf, n } => {
            let mut from = SockAddr::default();
            let res = writable_buffer(buf.bind(py)).map(|mut view| {
                let slice = view.as_mut_slice();
                let n = n.min(slice.len());
                datagram::recv_from(fd, &mut slice[..n], &mut from)
            });
            match res {
                Ok(Ok(k)) => {
                    pair(py, k.into_pyobject(py).map_or_else(|_| py.None(), |v| v.into_any().unbind()), &from)
                }
                Ok(Err(e)) if again(&e) => Outcome::Again(OpKind::RecvFromInto { buf, n }),
                Ok(Err(e)) => Outcome::Failed(os_error(&e)),
                Err(e) => Outcome::Failed(e),
            }
        }
        OpKind::SendTo { data, addr } => match datagram::send_to(fd, data.bytes(py), &addr) {
            Ok(k) => Outcome::Done(k.into_pyobject(py).map_or_else(|_| py.None(), |v| v.into_any().unbind())),
            Err(e) if again(&e) => Outcome::Again(OpKind::SendTo { data, addr }),
            Err(e) => Outcome::Failed(os_error(&e)),
        },
        OpKind::Connect { address } => match net::take_error(fd) {
            Ok(0) => Outcome::Done(py.None()),
            Ok(err) if net::is_under_way(Some(err)) => Outcome::Again(OpKind::Connect { address }),
            Ok(err) => Outcome::Failed(connect_failed(address.bind(py), err)),
            Err(e) => Outcome::Failed(os_error(&e)),
        },
        OpKind::Accept { sock } => match accept(sock.bind(py)) {
            Ok(pair) => Outcome::Done(pair),
            Err(e)
                if e.is_instance_of::<PyBlockingIOError>(py)
                    || e.is_instance_of::<pyo3::exceptions::PyInterruptedError>(py) =>
            {
                Outcome::Again(OpKind::Accept { sock })
            }
            Err(e) => Outcome::Failed(e),
        },
    }
}

/// `(value, address)`, as `recvfrom` and `recvfrom_into` return them.
fn pair(py: Python<'_>, value: Py<PyAny>, from: &SockAddr) -> Outcome {
    match sockaddr::to_python(py, from).and_then(|addr| PyTuple::new(py, [value, addr])) {
        Ok(t) => Outcome::Done(t.into_any().unbind()),
        Err(e) => Outcome::Failed(e),
    }
}

/// asyncio's error for a connection that failed once under way.
fn connect_failed(address: &Bound<'_, PyAny>, err: i32) -> PyErr {
    match address.str() {
        Ok(text) => PyOSError::new_err((err, format!("Connect call failed {text}"))),
        Err(e) => e,
    }
}

/// `conn, address = sock.accept(); conn.setblocking(False)`, as asyncio.
fn accept(sock: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = sock.py();
    let pair = sock.call_method0(pyo3::intern!(py, "accept"))?;
    pair.get_item(0)?.call_method1(pyo3::intern!(py, "setblocking"), (false,))?;
    Ok(pair.unbind())
}

impl Loop {
    /// Checks the loop is open; true when `fd` is watched by `add_reader` /
    /// `add_writer` or owned by a transport (then asyncio's path is taken).
    fn fd_in_other_use(&self, py: Python<'_>, fd: RawFd) -> PyResult<bool> {
        self.check_closed()?;
        Ok(self.reactor().owned_otherwise(py, fd))
    }

    /// Starts an operation: tries it, and parks it if the socket is not ready.
    /// `NotImplemented` means the fd is used otherwise: take asyncio's path.
    fn start_op(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        fd: RawFd,
        side: IoEvent,
        kind: OpKind,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.get().fd_in_other_use(py, fd)? {
            return Ok(py.NotImplemented());
        }
        match attempt(py, fd, kind) {
            Outcome::Done(v) => Ok(v),
            Outcome::Failed(e) => Err(e),
            Outcome::Again(kind) => Self::park(slf, sock, fd, side, kind),
        }
    }

    /// Parks an operation until `fd` is ready; returns the future to await.
    fn park(
        slf: &Bound<'_, Self>,
        sock: &Bound<'_, PyAny>,
        fd: RawFd,
        side: IoEvent,
        kind: OpKind,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let this = slf.get();
        let fut = Self::create_future(slf)?;
        let op = SockOp { fut: fut.clone_ref(py), kind };
        // Made before the reactor is borrowed: Python allocations may run a
        // collection, and with it finalisers that call the loop.
        let owner = PyWeakrefReference::new(sock)?;
        let same_owner =
            this.reactor().sock_owner(py, fd).and_then(|o| o.bind(py).upgrade()).is_some_and(|o| o.is(sock));
        let (old, old_owner) =
            this.reactor().park(py, fd, side, op, owner.unbind(), same_owner).map_err(|e| os_error(&e))?;
        drop((old, old_owner));
        Ok(fut)
    }

    /// Runs the parked operation of `fd` in one direction (from the ready queue).
    pub(super) fn run_sock_op(slf: &Bound<'_, Self>, fd: RawFd, side: IoEvent) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let Some(SockOp { fut, kind }) = this.reactor().take_op(py, fd, side) else { return Ok(()) };
        if done(fut.bind(py)) {
            return Ok(());
        }
        match attempt(py, fd, kind) {
            Outcome::Done(v) => {
                fut.bind(py).call_method1(pyo3::intern!(py, "set_result"), (v,))?;
            }
            Outcome::Failed(e) => {
                if crate::errors::is_exit(py, &e) {
                    return Err(e);
                }
                fut.bind(py).call_method1(pyo3::intern!(py, "set_exception"), (e.into_value(py),))?;
            }
            Outcome::Again(kind) => drop(this.reactor().repark(py, fd, side, SockOp { fut, kind })),
        }
        Ok(())
    }
}

/// The `sock_*` calls' native bodies, called by the Python layer's `sock_*`
/// methods (`_net.py`).
#[pymethods]
impl Loop {
    /// The body of `sock_recv`: the bytes, or a future to await, or
    /// `NotImplemented` when the fd is in other use (then asyncio's own path
    /// is taken).
    #[pyo3(name = "_sock_recv_native")]
    fn sock_recv_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        n: usize,
    ) -> PyResult<Py<PyAny>> {
        Self::start_op(slf, &sock, fd, IoEvent::Read, OpKind::Recv { n })
    }

    #[pyo3(name = "_sock_recv_into_native")]
    fn sock_recv_into_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        buf: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        Self::start_op(slf, &sock, fd, IoEvent::Read, OpKind::RecvInto { buf: buf.unbind() })
    }

    /// The body of `sock_sendall`: sends straight from the caller's buffer and
    /// copies only what the socket did not take.
    #[pyo3(name = "_sock_sendall_native")]
    fn sock_sendall_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        data: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.get().fd_in_other_use(py, fd)? {
            return Ok(py.NotImplemented());
        }
        let view = RawBuffer::get(&data, false)?;
        let bytes = view.as_slice();
        match send_from(py, fd, bytes, 0)? {
            None => Ok(py.None()),
            Some(sent) => {
                let (rest, pos) = Unsent::rest(&data, bytes, sent);
                drop(view);
                Self::park(slf, &sock, fd, IoEvent::Write, OpKind::SendAll { data: rest, pos })
            }
        }
    }

    #[pyo3(name = "_sock_accept_native")]
    fn sock_accept_native(slf: &Bound<'_, Self>, sock: Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let fd: RawFd = sock.call_method0(pyo3::intern!(slf.py(), "fileno"))?.extract()?;
        Self::start_op(slf, &sock, fd, IoEvent::Read, OpKind::Accept { sock: sock.clone().unbind() })
    }
}

#[pymethods]
impl Loop {
    /// The body of `sock_connect` once the address is resolved: `None` when
    /// connected at once, else the future of a connection under way (the fd
    /// waits to be writable, then its `SO_ERROR` says how it ended, as in
    /// asyncio's `_sock_connect_cb`). `NotImplemented` for an address only
    /// CPython can build, or an fd in other use: asyncio's path then.
    #[pyo3(name = "_sock_connect_native")]
    fn sock_connect_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        family: i32,
        address: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        let Some(addr) = sockaddr::from_python(&address, family) else { return Ok(py.NotImplemented()) };
        if slf.get().fd_in_other_use(py, fd)? {
            return Ok(py.NotImplemented());
        }
        match net::connect(fd, &addr) {
            Ok(true) => Ok(py.None()),
            Ok(false) => {
                Self::park(slf, &sock, fd, IoEvent::Write, OpKind::Connect { address: address.unbind() })
            }
            Err(e) => Err(os_error(&e)),
        }
    }

    #[pyo3(name = "_sock_recvfrom_native")]
    fn sock_recvfrom_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        n: usize,
    ) -> PyResult<Py<PyAny>> {
        Self::start_op(slf, &sock, fd, IoEvent::Read, OpKind::RecvFrom { n })
    }

    /// The body of `sock_recvfrom_into(sock, buf, nbytes)` (`nbytes` made
    /// non-zero by the caller); `NotImplemented` for what CPython refuses
    /// (then asyncio's path gives its error).
    #[pyo3(name = "_sock_recvfrom_into_native")]
    fn sock_recvfrom_into_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        buf: Bound<'_, PyAny>,
        nbytes: usize,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        match RawBuffer::get(&buf, true) {
            Ok(view) if !view.readonly() && nbytes <= view.len() => {}
            _ => return Ok(py.NotImplemented()),
        }
        Self::start_op(slf, &sock, fd, IoEvent::Read, OpKind::RecvFromInto { buf: buf.unbind(), n: nbytes })
    }

    /// The body of `sock_sendto`: `NotImplemented` when the address is not
    /// numeric (CPython resolves it) or the data not a buffer.
    #[pyo3(name = "_sock_sendto_native")]
    fn sock_sendto_native(
        slf: &Bound<'_, Self>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        family: i32,
        data: Bound<'_, PyAny>,
        address: Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = slf.py();
        if slf.get().fd_in_other_use(py, fd)? {
            return Ok(py.NotImplemented());
        }
        let (Some(addr), Ok(view)) = (sockaddr::from_python(&address, family), RawBuffer::get(&data, false))
        else {
            return Ok(py.NotImplemented());
        };
        let bytes = view.as_slice();
        loop {
            match datagram::send_to(fd, bytes, &addr) {
                Ok(k) => return Ok(k.into_pyobject(py)?.into_any().unbind()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if again(&e) => break,
                Err(e) => return Err(os_error(&e)),
            }
        }
        let (rest, _) = Unsent::rest(&data, bytes, 0);
        drop(view);
        Self::park(slf, &sock, fd, IoEvent::Write, OpKind::SendTo { data: rest, addr: Box::new(addr) })
    }
}
