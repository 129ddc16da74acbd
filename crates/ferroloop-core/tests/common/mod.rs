//! Helpers shared by the poller's integration tests.

use std::os::unix::net::UnixStream;
use std::time::Duration;

use ferroloop_core::Interest;

pub(crate) const READ: Interest = Interest { read: true, write: false };

/// How long a test waits for something that must happen; never reached when
/// the code under test works.
pub(crate) const PATIENCE: Duration = Duration::from_secs(10);

/// A connected pair of non-blocking Unix stream sockets.
pub(crate) fn pair() -> (UnixStream, UnixStream) {
    let (a, b) = UnixStream::pair().unwrap();
    a.set_nonblocking(true).unwrap();
    b.set_nonblocking(true).unwrap();
    (a, b)
}
