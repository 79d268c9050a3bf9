"""Where tegrastats lines come from: the ``tegrastats`` child process, or recorded lines.

What it does:

* :class:`TegrastatsProcess` runs ``tegrastats --interval MS`` (an argv list, never a
  shell) with :class:`tornado.process.Subprocess`, splits its stdout into lines on the
  IOLoop and hands each one to ``on_line``; drains stderr into the log; restarts the child
  with capped exponential backoff whenever its stdout ends; and ``stop()`` escalates
  SIGTERM to SIGKILL. It reports ``running``, ``restarting``, ``missing`` and ``stopped``
  through ``on_state`` and every line it drops (too long, not UTF-8, cut off) through
  ``on_discard``.
* :class:`ReplaySource` has the same interface and replays recorded lines in process
  (``--replay FILE``, ``--simulate BOARD`` with the boards in ``data/boards/``).
* Which of the two to run, and the recorded boards, are in :mod:`tegrastats_api.plan`.

What it does not: parse, count or judge lines (a garbage line is passed on; the parser
and the hub deal with it), keep history, or install a SIGCHLD handler. The child's exit is
seen as stdout EOF plus ``Popen.poll()``, so this works on an IOLoop in any thread;
``Subprocess.initialize``/``set_exit_callback``/``wait_for_exit`` are never used.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import re
import shutil
import signal
import subprocess
import time
from typing import Any, Callable, Sequence

from tornado.iostream import PipeIOStream, StreamClosedError
from tornado.locks import Event
from tornado.process import Subprocess

from tegrastats_api.compat import wait_event

log = logging.getLogger(__name__)

READ_CHUNK = 65536
HEALTHY_RUN_S = 10.0  # a child that ran this long with output resets the backoff
EXIT_GRACE_S = 1.0  # after stdout EOF, time the child gets to exit on its own
KILL_WAIT_S = 5.0
POLL_STEP_S = 0.02
STDERR_LOG_CHARS = 200
TIMESTAMP_RE = re.compile(r"\d\d-\d\d-\d{4} \d\d:\d\d:\d\d ")
TIMESTAMP_FORMAT = "%m-%d-%Y %H:%M:%S "


class TegrastatsNotFoundError(Exception):
    """The tegrastats executable does not exist or cannot be executed."""

    def __init__(self, path: str) -> None:
        super().__init__(f"tegrastats not found or not executable: {path!r}")
        self.path = path


class _LineSplitter:
    """Splits a byte stream into lines, keeping at most ``limit`` bytes of any one line."""

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._buf = bytearray()
        self._over = False

    def feed(self, chunk: bytes) -> list[tuple[bytes, bool]]:
        """Return the ``(line, too_long)`` pairs this chunk completes (newline removed)."""
        done: list[tuple[bytes, bool]] = []
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


async def _read_lines(
    stream: PipeIOStream, limit: int, handle: Callable[[bytes, bool], None]
) -> bool:
    """Call ``handle(line, too_long)`` per line until EOF; True if a partial line was left."""
    splitter = _LineSplitter(limit)
    while True:
        try:
            chunk = await stream.read_bytes(READ_CHUNK, partial=True)
        except StreamClosedError:
            return splitter.pending
        for line, too_long in splitter.feed(chunk):
            handle(line, too_long)


async def _wait_exit(popen: subprocess.Popen[bytes], timeout: float) -> bool:
    """Poll (and so reap) the child for up to ``timeout`` seconds; True once it is gone."""
    deadline = time.monotonic() + timeout
    while popen.poll() is None:
        if time.monotonic() >= deadline:
            return False
        await asyncio.sleep(POLL_STEP_S)
    return True


class _Subprocess(Subprocess):
    """tornado's Subprocess, with its failure path made safe.

    When Popen fails (ENOEXEC, a file deleted since the check...), tornado closes the
    pipe fds but the half-built PipeIOStreams still own them, and would close them again
    when collected: by then, perhaps the fds of another child's pipes. Retire them now.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        try:
            super().__init__(*args, **kwargs)
        except BaseException:
            for name in ("stdin", "stdout", "stderr"):
                stream = self.__dict__.get(name)
                if isinstance(stream, PipeIOStream):
                    try:
                        stream.close_fd()  # EBADF expected: only the FileIO is retired
                    except OSError:
                        pass
            raise


def _log_task_failure(task: asyncio.Future[None]) -> None:
    """Done-callback: log the error that ended a background task, if any."""
    if not task.cancelled() and task.exception() is not None:
        log.error("line source stopped by an unexpected error", exc_info=task.exception())


def find_executable(name: str, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The path ``name`` runs as (PATH lookup, or an existing executable path), else None."""
    found = which(name)
    if found:
        return found
    if os.sep in name and os.path.isfile(name) and os.access(name, os.X_OK):
        return name
    return None


class TegrastatsProcess:
    """Runs tegrastats as a supervised child and reports its lines and state.

    ``on_line(text)`` gets every non-empty line without its line end (garbage included);
    ``on_state(state)`` every change among ``running``, ``restarting``, ``missing`` (the
    executable vanished; retrying) and ``stopped``; ``on_discard(reason)`` every dropped
    line: ``"line too long"`` (over ``max_line_bytes``), ``"invalid utf-8"`` or
    ``"incomplete line"`` (no line end before the child died). Callbacks run on the
    IOLoop. ``start()`` must be called on the running loop; it raises
    :class:`TegrastatsNotFoundError` at once if ``argv[0]`` cannot be executed. Backoff
    doubles from ``backoff_initial`` to ``backoff_max`` seconds and starts over after a
    child that ran for ``HEALTHY_RUN_S`` with output.
    """

    def __init__(
        self,
        argv: Sequence[str],
        on_line: Callable[[str], None],
        on_state: Callable[[str], None],
        on_discard: Callable[[str], None],
        *,
        max_line_bytes: int = 65536,
        backoff_initial: float = 0.5,
        backoff_max: float = 30.0,
        stop_timeout: float = 3.0,
    ) -> None:
        if not argv:
            raise ValueError("argv must name the tegrastats executable")
        self._argv = list(argv)
        self._on_line = on_line
        self._on_state = on_state
        self._on_discard = on_discard
        self._max_line_bytes = max_line_bytes
        self._backoff_initial = backoff_initial
        self._backoff_max = backoff_max
        self._stop_timeout = stop_timeout
        self._proc: Subprocess | None = None
        self._task: asyncio.Future[None] | None = None
        self._state: str | None = None
        self._restarts = 0
        self._spawned_at = 0.0
        self._child_lines = 0
        self._stopping = False
        self._wake = Event()  # set by stop(): ends a backoff wait at once
        self._stopped = Event()

    @property
    def restarts(self) -> int:
        """How many times the child has been respawned."""
        return self._restarts

    @property
    def pid(self) -> int | None:
        """The running child's process id, None when there is none."""
        proc = self._proc
        return proc.pid if proc is not None and proc.proc.returncode is None else None

    def start(self) -> None:
        """Spawn tegrastats and start reading it on the running event loop."""
        asyncio.get_running_loop()  # RuntimeError if called off the loop
        if self._task is not None or self._stopping:
            raise RuntimeError("TegrastatsProcess.start() may be called once")
        self._spawn()
        self._set_state("running")
        self._task = asyncio.ensure_future(self._supervise())
        self._task.add_done_callback(_log_task_failure)

    async def stop(self) -> None:
        """Stop for good: no restarts, SIGTERM, SIGKILL after ``stop_timeout``, reap."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self._wake.set()
        if self._proc is not None:
            await self._reap(self._proc, grace=0.0)
        if self._task is not None:
            limit = self._stop_timeout + KILL_WAIT_S + 2 * EXIT_GRACE_S
            finished, _ = await asyncio.wait([self._task], timeout=limit)
            if not finished:
                log.error("tegrastats supervisor did not finish in %.1f s; cancelling", limit)
                self._task.cancel()
        self._set_state("stopped")
        self._stopped.set()

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._on_state(state)

    def _spawn(self) -> None:
        if find_executable(self._argv[0]) is None:
            raise TegrastatsNotFoundError(self._argv[0])
        try:
            self._proc = _Subprocess(
                self._argv,
                stdout=Subprocess.STREAM,
                stderr=Subprocess.STREAM,
                stdin=subprocess.DEVNULL,
            )
        except OSError as exc:  # gone since the check, or not a program (ENOEXEC)
            if isinstance(exc, (FileNotFoundError, PermissionError)) or exc.errno == errno.ENOEXEC:
                raise TegrastatsNotFoundError(self._argv[0]) from exc
            raise
        self._spawned_at = time.monotonic()
        self._child_lines = 0
        log.info("started %s (pid %d)", " ".join(self._argv), self._proc.pid)

    async def _supervise(self) -> None:
        """The restart loop: the app's one supervised boundary."""
        delay = self._backoff_initial
        while True:
            try:
                await self._run_child(self._proc)
            except Exception:  # supervised boundary: log, make sure the child is gone, back off
                log.exception("reading tegrastats failed; the child will be restarted")
            if self._stopping:
                return
            if self._child_lines and time.monotonic() - self._spawned_at >= HEALTHY_RUN_S:
                delay = self._backoff_initial
            self._set_state("restarting")
            delay = await self._respawn(delay)
            if self._stopping:
                return

    async def _run_child(self, proc: Subprocess | None) -> None:
        """Read one child until its stdout ends, then make sure it is dead and reaped."""
        assert proc is not None
        drain = asyncio.ensure_future(
            _read_lines(proc.stderr, 4 * STDERR_LOG_CHARS, self._log_stderr)
        )
        grace = 0.0  # if reading fails, the child is killed at once
        try:
            if await _read_lines(proc.stdout, self._max_line_bytes, self._deliver):
                self._on_discard("incomplete line")
            grace = EXIT_GRACE_S
        finally:
            status = await self._reap(proc, grace)
            await asyncio.wait([drain], timeout=EXIT_GRACE_S)
            proc.stdout.close()
            proc.stderr.close()
        if not self._stopping:
            log.warning(
                "tegrastats (pid %d) exited with status %s after %.1f s and %d lines",
                proc.pid, status, time.monotonic() - self._spawned_at, self._child_lines,
            )

    async def _respawn(self, delay: float) -> float:
        """Wait ``delay``, spawn again (doubling the wait while that fails); the next delay."""
        while not self._stopping:
            if delay > 0:
                await wait_event(self._wake, delay)
            delay = min(max(delay * 2, self._backoff_initial), self._backoff_max)
            if self._stopping:
                break
            try:
                self._spawn()
            except TegrastatsNotFoundError as exc:
                if self._state != "missing":
                    log.error("%s; retrying with backoff", exc)
                self._set_state("missing")
                continue
            except OSError:
                log.exception("could not start tegrastats; retrying with backoff")
                continue
            self._restarts += 1
            self._set_state("running")
            break
        return delay

    async def _reap(self, proc: Subprocess, grace: float) -> int | None:
        """Give the child ``grace`` seconds, then SIGTERM, then SIGKILL; its exit status."""
        popen = proc.proc
        if await _wait_exit(popen, grace):
            return popen.returncode
        for sig, wait in ((signal.SIGTERM, self._stop_timeout), (signal.SIGKILL, KILL_WAIT_S)):
            if popen.poll() is None:
                try:
                    popen.send_signal(sig)
                except ProcessLookupError:
                    pass
            if await _wait_exit(popen, wait):
                return popen.returncode
        log.error("tegrastats (pid %d) survived SIGKILL", popen.pid)
        return None

    def _deliver(self, raw: bytes, too_long: bool) -> None:
        if too_long:
            self._on_discard("line too long")
            return
        raw = raw.rstrip(b"\r")
        if not raw:
            return
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            self._on_discard("invalid utf-8")
            return
        self._child_lines += 1
        self._on_line(text)

    def _log_stderr(self, raw: bytes, too_long: bool) -> None:
        text = raw.decode("utf-8", "replace").rstrip()
        if text:
            cut = too_long or len(text) > STDERR_LOG_CHARS
            log.warning("tegrastats stderr: %s%s", text[:STDERR_LOG_CHARS], " [...]" if cut else "")


class ReplaySource:
    """Replays recorded lines in a loop, one every ``interval_s`` (the first at once).

    Same interface as :class:`TegrastatsProcess`; ``on_discard`` is never called. With
    ``live_timestamps`` (the simulator) a leading tegrastats timestamp is replaced by the
    local time of ``clock()``; otherwise lines go out verbatim.
    """

    def __init__(
        self,
        lines: Sequence[str],
        on_line: Callable[[str], None],
        on_state: Callable[[str], None],
        on_discard: Callable[[str], None] | None = None,
        *,
        interval_s: float = 1.0,
        live_timestamps: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if not lines:
            raise ValueError("ReplaySource needs at least one line")
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        self._lines = list(lines)
        self._on_line = on_line
        self._on_state = on_state
        self._interval_s = interval_s
        self._live_timestamps = live_timestamps
        self._clock = clock
        self._task: asyncio.Future[None] | None = None
        self._stopped = False

    @property
    def restarts(self) -> int:
        """Always 0: there is no child to restart."""
        return 0

    @property
    def pid(self) -> int | None:
        """Always None: the lines come from this process."""
        return None

    def start(self) -> None:
        """Report ``running`` and start replaying on the running event loop."""
        asyncio.get_running_loop()
        if self._task is not None or self._stopped:
            raise RuntimeError("ReplaySource.start() may be called once")
        self._on_state("running")
        self._on_line(self.render(self._lines[0]))
        self._task = asyncio.ensure_future(self._replay())
        self._task.add_done_callback(_log_task_failure)

    async def stop(self) -> None:
        """Stop replaying and report ``stopped``; idempotent."""
        if self._stopped:
            return
        self._stopped = True
        if self._task is not None:
            self._task.cancel()
            await asyncio.wait([self._task])
        self._on_state("stopped")

    def render(self, line: str) -> str:
        """The line as it is sent: with a live timestamp if asked for, else verbatim."""
        match = TIMESTAMP_RE.match(line) if self._live_timestamps else None
        if match is None:
            return line
        return time.strftime(TIMESTAMP_FORMAT, time.localtime(self._clock())) + line[match.end():]

    async def _replay(self) -> None:
        """Send lines 1, 2, ... (line 0 went out in start()) at a steady rate."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        index = 0
        while True:
            # keep a steady rate, but do not burst to catch up after a stall
            next_at = max(next_at + self._interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())
            index = (index + 1) % len(self._lines)
            self._on_line(self.render(self._lines[index]))
