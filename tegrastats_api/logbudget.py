"""A log budget: what a client can make the server log is bounded.

Every request a client on the network sends can end in a log line: Tornado's access log
warns of each 4xx, python-engineio logs an ERROR with a traceback for each malformed
packet, Tornado's ``tornado.general`` for each malformed HTTP request. A client sending
thousands a second would fill the board's journal (and spend its CPU on formatting
tracebacks). :class:`LogBudget` lets through at most :data:`BURST` records per logger and
level (WARNING and above: what the default log level shows; DEBUG and INFO lines are what a
lower ``--log-level`` asked for) every :data:`WINDOW_S` seconds, the first :data:`TRACEBACKS` of them with their
traceback and the others with the exception's one-line summary; it says once when a
logger's budget runs out, and how many records it dropped when the next window opens (with
that logger's next record).

Installed by ``make_app`` on :data:`BUDGETED_LOGGERS` (the loggers a client's request can
reach) before the token filter, so that dropped records cost nothing more. The source's and
the hub's loggers are not budgeted: what they log is bounded by the source (see
:class:`tegrastats_api.lines.StderrLog` for tegrastats' stderr).
"""
from __future__ import annotations

import logging
import time
from typing import Callable, Dict, List, Tuple

from tegrastats_api.tokens import FILTERED_LOGGERS

BURST = 20
WINDOW_S = 10.0
TRACEBACKS = 2  # of the BURST records of a window, how many keep their traceback
LEVEL = logging.WARNING  # records below it pass: DEBUG and INFO lines are what --debug/--log-level asked for

# The loggers a client's request can reach: Tornado's, the Socket.IO libraries', and ours that
# log per client (refusals, sessions gone). Not the source's or the hub's.
BUDGETED_LOGGERS = FILTERED_LOGGERS + ("tegrastats_api.sessions", "tegrastats_api.sio", "tegrastats_api.websocket",
                                       "tegrastats_api.handlers")


class LogBudget(logging.Filter):
    """At most ``burst`` records per (logger, level) every ``window_s`` seconds of ``clock``."""

    def __init__(self, burst: int = BURST, window_s: float = WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, tracebacks: int = TRACEBACKS,
                 level: int = LEVEL) -> None:
        super().__init__()
        self.burst, self.window_s, self._clock, self.tracebacks = burst, window_s, clock, tracebacks
        self.level = level
        # (logger name, level) -> [window start, records let through, records dropped]
        self._windows: Dict[Tuple[str, int], List[float]] = {}
        self._reporting = False

    def filter(self, record: logging.LogRecord) -> bool:
        if self._reporting or record.levelno < self.level:  # our own notice; what the log level asked for
            return True
        key = (record.name, record.levelno)
        now = self._clock()
        window = self._windows.get(key)
        if window is None or now - window[0] >= self.window_s:
            dropped = int(window[2]) if window is not None else 0
            window = self._windows[key] = [now, 0, 0]
            if dropped:
                self._notice(record, "%d %s messages of %s were dropped (log budget: at most %d "
                             "every %.0f s)", dropped, record.levelname, record.name, self.burst, self.window_s)
        if window[1] >= self.burst:
            window[2] += 1
            if window[2] == 1:
                self._notice(record, "log budget spent: further %s messages of %s are dropped "
                             "for %.1f s (at most %d every %.0f s)", record.levelname, record.name,
                             self.window_s - (now - window[0]), self.burst, self.window_s)
            return False
        window[1] += 1
        if record.exc_info and window[1] > self.tracebacks:
            _without_traceback(record)
        return True

    def _notice(self, record: logging.LogRecord, message: str, *args: object) -> None:
        self._reporting = True
        try:
            logging.getLogger(record.name).log(record.levelno, message, *args)
        finally:
            self._reporting = False


def _without_traceback(record: logging.LogRecord) -> None:
    """``record`` with its exception in one line instead of a traceback."""
    exc = record.exc_info[1] if record.exc_info else None
    summary = " (%s: %s; traceback left out by the log budget)" % (type(exc).__name__, str(exc)[:200])
    record.exc_info, record.exc_text = None, None
    if isinstance(record.msg, str):
        record.msg += summary.replace("%", "%%") if record.args else summary


def install_log_budget(loggers: Tuple[str, ...], budget: LogBudget) -> None:
    """Put ``budget`` first on each of ``loggers``, in place of a budget installed before (each
    application starts with a full budget; a process serves one, tests many)."""
    for name in loggers:
        logger = logging.getLogger(name)
        for existing in [f for f in logger.filters if isinstance(f, LogBudget)]:
            logger.removeFilter(existing)
        logger.filters.insert(0, budget)
