//! The process-wide `SIGCHLD` wake-up of the no-pidfd child watcher.
//!
//! Owns: one `sigaction` for `SIGCHLD` (installed by [`install`], re-installed
//! when someone replaced it) and a fixed table of eventfds, one per child that
//! is watched without a pidfd ([`register`]/[`unregister`]).
//!
//! The handler is async-signal-safe: it loads atomics, writes 8 bytes to each
//! registered eventfd (`write(2)` is on POSIX's safe list), restores `errno`,
//! and chains to the handler that was installed before it (CPython's C handler,
//! so `signal.signal(SIGCHLD, f)` and `loop.add_signal_handler(SIGCHLD, ...)`
//! keep working). It never reaps: each loop reaps its own children with
//! `waitpid(pid, WNOHANG)` when their eventfd becomes readable.
//!
//! Invariants:
//! - an eventfd leaves the table before it is closed, and [`unregister`] waits
//!   until no handler is inside the table walk, so a handler never writes to a
//!   number that was closed and reused for another file;
//! - the previous handler is stored before ours is installed, and ours is never
//!   stored as the previous one (no chaining to ourselves).

use std::io;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering};
use std::sync::Mutex;

/// How many children may be watched without a pidfd at once, process-wide.
pub const SLOTS: usize = 4096;

/// The eventfds to wake; -1 for a free slot.
static WAKE_FDS: [AtomicI32; SLOTS] = [const { AtomicI32::new(-1) }; SLOTS];
/// How many handlers are walking `WAKE_FDS` now.
static IN_HANDLER: AtomicUsize = AtomicUsize::new(0);
/// The handler to chain to (`sa_sigaction` value) and its `sa_flags`.
static PREV_ACTION: AtomicUsize = AtomicUsize::new(libc::SIG_DFL);
static PREV_FLAGS: AtomicI32 = AtomicI32::new(0);
/// Serialises `install` (never taken in the handler).
static INSTALL: Mutex<()> = Mutex::new(());
/// Whether [`install`] ever ran: [`reinstall_if_used`] then keeps ours in place.
static USED: AtomicBool = AtomicBool::new(false);

extern "C" fn on_sigchld(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: __errno_location returns this thread's errno slot; always valid.
    let errno = unsafe { *libc::__errno_location() };
    IN_HANDLER.fetch_add(1, Ordering::SeqCst);
    let one: u64 = 1;
    for slot in &WAKE_FDS {
        let fd = slot.load(Ordering::SeqCst);
        if fd >= 0 {
            // SAFETY: `fd` is a registered eventfd, open until `unregister`
            // (which waits for IN_HANDLER to drop); the buffer is 8 valid bytes.
            let _ = unsafe { libc::write(fd, (&raw const one).cast(), 8) };
        }
    }
    IN_HANDLER.fetch_sub(1, Ordering::SeqCst);
    // SAFETY: as above.
    unsafe { *libc::__errno_location() = errno };
    chain(sig, info, ctx);
}

/// Calls the handler that was installed before ours, if it is a function.
fn chain(sig: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    let prev = PREV_ACTION.load(Ordering::SeqCst);
    if prev == libc::SIG_DFL || prev == libc::SIG_IGN {
        return; // SIGCHLD's default is to do nothing
    }
    if PREV_FLAGS.load(Ordering::SeqCst) & libc::SA_SIGINFO != 0 {
        // SAFETY: with SA_SIGINFO, sa_sigaction holds a three-argument handler.
        let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
            unsafe { std::mem::transmute::<usize, _>(prev) };
        f(sig, info, ctx);
    } else {
        // SAFETY: without SA_SIGINFO, sa_sigaction holds a one-argument handler.
        let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute::<usize, _>(prev) };
        f(sig);
    }
}

fn ours() -> usize {
    on_sigchld as extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) as usize
}

/// Whether the `SIGCHLD` action installed now is ours.
pub fn installed() -> bool {
    current().is_ok_and(|act| act.sa_sigaction == ours())
}

fn current() -> io::Result<libc::sigaction> {
    // SAFETY: an all-zero sigaction is a valid out-parameter.
    let mut old: libc::sigaction = unsafe { std::mem::zeroed() };
    syscall!(sigaction(libc::SIGCHLD, std::ptr::null(), &raw mut old))?;
    Ok(old)
}

/// Installs the handler unless it is installed already, chaining to whatever
/// is installed now (called at each spawn and by the safety check, since
/// Python's `signal.signal` replaces the action without chaining to ours).
/// Returns whether it had to (re-)install.
pub fn install() -> io::Result<bool> {
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    USED.store(true, Ordering::SeqCst);
    let old = current()?;
    if old.sa_sigaction == ours() {
        return Ok(false);
    }
    PREV_FLAGS.store(old.sa_flags, Ordering::SeqCst);
    PREV_ACTION.store(old.sa_sigaction, Ordering::SeqCst);
    // SAFETY: an all-zero sigaction is valid; the fields are filled below.
    let mut act: libc::sigaction = unsafe { std::mem::zeroed() };
    act.sa_sigaction = ours();
    // SA_ONSTACK as CPython's own handlers; SA_RESTART spares other code EINTR.
    act.sa_flags = libc::SA_SIGINFO | libc::SA_RESTART | libc::SA_ONSTACK | libc::SA_NOCLDSTOP;
    // SAFETY: sa_mask is a valid sigset_t to empty.
    unsafe { libc::sigemptyset(&raw mut act.sa_mask) };
    syscall!(sigaction(libc::SIGCHLD, &raw const act, std::ptr::null_mut()))?;
    Ok(true)
}

/// Re-installs the handler after a known replacement (the loop's own
/// `add_signal_handler(SIGCHLD)`), only if this process ever used it.
pub fn reinstall_if_used() -> io::Result<bool> {
    if USED.load(Ordering::SeqCst) {
        install()
    } else {
        Ok(false)
    }
}

/// A non-blocking, close-on-exec eventfd, woken by every `SIGCHLD` once
/// [`register`]ed.
pub fn eventfd() -> io::Result<RawFd> {
    syscall!(eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC))
}

/// Adds `fd` to the table the handler wakes; `EAGAIN` when it is full.
pub fn register(fd: RawFd) -> io::Result<()> {
    for slot in &WAKE_FDS {
        if slot.compare_exchange(-1, fd, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            return Ok(());
        }
    }
    Err(io::Error::from_raw_os_error(libc::EAGAIN))
}

/// Takes `fd` out of the table; once this returns no handler will write to it,
/// so it may be closed.
pub fn unregister(fd: RawFd) {
    for slot in &WAKE_FDS {
        if slot.compare_exchange(fd, -1, Ordering::SeqCst, Ordering::SeqCst).is_ok() {
            break;
        }
    }
    // A handler on another thread may have loaded `fd` before the swap.
    while IN_HANDLER.load(Ordering::SeqCst) != 0 {
        std::hint::spin_loop();
    }
}

/// Wakes `fd` as the handler would (after a spawn, for a `SIGCHLD` that may
/// have come before the registration).
pub fn wake(fd: RawFd) -> io::Result<()> {
    let one: u64 = 1;
    syscall!(write(fd, (&raw const one).cast(), 8)).map(drop)
}

/// Empties the eventfd's counter (a spurious wake-up is harmless).
pub fn drain(fd: RawFd) {
    let mut buf = 0u64;
    let _ = syscall!(read(fd, (&raw mut buf).cast(), 8));
}

/// `kill(pid, sig)`, for a child not yet reaped (its zombie holds the pid).
pub fn kill(pid: libc::pid_t, sig: i32) -> io::Result<()> {
    syscall!(kill(pid, sig)).map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn readable(fd: RawFd) -> bool {
        let mut pfd = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: one valid pollfd.
            match syscall!(poll(&raw mut pfd, 1, 2000)) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {} // our own SIGCHLD
                res => return res.unwrap() == 1,
            }
        }
    }

    #[test]
    // The child is reaped by `waitpid_nohang`, which clippy cannot see.
    #[allow(clippy::zombie_processes)]
    fn sigchld_wakes_registered_fd_and_reaps_only_by_pid() {
        install().unwrap();
        assert!(installed());
        assert!(!install().unwrap(), "a second install is a no-op");
        let fd = eventfd().unwrap();
        register(fd).unwrap();
        let child = std::process::Command::new("true").spawn().unwrap();
        let pid = libc::pid_t::try_from(child.id()).unwrap();
        assert!(readable(fd));
        drain(fd);
        let mut status = None;
        for _ in 0..200 {
            status = super::super::waitpid_nohang(pid).unwrap();
            if status.is_some() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        assert_eq!(status, Some(super::super::ChildStatus(0)));
        unregister(fd);
        wake(fd).unwrap();
        drain(fd);
        let _ = syscall!(close(fd));
    }

    #[test]
    fn unregister_frees_the_slot() {
        let fd = eventfd().unwrap();
        register(fd).unwrap();
        unregister(fd);
        assert!(WAKE_FDS.iter().all(|s| s.load(Ordering::SeqCst) != fd));
        let _ = syscall!(close(fd));
    }
}
