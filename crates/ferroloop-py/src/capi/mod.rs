//! The CPython C API beyond what PyO3 wraps: the only place, with `bytes_io`,
//! that calls `pyo3::ffi` for object layout and allocation (the free lists of
//! the handle types).

pub(crate) mod freelist;
