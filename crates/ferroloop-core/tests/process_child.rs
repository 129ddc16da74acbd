//! The child watcher's core against real children (`/bin/sh`).

// The children are reaped through their pidfd (`Child::try_wait`), which clippy cannot see.
#![allow(clippy::zombie_processes)]

use std::process::Command;

use ferroloop_core::process::{Child, ChildStatus, Reaped};
use ferroloop_core::{Interest, Poller};

fn wait_readable(child: &Child) {
    let poller = Poller::new().unwrap();
    poller.register(child.fd(), 7, Interest { read: true, write: false }).unwrap();
    let mut events = Vec::new();
    while events.is_empty() {
        match poller.poll(Some(std::time::Duration::from_secs(10)), &mut events) {
            // The fallback's own SIGCHLD handler may interrupt the wait.
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            res => res.unwrap(),
        }
    }
    assert!(events.iter().any(|e| e.token == 7 && e.readable));
}

fn pid_of(proc: &std::process::Child) -> i32 {
    i32::try_from(proc.id()).unwrap()
}

fn spawn(script: &str) -> std::process::Child {
    Command::new("/bin/sh").arg("-c").arg(script).spawn().unwrap()
}

#[test]
fn exit_status_comes_through_the_pidfd() {
    if !Child::supported() {
        return;
    }
    let proc = spawn("exit 7");
    let child = Child::open(pid_of(&proc)).unwrap();
    wait_readable(&child);
    assert_eq!(child.try_wait().unwrap(), Reaped::Exited(ChildStatus(7)));
    // Reaped: signals are no longer an error, and nothing is left to reap.
    child.send_signal(libc::SIGKILL).unwrap();
    assert_eq!(child.try_wait().unwrap(), Reaped::Elsewhere);
}

#[test]
fn a_signal_reports_minus_its_number() {
    if !Child::supported() {
        return;
    }
    let proc = spawn("sleep 30");
    let child = Child::open(pid_of(&proc)).unwrap();
    assert_eq!(child.try_wait().unwrap(), Reaped::Running);
    child.send_signal(libc::SIGTERM).unwrap();
    wait_readable(&child);
    assert_eq!(child.try_wait().unwrap(), Reaped::Exited(ChildStatus(-libc::SIGTERM)));
}

#[test]
fn a_child_reaped_elsewhere_is_reported_so() {
    if !Child::supported() {
        return;
    }
    let mut proc = spawn("exit 0");
    let child = Child::open(pid_of(&proc)).unwrap();
    assert!(proc.wait().unwrap().success());
    assert_eq!(child.try_wait().unwrap(), Reaped::Elsewhere);
}

// ---- without a pidfd: SIGCHLD wakes an eventfd, then waitpid(pid, WNOHANG) ------------------

/// Waits for wake-ups until the child is reaped (the first wake-up comes at once).
fn reap_fallback(child: &Child) -> Reaped {
    for _ in 0..100 {
        wait_readable(child);
        match child.try_wait().unwrap() {
            Reaped::Running => {}
            done => return done,
        }
    }
    panic!("no exit seen");
}

#[test]
fn fallback_exit_status_comes_through_sigchld() {
    let proc = spawn("exit 7");
    let child = Child::open_fallback(pid_of(&proc)).unwrap();
    assert!(child.is_fallback());
    assert_eq!(reap_fallback(&child), Reaped::Exited(ChildStatus(7)));
    // Reaped: the pid is no longer ours, so a signal goes nowhere and raises nothing.
    child.send_signal(libc::SIGKILL).unwrap();
    assert_eq!(child.try_wait().unwrap(), Reaped::Elsewhere);
}

#[test]
fn fallback_signals_reach_the_unreaped_child() {
    let proc = spawn("sleep 30");
    let child = Child::open_fallback(pid_of(&proc)).unwrap();
    child.send_signal(libc::SIGTERM).unwrap();
    assert_eq!(reap_fallback(&child), Reaped::Exited(ChildStatus(-libc::SIGTERM)));
}

#[test]
fn fallback_leaves_other_children_to_their_owner() {
    let mut other = spawn("exit 3");
    let proc = spawn("sleep 0.2");
    let child = Child::open_fallback(pid_of(&proc)).unwrap();
    assert_eq!(reap_fallback(&child), Reaped::Exited(ChildStatus(0)));
    // Never waitpid(-1): the other child is still there for its owner to reap.
    assert_eq!(other.wait().unwrap().code(), Some(3));
}
