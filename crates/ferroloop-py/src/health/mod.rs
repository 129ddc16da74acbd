//! Loop health on the Python side: the histogram type snapshots hand out, and
//! whether the loop records at all.
//!
//! The recording itself is ferroloop-core's (`health`); the loop calls it from
//! its iteration (event_loop/run.rs). Blame for a blocked loop is Python
//! (`ferroloop.health`): a watchdog thread reads the loop's heartbeat through
//! `Loop._health_probe` and samples the loop thread's stack under the GIL.
//! Must not: name the loop (health sits below event_loop).

use std::sync::atomic::{AtomicBool, Ordering};

use ferroloop_core::health::{watchdog, LagHistogram};
use pyo3::prelude::*;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lag>()?;
    m.add_function(wrap_pyfunction!(_health_period, m)?)?;
    m.add_function(wrap_pyfunction!(_health_hooks, m)?)
}

/// Whether instrumentation hooks are set (`ferroloop.health.set_hooks`): the
/// one flag `run_one` tests per callback, so unset hooks cost one branch.
static HOOKS: AtomicBool = AtomicBool::new(false);

#[inline]
pub(crate) fn hooks_set() -> bool {
    HOOKS.load(Ordering::Relaxed)
}

#[pyfunction]
fn _health_hooks(on: bool) {
    HOOKS.store(on, Ordering::Relaxed);
}

/// How often the watchdog thread looks at running loops, in seconds
/// (`ferroloop.health` sets a quarter of the smallest block threshold).
#[pyfunction]
fn _health_period(seconds: f64) {
    if seconds.is_finite() && seconds > 0.0 {
        watchdog::set_period(std::time::Duration::from_secs_f64(seconds));
    }
}

/// Whether loops record health: `FERROLOOP_HEALTH=0` turns recording off (read
/// at each loop's creation). It exists to measure what recording costs.
pub(crate) fn enabled_by_env() -> bool {
    std::env::var_os("FERROLOOP_HEALTH").is_none_or(|v| v != "0")
}

/// A frozen copy of a lag histogram, in seconds.
#[pyclass(module = "ferroloop._ferroloop", name = "Lag", frozen)]
pub(crate) struct Lag(pub(crate) LagHistogram);

#[allow(clippy::cast_precision_loss)] // microsecond counts far below 2^53
fn secs(us: u64) -> f64 {
    us as f64 / 1e6
}

#[pymethods]
impl Lag {
    /// The value at quantile `q` (0..1), in seconds; 0.0 when empty.
    fn percentile(&self, q: f64) -> f64 {
        secs(self.0.percentile(q))
    }

    #[getter]
    fn count(&self) -> u64 {
        self.0.count()
    }

    #[getter]
    fn max(&self) -> f64 {
        secs(self.0.max())
    }

    /// What was recorded after `earlier` was taken.
    fn since(&self, earlier: &Self) -> Self {
        Self(self.0.since(&earlier.0))
    }

    fn __repr__(&self) -> String {
        format!(
            "Lag(count={}, p50={:.6}, p99={:.6}, max={:.6})",
            self.0.count(),
            self.percentile(0.5),
            self.percentile(0.99),
            self.max()
        )
    }
}
