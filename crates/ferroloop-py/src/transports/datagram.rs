//! `DatagramCore`: the native half of datagram transports (UDP over IPv4 and
//! IPv6, `AF_UNIX` datagrams).
//!
//! Built on `base` (the transport state, event runs, closing, flow control
//! and the methods every transport shares). Owns: its interest in the
//! reactor (read always, write only while datagrams are queued, since a
//! datagram socket reports writability after every datagram it sends), the
//! queue of unsent datagrams with asyncio's size accounting, and a cache of
//! peer addresses (`sockaddr::AddrCache`). The
//! Python class around it (`ferroloop._datagram.DatagramTransport`) does the
//! cold paths: closing, `connection_lost`, extra info, reprs.
//!
//! Semantics follow asyncio's `_SelectorDatagramTransport`: each datagram
//! goes to `protocol.datagram_received(data, addr)` in arrival order; an
//! `OSError` of `recvfrom` or `sendto` goes to `protocol.error_received`
//! (the ICMP refusal of a connected socket shows up that way); `sendto` sends
//! at once when nothing is queued and queues a copy otherwise, with
//! asyncio's size accounting, which differs between Python versions (an empty
//! datagram dropped before 3.13, 8 header bytes counted per queued datagram
//! from 3.13: the Python side learns both from the running asyncio). An
//! exception escaping a protocol callback goes to the loop's exception
//! handler, as it escapes asyncio's reader handle, and the transport reads on.
//!
//! One readiness reads up to [`READ_BUDGET`] datagrams (asyncio reads one per
//! loop iteration): what is left waits for another turn at the back of the
//! ready queue, so a flooded socket cannot starve other descriptors or timers.
//!
//! Invariant: no `State` borrow is held across a call into Python or the drop
//! of a Python object.

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use ferroloop_core::net::{self, datagram as dgram, SockAddr};
use ferroloop_core::Interest;
use pyo3::exceptions::{PyBlockingIOError, PyInterruptedError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};

use super::base::{self, Base, Kind, State, Transport};
use crate::capi::bytes::{as_bytes, RawBuffer, Unsent};
use crate::capi::{context, exc};
use crate::errors::os_error;
use crate::pyimports;
use crate::reactor::{IoEvent, Reactor};
use crate::sockaddr::{self, AddrCache, Evicted};

/// The largest datagram read: asyncio's `max_size` (256 KiB); a longer one
/// is truncated, as there.
const MAX_READ: usize = 256 * 1024;

/// Datagrams read per readiness before the socket waits its turn again.
pub(crate) const READ_BUDGET: usize = 32;

/// Where a queued datagram goes.
pub(super) enum Dest {
    /// The socket is connected: `send`.
    Connected,
    /// `sendto` this address.
    Native(SockAddr),
    /// An address only CPython can convert (a host name...): the socket
    /// object's own `sendto`.
    Python(Py<PyAny>),
}

pub(super) struct Queued {
    data: Unsent,
    dest: Dest,
}

/// What one send gave.
enum Sent {
    Done,
    /// The socket is full (or the call was interrupted).
    Again,
    /// An `OSError`: for `protocol.error_received`.
    Os(PyErr),
    /// Anything else (a bad address type...): a fatal error.
    Fatal(PyErr),
}

/// What a datagram transport adds to asyncio's transport state (`base::State`).
pub(super) struct Datagrams {
    out: VecDeque<Queued>,
    /// asyncio's `_buffer_size` (see the module doc for its arithmetic).
    size: usize,
    /// asyncio keeps the size in a counter (3.11+), which dropping the queue
    /// leaves as it was; 3.10 sums the queue.
    counter: bool,
    /// Write interest is on (datagrams are queued).
    writing: bool,
    /// `connection_lost` ran and the socket is closed.
    detached: bool,
    addrs: AddrCache,
}

#[pyclass(module = "ferroloop._ferroloop", name = "DatagramCore", frozen, weakref)]
pub(crate) struct DatagramCore {
    io: Base<Datagrams>,
    /// The socket object: its own `sendto` for addresses Rust does not convert.
    sock: Py<PyAny>,
    family: i32,
    /// `extra['peername']` is true: send with `send`, as asyncio does.
    connected: bool,
    /// asyncio's `_address` (the `remote_addr` given), when true.
    address: Option<Py<PyAny>>,
    /// The running asyncio drops empty datagrams (before 3.13).
    drops_empty: bool,
    /// Bytes asyncio counts per queued datagram beyond its length.
    header: usize,
}

impl Kind for Datagrams {
    type Dropped = (VecDeque<Queued>, Vec<Evicted>);

    fn can_read(st: &State<Self>) -> bool {
        st.started && !st.paused && !st.closing && st.conn_lost == 0
    }

    fn buffer_size(&self) -> usize {
        self.size
    }

    fn buffer_empty(&self) -> bool {
        self.out.is_empty()
    }

    fn drop_unsent(&mut self) -> Self::Dropped {
        if !self.counter {
            self.size = 0;
        }
        (std::mem::take(&mut self.out), Vec::new())
    }

    fn release(&mut self) -> Self::Dropped {
        self.detached = true;
        let (out, _) = self.drop_unsent();
        (out, self.addrs.clear())
    }
}

/// How the loop's reactor calls a datagram socket.
impl Transport for DatagramCore {
    /// Reading; writing only while datagrams are queued (`set_writing`).
    fn interest(&self) -> Interest {
        Interest { read: true, write: false }
    }

    fn on_event(slf: &Bound<'_, Self>, event: IoEvent) -> PyResult<()> {
        match event {
            IoEvent::Read => Self::on_readable(slf),
            IoEvent::Write => Self::on_writable(slf),
        }
    }
}

fn is_again(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted)
}

impl DatagramCore {
    /// Reads up to [`READ_BUDGET`] datagrams, each to the protocol.
    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let reactor = this.io.reactor.get();
        let mut from = SockAddr::default();
        for _ in 0..READ_BUDGET {
            let protocol = {
                let st = this.io.st.borrow(py);
                match (&st.protocol, st.can_read()) {
                    (Some(p), true) => p.clone_ref(py),
                    _ => return Ok(()),
                }
            };
            let mut scratch = reactor.take_scratch(py);
            if scratch.len() < MAX_READ {
                scratch.resize(MAX_READ, 0);
            }
            let res = dgram::recv_from(this.io.fd, &mut scratch, &mut from);
            let data = match &res {
                Ok(n) => Some(PyBytes::new(py, &scratch[..*n])),
                Err(_) => None,
            };
            reactor.put_scratch(py, scratch);
            let delivered = match (res, data) {
                (Ok(_), Some(data)) => {
                    let addr = this.address_object(py, &from)?;
                    protocol.bind(py).call_method1(pyo3::intern!(py, "datagram_received"), (data, addr))
                }
                (Err(e), _) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                (Err(e), _) if e.kind() == io::ErrorKind::Interrupted => continue,
                (Err(e), _) => {
                    protocol.bind(py).call_method1(pyo3::intern!(py, "error_received"), (os_error(&e),))
                }
                (Ok(_), None) => unreachable!("a datagram read makes its bytes"),
            };
            if let Err(err) = delivered {
                // asyncio's reader stays registered after an exception: read on.
                base::queue(slf, IoEvent::Read);
                return Err(err);
            }
        }
        base::queue(slf, IoEvent::Read);
        Ok(())
    }

    /// The Python object of a sender's address, from the cache or made.
    fn address_object(&self, py: Python<'_>, from: &SockAddr) -> PyResult<Py<PyAny>> {
        if let Some(obj) = self.io.st.borrow_mut(py).addrs.get(py, from) {
            return Ok(obj);
        }
        // Made with no borrow held: an allocation may run the collector.
        let obj = sockaddr::to_python(py, from)?;
        let evicted = self.io.st.borrow_mut(py).addrs.put(py, from, &obj);
        drop(evicted);
        Ok(obj)
    }

    /// One send of `bytes` to `dest`; `data` is the object given (the
    /// socket's own `sendto` takes it, a new `bytes` if not given).
    fn send_one<'py>(
        &self,
        py: Python<'py>,
        bytes: &[u8],
        data: Option<&Bound<'py, PyAny>>,
        dest: &Dest,
    ) -> Sent {
        let res = match dest {
            Dest::Connected => net::send(self.io.fd, bytes),
            Dest::Native(addr) => dgram::send_to(self.io.fd, bytes, addr),
            Dest::Python(addr) => {
                let data = data.map_or_else(|| PyBytes::new(py, bytes).into_any(), Clone::clone);
                return match self.sock.bind(py).call_method1(pyo3::intern!(py, "sendto"), (data, addr)) {
                    Ok(_) => Sent::Done,
                    Err(e)
                        if e.is_instance_of::<PyBlockingIOError>(py)
                            || e.is_instance_of::<PyInterruptedError>(py) =>
                    {
                        Sent::Again
                    }
                    Err(e) if e.is_instance_of::<PyOSError>(py) => Sent::Os(e),
                    Err(e) => Sent::Fatal(e),
                };
            }
        };
        match res {
            Ok(_) => Sent::Done,
            Err(e) if is_again(&e) => Sent::Again,
            Err(e) => Sent::Os(os_error(&e)),
        }
    }

    fn dest(&self, py: Python<'_>, addr: &Bound<'_, PyAny>) -> Dest {
        if self.connected {
            return Dest::Connected;
        }
        let known = self.io.st.borrow(py).addrs.find(addr);
        match known.or_else(|| sockaddr::from_python(addr, self.family)) {
            Some(a) => Dest::Native(a),
            None => Dest::Python(addr.clone().unbind()),
        }
    }

    /// Calls `protocol.error_received(exc)`.
    fn error_received(&self, py: Python<'_>, err: PyErr) -> PyResult<()> {
        match self.io.protocol(py) {
            Some(p) => {
                exc::while_handling(py, err, |e| p.call_method1(pyo3::intern!(py, "error_received"), (e,)))
                    .map(drop)
            }
            None => Ok(()),
        }
    }

    fn set_writing(&self, py: Python<'_>, on: bool) -> PyResult<()> {
        {
            let mut st = self.io.st.borrow_mut(py);
            if st.writing == on || !st.registered {
                return Ok(());
            }
            st.writing = on;
        }
        let interest = Interest { read: true, write: on };
        self.io.reactor.get().set_io_interest(py, self.io.fd, interest).map_err(|e| os_error(&e))
    }

    /// asyncio's `_sendto_ready`: sends the queue until the socket is full.
    fn on_writable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        loop {
            let front = {
                let mut st = this.io.st.borrow_mut(py);
                if st.conn_lost > 0 {
                    return Ok(());
                }
                st.out.pop_front()
            };
            let Some(item) = front else { break };
            let data = match &item.data {
                Unsent::Shared(b) => Some(b.bind(py).clone().into_any()),
                Unsent::Copied(_) => None,
            };
            let len = item.data.bytes(py).len();
            let sent = this.send_one(py, item.data.bytes(py), data.as_ref(), &item.dest);
            if matches!(sent, Sent::Again) {
                this.io.st.borrow_mut(py).out.push_front(item);
                break;
            }
            {
                let mut st = this.io.st.borrow_mut(py);
                st.size = st.size.saturating_sub(len);
            }
            drop(item);
            match sent {
                Sent::Done | Sent::Again => {}
                Sent::Os(e) => {
                    // asyncio returns here with its writer still registered:
                    // the rest goes out on the next turn.
                    base::queue(slf, IoEvent::Write);
                    return this.error_received(py, e);
                }
                Sent::Fatal(e) => return this.io.fatal(py, e, "Fatal write error on datagram transport"),
            }
        }
        this.io.maybe_resume_protocol(py)?;
        let (empty, closing) = {
            let st = this.io.st.borrow(py);
            (st.out.is_empty(), st.closing)
        };
        if empty {
            this.set_writing(py, false)?;
            if closing {
                if let Some(t) = this.io.transport(py) {
                    pyimports::transport_write_drained(py)?.call1((t,))?;
                }
            }
        }
        Ok(())
    }

    /// asyncio's checks on `sendto`'s arguments; the address to use.
    fn check_args<'py>(
        &self,
        data: &Bound<'py, PyAny>,
        addr: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let py = data.py();
        if as_bytes(data).is_none()
            && !(data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>())
        {
            let err = pyimports::write_type_error(py)?.call1((data, true))?;
            return Err(PyErr::from_value(err));
        }
        let Some(address) = &self.address else { return Ok(addr) };
        let address = address.bind(py);
        if let Some(a) = &addr {
            if !a.is_none() && !a.is(address) && !a.eq(address)? {
                return Err(PyValueError::new_err(format!(
                    "Invalid address: must be None or {}",
                    address.str()?
                )));
            }
        }
        Ok(Some(address.clone()))
    }
}

base::transport_methods!(DatagramCore, Datagrams, "_sendto_ready", {
    /// The core of `transport`, over the socket `sock` (descriptor `fd`, of
    /// address family `family`) for `loop_`, whose reactor is `reactor`.
    #[new]
    #[allow(clippy::too_many_arguments)]
    #[pyo3(signature = (loop_, reactor, transport, sock, fd, family, connected, address, drops_empty, header, counter))]
    fn new(
        py: Python<'_>,
        loop_: Bound<'_, PyAny>,
        reactor: Bound<'_, Reactor>,
        transport: Bound<'_, PyAny>,
        sock: Bound<'_, PyAny>,
        fd: RawFd,
        family: i32,
        connected: bool,
        address: Option<Bound<'_, PyAny>>,
        drops_empty: bool,
        header: usize,
        counter: bool,
    ) -> PyResult<Self> {
        let context = context::copy_current(py)?.unbind();
        let own = Datagrams {
            out: VecDeque::new(),
            size: 0,
            counter,
            writing: false,
            detached: false,
            addrs: AddrCache::default(),
        };
        Ok(Self {
            io: Base::new(loop_, reactor, fd, context, State::new(transport.unbind(), own)),
            sock: sock.unbind(),
            family,
            connected,
            address: address.map(Bound::unbind),
            drops_empty,
            header,
        })
    }

    #[pyo3(signature = (protocol, buffered = false))]
    fn set_protocol(&self, py: Python<'_>, protocol: Bound<'_, PyAny>, buffered: bool) {
        let _ = buffered;
        let old = self.io.st.borrow_mut(py).protocol.replace(protocol.unbind());
        drop(old);
    }

    /// asyncio's `sendto`.
    #[pyo3(signature = (data, addr = None))]
    fn sendto(&self, py: Python<'_>, data: Bound<'_, PyAny>, addr: Option<Bound<'_, PyAny>>) -> PyResult<()> {
        let addr = self.check_args(&data, addr)?;
        let view = RawBuffer::get(&data, false)?;
        let bytes = view.as_slice();
        if self.drops_empty && bytes.is_empty() {
            return Ok(());
        }
        let (conn_lost, detached, queued) = {
            let st = self.io.st.borrow(py);
            (st.conn_lost, st.detached, !st.out.is_empty())
        };
        if conn_lost > 0 && self.address.is_some() {
            if conn_lost >= 5 {
                pyimports::warn_send_after_lost(py)?.call1((false,))?;
            }
            self.io.st.borrow_mut(py).conn_lost += 1;
            return Ok(());
        }
        if detached {
            // asyncio's socket is gone: its `sendto` fails as asyncio's does.
            return pyimports::datagram_send_closed(py)?.call0().map(drop);
        }
        let addr = addr.unwrap_or_else(|| py.None().into_bound(py));
        let dest = self.dest(py, &addr);
        if !queued {
            match self.send_one(py, bytes, Some(&data), &dest) {
                Sent::Done => return Ok(()),
                Sent::Again => {}
                Sent::Os(e) => return self.error_received(py, e),
                Sent::Fatal(e) => return self.io.fatal(py, e, "Fatal write error on datagram transport"),
            }
        }
        // asyncio counts `len(data)`: items, for a memoryview of another format.
        let counted = if data.is_instance_of::<PyMemoryView>() { data.len()? } else { bytes.len() };
        let (chunk, _) = Unsent::rest(&data, bytes, 0);
        drop(view);
        {
            let mut st = self.io.st.borrow_mut(py);
            st.out.push_back(Queued { data: chunk, dest });
            st.size += counted + self.header;
        }
        self.set_writing(py, true)?;
        self.io.maybe_pause_protocol(py)
    }

    /// Never half-closed (the stream core's `eof`, read by shared code).
    #[getter]
    fn eof(&self) -> bool {
        false
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.io.traverse(&visit)?;
        visit.call(&self.sock)?;
        if let Some(a) = &self.address {
            visit.call(a)?;
        }
        let Some(st) = self.io.st.try_borrow_for_gc() else { return Ok(()) };
        for q in &st.out {
            if let Dest::Python(a) = &q.dest {
                visit.call(a)?;
            }
        }
        st.addrs.traverse(&visit)
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let dropped = {
                let mut st = self.io.st.borrow_mut(py);
                (st.transport.take(), st.protocol.take(), std::mem::take(&mut st.out), st.addrs.clear())
            };
            drop(dropped);
        });
    }
});
