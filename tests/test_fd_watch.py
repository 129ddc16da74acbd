"""add_reader / add_writer / remove_reader / remove_writer on plain file descriptors."""

from __future__ import annotations

import errno
import os
import socket

import pytest
from _support import run_forever_guarded


class FileLike:
    def __init__(self, value):
        self.value = value

    def fileno(self):
        if isinstance(self.value, BaseException):
            raise self.value
        return self.value

    def __repr__(self):
        return f"FileLike({self.value!r})"


# -- return values ---------------------------------------------------------------------------------


def test_add_returns_none_remove_returns_bool(loop, pair):
    a, _ = pair
    assert loop.add_reader(a.fileno(), print) is None
    assert loop.add_writer(a.fileno(), print) is None
    assert loop.remove_reader(a.fileno()) is True
    assert loop.remove_reader(a.fileno()) is False
    assert loop.remove_writer(a.fileno()) is True
    assert loop.remove_writer(a.fileno()) is False


def test_remove_never_added(loop, pair):
    a, _ = pair
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
    assert loop.remove_reader(2**40) is False


def test_objects_with_fileno(loop, pair):
    a, _ = pair
    assert loop.add_reader(a, print) is None
    assert loop.remove_reader(a.fileno()) is True  # the object and its fd are the same entry
    loop.add_writer(FileLike(a.fileno()), print)
    assert loop.remove_writer(a) is True


# -- callbacks -------------------------------------------------------------------------------------


def test_reader_called_with_args(loop, pair):
    a, b = pair
    got = []

    def on_readable(sock, tag):
        got.append((tag, sock.recv(100)))
        loop.remove_reader(sock)
        loop.stop()

    loop.add_reader(a, on_readable, a, "tag")
    loop.call_soon(b.send, b"hello")
    run_forever_guarded(loop)
    assert got == [("tag", b"hello")]


def test_writer_called(loop, pair):
    a, _ = pair
    got = []

    def on_writable(x):
        got.append(x)
        assert loop.remove_writer(a) is True
        loop.stop()

    loop.add_writer(a, on_writable, 42)
    run_forever_guarded(loop)
    assert got == [42]


def test_reader_is_level_triggered(loop, pair):
    """A reader that does not drain the socket is called again on the next iterations."""
    a, b = pair
    calls = []

    def on_readable():
        calls.append(1)
        if len(calls) == 3:
            loop.remove_reader(a)
            loop.stop()

    b.send(b"x")
    loop.add_reader(a, on_readable)
    run_forever_guarded(loop)
    assert len(calls) == 3
    assert a.recv(10) == b"x"


def test_reader_replaced(loop, pair):
    a, b = pair
    got = []

    def old():
        got.append("old")

    def new():
        got.append("new")
        a.recv(100)
        loop.remove_reader(a)
        loop.stop()

    loop.add_reader(a, old)
    loop.add_reader(a, new)
    b.send(b"x")
    run_forever_guarded(loop)
    assert got == ["new"]


def test_reader_and_writer_same_fd_independent(loop, pair):
    a, b = pair
    got = []

    def on_writable():
        got.append("w")
        loop.remove_writer(a)
        b.send(b"ping")

    def on_readable():
        got.append("r")
        a.recv(100)
        loop.remove_reader(a)
        loop.stop()

    loop.add_reader(a, on_readable)
    loop.add_writer(a, on_writable)
    run_forever_guarded(loop)
    assert got == ["w", "r"]


def test_remove_reader_keeps_writer(loop, pair):
    a, _ = pair
    got = []
    loop.add_reader(a, got.append, "r")
    loop.add_writer(a, lambda: (got.append("w"), loop.remove_writer(a), loop.stop()))
    assert loop.remove_reader(a) is True
    run_forever_guarded(loop)
    assert got == ["w"]


def test_removed_reader_not_called_in_same_iteration(loop, pair):
    """Removing a ready reader from an earlier callback of the batch prevents its call."""
    a, b = pair
    got = []
    b.send(b"x")
    loop.add_reader(a, got.append, "reader")
    loop.add_writer(b, lambda: (loop.remove_reader(a), loop.remove_writer(b)))
    loop.call_later(0.01, loop.stop)
    run_forever_guarded(loop)
    assert got in ([], ["reader"])  # asyncio's order of ready fds is the selector's
    loop.remove_reader(a)


def test_callback_error_reaches_handler_and_reader_stays(loop, exc_calls, pair):
    a, b = pair
    calls = []

    def on_readable():
        calls.append(1)
        if len(calls) == 2:
            a.recv(10)
            loop.remove_reader(a)
            loop.stop()
            return
        raise ValueError("reader failed")

    b.send(b"x")
    loop.add_reader(a, on_readable)
    run_forever_guarded(loop)
    assert len(calls) == 2
    assert len(exc_calls) == 1
    ctx = exc_calls.pop()
    assert type(ctx["exception"]) is ValueError
    assert ctx["message"].startswith("Exception in callback ")
    assert "handle" in ctx


# -- bad descriptors -------------------------------------------------------------------------------

METHODS = ["add_reader", "add_writer", "remove_reader", "remove_writer"]


def _call(loop, method, fd):
    if method.startswith("add"):
        return getattr(loop, method)(fd, print)
    return getattr(loop, method)(fd)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize(
    ("fd", "message"),
    [
        (-1, "Invalid file descriptor: -1"),
        (FileLike(-1), "Invalid file descriptor: -1"),
        ("abc", "Invalid file object: 'abc'"),
        (1.5, "Invalid file object: 1.5"),
        (None, "Invalid file object: None"),
        (FileLike("x"), "Invalid file object: FileLike('x')"),
        (FileLike(ValueError("bad")), "Invalid file object: FileLike(ValueError('bad'))"),
        (object, None),
    ],
    ids=["neg", "fileno-neg", "str", "float", "none", "fileno-str", "fileno-valueerror", "class"],
)
def test_invalid_fd_value_error(loop, method, fd, message):
    with pytest.raises(ValueError) as info:
        _call(loop, method, fd)
    if message is not None:
        assert str(info.value) == message


@pytest.mark.parametrize("method", METHODS)
def test_fileno_oserror_propagates(loop, method):
    with pytest.raises(OSError) as info:
        _call(loop, method, FileLike(OSError(errno.EBADF, "from fileno")))
    assert info.value.errno == errno.EBADF


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
@pytest.mark.parametrize("fd", [2**31, 2**40, 2**70, FileLike(2**70)])
def test_huge_fd_overflow(loop, method, fd):
    with pytest.raises(OverflowError) as info:
        _call(loop, method, fd)
    assert str(info.value) == "Python int too large to convert to C int"


@pytest.mark.parametrize("method", ["remove_reader", "remove_writer"])
@pytest.mark.parametrize("fd", [2**31, 2**40, 2**64, 2**70, FileLike(2**70)])
def test_remove_huge_fd_is_false(loop, method, fd):
    # Never registered, whatever its size: asyncio's selector looks it up and finds nothing.
    assert _call(loop, method, fd) is False
    loop.close()
    assert _call(loop, method, fd) is False


@pytest.mark.parametrize("method", ["add_reader", "add_writer"])
def test_add_closed_fd_ebadf(loop, method):
    a, b = socket.socketpair()
    fd = a.fileno()
    a.close()
    try:
        with pytest.raises(OSError) as info:
            _call(loop, method, fd)
        assert info.value.errno == errno.EBADF
        assert type(info.value) is OSError
        assert _call(loop, "remove_" + method[4:], fd) is False
    finally:
        b.close()


def test_add_regular_file_eperm(loop, tmp_path):
    path = tmp_path / "f"
    path.write_bytes(b"data")
    with open(path, "rb") as f:
        with pytest.raises(PermissionError) as info:
            loop.add_reader(f, print)
        assert info.value.errno == errno.EPERM
        assert loop.remove_reader(f) is False


def test_remove_after_fd_closed(loop):
    """The kernel forgets a closed fd; removing its only watcher still reports True."""
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, print)
    a.close()
    try:
        assert loop.remove_reader(fd) is True
        assert loop.remove_reader(fd) is False
    finally:
        b.close()


def test_closed_fd_watched_both_ways(loop):
    """asyncio: with a reader and a writer, removing one of them needs an epoll MOD, which fails
    with EBADF once the fd is closed, and the fd is then forgotten entirely."""
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, print)
    loop.add_writer(fd, print)
    a.close()
    try:
        with pytest.raises(OSError) as info:
            loop.remove_reader(fd)
        assert info.value.errno == errno.EBADF
        assert loop.remove_writer(fd) is False
        assert loop.remove_reader(fd) is False
    finally:
        b.close()


def test_closed_fd_add_other_direction(loop):
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, print)
    a.close()
    try:
        with pytest.raises(OSError) as info:
            loop.add_writer(fd, print)
        assert info.value.errno == errno.EBADF
        assert loop.remove_reader(fd) is False
        assert loop.remove_writer(fd) is False
    finally:
        b.close()


def test_fd_reused_after_close(loop):
    """Closing a watched fd and opening a new one with the same number can be watched again."""
    a, b = socket.socketpair()
    fd = a.fileno()
    loop.add_reader(fd, print)
    a.close()
    assert loop.remove_reader(fd) is True
    r, w = os.pipe()
    try:
        got = []
        loop.add_reader(r, lambda: (got.append(os.read(r, 10)), loop.stop()))
        os.write(w, b"pipe")
        run_forever_guarded(loop)
        assert got == [b"pipe"]
        assert loop.remove_reader(r) is True
    finally:
        os.close(r)
        os.close(w)
        b.close()


# -- closed loop -----------------------------------------------------------------------------------


def test_closed_loop(loop, pair):
    a, _ = pair
    loop.add_reader(a, print)
    loop.close()
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.add_reader(a, print)
    with pytest.raises(RuntimeError, match=r"^Event loop is closed$"):
        loop.add_writer(a, print)
    assert loop.remove_reader(a) is False
    assert loop.remove_writer(a) is False
