"""Energy per power rail, integrated from the samples as they arrive.

What it does: :class:`EnergyMeter` turns the instantaneous power of each rail (the
``current`` value tegrastats prints, in mW) into a running energy total in joules with
the trapezoid rule: between two consecutive samples read at ``t0`` and ``t1``, a rail
that both print adds ``(P0 + P1) / 2 * (t1 - t0)``. The time is when the server read each
line (``received_at``), not tegrastats' own clock. The totals only grow, so they can be
exported as Prometheus counters (``jetson_rail_energy_joules_total``).

A reading below zero (``VDD_CPU_CV -398mW`` was seen on an AGX Orin without root) counts
as 0 mW here: energy drawn is never negative, and a counter that went down would read
as a reset to Prometheus. The gauges keep the reading as printed.

What it does not: guess across holes. A gap longer than ``max_gap_s`` (the hub passes its
``stale_after_s``, the point at which its data is stale), a clock that went back,
and the first sample of a rail add nothing: those stretches are missing from the total
rather than invented. A rail that stops being printed keeps its total. It reads no clock
itself and knows nothing of Prometheus.
"""
from __future__ import annotations

from typing import Dict, Mapping, Optional, Tuple

MW_PER_W = 1000.0


class EnergyMeter:
    """Joules per rail since the meter was made, from ``add(time, {rail: mW})`` calls."""

    def __init__(self, max_gap_s: float) -> None:
        self.max_gap_s = max_gap_s
        self._totals_j: Dict[str, float] = {}
        self._last: Optional[Tuple[float, Mapping[str, float]]] = None

    @property
    def totals_j(self) -> Dict[str, float]:
        """``{rail: joules}`` for every rail seen so far, in the order first seen (a copy)."""
        return dict(self._totals_j)

    def add(self, at_s: float, power_mw: Mapping[str, float]) -> None:
        """Account for one sample read at ``at_s`` (epoch seconds) with each rail's power in mW."""
        for rail in power_mw:
            self._totals_j.setdefault(rail, 0.0)
        if self._last is not None:
            last_s, last_mw = self._last
            elapsed_s = at_s - last_s
            if 0.0 < elapsed_s <= self.max_gap_s:
                for rail, now_mw in power_mw.items():
                    before_mw = last_mw.get(rail)
                    if before_mw is not None:
                        drawn_mw = (max(0.0, before_mw) + max(0.0, now_mw)) / 2.0
                        self._totals_j[rail] += drawn_mw / MW_PER_W * elapsed_s
        self._last = (at_s, dict(power_mw))
