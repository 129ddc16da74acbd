//! `add_reader`/`add_writer`/`remove_reader`/`remove_writer`.
//!
//! One `Watch` per fd holds the reader and writer handles; the poller interest
//! follows which are set. Semantics are asyncio's selector loop: adding a
//! second reader replaces (and cancels) the first; removing returns whether a
//! callback was registered; a watched fd that stays ready is reported every
//! iteration (level-triggered, by re-arming in `run`).

use std::os::fd::RawFd;

use ferroloop_core::Interest;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::{Loop, State, Watch, FD_TOKEN_BASE};
use crate::errors::os_error;
use crate::handles::Handle;
use crate::pyimports::helper;

impl Watch {
    pub(super) fn interest(&self) -> Interest {
        Interest { read: self.reader.is_some(), write: self.writer.is_some() }
    }
}

fn token(fd: RawFd) -> usize {
    fd as usize + FD_TOKEN_BASE
}

/// asyncio's file-object-to-fd conversion, with its errors.
fn to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<RawFd> {
    helper(fileobj.py(), "fileobj_to_fd")?.call1((fileobj,))?.extract()
}

impl Loop {
    /// Removes the reader (or writer) of `fd`; returns its handle for the
    /// caller to cancel and drop outside the borrow.
    pub(super) fn unwatch(&self, st: &mut State, fd: RawFd, reader: bool) -> Option<Py<Handle>> {
        let w = st.watches.get_mut(&fd)?;
        let old = if reader { w.reader.take() } else { w.writer.take() };
        let interest = w.interest();
        if interest == Interest::default() {
            st.watches.remove(&fd);
            let _ = self.poller.deregister(fd);
        } else {
            let _ = self.poller.rearm(fd, token(fd), interest);
        }
        old
    }

    fn watch(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        reader: bool,
    ) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        let fd = to_fd(fileobj)?;
        let handle =
            Py::new(py, Handle { core: Self::new_core(slf, callback, args, None)?, reusable: true })?;
        let old = {
            let mut st = this.state.borrow_mut(py);
            let fresh = !st.watches.contains_key(&fd);
            let w = st.watches.entry(fd).or_default();
            let old = if reader { w.reader.replace(handle) } else { w.writer.replace(handle) };
            let interest = w.interest();
            let res = if fresh {
                this.poller.register(fd, token(fd), interest)
            } else {
                this.poller.rearm(fd, token(fd), interest)
            };
            if let Err(e) = res {
                let undone = if fresh { st.watches.remove(&fd) } else { None };
                drop(st);
                drop(undone);
                return Err(os_error(&e));
            }
            old
        };
        if let Some(old) = old {
            old.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
        }
        Ok(())
    }

    fn unwatch_py(slf: &Bound<'_, Self>, fileobj: &Bound<'_, PyAny>, reader: bool) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        let fd = to_fd(fileobj)?;
        let old = {
            let mut st = this.state.borrow_mut(py);
            this.unwatch(&mut st, fd, reader)
        };
        match old {
            Some(h) => {
                h.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
                Ok(true)
            }
            None => Ok(false),
        }
    }
}

#[pymethods]
impl Loop {
    #[pyo3(signature = (fd, callback, *args))]
    fn add_reader(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::watch(slf, &fd, callback, args, true)
    }

    fn remove_reader(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_py(slf, &fd, true)
    }

    #[pyo3(signature = (fd, callback, *args))]
    fn add_writer(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        Self::watch(slf, &fd, callback, args, false)
    }

    fn remove_writer(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_py(slf, &fd, false)
    }
}
