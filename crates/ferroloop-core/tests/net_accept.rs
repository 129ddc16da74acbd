//! `net::accept`: nothing waiting is `WouldBlock`; a connection comes with its peer's address
//! and a close-on-exec descriptor that is blocking until its owner says otherwise.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::fd::AsRawFd;

use ferroloop_core::net::{self, AddrView, SockAddr};
use ferroloop_core::sys;

fn flags(fd: i32, cmd: i32) -> i32 {
    // SAFETY: F_GETFD/F_GETFL on an open descriptor only read its flags.
    unsafe { libc::fcntl(fd, cmd) }
}

#[test]
fn accepts_with_the_peer_address_until_none_is_waiting() {
    let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    listener.set_nonblocking(true).unwrap();
    let mut addr = SockAddr::default();
    let err = net::accept(listener.as_raw_fd(), &mut addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock);

    let client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
    let fd = net::accept(listener.as_raw_fd(), &mut addr).unwrap();
    let SocketAddr::V4(mine) = client.local_addr().unwrap() else { panic!("not IPv4") };
    assert_eq!(addr.view(), AddrView::V4 { ip: *mine.ip(), port: mine.port() });
    assert_ne!(flags(fd, libc::F_GETFD) & libc::FD_CLOEXEC, 0);
    assert_eq!(flags(fd, libc::F_GETFL) & libc::O_NONBLOCK, 0);
    sys::close(fd).unwrap();

    let err = net::accept(listener.as_raw_fd(), &mut addr).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::WouldBlock, "the queue is empty again");
}
