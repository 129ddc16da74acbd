//! Closed-loop echo load generator for benchmarks/net.py.
//!
//! Opens `--conns` connections to an echo server and, on each, sends a `--size`-byte message and
//! waits for all of it to come back before sending the next. One thread, one mio poll: it must
//! cost less CPU per message than any server under test, so that the server is the bottleneck
//! (its own CPU use is reported so a reader can check).
//!
//! Timed mode (`--warmup S --duration S`) runs a warm-up, then a measured window; with
//! `--markers` it prints `start` and `end` lines on stdout at the window's edges, so the caller
//! can sample the server's CPU time there. Count mode (`--count N`) sends exactly N messages in
//! all and measures the whole run (N may be 0: connect and close). Either way the last line is
//! one JSON object. Every echoed byte is checked against what was sent. With `--udp` each
//! "connection" is a connected UDP socket and each message one datagram; with one datagram in
//! flight per socket, loopback does not drop any. With `--tls` each TCP connection speaks TLS
//! (OpenSSL), handshaken before the run starts. With `--reconnect` (TCP or Unix) each message
//! goes over a new connection: the previous one is closed once its echo is back, so the server
//! accepts, echoes and closes a connection per message.

use std::io::{self, ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use ferroloop_loadgen::{cpu_time, die, Endpoint, Flags, Stream};
use mio::{Events, Interest, Poll, Registry, Token};

const USAGE: &str =
    "usage: loadgen (--tcp HOST:PORT [--tls] | --unix PATH | --udp HOST:PORT) [--conns N] [--size BYTES]
               [--reconnect] [--warmup SECONDS] [--duration SECONDS] [--markers] | [--count MESSAGES]";
const READ_CHUNK: usize = 256 * 1024;
const DRAIN_LIMIT: Duration = Duration::from_secs(5);

struct Config {
    endpoint: Endpoint,
    conns: usize,
    size: usize,
    warmup: Duration,
    duration: Duration,
    count: Option<u64>,
    markers: bool,
    tls: bool,
    reconnect: bool,
}

impl Config {
    fn from_flags(flags: &Flags) -> Result<Self, String> {
        let seconds = |name, default| {
            flags
                .value(name, default)
                .and_then(|s: f64| Duration::try_from_secs_f64(s).map_err(|_| format!("bad --{name}: {s}")))
        };
        let config = Self {
            endpoint: flags.endpoint()?,
            conns: flags.value("conns", 1)?,
            size: flags.value("size", 1024)?,
            warmup: seconds("warmup", 0.5)?,
            duration: seconds("duration", 3.0)?,
            count: flags.text("count").map(str::parse).transpose().map_err(|_| "bad --count")?,
            markers: flags.switch("markers"),
            tls: flags.switch("tls"),
            reconnect: flags.switch("reconnect"),
        };
        if config.conns == 0 || config.size == 0 {
            return Err("--conns and --size must be positive".to_owned());
        }
        if config.reconnect && (config.tls || matches!(config.endpoint, Endpoint::Udp(_))) {
            return Err("--reconnect is for plain TCP and Unix streams".to_owned());
        }
        Ok(config)
    }
}

/// One connection's message in flight.
struct Conn {
    stream: Stream,
    token: Token,
    sent: usize,
    received: usize,
    started: Instant,
    busy: bool,
    /// No message has gone over this connection yet.
    fresh: bool,
}

/// The run's state: what phase it is in and what it has counted.
struct Run<'a> {
    config: &'a Config,
    registry: Registry,
    pattern: Vec<u8>,
    scratch: Vec<u8>,
    begun: u64,
    measuring: bool,
    stopping: bool,
    latencies_ns: Vec<u64>,
}

impl Run<'_> {
    /// Start the next message on `conn`, unless the run is ending.
    fn begin(&mut self, conn: &mut Conn) -> io::Result<()> {
        if self.stopping || self.config.count.is_some_and(|n| self.begun >= n) {
            return Ok(());
        }
        self.begun += 1;
        let started = Instant::now();
        if self.config.reconnect && !conn.fresh {
            self.registry.deregister(&mut conn.stream)?;
            conn.stream = self.config.endpoint.connect()?; // the old one closes as it drops
            self.registry.register(&mut conn.stream, conn.token, Interest::READABLE | Interest::WRITABLE)?;
        }
        (conn.sent, conn.received, conn.started, conn.busy, conn.fresh) = (0, 0, started, true, false);
        self.write(conn)
    }

    fn write(&self, conn: &mut Conn) -> io::Result<()> {
        while conn.busy && conn.sent < self.pattern.len() {
            match conn.stream.write(&self.pattern[conn.sent..]) {
                Ok(0) => return Err(ErrorKind::WriteZero.into()),
                Ok(n) => conn.sent += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(())
    }

    /// Read what has arrived, check it, and start the next message once the echo is complete.
    fn read(&mut self, conn: &mut Conn) -> io::Result<()> {
        loop {
            let want = if conn.busy { (self.pattern.len() - conn.received).min(READ_CHUNK) } else { 1 };
            let n = match conn.stream.read(&mut self.scratch[..want]) {
                Ok(0) if self.stopping && !conn.busy => return Ok(()),
                Ok(0) => return Err(io::Error::other("the server closed the connection")),
                Ok(n) => n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Ok(()),
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let expected = &self.pattern[conn.received..];
            if !conn.busy || n > expected.len() || self.scratch[..n] != expected[..n] {
                return Err(io::Error::other("the echo differs from what was sent"));
            }
            conn.received += n;
            if conn.received == self.pattern.len() {
                conn.busy = false;
                if self.measuring && !self.stopping {
                    self.latencies_ns.push(conn.started.elapsed().as_nanos() as u64);
                }
                return self.begin(conn);
            }
            if n < want && !conn.stream.reads_by_record() {
                return Ok(()); // drained for now: the next arrival raises a new edge
            }
        }
    }
}

/// The measured window: wall-clock and CPU time at its edges.
struct Window {
    start: Instant,
    cpu_start: Duration,
    end: Option<(Instant, Duration)>,
}

impl Window {
    fn open(markers: bool) -> Self {
        marker(markers, "start");
        Self { start: Instant::now(), cpu_start: cpu_time(), end: None }
    }

    fn close(&mut self, markers: bool) {
        self.end = Some((Instant::now(), cpu_time()));
        marker(markers, "end");
    }
}

fn marker(enabled: bool, line: &str) {
    if enabled {
        let mut out = io::stdout().lock();
        // A lost marker only costs the caller its CPU sample; the run itself goes on.
        let _ = writeln!(out, "{line}").and_then(|()| out.flush());
    }
}

fn run(config: &Config) -> io::Result<String> {
    let mut poll = Poll::new()?;
    let mut conns = Vec::with_capacity(config.conns);
    for i in 0..config.conns {
        let mut stream =
            if config.tls { config.endpoint.connect_tls()? } else { config.endpoint.connect()? };
        poll.registry().register(&mut stream, Token(i), Interest::READABLE | Interest::WRITABLE)?;
        let started = Instant::now();
        conns.push(Conn { stream, token: Token(i), sent: 0, received: 0, started, busy: false, fresh: true });
    }
    let mut state = Run {
        config,
        registry: poll.registry().try_clone()?,
        pattern: (0..config.size).map(|i| (i % 251) as u8).collect(),
        scratch: vec![0; READ_CHUNK.min(config.size).max(1)],
        begun: 0,
        measuring: config.count.is_some(),
        stopping: false,
        latencies_ns: Vec::with_capacity(1 << 20),
    };
    let launched = Instant::now();
    let mut window = state.measuring.then(|| Window::open(config.markers));
    for conn in &mut conns {
        state.begin(conn)?;
    }
    let mut events = Events::with_capacity(1024);
    let mut drain_deadline = None;
    loop {
        let now = Instant::now();
        if config.count.is_none() {
            if !state.measuring && now >= launched + config.warmup {
                state.measuring = true;
                window = Some(Window::open(config.markers));
            }
            if let Some(w) = window.as_mut().filter(|w| w.end.is_none()) {
                if now >= w.start + config.duration {
                    w.close(config.markers);
                    state.stopping = true;
                    drain_deadline = Some(now + DRAIN_LIMIT);
                }
            }
        }
        if conns.iter().all(|c| !c.busy) && (state.stopping || config.count.is_some()) {
            break;
        }
        if drain_deadline.is_some_and(|d| now >= d) {
            return Err(io::Error::other("echoes still missing 5 s after the window closed"));
        }
        let timeout = next_deadline(config, launched, window.as_ref(), drain_deadline)
            .map(|at| at.saturating_duration_since(now));
        if let Err(e) = poll.poll(&mut events, timeout) {
            if e.kind() == ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        for event in &events {
            let conn = &mut conns[event.token().0];
            if event.is_writable() {
                state.write(conn)?;
            }
            if event.is_readable() || event.is_read_closed() || event.is_error() {
                state.read(conn)?;
            }
        }
    }
    let mut window = window.expect("a run that finished has opened its window");
    if window.end.is_none() {
        window.close(config.markers); // count mode: the window is the whole run
    }
    Ok(summary(config, &window, &mut state.latencies_ns))
}

fn next_deadline(
    config: &Config,
    launched: Instant,
    window: Option<&Window>,
    drain_deadline: Option<Instant>,
) -> Option<Instant> {
    if config.count.is_some() {
        return None;
    }
    match window {
        None => Some(launched + config.warmup),
        Some(w) if w.end.is_none() => Some(w.start + config.duration),
        Some(_) => drain_deadline,
    }
}

fn summary(config: &Config, window: &Window, latencies_ns: &mut [u64]) -> String {
    let (end, cpu_end) = window.end.expect("closed window");
    let seconds = (end - window.start).as_secs_f64();
    let cpu = cpu_end.saturating_sub(window.cpu_start).as_secs_f64();
    let messages = latencies_ns.len();
    latencies_ns.sort_unstable();
    let percentile = |q: f64| -> f64 {
        if messages == 0 {
            return 0.0;
        }
        let rank = ((q * messages as f64).ceil() as usize).clamp(1, messages);
        latencies_ns[rank - 1] as f64 / 1e3
    };
    let mean = latencies_ns.iter().sum::<u64>() as f64 / messages.max(1) as f64 / 1e3;
    let rate = messages as f64 / seconds.max(1e-9);
    format!(
        concat!(
            "{{\"conns\": {}, \"size\": {}, \"messages\": {}, \"seconds\": {:.4}, ",
            "\"messages_per_s\": {:.1}, \"bytes_per_s\": {:.1}, \"mean_us\": {:.2}, ",
            "\"p50_us\": {:.2}, \"p90_us\": {:.2}, \"p99_us\": {:.2}, \"max_us\": {:.2}, ",
            "\"cpu_s\": {:.4}, \"cpu_us_per_msg\": {:.3}, \"cpu_pct\": {:.1}}}"
        ),
        config.conns,
        config.size,
        messages,
        seconds,
        rate,
        rate * config.size as f64,
        mean,
        percentile(0.50),
        percentile(0.90),
        percentile(0.99),
        percentile(1.0),
        cpu,
        if messages == 0 { 0.0 } else { cpu * 1e6 / messages as f64 },
        100.0 * cpu / seconds.max(1e-9),
    )
}

fn main() {
    let flags = Flags::parse(std::env::args().skip(1)).unwrap_or_else(|e| die(&e, true));
    if flags.switch("help") {
        println!("{USAGE}");
        return;
    }
    let config = Config::from_flags(&flags).unwrap_or_else(|e| die(&format!("{e}\n{USAGE}"), true));
    match run(&config) {
        Ok(json) => println!("{json}"),
        Err(e) => die(&format!("loadgen: {e}"), false),
    }
}
