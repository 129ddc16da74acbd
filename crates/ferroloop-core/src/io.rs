//! The kinds of descriptor a byte stream runs over, and their I/O calls.
//!
//! A stream transport's code (reads into a buffer, gathered writes, the
//! end-of-stream and error rules) is the same for a connected socket and a
//! pipe; only the system calls differ: sockets use `recv`/`sendmsg` with
//! `MSG_NOSIGNAL` (a closed peer gives `EPIPE`, never `SIGPIPE`), pipes
//! `read`/`writev` (CPython ignores `SIGPIPE`, so a closed reader gives
//! `EPIPE` there too). Stream code holds a [`StreamFd`] and calls through it.
//!
//! Each call is one system call: `EAGAIN` comes back as
//! `ErrorKind::WouldBlock`, `EINTR` as `ErrorKind::Interrupted` (the caller
//! decides whether to retry).

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use crate::{net, sys, syscall};

/// What a stream's descriptor is.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StreamFd {
    /// A connected stream socket (TCP, Unix).
    Socket,
    /// A pipe or a character device (a subprocess's stdin/stdout, a tty).
    Pipe,
}

/// The most buffers one gathered write takes (`IOV_MAX` on Linux).
const MAX_IOV: usize = 1024;

impl StreamFd {
    /// Reads into `buf`; `Ok(0)` is end of stream.
    pub fn read(self, fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            StreamFd::Socket => net::recv(fd, buf),
            StreamFd::Pipe => sys::read(fd, buf),
        }
    }

    /// Writes from `buf`.
    pub fn write(self, fd: RawFd, buf: &[u8]) -> io::Result<usize> {
        match self {
            StreamFd::Socket => net::send(fd, buf),
            StreamFd::Pipe => sys::write(fd, buf),
        }
    }

    /// Gathers `bufs` (the first `MAX_IOV` of them) into one write.
    pub fn write_vectored(self, fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            StreamFd::Socket => net::send_vectored(fd, bufs),
            StreamFd::Pipe => {
                // At most MAX_IOV, which fits in a c_int.
                let count = libc::c_int::try_from(bufs.len().min(MAX_IOV)).unwrap_or(0);
                // IoSlice is ABI-compatible with iovec on Unix (std guarantees it).
                let n = syscall!(writev(fd, bufs.as_ptr().cast(), count))?;
                Ok(n as usize)
            }
        }
    }
}
