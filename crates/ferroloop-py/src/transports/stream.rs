//! `StreamCore`: the native half of stream transports (TCP and Unix sockets;
//! pipes through the same code, over a [`StreamFd`]).
//!
//! Built on `base` (the transport state, the registration with the reactor,
//! event runs, closing, flow control and the methods every transport
//! shares). Owns: the reads (plain, buffered, through a `filter`), the write
//! buffer (`write_buf`), half-closing and the pipe rules. The Python class
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

use std::collections::VecDeque;
use std::io;
use std::os::fd::RawFd;

use ferroloop_core::{Interest, Readiness, StreamFd};
use pyo3::exceptions::{PyBufferError, PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyMemoryView};
use pyo3::{PyTraverseError, PyVisit};

use super::base::{self, Base, Kind, State, Transport};
use super::filter::ReadFilter;
use super::flow::FlowControl;
use super::write_buf::WriteBuffer;
use crate::capi::bytes::{as_bytes, recv_bytes, RawBuffer, Unsent};
use crate::capi::{context, exc};
use crate::errors::os_error;
use crate::pyimports;
use crate::reactor::{IoEvent, Reactor};

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

/// What a stream adds to asyncio's transport state (`base::State`).
// The flags are asyncio's transport state, one each, named as there.
#[allow(clippy::struct_excessive_bools)]
pub(super) struct Stream {
    dir: Dir,
    /// Whether the protocol is a `BufferedProtocol` (decided by `set_protocol`).
    buffered: bool,
    out: WriteBuffer,
    read_eof: bool,
    eof: bool,
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
    io: Base<Stream>,
    kind: StreamFd,
    dir: Dir,
}

/// A stream's rules: one-way pipes, half-closed sockets, a byte buffer.
impl Kind for Stream {
    type Dropped = (VecDeque<Unsent>, Option<ReadFilter>);

    /// A write pipe's readiness for reading means its reader went away;
    /// a socket's peer may have closed, which no later edge will announce.
    fn readable(st: &mut State<Self>, ev: &Readiness) -> bool {
        if let Dir::Write { watch_peer } = st.dir {
            st.peer_closed |= watch_peer && ev.readable;
            st.peer_closed
        } else {
            st.peer_closed |= ev.closed;
            ev.readable
        }
    }

    fn can_read(st: &State<Self>) -> bool {
        match st.dir {
            // A write pipe "reads" once: the news that its reader went away,
            // even while closing with data buffered.
            Dir::Write { .. } => st.started && st.peer_closed && !st.read_eof && st.conn_lost == 0,
            _ => st.started && !st.paused && !st.closing && !st.read_eof && st.conn_lost == 0,
        }
    }

    fn buffer_size(&self) -> usize {
        self.out.size()
    }

    fn buffer_empty(&self) -> bool {
        self.out.is_empty()
    }

    fn drop_unsent(&mut self) -> Self::Dropped {
        (self.out.clear(), None)
    }

    fn release(&mut self) -> Self::Dropped {
        (self.out.clear(), self.filter.take())
    }
}

/// How the loop's reactor calls a stream.
impl Transport for StreamCore {
    fn interest(&self) -> Interest {
        match self.dir {
            Dir::Both => Interest { read: true, write: true },
            Dir::Read => Interest { read: true, write: false },
            Dir::Write { watch_peer } => Interest { read: watch_peer, write: true },
        }
    }

    fn on_event(slf: &Bound<'_, Self>, event: IoEvent) -> PyResult<()> {
        let this = slf.get();
        match (event, this.dir) {
            (IoEvent::Read, Dir::Write { .. }) => this.on_peer_closed(slf.py()),
            (IoEvent::Read, _) => Self::on_readable(slf),
            (IoEvent::Write, _) => this.on_writable(slf.py()),
        }
    }
}

impl StreamCore {
    fn on_readable(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let (protocol, buffered) = {
            let st = this.io.st.borrow(py);
            if !st.can_read() {
                return Ok(());
            }
            if let Some(filter) = &st.filter {
                let filter = filter.clone_ref(py);
                drop(st);
                return Self::read_filtered(slf, &filter);
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
        let (res, data) = if this.io.st.borrow(py).large_reads && this.kind == StreamFd::Socket {
            recv_bytes(py, this.io.fd, MAX_READ)?
        } else {
            let mut scratch = this.io.reactor.get().take_scratch(py);
            if scratch.len() < MAX_READ {
                scratch.resize(MAX_READ, 0);
            }
            let res = this.kind.read(this.io.fd, &mut scratch);
            let data = match &res {
                Ok(n) if *n > 0 => Some(PyBytes::new(py, &scratch[..*n])),
                _ => None,
            };
            this.io.reactor.get().put_scratch(py, scratch);
            (res, data)
        };
        if let Ok(n) = res {
            this.io.st.borrow_mut(py).large_reads = n >= LARGE_READ;
        }
        let deliver = |_| protocol.call_method1(pyo3::intern!(py, "data_received"), (data,)).map(drop);
        Self::after_read(slf, res, MAX_READ, deliver, "Fatal error: protocol.data_received() call failed.")
    }

    /// A read handed to the layer under the protocol; its errors are the
    /// protocol's `buffer_updated()` errors (the layer stands for it).
    fn read_filtered(slf: &Bound<'_, Self>, filter: &ReadFilter) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut scratch = this.io.reactor.get().take_scratch(py);
        if scratch.len() < MAX_READ {
            scratch.resize(MAX_READ, 0);
        }
        let res = this.kind.read(this.io.fd, &mut scratch);
        let deliver = |n: usize| filter.feed(py, &scratch[..n]);
        let out = Self::after_read(
            slf,
            res,
            MAX_READ,
            deliver,
            "Fatal error: protocol.buffer_updated() call failed.",
        );
        this.io.reactor.get().put_scratch(py, scratch);
        out
    }

    /// Puts `filter` under the protocol (until the protocol changes).
    pub(crate) fn set_filter(&self, py: Python<'_>, filter: Option<ReadFilter>) {
        let old = std::mem::replace(&mut self.io.st.borrow_mut(py).filter, filter);
        drop(old);
    }

    fn read_buffered(slf: &Bound<'_, Self>, protocol: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let obj = match protocol.call_method1(pyo3::intern!(py, "get_buffer"), (-1,)) {
            Ok(b) => b,
            Err(err) => return this.io.fatal(py, err, "Fatal error: protocol.get_buffer() call failed."),
        };
        let empty = || PyRuntimeError::new_err("get_buffer() returned an empty buffer");
        let mut buf = match RawBuffer::get(&obj, true) {
            Ok(v) if v.len() > 0 => v,
            Ok(_) => return this.io.fatal(py, empty(), "Fatal error: protocol.get_buffer() call failed."),
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
                        return this.io.fatal(py, err, this.message("read"));
                    }
                };
                return this.io.fatal(py, err, "Fatal error: protocol.get_buffer() call failed.");
            }
        };
        let slice = buf.as_mut_slice();
        let capacity = slice.len();
        let res = this.kind.read(this.io.fd, slice);
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
                if n == capacity || this.io.st.borrow(py).peer_closed {
                    // Maybe more is waiting (or the end of stream): read
                    // again next iteration, as level triggering would.
                    base::queue(slf, IoEvent::Read);
                }
                match deliver(n) {
                    // A read pipe's callback error reaches the exception
                    // handler from its handle, and reading goes on.
                    Err(err) if this.kind == StreamFd::Pipe => Err(err),
                    res => res.or_else(|err| this.io.fatal(py, err, failed)),
                }
            }
            Err(e) => Self::read_error(slf, &e),
        }
    }

    fn read_error(slf: &Bound<'_, Self>, e: &io::Error) -> PyResult<()> {
        match e.kind() {
            io::ErrorKind::WouldBlock => Ok(()),
            io::ErrorKind::Interrupted => {
                base::queue(slf, IoEvent::Read);
                Ok(())
            }
            _ => slf.get().io.fatal(slf.py(), os_error(e), slf.get().message("read")),
        }
    }

    fn on_eof(&self, py: Python<'_>) -> PyResult<()> {
        self.io.st.borrow_mut(py).read_eof = true;
        match self.io.transport(py) {
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
        if !self.io.st.borrow(py).out.is_empty() && (pipe || py.version_info() < (3, 12)) {
            let buffer = PyByteArray::new(py, b"");
            let refused = if pipe {
                buffer.call_method1(pyo3::intern!(py, "__iadd__"), (data,))
            } else {
                buffer.call_method1(pyo3::intern!(py, "extend"), (data,))
            };
            return refused.map(drop);
        }
        self.io.fatal(py, err, self.message("write"))
    }

    fn on_writable(&self, py: Python<'_>) -> PyResult<()> {
        {
            let st = self.io.st.borrow(py);
            if st.out.is_empty() || st.conn_lost > 0 {
                return Ok(());
            }
        }
        let res = self.flush(py);
        self.after_flush(py, res)
    }

    fn flush(&self, py: Python<'_>) -> io::Result<()> {
        self.io.st.borrow_mut(py).out.flush(py, self.kind, self.io.fd)
    }

    fn after_flush(&self, py: Python<'_>, res: io::Result<()>) -> PyResult<()> {
        if let Err(e) = res {
            let dropped = self.io.st.borrow_mut(py).out.clear();
            drop(dropped);
            return match self.io.transport(py) {
                Some(t) => {
                    let failed = pyimports::transport_write_failed(py)?;
                    exc::while_handling(py, os_error(&e), |e| failed.call1((t, e))).map(drop)
                }
                None => Ok(()),
            };
        }
        let Some(t) = self.io.transport(py) else { return Ok(()) };
        self.io.signal_flow(py, &t, FlowControl::after_drain)?;
        // Drained: a closing transport loses its connection, a half-closed
        // one shuts down its side, `loop.sendfile()` may take over.
        let (empty, waiting) = {
            let st = self.io.st.borrow(py);
            (st.out.is_empty(), st.closing || st.eof || st.sendfile)
        };
        if empty && waiting {
            pyimports::transport_write_drained(py)?.call1((t,))?;
        }
        Ok(())
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
        let mut st = self.io.st.borrow_mut(py);
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
        self.io.st.borrow_mut(py).out.push(py, chunk, head);
        self.io.maybe_pause_protocol(py)
    }

    fn write_error(&self, py: Python<'_>, e: &io::Error) -> PyResult<()> {
        self.io.fatal(py, os_error(e), self.message("write"))
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
        if !self.io.st.borrow(py).can_read() {
            return Ok(());
        }
        self.on_eof(py)
    }
}

base::transport_methods!(StreamCore, Stream, "_write_ready", {
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
        let context = match context {
            Some(given) if !given.is_none() => given.unbind(),
            _ => context::copy_current(py)?.unbind(),
        };
        let own = Stream {
            dir,
            buffered: false,
            out: WriteBuffer::default(),
            read_eof: false,
            eof: false,
            sendfile: false,
            peer_closed: false,
            large_reads: false,
            filter: None,
        };
        let st = State::new(transport.unbind(), own);
        Ok(Self {
            io: Base::new(loop_, reactor, fd, context, st),
            kind: if pipe { StreamFd::Pipe } else { StreamFd::Socket },
            dir,
        })
    }

    fn set_protocol(&self, py: Python<'_>, protocol: Bound<'_, PyAny>, buffered: bool) {
        let old = {
            let mut st = self.io.st.borrow_mut(py);
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
                let sent = if self.io.st.borrow(py).out.is_empty() {
                    match self.kind.write(self.io.fd, bytes) {
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
        if rules_314 && self.io.st.borrow(py).conn_lost > 0 {
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
        if self.io.st.borrow(py).conn_lost > 0 {
            // 3.12 and 3.13 neither count nor warn: they queue what is never sent.
            return Ok(());
        }
        let was_empty = {
            let mut st = self.io.st.borrow_mut(py);
            let was_empty = st.out.is_empty();
            for chunk in chunks {
                st.out.push(py, chunk, 0);
            }
            was_empty
        };
        if was_empty {
            if let Err(e) = self.flush(py) {
                let dropped = self.io.st.borrow_mut(py).out.clear();
                drop(dropped);
                return self.write_error(py, &e);
            }
        }
        if rules_314 {
            self.io.maybe_pause_protocol(py)?;
        }
        Ok(())
    }

    /// Stops reading for good (`eof_received` asked to stay half-open).
    fn stop_reading(&self, py: Python<'_>) {
        self.io.st.borrow_mut(py).read_eof = true;
    }

    /// `write_eof()`: returns whether to shut down now (nothing buffered).
    fn begin_eof(&self, py: Python<'_>) -> Option<bool> {
        let mut st = self.io.st.borrow_mut(py);
        if st.closing || st.eof {
            return None;
        }
        st.eof = true;
        Some(st.out.is_empty())
    }

    fn set_sendfile(&self, py: Python<'_>, active: bool) {
        self.io.st.borrow_mut(py).sendfile = active;
    }

    /// Leaves the poller while `loop.sendfile()` drives the socket itself.
    fn suspend(slf: &Bound<'_, Self>) {
        let py = slf.py();
        let this = slf.get();
        if std::mem::replace(&mut this.io.st.borrow_mut(py).registered, false) {
            this.io.reactor.get().unregister_io(py, this.io.fd);
        }
    }

    /// Rejoins the poller after `suspend`.
    fn resume(slf: &Bound<'_, Self>) -> PyResult<()> {
        let registered = slf.get().io.st.borrow(slf.py()).registered;
        if registered || slf.get().io.st.borrow(slf.py()).transport.is_none() {
            return Ok(());
        }
        base::attach(slf)
    }

    #[getter]
    fn eof(&self, py: Python<'_>) -> bool {
        self.io.st.borrow(py).eof
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        self.io.traverse(&visit)?;
        let Some(st) = self.io.st.try_borrow_for_gc() else { return Ok(()) };
        st.filter.as_ref().map_or(Ok(()), |filter| filter.traverse(&visit))
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let dropped = {
                let mut st = self.io.st.borrow_mut(py);
                (st.transport.take(), st.protocol.take(), st.filter.take())
            };
            drop(dropped);
        });
    }
});
