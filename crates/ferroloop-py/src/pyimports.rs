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
cached_attr!(future_type, "asyncio", "Future");
cached_attr!(task_type, "asyncio", "Task");

/// A function of `ferroloop._helpers` (the cold paths written in Python).
pub(crate) fn helper<'py>(py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyAny>> {
    helpers(py)?.get_item(name)
}
