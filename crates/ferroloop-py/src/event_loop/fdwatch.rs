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
use crate::callbacks::{new_handle, Handle};
use crate::errors::os_error;
use crate::pyimports::helper;

impl Watch {
    pub(super) fn interest(&self) -> Interest {
        Interest { read: self.reader.is_some(), write: self.writer.is_some() }
    }
}

fn token(fd: RawFd) -> usize {
    fd as usize + FD_TOKEN_BASE
}

/// asyncio's file-object-to-fd conversion, with its errors; `None` for a
/// number too large for an fd (any size: `remove_reader(2**70)` is simply not
/// registered, as in asyncio's selector).
fn to_fd(fileobj: &Bound<'_, PyAny>) -> PyResult<Option<RawFd>> {
    let fd = helper(fileobj.py(), "fileobj_to_fd")?.call1((fileobj,))?;
    Ok(fd.extract::<RawFd>().ok())
}

impl Loop {
    /// Removes the reader (or writer) of `fd` and returns its handle. When the
    /// other direction stays watched the kernel interest is changed; if that
    /// fails (the fd was closed) the fd is forgotten entirely and the error
    /// returned, as asyncio's selector does. Removed objects go to `dead`, to
    /// be dropped once the state borrow is released.
    pub(super) fn unwatch(
        &self,
        st: &mut State,
        fd: RawFd,
        reader: bool,
        dead: &mut Vec<Watch>,
    ) -> std::io::Result<Option<Py<Handle>>> {
        let Some(w) = st.watches.get_mut(&fd) else { return Ok(None) };
        let old = if reader { w.reader.take() } else { w.writer.take() };
        let interest = w.interest();
        if interest == Interest::default() {
            dead.extend(st.watches.remove(&fd));
            let _ = self.poller.deregister(fd);
        } else if let Err(e) = self.poller.rearm(fd, token(fd), interest) {
            dead.extend(st.watches.remove(&fd));
            dead.push(Watch { reader: old, writer: None });
            let _ = self.poller.deregister(fd);
            return Err(e);
        }
        Ok(old)
    }

    pub(super) fn watch(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
        reader: bool,
    ) -> PyResult<Py<Handle>> {
        let py = slf.py();
        let this = slf.get();
        this.check_closed()?;
        // asyncio's selector fails the same way registering it with epoll.
        let fd = to_fd(fileobj)?.ok_or_else(|| {
            pyo3::exceptions::PyOverflowError::new_err("Python int too large to convert to C int")
        })?;
        let handle = new_handle(py, Handle { core: Self::new_core(slf, callback, args, None, 0)? }, true)?;
        let result = handle.clone_ref(py);
        let mut dead = Vec::new();
        // A socket that sock_* calls parked on is handed over to the watcher.
        let parked = {
            let mut st = this.state.borrow_mut(py);
            this.release_sock(&mut st, fd)
        };
        drop(parked);
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
                // asyncio's selector forgets the fd when registering fails.
                dead.extend(st.watches.remove(&fd));
                if !fresh {
                    let _ = this.poller.deregister(fd);
                }
                drop(st);
                drop((dead, old));
                return Err(os_error(&e));
            }
            old
        };
        if let Some(old) = old {
            old.bind(py).call_method0(pyo3::intern!(py, "cancel"))?;
        }
        Ok(result)
    }

    pub(super) fn unwatch_py(
        slf: &Bound<'_, Self>,
        fileobj: &Bound<'_, PyAny>,
        reader: bool,
    ) -> PyResult<bool> {
        let py = slf.py();
        let this = slf.get();
        if this.closed.load(std::sync::atomic::Ordering::Relaxed) {
            return Ok(false);
        }
        let Some(fd) = to_fd(fileobj)? else { return Ok(false) };
        let mut dead = Vec::new();
        let res = {
            let mut st = this.state.borrow_mut(py);
            this.unwatch(&mut st, fd, reader, &mut dead)
        };
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
