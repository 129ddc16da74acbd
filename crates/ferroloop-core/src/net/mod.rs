//! Non-blocking socket operations on raw fds: the stream calls and `accept`
//! here, the datagram calls and socket addresses in [`datagram`].
//!
//! Each is one system call through `syscall!`, returning `io::Result` with
//! errno intact; `EAGAIN` comes back as `ErrorKind::WouldBlock`. Sends use
//! `MSG_NOSIGNAL`, so a closed peer gives `EPIPE`, never `SIGPIPE`.

use std::io::{self, IoSlice};
use std::os::fd::RawFd;

use crate::syscall;

pub mod datagram;

pub use datagram::{AddrView, SockAddr};

/// `recv(2)` into `buf`; `Ok(0)` is end of stream.
pub fn recv(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall!(recv(fd, buf.as_mut_ptr().cast(), buf.len(), 0))?;
    Ok(n as usize)
}

/// `send(2)` of `buf`.
pub fn send(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let n = syscall!(send(fd, buf.as_ptr().cast(), buf.len(), libc::MSG_NOSIGNAL))?;
    Ok(n as usize)
}

/// Gathers `bufs` into one `sendmsg(2)` (at most `IOV_MAX` of them).
pub fn send_vectored(fd: RawFd, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
    let count = bufs.len().min(1024);
    // SAFETY: an all-zero msghdr is a valid empty message.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    // IoSlice is ABI-compatible with iovec on Unix (std guarantees it).
    msg.msg_iov = bufs.as_ptr().cast_mut().cast();
    msg.msg_iovlen = count as _;
    let n = syscall!(sendmsg(fd, &raw const msg, libc::MSG_NOSIGNAL))?;
    Ok(n as usize)
}

/// `accept4(2)` with `SOCK_CLOEXEC`, as CPython's `socket.accept()` makes it
/// (the new fd is blocking until its owner says otherwise); `addr` receives
/// the peer. `EINTR` is retried, as CPython does (PEP 475).
pub fn accept(fd: RawFd, addr: &mut SockAddr) -> io::Result<RawFd> {
    loop {
        let out = addr.fill(|sa, len| syscall!(accept4(fd, sa, len, libc::SOCK_CLOEXEC)));
        if !matches!(&out, Err(e) if e.kind() == io::ErrorKind::Interrupted) {
            return out;
        }
    }
}
