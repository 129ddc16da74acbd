//! The cross-thread notifier under contention: no wake-up is ever lost (a lost
//! one shows up as a poller blocked forever, so every test runs under a
//! watchdog that turns a hang into a failure), and bursts coalesce.

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use ferroloop_core::Poller;

/// How long a test may take before it counts as hung.
const WATCHDOG: Duration = Duration::from_secs(60);

/// Runs `f` on its own thread and fails the test if it does not finish in
/// time. A hung thread is left behind; the test binary exits anyway.
fn within<T: Send + 'static>(what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let worker = thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(WATCHDOG) {
        Ok(v) => v,
        // The worker panicked: re-raise its panic.
        Err(mpsc::RecvTimeoutError::Disconnected) => std::panic::resume_unwind(worker.join().unwrap_err()),
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: still blocked after {WATCHDOG:?}"),
    }
}

#[test]
fn producers_hammering_notify_never_lose_a_wake_up() {
    const PRODUCERS: usize = 8;
    const PER_PRODUCER: usize = 10_000;
    const TOTAL: usize = PRODUCERS * PER_PRODUCER;
    let poller = Arc::new(Poller::new().unwrap());
    let queue = Arc::new(Mutex::new(Vec::new()));

    let consumer = {
        let (poller, queue) = (Arc::clone(&poller), Arc::clone(&queue));
        move || {
            let (mut seen, mut out) = (Vec::with_capacity(TOTAL), Vec::new());
            while seen.len() < TOTAL {
                poller.poll(None, &mut out).unwrap();
                seen.append(&mut *queue.lock().unwrap());
            }
            assert!(out.is_empty(), "notifier wake-ups are not reported: {out:?}");
            seen
        }
    };
    let producers: Vec<_> = (0..PRODUCERS)
        .map(|p| {
            let (notifier, queue) = (Arc::clone(poller.notifier()), Arc::clone(&queue));
            thread::spawn(move || {
                for i in 0..PER_PRODUCER {
                    queue.lock().unwrap().push(p * PER_PRODUCER + i);
                    notifier.notify().unwrap();
                }
            })
        })
        .collect();

    let mut seen = within("the poller waiting for the last items", consumer);
    for p in producers {
        p.join().unwrap();
    }
    seen.sort_unstable();
    assert_eq!(seen, (0..TOTAL).collect::<Vec<_>>());
}

/// Ping-pong: each item is published just as the poller goes back to sleep,
/// which is exactly when a notification can race with `begin_sleep`.
#[test]
fn notify_racing_the_poller_going_to_sleep_is_not_lost() {
    const ROUNDS: usize = 50_000;
    let poller = Arc::new(Poller::new().unwrap());
    let queue = Arc::new(Mutex::new(Vec::new()));
    let (ack_tx, ack_rx) = mpsc::channel();

    let consumer = {
        let (poller, queue) = (Arc::clone(&poller), Arc::clone(&queue));
        thread::spawn(move || {
            let mut out = Vec::new();
            let mut received = 0;
            while received < ROUNDS {
                poller.poll(None, &mut out).unwrap();
                let items = std::mem::take(&mut *queue.lock().unwrap());
                if !items.is_empty() {
                    received += items.len();
                    if ack_tx.send(items).is_err() {
                        return;
                    }
                }
            }
        })
    };
    let notifier = poller.notifier();
    for round in 0..ROUNDS {
        queue.lock().unwrap().push(round);
        notifier.notify().unwrap();
        // Vary the phase against the poller a little from round to round.
        for _ in 0..(round * 7919) % 512 {
            std::hint::spin_loop();
        }
        match ack_rx.recv_timeout(WATCHDOG) {
            Ok(items) => assert_eq!(items, [round]),
            Err(e) => panic!("round {round}: the poller never woke ({e:?}): a wake-up was lost"),
        }
    }
    consumer.join().unwrap();
}

#[test]
fn notify_wakes_a_poller_blocked_forever() {
    let poller = Arc::new(Poller::new().unwrap());
    let sleeper = Arc::clone(&poller);
    let (tx, rx) = mpsc::channel();
    let handle = thread::spawn(move || {
        let mut out = Vec::new();
        sleeper.poll(None, &mut out).unwrap();
        tx.send(out).unwrap();
    });
    thread::sleep(Duration::from_millis(20));
    poller.notifier().notify().unwrap();
    let out = rx.recv_timeout(WATCHDOG).expect("a notification must wake a poll(None)");
    assert!(out.is_empty());
    handle.join().unwrap();
}

#[test]
fn notify_before_a_blocking_poll_is_not_lost() {
    within("poll(None) after notify()", || {
        let poller = Poller::new().unwrap();
        poller.notifier().notify().unwrap();
        poller.poll(None, &mut Vec::new()).unwrap();
    });
}

/// Polls for `timeout` and returns how long it took.
fn timed_poll(poller: &Poller, timeout: Duration) -> Duration {
    let start = Instant::now();
    poller.poll(Some(timeout), &mut Vec::new()).unwrap();
    start.elapsed()
}

/// 8 threads notify 1,000 times each; returns when all are done.
fn notify_burst(poller: &Poller) {
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let notifier = Arc::clone(poller.notifier());
            thread::spawn(move || (0..1_000).for_each(|_| notifier.notify().unwrap()))
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

#[test]
fn burst_while_awake_makes_the_next_poll_return_promptly() {
    let poller = Arc::new(Poller::new().unwrap());
    notify_burst(&poller);
    assert!(timed_poll(&poller, Duration::from_secs(30)) < Duration::from_secs(5));
    // The burst coalesced into that one early return: the next poll sleeps.
    assert!(timed_poll(&poller, Duration::from_millis(50)) >= Duration::from_millis(50));
}

#[test]
fn burst_while_asleep_leaves_at_most_one_spurious_wake_up() {
    let poller = Arc::new(Poller::new().unwrap());
    let sleeper = {
        let poller = Arc::clone(&poller);
        thread::spawn(move || poller.poll(None, &mut Vec::new()).unwrap())
    };
    thread::sleep(Duration::from_millis(20));
    notify_burst(&poller);
    within("the sleeper woken by a burst", move || sleeper.join().unwrap());
    // Notifications that landed after the sleeper woke may cut one more poll
    // short; two polls in a row cannot both be cut short.
    let twice =
        timed_poll(&poller, Duration::from_millis(50)) + timed_poll(&poller, Duration::from_millis(50));
    assert!(twice >= Duration::from_millis(50), "{twice:?}");
}
