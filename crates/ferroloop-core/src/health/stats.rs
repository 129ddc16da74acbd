//! The loop's running totals: lag histograms, utilization and counters.
//!
//! Fed only with clock values the loop read for its iteration (before and
//! after the poll); nothing here reads the clock. Iterations that run only
//! callbacks (no poll, no timer) are mostly not read (`unread`): the
//! ready-wait histogram samples them in pairs of consecutive iterations. Utilization follows
//! Node's `eventLoopUtilization`: idle is the time spent in the poll, active
//! the rest of the time the loop was running.

use super::lag::LagHistogram;

/// See the module docs. All times are the loop clock's seconds.
#[derive(Clone, Default)]
pub struct LoopStats {
    /// How late timers ran: the iteration's clock after the poll minus the deadline.
    pub timer_lag: LagHistogram,
    /// How long ready callbacks waited for their batch, weighted by callback.
    pub ready_wait: LagHistogram,
    pub idle: f64,
    pub active: f64,
    pub iterations: u64,
    pub io_events: u64,
    /// The end of the last poll while running (where active time resumes).
    mark: Option<f64>,
    /// When the previous batch of ready callbacks started.
    last_batch: Option<f64>,
}

impl LoopStats {
    /// The poll of an iteration ran from `before` to `after`.
    #[inline]
    pub fn polled(&mut self, before: f64, after: f64, events: usize) {
        if let Some(mark) = self.mark {
            self.active += (before - mark).max(0.0);
        }
        self.idle += (after - before).max(0.0);
        self.mark = Some(after);
        self.iterations += 1;
        self.io_events += events as u64;
    }

    /// A batch of `n` ready callbacks starts at `now`. If callbacks were
    /// already queued when the poll began (`carried`), each waited at most
    /// since the previous batch started (it was queued after that); if not,
    /// all of them were queued after the poll, at `now` on this clock, and
    /// count as not having waited.
    #[inline]
    pub fn batch(&mut self, now: f64, n: usize, carried: bool) {
        if n > 0 {
            match (self.last_batch, carried) {
                (Some(prev), true) => self.ready_wait.record_secs(now - prev, n as u64),
                // Queued before the poll, after a batch whose start is not
                // known (the loop was stopped, or the iteration took no
                // reading): their wait is not known either.
                (None, true) => {}
                (_, false) => self.ready_wait.record_n(0, n as u64),
            }
        }
        self.last_batch = Some(now);
    }

    /// An iteration that took no clock reading (it polled nothing and had
    /// no timers): it counts, and the next batch's wait is not measured
    /// from a batch start that is not known.
    #[inline]
    pub fn unread(&mut self) {
        self.iterations += 1;
        self.last_batch = None;
    }

    /// `run_forever` returns at `now`: active time stops counting.
    pub fn stopped(&mut self, now: f64) {
        if let Some(mark) = self.mark.take() {
            self.active += (now - mark).max(0.0);
        }
        self.last_batch = None;
    }

    /// A copy that includes the running stretch up to `now`: as active
    /// time, or, when the loop is in a poll that began at `polling_since`
    /// (and has not recorded it yet), active time up to the poll's start and
    /// idle time from there. So idle and active are true at any moment, and
    /// never go back: when the poll ends, [`LoopStats::polled`] counts the same
    /// start.
    #[must_use]
    pub fn snapshot(&self, now: f64, polling_since: Option<f64>) -> Self {
        let mut out = self.clone();
        match (self.mark, polling_since) {
            (Some(mark), Some(start)) => {
                let start = start.clamp(mark, now.max(mark));
                out.active += start - mark;
                out.idle += now - start;
            }
            (None, Some(start)) => out.idle += (now - start).max(0.0),
            (Some(mark), None) => out.active += (now - mark).max(0.0),
            (None, None) => {}
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn utilization_counts_poll_as_idle() {
        let mut s = LoopStats::default();
        s.polled(0.0, 1.0, 2);
        s.polled(1.5, 2.0, 0);
        s.stopped(3.0);
        assert!((s.idle - 1.5).abs() < 1e-9);
        assert!((s.active - 1.5).abs() < 1e-9);
        assert_eq!(s.iterations, 2);
        assert_eq!(s.io_events, 2);
    }

    #[test]
    fn batches_record_waits_per_callback() {
        let mut s = LoopStats::default();
        // Carried over from a batch whose start is unknown: not measured.
        s.batch(1.0, 3, true);
        assert_eq!(s.ready_wait.count(), 0);
        s.batch(1.002, 3, true);
        assert_eq!(s.ready_wait.count(), 3);
        assert!(s.ready_wait.max() >= 1_999 && s.ready_wait.max() <= 2_001);
        s.batch(5.0, 2, false);
        assert_eq!(s.ready_wait.count(), 5);
        assert_eq!(s.ready_wait.percentile(0.3), 0);
        // An iteration without a reading: the next carried batch is not measured.
        s.unread();
        s.batch(5.5, 4, true);
        assert_eq!(s.ready_wait.count(), 5);
        assert_eq!(s.iterations, 1);
        s.batch(5.501, 1, true);
        assert_eq!(s.ready_wait.count(), 6);
    }

    #[test]
    fn snapshot_adds_the_running_stretch() {
        let mut s = LoopStats::default();
        s.polled(0.0, 1.0, 0);
        assert!((s.snapshot(3.0, None).active - 2.0).abs() < 1e-9);
        assert!(s.active.abs() < 1e-9);
    }

    #[test]
    fn snapshot_counts_the_poll_in_progress_as_idle() {
        let mut s = LoopStats::default();
        // The first poll of a run: no active stretch before it.
        let first = s.snapshot(5.0, Some(2.0));
        assert!((first.idle - 3.0).abs() < 1e-9 && first.active.abs() < 1e-9);
        s.polled(2.0, 6.0, 0);
        // Active from 6 to 6.5, then a poll from 6.5 still going at 9.5.
        let during = s.snapshot(9.5, Some(6.5));
        assert!((during.idle - 7.0).abs() < 1e-9);
        assert!((during.active - 0.5).abs() < 1e-9);
        // The poll ends at 10: the totals go on from what the snapshot saw.
        s.polled(6.5, 10.0, 0);
        let after = s.snapshot(10.0, None);
        assert!(after.idle >= during.idle && after.active >= during.active);
        assert!((after.idle - 7.5).abs() < 1e-9);
        // A start before the mark (not possible from the loop) is clamped.
        let odd = s.snapshot(11.0, Some(3.0));
        assert!((odd.idle - 8.5).abs() < 1e-9 && (odd.active - 0.5).abs() < 1e-9);
    }
}
