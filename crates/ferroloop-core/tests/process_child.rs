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
        poller.poll(Some(std::time::Duration::from_secs(10)), &mut events).unwrap();
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
