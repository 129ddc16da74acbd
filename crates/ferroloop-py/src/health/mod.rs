//! Loop health on the Python side: the histogram type snapshots hand out, and
//! whether the loop records at all.
//!
//! The recording itself is ferroloop-core's (`health`); the loop calls it from
//! its iteration (event_loop/run.rs). Blame for a blocked loop is Python
//! (`ferroloop.health`): a watchdog thread reads the loop's heartbeat through
//! `Loop._health_probe` and samples the loop thread's stack under the GIL.
//! Per-task accounting is `task_stats` (the table) and the `TASKS` flag here.
//! Must not: name the loop (health sits below event_loop).

mod task_stats;

use std::sync::atomic::{AtomicU32, Ordering};

use ferroloop_core::health::{watchdog, LagHistogram};
use pyo3::prelude::*;

pub(crate) use task_stats::TaskTable;

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Lag>()?;
    if std::env::var_os("FERROLOOP_TRACK_TASKS").is_some_and(|v| !v.is_empty() && v != "0") {
        set_flag(TASKS, true);
    }
    m.add_function(wrap_pyfunction!(_health_period, m)?)?;
    m.add_function(wrap_pyfunction!(_health_pause_watchdog, m)?)?;
    m.add_function(wrap_pyfunction!(_health_track_tasks, m)?)?;
    m.add_function(wrap_pyfunction!(_health_hooks, m)?)
}

/// Instrumentation hooks are set (`ferroloop.health.set_hooks`).
pub(crate) const HOOKS: u32 = 1;
/// Per-task accounting is on (`ferroloop.health.track_tasks`).
pub(crate) const TASKS: u32 = 2;
const FLAGS: u32 = 0xff;

/// What instruments every callback, process-wide: the one word `run_one`
/// tests per callback, so with none on they cost one branch. Zero when none
/// is on; otherwise the flags in the low byte and, above them, a number that
/// changes with every change of the flags, so that a loop can tell whether
/// a clock read it kept was taken under the same setting (event_loop/probes.rs).
static INSTRUMENTS: AtomicU32 = AtomicU32::new(0);
/// The last number given to a setting with an instrument on.
static EPOCH: AtomicU32 = AtomicU32::new(0);

#[inline]
pub(crate) fn instruments() -> u32 {
    INSTRUMENTS.load(Ordering::Relaxed)
}

/// Changes one flag. Called with the GIL held (from Python, or at import),
/// which serialises the changes.
fn set_flag(flag: u32, on: bool) {
    let old = INSTRUMENTS.load(Ordering::Relaxed) & FLAGS;
    let flags = if on { old | flag } else { old & !flag };
    let word = if flags == 0 {
        0
    } else {
        let epoch = EPOCH.fetch_add(1, Ordering::Relaxed).wrapping_add(1) & (u32::MAX >> 8);
        (epoch << 8) | flags
    };
    INSTRUMENTS.store(word, Ordering::Relaxed);
}

#[pyfunction]
fn _health_hooks(on: bool) {
    set_flag(HOOKS, on);
}

/// Turns per-task accounting on or off (`None`: leaves it); returns whether
/// it is on (`FERROLOOP_TRACK_TASKS=1` turns it on at import).
#[pyfunction]
#[pyo3(signature = (on = None))]
fn _health_track_tasks(on: Option<bool>) -> bool {
    if let Some(on) = on {
        set_flag(TASKS, on);
    }
    instruments() & TASKS != 0
}

/// How often the watchdog thread looks at running loops, in seconds
/// (`ferroloop.health` sets a quarter of the smallest block threshold).
/// Ends the watchdog thread before a fork (`pause`), or lets it run again.
#[pyfunction]
fn _health_pause_watchdog(pause: bool) {
    if pause {
        watchdog::pause();
    } else {
        watchdog::resume();
    }
}

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

    /// Cumulative counts of the values at most each of `bounds` (seconds,
    /// ascending): Prometheus `le` buckets, exact at bucket boundaries.
    fn buckets(&self, bounds: Vec<f64>) -> Vec<u64> {
        bounds
            .into_iter()
            .map(|b| {
                // Microseconds; `as` saturates (NaN and negatives give 0).
                #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                let us = (b * 1e6) as u64;
                self.0.count_at_most(us)
            })
            .collect()
    }

    /// An estimate of the sum of the values, in seconds (within 3.2 %).
    #[getter]
    fn sum(&self) -> f64 {
        secs(self.0.sum_estimate())
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
