//! What the loop runs: user handles (`Handle`, `TimerHandle`), the C Task's own
//! step and wake-up queued without a handle, and the guard of thread-safe
//! handles.
//!
//! Must not name the loop (`event_loop`) or a transport: what a handle needs of
//! its loop comes through [`handles::LoopHooks`], which the loop registers.

mod handles;
mod run_guard;
mod task_calls;

pub(crate) use handles::{
    new_handle, set_loop_hooks, Handle, HandleCore, LoopHooks, Queued, QueuedTimer, TimerHandle,
};
pub(crate) use task_calls::{is_task_callback, TaskCall};

pub(crate) fn register(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    handles::register(m)?;
    task_calls::register(m)
}
