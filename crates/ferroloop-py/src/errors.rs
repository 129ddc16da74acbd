//! OS errors to Python exceptions, keeping errno.
//!
//! PyO3's own `From<io::Error>` picks a subclass but the message loses the
//! `(errno, strerror)` pair that asyncio code reads (`exc.errno`). Building
//! `OSError(errno, strerror)` lets CPython choose the subclass
//! (`ConnectionRefusedError`, `BrokenPipeError`, ...) exactly as `os` does.
//!
//! Also the one test of which errors leave the loop instead of reaching the
//! exception handler ([`is_exit`]).

use std::io;

use ferroloop_core::sys;
use pyo3::exceptions::{PyKeyboardInterrupt, PyOSError, PySystemExit};
use pyo3::{PyErr, Python};

pub(crate) fn os_error(err: &io::Error) -> PyErr {
    match err.raw_os_error() {
        Some(code) => PyOSError::new_err((code, sys::strerror(code))),
        None => PyOSError::new_err(err.to_string()),
    }
}

/// `SystemExit` and `KeyboardInterrupt` leave `run_forever`, as in asyncio;
/// every other error of a callback goes to the loop's exception handler.
pub(crate) fn is_exit(py: Python<'_>, err: &PyErr) -> bool {
    err.is_instance_of::<PyKeyboardInterrupt>(py) || err.is_instance_of::<PySystemExit>(py)
}
