//! `StreamCore`: the native half of stream transports (TCP and Unix sockets;
//! pipes through the same code, over a [`StreamFd`]).
//!
//! Owns: the fd's registration with the reactor (read + write interest, edge
//! triggered, registered once), the write buffer (`write_buf`), write flow
//! control (`flow`), the protocol and the reading state. The Python class
//! around it (`ferroloop._stream.SocketTransport`, an `asyncio.Transport`)
//! does the cold paths: close, abort, errors, `connection_lost`, extra info;
//! the core calls them through the functions of `pyimports`.
//!
//! Semantics follow asyncio's `_SelectorSocketTransport`: one read per loop
//! iteration (of up to [`MAX_READ`] bytes), run right after the poll (see
//! `event_loop/run.rs`; a re-read is queued in ready-queue order); `write()` sends
//! at once when nothing is queued and buffers the rest; the protocol is paused
//! above the high-water mark. Edge-triggered readiness is made level-like: a
//! read that filled the buffer schedules another read next iteration, and
//! resuming reading schedules one, so nothing that arrived is left unread.
//!
//! A pipe transport (`ferroloop._pipes`) is this core over `StreamFd::Pipe`
//! in one direction ([`Dir`]), with asyncio's `_UnixReadPipeTransport` /
//! `_UnixWritePipeTransport` rules where they differ from a socket's: an
//! exception of `data_received` goes to the exception handler and reading
//! goes on; a write after `close()` is dropped and counted; a write pipe
//! watches its descriptor for reading, and readability there means the
//! reader went away (the Python half closes, with `BrokenPipeError` when
//! data was still buffered).
//!
//! Invariant: no `State` borrow is held across a call into Python.

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::{Interest, Readiness, StreamFd};
use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};

use super::flow::{self, FlowControl};
use super::write_buf::WriteBuffer;
use crate::capi::bytes::{as_bytes, recv_bytes, RawBuffer, Unsent};
use crate::capi::{context, exc};
use crate::errors::os_error;
use crate::gil_cell::GilCell;
use crate::pyimports;
use crate::reactor::{IoEvent, IoOps, IoRef, Reactor};

/// The most one read takes: asyncio's `max_size` (256 KiB), so a message up
/// to that size reaches `data_received` in one piece, as there.
const MAX_READ: usize = 256 * 1024;

/// glibc's malloc serves blocks above its mmap threshold (128 KiB at start)
/// with `mmap`, and hands memory back to the OS whenever the free top of the
/// heap exceeds twice that. Reads of 100 KiB and more then cost page faults
/// on every message: the server CPU per 100 KiB echo was 2.4x uvloop's with
/// 256 KiB reads (1.3x with 64 KiB reads), 0.93x once primed. glibc
/// raises both thresholds by itself the first time a block it mmapped is
/// freed (to that block's size, and twice it); we make it happen once, up
/// front, with a block of [`PRIME_BLOCK`]. Other allocators ignore it.
/// Every loop calls it when made (large `sock_recv`s benefit too).
pub(crate) fn prime_allocator() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let block: Vec<u8> = Vec::with_capacity(PRIME_BLOCK);
        // Keeps the optimiser from removing the allocation.
        std::hint::black_box(block.as_ptr());
    });
}

/// The block `prime_allocator` frees: glibc's mmap threshold becomes 16 MiB
/// and its trim threshold 32 MiB, what it sets by itself once a program
/// frees a 16 MiB block. Primed with 512 KiB (twice the largest read), a
/// program moving 8 MiB through a child's pipes (`communicate()`: the
/// reader's 64 KiB chunks, then their 8 MiB join) freed more than the trim
/// threshold at the top of the heap after each child, so the next one
/// faulted all of it in again: 5,000 page faults per child and half the
/// throughput (310 against 633 MB/s). The cost: up to 32 MiB of freed heap
/// stays mapped until reused. Below glibc's 32 MiB cap, which a larger
/// block would exceed without raising anything.
const PRIME_BLOCK: usize = 16 * 1024 * 1024;

/// From this size on, the next read goes straight into a new bytes object
/// (`recv_bytes`) instead of the loop's scratch buffer: copying that much
/// costs more than the large allocation shrunk to size that saves the copy.
const LARGE_READ: usize = 16 * 1024;

/// Which way the bytes go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Dir {
    /// A socket: both.
    Both,
    /// A read pipe.
    Read,
    /// A write pipe; `watch_peer`: readiness for reading means the reader
    /// closed (FIFOs and sockets, as asyncio watches them; not character
    /// devices).
    Write { watch_peer: bool },
}

/// A layer that takes the bytes a stream reads before any protocol sees
/// them (TLS: `transports/tls.rs`). The stream reads into the reactor's
/// scratch buffer and hands the layer the bytes; the layer then runs the
/// protocol itself. Function pointers, as `IoOps`, so this module never names
/// the layer's type; it is dropped whenever the protocol changes.
pub(crate) struct ReadFilter {
    pub(crate) obj: Py<PyAny>,
    pub(crate) ops: &'static FilterOps,
}

pub(crate) struct FilterOps {
    /// The bytes of one read (never empty).
    pub(crate) feed: for<'py> fn(&Bound<'py, PyAny>, &[u8]) -> PyResult<()>,
}

// The flags are asyncio's transport state, one each, named as there.
#[allow(clippy::struct_excessive_bools)]
struct State {
    dir: Dir,
    transport: Option<Py<PyAny>>,
    /// The protocol; its methods are looked up at each call, as asyncio
    /// does, so one replaced on the instance takes effect.
    protocol: Option<Py<PyAny>>,
    /// Whether the protocol is a `BufferedProtocol` (decided by `set_protocol`).
    buffered: bool,
    out: WriteBuffer,
    flow: FlowControl,
    started: bool,
    paused: bool,
    read_eof: bool,
    closing: bool,
    eof: bool,
    conn_lost: u32,
    registered: bool,
    /// A read is queued in the loop (avoids queueing two).
    read_queued: bool,
    /// `loop.sendfile()` owns the socket: `write()` is refused.
    sendfile: bool,
    /// The poller saw the peer close (or an error): keep reading until the
    /// end of stream shows, since no new edge will announce it. For a write
    /// pipe: the reader went away.
    peer_closed: bool,
    /// The last read brought at least `LARGE_READ` bytes.
    large_reads: bool,
    /// A layer under the protocol (TLS), fed every read.
    filter: Option<ReadFilter>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "StreamCore", frozen, weakref)]
pub(crate) struct StreamCore {
    /// The loop, for its exception handler (cold path).
    loop_: Py<PyAny>,
    reactor: Py<Reactor>,
    fd: RawFd,
    kind: StreamFd,
    dir: Dir,
    /// Protocol callbacks run in the context current when the transport was
    /// made, as asyncio's reader handle does.
    context: Py<PyAny>,
    st: GilCell<State>,
}

/// How the reactor and the ready queue call a stream.
static STREAM_OPS: IoOps = IoOps {
    wants: |obj, ev| {
        // SAFETY: an IoRef with these ops holds a StreamCore (`io_ref`).
        let core = unsafe { obj.cast_unchecked::<StreamCore>() };
        core.get().wants(obj.py(), ev)
    },
    run: |obj, event| {
        // SAFETY: as above.
        StreamCore::run_event_reporting(unsafe { obj.cast_unchecked::<StreamCore>() }, event)
    },
};

impl StreamCore {
    fn io_ref(slf: &Bound<'_, Self>) -> IoRef {
        IoRef::new(slf.clone().into_any().unbind(), &STREAM_OPS)
    }

    fn interest(&self) -> Interest {
        match self.dir {
            Dir::Both => Interest { read: true, write: true },
            Dir::Read => Interest { read: true, write: false },
            Dir::Write { watch_peer } => Interest { read: watch_peer, write: true },
        }
    }

    fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st.borrow(py).transport.as_ref().map(|t| t.bind(py).clone())
    }

    /// Runs one event from the ready queue, as asyncio's reader/writer
    /// handle runs `_read_ready`/`_write_ready`: an exception other than
    /// `SystemExit`/`KeyboardInterrupt` goes to the loop's exception handler
    /// (asyncio's `Handle._run`), never out of the run loop.
    pub(crate) fn run_event_reporting(slf: &Bound<'_, Self>, event: IoEvent) -> PyResult<()> {
        match Self::run_event(slf, event) {
            Err(err) if !crate::errors::is_exit(slf.py(), &err) => slf.get().report(slf.py(), err, event),
            res => res,
        }
    }

    /// Hands an exception that escaped an event to the loop's exception
    /// handler, with asyncio's message for its handle's callback: a closing
    /// transport has removed (cancelled) its reader and writer handles by
    /// then, whose callback asyncio shows as `None()`. The transport and
    /// protocol are named when still attached.
    fn report(&self, py: Python<'_>, err: PyErr, event: IoEvent) -> PyResult<()> {
        let (transport, protocol, closing) = {
            let st = self.st.borrow(py);
            let transport = st.transport.as_ref().map(|t| t.clone_ref(py));
            let protocol = st.protocol.as_ref().map(|p| p.clone_ref(py));
            (transport, protocol, st.closing || st.conn_lost > 0)
        };
        let callback = match (&transport, closing) {
            (Some(t), false) => {
                let name = t.bind(py).get_type().name()?;
                let method = match event {
                    IoEvent::Read => "_read_ready",
                    IoEvent::Write => "_write_ready",
                };
                format!("{name}.{method}")
            }
            _ => "None".to_owned(),
        };
        let context = pyo3::types::PyDict::new(py);
        context.set_item("message", format!("Exception in callback {callback}()"))?;
        let err = err.into_value(py).into_bound(py).into_any();
        context.set_item("exception", &err)?;
        if let Some(t) = transport {
            context.set_item("transport", t)?;
            context.set_item("protocol", protocol)?;
        }
        let handled = exc::handling(&err);
        self.loop_.bind(py).call_method1(pyo3::intern!(py, "call_exception_handler"), (context,))?;
        drop(handled);
        Ok(())
    }

    /// Runs one event from the ready queue, in the transport's context.
    fn run_event(slf: &Bound<'_, Self>, event: IoEvent) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let entered = context::enter(this.context.bind(py))?;
        let res = match event {
            IoEvent::Read => {
                this.st.borrow_mut(py).read_queued = false;
                match this.dir {
                    Dir::Write { .. } => this.on_peer_closed(py),
                    _ => Self::on_readable(slf),
                }
            }
            IoEvent::Write => this.on_writable(py),
        };
        drop(entered);
        res
    }

    /// Whether a readiness report should queue a read / a flush.
    fn wants(&self, py: Python<'_>, ev: &Readiness) -> (bool, bool) {
        let mut st = self.st.borrow_mut(py);
        let readable = if let Dir::Write { watch_peer } = self.dir {
            st.peer_closed |= watch_peer && ev.readable;
            st.peer_closed
        } else {
            st.peer_closed |= ev.closed;
            ev.readable
        };
        let writable = ev.writable;
        let read = readable && st.can_read() && !st.read_queued;
        if read {
            st.read_queued = true;
        }
        (read, writable && !st.out.is_empty() && st.conn_lost == 0)
    }

    fn queue_read(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        {
            let mut st = this.st.borrow_mut(py);
            if st.read_queued || !st.can_read() {
                return;
            }
            st.read_queued = true;
        }
        this.reactor.get().push(py, Self::io_ref(slf), IoEvent::Read);
    }

    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (protocol, buffered) = {
            let st = this.st.borrow(py);
            if !st.can_read() {
                return Ok(());
            }
            if let Some(filter) = &st.filter {
                let (obj, ops) = (filter.obj.clone_ref(py), filter.ops);
                drop(st);
                return Self::read_filtered(slf, obj.bind(py), ops);
            }
            match &st.protocol {
                Some(p) => (p.clone_ref(py), st.buffered),
                None => return Ok(()),
            }
        };
        if buffered {
            Self::read_buffered(slf, protocol.bind(py))
        } else {
            Self::read_plain(slf, protocol.bind(py))
        }
    }

    fn read_plain(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // A socket's large reads go straight into a bytes object.
        let (res, data) = if this.st.borrow(py).large_reads && this.kind == StreamFd::Socket {
            recv_bytes(py, this.fd, MAX_READ)?
        } else {
            let mut scratch = this.reactor.get().take_scratch(py);
            if scratch.len() < MAX_READ {
                scratch.resize(MAX_READ, 0);
            }
            let res = this.kind.read(this.fd, &mut scratch);
            let data = match &res {
                Ok(n) if *n > 0 => Some(PyBytes::new(py, &scratch[..*n])),
                _ => None,
            };
            this.reactor.get().put_scratch(py, scratch);
            (res, data)
        };
        if let Ok(n) = res {
            this.st.borrow_mut(py).large_reads = n >= LARGE_READ;
        }
        let deliver = |_| protocol.call_method1(pyo3::intern!(py, "data_received"), (data,)).map(drop);
        Self::after_read(slf, res, MAX_READ, deliver, "Fatal error: protocol.data_received() call failed.")
    }

    /// A read handed to the layer under the protocol; its errors are the
    /// protocol's `buffer_updated()` errors (the layer stands for it).
    fn read_filtered(slf: &Bound<'_, Self>, layer: &Bound<'_, PyAny>, ops: &FilterOps) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut scratch = this.reactor.get().take_scratch(py);
        if scratch.len() < MAX_READ {
            scratch.resize(MAX_READ, 0);
        }
        let res = this.kind.read(this.fd, &mut scratch);
        let deliver = |n: usize| (ops.feed)(layer, &scratch[..n]);
        let out = Self::after_read(
            slf,
            res,
            MAX_READ,
            deliver,
            "Fatal error: protocol.buffer_updated() call failed.",
        );
        this.reactor.get().put_scratch(py, scratch);
        out
    }

    /// Puts `filter` under the protocol (until the protocol changes).
    pub(crate) fn set_filter(&self, py: Python<'_>, filter: Option<ReadFilter>) {
        let old = std::mem::replace(&mut self.st.borrow_mut(py).filter, filter);
        drop(old);
    }

    fn read_buffered(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let obj = match protocol.call_method1(pyo3::intern!(py, "get_buffer"), (-1,)) {
            Ok(b) => b,
            Err(err) => return this.fatal(py, err, "Fatal error: protocol.get_buffer() call failed."),
        };
        let empty = || PyRuntimeError::new_err("get_buffer() returned an empty buffer");
        let mut buf = match RawBuffer::get(&obj, true) {
            Ok(v) if v.len() > 0 => v,
            Ok(_) => return this.fatal(py, empty(), "Fatal error: protocol.get_buffer() call failed."),
            // Not a writable buffer: asyncio's `len(buf)` check comes first,
            // then `recv_into` refuses it.
            Err(_) => {
                let err = match obj.len() {
                    Ok(0) => empty(),
                    Err(err) => err,
                    Ok(_) => {
                        let err = PyTypeError::new_err(format!(
                            "recv_into() argument 1 must be read-write bytes-like object, not {}",
                            obj.get_type().name()?
                        ));
                        return this.fatal(py, err, this.message("read"));
                    }
                };
                return this.fatal(py, err, "Fatal error: protocol.get_buffer() call failed.");
            }
        };
        let slice = buf.as_mut_slice();
        let capacity = slice.len();
        let res = this.kind.read(this.fd, slice);
        drop(buf);
        let deliver = |n: usize| protocol.call_method1(pyo3::intern!(py, "buffer_updated"), (n,)).map(drop);
        Self::after_read(slf, res, capacity, deliver, "Fatal error: protocol.buffer_updated() call failed.")
    }

    /// What follows a read of at most `capacity` bytes: the end of stream, or
    /// the protocol's callback `deliver(n)` (after queueing another read when
    /// more may be waiting), or the error.
    fn after_read(
        slf: &Bound<'_, Self>,
        res: io::Result<usize>,
        capacity: usize,
        deliver: impl FnOnce(usize) -> PyResult<()>,
        failed: &str,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        match res {
            Ok(0) => this.on_eof(py),
            Ok(n) => {
                if n == capacity || this.st.borrow(py).peer_closed {
                    // Maybe more is waiting (or the end of stream): read
                    // again next iteration, as level triggering would.
                    Self::queue_read(slf);
                }
                match deliver(n) {
                    // A read pipe's callback error reaches the exception
                    // handler from its handle, and reading goes on.
                    Err(err) if this.kind == StreamFd::Pipe => Err(err),
                    res => res.or_else(|err| this.fatal(py, err, failed)),
                }
            }
            Err(e) => Self::read_error(slf, &e),
        }
    }

    fn read_error(slf: &Bound<'_, Self>, e: &io::Error) -> PyResult<()> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(()),
            io::ErrorKind::Interrupted => {
                Self::queue_read(slf);
                Ok(())
            }
            _ => slf.get().fatal(slf.py(), os_error(e), slf.get().message("read")),
        }
    }

    fn on_eof(&self, py: Python<'_>) -> PyResult<()> {
        self.st.borrow_mut(py).read_eof = true;
        match self.transport(py) {
            Some(t) => pyimports::transport_on_eof(py)?.call1((t,)).map(drop),
            None => Ok(()),
        }
    }

    /// `write()` of a memoryview with no plain buffer (not C-contiguous):
    /// asyncio's checks pass it as any data, then its `send` raises the
    /// `BufferError`, a fatal write error. With data queued, asyncio's buffer
    /// refuses it at the call (a pipe's `bytearray +=`, a 3.10/3.11 socket's
    /// `bytearray.extend`, with their own `TypeError`); a 3.12+ socket queues
    /// it and meets the error when it flushes, which is reported here at once
    /// (docs/differences.md).
    #[cold]
    fn write_unviewable(&self, py: Python<'_>, data: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
        if !self.check_writable(py, data.len()? == 0)? {
            return Ok(());
        }
        let pipe = self.kind == StreamFd::Pipe;
        if !self.st.borrow(py).out.is_empty() && (pipe || py.version_info() < (3, 12)) {
            let buffer = PyByteArray::new(py, b"");
            let refused = if pipe {
                buffer.call_method1(pyo3::intern!(py, "__iadd__"), (data,))
            } else {
                buffer.call_method1(pyo3::intern!(py, "extend"), (data,))
            };
            return refused.map(drop);
        }
        self.fatal(py, err, self.message("write"))
    }

    /// asyncio's `_fatal_error`, in Python (cold path).
    fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if crate::errors::is_exit(py, &err) {
            return Err(err);
        }
        match self.transport(py) {
            Some(t) => {
                let fatal = pyimports::transport_fatal_error(py)?;
                exc::while_handling(py, err, |e| fatal.call1((t, e, message))).map(drop)
            }
            None => Ok(()),
        }
    }

    fn on_writable(&self, py: Python<'_>) -> PyResult<()> {
        {
            let st = self.st.borrow(py);
            if st.out.is_empty() || st.conn_lost > 0 {
                return Ok(());
            }
        }
        let res = self.flush(py);
        self.after_flush(py, res)
    }

    fn flush(&self, py: Python<'_>) -> io::Result<()> {
        self.st.borrow_mut(py).out.flush(py, self.kind, self.fd)
    }

    fn after_flush(&self, py: Python<'_>, res: io::Result<()>) -> PyResult<()> {
        if let Err(e) = res {
            let dropped = self.st.borrow_mut(py).out.clear();
            drop(dropped);
            return match self.transport(py) {
                Some(t) => {
                    let failed = pyimports::transport_write_failed(py)?;
                    exc::while_handling(py, os_error(&e), |e| failed.call1((t, e))).map(drop)
                }
                None => Ok(()),
            };
        }
        let Some(t) = self.transport(py) else { return Ok(()) };
        let (resume, protocol) = {
            let mut st = self.st.borrow_mut(py);
            let size = st.out.size();
            (st.flow.after_drain(size), st.protocol.as_ref().map(|p| p.clone_ref(py)))
        };
        if let (Some(signal), Some(protocol)) = (resume, protocol) {
            flow::signal_protocol(self.loop_.bind(py), &t, protocol.bind(py), signal)?;
        }
        // Drained: a closing transport loses its connection, a half-closed
        // one shuts down its side, `loop.sendfile()` may take over.
        let (empty, waiting) = {
            let st = self.st.borrow(py);
            (st.out.is_empty(), st.closing || st.eof || st.sendfile)
        };
        if empty && waiting {
            pyimports::transport_write_drained(py)?.call1((t,))?;
        }
        Ok(())
    }

    /// asyncio's `_maybe_pause_protocol`, after the buffer grew.
    fn maybe_pause_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let Some(t) = self.transport(py) else { return Ok(()) };
        let (pause, protocol) = {
            let mut st = self.st.borrow_mut(py);
            let size = st.out.size();
            (st.flow.after_grow(size), st.protocol.as_ref().map(|p| p.clone_ref(py)))
        };
        match (pause, protocol) {
            (Some(signal), Some(protocol)) => {
                flow::signal_protocol(self.loop_.bind(py), &t, protocol.bind(py), signal)
            }
            _ => Ok(()),
        }
    }

    /// Borrows the bytes of a bytes-like object without copying. `write()`
    /// takes only bytes, bytearray and memoryview (`typed`), of any format;
    /// `writelines()` any buffer, as asyncio's.
    fn with_bytes<R>(data: &Bound<'_, PyAny>, typed: bool, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
        if let Some(b) = as_bytes(data) {
            return Ok(f(b.as_bytes()));
        }
        if typed && !(data.is_instance_of::<PyByteArray>() || data.is_instance_of::<PyMemoryView>()) {
            let err = pyimports::write_type_error(data.py())?.call1((data,))?;
            return Err(PyErr::from_value(err));
        }
        let view = RawBuffer::get(data, false)?;
        Ok(f(view.as_slice()))
    }

    /// asyncio's checks at the top of `write()`, in its order; false when
    /// the data is to be dropped silently.
    fn check_writable(&self, py: Python<'_>, empty: bool) -> PyResult<bool> {
        let mut st = self.st.borrow_mut(py);
        if st.eof {
            return Err(PyRuntimeError::new_err("Cannot call write() after write_eof()"));
        }
        if st.sendfile {
            return Err(PyRuntimeError::new_err("unable to write; sendfile is in progress"));
        }
        if empty {
            return Ok(false);
        }
        let pipe = self.kind == StreamFd::Pipe;
        if st.conn_lost > 0 || (pipe && st.closing) {
            st.conn_lost += 1;
            let warn = st.conn_lost > 5;
            drop(st);
            if warn {
                pyimports::warn_send_after_lost(py)?.call1((pipe,))?;
            }
            return Ok(false);
        }
        Ok(true)
    }

    /// Appends to the buffer what `send` left of a write (the socket was
    /// full or data is queued), `head` bytes of it sent already, then pauses
    /// the protocol above the high-water mark.
    fn buffer_rest(&self, py: Python<'_>, chunk: Unsent, head: usize) -> PyResult<()> {
        self.st.borrow_mut(py).out.push(py, chunk, head);
        self.maybe_pause_protocol(py)
    }

    fn write_error(&self, py: Python<'_>, e: &io::Error) -> PyResult<()> {
        self.fatal(py, os_error(e), self.message("write"))
    }

    /// asyncio's message for a fatal read or write error of this kind.
    fn message(&self, what: &str) -> &'static str {
        match (self.kind, what) {
            (StreamFd::Pipe, "read") => "Fatal read error on pipe transport",
            (StreamFd::Pipe, _) => "Fatal write error on pipe transport",
            (StreamFd::Socket, "read") => "Fatal read error on socket transport",
            (StreamFd::Socket, _) => "Fatal write error on socket transport",
        }
    }

    /// A write pipe's reader went away: asyncio's `_read_ready` of a write
    /// pipe, in Python (once).
    fn on_peer_closed(&self, py: Python<'_>) -> PyResult<()> {
        if !self.st.borrow(py).can_read() {
            return Ok(());
        }
        self.on_eof(py)
    }
}

impl State {
    fn can_read(&self) -> bool {
        match self.dir {
            // A write pipe "reads" once: the news that its reader went away,
            // even while closing with data buffered.
            Dir::Write { .. } => self.started && self.peer_closed && !self.read_eof && self.conn_lost == 0,
            _ => self.started && !self.paused && !self.closing && !self.read_eof && self.conn_lost == 0,
        }
    }
}

#[pymethods]
impl StreamCore {
    /// The core of `transport`, a stream over `fd` (a socket, or a pipe when
    /// `pipe`), for `loop_`, whose reactor is `reactor`. A pipe goes one
    /// way: `direction` is "r" or "w" ("w+" watches for its reader closing).
    /// Protocol callbacks run in `context`, by default a copy of the current one.
    #[new]
    #[pyo3(signature = (loop_, reactor, transport, fd, pipe = false, direction = "rw", context = None))]
    fn new(
        loop_: Bound<'_, PyAny>,
        reactor: Bound<'_, Reactor>,
        transport: Bound<'_, PyAny>,
        fd: RawFd,
        pipe: bool,
        direction: &str,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let py = loop_.py();
        let dir = match direction {
            "rw" => Dir::Both,
            "r" => Dir::Read,
            "w" => Dir::Write { watch_peer: false },
            "w+" => Dir::Write { watch_peer: true },
            _ => return Err(pyo3::exceptions::PyValueError::new_err(format!("bad direction {direction:?}"))),
        };
        let reactor = reactor.unbind();
        let context = match context {
            Some(given) if !given.is_none() => given.unbind(),
            _ => context::copy_current(py)?.unbind(),
        };
        Ok(Self {
            loop_: loop_.unbind(),
            reactor,
            fd,
            kind: if pipe { StreamFd::Pipe } else { StreamFd::Socket },
            dir,
            context,
            st: GilCell::new(State {
                dir,
                transport: Some(transport.unbind()),
                protocol: None,
                buffered: false,
                out: WriteBuffer::default(),
                flow: FlowControl::default(),
                started: false,
                paused: false,
                read_eof: false,
                closing: false,
                eof: false,
                conn_lost: 0,
                registered: false,
                read_queued: false,
                sendfile: false,
                peer_closed: false,
                large_reads: false,
                filter: None,
            }),
        })
    }

    /// Joins the loop's poller; called once the Python transport is ready.
    fn attach(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.reactor
            .get()
            .register_io(py, this.fd, Self::io_ref(slf), this.interest())
            .map_err(|e| os_error(&e))?;
        this.st.borrow_mut(py).registered = true;
        Ok(())
    }

    /// Leaves the poller and drops the protocol (after `connection_lost`).
    fn detach(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        let (registered, dropped) = {
            let mut st = this.st.borrow_mut(py);
            let registered = std::mem::replace(&mut st.registered, false);
            let dropped = (st.protocol.take(), st.transport.take(), st.out.clear(), st.filter.take());
            (registered, dropped)
        };
        if registered {
            this.reactor.get().unregister_io(py, this.fd);
        }
        drop(dropped);
    }

    /// Starts reading (asyncio does it in a callback after `connection_made`).
    fn start_reading(slf: &Bound<'_, Self>) {
        slf.get().st.borrow_mut(slf.py()).started = true;
        Self::queue_read(slf);
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Bound<'_, PyAny>, buffered: bool) {
        let old = {
            let mut st = self.st.borrow_mut(py);
            st.buffered = buffered;
            (st.protocol.replace(protocol.unbind()), st.filter.take())
        };
        drop(old);
    }

    pub(crate) fn write(&self, py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<()> {
        if self.kind == StreamFd::Pipe
            && !(data.is_instance_of::<PyBytes>()
                || data.is_instance_of::<PyByteArray>()
                || data.is_instance_of::<PyMemoryView>())
        {
            // asyncio's pipe checks the type with an assert.
            return Err(pyo3::exceptions::PyAssertionError::new_err(data.repr()?.unbind()));
        }
        // What `send` left of `data` (to queue), or nothing (all went out,
        // or it is dropped), or an error.
        let unsent =
            match Self::with_bytes(&data, true, |bytes| -> PyResult<io::Result<Option<(Unsent, usize)>>> {
                if !self.check_writable(py, bytes.is_empty())? {
                    return Ok(Ok(None));
                }
                let sent = if self.st.borrow(py).out.is_empty() {
                    match self.kind.write(self.fd, bytes) {
                        Ok(n) if n == bytes.len() => return Ok(Ok(None)),
                        Ok(n) => n,
                        Err(e)
                            if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted) =>
                        {
                            0
                        }
                        Err(e) => return Ok(Err(e)),
                    }
                } else {
                    0
                };
                Ok(Ok(Some(Unsent::rest(&data, bytes, sent))))
            }) {
                Err(err) if err.is_instance_of::<PyBufferError>(py) => {
                    return self.write_unviewable(py, &data, err)
                }
                res => res??,
            };
        match unsent {
            Ok(Some((chunk, head))) => self.buffer_rest(py, chunk, head),
            Ok(None) => Ok(()),
            Err(e) => self.write_error(py, &e),
        }
    }

    /// asyncio 3.12+'s `writelines` after its `write_eof`/sendfile checks and
    /// its `if not list_of_data` (in Python): every item is taken as a buffer
    /// before any is queued, so a rejected call queues and sends nothing (a
    /// chunk left queued without a send that hit `EAGAIN` would never be
    /// flushed: the socket's write readiness is edge-triggered). The chunks
    /// go out with one gathered write when nothing was queued before.
    /// `rules_314` is 3.14's version: falsy items (`None`, empty buffers) are
    /// skipped, a lost connection counts the call as one write (and warns,
    /// as `write()`), and the protocol is paused above the high-water mark
    /// (3.12 and 3.13 do neither).
    #[pyo3(signature = (list_of_data, rules_314 = false))]
    fn writelines(&self, py: Python<'_>, list_of_data: Bound<'_, PyAny>, rules_314: bool) -> PyResult<()> {
        if rules_314 && self.st.borrow(py).conn_lost > 0 {
            self.check_writable(py, false)?;
            return Ok(());
        }
        let mut chunks = Vec::new();
        for item in list_of_data.try_iter()? {
            let item = item?;
            if rules_314 && !item.is_truthy()? {
                continue;
            }
            let chunk = match Self::with_bytes(&item, false, |bytes| Unsent::rest(&item, bytes, 0)) {
                Ok((chunk, _)) => chunk,
                // asyncio takes each item as `memoryview(data)`: its error.
                Err(err) => return Err(PyMemoryView::from(&item).err().unwrap_or(err)),
            };
            if !chunk.bytes(py).is_empty() {
                chunks.push(chunk);
            }
        }
        if chunks.is_empty() {
            return Ok(());
        }
        if self.st.borrow(py).conn_lost > 0 {
            // 3.12 and 3.13 neither count nor warn: they queue what is never sent.
            return Ok(());
        }
        let was_empty = {
            let mut st = self.st.borrow_mut(py);
            let was_empty = st.out.is_empty();
            for chunk in chunks {
                st.out.push(py, chunk, 0);
            }
            was_empty
        };
        if was_empty {
            if let Err(e) = self.flush(py) {
                let dropped = self.st.borrow_mut(py).out.clear();
                drop(dropped);
                return self.write_error(py, &e);
            }
        }
        if rules_314 {
            self.maybe_pause_protocol(py)?;
        }
        Ok(())
    }

    fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st.borrow(py).out.size()
    }

    /// `(low, high)`, as asyncio's `get_write_buffer_limits`.
    fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        self.st.borrow(py).flow.limits(py)
    }

    /// asyncio's `set_write_buffer_limits`: new marks, then the protocol is
    /// paused if the buffer is above the new high-water mark.
    #[pyo3(signature = (high = None, low = None))]
    fn set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let limits = flow::parse_limits(py, high, low)?;
        let old = self.st.borrow_mut(py).flow.set_limits(limits);
        drop(old);
        self.maybe_pause_protocol(py)
    }

    /// Whether the protocol was asked to pause writing (and not to resume).
    #[getter]
    fn protocol_paused(&self, py: Python<'_>) -> bool {
        self.st.borrow(py).flow.paused
    }

    fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.st.borrow(py);
        !st.paused && !st.closing
    }

    fn is_closing(&self, py: Python<'_>) -> bool {
        self.st.borrow(py).closing
    }

    fn pause_reading(&self, py: Python<'_>) -> bool {
        let mut st = self.st.borrow_mut(py);
        if st.paused || st.closing {
            return false;
        }
        st.paused = true;
        true
    }

    /// Resumes reading; on a closed loop it fails after marking the
    /// transport as reading, as asyncio's (its `_add_reader` raises).
    fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
        {
            let mut st = slf.get().st.borrow_mut(slf.py());
            if st.closing || !st.paused {
                return Ok(false);
            }
            st.paused = false;
        }
        slf.get().reactor.get().check_closed()?;
        Self::queue_read(slf);
        Ok(true)
    }

    /// Stops reading for good (`eof_received` asked to stay half-open).
    fn stop_reading(&self, py: Python<'_>) {
        self.st.borrow_mut(py).read_eof = true;
    }

    /// `close()`: marks closing; returns whether the buffer is empty (then
    /// the caller schedules `connection_lost`, and counts it lost).
    fn begin_close(&self, py: Python<'_>) -> Option<bool> {
        let mut st = self.st.borrow_mut(py);
        if st.closing {
            return None;
        }
        st.closing = true;
        let empty = st.out.is_empty();
        if empty {
            st.conn_lost += 1;
        }
        Some(empty)
    }

    /// `_force_close()`: drops the buffer, marks closing and lost; returns
    /// false if the connection was already lost.
    fn force_close(&self, py: Python<'_>) -> bool {
        let dropped = {
            let mut st = self.st.borrow_mut(py);
            if st.conn_lost > 0 {
                return false;
            }
            st.closing = true;
            st.conn_lost += 1;
            st.out.clear()
        };
        drop(dropped);
        true
    }

    /// `write_eof()`: returns whether to shut down now (nothing buffered).
    fn begin_eof(&self, py: Python<'_>) -> Option<bool> {
        let mut st = self.st.borrow_mut(py);
        if st.closing || st.eof {
            return None;
        }
        st.eof = true;
        Some(st.out.is_empty())
    }

    fn set_sendfile(&self, py: Python<'_>, active: bool) {
        self.st.borrow_mut(py).sendfile = active;
    }

    /// Leaves the poller while `loop.sendfile()` drives the socket itself.
    fn suspend(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        if std::mem::replace(&mut this.st.borrow_mut(py).registered, false) {
            this.reactor.get().unregister_io(py, this.fd);
        }
    }

    /// Rejoins the poller after `suspend`.
    fn resume(slf: &Bound<'_, Self>) -> PyResult<()> {
        let registered = slf.get().st.borrow(slf.py()).registered;
        if registered || slf.get().st.borrow(slf.py()).transport.is_none() {
            return Ok(());
        }
        Self::attach(slf)
    }

    #[getter]
    fn conn_lost(&self, py: Python<'_>) -> u32 {
        self.st.borrow(py).conn_lost
    }

    #[getter]
    fn eof(&self, py: Python<'_>) -> bool {
        self.st.borrow(py).eof
    }

    #[getter]
    fn writing(&self, py: Python<'_>) -> bool {
        !self.st.borrow(py).out.is_empty()
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.reactor)?;
        visit.call(&self.context)?;
        let Some(st) = self.st.try_borrow_for_gc() else { return Ok(()) };
        for obj in [&st.transport, &st.protocol].into_iter().flatten() {
            visit.call(obj)?;
        }
        if let Some(filter) = &st.filter {
            visit.call(&filter.obj)?;
        }
        st.flow.traverse(&visit)
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let dropped = {
                let mut st = self.st.borrow_mut(py);
                (st.transport.take(), st.protocol.take(), st.filter.take())
            };
            drop(dropped);
        });
    }
}
