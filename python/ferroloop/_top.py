"""``python -m ferroloop top PID``: a live view of a ferroloop process's loops.

Reads the process's health socket (``ferroloop.health.serve``) every
``--interval`` seconds and redraws: per loop, utilization and callbacks per
second over the last interval, timer lag and ready-queue wait percentiles, the
busiest tasks; then the process's recent block reports with their stacks.
``--once`` prints one frame and exits (no terminal needed).

The socket is found, in order: ``--socket PATH``; ``FERROLOOP_HEALTH_SOCKET``
of the target process (from ``/proc/PID/environ``) or of this one, ``{pid}``
replaced by PID; ``$XDG_RUNTIME_DIR/ferroloop-PID.sock``;
``/tmp/ferroloop-UID/PID.sock``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import time
from typing import Any

from . import _health_server

USAGE = "python -m ferroloop top [--socket PATH] [--once] [--interval S] [--tasks N] [PID]"


def candidates(pid: int) -> list[str]:
    """Where the health socket of process ``pid`` may be, most likely first."""
    found = []
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            for item in f.read().split(b"\0"):
                if item.startswith(_health_server.ENV.encode() + b"="):
                    found.append(os.fsdecode(item.split(b"=", 1)[1]))
    except OSError:
        pass  # not ours to read, or not Linux: the conventions below still apply
    own = os.environ.get(_health_server.ENV)
    if own:
        found.append(own)
    paths = [_health_server.expand(p, pid) for p in found if p]
    paths.append(_health_server.default_path(pid))
    paths.append(os.path.join(f"/tmp/ferroloop-{os.getuid()}", f"{pid}.sock"))
    return list(dict.fromkeys(paths))


def find_socket(pid: int) -> str:
    for path in candidates(pid):
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"no ferroloop health socket for process {pid} (looked at {', '.join(candidates(pid))});"
        " the process must call ferroloop.health.serve() or run with FERROLOOP_HEALTH_SOCKET set"
    )


def fetch(path: str, tasks: int = 10, timeout: float = 5.0) -> dict[str, Any]:
    """One document from the health socket at ``path``."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        s.connect(path)
        s.sendall(json.dumps({"tasks": tasks}).encode() + b"\n")
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    if not chunks:
        raise ConnectionError(f"{path} closed without answering (another user's process?)")
    doc = json.loads(b"".join(chunks))
    if "error" in doc:
        raise ConnectionError(f"{path} answered: {doc['error']}")
    return doc


def _ms(seconds: float) -> str:
    return f"{seconds * 1e3:9.3f}"


def render(doc: dict[str, Any], previous: dict[str, Any] | None = None, width: int = 100) -> str:
    """One frame of text; ``previous`` (the document before) gives per-interval rates."""
    out = []
    stamp = time.strftime("%H:%M:%S", time.localtime(doc["time"]))
    argv = " ".join(doc.get("argv", []))[: max(width - 40, 20)]
    out.append(f"ferroloop top  pid {doc['pid']}  {stamp}  {argv}")
    tracking = "on" if doc.get("track_tasks") else "off (ferroloop.health.track_tasks(True))"
    out.append(f"block threshold {doc.get('block_threshold', 0):.3f} s   task tracking {tracking}")
    before = {lp["id"]: lp for lp in (previous or {}).get("loops", []) if "error" not in lp}
    dt = doc["monotonic"] - previous["monotonic"] if previous else 0.0
    if not doc["loops"]:
        out.append("")
        out.append("no open ferroloop loop")
    for lp in doc["loops"]:
        out.append("")
        if "error" in lp:
            out.append(f"{lp['repr']}: {lp['error']}")
            continue
        state = "running" if lp["running"] else "stopped"
        if lp["running"] and lp["in_callback"]:
            state += ", in a callback"
        was = before.get(lp["id"])
        if was is not None and dt > 0:
            idle = lp["idle"] - was["idle"]
            active = lp["active"] - was["active"]
            util = active / (idle + active) if idle + active > 0 else 0.0
            rate = f"{(lp['callbacks'] - was['callbacks']) / dt:,.0f} callbacks/s"
        else:
            util = lp["utilization"]
            rate = f"{lp['callbacks']:,} callbacks"
        out.append(f"loop {lp['id']:#x} ({state})  utilization {util:6.1%}  {rate}")
        overdue = lp.get("timer_overdue", 0.0)
        late = f" ({overdue * 1e3:,.1f} ms overdue)" if overdue > 0 else ""
        out.append(
            f"  ready {lp['ready_depth']}  timers {lp['timers_pending']}{late}"
            f"  fds {lp['fds_watched']}  iterations {lp['iterations']:,}"
            f"  io events {lp['io_events']:,}"
        )
        out.append(f"  {'ms':14}{'p50':>9} {'p90':>9} {'p99':>9} {'max':>9} {'count':>10}")
        for key, label in (("timer_lag", "timer lag"), ("ready_wait", "ready wait")):
            lag = lp[key]
            out.append(
                f"  {label:14}{_ms(lag['p50'])} {_ms(lag['p90'])} {_ms(lag['p99'])}"
                f" {_ms(lag['max'])} {lag['count']:>10,}"
            )
        if lp["tasks"]:
            out.append(
                f"  {'busiest tasks':30} {'coroutine':30} {'steps':>9} {'total s':>9} {'max ms':>9}"
            )
            for t in lp["tasks"]:
                name = t["name"] + (" (done)" if t["done"] else "")
                out.append(
                    f"  {name[:30]:30} {t['coro'][:30]:30} {t['steps']:>9,} {t['total']:>9.3f}"
                    f" {t['max_step'] * 1e3:>9.3f}"
                )
    blocks = doc.get("blocks", [])
    if blocks:
        out.append("")
        out.append("recent blocks")
        for b in blocks[-5:]:
            where = b["location"] or b["handle"] or "?"
            task = f"  task {b['task']}" if b.get("task") else ""
            out.append(f"  {b['kind']:9} {b['seconds']:8.3f} s  loop {b['loop']:#x}  {where}{task}")
            stack = b.get("stack", "").rstrip().splitlines()
            out.extend("      " + line for line in stack[-6:])
    return "\n".join(line[:width] for line in out) + "\n"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m ferroloop top", usage=USAGE)
    parser.add_argument("pid", nargs="?", type=int, help="the ferroloop process to look at")
    parser.add_argument("--socket", help="the health socket's path (instead of finding it by PID)")
    parser.add_argument("--once", action="store_true", help="print one frame and exit")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between frames")
    parser.add_argument("--tasks", type=int, default=10, help="busiest tasks shown per loop")
    args = parser.parse_args(argv)
    if args.pid is None and args.socket is None:
        parser.error("give a PID or --socket PATH")
    if not (args.interval > 0 and args.interval < 3600):
        parser.error(f"--interval must be between 0 and 3600 seconds, not {args.interval}")
    if not 0 <= args.tasks <= 1000:
        parser.error(f"--tasks must be from 0 to 1000, not {args.tasks}")
    try:
        path = args.socket or find_socket(args.pid)
        previous = None
        while True:
            doc = fetch(path, args.tasks)
            width = os.get_terminal_size().columns if sys.stdout.isatty() else 120
            frame = render(doc, previous, width)
            if args.once:
                sys.stdout.write(frame)
                return 0
            sys.stdout.write("\x1b[H\x1b[2J" + frame)
            sys.stdout.flush()
            previous = doc
            time.sleep(args.interval)
    except KeyboardInterrupt:
        return 0
    except (OSError, ValueError) as exc:
        print(f"python -m ferroloop top: {exc}", file=sys.stderr)
        return 1
