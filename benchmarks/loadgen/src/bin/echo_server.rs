//! The ceiling for benchmarks/net.py: a single-threaded mio echo server in plain Rust.
//!
//! Listens on `--tcp HOST:PORT` (port 0 picks one) or `--unix PATH`, or serves UDP on
//! `--udp HOST:PORT` (each datagram sent back to its sender), prints `READY <port|path>
//! <pid>` on stdout once it accepts, and echoes every byte back until killed. A connection whose
//! echo does not fit in the socket buffer keeps the rest and stops reading until it drains, so a
//! slow reader cannot make the server buffer without bound. With `--tls` (TCP only) each
//! connection speaks TLS (OpenSSL, a throwaway self-signed P-256 certificate), handshaken while
//! blocking when accepted: the ceiling of the TLS echo points.

use std::io::{self, ErrorKind, Read, Write};
use std::os::fd::{FromRawFd, IntoRawFd};

use ferroloop_loadgen::{die, Endpoint, Flags, Stream};
use mio::net::{TcpListener, UdpSocket, UnixListener};
use mio::{Events, Interest, Poll, Token};
use openssl::asn1::Asn1Time;
use openssl::ec::{EcGroup, EcKey};
use openssl::hash::MessageDigest;
use openssl::nid::Nid;
use openssl::pkey::PKey;
use openssl::ssl::{SslAcceptor, SslMethod};
use openssl::x509::{X509NameBuilder, X509};

const USAGE: &str = "usage: echo-server (--tcp HOST:PORT [--tls] | --unix PATH | --udp HOST:PORT)";
const LISTENER: Token = Token(usize::MAX);

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener),
}

impl Listener {
    fn bind(endpoint: &Endpoint) -> io::Result<(Self, String)> {
        Ok(match endpoint {
            Endpoint::Tcp(addr) => {
                let listener = TcpListener::bind(*addr)?;
                let port = listener.local_addr()?.port().to_string();
                (Self::Tcp(listener), port)
            }
            Endpoint::Unix(path) => (Self::Unix(UnixListener::bind(path)?), path.display().to_string()),
            Endpoint::Udp(_) => unreachable!("UDP has no listener (serve_udp)"),
        })
    }

    fn accept(&self, tls: Option<&SslAcceptor>) -> io::Result<Stream> {
        match self {
            Self::Tcp(l) => {
                let (stream, _) = l.accept()?;
                stream.set_nodelay(true)?;
                let Some(acceptor) = tls else { return Ok(Stream::Tcp(stream)) };
                // SAFETY: the descriptor comes straight from the mio stream, which gives it up.
                let stream = unsafe { std::net::TcpStream::from_raw_fd(stream.into_raw_fd()) };
                stream.set_nonblocking(false)?;
                let tls = acceptor.accept(stream).map_err(io::Error::other)?;
                tls.get_ref().set_nonblocking(true)?;
                Ok(Stream::Tls(Box::new(tls)))
            }
            Self::Unix(l) => Ok(Stream::Unix(l.accept()?.0)),
        }
    }
}

/// A TLS acceptor with a fresh self-signed P-256 certificate for "localhost".
fn tls_acceptor() -> Result<SslAcceptor, openssl::error::ErrorStack> {
    let group = EcGroup::from_curve_name(Nid::X9_62_PRIME256V1)?;
    let key = PKey::from_ec_key(EcKey::generate(&group)?)?;
    let mut name = X509NameBuilder::new()?;
    name.append_entry_by_nid(Nid::COMMONNAME, "localhost")?;
    let name = name.build();
    let mut cert = X509::builder()?;
    cert.set_version(2)?;
    cert.set_subject_name(&name)?;
    cert.set_issuer_name(&name)?;
    cert.set_pubkey(&key)?;
    cert.set_not_before(Asn1Time::days_from_now(0)?.as_ref())?;
    cert.set_not_after(Asn1Time::days_from_now(1)?.as_ref())?;
    cert.sign(&key, MessageDigest::sha256())?;
    let mut acceptor = SslAcceptor::mozilla_intermediate_v5(SslMethod::tls())?;
    acceptor.set_private_key(&key)?;
    acceptor.set_certificate(&cert.build())?;
    Ok(acceptor.build())
}

/// A connection and the part of an echo the socket has not taken yet.
struct Conn {
    stream: Stream,
    pending: Vec<u8>,
}

impl Conn {
    /// Write what is pending, then echo what has arrived. `Ok(false)` once the peer is gone.
    fn serve(&mut self, scratch: &mut [u8]) -> io::Result<bool> {
        if !self.flush()? {
            return Ok(true); // still blocked on writing: read again once it drains
        }
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            self.pending.extend_from_slice(&scratch[..n]);
            if !self.flush()? || (n < scratch.len() && !self.stream.reads_by_record()) {
                return Ok(true); // blocked on writing, or drained: the next edge resumes us
            }
        }
    }

    /// Write the pending bytes; `Ok(true)` when none are left.
    fn flush(&mut self) -> io::Result<bool> {
        let mut written = 0;
        while written < self.pending.len() {
            match self.stream.write(&self.pending[written..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.pending.drain(..written);
        Ok(self.pending.is_empty())
    }
}

/// UDP: every datagram goes back to its sender, read until the socket is empty.
fn serve_udp(addr: std::net::SocketAddr) -> io::Result<()> {
    let mut poll = Poll::new()?;
    let mut socket = UdpSocket::bind(addr)?;
    poll.registry().register(&mut socket, LISTENER, Interest::READABLE)?;
    println!("READY {} {}", socket.local_addr()?.port(), std::process::id());
    io::stdout().flush()?;
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(16);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        loop {
            match socket.recv_from(&mut scratch) {
                Ok((n, from)) => {
                    // A full socket drops the echo, as a kernel queue would: the load
                    // generator keeps one datagram in flight per socket, so it does not happen.
                    let _ = socket.send_to(&scratch[..n], from);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

fn serve(endpoint: &Endpoint, tls: Option<&SslAcceptor>) -> io::Result<()> {
    if let Endpoint::Udp(addr) = endpoint {
        return serve_udp(*addr);
    }
    let mut poll = Poll::new()?;
    let (mut listener, name) = Listener::bind(endpoint)?;
    match &mut listener {
        Listener::Tcp(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
        Listener::Unix(l) => poll.registry().register(l, LISTENER, Interest::READABLE)?,
    }
    println!("READY {name} {}", std::process::id());
    io::stdout().flush()?;
    let mut conns: Vec<Option<Conn>> = Vec::new();
    let mut scratch = vec![0u8; 64 * 1024];
    let mut events = Events::with_capacity(1024);
    loop {
        if let Err(e) = poll.poll(&mut events, None) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            if event.token() == LISTENER {
                accept_all(&listener, tls, &poll, &mut conns)?;
                continue;
            }
            let slot = &mut conns[event.token().0];
            let alive = slot.as_mut().is_some_and(|conn| conn.serve(&mut scratch).unwrap_or(false));
            if !alive {
                if let Some(mut conn) = slot.take() {
                    poll.registry().deregister(&mut conn.stream)?;
                }
            }
        }
    }
}

fn accept_all(
    listener: &Listener,
    tls: Option<&SslAcceptor>,
    poll: &Poll,
    conns: &mut Vec<Option<Conn>>,
) -> io::Result<()> {
    loop {
        let mut stream = match listener.accept(tls) {
            Ok(stream) => stream,
            Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        let index = conns.iter().position(Option::is_none).unwrap_or(conns.len());
        poll.registry().register(&mut stream, Token(index), Interest::READABLE | Interest::WRITABLE)?;
        let conn = Some(Conn { stream, pending: Vec::with_capacity(64 * 1024) });
        if index == conns.len() {
            conns.push(conn);
        } else {
            conns[index] = conn;
        }
    }
}

fn main() {
    let flags = Flags::parse(std::env::args().skip(1)).unwrap_or_else(|e| die(&e, true));
    if flags.switch("help") {
        println!("{USAGE}");
        return;
    }
    let endpoint = flags.endpoint().unwrap_or_else(|e| die(&format!("{e}\n{USAGE}"), true));
    let tls =
        flags.switch("tls").then(|| tls_acceptor().unwrap_or_else(|e| die(&format!("TLS: {e}"), false)));
    if let Err(e) = serve(&endpoint, tls.as_ref()) {
        die(&format!("echo-server: {e}"), false);
    }
}
