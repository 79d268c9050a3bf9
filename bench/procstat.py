"""What a process costs, read from ``/proc`` (Linux only; psutil is not a dependency).

What it does: resident memory (:func:`rss_mb`), CPU seconds used so far
(:func:`cpu_seconds`, user + system), open file descriptors (:func:`fd_count`), and
:class:`CpuMeter`, which turns two CPU readings into a percentage of one core.

What it does not: sample in the background or follow children (tegrastats' own CPU is
not the server's).
"""
from __future__ import annotations

import os
import time
from typing import Optional

CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MiB (``VmRSS`` of ``/proc/PID/status``)."""
    with open("/proc/%d/status" % pid) as handle:
        for row in handle:
            if row.startswith("VmRSS:"):
                return int(row.split()[1]) / 1024.0
    raise ValueError("no VmRSS for pid %d (a zombie?)" % pid)


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds ``pid`` has used (``/proc/PID/stat`` fields 14 and 15)."""
    with open("/proc/%d/stat" % pid) as handle:
        # the command name may hold spaces and parentheses: split after the last ')'
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def cpu_seconds_fine(pid: int) -> float:
    """CPU seconds the live threads of ``pid`` have used, to the nanosecond (the first field of
    each ``/proc/PID/task/TID/schedstat``): ``cpu_seconds`` counts clock ticks (10 ms), too
    coarse for a server that uses 0.05 % of a core. Threads that ended are not counted."""
    total = 0
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/schedstat" % (pid, tid)) as handle:
                total += int(handle.read().split()[0])
        except (OSError, IndexError, ValueError):  # a thread that just ended
            continue
    return total / 1e9


def fd_count(pid: int) -> int:
    """Open file descriptors of ``pid`` (entries of ``/proc/PID/fd``)."""
    return len(os.listdir("/proc/%d/fd" % pid))


class CpuMeter:
    """CPU use of one process between :meth:`start` and :meth:`stop`, in % of one core
    (``fine``: from :func:`cpu_seconds_fine`, for windows where a few ticks would be all)."""

    def __init__(self, pid: int, fine: bool = False) -> None:
        self.pid = pid
        self._read = cpu_seconds_fine if fine else cpu_seconds
        self._cpu0 = 0.0
        self._wall0 = 0.0
        self.percent: Optional[float] = None

    def start(self) -> CpuMeter:
        self._cpu0, self._wall0 = self._read(self.pid), time.monotonic()
        return self

    def stop(self) -> float:
        """The percentage since :meth:`start` (also kept in :attr:`percent`)."""
        cpu, wall = self._read(self.pid) - self._cpu0, time.monotonic() - self._wall0
        self.percent = 100.0 * cpu / wall if wall > 0 else 0.0
        return self.percent
