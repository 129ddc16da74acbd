//! Write flow control: asyncio's `_FlowControlMixin`, shared by every native
//! transport.
//!
//! A transport whose write buffer grows above the high-water mark asks its
//! protocol to `pause_writing()`, once; when the buffer drains to the low-water
//! mark or below, `resume_writing()`, once. The marks default to 64 KiB and a
//! quarter of it; `set_write_buffer_limits(high, low)` derives a missing one
//! from the other as asyncio does (`high = 4 * low`, `low = high // 4`, with
//! Python's arithmetic, so a float stays a float) and refuses anything but
//! `high >= low >= 0`. A protocol callback that raises goes to the loop's
//! exception handler, with asyncio's message.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;
use pyo3::{PyTraverseError, PyVisit};

use crate::capi::exc;

const DEFAULT_HIGH: usize = 64 * 1024;

/// The marks, as numbers to compare with and as the objects given (which
/// `get_write_buffer_limits` returns); `None` objects are the defaults.
pub(crate) struct FlowControl {
    high: f64,
    low: f64,
    given: Option<(Py<PyAny>, Py<PyAny>)>,
    /// The protocol was asked to pause writing and not yet to resume.
    pub(crate) paused: bool,
}

/// What the transport should tell its protocol now.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum FlowSignal {
    Pause,
    Resume,
}

impl FlowSignal {
    fn method(self) -> &'static str {
        match self {
            FlowSignal::Pause => "pause_writing",
            FlowSignal::Resume => "resume_writing",
        }
    }
}

impl Default for FlowControl {
    fn default() -> Self {
        #[allow(clippy::cast_precision_loss)] // 64 KiB is exact in an f64
        Self { high: DEFAULT_HIGH as f64, low: (DEFAULT_HIGH / 4) as f64, given: None, paused: false }
    }
}

impl FlowControl {
    /// After the buffer grew to `size`: whether to pause the protocol.
    #[allow(clippy::cast_precision_loss)] // sizes below 2**53 compare exactly
    pub(crate) fn after_grow(&mut self, size: usize) -> Option<FlowSignal> {
        if self.paused || size as f64 <= self.high {
            return None;
        }
        self.paused = true;
        Some(FlowSignal::Pause)
    }

    /// After the buffer shrank to `size`: whether to resume the protocol.
    #[allow(clippy::cast_precision_loss)]
    pub(crate) fn after_drain(&mut self, size: usize) -> Option<FlowSignal> {
        if !self.paused || size as f64 > self.low {
            return None;
        }
        self.paused = false;
        Some(FlowSignal::Resume)
    }

    /// `(low, high)` as given (asyncio's order).
    pub(crate) fn limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        match &self.given {
            Some((high, low)) => Ok((low.clone_ref(py), high.clone_ref(py))),
            None => Ok((
                (DEFAULT_HIGH / 4).into_pyobject(py)?.into_any().unbind(),
                DEFAULT_HIGH.into_pyobject(py)?.into_any().unbind(),
            )),
        }
    }

    /// Takes new marks (from [`parse_limits`]); returns the objects
    /// replaced, for the caller to drop.
    pub(crate) fn set_limits(&mut self, limits: Limits) -> Option<(Py<PyAny>, Py<PyAny>)> {
        self.high = limits.high_f;
        self.low = limits.low_f;
        self.given.replace((limits.high, limits.low))
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some((high, low)) = &self.given {
            visit.call(high)?;
            visit.call(low)?;
        }
        Ok(())
    }
}

/// New marks, checked.
pub(crate) struct Limits {
    high: Py<PyAny>,
    low: Py<PyAny>,
    high_f: f64,
    low_f: f64,
}

/// asyncio's `_set_write_buffer_limits`: both marks from what
/// `set_write_buffer_limits` was given, or its `ValueError`. Runs Python
/// code (the arithmetic and comparisons of the objects given): call it with
/// no borrow held.
pub(crate) fn parse_limits(
    py: Python<'_>,
    high: Option<Bound<'_, PyAny>>,
    low: Option<Bound<'_, PyAny>>,
) -> PyResult<Limits> {
    let high = match (high, &low) {
        (Some(high), _) => high,
        (None, Some(low)) => 4_i32.into_pyobject(py)?.into_any().mul(low)?,
        (None, None) => DEFAULT_HIGH.into_pyobject(py)?.into_any(),
    };
    let low = match low {
        Some(low) => low,
        None => high.floor_div(4)?,
    };
    if !(high.ge(&low)? && low.ge(0)?) {
        return Err(PyValueError::new_err(format!(
            "high ({}) must be >= low ({}) must be >= 0",
            high.repr()?,
            low.repr()?
        )));
    }
    let (high_f, low_f) = (high.extract::<f64>()?, low.extract::<f64>()?);
    Ok(Limits { high: high.unbind(), low: low.unbind(), high_f, low_f })
}

/// Tells `protocol` to pause or resume writing; an exception other than
/// `SystemExit`/`KeyboardInterrupt` goes to `loop_`'s exception handler, as
/// asyncio's `_maybe_pause_protocol`/`_maybe_resume_protocol` do.
pub(crate) fn signal_protocol(
    loop_: &Bound<'_, PyAny>,
    transport: &Bound<'_, PyAny>,
    protocol: &Bound<'_, PyAny>,
    signal: FlowSignal,
) -> PyResult<()> {
    let py = loop_.py();
    let Err(err) = protocol.call_method0(signal.method()) else { return Ok(()) };
    if crate::errors::is_exit(py, &err) {
        return Err(err);
    }
    let context = PyDict::new(py);
    context.set_item("message", format!("protocol.{}() failed", signal.method()))?;
    let err = err.into_value(py).into_bound(py).into_any();
    context.set_item("exception", &err)?;
    context.set_item("transport", transport)?;
    context.set_item("protocol", protocol)?;
    let handled = exc::handling(&err);
    loop_.call_method1(pyo3::intern!(py, "call_exception_handler"), (context,))?;
    drop(handled);
    Ok(())
}
