//! Text as CPython makes it from the operating system's bytes.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::PyString;

use super::SsizeT;

/// `raw` decoded as CPython decodes a file name (`os.fsdecode`: the
/// file-system encoding, undecodable bytes as surrogates).
#[inline]
pub(crate) fn decode_fs<'py>(py: Python<'py>, raw: &[u8]) -> PyResult<Bound<'py, PyString>> {
    // SAFETY: `raw` is valid for its length; the call returns a new `str`
    // or NULL with an exception set.
    unsafe {
        Bound::from_owned_ptr_or_err(
            py,
            ffi::PyUnicode_DecodeFSDefaultAndSize(
                raw.as_ptr().cast(),
                SsizeT::try_from(raw.len()).unwrap_or(0),
            ),
        )
        .map(|s| s.cast_into_unchecked())
    }
}
