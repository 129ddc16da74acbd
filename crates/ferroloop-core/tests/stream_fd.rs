//! `StreamFd`: the same calls behave alike over a socket pair and a pipe.

use std::io::{ErrorKind, IoSlice};

use ferroloop_core::{sys, StreamFd};

fn pipe_nonblocking() -> (i32, i32) {
    let mut fds = [0; 2];
    // SAFETY: fds has room for the two descriptors pipe2 writes.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) }, 0);
    (fds[0], fds[1])
}

fn round_trip(kind: StreamFd, reader: i32, writer: i32) {
    let mut buf = [0u8; 16];
    assert_eq!(kind.read(reader, &mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
    assert_eq!(kind.write(writer, b"ab").unwrap(), 2);
    let parts = [IoSlice::new(b"cd"), IoSlice::new(b""), IoSlice::new(b"efg")];
    assert_eq!(kind.write_vectored(writer, &parts).unwrap(), 5);
    assert_eq!(kind.read(reader, &mut buf).unwrap(), 7);
    assert_eq!(&buf[..7], b"abcdefg");
    sys::close(writer).unwrap();
    assert_eq!(kind.read(reader, &mut buf).unwrap(), 0, "end of stream once the writer is closed");
    sys::close(reader).unwrap();
}

#[test]
fn socket_and_pipe_read_write_and_gather_alike() {
    let (a, b) = sys::socketpair_nonblocking().unwrap();
    round_trip(StreamFd::Socket, a, b);
    let (r, w) = pipe_nonblocking();
    round_trip(StreamFd::Pipe, r, w);
}

#[test]
fn writing_to_a_closed_reader_is_epipe_for_both() {
    // Rust's test harness ignores SIGPIPE as CPython does, so a pipe reports EPIPE.
    let (r, w) = pipe_nonblocking();
    sys::close(r).unwrap();
    assert_eq!(StreamFd::Pipe.write(w, b"x").unwrap_err().raw_os_error(), Some(libc::EPIPE));
    sys::close(w).unwrap();
    let (a, b) = sys::socketpair_nonblocking().unwrap();
    sys::close(b).unwrap();
    assert_eq!(StreamFd::Socket.write(a, b"x").unwrap_err().raw_os_error(), Some(libc::EPIPE));
    sys::close(a).unwrap();
}
