//! Per-task accounting: how many steps each task took and how long they ran.
//!
//! Owns: one loop's table, keyed by the task's address, of a weak reference
//! to the task and its step count, total and longest step. The loop records
//! into it from `run_one` when tracking is on (`ferroloop.health.track_tasks`)
//! and the step belonged to a task (`callbacks::task_of`); `top_tasks` reads it.
//!
//! Must not: keep a task alive (only weak references, which the cycle
//! collector does not track), or name the loop.
//!
//! Invariants: an entry whose weak reference is alive names the task at its
//! address (two live objects never share one), so a live entry found under a
//! task's address is that task's; a dead one is replaced by the next task
//! allocated there. Dead entries are dropped whenever the table reaches
//! `prune_at`, which then becomes twice the live count (at least
//! [`MIN_PRUNE`]): the table holds at most about twice the tasks alive and
//! tracked, and pruning costs O(1) amortised per new task.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

use pyo3::prelude::*;

use crate::capi::gc;
use pyo3::types::PyWeakrefMethods;
use pyo3::types::PyWeakrefReference;

const MIN_PRUNE: usize = 1024;

/// The table's hash of a task address: a multiply and a fold (the default
/// SipHash is a measurable part of a step's cost, and addresses need no
/// protection from chosen collisions: they are not the user's to pick).
#[derive(Default)]
struct AddrHasher(u64);

impl Hasher for AddrHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }

    fn write_usize(&mut self, addr: usize) {
        // Objects are 16-byte aligned: the low bits carry nothing.
        let h = (addr as u64 >> 4).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 = h ^ (h >> 29);
    }
}

type AddrMap<V> = HashMap<usize, V, BuildHasherDefault<AddrHasher>>;

struct Entry {
    task: Py<PyWeakrefReference>,
    steps: u64,
    total: f64,
    max: f64,
}

/// One loop's per-task step counts and times.
pub(crate) struct TaskTable {
    entries: AddrMap<Entry>,
    prune_at: usize,
}

impl Default for TaskTable {
    fn default() -> Self {
        Self { entries: AddrMap::default(), prune_at: MIN_PRUNE }
    }
}

impl TaskTable {
    /// One step of `task` ran for `seconds`. A task that cannot be weakly
    /// referenced is not counted.
    pub(crate) fn record(&mut self, task: &Bound<'_, PyAny>, seconds: f64) {
        let key = task.as_ptr() as usize;
        if let Some(e) = self.entries.get_mut(&key) {
            if e.task.bind(task.py()).upgrade().is_some() {
                e.steps += 1;
                e.total += seconds;
                e.max = e.max.max(seconds);
                return;
            }
        }
        let Ok(weak) = PyWeakrefReference::new(task) else { return };
        // SAFETY: a live `weakref.ref` (exact type: `new` never returns a
        // subclass) without a callback refers to nothing the collector could
        // follow, so it can be in no cycle; its deallocation checks whether
        // it is tracked before unlinking it. Untracked, the weak references
        // of many live tasks cost the collector nothing.
        unsafe { gc::untrack(weak.as_ptr()) };
        if self.entries.len() >= self.prune_at {
            self.prune(task.py());
        }
        self.entries.insert(key, Entry { task: weak.unbind(), steps: 1, total: seconds, max: seconds });
    }

    /// Drops the entries of dead tasks.
    fn prune(&mut self, py: Python<'_>) {
        self.entries.retain(|_, e| e.task.bind(py).upgrade().is_some());
        self.prune_at = (self.entries.len() * 2).max(MIN_PRUNE);
    }

    /// The `n` live tasks with the most time in their steps, most first:
    /// `(task, steps, total seconds, longest step)`.
    pub(crate) fn top<'py>(&mut self, py: Python<'py>, n: usize) -> Vec<(Bound<'py, PyAny>, u64, f64, f64)> {
        self.prune(py);
        let mut rows: Vec<_> = self
            .entries
            .values()
            .filter_map(|e| e.task.bind(py).upgrade().map(|t| (t, e.steps, e.total, e.max)))
            .collect();
        rows.sort_by(|a, b| b.2.total_cmp(&a.2));
        rows.truncate(n);
        rows
    }

    /// Forgets every task.
    pub(crate) fn clear(&mut self) {
        self.entries.clear();
        self.prune_at = MIN_PRUNE;
    }
}
