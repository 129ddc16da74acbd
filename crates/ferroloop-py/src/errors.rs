//! OS errors to Python exceptions, keeping errno.
//!
//! PyO3's own `From<io::Error>` picks a subclass but the message loses the
//! `(errno, strerror)` pair that asyncio code reads (`exc.errno`). Building
//! `OSError(errno, strerror)` lets CPython choose the subclass
//! (`ConnectionRefusedError`, `BrokenPipeError`, ...) exactly as `os` does.

use std::io;

use ferroloop_core::sys;
use pyo3::exceptions::PyOSError;
use pyo3::PyErr;

pub(crate) fn os_error(err: &io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => PyOSError::new_err((code, sys::strerror(code))),
        None => PyOSError::new_err(err.to_string()),
    }
}
