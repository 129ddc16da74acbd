//! ferroloop-core: the parts of the event loop that need no Python.
//!
//! Owns the OS layer (`sys`, the only module that calls libc), the clock and the
//! timer queue (`time`), the readiness poller over mio (`poller`), the cross-thread
//! wake-up (`notify`), the signal wake-up channel (`signals`), and the stream
//! I/O calls over sockets and pipes (`io`, `net`), and the
//! child watcher over pid file descriptors (`process`), and loop health (`health`:
//! lag histograms, running totals, the heartbeat a watchdog reads).
//!
//! Must not: touch Python objects, allocate per event on the hot path, or block
//! anywhere except inside [`poller::Poller::poll`].

pub mod health;
pub mod io;
pub mod net;
pub mod notify;
pub mod poller;
pub mod process;
pub mod signals;
pub mod sys;
pub mod time;

pub use io::StreamFd;
pub use notify::Notifier;
pub use poller::{Interest, Poller, Readiness};
pub use signals::SignalChannel;
pub use time::{monotonic, TimerEntry, TimerQueue};
