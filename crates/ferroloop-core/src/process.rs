//! The child watcher's core: one child process, named by a pid file
//! descriptor, so that its exit is one more readiness event on the poller and
//! a signal can never reach a process that took over its pid.
//!
//! Owns the pidfd (closed on drop). Must not: reap any process but its own
//! (no `waitpid(-1)`, which would steal the children of other libraries), block,
//! or use a thread: the pidfd becomes readable when the child ends, and
//! [`Child::try_wait`] then reaps it without blocking.
//!
//! Where pidfds are missing (or for tests, [`Child::open_fallback`]), the
//! descriptor is an eventfd that the process-wide `SIGCHLD` handler of
//! `sys::sigchld` wakes on every child's exit; [`Child::try_wait`] is then
//! `waitpid(pid, WNOHANG)` for this one pid, and a signal is `kill(pid)` while
//! the child is unreaped (its zombie keeps the pid from being reused).
//!
//! Linux >= 5.3 (`pidfd_open`); `waitid(P_PIDFD)` needs 5.4, and on 5.3 the
//! reap falls back to `waitpid(pid, WNOHANG)`, which is still safe because
//! the pid cannot be reused before its zombie is reaped, by us or by
//! `subprocess.Popen` (then this reports [`Reaped::Elsewhere`]).

use std::io;
use std::os::fd::RawFd;

use crate::sys;
use crate::sys::sigchld;
pub use crate::sys::ChildStatus;

/// What a look at an ended child found.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Reaped {
    /// Still running (or a spurious wake-up).
    Running,
    /// Reaped here, with its status.
    Exited(ChildStatus),
    /// Someone else reaped it first (`Popen.poll()`): the status is theirs.
    Elsewhere,
}

/// One child process watched through its pidfd.
#[derive(Debug)]
pub struct Child {
    pid: libc::pid_t,
    /// The pidfd, or the `SIGCHLD` eventfd when `fallback`.
    pidfd: RawFd,
    fallback: bool,
    /// Reaped here (fallback only: the pid is then no longer ours to signal).
    reaped: std::cell::Cell<bool>,
}

impl Child {
    /// Starts watching `pid`, a child of this process not yet reaped.
    pub fn open(pid: libc::pid_t) -> io::Result<Child> {
        Ok(Child { pid, pidfd: sys::pidfd_open(pid)?, fallback: false, reaped: false.into() })
    }

    /// Starts watching `pid` without a pidfd: an eventfd woken by `SIGCHLD`
    /// (the handler is installed, or re-installed if someone replaced it). The
    /// eventfd starts readable, for an exit that came before it was registered.
    pub fn open_fallback(pid: libc::pid_t) -> io::Result<Child> {
        sigchld::install()?;
        let fd = sigchld::eventfd()?;
        if let Err(e) = sigchld::register(fd) {
            let _ = sys::close(fd);
            return Err(e);
        }
        let child = Child { pid, pidfd: fd, fallback: true, reaped: false.into() };
        sigchld::wake(fd)?;
        Ok(child)
    }

    /// Whether this child is watched through `SIGCHLD` rather than a pidfd.
    pub fn is_fallback(&self) -> bool {
        self.fallback
    }

    /// The fallback's safety check: re-installs the `SIGCHLD` handler if
    /// someone replaced it (Python's `signal.signal` does, without chaining).
    pub fn rearm(&self) -> io::Result<()> {
        if self.fallback {
            sigchld::install()?;
        }
        Ok(())
    }

    /// Whether this kernel and its security policy allow pidfds.
    pub fn supported() -> bool {
        sys::pidfd_open(sys::getpid()).map(sys::close).is_ok()
    }

    pub fn pid(&self) -> libc::pid_t {
        self.pid
    }

    /// The descriptor to poll for reading: readable once the child ended.
    pub fn fd(&self) -> RawFd {
        self.pidfd
    }

    /// Reaps the child if it has ended, without blocking.
    pub fn try_wait(&self) -> io::Result<Reaped> {
        if self.fallback {
            sigchld::drain(self.pidfd);
            if self.reaped.get() {
                return Ok(Reaped::Elsewhere);
            }
        }
        let res = if self.fallback { sys::waitpid_nohang(self.pid) } else { sys::waitid_pidfd(self.pidfd) };
        let res = match res {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => sys::waitpid_nohang(self.pid),
            res => res,
        };
        if matches!(res, Ok(Some(_))) || res.as_ref().is_err_and(|e| e.raw_os_error() == Some(libc::ECHILD)) {
            self.reaped.set(true);
        }
        match res {
            Ok(Some(status)) => Ok(Reaped::Exited(status)),
            Ok(None) => Ok(Reaped::Running),
            Err(e) if e.raw_os_error() == Some(libc::ECHILD) => Ok(Reaped::Elsewhere),
            Err(e) => Err(e),
        }
    }

    /// Sends `sig`; a child already reaped is not an error (asyncio's
    /// `send_signal` after the exit raises nothing).
    pub fn send_signal(&self, sig: i32) -> io::Result<()> {
        let res = match self.fallback {
            true if self.reaped.get() => return Ok(()),
            true => sigchld::kill(self.pid, sig),
            false => sys::pidfd_send_signal(self.pidfd, sig),
        };
        match res {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            res => res,
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        if self.fallback {
            sigchld::unregister(self.pidfd);
        }
        let _ = sys::close(self.pidfd);
    }
}
