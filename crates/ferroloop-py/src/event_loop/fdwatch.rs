//! `add_reader`/`add_writer`/`remove_reader`/`remove_writer`.
//!
//! The reactor holds one `Watch` per fd (reader and writer handles); the
//! poller interest follows which are set. Semantics are asyncio's selector
//! loop: adding a second reader replaces (and cancels) the first; removing
//! returns whether a callback was registered; a watched fd that stays ready is
//! reported every iteration (level-triggered: the reactor re-arms it).

use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::Loop;
use crate::callbacks::{new_handle, Handle};
use crate::errors::os_error;
use crate::pyimports::fileobj_to_fd;
use crate::reactor::IoEvent;

/// asyncio's file-object-to-fd conversion, with its errors; `None` for a
/// number too large for an fd (any size: `remove_reader(2**70)` is simply not
/// registered, as in asyncio's selector).
fn to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
    let fd = fileobj_to_fd(fileobj.py())?.call1((fileobj,))?;
    Ok(fd.extract::<RawFd>().ok())
}

impl Loop {
    pub(super) fn watch(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
        side: IoEvent,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        // asyncio's selector fails the same way registering it with epoll.
        let fd = to_fd(fileobj)?.ok_or_else(|| {
            pyo3::exceptions::PyOverflowError::new_err("Python int too large to convert to C int")
        })?;
        let handle = new_handle(py, Handle { core: Self::new_core(slf, callback, args, context, 0)? }, true)?;
        let result = handle.clone_ref(py);
        // A socket that sock_* calls parked on is handed over to the watcher.
        let mut dead = Vec::new();
        let res = this.reactor().watch(py, fd, side, handle, &mut dead);
        drop(dead);
        if let Some(old) = res.map_err(|e| os_error(&e))? {
            old.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
        }
        Ok(result)
    }

    pub(super) fn unwatch_py(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        side: IoEvent,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.reactor().is_closed() {
            return Ok(false);
        }
        let Some(fd) = to_fd(fileobj)? else { return Ok(false) };
        let mut dead = Vec::new();
        let res = this.reactor().unwatch(py, fd, side, &mut dead);
        drop(dead);
        match res {
            Ok(Some(h)) => {
                h.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
                Ok(true)
            }
            Ok(None) => Ok(false),
            Err(e) => Err(os_error(&e)),
        }
    }
}

/// asyncio's private `_add_reader` family, which the Python layer's public
/// methods (`_net.py`) and asyncio's own transports call.
#[pymethods]
impl Loop {
    /// asyncio's `_add_reader`: no transport check (the Python layer's
    /// `add_reader` makes it); returns the new handle. `context` (3.15's
    /// transports pass theirs) is the one the callback runs in.
    #[pyo3(signature = (fd, callback, *args, context=None))]
    fn _add_reader(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::watch(slf, &fd, callback, args, context, IoEvent::Read)
    }

    fn _remove_reader(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_py(slf, &fd, IoEvent::Read)
    }

    #[pyo3(signature = (fd, callback, *args, context=None))]
    fn _add_writer(
        slf: &Bound<'_, Self>,
        fd: Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        context: Option<Bound<'_, PyAny>>,
    ) -> PyResult<Py<Handle>> {
        Self::watch(slf, &fd, callback, args, context, IoEvent::Write)
    }

    fn _remove_writer(slf: &Bound<'_, Self>, fd: Bound<'_, PyAny>) -> PyResult<bool> {
        Self::unwatch_py(slf, &fd, IoEvent::Write)
    }

    /// The events an fd is watched for, as a `selectors` mask (1 read,
    /// 2 write), or None when it is not watched: for transport reprs.
    fn _fd_events(slf: &Bound<'_, Self>, fd: i64) -> Option<u8> {
        slf.get().reactor().watched_events(slf.py(), RawFd::try_from(fd).ok()?)
    }
}
