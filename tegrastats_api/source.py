"""The ``tegrastats`` child process: run it, read its lines, restart it, stop it.

What it does: :class:`TegrastatsProcess` runs ``tegrastats --interval MS`` (an argv list,
never a shell) as the leader of a process group of its own, hands its stdout lines to
``on_line``, logs its stderr (rate-limited, :class:`tegrastats_api.lines.StderrLog`),
restarts it with capped exponential backoff whenever it exits or its stdout ends, and ends
its whole group (SIGTERM, then SIGKILL) on restart and on ``stop()``.

Load shedding: tegrastats prints one line per interval, so a read holding more than
``MAX_LINES_PER_READ`` complete lines means the reader has fallen behind; of such a read only
the newest line is handed on (a monitor wants the newest sample, not every one), and the
others are counted (:attr:`TegrastatsProcess.skipped`) and logged. Between reads the reader
yields to the event loop, so a child that writes without pause cannot starve the server.

What it does not: parse, count or judge lines (the hub does), replay recorded lines
(:mod:`tegrastats_api.replay`), or install a SIGCHLD handler: the child's exit is polled with
``waitid(WNOWAIT)`` (any thread's IOLoop works), so it is noticed even while a grandchild
holds stdout open, and the child stays unreaped, its pid (the group's id) reserved, until
its group has been killed.
"""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
import signal
import subprocess
import time
from typing import Any, Callable, Sequence

from tornado.iostream import PipeIOStream
from tornado.locks import Event
from tornado.process import Subprocess

from tegrastats_api.compat import wait_event
from tegrastats_api.lines import STDERR_LOG_CHARS, LineReader, Lines, SkipLog, StderrLog

log = logging.getLogger(__name__)

MAX_LINES_PER_READ = 16  # more complete lines in one read: a backlog, keep the newest only
HEALTHY_RUN_S = 10.0  # a child that ran this long with output resets the backoff
EXIT_GRACE_S = 1.0  # time to exit after its stdout ended, or to flush stdout after it exited
KILL_WAIT_S = 5.0
POLL_S = 0.1  # how often a child is checked for an exit that its stdout does not show
POLL_STEP_S = 0.02  # the same, while an exit is being waited for


class TegrastatsNotFoundError(Exception):
    """The tegrastats executable does not exist or cannot be executed."""

    def __init__(self, path: str) -> None:
        super().__init__(f"tegrastats not found or not executable: {path!r}")
        self.path = path


def find_executable(name: str, which: Callable[[str], str | None] = shutil.which) -> str | None:
    """The path ``name`` runs as (PATH lookup, or an existing executable path), else None."""
    found = which(name)
    if found:
        return found
    if os.sep in name and os.path.isfile(name) and os.access(name, os.X_OK):
        return name
    return None


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


# --- the child's process group ----------------------------------------------------------


def _spawn_group(argv: Sequence[str]) -> Subprocess:
    """Start ``argv`` as the leader of a new session and process group (so that it and all
    it starts can be signalled at once, and a terminal's Ctrl-C reaches only the server),
    with stdout and stderr piped. Raises :class:`TegrastatsNotFoundError`."""
    if find_executable(argv[0]) is None:
        raise TegrastatsNotFoundError(argv[0])
    try:
        return _Subprocess(list(argv), stdout=Subprocess.STREAM, stderr=Subprocess.STREAM,
                           stdin=subprocess.DEVNULL, start_new_session=True)
    except OSError as exc:  # gone since the check, or not a program (ENOEXEC)
        if isinstance(exc, (FileNotFoundError, PermissionError)) or exc.errno == errno.ENOEXEC:
            raise TegrastatsNotFoundError(argv[0]) from exc
        raise


def _has_exited(popen: subprocess.Popen[bytes]) -> bool:
    """True once the child has exited; it is not reaped, so its pid stays reserved."""
    if popen.returncode is not None:
        return True
    try:
        return os.waitid(os.P_PID, popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is not None
    except ChildProcessError:  # reaped by someone else (a host program's SIGCHLD handler)
        return True


def _signal_group(pgid: int, sig: int) -> None:
    """Send ``sig`` to every process of the group ``pgid``; a group that is gone is fine."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        pass


async def _wait_exit(popen: subprocess.Popen[bytes], timeout: float,
                     give_up: Callable[[], bool] = lambda: False) -> bool:
    """Wait up to ``timeout`` s (less once ``give_up()``) for the child's exit; True once exited."""
    deadline = time.monotonic() + timeout
    while not _has_exited(popen):
        if time.monotonic() >= deadline or give_up():
            return False
        await asyncio.sleep(POLL_STEP_S)
    return True


def _exit_future(popen: subprocess.Popen[bytes]) -> asyncio.Future[None] | None:
    """A future done once the child has exited (not reaped), from a pidfd the event loop
    watches; None where there are no pidfds (Python 3.8, Linux before 5.3): then the exit
    is polled every ``POLL_S``. The pidfd is closed when the future is done or cancelled."""
    pidfd_open = getattr(os, "pidfd_open", None)
    if pidfd_open is None:
        return None
    try:
        fd = pidfd_open(popen.pid)
    except OSError:  # ENOSYS (an old kernel), or the child is gone already (reaped)
        return None
    loop = asyncio.get_running_loop()
    exited: asyncio.Future[None] = loop.create_future()

    def readable() -> None:
        if not exited.done():
            exited.set_result(None)

    def release(_: asyncio.Future[None]) -> None:
        loop.remove_reader(fd)
        os.close(fd)

    loop.add_reader(fd, readable)
    exited.add_done_callback(release)
    return exited


async def _watch(popen: subprocess.Popen[bytes], reader: asyncio.Future[bool],
                 stopping: Callable[[], bool], woken: asyncio.Future[Any] | None = None) -> float:
    """Wait until the child's stdout ends, it exits or ``stopping()`` (``woken`` is done when
    it may have become true); the time the child then gets to exit by itself (0 when stopping
    or when the reader failed). Without a pidfd (:func:`_exit_future`) or ``woken``, checks
    every ``POLL_S``; with both, sleeps until one of them is done."""
    exited = _exit_future(popen)
    try:
        waits: list[asyncio.Future[Any]] = [reader]
        timeout: float | None = POLL_S
        if exited is not None and woken is not None:
            waits += [exited, woken]
            timeout = None
        while not (reader.done() or stopping() or _has_exited(popen)):
            await asyncio.wait(waits, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        if exited is not None:
            exited.cancel()
    if stopping() or (reader.done() and reader.exception() is not None):
        return 0.0
    # Exited, but stdout may still be open (a grandchild holds it): read what is left.
    await asyncio.wait([reader], timeout=EXIT_GRACE_S)
    return EXIT_GRACE_S


async def _end_group(popen: subprocess.Popen[bytes], grace: float, term_wait: float,
                     hurried: Callable[[], bool]) -> int | None:
    """Give the child ``grace`` s to exit, SIGTERM its group, SIGKILL it after ``term_wait`` s
    (both cut short once ``hurried()``); then SIGKILL what is left of the group (grandchildren)
    and reap the child. Its exit status, or None if it survived SIGKILL."""
    if not await _wait_exit(popen, grace, hurried):
        _signal_group(popen.pid, signal.SIGTERM)
        if not await _wait_exit(popen, term_wait, hurried):
            _signal_group(popen.pid, signal.SIGKILL)
            if not await _wait_exit(popen, KILL_WAIT_S):
                log.error("tegrastats (pid %d) survived SIGKILL", popen.pid)
                return None
    _signal_group(popen.pid, signal.SIGKILL)
    return popen.wait()  # it has exited: returns at once


def _log_task_failure(task: asyncio.Future[None]) -> None:
    """Done-callback: log the error that ended the supervisor, if any."""
    if not task.cancelled() and task.exception() is not None:
        log.error("tegrastats supervisor stopped by an unexpected error", exc_info=task.exception())


class TegrastatsProcess:
    """Runs tegrastats as a supervised child and reports its lines and state.

    ``on_line(text)`` gets every non-empty line without its line end (garbage included),
    except the lines skipped from a backlog (see the module docstring and :attr:`skipped`);
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
        self._skips = SkipLog()
        self._stderr = StderrLog()
        self._spawned_at = 0.0
        self._child_lines = 0
        self._stopping = False
        self._hurried = False
        self._wake = Event()  # set by stop(): ends a backoff wait at once
        self._stopped = Event()

    @property
    def restarts(self) -> int:
        """How many times the child has been respawned."""
        return self._restarts

    @property
    def skipped(self) -> int:
        """Lines skipped from backlogs (only the newest line of such a read is used)."""
        return self._skips.total

    @property
    def pid(self) -> int | None:
        """The running child's process id (also its process group's), None when there is none."""
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
        """Stop for good: no restarts; SIGTERM the child's group, SIGKILL it after
        ``stop_timeout`` (at once after :meth:`hurry`), reap the child. Idempotent."""
        if self._stopping:
            await self._stopped.wait()
            return
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            limit = self._stop_timeout + KILL_WAIT_S + 3 * EXIT_GRACE_S + POLL_S
            finished, _ = await asyncio.wait([self._task], timeout=limit)
            if not finished:
                log.error("tegrastats supervisor did not finish in %.1f s; cancelling", limit)
                self._task.cancel()
        self._set_state("stopped")
        self._stopped.set()

    def hurry(self) -> None:
        """Cut every grace period short: a stop in progress SIGKILLs the child's group now."""
        self._hurried = True

    def _set_state(self, state: str) -> None:
        if state != self._state:
            self._state = state
            self._on_state(state)

    def _spawn(self) -> None:
        self._proc = _spawn_group(self._argv)
        self._spawned_at = time.monotonic()
        self._child_lines = 0
        log.info("started %s (pid %d)", " ".join(self._argv), self._proc.pid)

    async def _supervise(self) -> None:
        """The restart loop: the app's one supervised boundary."""
        delay = self._backoff_initial
        while True:
            try:
                await self._run_child(self._proc)
            except Exception:  # supervised boundary: the child is gone by now; log, back off
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
        """Read one child until it exits or its stdout ends; then end its group and reap it."""
        assert proc is not None
        popen = proc.proc
        out = LineReader(proc.stdout, self._max_line_bytes, self._take)
        err = LineReader(proc.stderr, 4 * STDERR_LOG_CHARS, self._stderr)
        reader, drain = out.start(), err.start()
        grace = 0.0  # if waiting fails, the child is killed at once
        try:
            woken = asyncio.ensure_future(self._wake.wait())
            try:
                grace = await _watch(popen, reader, lambda: self._stopping, woken)
            finally:
                woken.cancel()
        finally:  # whatever happened: no child, grandchild or open pipe is left behind
            status = await _end_group(popen, grace, self._stop_timeout, lambda: self._hurried)
            await asyncio.wait([reader, drain], timeout=EXIT_GRACE_S)
            out.close()  # ends the readers, should a pipe still be open
            err.close()
            await asyncio.wait([reader, drain])
            self._stderr.flush()
            self._skips.flush()
        if reader.result():  # raises what the reader raised, for the supervisor to log
            self._on_discard("incomplete line")
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

    def _take(self, lines: Lines) -> None:
        """Hand on the lines of one read; of a backlog, only the newest."""
        skip = len(lines) - 1 if len(lines) > MAX_LINES_PER_READ else 0
        self._skips.add(skip)
        for raw, too_long in lines[skip:]:
            self._deliver(raw, too_long)

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
