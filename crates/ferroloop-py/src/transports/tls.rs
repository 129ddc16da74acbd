//! `TlsPump`: the per-record work of a TLS connection over a native stream
//! (`ferroloop._tls`), between the socket and asyncio's `SSLProtocol`.
//!
//! Owns: the bound C methods of the connection's `ssl.MemoryBIO`s and of the
//! `_ssl._SSLSocket` under its `ssl.SSLObject`, a record tracker, and the
//! buffer decrypted records go through. It is the stream's read filter
//! (`stream::ReadFilter`): every read goes into the incoming BIO with one
//! `write` of a view over the loop's read buffer.
//!
//! Must not: hold TLS state of its own. asyncio's protocol object is the one
//! truth (its state, pause flags, water marks, backlog); the pump reads it at
//! each step and takes the steady-state path only where asyncio's code would
//! do exactly that path: application data in the `WRAPPED` state, reading not
//! paused, nothing queued. Every other step calls asyncio's own method
//! (through `pyimports`), so the semantics are the running Python's.
//!
//! Why it is faster than asyncio's Python: no `SSLWantReadError` at the end of
//! every batch (OpenSSL is asked for plaintext only when the incoming BIO
//! holds more than the unfinished record at its end, or OpenSSL has
//! decrypted bytes pending: the tracker follows the 5-byte record headers,
//! RFC 8446 section 5.1); no `bytes` per socket read; records decrypted into
//! one reused buffer and delivered as one `bytes`; writes encrypted and sent
//! without Python frames.
//!
//! Invariant: no `State` borrow is held across a call into Python; views
//! over Rust memory are passed only to the `_ssl` C methods, which use them
//! during the call and keep no reference (`capi::bytes::memoryview_over`).

use pyo3::exceptions::PyException;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyString, PyWeakrefReference};
use pyo3::{PyTraverseError, PyVisit};

use super::filter::{ReadFilter, ReadLayer};
use super::stream::StreamCore;
use crate::capi::bytes::{memoryview_over, RawBuffer};
use crate::capi::exc;
use crate::gil_cell::GilCell;
use crate::pyimports;

/// Room asked of each decrypting read: one TLS record's plaintext at most
/// (2^14 bytes, RFC 8446 section 5.1) plus slack.
const RECORD_ROOM: usize = 16 * 1024 + 1024;

/// A decrypt buffer grown past this is given back after its batch.
const KEEP_PLAIN: usize = 1024 * 1024;

/// The largest record a peer may send (ciphertext: 2^14 + 2048, RFC 5246
/// section 6.2.3); a header announcing more is not TLS.
const MAX_RECORD: usize = (1 << 14) + 2048;

/// Where the bytes fed so far stand in the record stream.
#[derive(Default)]
struct Records {
    header: [u8; 5],
    /// Header bytes of the current record seen (0 to 5).
    have: usize,
    /// Its length, once the header is whole.
    len: usize,
    /// Its body bytes still to come.
    left: usize,
    /// The bytes do not parse as TLS records (a peer speaking something
    /// else): OpenSSL is always asked, and says what is wrong.
    lost: bool,
}

impl Records {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() && !self.lost {
            if self.have < 5 {
                let take = (5 - self.have).min(data.len());
                self.header[self.have..self.have + take].copy_from_slice(&data[..take]);
                self.have += take;
                data = &data[take..];
                if self.have == 5 {
                    let [kind, major, _, hi, lo] = self.header;
                    self.len = usize::from(u16::from_be_bytes([hi, lo]));
                    self.left = self.len;
                    self.lost = !(20..=24).contains(&kind) || major != 3 || self.len > MAX_RECORD;
                    if self.left == 0 {
                        self.have = 0;
                    }
                }
            } else {
                let take = self.left.min(data.len());
                self.left -= take;
                data = &data[take..];
                if self.left == 0 {
                    self.have = 0;
                }
            }
        }
    }

    /// Bytes of the unfinished record at the end of what was fed.
    fn partial(&self) -> usize {
        if self.lost {
            0
        } else if self.have < 5 {
            self.have
        } else {
            5 + self.len - self.left
        }
    }
}

struct State {
    records: Records,
    /// Decrypted bytes of the current batch (reused).
    plain: Vec<u8>,
    /// The stream under the connection, while attached.
    core: Option<Py<StreamCore>>,
    /// asyncio's `SSLProtocol` (ferroloop's subclass), until the
    /// connection is lost: then the pump lets go of it, so that no cycle
    /// outlives the connection (asyncio's own objects free by reference
    /// counting alone, and its tests check that a context is released).
    protocol: Option<(Py<PyAny>, Py<PyDict>)>,
}

impl State {
    fn protocol<'py>(&self, py: Python<'py>) -> Option<Proto<'py>> {
        self.protocol
            .as_ref()
            .map(|(obj, fields)| Proto { obj: obj.bind(py).clone(), fields: fields.bind(py).clone() })
    }
}

#[pyclass(module = "ferroloop._ferroloop", name = "TlsPump", frozen)]
pub(crate) struct TlsPump {
    /// The protocol's application-side transport (`write()` is this
    /// pump's), by weak reference: it holds the pump.
    app_transport: Py<PyWeakrefReference>,
    incoming: Py<PyAny>,
    outgoing: Py<PyAny>,
    incoming_write: Py<PyAny>,
    outgoing_read: Py<PyAny>,
    ssl_read: Py<PyAny>,
    ssl_write: Py<PyAny>,
    ssl_pending: Py<PyAny>,
    /// The protocol's `_write_backlog` deque (made once, never replaced).
    backlog: Py<PyAny>,
    /// `SSLProtocolState.WRAPPED`.
    wrapped: Py<PyAny>,
    st: GilCell<State>,
}

/// The pump stands under the stream's protocol: every read is fed to it.
impl ReadLayer for TlsPump {
    fn feed(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()> {
        slf.get().feed(slf.py(), data)
    }
}

/// The items of a list or tuple of `bytes`/`bytearray`, joined into one
/// `bytes`; None for anything else.
fn join_bytes<'py>(items: &Bound<'py, PyAny>) -> PyResult<Option<Bound<'py, PyAny>>> {
    let py = items.py();
    let seq = if let Ok(list) = items.cast::<pyo3::types::PyList>() {
        list.as_sequence().clone()
    } else if let Ok(tuple) = items.cast::<pyo3::types::PyTuple>() {
        tuple.as_sequence().clone()
    } else {
        return Ok(None);
    };
    let mut joined = Vec::new();
    for item in seq.try_iter()? {
        let item = item?;
        if let Ok(b) = item.cast::<PyBytes>() {
            joined.extend_from_slice(b.as_bytes());
        } else if let Ok(b) = item.cast::<PyByteArray>() {
            joined.extend_from_slice(&b.to_vec());
        } else {
            return Ok(None);
        }
    }
    Ok(Some(PyBytes::new(py, &joined).into_any()))
}

/// The bytes waiting in an `ssl.MemoryBIO` (its `pending`).
fn bio_pending(bio: &Bound<'_, PyAny>) -> PyResult<usize> {
    bio.getattr(pyo3::intern!(bio.py(), "pending"))?.extract()
}

/// The instance dictionary of asyncio's protocol object.
fn fields_of(protocol: &Bound<'_, PyAny>) -> PyResult<Py<PyDict>> {
    Ok(protocol.getattr(pyo3::intern!(protocol.py(), "__dict__"))?.cast_into::<PyDict>()?.unbind())
}

/// Whether `err` is OpenSSL asking for more bytes (asyncio's `SSLAgainErrors`).
fn is_again(py: Python<'_>, err: &PyErr) -> PyResult<bool> {
    Ok(err.is_instance(py, pyimports::ssl_want_read(py)?)
        || err.is_instance(py, pyimports::ssl_want_write(py)?))
}

/// asyncio's protocol, with its instance dictionary: its state and flags
/// are plain instance attributes, read from the dictionary (a lookup by an
/// interned name) rather than through the type's attribute machinery.
struct Proto<'py> {
    obj: Bound<'py, PyAny>,
    fields: Bound<'py, PyDict>,
}

impl<'py> Proto<'py> {
    fn get(&self, name: &Bound<'py, PyString>) -> PyResult<Bound<'py, PyAny>> {
        match self.fields.get_item(name)? {
            Some(value) => Ok(value),
            None => self.obj.getattr(name),
        }
    }

    fn is_true(&self, name: &Bound<'py, PyString>) -> PyResult<bool> {
        self.get(name)?.is_truthy()
    }

    fn int(&self, name: &Bound<'py, PyString>) -> PyResult<isize> {
        self.get(name)?.extract()
    }
}

impl TlsPump {
    /// One socket read: into the incoming BIO, then asyncio's next step.
    fn feed(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        // SAFETY: `data` outlives the call, and `MemoryBIO.write` copies it.
        let view = unsafe { memoryview_over(py, data.as_ptr().cast_mut(), data.len(), false)? };
        self.incoming_write.bind(py).call1((view,))?;
        let proto = {
            let mut st = self.st.borrow_mut(py);
            st.records.feed(data);
            match st.protocol(py) {
                Some(p) => p,
                None => return Ok(()),
            }
        };
        let proto = &proto;
        let steady = proto.get(pyo3::intern!(py, "_state"))?.is(self.wrapped.bind(py))
            && !proto.is_true(pyo3::intern!(py, "_app_reading_paused"))?;
        if !steady {
            return pyimports::tls_after_feed(py)?.call1((&proto.obj,)).map(drop);
        }
        let res = if proto.is_true(pyo3::intern!(py, "_app_protocol_is_buffer"))? {
            self.read_into_app(py, proto)
        } else {
            self.read_records(py, proto)
        };
        match res {
            Ok(()) => Ok(()),
            Err(err) if err.is_instance_of::<PyException>(py) => {
                let fatal = pyimports::tls_fatal(py)?;
                exc::while_handling(py, err, |e| fatal.call1((&proto.obj, e))).map(drop)
            }
            Err(err) => Err(err),
        }
    }

    /// Whether OpenSSL has something to give: a whole record in the BIO, or
    /// plaintext it decrypted already. `after_read`: OpenSSL just returned
    /// a record's plaintext; with the BIO empty too, the record stream is at
    /// a boundary, which puts the tracker back in step (bytes written into
    /// the BIO by others, as asyncio's `start_tls` does with what a
    /// `StreamReader` had buffered, left it unsure until then).
    fn more(&self, py: Python<'_>, after_read: bool) -> PyResult<bool> {
        let pending = bio_pending(self.incoming.bind(py))?;
        {
            let mut st = self.st.borrow_mut(py);
            if after_read && pending == 0 {
                st.records = Records::default();
            }
            if pending > st.records.partial() {
                return Ok(true);
            }
        }
        Ok(self.ssl_pending.bind(py).call0()?.extract::<usize>()? > 0)
    }

    /// asyncio's `_do_read` with `_do_read__copied`, in the steady state.
    fn read_records<'py>(&self, py: Python<'py>, proto: &Proto<'py>) -> PyResult<()> {
        let mut plain = std::mem::take(&mut self.st.borrow_mut(py).plain);
        plain.clear();
        let mut close_notify = false;
        let mut failed = None;
        let mut after_read = false;
        while self.more(py, after_read)? {
            after_read = true;
            plain.reserve(RECORD_ROOM);
            let room = plain.capacity() - plain.len();
            // SAFETY: the spare capacity of `plain`, which nothing else
            // touches during the call; `_SSLSocket.read` writes at most
            // `room` bytes into it and keeps no reference to the view.
            let res = unsafe {
                let view = memoryview_over(py, plain.as_mut_ptr().add(plain.len()), room, true)?;
                self.ssl_read.bind(py).call1((room, view))
            };
            match res.and_then(|n| n.extract::<usize>()) {
                Ok(0) => {
                    close_notify = true;
                    break;
                }
                // SAFETY: OpenSSL wrote `n <= room` bytes after the length.
                Ok(n) => unsafe { plain.set_len(plain.len() + n.min(room)) },
                Err(err) if is_again(py, &err)? => break,
                Err(err) => {
                    failed = Some(err);
                    break;
                }
            }
        }
        let data = (!plain.is_empty() && failed.is_none()).then(|| PyBytes::new(py, &plain));
        if plain.capacity() > KEEP_PLAIN {
            plain = Vec::new();
        }
        self.st.borrow_mut(py).plain = plain;
        if let Some(err) = failed {
            return Err(err);
        }
        if let Some(data) = data {
            let app = proto.get(pyo3::intern!(py, "_app_protocol"))?;
            app.call_method1(pyo3::intern!(py, "data_received"), (data,))?;
        }
        if close_notify || !self.quiet_after_read(py, proto)? {
            return pyimports::tls_finish_read(py)?.call1((&proto.obj, close_notify)).map(drop);
        }
        Ok(())
    }

    /// asyncio's `_do_read` with `_do_read__buffered`, in the steady state:
    /// records decrypted straight into the `BufferedProtocol`'s buffer, its
    /// `get_buffer` called once per read as there. OpenSSL is asked only when
    /// it has something to give, where asyncio's read would raise
    /// `SSLWantReadError` and end the batch the same way.
    fn read_into_app<'py>(&self, py: Python<'py>, proto: &Proto<'py>) -> PyResult<()> {
        let size = bio_pending(self.incoming.bind(py))?;
        let buf = proto.get(pyo3::intern!(py, "_app_protocol_get_buffer"))?.call1((size,))?;
        let wants = buf.len()?;
        let mut view = RawBuffer::get(&buf, true)?;
        let target = view.as_mut_slice();
        let wants = wants.min(target.len());
        let mut offset = 0;
        let mut count = 1;
        let mut full = false;
        let mut after_read = false;
        while self.more(py, after_read)? {
            after_read = true;
            // SAFETY: `target` (the application's buffer, held by `view`
            // for the call) has `wants - offset` bytes from `offset`; the C
            // read writes at most that many and keeps no reference.
            let res = unsafe {
                let part = memoryview_over(py, target.as_mut_ptr().add(offset), wants - offset, true)?;
                self.ssl_read.bind(py).call1((wants - offset, part))
            };
            match res.and_then(|n| n.extract::<usize>()) {
                Ok(0) => {
                    count = 0;
                    break;
                }
                Ok(n) => {
                    offset += n;
                    if offset >= wants {
                        full = true;
                        break;
                    }
                }
                Err(err) if is_again(py, &err)? => break,
                Err(err) => return Err(err),
            }
        }
        drop(view);
        if full {
            // The buffer is full: asyncio reads on in a later callback.
            pyimports::tls_schedule_read(py)?.call1((&proto.obj,))?;
        }
        if offset > 0 {
            proto.get(pyo3::intern!(py, "_app_protocol_buffer_updated"))?.call1((offset,))?;
        }
        let close_notify = count == 0;
        if close_notify || !self.quiet_after_read(py, proto)? {
            return pyimports::tls_finish_read(py)?.call1((&proto.obj, close_notify)).map(drop);
        }
        Ok(())
    }

    /// Whether the rest of asyncio's `_do_read` would do nothing: no queued
    /// application data or TLS output, the application's writing neither to
    /// pause nor to resume, the socket's reading neither.
    fn quiet_after_read<'py>(&self, py: Python<'py>, proto: &Proto<'py>) -> PyResult<bool> {
        if self.backlog.bind(py).len()? > 0
            || bio_pending(self.outgoing.bind(py))? > 0
            || proto.is_true(pyo3::intern!(py, "_app_writing_paused"))?
            || proto.int(pyo3::intern!(py, "_outgoing_high_water"))? <= 0
        {
            return Ok(false);
        }
        let size = isize::try_from(bio_pending(self.incoming.bind(py))?).unwrap_or(isize::MAX);
        let paused = proto.is_true(pyo3::intern!(py, "_ssl_reading_paused"))?;
        Ok(if paused {
            size > proto.int(pyo3::intern!(py, "_incoming_low_water"))?
        } else {
            size < proto.int(pyo3::intern!(py, "_incoming_high_water"))?
        })
    }

    /// The steady-state `write()`: asyncio's `_write_appdata` for one chunk
    /// that OpenSSL takes whole, then `_process_outgoing`. `Ok(false)`: not
    /// the steady state, asyncio's method is to run instead.
    fn write_now(&self, py: Python<'_>, data: &Bound<'_, PyAny>) -> PyResult<bool> {
        let proto = self.st.borrow(py).protocol(py);
        let Some(proto) = proto else { return Ok(false) };
        let proto = &proto;
        let len = if let Ok(b) = data.cast::<PyBytes>() {
            b.as_bytes().len()
        } else if let Ok(b) = data.cast::<PyByteArray>() {
            b.len()
        } else {
            return Ok(false);
        };
        let core = self.st.borrow(py).core.as_ref().map(|c| c.clone_ref(py));
        let Some(core) = core else { return Ok(false) };
        if len == 0
            || !proto.get(pyo3::intern!(py, "_state"))?.is(self.wrapped.bind(py))
            || self.backlog.bind(py).len()? > 0
            || proto.is_true(pyo3::intern!(py, "_ssl_writing_paused"))?
        {
            return Ok(false);
        }
        let res = self.ssl_write.bind(py).call1((data,)).and_then(|n| n.extract::<usize>());
        let taken = match res {
            Ok(n) => n,
            Err(err) if is_again(py, &err)? => 0,
            Err(err) => return self.fail(py, &proto.obj, err).map(|()| true),
        };
        if taken < len {
            pyimports::tls_write_rest(py)?.call1((&proto.obj, data, taken))?;
            return Ok(true);
        }
        let out = self.outgoing_read.bind(py).call0()?;
        if out.len()? > 0 {
            if let Err(err) = core.get().write(py, out) {
                return self.fail(py, &proto.obj, err).map(|()| true);
            }
        }
        if proto.is_true(pyo3::intern!(py, "_app_writing_paused"))?
            || proto.int(pyo3::intern!(py, "_outgoing_high_water"))? <= 0
        {
            pyimports::tls_control_app_writing(py)?.call1((&proto.obj,))?;
        }
        Ok(true)
    }

    /// asyncio's `except Exception: self._fatal_error(...)` around a step.
    fn fail(&self, py: Python<'_>, proto: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
        if err.is_instance_of::<PyException>(py) {
            let fatal = pyimports::tls_fatal(py)?;
            exc::while_handling(py, err, |e| fatal.call1((proto, e))).map(drop)
        } else {
            Err(err)
        }
    }
}

#[pymethods]
impl TlsPump {
    /// The pump of `protocol` (asyncio's `SSLProtocol`), whose BIOs are
    /// `incoming` and `outgoing`, whose `ssl.SSLObject` wraps `sslobj` (the
    /// C object), whose write backlog is `backlog`; `wrapped` is
    /// `SSLProtocolState.WRAPPED`.
    #[new]
    #[allow(clippy::too_many_arguments)]
    fn new(
        protocol: Bound<'_, PyAny>,
        incoming: Bound<'_, PyAny>,
        outgoing: Bound<'_, PyAny>,
        sslobj: Bound<'_, PyAny>,
        backlog: Bound<'_, PyAny>,
        wrapped: Bound<'_, PyAny>,
        app_transport: Bound<'_, PyAny>,
    ) -> PyResult<Self> {
        let py = protocol.py();
        let fields = fields_of(&protocol)?;
        Ok(Self {
            incoming_write: incoming.getattr(pyo3::intern!(py, "write"))?.unbind(),
            outgoing_read: outgoing.getattr(pyo3::intern!(py, "read"))?.unbind(),
            ssl_read: sslobj.getattr(pyo3::intern!(py, "read"))?.unbind(),
            ssl_write: sslobj.getattr(pyo3::intern!(py, "write"))?.unbind(),
            ssl_pending: sslobj.getattr(pyo3::intern!(py, "pending"))?.unbind(),
            app_transport: PyWeakrefReference::new(&app_transport)?.unbind(),
            incoming: incoming.unbind(),
            outgoing: outgoing.unbind(),
            backlog: backlog.unbind(),
            wrapped: wrapped.unbind(),
            st: GilCell::new(State {
                records: Records::default(),
                plain: Vec::new(),
                core: None,
                protocol: Some((protocol.clone().unbind(), fields)),
            }),
        })
    }

    /// Becomes the read filter of `core`, the connection's stream.
    fn attach(slf: &Bound<'_, Self>, core: Bound<'_, StreamCore>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        // Bytes already in the BIO did not pass the tracker (asyncio's
        // `start_tls` moves what a `StreamReader` had buffered there): it
        // cannot know where their records end until OpenSSL drains the BIO.
        let pending = bio_pending(this.incoming.bind(py))?;
        core.get().set_filter(py, Some(ReadFilter::of(slf.clone().unbind())));
        let old = {
            let mut st = this.st.borrow_mut(py);
            st.records.lost |= pending > 0;
            st.core.replace(core.unbind())
        };
        drop(old);
        Ok(())
    }

    /// Leaves the stream and the protocol (the connection is lost).
    fn detach(&self, py: Python<'_>) {
        let (core, protocol) = {
            let mut st = self.st.borrow_mut(py);
            (st.core.take(), st.protocol.take())
        };
        if let Some(core) = core {
            core.get().set_filter(py, None);
        }
        drop(protocol);
    }

    /// The TLS transport's `write()`.
    fn write(&self, py: Python<'_>, data: Bound<'_, PyAny>) -> PyResult<()> {
        if self.write_now(py, &data)? {
            return Ok(());
        }
        match self.app_transport.bind(py).upgrade() {
            Some(app) => pyimports::tls_write_slow(py)?.call1((app, data)).map(drop),
            // Only a `write` taken from the transport before it was freed.
            None => Ok(()),
        }
    }

    /// The TLS transport's `writelines()`: a list or tuple of `bytes` and
    /// `bytearray` is encrypted as one piece (fewer, fuller records); the
    /// rest is asyncio's method.
    fn writelines(&self, py: Python<'_>, list_of_data: Bound<'_, PyAny>) -> PyResult<()> {
        if let Some(joined) = join_bytes(&list_of_data)? {
            if self.write_now(py, &joined)? {
                return Ok(());
            }
        }
        match self.app_transport.bind(py).upgrade() {
            Some(app) => pyimports::tls_writelines_slow(py)?.call1((app, list_of_data)).map(drop),
            None => Ok(()),
        }
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.backlog)?;
        if let Some(st) = self.st.try_borrow_for_gc() {
            if let Some(core) = &st.core {
                visit.call(core)?;
            }
            if let Some((protocol, fields)) = &st.protocol {
                visit.call(protocol)?;
                visit.call(fields)?;
            }
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| {
            let dropped = {
                let mut st = self.st.borrow_mut(py);
                (st.core.take(), st.protocol.take())
            };
            drop(dropped);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::Records;

    #[test]
    fn records_track_the_unfinished_one() {
        let mut r = Records::default();
        r.feed(&[23, 3, 3]);
        assert_eq!(r.partial(), 3);
        r.feed(&[0, 4, 1, 2]);
        assert_eq!(r.partial(), 7);
        r.feed(&[3, 4, 22, 3, 3, 0]);
        assert_eq!(r.partial(), 4);
        r.feed(&[1]);
        assert_eq!(r.partial(), 5);
        r.feed(&[9, 21, 3]);
        assert_eq!(r.partial(), 2);
        assert!(!r.lost);
        let mut bad = Records::default();
        bad.feed(b"GET / HTTP/1.1\r\n");
        assert!(bad.lost);
        assert_eq!(bad.partial(), 0);
    }
}
