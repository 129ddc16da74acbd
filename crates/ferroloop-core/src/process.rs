//! The child watcher's core: one child process, named by a pid file
//! descriptor, so that its exit is one more readiness event on the poller and
//! a signal can never reach a process that took over its pid.
//!
//! Owns the pidfd (closed on drop). Must not: reap any process but its own
//! (no `waitpid(-1)`, which would steal the children of other libraries), block,
//! or use a thread or `SIGCHLD`: the pidfd becomes readable when the child
//! ends, and [`Child::try_wait`] then reaps it without blocking.
//!
//! Linux >= 5.3 (`pidfd_open`); `waitid(P_PIDFD)` needs 5.4, and on 5.3 the
//! reap falls back to `waitpid(pid, WNOHANG)`, which is still safe because
//! the pid cannot be reused before its zombie is reaped, by us or by
//! `subprocess.Popen` (then this reports [`Reaped::Elsewhere`]).

use std::io;
use std::os::fd::RawFd;

use crate::sys;
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
    pidfd: RawFd,
}

impl Child {
    /// Starts watching `pid`, a child of this process not yet reaped.
    pub fn open(pid: libc::pid_t) -> io::Result<Child> {
        Ok(Child { pid, pidfd: sys::pidfd_open(pid)? })
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
        let res = match sys::waitid_pidfd(self.pidfd) {
            Err(e) if e.raw_os_error() == Some(libc::EINVAL) => sys::waitpid_nohang(self.pid),
            res => res,
        };
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
        match sys::pidfd_send_signal(self.pidfd, sig) {
            Err(e) if e.raw_os_error() == Some(libc::ESRCH) => Ok(()),
            res => res,
        }
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        let _ = sys::close(self.pidfd);
    }
}
