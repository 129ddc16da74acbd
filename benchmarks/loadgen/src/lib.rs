//! Pieces shared by the load generator and the Rust echo server: command-line flags, the
//! endpoint (TCP, Unix socket or UDP), a stream over any of them (and TLS over TCP) (a connected UDP socket sends
//! and receives one message per datagram), and the process's own CPU time.
//!
//! Both binaries are single-threaded mio loops; nothing here spawns threads or blocks, except
//! connecting, which happens before any measurement starts.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use std::os::fd::AsRawFd;

use mio::event::Source;
use mio::net::{TcpStream, UdpSocket, UnixStream};
use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use openssl::ssl::{SslConnector, SslMethod, SslStream, SslVerifyMode};

/// `--name value` flags and bare `--switch`es; anything else is an error.
pub struct Flags(HashMap<String, Option<String>>);

impl Flags {
    /// Parse `args` (without the program name). A flag followed by a value that does not start
    /// with `--` takes it; otherwise it is a switch.
    pub fn parse(args: impl IntoIterator<Item = String>) -> Result<Self, String> {
        let mut map = HashMap::new();
        let mut args = args.into_iter().peekable();
        while let Some(arg) = args.next() {
            let Some(name) = arg.strip_prefix("--") else {
                return Err(format!("unexpected argument {arg:?}"));
            };
            let value = args.next_if(|next| !next.starts_with("--"));
            map.insert(name.to_owned(), value);
        }
        Ok(Self(map))
    }

    pub fn switch(&self, name: &str) -> bool {
        self.0.contains_key(name)
    }

    pub fn text(&self, name: &str) -> Option<&str> {
        self.0.get(name).and_then(Option::as_deref)
    }

    /// The value of `--name`, parsed, or `default` when the flag is absent.
    pub fn value<T: std::str::FromStr>(&self, name: &str, default: T) -> Result<T, String> {
        match self.text(name) {
            None => Ok(default),
            Some(text) => text.parse().map_err(|_| format!("bad value for --{name}: {text:?}")),
        }
    }

    /// `--tcp HOST:PORT`, `--unix PATH` or `--udp HOST:PORT`.
    pub fn endpoint(&self) -> Result<Endpoint, String> {
        match (self.text("tcp"), self.text("unix"), self.text("udp")) {
            (Some(addr), None, None) => {
                addr.parse().map(Endpoint::Tcp).map_err(|_| format!("bad --tcp address {addr:?}"))
            }
            (None, Some(path), None) => Ok(Endpoint::Unix(PathBuf::from(path))),
            (None, None, Some(addr)) => {
                addr.parse().map(Endpoint::Udp).map_err(|_| format!("bad --udp address {addr:?}"))
            }
            _ => Err("give exactly one of --tcp HOST:PORT, --unix PATH and --udp HOST:PORT".to_owned()),
        }
    }
}

/// Where the echo server listens.
#[derive(Clone, Debug)]
pub enum Endpoint {
    Tcp(SocketAddr),
    Unix(PathBuf),
    Udp(SocketAddr),
}

impl Endpoint {
    /// Connect (blocking), then hand the socket over to mio as a nonblocking stream.
    /// TCP streams get TCP_NODELAY, as every server under test sets it on its side.
    pub fn connect(&self) -> io::Result<Stream> {
        match self {
            Endpoint::Tcp(addr) => {
                let stream = std::net::TcpStream::connect(addr)?;
                stream.set_nodelay(true)?;
                stream.set_nonblocking(true)?;
                Ok(Stream::Tcp(TcpStream::from_std(stream)))
            }
            Endpoint::Unix(path) => {
                let stream = std::os::unix::net::UnixStream::connect(path)?;
                stream.set_nonblocking(true)?;
                Ok(Stream::Unix(UnixStream::from_std(stream)))
            }
            Endpoint::Udp(addr) => {
                let local: SocketAddr = if addr.is_ipv4() { "127.0.0.1:0" } else { "[::1]:0" }
                    .parse()
                    .expect("a literal address");
                let socket = std::net::UdpSocket::bind(local)?;
                socket.connect(addr)?;
                socket.set_nonblocking(true)?;
                Ok(Stream::Udp(UdpSocket::from_std(socket)))
            }
        }
    }
}

impl Endpoint {
    /// A TCP connection with TLS (OpenSSL, the server's certificate not checked: the servers
    /// under test make a throwaway one), handshaken while blocking, then nonblocking.
    pub fn connect_tls(&self) -> io::Result<Stream> {
        let Endpoint::Tcp(addr) = self else {
            return Err(io::Error::other("--tls needs --tcp"));
        };
        let stream = std::net::TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        let mut builder = SslConnector::builder(SslMethod::tls_client()).map_err(io::Error::other)?;
        builder.set_verify(SslVerifyMode::NONE);
        let tls = builder.build().connect("localhost", stream).map_err(io::Error::other)?;
        tls.get_ref().set_nonblocking(true)?;
        Ok(Stream::Tls(Box::new(tls)))
    }
}

/// A connected nonblocking socket: a stream, or UDP (one message per datagram), or TLS over TCP.
pub enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Udp(UdpSocket),
    Tls(Box<SslStream<std::net::TcpStream>>),
}

impl Stream {
    /// Whether a short read may leave bytes behind (TLS reads one record at a time), so that
    /// reading must go on until it would block.
    pub fn reads_by_record(&self) -> bool {
        matches!(self, Stream::Tls(_))
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Udp(s) => s.recv(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Udp(s) => s.send(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Source for Stream {
    fn register(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.register(registry, token, interests),
            Stream::Unix(s) => s.register(registry, token, interests),
            Stream::Udp(s) => s.register(registry, token, interests),
            Stream::Tls(s) => SourceFd(&s.get_ref().as_raw_fd()).register(registry, token, interests),
        }
    }

    fn reregister(&mut self, registry: &Registry, token: Token, interests: Interest) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.reregister(registry, token, interests),
            Stream::Unix(s) => s.reregister(registry, token, interests),
            Stream::Udp(s) => s.reregister(registry, token, interests),
            Stream::Tls(s) => SourceFd(&s.get_ref().as_raw_fd()).reregister(registry, token, interests),
        }
    }

    fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.deregister(registry),
            Stream::Unix(s) => s.deregister(registry),
            Stream::Udp(s) => s.deregister(registry),
            Stream::Tls(s) => SourceFd(&s.get_ref().as_raw_fd()).deregister(registry),
        }
    }
}

/// User plus system CPU time this process has used so far (getrusage(RUSAGE_SELF)).
pub fn cpu_time() -> Duration {
    // SAFETY: an all-zero `rusage` is a valid value of this plain C struct.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage; RUSAGE_SELF is a valid `who`.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &raw mut usage) };
    assert_eq!(rc, 0, "getrusage(RUSAGE_SELF) failed");
    let micros = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000 + tv.tv_usec as u64;
    Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}

/// Print `message` to stderr and exit with status 2 (bad usage) or 1 (failure).
pub fn die(message: &str, usage: bool) -> ! {
    eprintln!("{message}");
    std::process::exit(if usage { 2 } else { 1 })
}
