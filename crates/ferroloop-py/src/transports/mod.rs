//! Transports implemented natively. Each Python-visible transport is a small
//! Python class (an `asyncio.Transport`, which a native type cannot subclass)
//! around a native core that owns the I/O, the buffers and the protocol calls
//! on the hot path.
//!
//! Parts every transport shares: `base` (asyncio's transport state, event
//! runs and their error reports, closing, flow checks and the Python-visible
//! methods they answer alike), write flow control (`flow`) and the write
//! buffer (`write_buf`); `stream` is the stream core over a socket or a pipe,
//! `datagram` the core of UDP and `AF_UNIX` datagram sockets, both built on
//! `base`; `filter` is the layer a stream may read through; `subprocess`
//! watches a child's exit through its pidfd; `tls` does the per-record work
//! of TLS over a stream (the stream's read filter).
//! A transport registers with the reactor as an `IoOwner` and is called
//! back through its `IoRef`: it never names the loop.

mod base;
pub(crate) mod datagram;
pub(crate) mod filter;
pub(crate) mod flow;
pub(crate) mod stream;
pub(crate) mod subprocess;
pub(crate) mod tls;
pub(crate) mod write_buf;

use pyo3::prelude::*;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<stream::StreamCore>()?;
    m.add_class::<subprocess::ChildWatch>()?;
    m.add_class::<tls::TlsPump>()?;
    m.add_class::<datagram::DatagramCore>()
}
