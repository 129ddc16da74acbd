//! Loop health without Python: the lag histogram, the loop's running totals,
//! and the heartbeat a watchdog reads from another thread.
//!
//! Must not: hold Python objects, read the clock outside `watchdog` (callers
//! pass the times they already read; the watchdog thread reads it once per
//! period), or allocate on the loop's path. Everything the loop records into
//! is fixed size, so recording is a few integer operations.

mod heartbeat;
mod lag;
mod stats;
pub mod watchdog;

pub use heartbeat::{Heartbeat, Phase};
pub use lag::LagHistogram;
pub use stats::LoopStats;
