"""Network benchmarks: one measurement per process, printing one JSON line, as micro.py does.

Each measurement starts a server (servers.py on the chosen loop, or the Rust echo ceiling)
pinned to one CPU and drives it from another: echo points with the Rust load generator in
benchmarks/loadgen (closed loop: each connection waits for its whole echo before sending again),
HTTP with wrk. The server's CPU time comes from /proc/<pid>/stat over the measured window::

    python benchmarks/net.py proto_1k_c16 --loop ferroloop       # msg/s, latency, CPU per msg
    python benchmarks/net.py http_c16 --loop uvloop              # wrk -t1 -c16 --latency
    python benchmarks/net.py syscalls_proto_1k_c1 --loop asyncio # strace -c -f, per message
    python benchmarks/net.py --build                             # cargo build the load generator

Bench names are ``<server>_<size>_c<connections>``; loop ``rust`` is the Rust echo server.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import re
import resource
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO

HERE = Path(__file__).resolve().parent
LOADGEN_DIR = HERE / "loadgen"
RELEASE = LOADGEN_DIR / "target" / "release"
LOADGEN, ECHO_SERVER = RELEASE / "loadgen", RELEASE / "echo-server"
STAMP = RELEASE / ".built"  # touched after each successful build: the cache key
HOST = "127.0.0.1"
CEILING = "rust"  # the extra loop: the Rust echo server
READY_TIMEOUT_S = 60.0  # a Python server under strace imports slowly
COUNT_TIMEOUT_S = 90.0  # a counted (strace) run; well inside harness.TIMEOUT_S
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Point:
    server: str  # a servers.py kind
    size: int  # bytes per message
    conns: int
    reconnect: bool = False  # a new connection per message (accept, echo, close)


SERVERS = {
    "proto": "Protocol echo",
    "streams": "streams echo",
    "sock": "sock_* echo",
    "unix": "Unix echo",
    "udp": "UDP echo",
    "tls": "TLS echo",
}
SIZES = {"1k": 1024, "10k": 10 * 1024, "100k": 100 * 1024}
POINTS: dict[str, Point] = {
    f"{server}_{size}_c{conns}": Point(server, SIZES[size], conns)
    for server in ("proto", "streams", "sock")
    for size in SIZES
    for conns in (1, 16)
}
POINTS["unix_1k_c16"] = Point("unix", 1024, 16)
POINTS["udp_1k_c16"] = Point("udp", 1024, 16)
POINTS["udp_64b_c16"] = Point("udp", 64, 16)
POINTS["udp_8k_c1"] = Point("udp", 8 * 1024, 1)
# TLS: the Protocol echo over the stdlib ssl module; the load generator speaks TLS (OpenSSL).
POINTS["tls_1k_c16"] = Point("tls", 1024, 16)
POINTS["tls_64k_c1"] = Point("tls", 64 * 1024, 1)
# Short connections: each message on a new connection, so the server accepts, sets up a
# transport and protocol, echoes and closes per message (a connection per request).
POINTS["proto_newconn_c16"] = Point("proto", 64, 16, reconnect=True)
HTTP_CONNS = 16


def point_title(point: Point) -> str:
    size = f"{point.size // 1024} KiB" if point.size >= 1024 else f"{point.size} B"
    each = ", a new connection each" if point.reconnect else ""
    return f"{SERVERS[point.server]} {size} x {point.conns}{each}"


# name -> title, in report order
NET_BENCHES = {name: point_title(p) for name, p in POINTS.items()}
NET_BENCHES["http_c16"] = f"HTTP keep-alive, wrk {HTTP_CONNS} conns"
# HTTPS: the same server over TLS (the stdlib ssl module), as a TLS-terminating app runs.
HTTPS_CONNS = 64
NET_BENCHES["https_c64"] = f"HTTPS keep-alive, wrk {HTTPS_CONNS} conns"
# Full TLS handshakes, one after another, from `openssl s_time -new` (connect, handshake, close).
NET_BENCHES["tls_handshakes"] = "TLS full handshakes, openssl s_time"
SYSCALL_BENCHES = {"syscalls_proto_1k_c1": point_title(POINTS["proto_1k_c1"])}


def durations(scale: float) -> tuple[float, float]:
    """(warm-up, measured window) in seconds at ``scale``: 0.5 s and 3 s at scale 1."""
    return max(0.2, 0.5 * scale), max(0.5, 3.0 * scale)


def syscall_messages(scale: float) -> int:
    return max(2000, int(20_000 * scale))


def ceiling_point(bench: str) -> str | None:
    """The bench whose Rust-ceiling measurement stands for ``bench``'s point, if there is one.

    The ceiling does not care how a Python server is written, so the TCP echo points share
    the ``proto_*`` measurement; HTTP has none.
    """
    name = bench.removeprefix("syscalls_")
    point = POINTS.get(name)
    if point is None:
        return None
    if point.server in ("streams", "sock"):
        name = "proto" + name[len(point.server) :]
    return ("syscalls_" if bench.startswith("syscalls_") else "") + name


# Loops without TLS on the stdlib ssl module (rloop's create_server(ssl=...) raises
# NotImplementedError): their TLS cells read n/a.
NO_TLS = {"rloop"}
TLS_BENCHES = {"https_c64", "tls_handshakes"} | {n for n, p in POINTS.items() if p.server == "tls"}


def command(bench: str, loop: str, scale: float) -> list[str] | None:
    """harness.Section.command: argv of one measurement; None where the loop has no such point
    (the ceiling outside its points, a loop without TLS at the TLS points)."""
    if loop == CEILING and ceiling_point(bench) != bench:
        return None
    if loop in NO_TLS and bench in TLS_BENCHES:
        return None
    return [sys.executable, str(Path(__file__)), bench, "--loop", loop, "--scale", str(scale)]


# ---------------------------------------------------------------------------------------------
# Building the load generator


def _stale() -> bool:
    """True unless a build that made both binaries is newer than every source."""
    sources = [*LOADGEN_DIR.glob("src/**/*.rs"), LOADGEN_DIR / "Cargo.toml"]
    lock = LOADGEN_DIR / "Cargo.lock"
    sources += [lock] if lock.exists() else []
    try:
        built = STAMP.stat().st_mtime
    except OSError:
        return True
    if not (LOADGEN.exists() and ECHO_SERVER.exists()):
        return True
    return any(src.stat().st_mtime > built for src in sources)


def prepare() -> str | None:
    """Build the load generator with cargo unless it is up to date; return an error or None."""
    if not _stale():
        return None
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    argv = [cargo, "build", "--release", "--quiet", "--target-dir", str(LOADGEN_DIR / "target")]
    print("building benchmarks/loadgen (cargo build --release) ...", file=sys.stderr, flush=True)
    try:
        proc = subprocess.run(argv, cwd=LOADGEN_DIR, capture_output=True, text=True, timeout=600)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"cannot build benchmarks/loadgen: {exc}"
    if proc.returncode != 0 or not (LOADGEN.exists() and ECHO_SERVER.exists()):
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return f"cargo build of benchmarks/loadgen failed: {tail}"
    STAMP.touch()
    return None


# ---------------------------------------------------------------------------------------------
# Processes: pinned children, line reading with a deadline, the server under test


@dataclass(frozen=True)
class Cpus:
    server: int
    client: int


def choose_cpus(pin: int | None) -> Cpus:
    """Server on ``pin`` (default: the first usable CPU), load on another one if there is one."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else [0]
    server = pin if pin is not None else usable[0]
    return Cpus(server, next((c for c in usable if c != server), server))


def _pinned(cpu: int):
    """A preexec_fn: run the child on ``cpu`` only, and kill it if this process dies."""

    def setup() -> None:
        if hasattr(os, "sched_setaffinity"):
            os.sched_setaffinity(0, {cpu})
        try:
            ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass

    return setup


def spawn(argv: list[str], cpu: int, stderr: IO) -> subprocess.Popen:
    # preexec_fn is safe here: this process runs no threads.
    return subprocess.Popen(
        argv, stdout=subprocess.PIPE, stderr=stderr, preexec_fn=_pinned(cpu), bufsize=0
    )


class Lines:
    """Lines of a child's stdout, read straight from the pipe so select() sees every byte."""

    def __init__(self, stream: IO[bytes]) -> None:
        self.fd, self.buffer = stream.fileno(), b""

    def next(self, timeout: float) -> str | None:
        """The next line; None at end of file. Raises TimeoutError after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while b"\n" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no output for {timeout:.0f} s")
            if select.select([self.fd], [], [], left)[0]:
                chunk = os.read(self.fd, 65536)
                if not chunk:
                    line, self.buffer = self.buffer, b""
                    return line.decode() or None
                self.buffer += chunk
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line.decode()


def _tail(log: IO) -> str:
    log.seek(0)
    lines = log.read().decode(errors="replace").strip().splitlines()
    return f": {lines[-1]}" if lines else ""


class Server:
    """The server under test, started on its CPU; ``address`` is a port or a socket path."""

    def __init__(self, argv: list[str], cpu: int) -> None:
        self.log = tempfile.TemporaryFile()
        self.proc = spawn(argv, cpu, self.log)
        self.pid = self.proc.pid
        lines, deadline, line = Lines(self.proc.stdout), time.monotonic() + READY_TIMEOUT_S, ""
        try:
            while line is not None and not line.startswith("READY "):
                line = lines.next(deadline - time.monotonic())  # skips anything printed before
        except TimeoutError:
            line = None
        if line is None:
            self.stop()
            raise RuntimeError(f"the server did not start{_tail(self.log)}")
        _, self.address, pid = line.split()
        self.pid = int(pid)  # the server itself, not strace when it runs under strace

    def check(self) -> None:
        if self.proc.poll() is not None:
            raise RuntimeError(f"the server exited ({self.proc.returncode}){_tail(self.log)}")

    def cpu_seconds(self) -> float:
        """utime + stime of the whole server process so far, from /proc/<pid>/stat."""
        with open(f"/proc/{self.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        """SIGTERM the server (strace, if it runs under strace, then writes its summary)."""
        for sig in (signal.SIGTERM, signal.SIGKILL):
            if self.proc.poll() is not None:
                return
            try:
                os.kill(self.pid, sig)
                self.proc.wait(timeout=10)
            except ProcessLookupError:
                self.proc.kill()
            except subprocess.TimeoutExpired:
                pass
        self.proc.kill()
        self.proc.wait()

    def __enter__(self) -> Server:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
        self.log.close()


def server_argv(server: str, loop: str, cpu: int, tmp: str) -> list[str]:
    path = os.path.join(tmp, "echo.sock")
    if loop == CEILING:
        where = {
            "unix": ["--unix", path],
            "udp": ["--udp", f"{HOST}:0"],
            "tls": ["--tcp", f"{HOST}:0", "--tls"],
        }
        return [str(ECHO_SERVER), *where.get(server, ["--tcp", f"{HOST}:0"])]
    argv = [sys.executable, str(HERE / "servers.py"), server, "--loop", loop, "--cpu", str(cpu)]
    return argv + (["--unix", path] if server == "unix" else [])


def loadgen_argv(server: Server, point: Point, *extra: str) -> list[str]:
    where = {
        "unix": ["--unix", server.address],
        "udp": ["--udp", f"{HOST}:{server.address}"],
    }.get(point.server, ["--tcp", f"{HOST}:{server.address}"])
    conns, size = str(point.conns), str(point.size)
    tls = ["--tls"] if point.server == "tls" else []
    reconnect = ["--reconnect"] if point.reconnect else []
    return [str(LOADGEN), *where, *tls, *reconnect, "--conns", conns, "--size", size, *extra]


# ---------------------------------------------------------------------------------------------
# Measurements


def measure_echo(bench: str, loop: str, scale: float, cpus: Cpus) -> dict:
    """Closed-loop echo: loadgen's throughput and latency, the server's CPU per message."""
    point = POINTS[bench]
    warmup, duration = durations(scale)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(server_argv(point.server, loop, cpus.server, tmp), cpus.server) as server,
        tempfile.TemporaryFile() as log,
    ):
        extra = ["--warmup", str(warmup), "--duration", str(duration), "--markers"]
        gen = spawn(loadgen_argv(server, point, *extra), cpus.client, log)
        lines, cpu = Lines(gen.stdout), {}
        limit = warmup + duration + 30
        while (line := lines.next(limit)) in ("start", "end"):
            cpu[line] = server.cpu_seconds()
        if gen.wait(timeout=30) != 0 or line is None or len(cpu) != 2:
            server.check()
            raise RuntimeError(f"the load generator failed ({gen.returncode}){_tail(log)}")
        server.check()
    out = json.loads(line)
    messages, server_cpu = out["messages"], cpu["end"] - cpu["start"]
    if not messages:
        raise RuntimeError("no message was echoed in the measured window")
    return {
        "ops_per_s": out["messages_per_s"],
        "bytes_per_s": out["bytes_per_s"],
        "p50_us": out["p50_us"],
        "p99_us": out["p99_us"],
        "mean_us": out["mean_us"],
        "server_cpu_us_per_msg": server_cpu * 1e6 / messages,
        "server_cpu_pct": 100 * server_cpu / out["seconds"],
        "loadgen_cpu_us_per_msg": out["cpu_us_per_msg"],
        "loadgen_cpu_pct": out["cpu_pct"],
        "messages": messages,
        "window_s": out["seconds"],
        "warmup_s": warmup,
    }


WRK_UNITS = {"us": 1.0, "ms": 1e3, "s": 1e6, "m": 60e6}


def parse_wrk(text: str) -> dict:
    """Requests, requests/s and latency percentiles (µs) from ``wrk --latency`` output."""

    def find(pattern: str) -> re.Match:
        match = re.search(pattern, text, re.MULTILINE)
        if match is None:
            raise RuntimeError(f"unexpected wrk output: no {pattern!r} in {text!r}")
        return match

    def latency(percent: str) -> float:
        match = find(rf"^\s+{percent}%\s+([\d.]+)(us|ms|s|m)\s*$")
        return float(match[1]) * WRK_UNITS[match[2]]

    errors = re.search(r"Socket errors: (.*)$", text, re.MULTILINE)
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    if non_2xx:
        raise RuntimeError(f"wrk got {non_2xx[1]} error responses")
    return {
        "requests": int(find(r"^\s+(\d+) requests in")[1]),
        "ops_per_s": float(find(r"^Requests/sec:\s+([\d.]+)")[1]),
        "p50_us": latency("50"),
        "p99_us": latency("99"),
        "socket_errors": errors[1] if errors else "none",
    }


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure_http(bench: str, loop: str, scale: float, cpus: Cpus) -> dict:
    """wrk -t1 -c16 --latency against the httptools server (-c64 over TLS for https_c64),
    after a 1 s warm-up run."""
    wrk = shutil.which("wrk")
    if wrk is None:
        raise RuntimeError("wrk is not installed (apt-get install -y wrk)")
    seconds = max(1, round(durations(scale)[1]))
    kind, conns = ("https", HTTPS_CONNS) if bench.startswith("https") else ("http", HTTP_CONNS)
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(server_argv(kind, loop, cpus.server, tmp), cpus.server) as server,
    ):
        url = f"{kind}://{HOST}:{server.address}/"

        def wrk_run(duration: int, *extra: str) -> str:
            argv = [wrk, "-t1", f"-c{conns}", f"-d{duration}s", *extra, url]
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=duration + 60,
                preexec_fn=_pinned(cpus.client),  # no threads here: preexec_fn is safe
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()}")
            return proc.stdout

        wrk_run(1)
        wrk_cpu, server_cpu, started = _children_cpu(), server.cpu_seconds(), time.monotonic()
        text = wrk_run(seconds, "--latency")
        server_cpu = server.cpu_seconds() - server_cpu
        wall, wrk_cpu = time.monotonic() - started, _children_cpu() - wrk_cpu
        server.check()
    out = parse_wrk(text)
    requests = out["requests"]
    if not requests:
        raise RuntimeError(f"wrk completed no request: {text!r}")
    return {
        **out,
        "server_cpu_us_per_msg": server_cpu * 1e6 / requests,
        "server_cpu_pct": 100 * server_cpu / wall,
        "loadgen_cpu_us_per_msg": wrk_cpu * 1e6 / requests,
        "loadgen_cpu_pct": 100 * wrk_cpu / wall,
        "messages": requests,
        "window_s": wall,
        "warmup_s": 1.0,
    }


def parse_strace(path: Path) -> dict[str, int]:
    """Calls per system call from an ``strace -c`` summary (the 'total' line left out)."""
    calls = {}
    for line in path.read_text().splitlines():
        cells = line.split()
        if len(cells) >= 5 and cells[-1] != "total" and re.fullmatch(r"[\d.]+", cells[0]):
            calls[cells[-1]] = calls.get(cells[-1], 0) + int(cells[3])
    return calls


def _strace_count(point: Point, loop: str, messages: int, cpus: Cpus, tmp: str) -> dict:
    out = Path(tmp) / f"strace-{messages}.txt"
    strace = shutil.which("strace")
    if strace is None:
        raise RuntimeError("strace is not installed (apt-get install -y strace)")
    argv = [strace, "-f", "-c", "-o", str(out), *server_argv(point.server, loop, cpus.server, tmp)]
    with Server(argv, cpus.server) as server, tempfile.TemporaryFile() as log:
        gen = spawn(loadgen_argv(server, point, "--count", str(messages)), cpus.client, log)
        if gen.wait(timeout=COUNT_TIMEOUT_S) != 0:
            server.check()
            raise RuntimeError(f"the load generator failed ({gen.returncode}){_tail(log)}")
        server.check()
    return parse_strace(out)


def measure_syscalls(bench: str, loop: str, scale: float, cpus: Cpus) -> dict:
    """Server system calls per echoed message, under ``strace -f -c``.

    Two runs: one that connects and echoes nothing, one that echoes N messages; the difference
    over N leaves out start-up (imports), accepting and closing.
    """
    point, messages = POINTS[bench.removeprefix("syscalls_")], syscall_messages(scale)
    with tempfile.TemporaryDirectory() as tmp:
        base = _strace_count(point, loop, 0, cpus, tmp)
        full = _strace_count(point, loop, messages, cpus, tmp)
    per_msg = {name: (full.get(name, 0) - base.get(name, 0)) / messages for name in {*base, *full}}
    top = sorted(per_msg.items(), key=lambda item: -item[1])
    return {
        "syscalls_per_msg": sum(per_msg.values()),
        "messages": messages,
        "by_syscall": {name: round(value, 3) for name, value in top if abs(value) >= 0.005},
    }


def _rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


def measure_handshakes(bench: str, loop: str, scale: float, cpus: Cpus) -> dict:
    """Back-to-back full handshakes from ``openssl s_time -new`` against the TLS echo server;
    the server's resident memory before and after (it should stay flat)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise RuntimeError("the openssl command is not installed")
    seconds = max(1, round(durations(scale)[1]))
    with (
        tempfile.TemporaryDirectory() as tmp,
        Server(server_argv("tls", loop, cpus.server, tmp), cpus.server) as server,
    ):

        def s_time(duration: int) -> str:
            argv = [
                openssl,
                "s_time",
                "-connect",
                f"{HOST}:{server.address}",
                "-new",
                "-time",
                str(duration),
            ]
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=duration + 60,
                preexec_fn=_pinned(cpus.client),
            )  # fmt: skip
            if proc.returncode != 0:
                raise RuntimeError(f"openssl s_time failed ({proc.returncode}): {proc.stderr}")
            return proc.stdout

        s_time(1)
        rss_before, server_cpu = _rss_kib(server.proc.pid), server.cpu_seconds()
        started = time.monotonic()
        text = s_time(seconds)
        wall, server_cpu = time.monotonic() - started, server.cpu_seconds() - server_cpu
        rss_after = _rss_kib(server.proc.pid)
        server.check()
    match = re.search(r"^(\d+) connections in ([\d.]+) real seconds", text, re.MULTILINE)
    if match is None:
        raise RuntimeError(f"unexpected s_time output: {text!r}")
    count = int(match[1])
    return {
        "ops_per_s": count / wall,
        "messages": count,
        "server_cpu_us_per_msg": server_cpu * 1e6 / max(count, 1),
        "server_cpu_pct": 100 * server_cpu / wall,
        "rss_before_kib": rss_before,
        "rss_growth_kib": rss_after - rss_before,
        "window_s": wall,
        "warmup_s": 1.0,
    }


def measure(bench: str, loop: str, scale: float, pin: int | None) -> dict:
    problem = prepare()
    if problem:
        raise RuntimeError(problem)
    if loop == CEILING and ceiling_point(bench) != bench:
        instead = ceiling_point(bench)
        hint = f"; its TCP echo is measured as {instead}" if instead else ""
        raise RuntimeError(f"the Rust ceiling has no {bench} point{hint}")
    cpus = choose_cpus(pin)
    if bench in SYSCALL_BENCHES:
        out = measure_syscalls(bench, loop, scale, cpus)
    elif bench in POINTS:
        out = measure_echo(bench, loop, scale, cpus)
    elif bench == "tls_handshakes":
        out = measure_handshakes(bench, loop, scale, cpus)
    else:
        out = measure_http(bench, loop, scale, cpus)
    return {
        "bench": bench,
        "loop": loop,
        **out,
        "server_cpu": cpus.server,
        "client_cpu": cpus.client,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("bench", nargs="?", choices=[*NET_BENCHES, *SYSCALL_BENCHES])
    parser.add_argument("--loop", default="asyncio", help=f"a loops.py name, or {CEILING!r}")
    parser.add_argument("--scale", type=float, default=1.0, help="multiplies the durations")
    parser.add_argument("--pin", type=int, metavar="CPU", help="the server's CPU (default: first)")
    parser.add_argument("--build", action="store_true", help="build the load generator only")
    args = parser.parse_args(argv)
    if args.build:
        problem = prepare()
        print(problem or f"built: {LOADGEN} {ECHO_SERVER}", file=sys.stderr)
        return 1 if problem else 0
    if args.bench is None:
        parser.error("a benchmark name or --build is required")
    try:
        out = measure(args.bench, args.loop, args.scale, args.pin)
    except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as exc:
        print(f"{args.bench} on {args.loop}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
