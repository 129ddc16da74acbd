//! `ReadFilter`: a layer that takes the bytes a stream reads before any
//! protocol sees them (TLS: `tls.rs`). The stream reads into the reactor's
//! scratch buffer and hands the layer the bytes; the layer then runs the
//! protocol itself. The filter holds the layer's object and its type's entry
//! point, so the stream core never names the layer's type.
//!
//! Invariant: a filter's entry point is always its object's type's (the
//! fields are private, and [`ReadFilter::of`] is the one way to make one).

use pyo3::prelude::*;
use pyo3::{PyClass, PyTraverseError, PyVisit};

/// A type that can stand under a stream's protocol.
pub(crate) trait ReadLayer: PyClass {
    /// The bytes of one read (never empty).
    fn feed(slf: &Bound<'_, Self>, data: &[u8]) -> PyResult<()>;
}

pub(crate) struct ReadFilter {
    obj: Py<PyAny>,
    feed: fn(&Bound<'_, PyAny>, &[u8]) -> PyResult<()>,
}

impl ReadFilter {
    pub(crate) fn of<T: ReadLayer>(obj: Py<T>) -> Self {
        Self { obj: obj.into_any(), feed: feed_of::<T> }
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        Self { obj: self.obj.clone_ref(py), feed: self.feed }
    }

    /// Hands the layer the bytes of one read.
    pub(crate) fn feed(&self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        (self.feed)(self.obj.bind(py), data)
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.obj)
    }
}

fn feed_of<T: ReadLayer>(obj: &Bound<'_, PyAny>, data: &[u8]) -> PyResult<()> {
    // SAFETY: `feed_of::<T>` is stored only by `ReadFilter::of::<T>`, beside
    // the `Py<T>` it was given (the fields are private to this module and
    // `clone_ref` copies both), so `obj` is an instance of `T`.
    T::feed(unsafe { obj.cast_unchecked::<T>() }, data)
}
