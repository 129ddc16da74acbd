//! The owners a descriptor can have, one at a time: a `Watch` (`add_reader` /
//! `add_writer`), parked `sock_*` operations (`SockWait`), or a transport
//! (`IoRef`). Data only: the loop drives watches and `sock_*` operations, a
//! transport or a child watch drives itself as an [`IoOwner`].

use std::marker::PhantomData;

use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;
use pyo3::PyClass;
use pyo3::{PyTraverseError, PyVisit};

use crate::callbacks::Handle;
use crate::capi::bytes::Unsent;
use ferroloop_core::net::SockAddr;
use ferroloop_core::{Interest, Readiness};

/// The reader and writer handles of a watched descriptor.
#[derive(Default)]
pub(crate) struct Watch {
    pub(crate) reader: Option<Py<Handle>>,
    pub(crate) writer: Option<Py<Handle>>,
}

impl Watch {
    pub(crate) fn slot(&mut self, side: IoEvent) -> &mut Option<Py<Handle>> {
        match side {
            IoEvent::Read => &mut self.reader,
            IoEvent::Write => &mut self.writer,
        }
    }

    pub(crate) fn interest(&self) -> Interest {
        Interest { read: self.reader.is_some(), write: self.writer.is_some() }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for h in [&self.reader, &self.writer].into_iter().flatten() {
            visit.call(h)?;
        }
        Ok(())
    }
}

/// A `sock_*` operation, without its future.
pub(crate) enum OpKind {
    Recv {
        n: usize,
    },
    RecvInto {
        buf: Py<PyAny>,
    },
    SendAll {
        data: Unsent,
        pos: usize,
    },
    Accept {
        sock: Py<PyAny>,
    },
    RecvFrom {
        n: usize,
    },
    RecvFromInto {
        buf: Py<PyAny>,
        n: usize,
    },
    /// The address is boxed: it is larger than every other operation.
    SendTo {
        data: Unsent,
        addr: Box<SockAddr>,
    },
    /// A `connect` under way; `address` as the caller gave it, for the error.
    Connect {
        address: Py<PyAny>,
    },
}

/// A `sock_*` operation waiting for its descriptor, and the future its
/// caller awaits.
pub(crate) struct SockOp {
    pub(crate) fut: Py<PyAny>,
    pub(crate) kind: OpKind,
}

impl SockOp {
    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.fut)?;
        match &self.kind {
            OpKind::RecvInto { buf } | OpKind::RecvFromInto { buf, .. } => visit.call(buf),
            OpKind::Accept { sock } => visit.call(sock),
            OpKind::Connect { address } => visit.call(address),
            OpKind::Recv { .. }
            | OpKind::SendAll { .. }
            | OpKind::RecvFrom { .. }
            | OpKind::SendTo { .. } => Ok(()),
        }
    }
}

/// The parked operations of one descriptor, one per direction.
#[derive(Default)]
pub(crate) struct SockWait {
    /// A weak reference to the socket object that registered the descriptor:
    /// while the same object waits again, its registration is known to be
    /// live and the edge still armed, so no `epoll_ctl` is needed at all.
    pub(crate) owner: Option<Py<PyWeakrefReference>>,
    pub(crate) read: Option<SockOp>,
    pub(crate) write: Option<SockOp>,
}

impl SockWait {
    pub(crate) fn slot(&mut self, side: IoEvent) -> &mut Option<SockOp> {
        match side {
            IoEvent::Read => &mut self.read,
            IoEvent::Write => &mut self.write,
        }
    }

    fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        for op in [&self.read, &self.write].into_iter().flatten() {
            op.traverse(visit)?;
        }
        Ok(())
    }
}

/// A direction: what a transport is asked to do (read, or flush its write
/// buffer), and the side of a descriptor a watch or a parked `sock_*`
/// operation waits on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum IoEvent {
    Read,
    Write,
}

/// A descriptor owner the reactor calls back: a native transport, a child
/// watch. Implemented by the owner's type in its own module; the reactor
/// holds it as an [`IoRef`] and never names the type.
pub(crate) trait IoOwner: PyClass {
    /// What a readiness report should queue: a read, a flush, both or
    /// neither. No Python code may run here: the reactor's table is borrowed.
    fn wants(slf: &Bound<'_, Self>, ev: &Readiness) -> Interest;
    /// Runs one event (from the loop's ready queue or its I/O phase).
    fn run(slf: &Bound<'_, Self>, event: IoEvent) -> PyResult<()>;
}

/// An owner's entry points, taking the object its `IoRef` holds.
struct IoOps {
    wants: fn(&Bound<'_, PyAny>, &Readiness) -> Interest,
    run: fn(&Bound<'_, PyAny>, IoEvent) -> PyResult<()>,
}

/// The entry points of owners of type `T`, one table per type.
struct OpsOf<T>(PhantomData<T>);

impl<T: IoOwner> OpsOf<T> {
    const OPS: IoOps = IoOps { wants: Self::wants, run: Self::run };

    fn wants(obj: &Bound<'_, PyAny>, ev: &Readiness) -> Interest {
        T::wants(Self::owner(obj), ev)
    }

    fn run(obj: &Bound<'_, PyAny>, event: IoEvent) -> PyResult<()> {
        T::run(Self::owner(obj), event)
    }

    fn owner<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> &'a Bound<'py, T> {
        // SAFETY: these entry points are reached only through an `IoRef`
        // whose `ops` is `OpsOf::<T>::OPS`. Its fields are private to this
        // module and its one constructor, `IoRef::of::<T>`, takes a `Py<T>`
        // and pairs it with exactly that table (`clone_ref` copies both), so
        // `obj` is an instance of `T`.
        unsafe { obj.cast_unchecked::<T>() }
    }
}

/// A descriptor owner as the reactor and the ready queue see it: the object
/// and its type's entry points (uvloop's handles keep a callback type beside
/// the object the same way). The reactor never names the owner's type.
pub(crate) struct IoRef {
    obj: Py<PyAny>,
    ops: &'static IoOps,
}

impl IoRef {
    /// The reference to an owner: the object with its own type's entry points.
    pub(crate) fn of<T: IoOwner>(obj: Py<T>) -> Self {
        Self { obj: obj.into_any(), ops: &OpsOf::<T>::OPS }
    }

    pub(crate) fn clone_ref(&self, py: Python<'_>) -> Self {
        Self { obj: self.obj.clone_ref(py), ops: self.ops }
    }

    pub(crate) fn obj(&self) -> &Py<PyAny> {
        &self.obj
    }

    pub(crate) fn wants(&self, py: Python<'_>, ev: &Readiness) -> Interest {
        (self.ops.wants)(self.obj.bind(py), ev)
    }

    pub(crate) fn run(&self, py: Python<'_>, event: IoEvent) -> PyResult<()> {
        (self.ops.run)(self.obj.bind(py), event)
    }
}

/// Who owns a descriptor.
pub(crate) enum Owner {
    Watch(Watch),
    Sock(SockWait),
    Io(IoRef),
}

impl Owner {
    pub(crate) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        match self {
            Owner::Watch(w) => w.traverse(visit),
            Owner::Sock(s) => s.traverse(visit),
            Owner::Io(r) => visit.call(&r.obj),
        }
    }
}
