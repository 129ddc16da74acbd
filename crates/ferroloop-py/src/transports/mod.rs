//! Transports implemented natively. Each Python-visible transport is a small
//! Python class (an `asyncio.Transport`, which a native type cannot subclass)
//! around a native core that owns the socket I/O, the buffers and the
//! protocol calls on the hot path.

pub(crate) mod stream;

use pyo3::prelude::*;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<stream::StreamCore>()
}
