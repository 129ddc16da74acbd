"""Cold paths of the native loop, written in Python for exactness.

The Rust code calls these for things that are rare or debug-only: formatting
a handle's repr, reporting a failed callback, debug-mode checks and timing.
They reproduce asyncio's behaviour on the running Python version.
"""

from __future__ import annotations

import sys
from asyncio import base_events, constants, coroutines, format_helpers
from typing import Any

from . import _fence
from ._compat import PY312, PY314, iscoroutinefunction


def _probe_format() -> str | None:
    problem = _fence.missing(format_helpers, ("_format_callback_source",))
    problem = problem or _fence.missing(base_events, ("_format_handle",))
    if problem:
        return problem
    want = ["func", "args", "debug"] if sys.version_info >= (3, 13) else ["func", "args"]
    return _fence.same_params(
        want, format_helpers._format_callback_source, "_format_callback_source()"
    )


_ASYNCIO_FORMAT = _fence.rely(
    "callback_repr",
    ["asyncio.format_helpers._format_callback_source", "asyncio.base_events._format_handle"],
    "asyncio's formatting of a callback and its arguments (the text of handle reprs and of "
    "'Exception in callback ...' reports)",
    "the callback's repr and a plain argument list",
    _probe_format,
)


def _format_by_hand(callback: Any, args: Any) -> str:
    text = getattr(callback, "__qualname__", None) or repr(callback)
    return f"{text}({', '.join(map(repr, args or ()))})"


if not _ASYNCIO_FORMAT:

    def format_callback_source(callback: Any, args: Any, debug: bool) -> str:
        return _format_by_hand(callback, args)

elif sys.version_info >= (3, 13):

    def format_callback_source(callback: Any, args: Any, debug: bool) -> str:
        return format_helpers._format_callback_source(callback, args, debug=debug)

else:

    def format_callback_source(callback: Any, args: Any, debug: bool) -> str:
        return format_helpers._format_callback_source(callback, args)


def extract_stack(trim: int) -> Any:
    """The creation traceback of a handle (debug mode), ending at the caller.

    asyncio extracts ``DEBUG_STACK_DEPTH`` frames from inside its own methods,
    then deletes its ``trim`` internal frames: take as many user frames.
    """
    return format_helpers.extract_stack(sys._getframe(1), limit=constants.DEBUG_STACK_DEPTH - trim)


def handle_repr(handle: Any) -> str:
    info = [handle.__class__.__name__]
    if handle._cancelled:
        info.append("cancelled")
    when = getattr(handle, "_when", None)
    if when is not None:
        info.append(f"when={when}")
    if handle._callback is not None:
        info.append(
            format_callback_source(handle._callback, handle._args, handle._loop.get_debug())
        )
    tb = handle._source_traceback
    if tb:
        frame = tb[-1]
        info.append(f"created at {frame[0]}:{frame[1]}")
    return "<{}>".format(" ".join(info))


def report_callback_error(handle: Any, callback: Any, args: Any, exc: BaseException) -> None:
    loop = handle._loop
    cb = format_callback_source(callback, args, loop.get_debug())
    context = {"message": f"Exception in callback {cb}", "exception": exc, "handle": handle}
    tb = handle._source_traceback
    if tb:
        context["source_traceback"] = tb
    loop.call_exception_handler(context)


def run_cancelled_handle(handle: Any) -> None:
    """``handle._run()`` once ``cancel()`` ran: asyncio's ``cancel()`` sets the callback and
    its arguments to ``None``, so its ``_run`` reports the ``TypeError`` that
    ``context.run(None, *None)`` raises (the running Python's own message); so do we, with
    asyncio's expression over what our handle answers (``None`` for both once cancelled)."""
    try:
        handle.get_context().run(handle._callback, *handle._args)
    except (SystemExit, KeyboardInterrupt):
        raise
    except BaseException as exc:
        report_callback_error(handle, handle._callback, handle._args, exc)


def check_callback(callback: Any, method: str) -> None:
    if coroutines.iscoroutine(callback) or iscoroutinefunction(callback):
        raise TypeError(f"coroutines cannot be used with {method}()")
    if not callable(callback):
        raise TypeError(f"a callable object was expected by {method}(), got {callback!r}")


def warn_slow_callback(handle: Any, seconds: float) -> None:
    """asyncio's debug-mode warning for a callback that ran too long (timed by the loop)."""
    text = base_events._format_handle(handle) if _ASYNCIO_FORMAT else repr(handle)
    base_events.logger.warning("Executing %s took %.3f seconds", text, seconds)


def warn_send_after_lost(pipe: bool) -> None:
    """asyncio's warning for writes to a transport whose connection is lost."""
    if pipe:
        base_events.logger.warning("pipe closed by peer or os.write(pipe, data) raised exception.")
    else:
        base_events.logger.warning("socket.send() raised exception.")


def write_type_error(data: Any, datagram: bool = False) -> TypeError:
    """asyncio's error for a transport write of something that is not bytes-like."""
    kinds = "a bytes, bytearray, or memoryview" if PY314 and not datagram else "a bytes-like"
    return TypeError(f"data argument must be {kinds} object, not {type(data).__name__!r}")


def fileobj_to_fd(fileobj: Any) -> int:
    """asyncio's conversion of a file object to an fd, with its errors."""
    if isinstance(fileobj, int):
        fd = fileobj
    else:
        try:
            fd = int(fileobj.fileno())
        except (AttributeError, TypeError, ValueError):
            raise ValueError(f"Invalid file object: {fileobj!r}") from None
    if fd < 0:
        raise ValueError(f"Invalid file descriptor: {fd}")
    return fd


__all__ = [
    "PY312",
    "check_callback",
    "extract_stack",
    "fileobj_to_fd",
    "format_callback_source",
    "handle_repr",
    "report_callback_error",
    "run_cancelled_handle",
    "warn_send_after_lost",
    "warn_slow_callback",
    "write_type_error",
]
