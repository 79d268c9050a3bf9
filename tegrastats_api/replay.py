"""Lines made in process, one per interval: ``--replay FILE`` and the simulator.

What it does: :class:`ReplaySource` sends lines at the interval with the same interface
as :class:`tegrastats_api.source.TegrastatsProcess` (``start``, ``stop``, ``hurry``,
``restarts``, ``pid`` and the ``on_line``/``on_state`` callbacks): a list of recorded
lines in a loop, verbatim (``--replay``), or the lines of an endless iterator such as
:class:`tegrastats_api.simulator.SimulatedBoard` (``--simulate``), whose leading
timestamp it replaces with the local time. The interval is its only clock.

What it does not: run any process, read files (the lines come from
:mod:`tegrastats_api.plan`), make up lines, or parse them.
"""
from __future__ import annotations

import asyncio
import collections.abc
import itertools
import logging
import re
import time
from typing import Callable, Iterable, Iterator

log = logging.getLogger(__name__)

TIMESTAMP_RE = re.compile(r"\d\d-\d\d-\d{4} \d\d:\d\d:\d\d ")
TIMESTAMP_FORMAT = "%m-%d-%Y %H:%M:%S "


def _log_task_failure(task: asyncio.Future[None]) -> None:
    """Done-callback: log the error that ended the replay, if any."""
    if not task.cancelled() and task.exception() is not None:
        log.error("line source stopped by an unexpected error", exc_info=task.exception())


class ReplaySource:
    """Sends a line every ``interval_s`` (the first at once).

    ``lines`` is a list of lines, replayed in a loop, or an endless iterator of lines
    (taken one per interval). ``on_discard`` is never called. With ``live_timestamps``
    (the simulator) a leading tegrastats timestamp is replaced by the local time of
    ``clock()``; otherwise lines go out verbatim. Raises ValueError for an empty list or
    an interval that is not positive.
    """

    def __init__(
        self,
        lines: Iterable[str],
        on_line: Callable[[str], None],
        on_state: Callable[[str], None],
        on_discard: Callable[[str], None] | None = None,
        *,
        interval_s: float = 1.0,
        live_timestamps: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if interval_s <= 0:
            raise ValueError(f"interval_s must be positive, got {interval_s!r}")
        if isinstance(lines, collections.abc.Iterator):
            self._lines: Iterator[str] = lines
        else:
            recorded = list(lines)
            if not recorded:
                raise ValueError("ReplaySource needs at least one line")
            self._lines = itertools.cycle(recorded)
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
        self._on_line(self.render(next(self._lines)))
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

    def hurry(self) -> None:
        """Nothing to hurry: :meth:`stop` is immediate."""

    def render(self, line: str) -> str:
        """The line as it is sent: with a live timestamp if asked for, else verbatim."""
        match = TIMESTAMP_RE.match(line) if self._live_timestamps else None
        if match is None:
            return line
        return time.strftime(TIMESTAMP_FORMAT, time.localtime(self._clock())) + line[match.end():]

    async def _replay(self) -> None:
        """Send the second line, the third... (the first went out in start()) at a steady rate."""
        loop = asyncio.get_running_loop()
        next_at = loop.time()
        while True:
            # keep a steady rate, but do not burst to catch up after a stall
            next_at = max(next_at + self._interval_s, loop.time())
            await asyncio.sleep(next_at - loop.time())
            self._on_line(self.render(next(self._lines)))
