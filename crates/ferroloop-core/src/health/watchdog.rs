//! The watchdog thread: one per process, looking at every running loop's
//! heartbeat without the GIL.
//!
//! Each period it calls [`Heartbeat::observe`] on each registered heartbeat:
//! a callback seen running for the first time is armed, so the loop reports
//! its end if it ran long (the Python side decides what "long" is and does the
//! stack sampling, which needs the GIL). It holds only `Weak` references, so
//! a loop is never kept alive. Loops register while they run; the thread
//! exits a second after none is left (at once, and joined, when a loop closes
//! with none left: [`end_if_idle`]), and the next [`watch`] starts it again.
//!
//! Fork: the registry records the process it belongs to. A forked child (which
//! has no watchdog thread, and may have forked while that thread held the
//! registry's lock) finds a pid that is not its own and starts a new registry
//! instead of touching the old one (which is leaked: a few words per fork).
//! Around `os.fork()` the Python layer also calls [`pause`] (the thread ends
//! and is joined, so the process forks with one thread, as CPython 3.12+ asks)
//! and [`resume`] in the parent.

use std::sync::atomic::{AtomicPtr, Ordering};
use std::sync::{Arc, Condvar, Mutex, PoisonError, Weak};
use std::time::Duration;

use super::heartbeat::Heartbeat;
use crate::time::monotonic;

struct Registry {
    pid: u32,
    state: Mutex<State>,
    wake: Condvar,
}

struct State {
    beats: Vec<Weak<Heartbeat>>,
    period: Duration,
    running: bool,
    /// Set by [`pause`]: the thread ends, and none starts until [`resume`].
    paused: bool,
    /// The number of the thread that should run; a thread whose number is
    /// not this one ends ([`pause`] and [`end_if_idle`] change it).
    generation: u64,
    thread: Option<std::thread::JoinHandle<()>>,
}

/// The current process's registry; replaced (never freed) after a fork.
static REGISTRY: AtomicPtr<Registry> = AtomicPtr::new(std::ptr::null_mut());

/// How often the watchdog looks when nobody said otherwise.
const DEFAULT_PERIOD: Duration = Duration::from_millis(25);

fn registry() -> &'static Registry {
    let pid = std::process::id();
    let cur = REGISTRY.load(Ordering::Acquire);
    // SAFETY: a non-null pointer in REGISTRY comes from `Box::leak` below and
    // is never freed, so it is valid for 'static.
    if let Some(reg) = unsafe { cur.as_ref() } {
        if reg.pid == pid {
            return reg;
        }
    }
    let fresh: &'static mut Registry = Box::leak(Box::new(Registry {
        pid,
        state: Mutex::new(State {
            beats: Vec::new(),
            period: DEFAULT_PERIOD,
            running: false,
            paused: false,
            generation: 0,
            thread: None,
        }),
        wake: Condvar::new(),
    }));
    let fresh_ptr: *mut Registry = fresh;
    match REGISTRY.compare_exchange(cur, fresh_ptr, Ordering::AcqRel, Ordering::Acquire) {
        // SAFETY: as above: `fresh_ptr` was just leaked and is never freed.
        Ok(_) => unsafe { &*fresh_ptr },
        // Another thread installed one first: use it (ours stays leaked, once).
        // SAFETY: as above, the winner's pointer also comes from `Box::leak`.
        Err(won) => unsafe { &*won },
    }
}

/// Watches `beat` until it is dropped or [`unwatch`]ed; starts the thread.
pub fn watch(beat: &Arc<Heartbeat>) {
    let reg = registry();
    let mut st = reg.state.lock().unwrap_or_else(PoisonError::into_inner);
    if !st.beats.iter().any(|w| std::ptr::eq(w.as_ptr(), Arc::as_ptr(beat))) {
        st.beats.push(Arc::downgrade(beat));
    }
    start(reg, &mut st);
}

fn start(reg: &'static Registry, st: &mut State) {
    if st.running || st.paused {
        return;
    }
    // A thread that ended by itself (nothing to watch) is joined before the next starts
    // (it already left the lock: the join does not wait for us).
    drop(st.thread.take().map(std::thread::JoinHandle::join));
    st.generation = st.generation.wrapping_add(1);
    let generation = st.generation;
    let spawned =
        std::thread::Builder::new().name("ferroloop-watchdog".into()).spawn(move || run(reg, generation));
    st.running = spawned.is_ok();
    st.thread = spawned.ok();
}

/// Ends the watchdog thread and waits until it has exited (before a fork);
/// no thread starts again until [`resume`].
pub fn pause() {
    let reg = registry();
    let handle = {
        let mut st = reg.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.paused = true;
        retire(&mut st)
    };
    reg.wake.notify_all();
    if let Some(handle) = handle {
        drop(handle.join());
    }
}

/// Tells the running thread to end (it looks at the generation when woken);
/// returns its handle for the caller to join once it has let go of the lock.
fn retire(st: &mut State) -> Option<std::thread::JoinHandle<()>> {
    st.generation = st.generation.wrapping_add(1);
    st.running = false;
    st.thread.take()
}

/// A loop closed: if no running loop is left, the thread ends now and is
/// joined (instead of a second later), so that a program whose loops are all
/// closed keeps no thread of ours. Called with the GIL held; the thread never
/// takes it.
pub fn end_if_idle() {
    let reg = registry();
    let handle = {
        let mut st = reg.state.lock().unwrap_or_else(PoisonError::into_inner);
        st.beats.retain(|w| w.strong_count() > 0);
        if !st.beats.is_empty() {
            return;
        }
        retire(&mut st)
    };
    reg.wake.notify_all();
    if let Some(handle) = handle {
        drop(handle.join());
    }
}

/// Undoes [`pause`]: the thread starts again if a loop is watched.
pub fn resume() {
    let reg = registry();
    let mut st = reg.state.lock().unwrap_or_else(PoisonError::into_inner);
    st.paused = false;
    st.beats.retain(|w| w.strong_count() > 0);
    if !st.beats.is_empty() {
        start(reg, &mut st);
    }
}

/// Stops watching `beat` (its loop closed); the thread ends with the last one.
pub fn unwatch(beat: &Arc<Heartbeat>) {
    let reg = registry();
    let mut st = reg.state.lock().unwrap_or_else(PoisonError::into_inner);
    st.beats.retain(|w| w.strong_count() > 0 && !std::ptr::eq(w.as_ptr(), Arc::as_ptr(beat)));
    drop(st);
    reg.wake.notify_all();
}

/// How often the watchdog looks (at least 1 ms).
pub fn set_period(period: Duration) {
    let reg = registry();
    reg.state.lock().unwrap_or_else(PoisonError::into_inner).period = period.max(Duration::from_millis(1));
    reg.wake.notify_all();
}

/// Whether the watchdog thread is running (for tests).
#[must_use]
pub fn is_running() -> bool {
    registry().state.lock().unwrap_or_else(PoisonError::into_inner).running
}

/// How long the thread stays with nothing to watch before it ends, so that
/// a program calling `run_until_complete` in a loop does not start a thread
/// each time.
const LINGER: Duration = Duration::from_secs(1);

fn run(reg: &'static Registry, generation: u64) {
    let mut st = reg.state.lock().unwrap_or_else(PoisonError::into_inner);
    let mut idle = Duration::ZERO;
    loop {
        if st.generation != generation {
            return; // retired: whoever did it also cleared `running`
        }
        st.beats.retain(|w| w.strong_count() > 0);
        if st.beats.is_empty() {
            if idle >= LINGER {
                st.running = false;
                return;
            }
            idle += st.period;
        } else {
            idle = Duration::ZERO;
        }
        let now = monotonic();
        for beat in st.beats.iter().filter_map(Weak::upgrade) {
            beat.observe(now);
        }
        let period = st.period;
        st = reg.wake.wait_timeout(st, period).unwrap_or_else(PoisonError::into_inner).0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::Phase;

    /// The watchdog is one per process: its tests take turns.
    static SERIAL: Mutex<()> = Mutex::new(());

    #[test]
    fn pause_ends_the_thread_and_resume_restarts_it() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let beat = Arc::new(Heartbeat::default());
        watch(&beat);
        assert!(is_running());
        pause();
        assert!(!is_running());
        watch(&beat); // no thread while paused
        assert!(!is_running());
        resume();
        assert!(is_running());
        unwatch(&beat);
    }

    #[test]
    fn end_if_idle_ends_the_thread_at_once_unless_a_loop_runs() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        let beat = Arc::new(Heartbeat::default());
        let other = Arc::new(Heartbeat::default());
        watch(&beat);
        watch(&other);
        unwatch(&beat);
        end_if_idle(); // `other` still runs
        assert!(is_running());
        unwatch(&other);
        assert!(is_running()); // lingering
        end_if_idle();
        assert!(!is_running());
        assert!(registry().state.lock().unwrap_or_else(PoisonError::into_inner).thread.is_none());
        watch(&beat);
        assert!(is_running());
        unwatch(&beat);
        end_if_idle();
    }

    #[test]
    fn arms_a_running_callback_and_ends_with_the_last_beat() {
        let _turn = SERIAL.lock().unwrap_or_else(PoisonError::into_inner);
        set_period(Duration::from_millis(1));
        let beat = Arc::new(Heartbeat::default());
        beat.set_phase(Phase::Callback);
        let seq = beat.begin_callback();
        watch(&beat);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !beat.is_armed(seq) && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(beat.is_armed(seq));
        unwatch(&beat);
        while is_running() && std::time::Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
        assert!(!is_running());
        set_period(DEFAULT_PERIOD);
    }
}
