"""Lines from a child's pipes: splitting, reading without starving the loop, logging with limits.

What it does: :class:`LineSplitter` cuts a byte stream into lines of at most ``limit`` bytes
(longer ones are flagged, not buffered); :class:`LineReader` reads a tornado pipe as data
comes and hands each read's complete lines on, yielding to the event loop between reads;
:class:`StderrLog` logs a child's stderr at most ``STDERR_BURST`` lines every
``STDERR_WINDOW_S`` and counts the rest; :class:`SkipLog` counts the stdout lines a reader
skipped and logs the count at most every ``SKIP_LOG_S``.

What it does not: start or watch processes (:mod:`tegrastats_api.source`), or decode and
judge stdout lines.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from typing import Callable, List, Optional, Tuple, Union, cast

from tornado.iostream import PipeIOStream, StreamClosedError

log = logging.getLogger(__name__)

Lines = List[Tuple[bytes, bool]]  # (line without its newline, cut short because too long)

READ_CHUNK = 65536  # at most this much is handed on at once (a pipe's whole buffer on Linux)
READ_PIECE = 4096  # tornado's buffer per read (allocated and zeroed for every read)
SKIP_LOG_S = 10.0
STDERR_BURST = 10
STDERR_WINDOW_S = 10.0
STDERR_LOG_CHARS = 200


class LineSplitter:
    """Splits a byte stream into lines, keeping at most ``limit`` bytes of any one line."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._over = False

    def feed(self, chunk: bytes) -> Lines:
        """Return the ``(line, too_long)`` pairs this chunk completes (newline removed)."""
        if not self._buf and not self._over:  # the usual read: one whole line, nothing held
            end = chunk.find(b"\n")
            if end == len(chunk) - 1 and end <= self._limit:
                return [(chunk[:end], False)]
        done: Lines = []
        start = 0
        while True:
            end = chunk.find(b"\n", start)
            piece = chunk[start:] if end < 0 else chunk[start:end]
            room = self._limit - len(self._buf)
            if len(piece) > room:
                self._over = True
                piece = piece[: max(room, 0)]
            self._buf += piece
            if end < 0:
                return done
            done.append((bytes(self._buf), self._over))
            self._buf = bytearray()
            self._over = False
            start = end + 1

    @property
    def pending(self) -> bool:
        """True when bytes of an unterminated line are held."""
        return bool(self._buf) or self._over


class LineReader:
    """Reads a tornado pipe as data comes, handing each read's complete lines on:
    ``handle(lines)`` once per read, in order, until EOF or :meth:`close`.

    :meth:`start` gives a Future that is done then: True if a partial line was left, or what
    ``handle`` raised (the reader stops there; whoever awaits it decides what that means).

    Each time the pipe is readable, the loop calls :meth:`_readable` (asyncio's
    ``add_reader`` on a duplicate of the pipe's descriptor), which reads through the stream
    (``read_bytes``, partial): the data is there, so tornado's read completes inline, and a
    sample costs one wake-up and one ``read``. Awaiting ``read_bytes`` in a loop instead costs
    a second trip through the loop for its Future and a ``read`` that finds the pipe empty
    (tornado tries one before it waits), per line. A read that does not complete inline
    after all (the data went elsewhere) is waited for, with the duplicate unwatched
    meanwhile: the stream watches its own descriptor for it, as tornado always does.

    Tornado reads into a new buffer of the stream's ``read_chunk_size`` for every read, so
    that is :data:`READ_PIECE`, a few lines' worth; a backlog (a read that filled it) is read
    on up to :data:`READ_CHUNK` before it is handed on, as one read of that size would have
    (see ``TegrastatsProcess._take``, which keeps only the newest of many lines). More than
    that waits for the loop's next turn: a child that writes without pause cannot hold up
    requests and signals.
    """

    def __init__(self, stream: PipeIOStream, limit: int, handle: Callable[[Lines], None]) -> None:
        stream.read_chunk_size = READ_PIECE  # BaseIOStream's constructor argument, as it keeps it
        self._stream = stream
        self._handle = handle
        self._splitter = LineSplitter(limit)
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._fd: Optional[int] = None  # our duplicate of the pipe's descriptor, while reading
        self._done: Optional[asyncio.Future[bool]] = None

    def start(self) -> asyncio.Future[bool]:
        """Start reading on the running loop; the Future that is done at EOF or :meth:`close`."""
        if self._done is not None:
            raise RuntimeError("LineReader.start() may be called once")
        self._loop = asyncio.get_running_loop()
        self._done = self._loop.create_future()
        if self._stream.closed():
            self._end(self._splitter.pending)
        else:
            self._fd = os.dup(self._stream.fileno())  # the stream's own stays tornado's to watch
            self._watch()
        return self._done

    def close(self) -> None:
        """Stop reading and close the stream (and its descriptor); the Future is done after
        this (if it was not): True if a partial line was left."""
        self._stream.close()
        self._end(self._splitter.pending)

    def _readable(self) -> None:
        chunk = b""
        try:
            while len(chunk) < READ_CHUNK:
                reading = cast("asyncio.Future[bytes]",
                               self._stream.read_bytes(READ_CHUNK - len(chunk), partial=True))
                if not reading.done():  # nothing there after all
                    self._unwatch()
                    reading.add_done_callback(self._waited)
                    break
                piece = reading.result()
                chunk += piece
                if len(piece) < READ_PIECE:
                    break  # a read takes all there is, up to a piece: the pipe is empty now
        except StreamClosedError:  # EOF (or closed): what came before it is handed on first
            self._hand_on(chunk)
            self._end(self._splitter.pending)
            return
        self._hand_on(chunk)

    def _waited(self, reading: asyncio.Future[bytes]) -> None:
        """A read that did not complete inline is over."""
        if self._done is None or self._done.done():
            reading.exception()  # (closed by close(): retrieved, nothing to hand on)
            return
        if reading.exception() is not None:  # StreamClosedError: the stream ends no other way
            self._end(self._splitter.pending)
            return
        self._hand_on(reading.result())
        if not self._done.done():
            self._watch()

    def _hand_on(self, chunk: bytes) -> None:
        if not chunk or self._done is None or self._done.done():
            return
        try:
            self._handle(self._splitter.feed(chunk))
        except Exception as exc:  # noqa: BLE001 - handed to whoever awaits the reader, which stops
            self._end(exc)

    def _watch(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.add_reader(self._fd, self._readable)

    def _unwatch(self) -> None:
        if self._fd is not None and self._loop is not None:
            self._loop.remove_reader(self._fd)

    def _end(self, outcome: Union[bool, Exception]) -> None:
        """Stop watching, close the duplicate, and finish the Future with ``outcome``."""
        if self._fd is not None:
            self._unwatch()
            os.close(self._fd)
            self._fd = None
        if self._done is not None and not self._done.done():
            if isinstance(outcome, Exception):
                self._done.set_exception(outcome)
            else:
                self._done.set_result(outcome)


class SkipLog:
    """Counts skipped lines (:attr:`total`); logs the count at most every ``SKIP_LOG_S``."""

    def __init__(self) -> None:
        self.total = 0
        self._unlogged = 0
        self._logged_at = float("-inf")

    def add(self, count: int) -> None:
        """Count ``count`` more skipped lines (0 is fine: a chance to log the earlier ones)."""
        if not count and not self._unlogged:
            return  # the usual read: nothing skipped now or unreported
        self.total += count
        self._unlogged += count
        if time.monotonic() - self._logged_at >= SKIP_LOG_S:
            self.flush()

    def flush(self) -> None:
        """Log the lines skipped since the last report, if any."""
        if self._unlogged:
            log.warning("tegrastats writes faster than its lines are used: %d lines skipped (%d in all); "
                        "only the newest line of each read is used", self._unlogged, self.total)
            self._unlogged, self._logged_at = 0, time.monotonic()


class StderrLog:
    """Logs stderr lines at WARNING, at most ``STDERR_BURST`` every ``STDERR_WINDOW_S``; those
    over the limit are counted and reported in one line (:meth:`flush`, or the next window)."""

    def __init__(self) -> None:
        self._window_at = float("-inf")
        self._logged = 0
        self._suppressed = 0

    def __call__(self, lines: Lines) -> None:
        now = time.monotonic()
        if now - self._window_at >= STDERR_WINDOW_S:
            self.flush()
            self._window_at, self._logged = now, 0
        for raw, too_long in lines:
            if not raw.strip():
                continue
            if self._logged >= STDERR_BURST:
                self._suppressed += 1
                continue
            self._logged += 1
            text = raw.decode("utf-8", "replace").rstrip()
            cut = too_long or len(text) > STDERR_LOG_CHARS
            log.warning("tegrastats stderr: %s%s", text[:STDERR_LOG_CHARS], " [...]" if cut else "")

    def flush(self) -> None:
        """Log how many lines were suppressed since the last report, if any."""
        if self._suppressed:
            log.warning("%d tegrastats stderr lines suppressed (at most %d are logged every %.0f s)",
                        self._suppressed, STDERR_BURST, STDERR_WINDOW_S)
            self._suppressed = 0
