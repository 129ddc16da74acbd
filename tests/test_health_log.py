"""What blocked-loop reports write to the log, and to stderr (ferroloop only).

The loggers follow logging's rule for libraries: a program that configured no
logging sees nothing, as on asyncio; one that did sees the first block from a
place in full and the repeats from that place summed up in one line. These run
scripts in a child process and read its stderr, the only place the difference
shows. Nothing at interpreter exit either, on any Python version.
"""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest

ferroloop = pytest.importorskip("ferroloop")
fh = ferroloop.health

TEN_BLOCKS = """
import asyncio, time
{setup}
import ferroloop

async def main():
    for _ in range(10):
        time.sleep(0.15)  # the blocking line
        await asyncio.sleep(0)

ferroloop.run(main())
"""

EXIT_CASE = """
import asyncio, time
{setup}
import ferroloop

loop = ferroloop.new_event_loop()

async def main():
    time.sleep(0.3)

loop.run_until_complete(main())
{close}
"""


def _stderr(script: str, tmp_path, env: dict[str, str] | None = None) -> str:
    path = tmp_path / "script.py"
    path.write_text(textwrap.dedent(script))
    # A plain script: not in asyncio's debug mode, whose slow-callback warnings (on both loops)
    # are another matter.
    run_env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("FERROLOOP_") and k != "PYTHONASYNCIODEBUG"
    }
    run_env.update(env or {})
    out = subprocess.run(
        [sys.executable, str(path)],
        capture_output=True,
        text=True,
        timeout=120,
        env=run_env,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    return _without_compat_warnings(out.stderr)


def _without_compat_warnings(err: str) -> str:
    """Leaves out the warnings of fast paths that are off on this Python (3.10), at import."""
    lines = err.splitlines(keepends=True)
    kept = []
    for i, line in enumerate(lines):
        if "CompatWarning" in line or (i and "CompatWarning" in lines[i - 1]):
            continue
        kept.append(line)
    return "".join(kept)


@pytest.mark.parametrize("runner", ["ferroloop.run(main())", "asyncio.run(main())"])
def test_unconfigured_program_prints_nothing(tmp_path, runner):
    # asyncio is the oracle: the same script prints nothing there either.
    script = TEN_BLOCKS.format(setup="").replace("ferroloop.run(main())", runner)
    assert _stderr(script, tmp_path) == ""


def test_configured_logging_gets_the_first_report_then_a_summary(tmp_path):
    err = _stderr(TEN_BLOCKS.format(setup="import logging; logging.basicConfig()"), tmp_path)
    lines = err.splitlines()
    assert err.count("# the blocking line") == 1  # one stack, the first report's
    assert sum("blocked for" in line for line in lines) == 1
    assert sum("recovered after" in line for line in lines) == 1
    summaries = [line for line in lines if "more time" in line]
    assert len(summaries) == 1
    assert "blocked 9 more times at " in summaries[0]
    assert "script.py:8, longest 0.1" in summaries[0]
    assert len(lines) < 30


def test_environment_variable_prints_reports_of_an_unconfigured_program(tmp_path):
    err = _stderr(TEN_BLOCKS.format(setup=""), tmp_path, {"FERROLOOP_HEALTH_LOG": "1"})
    assert err.count("# the blocking line") == 1
    assert "blocked 9 more times" in err
    # A program that configures logging gets each line once, its own way.
    setup = "import logging; logging.basicConfig(format='app: %(message)s')"
    err = _stderr(TEN_BLOCKS.format(setup=setup), tmp_path, {"FERROLOOP_HEALTH_LOG": "1"})
    lines = err.splitlines()
    assert sum("blocked for" in line for line in lines) == 1
    assert all(line.startswith(("app: ", " ")) for line in lines)


@pytest.mark.parametrize("close", ["loop.close()", ""])
@pytest.mark.parametrize("setup", ["", "import logging; logging.basicConfig()"])
def test_nothing_at_interpreter_exit(tmp_path, close, setup):
    err = _stderr(EXIT_CASE.format(setup=setup, close=close), tmp_path)
    if setup:
        err = "\n".join(
            line for line in err.splitlines() if not line.startswith(("WARNING:", "  "))
        )
    assert err == ""


def test_nothing_at_exit_while_serving(tmp_path):
    sock = str(tmp_path / "{pid}.sock")
    script = EXIT_CASE.format(setup="", close="loop.close()")
    assert _stderr(script, tmp_path, {"FERROLOOP_HEALTH_SOCKET": sock}) == ""


def _block_twice(line_blocks: float = 0.25):
    time.sleep(line_blocks)  # one place


@pytest.fixture
def reports():
    got: list[fh.BlockReport] = []
    fh.on_block(got.append)
    fh.set_block_threshold(0.05)
    yield got
    fh.on_block(None)
    fh.set_block_threshold(fh.DEFAULT_BLOCK_THRESHOLD)


def _run_blocks(loop, n):
    async def main():
        for _ in range(n):
            _block_twice()
            await asyncio.sleep(0)

    loop.run_until_complete(main())


def test_repeats_are_summed_up_and_counted_exactly(hloop, reports, caplog):
    caplog.set_level(logging.WARNING, logger="ferroloop.health")
    before = fh.block_counts().get("blocked", 0)
    _run_blocks(hloop, 3)
    # Every report still reaches on_block and the counts.
    assert [r.kind for r in reports] == ["blocked", "recovered"] * 3
    assert fh.block_counts()["blocked"] - before == 3
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("ferroloop")]
    assert len(messages) == 2  # the first block and its recovery
    hloop.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("ferroloop")]
    assert len(messages) == 3
    assert "blocked 2 more times at " in messages[2] and "one place" not in messages[2]
    assert f"{__file__}:" in messages[2]


def test_after_the_window_the_next_block_is_reported_in_full(hloop, reports, caplog, monkeypatch):
    caplog.set_level(logging.WARNING, logger="ferroloop.health")
    monkeypatch.setattr(fh, "SUMMARY_WINDOW", 0.0)
    _run_blocks(hloop, 2)
    hloop.close()
    messages = [r.getMessage() for r in caplog.records if r.name.startswith("ferroloop")]
    assert sum("blocked for" in m for m in messages) == 2
    assert not any("more time" in m for m in messages)
