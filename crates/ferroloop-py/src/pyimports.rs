//! The registry of Python objects the native code calls, imported once per
//! interpreter. Rust calls no other Python function by name: what is here is
//! Python for a stated reason (cold, or asyncio's own object, or asyncio's
//! exact text and logging), and each entry says which.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

/// `fn $name(py) -> PyResult<&Bound<PyAny>>`: `$module.$attr`, looked up once.
macro_rules! cached_attr {
    ($(#[$doc:meta])* $name:ident, $module:literal, $attr:literal) => {
        $(#[$doc])*
        pub(crate) fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            CELL.get_or_try_init(py, || Ok::<_, PyErr>(py.import($module)?.getattr($attr)?.unbind()))
                .map(|v| v.bind(py))
        }
    };
}

cached_attr!(futures_dict, "asyncio.futures", "__dict__");
cached_attr!(tasks_dict, "asyncio.tasks", "__dict__");

/// `futures.Future`, looked up on each call as asyncio's `create_future` does
/// (tests and tools swap in the Python implementation).
pub(crate) fn future_type(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    futures_dict(py)?.get_item(pyo3::intern!(py, "Future"))
}

/// `tasks.Task`, looked up on each call as asyncio's `create_task` does.
pub(crate) fn task_type(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    tasks_dict(py)?.get_item(pyo3::intern!(py, "Task"))
}

/// asyncio's `events._ThreadSafeHandle`, on the Pythons that have it (3.14, and
/// the maintenance releases it was backported to).
pub(crate) fn threadsafe_handle_type(py: Python<'_>) -> PyResult<Option<&Bound<'_, PyAny>>> {
    static CELL: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let cls = CELL.get_or_try_init(py, || {
        let events = py.import("asyncio.events")?;
        Ok::<_, PyErr>(events.getattr("_ThreadSafeHandle").ok().map(Bound::unbind))
    })?;
    Ok(cls.as_ref().map(|c| c.bind(py)))
}

/// `asyncio.events._get_running_loop` (the C module's, where there is one):
/// a task made while its loop runs finds the loop itself. None on a Python
/// without it (the fence reports that): tasks are then given their loop.
pub(crate) fn running_loop(py: Python<'_>) -> PyResult<Option<&Bound<'_, PyAny>>> {
    static CELL: PyOnceLock<Option<Py<PyAny>>> = PyOnceLock::new();
    let f = CELL.get_or_try_init(py, || {
        Ok::<_, PyErr>(py.import("asyncio.events")?.getattr("_get_running_loop").ok().map(Bound::unbind))
    })?;
    Ok(f.as_ref().map(|f| f.bind(py)))
}

/// `BaseEventLoop.create_task`: asyncio's own `create_task`, taken when a
/// task factory is set, in debug mode, or for keywords the fast path does not
/// know (its exact rules, per Python version).
pub(crate) fn base_create_task(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
    static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
    CELL.get_or_try_init(py, || {
        let base = py.import("asyncio.base_events")?.getattr("BaseEventLoop")?;
        Ok::<_, PyErr>(base.getattr("create_task")?.unbind())
    })
    .map(|v| v.bind(py))
}

// ---- the loop's and handles' cold paths (ferroloop._helpers) ----------------

cached_attr!(
    /// Debug-mode checks of a callback (coroutine functions refused, with
    /// asyncio's messages): debug mode only.
    check_callback, "ferroloop._helpers", "check_callback"
);
cached_attr!(
    /// asyncio's `selectors` fd conversion (`fileno()`, its errors): once
    /// per `add_reader`.
    fileobj_to_fd, "ferroloop._helpers", "fileobj_to_fd"
);
cached_attr!(
    /// The creation traceback of a handle in debug mode (`traceback` module).
    extract_stack, "ferroloop._helpers", "extract_stack"
);
cached_attr!(
    /// A handle's `repr`, asyncio's format (`format_helpers`).
    handle_repr, "ferroloop._helpers", "handle_repr"
);
cached_attr!(
    /// A callback's exception to the loop's exception handler, with asyncio's
    /// message and creation traceback: an error path.
    report_callback_error, "ferroloop._helpers", "report_callback_error"
);
cached_attr!(
    /// `_run()` of a cancelled handle: asyncio's `_run` with the callback
    /// `cancel()` released, and the error it reports. An error path.
    run_cancelled_handle, "ferroloop._helpers", "run_cancelled_handle"
);
cached_attr!(
    /// The debug-mode warning for a slow callback (asyncio's logger).
    warn_slow_callback, "ferroloop._helpers", "warn_slow_callback"
);

// ---- the transports' cold paths ----------------------------------------------

cached_attr!(
    /// asyncio's warning for repeated writes after the connection was lost
    /// (its logger).
    warn_send_after_lost, "ferroloop._helpers", "warn_send_after_lost"
);
cached_attr!(
    /// The `TypeError` of a `write()` of something not bytes-like, with the
    /// running Python's wording.
    write_type_error, "ferroloop._helpers", "write_type_error"
);
cached_attr!(
    /// End of stream: `protocol.eof_received()` and closing (once per
    /// connection; follows asyncio's `_read_ready__on_eof`).
    transport_on_eof, "ferroloop._transport_base", "on_eof"
);
cached_attr!(
    /// asyncio's `_fatal_error`: logging, the exception handler, the forced
    /// close (an error path).
    transport_fatal_error, "ferroloop._transport_base", "fatal_error"
);
cached_attr!(
    /// A failed flush: the fatal error, and `loop.sendfile()`'s waiter.
    transport_write_failed, "ferroloop._transport_base", "write_failed"
);
cached_attr!(
    /// The buffer drained while closing, half-closed or handing over to
    /// `loop.sendfile()`: once per connection.
    transport_write_drained, "ferroloop._transport_base", "write_drained"
);
cached_attr!(
    /// A child ended: asyncio's own `_process_exited` bookkeeping, per
    /// Python version (once per child).
    child_exited, "ferroloop._subprocess", "child_exited"
);
cached_attr!(
    /// `sendto` on a datagram transport whose socket is closed: asyncio's
    /// failure, reproduced (an error path).
    datagram_send_closed, "ferroloop._datagram", "send_closed"
);
cached_attr!(
    /// A callback the health watchdog asked about has ended: its blame
    /// report is Python (logging, the user's callback); at most once per
    /// watchdog period.
    health_callback_ended, "ferroloop.health", "_callback_ended"
);
cached_attr!(
    /// The user's instrumentation hooks, when set (`set_hooks`): Python by
    /// nature; unset, they cost one branch per callback.
    health_run_hook, "ferroloop.health", "_run_hook"
);
cached_attr!(
    /// TLS bytes fed outside the steady state (handshake, shutdown, paused
    /// reading, a `BufferedProtocol` application): asyncio's `buffer_updated`
    /// steps, per Python version.
    tls_after_feed, "ferroloop._tls", "after_feed"
);
cached_attr!(
    /// The end of a TLS read that has more to do than deliver (close_notify,
    /// queued output, flow control to change): asyncio's `_do_read` tail.
    tls_finish_read, "ferroloop._tls", "finish_read"
);
cached_attr!(
    /// An error of a native TLS step: asyncio's `_fatal_error` (logging, the
    /// exception handler, the forced close).
    tls_fatal, "ferroloop._tls", "fatal"
);
cached_attr!(
    /// A TLS `write()` outside the steady state (a type error, closing,
    /// queued output): asyncio's own transport method.
    tls_write_slow, "ferroloop._tls", "write_slow"
);
cached_attr!(
    /// OpenSSL could not take all of a TLS write now: asyncio's
    /// `_write_appdata` for the rest (renegotiation, a rare path).
    tls_write_rest, "ferroloop._tls", "write_rest"
);
cached_attr!(
    /// The TLS application's writing to pause or resume: asyncio's
    /// `_control_app_writing` (its calls and their error reports).
    tls_control_app_writing, "ferroloop._tls", "control_app_writing"
);
cached_attr!(
    /// `ssl.SSLWantReadError`: OpenSSL needs more bytes (not an error).
    ssl_want_read, "ssl", "SSLWantReadError"
);
cached_attr!(
    /// `ssl.SSLWantWriteError`: asyncio treats it as `SSLWantReadError`.
    ssl_want_write, "ssl", "SSLWantWriteError"
);
cached_attr!(
    /// A TLS `BufferedProtocol` application's buffer filled up: asyncio reads
    /// on in a later callback (its `call_soon(_do_read)`).
    tls_schedule_read, "ferroloop._tls", "schedule_read"
);
cached_attr!(
    /// A TLS `writelines()` of something other than a list or tuple of
    /// bytes, or outside the steady state: asyncio's own transport method.
    tls_writelines_slow, "ferroloop._tls", "writelines_slow"
);
