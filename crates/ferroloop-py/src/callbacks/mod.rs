//! What the loop runs: user handles (`Handle`, `TimerHandle`), the C Task's own
//! step and wake-up queued without a handle (`task_calls`; `task_kinds` tells
//! them and their task apart), and the guard of thread-safe handles.
//!
//! Must not name the loop (`event_loop`) or a transport: what a handle needs of
//! its loop comes through [`handles::LoopHooks`], which the loop registers.

mod handles;
mod run_guard;
mod task_calls;
mod task_kinds;

pub(crate) use handles::{
    new_handle, set_loop_hooks, Handle, HandleCore, LoopHooks, Queued, QueuedTimer, TimerHandle,
};
pub(crate) use task_calls::TaskCall;
pub(crate) use task_kinds::is_task_callback;

pub(crate) fn register(m: &pyo3::Bound<'_, pyo3::types::PyModule>) -> pyo3::PyResult<()> {
    handles::register(m)?;
    task_kinds::register(m)
}
