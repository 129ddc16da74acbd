//! Signal handlers: the native half of `add_signal_handler`.
//!
//! The Python layer validates the signal and installs a no-op Python-level
//! handler (so CPython's C handler writes the signal number to our wake-up
//! fd); here we keep the handle per signal and, when the channel is readable,
//! queue the handles of the signals that arrived. A cancelled handle removes
//! its registration, as asyncio's `_handle_signal` does.

use pyo3::prelude::*;

use super::ready::Ready;
use super::Loop;
use crate::callbacks::Queued;

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
