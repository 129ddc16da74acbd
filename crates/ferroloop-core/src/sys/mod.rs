//! The OS layer: every libc call of ferroloop goes through `syscall!`.
//!
//! Contract: a wrapper returns `io::Result`, turning `-1` into
//! `io::Error::last_os_error()` so that errno survives to Python. Wrappers are
//! thin: no retries on `EINTR` here; callers decide (the poller reports it so
//! that Python signal handlers can run).

use std::io;
use std::os::fd::RawFd;

/// Calls a libc function, mapping a `-1` result to the current `errno`.
///
/// The arguments are expanded inside the `unsafe` block, as in mio's macro of
/// the same name: every call site is in this module and upholds the libc
/// function's contract, which is what the `SAFETY` line below relies on.
#[macro_export]
macro_rules! syscall {
    ($fn:ident ( $($arg:expr),* $(,)? )) => {{
        // SAFETY: the caller passes arguments valid for this libc function; the
        // macro only inspects the integer result.
        // See above for why the arguments may sit inside `unsafe`.
        #[allow(unused_unsafe, clippy::macro_metavars_in_unsafe)]
        let res = unsafe { libc::$fn($($arg),*) };
        if res == -1 {
            Err(std::io::Error::last_os_error())
        } else {
            Ok(res)
        }
    }};
}

/// Reads `CLOCK_MONOTONIC`, the clock behind Python's `time.monotonic()`.
pub fn clock_monotonic() -> libc::timespec {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // CLOCK_MONOTONIC cannot fail on any supported platform with a valid pointer.
    let _ = syscall!(clock_gettime(libc::CLOCK_MONOTONIC, &raw mut ts));
    ts
}

/// Creates a non-blocking, close-on-exec `AF_UNIX` stream socket pair.
pub fn socketpair_nonblocking() -> io::Result<(RawFd, RawFd)> {
    let mut fds = [0 as RawFd; 2];
    syscall!(socketpair(
        libc::AF_UNIX,
        libc::SOCK_STREAM | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
        0,
        fds.as_mut_ptr()
    ))?;
    Ok((fds[0], fds[1]))
}

/// Reads into `buf` from a non-blocking fd.
pub fn read(fd: RawFd, buf: &mut [u8]) -> io::Result<usize> {
    let n = syscall!(read(fd, buf.as_mut_ptr().cast(), buf.len()))?;
    Ok(n as usize)
}

/// Writes `buf` to a non-blocking fd.
pub fn write(fd: RawFd, buf: &[u8]) -> io::Result<usize> {
    let n = syscall!(write(fd, buf.as_ptr().cast(), buf.len()))?;
    Ok(n as usize)
}

/// Closes an fd we own.
pub fn close(fd: RawFd) -> io::Result<()> {
    syscall!(close(fd)).map(drop)
}

/// Whether `fd` refers to an open file description (`fcntl(F_GETFD)`).
pub fn fd_is_open(fd: RawFd) -> bool {
    syscall!(fcntl(fd, libc::F_GETFD)).is_ok()
}

/// The calling thread's id, equal to Python's `threading.get_ident()`.
pub fn thread_id() -> u64 {
    // SAFETY: pthread_self has no preconditions and cannot fail.
    (unsafe { libc::pthread_self() }) as u64
}

/// The message for `errno`, as Python's `os.strerror` gives it.
pub fn strerror(errno: i32) -> String {
    // SAFETY: strerror returns a pointer to a NUL-terminated static or
    // thread-local buffer, valid until the next call on this thread; we copy it
    // out at once.
    let ptr = unsafe { libc::strerror(errno) };
    if ptr.is_null() {
        return format!("Unknown error {errno}");
    }
    // SAFETY: non-null and NUL-terminated per strerror's contract.
    unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy().into_owned()
}

/// Gives the free memory of the C heap back to the system (glibc's
/// `malloc_trim(0)`: the free top of the heap, and the whole pages of free
/// chunks inside it). A large buffer freed in the middle of the heap is
/// otherwise kept resident for reuse by this process. Elsewhere a no-op.
pub fn release_free_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim has no preconditions; it only returns 0 or 1.
    unsafe {
        libc::malloc_trim(0);
    }
}

mod process;
pub mod sigchld;
pub use process::{getpid, pidfd_open, pidfd_send_signal, waitid_pidfd, waitpid_nohang, ChildStatus};
