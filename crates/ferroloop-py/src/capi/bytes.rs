//! Bytes between sockets and Python without needless copies: reading
//! straight into a new `bytes` object, and keeping unsent outgoing data.
//!
//! Used by the stream transports, the datagram transports and the native
//! `sock_*` operations.

use std::io;
use std::os::fd::RawFd;

use ferroloop_core::net;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

// CPython's own resize of a fresh bytes object (what `socket.recv` uses).
// PyO3 0.29 stopped exposing its binding; CPython exports the function on
// every version we build for.
unsafe extern "C" {
    fn _PyBytes_Resize(bytes: *mut *mut ffi::PyObject, newsize: ffi::Py_ssize_t) -> std::ffi::c_int;
}

/// Receives up to `max` bytes into a new bytes object, then shrinks it to
/// what came, as CPython's `socket.recv` does: no scratch buffer to copy
/// from and no zero-filling. The object is None at the end of stream or on
/// an error (the second element of the result says which).
pub(crate) fn recv_bytes(
    py: Python<'_>,
    fd: RawFd,
    max: usize,
) -> PyResult<(io::Result<usize>, Option<Bound<'_, PyBytes>>)> {
    recv_bytes_with(py, max, |buf| net::recv(fd, buf))
}

/// `recv_bytes` with another receiving call (`recvfrom`...).
pub(crate) fn recv_bytes_with(
    py: Python<'_>,
    max: usize,
    recv: impl FnOnce(&mut [u8]) -> io::Result<usize>,
) -> PyResult<(io::Result<usize>, Option<Bound<'_, PyBytes>>)> {
    let size = isize::try_from(max)
        .map_err(|_| pyo3::exceptions::PyOverflowError::new_err("buffer size too large"))?;
    // SAFETY: a null source makes an uninitialised bytes object of `size`
    // bytes (or NULL with an exception set); it is ours alone until
    // returned, so writing into it and resizing it are sound.
    unsafe {
        let mut obj = ffi::PyBytes_FromStringAndSize(std::ptr::null(), size);
        if obj.is_null() {
            return Err(PyErr::fetch(py));
        }
        let buf = std::slice::from_raw_parts_mut(ffi::PyBytes_AsString(obj).cast::<u8>(), max);
        let res = recv(buf);
        match res {
            Ok(n) if n > 0 => {
                // n <= max, which fits in Py_ssize_t (above). On failure
                // _PyBytes_Resize frees the object and sets the error.
                #[allow(clippy::cast_possible_wrap)]
                if n < max && _PyBytes_Resize(&raw mut obj, n as isize) < 0 {
                    return Err(PyErr::fetch(py));
                }
                Ok((res, Some(Bound::from_owned_ptr(py, obj).cast_into_unchecked())))
            }
            _ => {
                ffi::Py_DECREF(obj);
                Ok((res, None))
            }
        }
    }
}

/// `obj` as a `bytes` object, if it is one. Unlike `cast`, a miss costs
/// only the type check: `cast`'s error holds a new reference to the type.
pub(crate) fn as_bytes<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> Option<&'a Bound<'py, PyBytes>> {
    if obj.is_instance_of::<PyBytes>() {
        // SAFETY: checked just above.
        Some(unsafe { obj.cast_unchecked() })
    } else {
        None
    }
}

/// Outgoing data the socket has not taken yet. `bytes` cannot change, so it
/// is kept by reference (asyncio copies every write into one bytearray); a
/// bytearray, memoryview or other buffer can, so what is left of it is
/// copied.
pub(crate) enum Unsent {
    Copied(Vec<u8>),
    Shared(Py<PyBytes>),
}

impl Unsent {
    /// What is left of `data`, whose contents are `bytes`, after its first
    /// `sent` bytes went out, and how many bytes at the front of the result
    /// count as sent already (`sent` for a kept `bytes`, 0 for a copy).
    pub(crate) fn rest(data: &Bound<'_, PyAny>, bytes: &[u8], sent: usize) -> (Self, usize) {
        match as_bytes(data) {
            Some(b) => (Self::Shared(b.clone().unbind()), sent),
            None => (Self::Copied(bytes[sent..].to_vec()), 0),
        }
    }

    pub(crate) fn bytes<'a>(&'a self, py: Python<'_>) -> &'a [u8] {
        match self {
            Self::Copied(v) => v,
            Self::Shared(b) => b.as_bytes(py),
        }
    }
}

/// A buffer seen as plain bytes, whatever its format (`array('i')`, a
/// memoryview cast to `'I'`...), as CPython's socket methods see it: asked
/// with `PyBUF_SIMPLE` (or `PyBUF_WRITABLE`), so the exporter hands out its
/// bytes only when they are C-contiguous. PyO3's `PyBuffer<u8>` would refuse
/// every format but bytes.
pub(crate) struct RawBuffer {
    /// Boxed: the exporter may point into the struct, so it must not move.
    view: Box<ffi::Py_buffer>,
}

impl RawBuffer {
    /// The bytes of `obj`, writable ones if `writable` (else the exporter's
    /// `BufferError`/`TypeError` is returned).
    pub(crate) fn get(obj: &Bound<'_, PyAny>, writable: bool) -> PyResult<Self> {
        let mut view = Box::new(ffi::Py_buffer::new());
        let flags = if writable { ffi::PyBUF_WRITABLE } else { ffi::PyBUF_SIMPLE };
        // SAFETY: `obj` is a live object and `view` a valid, writable
        // Py_buffer; on success it holds a reference released in Drop.
        if unsafe { ffi::PyObject_GetBuffer(obj.as_ptr(), &raw mut *view, flags) } < 0 {
            return Err(PyErr::fetch(obj.py()));
        }
        Ok(Self { view })
    }

    /// The length in bytes.
    pub(crate) fn len(&self) -> usize {
        usize::try_from(self.view.len).unwrap_or(0)
    }

    pub(crate) fn readonly(&self) -> bool {
        self.view.readonly != 0
    }

    pub(crate) fn as_slice(&self) -> &[u8] {
        if self.len() == 0 || self.view.buf.is_null() {
            return &[];
        }
        // SAFETY: a simple buffer is `len` contiguous bytes at `buf`, kept
        // alive by the view until it is released in Drop.
        unsafe { std::slice::from_raw_parts(self.view.buf.cast::<u8>(), self.len()) }
    }

    /// The bytes to write into; empty for a read-only buffer.
    pub(crate) fn as_mut_slice(&mut self) -> &mut [u8] {
        if self.len() == 0 || self.view.buf.is_null() || self.readonly() {
            return &mut [];
        }
        // SAFETY: as in `as_slice`, and the exporter granted write access
        // (not read-only); `&mut self` makes this the only slice of it here.
        unsafe { std::slice::from_raw_parts_mut(self.view.buf.cast::<u8>(), self.len()) }
    }
}

impl Drop for RawBuffer {
    fn drop(&mut self) {
        Python::attach(|_| {
            // SAFETY: the view was filled by a successful PyObject_GetBuffer
            // and is released exactly once, with the GIL held.
            unsafe { ffi::PyBuffer_Release(&raw mut *self.view) };
        });
    }
}

/// A `memoryview` over `len` bytes at `ptr`, read-only or writable, with no
/// copy and no exporter behind it (`PyMemoryView_FromMemory`).
///
/// # Safety
/// The bytes stay valid (and, for a writable view, unaliased) for as long as
/// the view is used, and the caller passes the view only to C functions that
/// use the buffer during the call and keep no reference to it (the `_ssl`
/// module's `MemoryBIO.write` and `_SSLSocket.read`): the view itself may
/// outlive the bytes only while nothing reads through it.
pub(crate) unsafe fn memoryview_over(
    py: Python<'_>,
    ptr: *mut u8,
    len: usize,
    writable: bool,
) -> PyResult<Bound<'_, PyAny>> {
    let size =
        isize::try_from(len).map_err(|_| pyo3::exceptions::PyOverflowError::new_err("buffer too large"))?;
    let flags = if writable { ffi::PyBUF_WRITE } else { ffi::PyBUF_READ };
    // SAFETY: the caller's guarantees; a new reference or NULL with an
    // exception set.
    unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyMemoryView_FromMemory(ptr.cast(), size, flags)) }
}
