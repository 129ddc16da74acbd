//! The loop's health probes: what `loop.health()` and the watchdog read.
//!
//! Recording happens in the iteration (run.rs): two clock reads around the
//! poll (one when the poll is skipped, none in most iterations that neither
//! poll nor have timers: `Probes::sample`), a histogram entry per due timer
//! and one per batch, and per callback a heartbeat store plus one comparison with
//! the watchdog's request. Nothing here runs per callback unless
//! instruments are on: hooks (`set_hooks`) or per-task accounting
//! (`track_tasks`), whose table is here too.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::Arc;

use ferroloop_core::health::{watchdog, Heartbeat, LoopStats, Phase};
use ferroloop_core::monotonic;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use super::ready::Ready;
use super::Loop;
use crate::gil_cell::GilCell;
use crate::health::{Lag, TaskTable, HOOKS, TASKS};
use crate::pyimports::{health_callback_ended, health_run_hook};

/// The probes a loop owns besides its `LoopStats` (which live in its state).
pub(super) struct Probes {
    /// Shared with the watchdog thread (which holds it weakly).
    pub(super) heartbeat: Arc<Heartbeat>,
    /// Recording is on (`FERROLOOP_HEALTH` is not "0" when the loop was made).
    pub(super) on: bool,
    /// Per-task step counts and times (filled while tracking is on).
    pub(super) tasks: GilCell<TaskTable>,
    /// While instruments are on: the clock read when the previous callback
    /// ended (or the iteration's read after the poll), as bits of an `f64`,
    /// if the callback about to run follows it directly; NaN otherwise. A
    /// step that follows a timed callback starts at its end instead of
    /// reading the clock again, and the iteration's read before the poll is
    /// the last callback's end: one read per step, not three.
    chain: AtomicU64,
    /// The instruments word (`health::instruments()`) `chain` was read
    /// under: a read kept from another setting (instruments off meanwhile,
    /// or changed) is not used.
    chain_word: AtomicU32,
    /// Iterations that polled nothing and had no timers, counted to pick
    /// the ones that take a clock reading anyway ([`Probes::sample`]).
    unread: AtomicU32,
}

/// Of each run of this many callback-only iterations, the first two read
/// the clock: the second one's batch wait is then exact, and the rest of the
/// run costs no clock read (32 ns on the reference VM, 5% of a `sleep(0)`
/// iteration).
const SAMPLE_EVERY: u32 = 16;

impl Probes {
    pub(super) fn new() -> Self {
        Self {
            heartbeat: Arc::new(Heartbeat::default()),
            on: crate::health::enabled_by_env(),
            tasks: GilCell::new(TaskTable::default()),
            chain: AtomicU64::new(f64::NAN.to_bits()),
            chain_word: AtomicU32::new(0),
            unread: AtomicU32::new(0),
        }
    }

    /// Whether a callback-only iteration (no poll, no timer) reads the
    /// clock: two consecutive ones in every [`SAMPLE_EVERY`]. Only the loop's
    /// thread counts (a load and a store, no read-modify-write).
    #[inline]
    pub(super) fn sample(&self) -> bool {
        let n = self.unread.load(Ordering::Relaxed);
        self.unread.store(n.wrapping_add(1), Ordering::Relaxed);
        n % SAMPLE_EVERY < 2
    }

    /// The next callback does not directly follow a timed one.
    #[inline]
    pub(super) fn break_chain(&self) {
        self.chain.store(f64::NAN.to_bits(), Ordering::Relaxed);
    }

    /// The previous callback's end, if it was timed under instruments word
    /// `word` and nothing ran since (the chain is broken afterwards).
    #[inline]
    pub(super) fn take_chain(&self, word: u32) -> Option<f64> {
        let t = f64::from_bits(self.chain.swap(f64::NAN.to_bits(), Ordering::Relaxed));
        (!t.is_nan() && self.chain_word.load(Ordering::Relaxed) == word).then_some(t)
    }

    /// The next callback starts at `now` (None: it reads the clock), under
    /// instruments word `word`.
    #[inline]
    pub(super) fn set_chain(&self, now: Option<f64>, word: u32) {
        self.chain.store(now.unwrap_or(f64::NAN).to_bits(), Ordering::Relaxed);
        self.chain_word.store(word, Ordering::Relaxed);
    }

    /// When the callback about to run began: the previous one's end, if it
    /// directly precedes it under the same word, else the clock now.
    #[inline]
    fn chain_start(&self, word: u32) -> f64 {
        let t = f64::from_bits(self.chain.load(Ordering::Relaxed));
        if t.is_nan() || self.chain_word.load(Ordering::Relaxed) != word {
            monotonic()
        } else {
            t
        }
    }
}

/// The task a ready item steps or wakes, if it does.
fn task_of<'py>(py: Python<'py>, cb: &Ready) -> Option<Bound<'py, PyAny>> {
    match cb {
        Ready::Task(call) => call.task(py),
        Ready::Plain(h) => h.0.get().core.task(py),
        Ready::Timer(_) | Ready::Io(..) | Ready::Sock(..) => None,
    }
}

impl Loop {
    /// The loop starts running: the watchdog thread looks at it.
    pub(super) fn health_watch(&self) {
        if self.probes.on {
            watchdog::watch(&self.probes.heartbeat);
        }
    }

    /// The loop stopped or closed: the watchdog forgets it (and ends with
    /// the last running loop).
    pub(super) fn health_unwatch(&self) {
        watchdog::unwatch(&self.probes.heartbeat);
    }

    /// The loop closed: the watchdog forgets it, and if no loop runs its
    /// thread ends now and is joined, rather than lingering a second.
    pub(super) fn health_closed(&self) {
        watchdog::unwatch(&self.probes.heartbeat);
        watchdog::end_if_idle();
    }

    /// The watchdog asked to hear of callback `seq`'s end, and it has ended:
    /// hand the Python side what ran (the handle, or the kind of native
    /// work) and how long it ran at least (since the watchdog saw it; one
    /// clock read, at most once per watchdog period). Errors are the report's, not the callback's: they are dropped
    /// here after Python's unraisable hook saw them.
    #[cold]
    pub(super) fn health_callback_ended(slf: &Bound<'_, Self>, cb: &Ready, seq: u64) {
        let py = slf.py();
        let beat = &slf.get().probes.heartbeat;
        let seconds = (monotonic() - beat.armed_since()).max(0.0);
        beat.arm(None, 0.0);
        let what = describe(py, cb);
        if let Err(e) = health_callback_ended(py).and_then(|f| f.call1((slf, what, seq, seconds))) {
            e.write_unraisable(py, Some(slf.as_any()));
        }
    }

    /// `run_one` with instruments on (`instruments`: `HOOKS`, `TASKS`):
    /// times the callback (one clock read at its end; its start is the end
    /// of the callback before when that one was timed and ran just before,
    /// else one more read), adds a task step's time to its task's entry, and
    /// hands the callback to `ferroloop.health._run_hook` when hooks are
    /// set. A hook's error is the hook's: reported as unraisable, never the
    /// callback's.
    #[inline(never)]
    pub(super) fn run_instrumented(slf: &Bound<'_, Self>, cb: &Ready, instruments: u32) -> PyResult<()> {
        let py = slf.py();
        let probes = &slf.get().probes;
        // Taken before the run: a one-shot handle releases its callback.
        let task = if instruments & TASKS != 0 { task_of(py, cb) } else { None };
        let hooked = instruments & HOOKS != 0;
        if task.is_none() && !hooked {
            probes.break_chain();
            return Self::run_one_probed(slf, cb);
        }
        let t0 = probes.chain_start(instruments);
        let res = Self::run_one_probed(slf, cb);
        let t1 = monotonic();
        probes.set_chain(Some(t1), instruments);
        let seconds = t1 - t0;
        if let Some(task) = task {
            probes.tasks.borrow_mut(py).record(&task, seconds);
        }
        if hooked {
            let what = describe(py, cb);
            if let Err(e) = health_run_hook(py).and_then(|f| f.call1((slf, what, seconds))) {
                e.write_unraisable(py, Some(slf.as_any()));
            }
            // The hook's own time is no step's.
            probes.break_chain();
        }
        res
    }

    /// Forgets every task's counts.
    pub(super) fn health_tasks_clear(&self, py: Python<'_>) {
        self.probes.tasks.borrow_mut(py).clear();
    }

    #[inline]
    pub(super) fn set_phase(&self, phase: Phase) {
        if self.probes.on {
            self.probes.heartbeat.set_phase(phase);
        }
    }

    /// The loop polls, since the clock read `since` (its health reading
    /// before the poll; always there when recording is on and it polls).
    #[inline]
    pub(super) fn set_polling(&self, since: Option<f64>) {
        if self.probes.on {
            self.probes.heartbeat.polling_since(since);
        }
    }
}

/// What `ferroloop.health` and the watchdog read (`health.py`, `_health_server.py`,
/// `_health_export.py`).
#[pymethods]
impl Loop {
    /// `(phase, seq)`: 0 stopped, 1 polling, 2 in a callback; `seq` counts
    /// the callbacks begun. Read by the watchdog (any thread, under the GIL).
    #[pyo3(name = "_health_probe")]
    fn health_probe(&self) -> (u8, u64) {
        let (phase, seq) = self.probes.heartbeat.read();
        (phase as u8, seq)
    }

    /// The snapshot's raw fields, in `ferroloop.health.HealthSnapshot`'s order.
    ///
    /// True at the moment it is taken, from any thread: a poll in progress
    /// counts as idle up to now (the heartbeat says when it began; the loop
    /// thread changes it only with the GIL, which the caller holds, so it
    /// agrees with the totals), a callback in progress as active, and the
    /// timers already past their deadline show how late they are now.
    #[pyo3(name = "_health_stats")]
    fn health_stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let (stats, depth, timers, overdue) = {
            let st = self.state.borrow(py);
            let polling_since = self.probes.heartbeat.poll_start();
            let now = monotonic();
            let overdue = overdue(&st.ready, st.timers.earliest_live(), now);
            (st.stats.snapshot(now, polling_since), st.ready.len(), st.timers.len(), overdue)
        };
        let LoopStats { timer_lag, ready_wait, idle, active, iterations, io_events, .. } = stats;
        (
            Lag(timer_lag),
            Lag(ready_wait),
            idle,
            active,
            iterations,
            self.probes.heartbeat.seq(),
            io_events,
            depth,
            self.reactor().watched_count(py),
            timers,
            overdue,
            self.probes.on,
        )
            .into_pyobject(py)
    }

    /// The `n` tracked tasks with the most time in their steps, most first:
    /// `(task, steps, total seconds, longest step)`.
    #[pyo3(name = "_health_tasks")]
    fn health_tasks<'py>(&self, py: Python<'py>, n: usize) -> Vec<(Bound<'py, PyAny>, u64, f64, f64)> {
        self.probes.tasks.borrow_mut(py).top(py, n)
    }
}

/// How far past its deadline, at `now`, is the most overdue timer that has
/// not run: the first live timer in the ready queue (moved there, not yet
/// run: the queue holds them in deadline order) or the earliest still
/// waiting (`waiting`); 0.0 when none is late. The scan of the ready queue
/// stops at its first live timer (it reads the whole queue only when it
/// holds none): snapshots are read seldom, never on the loop's path.
fn overdue(ready: &VecDeque<Ready>, waiting: Option<f64>, now: f64) -> f64 {
    let queued = ready.iter().find_map(|r| match r {
        Ready::Timer(t) if !t.0.get().core.is_cancelled() => Some(t.0.get().when),
        _ => None,
    });
    [queued, waiting].into_iter().flatten().map(|when| now - when).fold(0.0, f64::max)
}

/// What a ready item is, for a report: the handle, or the kind of native work.
fn describe(py: Python<'_>, cb: &Ready) -> Py<PyAny> {
    match cb {
        Ready::Plain(h) => h.0.clone_ref(py).into_any(),
        Ready::Timer(t) => t.0.clone_ref(py).into_any(),
        Ready::Task(_) => pyo3::intern!(py, "a task step").clone().into_any().unbind(),
        Ready::Io(..) => pyo3::intern!(py, "a transport's read or write").clone().into_any().unbind(),
        Ready::Sock(..) => pyo3::intern!(py, "a sock_* operation").clone().into_any().unbind(),
    }
}
