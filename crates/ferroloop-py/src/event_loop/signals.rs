//! Signal handlers: the native half of `add_signal_handler`.
//!
//! The Python layer validates the signal and installs a no-op Python-level
//! handler (so CPython's C handler writes the signal number to our wake-up
//! fd); here we keep the handle per signal and, when the channel is readable,
//! queue the handles of the signals that arrived. A cancelled handle removes
//! its registration, as asyncio's `_handle_signal` does.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::ready::Ready;
use super::Loop;
use crate::callbacks::{new_handle, Handle, Queued};

impl Loop {
    pub(super) fn dispatch_signals(slf: &Bound<'_, Self>) -> PyResult<()> {
        let py = slf.py();
        let this = slf.get();
        let mut signums = std::mem::take(&mut this.state.borrow_mut(py).signums);
        this.signals.drain(&mut signums);
        let mut cancelled = Vec::new();
        {
            let mut st = this.state.borrow_mut(py);
            for &sig in &signums {
                let Some(h) = st.signal_handlers.get(&i32::from(sig)) else { continue };
                if h.get().core.is_cancelled() {
                    cancelled.push(i32::from(sig));
                } else {
                    let h = h.clone_ref(py);
                    st.ready.push_back(Ready::Plain(Queued::new(h)));
                }
            }
            signums.clear();
            st.signums = signums;
        }
        for sig in cancelled {
            slf.call_method1(pyo3::intern!(py, "remove_signal_handler"), (sig,))?;
        }
        Ok(())
    }
}

/// The native half of `add_signal_handler`/`remove_signal_handler` (`_loop.py`).
#[pymethods]
impl Loop {
    /// The fd CPython's signal handler writes to (`signal.set_wakeup_fd`).
    fn _signal_wakeup_fd(&self) -> i32 {
        self.signals.write_fd()
    }

    #[pyo3(signature = (sig, callback, *args))]
    fn _set_signal_handle(
        slf: &Bound<'_, Self>,
        sig: i32,
        callback: Bound<'_, PyAny>,
        args: Bound<'_, PyTuple>,
    ) -> PyResult<()> {
        let py = slf.py();
        let handle = new_handle(py, Handle { core: Self::new_core(slf, callback, args, None, 0)? }, true)?;
        let old = slf.get().state.borrow_mut(py).signal_handlers.insert(sig, handle);
        drop(old);
        Ok(())
    }

    /// Forgets the handler of `sig`; returns whether there was one.
    fn _pop_signal_handle(slf: &Bound<'_, Self>, sig: i32) -> bool {
        let py = slf.py();
        let old = slf.get().state.borrow_mut(py).signal_handlers.remove(&sig);
        old.is_some()
    }

    fn _signal_handle_sigs(slf: &Bound<'_, Self>) -> Vec<i32> {
        slf.get().state.borrow(slf.py()).signal_handlers.keys().copied().collect()
    }
}
