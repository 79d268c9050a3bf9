"""Lines from a child's pipes: splitting, reading without starving the loop, logging with limits.

What it does: :class:`LineSplitter` cuts a byte stream into lines of at most ``limit`` bytes
(longer ones are flagged, not buffered); :func:`read_lines` reads a tornado pipe and hands
each read's complete lines on, yielding to the event loop between reads; :class:`StderrLog`
logs a child's stderr at most ``STDERR_BURST`` lines every ``STDERR_WINDOW_S`` and counts the
rest; :class:`SkipLog` counts the stdout lines a reader skipped and logs the count at most
every ``SKIP_LOG_S``.

What it does not: start or watch processes (:mod:`tegrastats_api.source`), or decode and
judge stdout lines.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, List, Optional, Tuple, cast

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


async def read_lines(stream: PipeIOStream, limit: int, handle: Callable[[Lines], None]) -> bool:
    """Call ``handle(lines)`` once per read until EOF or close; True if a partial line was left.

    Tornado reads into a new buffer of the stream's ``read_chunk_size`` for every read (the
    one that finds the pipe empty after each line too), so that is :data:`READ_PIECE`, a
    few lines' worth; a backlog (data there at once) is read on up to :data:`READ_CHUNK`
    before it is handed on, as one read of that size would have (see
    ``TegrastatsProcess._take``, which keeps only the newest of many lines).
    """
    stream.read_chunk_size = READ_PIECE  # BaseIOStream's constructor argument, as it keeps it
    splitter = LineSplitter(limit)
    pending: Optional[asyncio.Future[bytes]] = None
    while True:
        try:
            reading = pending or cast("asyncio.Future[bytes]", stream.read_bytes(READ_CHUNK, partial=True))
            pending = None
            if reading.done():
                # Data already there completes the read without a trip through the loop:
                # yield first, or a child that writes without pause would hold up every
                # request and signal. (The usual read waits for the next line: no extra trip.)
                await asyncio.sleep(0)
            chunk = await reading
        except StreamClosedError:
            return splitter.pending
        closed = False
        while len(chunk) < READ_CHUNK:  # the rest of what is there (usually nothing)
            try:
                more = cast("asyncio.Future[bytes]", stream.read_bytes(READ_CHUNK - len(chunk), partial=True))
                if not more.done():
                    pending = more  # the next line's read
                    break
                chunk += more.result()
            except StreamClosedError:
                closed = True
                break
        handle(splitter.feed(chunk))
        if closed:
            return splitter.pending


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
