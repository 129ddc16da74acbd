//! The ready queue's item: what the loop runs next, without a Python lookup.
//!
//! A user handle, a timer, a C Task's own step or wake-up (no handle), a
//! native transport's read or flush, a parked `sock_*` operation. The loop's
//! run loop runs every one through `run_one` (`run.rs`).

use std::os::fd::RawFd;

use pyo3::prelude::*;
use pyo3::{PyTraverseError, PyVisit};

use crate::callbacks::{Handle, HandleCore, Queued, QueuedTimer, TaskCall, TimerHandle};
use crate::reactor::{IoEvent, IoRef};

/// What the loop's queues hold: either handle type, without a Python lookup.
pub(crate) enum Ready {
    Plain(Queued<Handle>),
    Timer(Queued<TimerHandle>),
    /// A native transport's read or flush (no Python handle involved).
    Io(IoRef, IoEvent),
    /// A parked `sock_*` operation of an fd is ready, on one side.
    Sock(RawFd, IoEvent),
    /// A C `Task`'s own step or wake-up, queued without a handle.
    Task(TaskCall),
}

impl Ready {
    /// The handle's core; `None` for native transport events.
    pub(crate) fn core(&self) -> Option<&HandleCore> {
        match self {
            Ready::Plain(h) => Some(&h.0.get().core),
            Ready::Timer(t) => Some(&t.0.get().core),
            Ready::Io(..) | Ready::Sock(..) | Ready::Task(_) => None,
        }
    }

    /// The Python object behind this entry (none for `sock_*` events).
    pub(crate) fn as_any(&self) -> Option<&Py<PyAny>> {
        match self {
            Ready::Plain(h) => Some(h.0.as_any()),
            Ready::Timer(t) => Some(t.0.as_any()),
            Ready::Io(io, _) => Some(io.obj()),
            Ready::Sock(..) | Ready::Task(_) => None,
        }
    }

    /// [`Ready::traverse`] for a timer still in the heap.
    pub(crate) fn traverse_timer(t: &QueuedTimer, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        if t.is_tracked() {
            visit.call(t.0.as_any())
        } else {
            t.0.get().core.traverse(visit)
        }
    }

    /// Visits what the collector must see of this queued callback: the
    /// handle if it is tracked, else the handle's own references.
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        let tracked = match self {
            Ready::Plain(h) => h.is_tracked(),
            Ready::Timer(t) => t.is_tracked(),
            Ready::Io(..) => true,
            Ready::Sock(..) => return Ok(()),
            Ready::Task(t) => return t.traverse(visit),
        };
        match (self.core(), self.as_any()) {
            (Some(core), _) if !tracked => core.traverse(visit),
            (_, Some(obj)) => visit.call(obj),
            _ => Ok(()),
        }
    }
}
