//! The C `Task`'s own callbacks, queued without a handle object.
//!
//! CPython's C `Task` schedules each of its steps with
//! `loop.call_soon(step, context=ctx)` and each wake-up with
//! `loop.call_soon(wakeup, fut, context=ctx)`, and drops the handle it gets
//! back unread (`_asynciomodule.c`, `call_soon`). Those two callables are
//! private to CPython (`task_kinds` recognises them): for them the loop queues
//! the callback itself and gives back `None` instead of building, and then
//! freeing, a `Handle` that nobody reads: two of the three objects a task step
//! used to cost.
//!
//! Not in debug mode: there, every callback gets a handle, which records where
//! it was made and is named in slow-callback warnings.

use pyo3::prelude::*;
use pyo3::types::PyTuple;
use pyo3::{PyTraverseError, PyVisit};

use super::handles::{call_in_exact_context, new_handle, Handle, HandleCore};
use super::task_kinds::task_of;
use crate::capi::call::vectorcall_opt;
use crate::capi::exc;
use crate::errors::is_exit;
use crate::gil_cell::GilPy;
use crate::pyimports::report_callback_error;

/// A queued C `Task` callback: what its handle would have held.
pub(crate) struct TaskCall {
    callback: GilPy<PyAny>,
    arg: Option<GilPy<PyAny>>,
    /// Always an exact `contextvars.Context` (checked when queued).
    context: GilPy<PyAny>,
}

impl TaskCall {
    pub(crate) fn new(
        callback: Bound<'_, PyAny>,
        arg: Option<Bound<'_, PyAny>>,
        context: Bound<'_, PyAny>,
    ) -> Self {
        Self {
            callback: GilPy::new(callback.unbind()),
            arg: arg.map(|a| GilPy::new(a.unbind())),
            context: GilPy::new(context.unbind()),
        }
    }

    /// Runs the callback in its context. An exception other than
    /// `KeyboardInterrupt`/`SystemExit` goes to the loop's exception handler
    /// with a handle made for the report, as for any callback.
    pub(crate) fn run(&self, loop_: &Bound<'_, PyAny>) -> PyResult<()> {
        let py = loop_.py();
        let arg = self.arg.as_ref().map(|a| a.bind_borrowed(py));
        // The context is an exact Context (checked when queued).
        let out =
            call_in_exact_context(self.context.bind(py), || vectorcall_opt(self.callback.bind(py), arg));
        match out {
            Ok(()) => Ok(()),
            Err(err) if is_exit(py, &err) => Err(err),
            Err(err) => self.report(loop_, err),
        }
    }

    fn report(&self, loop_: &Bound<'_, PyAny>, err: PyErr) -> PyResult<()> {
        let py = loop_.py();
        let callback = self.callback.bind(py).clone();
        let args = match &self.arg {
            Some(a) => PyTuple::new(py, [a.bind(py)])?,
            None => PyTuple::empty(py),
        };
        let context = Some(self.context.bind(py).clone());
        let core = HandleCore::new(loop_, callback.clone(), args.clone(), context, None)?;
        let handle = new_handle(py, Handle { core }, true)?;
        let report = report_callback_error(py)?;
        exc::while_handling(py, err, |e| report.call1((handle, callback, args, e)))?;
        Ok(())
    }

    /// The task this step or wake-up belongs to (see [`task_of`]).
    pub(crate) fn task<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        task_of(self.callback.bind(py))
    }

    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&*self.callback)?;
        if let Some(a) = &self.arg {
            visit.call(&**a)?;
        }
        visit.call(&*self.context)
    }
}
