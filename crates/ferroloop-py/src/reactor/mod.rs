//! The reactor: who owns each descriptor, and what its readiness becomes.
//!
//! Shared by the loop and the transports (each holds a `Py<Reactor>`). It
//! owns the poller, one table of descriptor owners (a `Watch` of
//! `add_reader`/`add_writer`, parked `sock_*` operations, or a transport as an
//! [`IoRef`]), the queue of I/O completions that transports ask for between
//! polls, and the scratch buffer reads go through. A transport registers
//! itself here and is called back through its `IoRef`; it never names the loop,
//! and the reactor never names a transport type.
//!
//! Ground rules:
//! - one owner per descriptor at a time: a new owner takes the descriptor from
//!   parked `sock_*` operations (they are dropped); a watch and a transport
//!   never share one (the Python layer refuses it, as asyncio's does, and the
//!   poller's second registration would fail);
//! - no borrow of the table is held while Python code runs or a Python object
//!   is dropped: what leaves the table is handed back to the caller to drop;
//! - watches are level-triggered as asyncio's selectors: a watched descriptor
//!   that fired is re-armed before the next poll. Everything else stays
//!   registered edge-triggered for reading and writing.

mod owners;
mod token;

use std::cell::RefMut;
use std::collections::HashMap;
use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, Ordering};

use ferroloop_core::{Interest, Poller, Readiness};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;
use pyo3::{PyTraverseError, PyVisit};

use crate::callbacks::Handle;
use crate::gil_cell::GilCell;
pub(crate) use owners::{IoEvent, IoOwner, IoRef, OpKind, Owner, SockOp, SockWait, Watch};
pub(crate) use token::Token;

/// What a readiness report asks of the loop.
pub(crate) enum Fired {
    /// A watch's reader or writer handle is to run.
    Handle(Py<Handle>),
    /// The parked `sock_*` operation of a descriptor, one side.
    Sock(RawFd, IoEvent),
    /// A transport's read or flush.
    Io(IoRef, IoEvent),
}

#[derive(Default)]
struct Fds {
    owners: HashMap<RawFd, Owner>,
    /// Watched descriptors that fired, re-armed before the next poll.
    rearm: Vec<RawFd>,
    /// Completions transports asked for since the loop last took them.
    pending: Vec<(IoRef, IoEvent)>,
    /// The buffer stream reads go through before the bytes are copied out.
    scratch: Vec<u8>,
}

#[pyclass(module = "ferroloop._ferroloop", name = "Reactor", frozen)]
pub(crate) struct Reactor {
    poller: Poller,
    closed: AtomicBool,
    fds: GilCell<Fds>,
}

impl Reactor {
    pub(crate) fn new(poller: Poller) -> Self {
        Self { poller, closed: AtomicBool::new(false), fds: GilCell::new(Fds::default()) }
    }

    pub(crate) fn poller(&self) -> &Poller {
        &self.poller
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    pub(crate) fn check_closed(&self) -> PyResult<()> {
        if self.is_closed() {
            return Err(PyRuntimeError::new_err("Event loop is closed"));
        }
        Ok(())
    }

    /// How many descriptors have an owner (watches, parked `sock_*`
    /// operations, transports): the health snapshot's `fds_watched`.
    pub(crate) fn watched_count(&self, py: Python<'_>) -> usize {
        self.fds.borrow(py).owners.len()
    }

    /// Closes for good: every owner is dropped and the poller's descriptors
    /// are released.
    pub(crate) fn close(&self, py: Python<'_>) {
        self.closed.store(true, Ordering::Relaxed);
        self.release(py);
        self.poller.close();
    }

    /// Forgets every owner and queued completion (close, GC clear).
    pub(crate) fn release(&self, py: Python<'_>) {
        let (owners, pending) = {
            let mut fds = self.fds.borrow_mut(py);
            fds.rearm.clear();
            (std::mem::take(&mut fds.owners), std::mem::take(&mut fds.pending))
        };
        for fd in owners.keys() {
            let _ = self.poller.deregister(*fd);
        }
        drop((owners, pending));
    }

    /// Before a poll: re-arms the watches that fired (level triggering);
    /// returns whether anything is registered that a poll could report, and
    /// whether transport events are queued (see [`Reactor::take_pending`]).
    /// One borrow: this runs every iteration.
    pub(crate) fn before_poll(&self, py: Python<'_>) -> (bool, bool) {
        let mut fds = self.fds.borrow_mut(py);
        if !fds.rearm.is_empty() {
            let Fds { owners, rearm, .. } = &mut *fds;
            for fd in rearm.drain(..) {
                if let Some(Owner::Watch(w)) = owners.get(&fd) {
                    let _ = self.poller.rearm(fd, Token::of_fd(fd).raw(), w.interest());
                }
            }
        }
        (!fds.owners.is_empty(), !fds.pending.is_empty())
    }

    /// Turns the poller's report into work for the loop, handed to `sink` in
    /// the report's order; returns whether the signal channel fired. A
    /// watch's handle cancelled by now is removed instead, as asyncio's
    /// selector loop does, into `dead` (to drop once no borrow is held).
    pub(crate) fn dispatch(
        &self,
        py: Python<'_>,
        events: &mut Vec<Readiness>,
        dead: &mut Vec<Watch>,
        mut sink: impl FnMut(Fired),
    ) -> bool {
        let mut signalled = false;
        let mut stale = Vec::new();
        {
            let mut guard = self.fds.borrow_mut(py);
            let fds = &mut *guard;
            for ev in events.drain(..) {
                let token = Token::from_raw(ev.token);
                if token == Token::SIGNALS {
                    signalled = true;
                    continue;
                }
                let Some(fd) = token.fd() else { continue };
                match fds.owners.get(&fd) {
                    Some(Owner::Watch(w)) => {
                        let mut queued = false;
                        for (fired, handle, side) in [
                            (ev.readable, &w.reader, IoEvent::Read),
                            (ev.writable, &w.writer, IoEvent::Write),
                        ] {
                            let (true, Some(h)) = (fired, handle) else { continue };
                            if h.get().core.is_cancelled() {
                                stale.push((fd, side));
                            } else {
                                sink(Fired::Handle(h.clone_ref(py)));
                                queued = true;
                            }
                        }
                        if queued {
                            fds.rearm.push(fd);
                        }
                    }
                    Some(Owner::Sock(s)) => {
                        if ev.readable && s.read.is_some() {
                            sink(Fired::Sock(fd, IoEvent::Read));
                        }
                        if ev.writable && s.write.is_some() {
                            sink(Fired::Sock(fd, IoEvent::Write));
                        }
                    }
                    Some(Owner::Io(r)) => {
                        let wanted = r.wants(py, &ev);
                        if wanted.read {
                            sink(Fired::Io(r.clone_ref(py), IoEvent::Read));
                        }
                        if wanted.write {
                            sink(Fired::Io(r.clone_ref(py), IoEvent::Write));
                        }
                    }
                    None => {}
                }
            }
        }
        for (fd, side) in stale {
            if let Ok(Some(h)) = self.unwatch(py, fd, side, dead) {
                dead.push(Watch { reader: Some(h), writer: None });
            }
        }
        signalled
    }

    // ---- watches (add_reader / add_writer) ---------------------------------

    /// Sets the reader (or writer) of `fd`, taking the descriptor from parked
    /// `sock_*` operations; returns the handle it replaces (to cancel). When
    /// registering fails the descriptor is forgotten, as asyncio's selector
    /// does, and `dead` receives what was dropped.
    pub(crate) fn watch(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: IoEvent,
        handle: Py<Handle>,
        dead: &mut Vec<Owner>,
    ) -> io::Result<Option<Py<Handle>>> {
        let mut fds = self.fds.borrow_mut(py);
        if matches!(fds.owners.get(&fd), Some(Owner::Sock(_))) {
            dead.extend(self.remove(&mut fds, fd));
        }
        let fresh = !fds.owners.contains_key(&fd);
        if fresh {
            let mut w = Watch::default();
            *w.slot(side) = Some(handle);
            if let Err(e) = self.poller.register(fd, Token::of_fd(fd).raw(), w.interest()) {
                dead.push(Owner::Watch(w));
                return Err(e);
            }
            fds.owners.insert(fd, Owner::Watch(w));
            return Ok(None);
        }
        let Some(Owner::Watch(w)) = fds.owners.get_mut(&fd) else {
            // A transport owns it: the kernel refuses a second registration
            // (EEXIST), which is the error asyncio's selector would give.
            let interest = Interest { read: side == IoEvent::Read, write: side == IoEvent::Write };
            let err = self.poller.register(fd, Token::of_fd(fd).raw(), interest).err();
            dead.push(Owner::Watch(Watch { reader: Some(handle), writer: None }));
            return Err(err.unwrap_or_else(|| io::ErrorKind::AlreadyExists.into()));
        };
        let old = w.slot(side).replace(handle);
        if let Err(e) = self.poller.rearm(fd, Token::of_fd(fd).raw(), w.interest()) {
            dead.extend(self.remove(&mut fds, fd));
            dead.push(Owner::Watch(Watch { reader: old, writer: None }));
            return Err(e);
        }
        Ok(old)
    }

    /// Removes the reader (or writer) of `fd` and returns its handle. When the
    /// other direction stays watched the kernel interest is changed; if that
    /// fails (the descriptor was closed) it is forgotten entirely and the
    /// error returned, as asyncio's selector does.
    pub(crate) fn unwatch(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: IoEvent,
        dead: &mut Vec<Watch>,
    ) -> io::Result<Option<Py<Handle>>> {
        let mut fds = self.fds.borrow_mut(py);
        let Some(Owner::Watch(w)) = fds.owners.get_mut(&fd) else { return Ok(None) };
        let old = w.slot(side).take();
        let interest = w.interest();
        if interest == Interest::default() {
            if let Some(Owner::Watch(w)) = self.remove(&mut fds, fd) {
                dead.push(w);
            }
        } else if let Err(e) = self.poller.rearm(fd, Token::of_fd(fd).raw(), interest) {
            if let Some(Owner::Watch(w)) = self.remove(&mut fds, fd) {
                dead.push(w);
            }
            dead.push(Watch { reader: old, writer: None });
            return Err(e);
        }
        Ok(old)
    }

    /// The events `fd` is watched for, as a `selectors` mask (1 read,
    /// 2 write), or None when it is not watched.
    pub(crate) fn watched_events(&self, py: Python<'_>, fd: RawFd) -> Option<u8> {
        let fds = self.fds.borrow(py);
        let Some(Owner::Watch(w)) = fds.owners.get(&fd) else { return None };
        Some(u8::from(w.reader.is_some()) | (u8::from(w.writer.is_some()) << 1))
    }

    // ---- parked sock_* operations ------------------------------------------

    /// Whether `fd` is watched or owned by a transport (then `sock_*` takes
    /// asyncio's own path).
    pub(crate) fn owned_otherwise(&self, py: Python<'_>, fd: RawFd) -> bool {
        matches!(self.fds.borrow(py).owners.get(&fd), Some(Owner::Watch(_) | Owner::Io(_)))
    }

    /// The socket object whose operations last registered `fd`.
    pub(crate) fn sock_owner(&self, py: Python<'_>, fd: RawFd) -> Option<Py<PyWeakrefReference>> {
        match self.fds.borrow(py).owners.get(&fd) {
            Some(Owner::Sock(s)) => s.owner.as_ref().map(|o| o.clone_ref(py)),
            _ => None,
        }
    }

    /// Parks `op` on `fd` in one direction; `same_owner` says the socket
    /// object that registered `fd` is the one parking now (its edge-triggered
    /// registration is still armed: no system call). Returns what it replaces,
    /// for the caller to drop.
    pub(crate) fn park(
        &self,
        py: Python<'_>,
        fd: RawFd,
        side: IoEvent,
        op: SockOp,
        owner: Py<PyWeakrefReference>,
        same_owner: bool,
    ) -> io::Result<(Option<SockOp>, Option<Py<PyWeakrefReference>>)> {
        let mut fds = self.fds.borrow_mut(py);
        let token = Token::of_fd(fd).raw();
        let interest = Interest { read: true, write: true };
        let res = match fds.owners.get(&fd) {
            Some(Owner::Sock(_)) if same_owner => Ok(()),
            Some(Owner::Sock(_)) => self.poller.rearm(fd, token, interest),
            _ => self.poller.register(fd, token, interest),
        };
        if let Err(e) = res {
            let dropped = match fds.owners.get(&fd) {
                Some(Owner::Sock(_)) => self.remove(&mut fds, fd),
                _ => None,
            };
            drop(fds);
            drop((op, owner, dropped));
            return Err(e);
        }
        let Owner::Sock(s) = fds.owners.entry(fd).or_insert_with(|| Owner::Sock(SockWait::default())) else {
            unreachable!("sock_* parks only on a descriptor no one else owns")
        };
        let old = s.slot(side).replace(op);
        let old_owner = s.owner.replace(owner);
        Ok((old, old_owner))
    }

    /// Takes the parked operation of `fd` in one direction, to run it.
    pub(crate) fn take_op(&self, py: Python<'_>, fd: RawFd, side: IoEvent) -> Option<SockOp> {
        match self.fds.borrow_mut(py).owners.get_mut(&fd) {
            Some(Owner::Sock(s)) => s.slot(side).take(),
            _ => None,
        }
    }

    /// Parks again an operation that ran and must wait more; gives it back
    /// when the slot was taken meanwhile or the descriptor has a new owner.
    ///
    /// The descriptor is re-armed, so that readiness that still holds is
    /// reported again, as asyncio's level-triggered selector reports it: a
    /// socket may be ready and the operation still not go through (an
    /// unconnected Unix datagram socket is writable while the receiver it
    /// names is full), and edge triggering would never wake it again.
    pub(crate) fn repark(&self, py: Python<'_>, fd: RawFd, side: IoEvent, op: SockOp) -> Option<SockOp> {
        match self.fds.borrow_mut(py).owners.get_mut(&fd) {
            Some(Owner::Sock(s)) => {
                let slot = s.slot(side);
                if slot.is_some() {
                    return Some(op);
                }
                *slot = Some(op);
                let _ = self.poller.rearm(fd, Token::of_fd(fd).raw(), Interest { read: true, write: true });
                None
            }
            _ => Some(op),
        }
    }

    // ---- transports ----------------------------------------------------------

    /// Registers a transport as the owner of `fd` (read and write, edge
    /// triggered), taking it from parked `sock_*` operations.
    pub(crate) fn register_io(
        &self,
        py: Python<'_>,
        fd: RawFd,
        io: IoRef,
        interest: Interest,
    ) -> io::Result<()> {
        let dropped = {
            let mut fds = self.fds.borrow_mut(py);
            let parked = match fds.owners.get(&fd) {
                Some(Owner::Sock(_)) => self.remove(&mut fds, fd),
                _ => None,
            };
            match self.poller.register(fd, Token::of_fd(fd).raw(), interest) {
                Ok(()) => (parked, fds.owners.insert(fd, Owner::Io(io))),
                Err(e) => {
                    drop(fds);
                    drop((parked, io));
                    return Err(e);
                }
            }
        };
        drop(dropped);
        Ok(())
    }

    /// Changes what a transport's `fd` is watched for (re-arming its edge):
    /// a transport that is not always interested in writability (a datagram
    /// socket, which reports it after every datagram sent) asks for it only
    /// while it has something buffered.
    pub(crate) fn set_io_interest(&self, py: Python<'_>, fd: RawFd, interest: Interest) -> io::Result<()> {
        let fds = self.fds.borrow(py);
        match fds.owners.get(&fd) {
            Some(Owner::Io(_)) => self.poller.rearm(fd, Token::of_fd(fd).raw(), interest),
            _ => Ok(()),
        }
    }

    /// Forgets the transport that owns `fd`.
    pub(crate) fn unregister_io(&self, py: Python<'_>, fd: RawFd) {
        let old = {
            let mut fds = self.fds.borrow_mut(py);
            match fds.owners.get(&fd) {
                Some(Owner::Io(_)) => self.remove(&mut fds, fd),
                _ => None,
            }
        };
        drop(old);
    }

    /// Queues a transport's event for the loop's ready queue: it runs after
    /// the callbacks already queued, as a reader registered now would.
    pub(crate) fn push(&self, py: Python<'_>, io: IoRef, event: IoEvent) {
        self.fds.borrow_mut(py).pending.push((io, event));
    }

    /// Hands the queued transport events to `sink`, oldest first.
    pub(crate) fn take_pending(&self, py: Python<'_>, sink: impl FnMut((IoRef, IoEvent))) {
        self.fds.borrow_mut(py).pending.drain(..).for_each(sink);
    }

    /// Lends the read scratch buffer (empty if it is lent already).
    pub(crate) fn take_scratch(&self, py: Python<'_>) -> Vec<u8> {
        std::mem::take(&mut self.fds.borrow_mut(py).scratch)
    }

    pub(crate) fn put_scratch(&self, py: Python<'_>, buf: Vec<u8>) {
        self.fds.borrow_mut(py).scratch = buf;
    }

    /// Removes the owner of `fd` and leaves the poller.
    fn remove(&self, fds: &mut RefMut<'_, Fds>, fd: RawFd) -> Option<Owner> {
        let old = fds.owners.remove(&fd);
        if old.is_some() {
            let _ = self.poller.deregister(fd);
        }
        old
    }
}

#[pymethods]
impl Reactor {
    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        let Some(fds) = self.fds.try_borrow_for_gc() else { return Ok(()) };
        for owner in fds.owners.values() {
            owner.traverse(&visit)?;
        }
        for (io, _) in &fds.pending {
            visit.call(io.obj())?;
        }
        Ok(())
    }

    fn __clear__(&self) {
        Python::attach(|py| self.release(py));
    }
}

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Reactor>()
}
