//! The signal wake-up channel: a non-blocking socket pair whose write end is
//! handed to Python's `signal.set_wakeup_fd`. `CPython`'s C-level handler writes
//! the signal number as one byte; the read end sits in the poller, so a signal
//! that lands while the loop sleeps wakes it at once (no EINTR race).
//!
//! Owns both fds and closes them on [`SignalChannel::close`] or on drop.

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicI32, Ordering};

use crate::sys;

/// -1 once closed: a closed number is never used again (it may name a new file).
pub struct SignalChannel {
    read_fd: AtomicI32,
    write_fd: AtomicI32,
}

impl SignalChannel {
    pub fn new() -> io::Result<Self> {
        let (read_fd, write_fd) = sys::socketpair_nonblocking()?;
        Ok(Self { read_fd: AtomicI32::new(read_fd), write_fd: AtomicI32::new(write_fd) })
    }

    /// The fd to register in the poller (-1 once closed).
    pub fn read_fd(&self) -> RawFd {
        self.read_fd.load(Ordering::Acquire)
    }

    /// The fd to pass to `signal.set_wakeup_fd` (-1 once closed).
    pub fn write_fd(&self) -> RawFd {
        self.write_fd.load(Ordering::Acquire)
    }

    /// Closes both fds now (the loop's `close()`); later reads find nothing
    /// and writes fail with `EBADF`.
    pub fn close(&self) {
        for fd in [&self.read_fd, &self.write_fd] {
            let old = fd.swap(-1, Ordering::AcqRel);
            if old >= 0 {
                let _ = sys::close(old);
            }
        }
    }

    /// Reads every pending signal number, in arrival order.
    pub fn drain(&self, out: &mut Vec<u8>) {
        let mut buf = [0u8; 256];
        loop {
            let fd = self.read_fd();
            if fd < 0 {
                return;
            }
            match sys::read(fd, &mut buf) {
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
        match self.write_fd() {
            fd if fd < 0 => Err(io::Error::from_raw_os_error(libc::EBADF)),
            fd => sys::write(fd, &[signum]).map(drop),
        }
    }
}

impl Drop for SignalChannel {
    fn drop(&mut self) {
        self.close();
    }
}
