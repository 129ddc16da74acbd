//! Python objects the native code needs, imported once per interpreter.

use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;

macro_rules! cached_attr {
    ($name:ident, $module:literal, $attr:literal) => {
        pub(crate) fn $name(py: Python<'_>) -> PyResult<&Bound<'_, PyAny>> {
            static CELL: PyOnceLock<Py<PyAny>> = PyOnceLock::new();
            CELL.get_or_try_init(py, || Ok::<_, PyErr>(py.import($module)?.getattr($attr)?.unbind()))
                .map(|v| v.bind(py))
        }
    };
}

cached_attr!(helpers, "ferroloop._helpers", "__dict__");
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

/// A function of `ferroloop._helpers` (the cold paths written in Python).
pub(crate) fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    helpers(py)?.get_item(name)
}
