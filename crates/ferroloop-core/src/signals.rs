//! The signal wake-up channel: a non-blocking socket pair whose write end is
//! handed to Python's `signal.set_wakeup_fd`. `CPython`'s C-level handler writes
//! the signal number as one byte; the read end sits in the poller, so a signal
//! that lands while the loop sleeps wakes it at once (no EINTR race).
//!
//! Owns both fds and closes them on drop.

use std::io;
use std::os::fd::RawFd;

use crate::sys;

pub struct SignalChannel {
    read_fd: RawFd,
    write_fd: RawFd,
}

impl SignalChannel {
    pub fn new() -> io::Result<Self> {
        let (read_fd, write_fd) = sys::socketpair_nonblocking()?;
        Ok(Self { read_fd, write_fd })
    }

    /// The fd to register in the poller.
    pub fn read_fd(&self) -> RawFd {
        self.read_fd
    }

    /// The fd to pass to `signal.set_wakeup_fd`.
    pub fn write_fd(&self) -> RawFd {
        self.write_fd
    }

    /// Reads every pending signal number, in arrival order.
    pub fn drain(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 256];
        loop {
            match sys::read(self.read_fd, &mut buf) {
                Ok(0) => return,
                Ok(n) => out.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    /// Writes one signal number as `CPython`'s handler would (used by tests and
    /// to emulate a signal).
    pub fn send(&self, signum: u8) -> io::Result<()> {
        sys::write(self.write_fd, &[signum]).map(drop)
    }
}

impl Drop for SignalChannel {
    fn drop(&mut self) {
        let _ = sys::close(self.read_fd);
        let _ = sys::close(self.write_fd);
    }
}
