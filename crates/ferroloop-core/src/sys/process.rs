//! The process calls of the child watcher: `pidfd_open(2)`,
//! `pidfd_send_signal(2)`, `waitid(P_PIDFD)` and `waitpid(pid, WNOHANG)`.
//!
//! glibc 2.36 has wrappers for the pidfd calls, older ones do not: they go
//! through `syscall(2)` with the numbers from `libc`.

use std::io;
use std::os::fd::RawFd;

/// How a child ended, as `subprocess`'s `returncode`: the exit status, or
/// minus the number of the signal that killed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct ChildStatus(pub i32);

/// This process's id.
pub fn getpid() -> libc::pid_t {
    // SAFETY: getpid has no preconditions and cannot fail.
    unsafe { libc::getpid() }
}

/// A close-on-exec pid file descriptor for `pid` (Linux 5.3).
pub fn pidfd_open(pid: libc::pid_t) -> io::Result<RawFd> {
    let flags: libc::c_long = 0;
    let fd = syscall!(syscall(libc::SYS_pidfd_open, libc::c_long::from(pid), flags))?;
    // A descriptor always fits in a c_int.
    Ok(fd as RawFd)
}

/// Sends `sig` to the process of `pidfd` (Linux 5.1); `ESRCH` once it was
/// reaped: the pidfd names one process for ever, never a recycled pid.
pub fn pidfd_send_signal(pidfd: RawFd, sig: i32) -> io::Result<()> {
    let flags: libc::c_long = 0;
    syscall!(syscall(
        libc::SYS_pidfd_send_signal,
        libc::c_long::from(pidfd),
        libc::c_long::from(sig),
        std::ptr::null::<libc::siginfo_t>(),
        flags
    ))
    .map(drop)
}

/// Reaps the child of `pidfd` if it has ended (`waitid(P_PIDFD, WEXITED |
/// WNOHANG)`, Linux 5.4): `Ok(None)` while it runs, `ECHILD` when someone else
/// reaped it, `EINVAL` on a kernel without `P_PIDFD`.
pub fn waitid_pidfd(pidfd: RawFd) -> io::Result<Option<ChildStatus>> {
    // SAFETY: an all-zero siginfo_t is valid; waitid leaves si_pid 0 when no
    // child has changed state (WNOHANG).
    let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
    syscall!(waitid(libc::P_PIDFD, pidfd as libc::id_t, &raw mut info, libc::WEXITED | libc::WNOHANG))?;
    // SAFETY: waitid filled the SIGCHLD fields of the union (or left zeros).
    let (pid, status) = unsafe { (info.si_pid(), info.si_status()) };
    if pid == 0 {
        return Ok(None);
    }
    Ok(Some(match info.si_code {
        libc::CLD_EXITED => ChildStatus(status),
        _ => ChildStatus(-status),
    }))
}

/// `waitpid(pid, WNOHANG)` for the one child `pid`, never `-1` (another
/// library's children are not ours to reap): `Ok(None)` while it runs.
pub fn waitpid_nohang(pid: libc::pid_t) -> io::Result<Option<ChildStatus>> {
    let mut status: libc::c_int = 0;
    let got = syscall!(waitpid(pid, &raw mut status, libc::WNOHANG))?;
    if got == 0 {
        return Ok(None);
    }
    Ok(Some(if libc::WIFSIGNALED(status) {
        ChildStatus(-libc::WTERMSIG(status))
    } else {
        ChildStatus(libc::WEXITSTATUS(status))
    }))
}
