"""Reading a file the user named (the config file, a replay file) without surprises.

What it does: :func:`read_text_file` returns the UTF-8 text of a regular file of bounded
size, and refuses a directory, FIFO, device or socket before it could block on it, with
one line saying what is wrong.

What it does not: parse the text (``config`` and ``plan`` do), or know which setting
named the file (its callers put that in their messages).
"""
from __future__ import annotations

import os
import stat
from typing import List

CONFIG_FILE_LIMIT = 1024 * 1024  # bytes: a settings file holds a few hundred
REPLAY_FILE_LIMIT = 64 * 1024 * 1024  # bytes: two days of tegrastats lines at 1 s

_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _size_text(size: int) -> str:
    return "%d MiB" % (size >> 20) if size and size % (1 << 20) == 0 else "%d bytes" % size


def _check_regular(mode: int, size: int, limit: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise ValueError("%s, not a regular file" % kind)
    if size > limit:
        raise ValueError("%s, more than the limit of %s" % (_size_text(size), _size_text(limit)))


def _is_devnull(st: os.stat_result) -> bool:
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        return st.st_rdev == os.stat(os.devnull).st_rdev
    except OSError:
        return False


def os_reason(err: BaseException) -> str:
    """What went wrong, without the errno and path an OSError's ``str()`` repeats."""
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)


def read_text_file(path: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``limit`` bytes (``/dev/null``:
    empty).

    Never blocks and never reads more than ``limit`` bytes and one: a directory, FIFO,
    device or socket is refused before it is opened (and again, by its descriptor, after a
    non-blocking open), a bigger file by its size, one that grows meanwhile as it is read.
    Raises OSError when it cannot be opened or read, and ValueError (one line: what is
    wrong) when it is not a regular file, too big or not UTF-8.
    """
    st = os.stat(path)
    if _is_devnull(st):  # ``--config /dev/null``: no config file (not even the default)
        return ""
    _check_regular(st.st_mode, st.st_size, limit)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode, st.st_size, limit)
        chunks: List[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError("more than the limit of %s" % _size_text(limit))
    data = b"".join(chunks)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError("not UTF-8 text (byte 0x%02x at offset %d)" % (data[err.start], err.start)) from None
