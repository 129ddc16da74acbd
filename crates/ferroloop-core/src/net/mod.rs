//! Non-blocking socket operations on raw fds: the stream calls, `accept` and
//! `connect` here, the datagram calls and socket addresses in [`datagram`].
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

/// `connect(2)` of a non-blocking socket to `addr`: `Ok(true)` once connected,
/// `Ok(false)` while the connection is under way (`EINPROGRESS`, and `EAGAIN`
/// or `EINTR`, which asyncio waits out the same way: until the socket is
/// writable, then [`take_error`]).
pub fn connect(fd: RawFd, addr: &SockAddr) -> io::Result<bool> {
    let (sa, len) = addr.as_raw();
    match syscall!(connect(fd, sa, len)) {
        Ok(_) => Ok(true),
        Err(e) if is_under_way(e.raw_os_error()) => Ok(false),
        Err(e) => Err(e),
    }
}

/// Whether `errno` says a connection is still under way: what CPython raises
/// as `BlockingIOError` or `InterruptedError` for it.
pub fn is_under_way(errno: Option<i32>) -> bool {
    matches!(errno, Some(libc::EINPROGRESS | libc::EAGAIN | libc::EALREADY | libc::EINTR))
}

/// The socket's pending error (`getsockopt(SO_ERROR)`, which clears it): how a
/// non-blocking `connect` ended once the socket is writable; 0 for success.
pub fn take_error(fd: RawFd) -> io::Result<i32> {
    let mut err: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    syscall!(getsockopt(fd, libc::SOL_SOCKET, libc::SO_ERROR, (&raw mut err).cast(), &raw mut len))?;
    Ok(err)
}
