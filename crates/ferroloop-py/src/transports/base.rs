//! `Base`: what every native transport core shares, written once (as
//! uvloop's `UVBaseTransport` and ferroloop's `_transport_base.py`): the
//! loop, the reactor, the descriptor and the context protocol callbacks run
//! in; asyncio's transport state (`State`: the transport and protocol, write
//! flow control, the started, paused, closing and connection-lost flags, the
//! registration and the queued read); how a readiness report becomes a read
//! or a flush, how an event runs and how its exception is reported, fatal
//! errors, flow-control signals, and the Python-visible methods each core
//! answers the same way (`transport_methods!`).
//!
//! A core is a `Transport`: its own state is a `Kind` inside the shared
//! `State`, and it says how it reads, flushes and is watched.
//!
//! Must not: name the loop or a particular transport. Invariant: no `State`
//! borrow is held across a call into Python or the drop of a Python object.

use std::ops::{Deref, DerefMut};
use std::os::fd::RawFd;

use ferroloop_core::{Interest, Readiness};
use pyo3::prelude::*;
use pyo3::pyclass::boolean_struct::True;
use pyo3::types::PyDict;
use pyo3::{PyClass, PyTraverseError, PyVisit};

use super::flow::{self, FlowControl, FlowSignal};
use crate::capi::{context, exc};
use crate::errors::{is_exit, os_error};
use crate::gil_cell::GilCell;
use crate::pyimports;
use crate::reactor::{IoEvent, IoOwner, IoRef, Reactor};

/// asyncio's transport state every native transport keeps (the flags named
/// as there), and the transport's own (`K`), which it derefs to.
// The flags are asyncio's transport state, one each.
#[allow(clippy::struct_excessive_bools)]
pub(super) struct State<K> {
    pub(super) transport: Option<Py<PyAny>>,
    /// The protocol; its methods are looked up at each call, as asyncio
    /// does, so one replaced on the instance takes effect.
    pub(super) protocol: Option<Py<PyAny>>,
    pub(super) flow: FlowControl,
    pub(super) started: bool,
    pub(super) paused: bool,
    pub(super) closing: bool,
    pub(super) conn_lost: u32,
    pub(super) registered: bool,
    /// A read is queued in the loop (avoids queueing two).
    pub(super) read_queued: bool,
    kind: K,
}

impl<K: Kind> State<K> {
    pub(super) fn new(transport: Py<PyAny>, kind: K) -> Self {
        Self {
            transport: Some(transport),
            protocol: None,
            flow: FlowControl::default(),
            started: false,
            paused: false,
            closing: false,
            conn_lost: 0,
            registered: false,
            read_queued: false,
            kind,
        }
    }

    pub(super) fn can_read(&self) -> bool {
        K::can_read(self)
    }
}

impl<K> Deref for State<K> {
    type Target = K;

    fn deref(&self) -> &K {
        &self.kind
    }
}

impl<K> DerefMut for State<K> {
    fn deref_mut(&mut self) -> &mut K {
        &mut self.kind
    }
}

/// A transport's own state, and the rules that differ between transports.
pub(super) trait Kind: Sized {
    /// What leaves the state with the unsent output, or when the transport
    /// is released (dropped once the borrow ends).
    type Dropped;

    /// Whether a read may run now.
    fn can_read(st: &State<Self>) -> bool;
    /// Whether a readiness report means there is something to read.
    fn readable(st: &mut State<Self>, ev: &Readiness) -> bool {
        let _ = st;
        ev.readable
    }
    /// The size counted against the water marks.
    fn buffer_size(&self) -> usize;
    fn buffer_empty(&self) -> bool;
    /// asyncio's `_force_close` emptying the buffer.
    fn drop_unsent(&mut self) -> Self::Dropped;
    /// Leaving the poller after `connection_lost`: the output and whatever
    /// else the transport holds besides its transport and protocol.
    fn release(&mut self) -> Self::Dropped;
}

/// The parts every transport core holds.
pub(super) struct Base<K> {
    /// The loop, for its exception handler (cold path).
    pub(super) loop_: Py<PyAny>,
    pub(super) reactor: Py<Reactor>,
    pub(super) fd: RawFd,
    /// Protocol callbacks run in the context current when the transport was
    /// made, as asyncio's reader handle does.
    pub(super) context: Py<PyAny>,
    pub(super) st: GilCell<State<K>>,
}

/// What `transport_methods!` writes of a `Transport`: the kind of its
/// state, its writer callback's name and its `Base` (the field `io`).
pub(super) trait HasBase: PyClass<Frozen = True> + Sync {
    type Kind: Kind;
    /// asyncio's name of the transport's writer callback, for reports.
    const WRITE_READY: &'static str;

    fn base(&self) -> &Base<Self::Kind>;
}

/// A native transport core, built on a `Base`.
pub(super) trait Transport: HasBase {
    /// What the descriptor is watched for when it joins the poller.
    fn interest(&self) -> Interest;
    /// Runs one event, in the transport's context.
    fn on_event(slf: &Bound<'_, Self>, event: IoEvent) -> PyResult<()>;
}

impl<K: Kind> Base<K> {
    pub(super) fn new(
        loop_: Bound<'_, PyAny>,
        reactor: Bound<'_, Reactor>,
        fd: RawFd,
        context: Py<PyAny>,
        st: State<K>,
    ) -> Self {
        Self { loop_: loop_.unbind(), reactor: reactor.unbind(), fd, context, st: GilCell::new(st) }
    }

    pub(super) fn transport<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st.borrow(py).transport.as_ref().map(|t| t.bind(py).clone())
    }

    pub(super) fn protocol<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyAny>> {
        self.st.borrow(py).protocol.as_ref().map(|t| t.bind(py).clone())
    }

    /// Hands an exception that escaped an event to the loop's exception
    /// handler, with asyncio's message for its handle's callback: a closing
    /// transport has removed (cancelled) its reader and writer handles by
    /// then, whose callback asyncio shows as `None()`. The transport and
    /// protocol are named when still attached.
    fn report(&self, py: Python<'_>, err: PyErr, event: IoEvent, write_ready: &str) -> PyResult<()> {
        let (transport, protocol, closing) = {
            let st = self.st.borrow(py);
            let transport = st.transport.as_ref().map(|t| t.clone_ref(py));
            let protocol = st.protocol.as_ref().map(|p| p.clone_ref(py));
            (transport, protocol, st.closing || st.conn_lost > 0)
        };
        let callback = match (&transport, closing) {
            (Some(t), false) => {
                let name = t.bind(py).get_type().name()?;
                let method = match event {
                    IoEvent::Read => "_read_ready",
                    IoEvent::Write => write_ready,
                };
                format!("{name}.{method}")
            }
            _ => "None".to_owned(),
        };
        let context = PyDict::new(py);
        context.set_item("message", format!("Exception in callback {callback}()"))?;
        let err = err.into_value(py).into_bound(py).into_any();
        context.set_item("exception", &err)?;
        if let Some(t) = transport {
            context.set_item("transport", t)?;
            context.set_item("protocol", protocol)?;
        }
        let handled = exc::handling(&err);
        self.loop_.bind(py).call_method1(pyo3::intern!(py, "call_exception_handler"), (context,))?;
        drop(handled);
        Ok(())
    }

    /// asyncio's `_fatal_error`, in Python (cold path).
    pub(super) fn fatal(&self, py: Python<'_>, err: PyErr, message: &str) -> PyResult<()> {
        if is_exit(py, &err) {
            return Err(err);
        }
        match self.transport(py) {
            Some(t) => {
                let fatal = pyimports::transport_fatal_error(py)?;
                exc::while_handling(py, err, |e| fatal.call1((t, e, message))).map(drop)
            }
            None => Ok(()),
        }
    }

    /// asyncio's `_maybe_pause_protocol`, after the buffer grew.
    pub(super) fn maybe_pause_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let Some(t) = self.transport(py) else { return Ok(()) };
        self.signal_flow(py, &t, FlowControl::after_grow)
    }

    /// asyncio's `_maybe_resume_protocol`, after the buffer shrank.
    pub(super) fn maybe_resume_protocol(&self, py: Python<'_>) -> PyResult<()> {
        let Some(t) = self.transport(py) else { return Ok(()) };
        self.signal_flow(py, &t, FlowControl::after_drain)
    }

    /// Tells the protocol of `transport` to pause or resume writing if
    /// `check` says so for the buffer's size.
    pub(super) fn signal_flow(
        &self,
        py: Python<'_>,
        transport: &Bound<'_, PyAny>,
        check: fn(&mut FlowControl, usize) -> Option<FlowSignal>,
    ) -> PyResult<()> {
        let (signal, protocol) = {
            let mut st = self.st.borrow_mut(py);
            let size = st.buffer_size();
            (check(&mut st.flow, size), st.protocol.as_ref().map(|p| p.clone_ref(py)))
        };
        match (signal, protocol) {
            (Some(signal), Some(protocol)) => {
                flow::signal_protocol(self.loop_.bind(py), transport, protocol.bind(py), signal)
            }
            _ => Ok(()),
        }
    }

    /// The references every transport holds, for the cycle collector.
    pub(super) fn traverse(&self, visit: &PyVisit<'_>) -> Result<(), PyTraverseError> {
        visit.call(&self.loop_)?;
        visit.call(&self.reactor)?;
        visit.call(&self.context)?;
        let Some(st) = self.st.try_borrow_for_gc() else { return Ok(()) };
        for obj in [&st.transport, &st.protocol].into_iter().flatten() {
            visit.call(obj)?;
        }
        st.flow.traverse(visit)
    }

    // ---- the Python-visible methods (`transport_methods!`) ----------------

    pub(super) fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
        self.st.borrow(py).buffer_size()
    }

    pub(super) fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
        self.st.borrow(py).flow.limits(py)
    }

    pub(super) fn set_write_buffer_limits(
        &self,
        py: Python<'_>,
        high: Option<Bound<'_, PyAny>>,
        low: Option<Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let limits = flow::parse_limits(py, high, low)?;
        let old = self.st.borrow_mut(py).flow.set_limits(limits);
        drop(old);
        self.maybe_pause_protocol(py)
    }

    pub(super) fn is_reading(&self, py: Python<'_>) -> bool {
        let st = self.st.borrow(py);
        !st.paused && !st.closing
    }

    pub(super) fn pause_reading(&self, py: Python<'_>) -> bool {
        let mut st = self.st.borrow_mut(py);
        if st.paused || st.closing {
            return false;
        }
        st.paused = true;
        true
    }

    pub(super) fn begin_close(&self, py: Python<'_>) -> Option<bool> {
        let mut st = self.st.borrow_mut(py);
        if st.closing {
            return None;
        }
        st.closing = true;
        let empty = st.buffer_empty();
        if empty {
            st.conn_lost += 1;
        }
        Some(empty)
    }

    pub(super) fn force_close(&self, py: Python<'_>) -> bool {
        let dropped = {
            let mut st = self.st.borrow_mut(py);
            if st.conn_lost > 0 {
                return false;
            }
            st.closing = true;
            st.conn_lost += 1;
            st.drop_unsent()
        };
        drop(dropped);
        true
    }
}

/// How a transport is held by the reactor and the ready queue.
pub(super) fn io_ref<T: Transport + IoOwner>(slf: &Bound<'_, T>) -> IoRef {
    IoRef::of(slf.clone().unbind())
}

/// Whether a readiness report should queue a read, a flush (`IoOwner::wants`).
pub(super) fn wants<T: Transport>(slf: &Bound<'_, T>, ev: &Readiness) -> Interest {
    let mut st = slf.get().base().st.borrow_mut(slf.py());
    let readable = T::Kind::readable(&mut st, ev);
    let read = readable && st.can_read() && !st.read_queued;
    if read {
        st.read_queued = true;
    }
    Interest { read, write: ev.writable && !st.buffer_empty() && st.conn_lost == 0 }
}

/// Runs one event from the ready queue in the transport's context, as
/// asyncio's reader/writer handle runs `_read_ready`/`_write_ready`: an
/// exception other than `SystemExit`/`KeyboardInterrupt` goes to the loop's
/// exception handler (asyncio's `Handle._run`, outside the context), never
/// out of the run loop (`IoOwner::run`).
pub(super) fn run<T: Transport>(slf: &Bound<'_, T>, event: IoEvent) -> PyResult<()> {
    match run_in_context(slf, event) {
        Err(err) if !is_exit(slf.py(), &err) => slf.get().base().report(slf.py(), err, event, T::WRITE_READY),
        res => res,
    }
}

fn run_in_context<T: Transport>(slf: &Bound<'_, T>, event: IoEvent) -> PyResult<()> {
    let py = slf.py();
    let base = slf.get().base();
    let entered = context::enter(base.context.bind(py))?;
    if event == IoEvent::Read {
        base.st.borrow_mut(py).read_queued = false;
    }
    let res = T::on_event(slf, event);
    drop(entered);
    res
}

/// Queues an event for the ready queue: a read only once, and only while
/// the transport may read.
pub(super) fn queue<T: Transport + IoOwner>(slf: &Bound<'_, T>, event: IoEvent) {
    let py = slf.py();
    let base = slf.get().base();
    if event == IoEvent::Read {
        let mut st = base.st.borrow_mut(py);
        if st.read_queued || !st.can_read() {
            return;
        }
        st.read_queued = true;
    }
    base.reactor.get().push(py, io_ref(slf), event);
}

/// Joins the loop's poller.
pub(super) fn attach<T: Transport + IoOwner>(slf: &Bound<'_, T>) -> PyResult<()> {
    let py = slf.py();
    let this = slf.get();
    let base = this.base();
    base.reactor.get().register_io(py, base.fd, io_ref(slf), this.interest()).map_err(|e| os_error(&e))?;
    base.st.borrow_mut(py).registered = true;
    Ok(())
}

/// Leaves the poller and drops the protocol (after `connection_lost`).
pub(super) fn detach<T: Transport>(slf: &Bound<'_, T>) {
    let py = slf.py();
    let base = slf.get().base();
    let (registered, dropped) = {
        let mut st = base.st.borrow_mut(py);
        let registered = std::mem::replace(&mut st.registered, false);
        (registered, (st.protocol.take(), st.transport.take(), st.release()))
    };
    if registered {
        base.reactor.get().unregister_io(py, base.fd);
    }
    drop(dropped);
}

/// Starts reading (asyncio does it in a callback after `connection_made`).
pub(super) fn start_reading<T: Transport + IoOwner>(slf: &Bound<'_, T>) {
    slf.get().base().st.borrow_mut(slf.py()).started = true;
    queue(slf, IoEvent::Read);
}

/// Resumes reading; on a closed loop it fails after marking the transport
/// as reading, as asyncio's (its `_add_reader` raises).
pub(super) fn resume_reading<T: Transport + IoOwner>(slf: &Bound<'_, T>) -> PyResult<bool> {
    let base = slf.get().base();
    {
        let mut st = base.st.borrow_mut(slf.py());
        if st.closing || !st.paused {
            return Ok(false);
        }
        st.paused = false;
    }
    base.reactor.get().check_closed()?;
    queue(slf, IoEvent::Read);
    Ok(true)
}

/// The Python-visible methods every transport core answers alike, its
/// `IoOwner` entry points and its `HasBase` (`$kind`: its state's `Kind`;
/// `$write_ready`: asyncio's name of its writer callback).
///
/// PyO3 takes one `#[pymethods]` block per class (the `multiple-pymethods`
/// feature costs an allocation on every type lookup, i.e. every method call),
/// so each type's own methods are passed in and spliced into the block.
macro_rules! transport_methods {
    ($ty:ty, $kind:ty, $write_ready:literal, { $($own:tt)* }) => {
        impl super::base::HasBase for $ty {
            type Kind = $kind;
            const WRITE_READY: &'static str = $write_ready;

            fn base(&self) -> &super::base::Base<$kind> {
                &self.io
            }
        }

        impl $crate::reactor::IoOwner for $ty {
            fn wants(slf: &Bound<'_, Self>, ev: &ferroloop_core::Readiness) -> ferroloop_core::Interest {
                super::base::wants(slf, ev)
            }

            fn run(slf: &Bound<'_, Self>, event: $crate::reactor::IoEvent) -> PyResult<()> {
                super::base::run(slf, event)
            }
        }

        #[pymethods]
        impl $ty {
            $($own)*

            /// Joins the loop's poller; called once the Python transport is ready.
            fn attach(slf: &Bound<'_, Self>) -> PyResult<()> {
                super::base::attach(slf)
            }

            /// Leaves the poller and drops the protocol (after `connection_lost`).
            fn detach(slf: &Bound<'_, Self>) {
                super::base::detach(slf);
            }

            /// Starts reading (asyncio does it in a callback after `connection_made`).
            fn start_reading(slf: &Bound<'_, Self>) {
                super::base::start_reading(slf);
            }

            fn get_write_buffer_size(&self, py: Python<'_>) -> usize {
                self.io.get_write_buffer_size(py)
            }

            /// `(low, high)`, as asyncio's `get_write_buffer_limits`.
            fn get_write_buffer_limits(&self, py: Python<'_>) -> PyResult<(Py<PyAny>, Py<PyAny>)> {
                self.io.get_write_buffer_limits(py)
            }

            /// asyncio's `set_write_buffer_limits`: new marks, then the protocol is
            /// paused if the buffer is above the new high-water mark.
            #[pyo3(signature = (high = None, low = None))]
            fn set_write_buffer_limits(
                &self,
                py: Python<'_>,
                high: Option<Bound<'_, PyAny>>,
                low: Option<Bound<'_, PyAny>>,
            ) -> PyResult<()> {
                self.io.set_write_buffer_limits(py, high, low)
            }

            /// Whether the protocol was asked to pause writing (and not to resume).
            #[getter]
            fn protocol_paused(&self, py: Python<'_>) -> bool {
                self.io.st.borrow(py).flow.paused
            }

            fn is_reading(&self, py: Python<'_>) -> bool {
                self.io.is_reading(py)
            }

            fn is_closing(&self, py: Python<'_>) -> bool {
                self.io.st.borrow(py).closing
            }

            fn pause_reading(&self, py: Python<'_>) -> bool {
                self.io.pause_reading(py)
            }

            /// Resumes reading; on a closed loop it fails after marking the
            /// transport as reading, as asyncio's (its `_add_reader` raises).
            fn resume_reading(slf: &Bound<'_, Self>) -> PyResult<bool> {
                super::base::resume_reading(slf)
            }

            /// `close()`: marks closing; returns whether the buffer is empty (then
            /// the caller schedules `connection_lost`, and counts it lost), None if
            /// closing already.
            fn begin_close(&self, py: Python<'_>) -> Option<bool> {
                self.io.begin_close(py)
            }

            /// `_force_close()`: drops the buffer, marks closing and lost; returns
            /// false if the connection was already lost.
            fn force_close(&self, py: Python<'_>) -> bool {
                self.io.force_close(py)
            }

            #[getter]
            fn conn_lost(&self, py: Python<'_>) -> u32 {
                self.io.st.borrow(py).conn_lost
            }

            #[getter]
            fn writing(&self, py: Python<'_>) -> bool {
                !self.io.st.borrow(py).buffer_empty()
            }
        }
    };
}

pub(super) use transport_methods;
