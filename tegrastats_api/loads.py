"""How busy a simulated board is: the random process behind ``--simulate``.

What it does: :class:`BoardLoad` advances, one sample of ``dt`` seconds at a time, a few
activity levels in [0, 1] (0 = the lowest value the board's recorded lines show, 1 = the
highest): the CPU and the GPU (each a slow drift plus bursts of work), the video engines,
the memory controller (driven by both), the power they add up to, and three *heat*
levels that follow the power with a lag of tens of seconds, the way a heat sink does.
Everything comes from the ``random.Random`` it is given, so a seed replays a run.

What it does not: know any board, token, range or unit (:mod:`tegrastats_api.simulator`
maps the levels onto a board's recorded ranges), keep time, or do I/O.
"""
from __future__ import annotations

import math
import random
from typing import Tuple

HEAT_LAG_S = 40.0  # how long the temperatures take to follow a change of power
WOBBLE_S = 4.0  # the time constant of the quick ups and downs of a load


def clamp01(value: float) -> float:
    """``value`` limited to [0, 1]."""
    return 0.0 if value < 0.0 else 1.0 if value > 1.0 else value


def _lag(old: float, target: float, dt: float, tau_s: float) -> float:
    """First-order lag: ``old`` moves toward ``target`` with time constant ``tau_s``."""
    return target + (old - target) * math.exp(-dt / tau_s)


class Activity:
    """One activity level in [0, 1]: drift, bursts, wobble and a little noise per sample.

    The drift is an Ornstein-Uhlenbeck process around ``mean`` (standard deviation
    ``spread``, time constant ``drift_s``) that bounces off ``floor`` (a board is never
    quite idle). A burst starts on average every ``burst_every_s`` seconds (0: never),
    lasts about ``burst_s`` and adds a height drawn from ``burst_height``, reached within
    about a second. On top: a wobble of a few seconds (standard deviation ``wobble``)
    and white noise per sample (``noise``), so no two samples are quite alike.
    """

    def __init__(self, rng: random.Random, *, mean: float, spread: float, drift_s: float,
                 floor: float = 0.0, burst_every_s: float = 0.0, burst_s: float = 10.0,
                 burst_height: Tuple[float, float] = (0.3, 0.6), wobble: float = 0.0,
                 noise: float = 0.01) -> None:
        self._rng = rng
        self._mean, self._spread, self._drift_s, self._floor = mean, spread, drift_s, floor
        self._burst_every_s, self._burst_s, self._burst_height = burst_every_s, burst_s, burst_height
        self._wobble_sd, self._noise = wobble, noise
        self._base = self._bounce(mean + rng.gauss(0.0, spread))
        self._wobble = rng.gauss(0.0, wobble)
        self._burst = 0.0
        self._burst_target = 0.0
        self._burst_left_s = 0.0
        self.level = clamp01(self._base + self._wobble)

    def _bounce(self, value: float) -> float:
        return 2.0 * self._floor - value if value < self._floor else value

    def step(self, dt: float) -> float:
        """Advance ``dt`` seconds; returns (and keeps in ``level``) the new level."""
        rng = self._rng
        keep = math.exp(-dt / self._drift_s)
        self._base = self._bounce(self._mean + (self._base - self._mean) * keep + (
            self._spread * math.sqrt(1.0 - keep * keep) * rng.gauss(0.0, 1.0)))
        keep = math.exp(-dt / WOBBLE_S)
        self._wobble = self._wobble * keep + self._wobble_sd * math.sqrt(1.0 - keep * keep) * rng.gauss(0.0, 1.0)
        if self._burst_left_s > 0.0:
            self._burst_left_s -= dt
        elif self._burst_every_s > 0.0 and rng.random() < 1.0 - math.exp(-dt / self._burst_every_s):
            self._burst_left_s = rng.expovariate(1.0 / self._burst_s)
            self._burst_target = rng.uniform(*self._burst_height)
        target = self._burst_target if self._burst_left_s > 0.0 else 0.0
        self._burst = _lag(self._burst, target, dt, 1.0)
        self.level = clamp01(self._base + self._burst + self._wobble + rng.gauss(0.0, self._noise))
        return self.level


class BoardLoad:
    """The activity levels of one simulated board, advanced by :meth:`step`.

    ``cpu``, ``gpu``, ``engine``, ``memory`` (the EMC), ``power`` (the whole board),
    ``ram`` and ``swap`` (slow drifts of the memory in use) are levels in [0, 1];
    ``heat_cpu``, ``heat_gpu`` and ``heat`` follow the power of the CPU, of the GPU and
    of the board with a lag of :data:`HEAT_LAG_S`. Without ``gpu_live`` (a power-gated
    GPU) the GPU stays at 0 and adds nothing to the power.
    """

    def __init__(self, rng: random.Random, *, gpu_live: bool = True) -> None:
        self.gpu_live = gpu_live
        self._cpu = Activity(rng, mean=0.22, spread=0.1, drift_s=60.0, floor=0.08, burst_every_s=30.0,
                             burst_s=12.0, burst_height=(0.3, 0.7), wobble=0.05)
        self._gpu = Activity(rng, mean=0.3, spread=0.12, drift_s=90.0, floor=0.1, burst_every_s=25.0,
                             burst_s=15.0, burst_height=(0.3, 0.65), wobble=0.06)
        self._engine = Activity(rng, mean=0.5, spread=0.1, drift_s=60.0, floor=0.2, burst_every_s=120.0,
                                burst_s=10.0, burst_height=(0.1, 0.3), wobble=0.04)
        self._ram = Activity(rng, mean=0.5, spread=0.15, drift_s=300.0, floor=0.1, noise=0.002)
        self._swap = Activity(rng, mean=0.5, spread=0.15, drift_s=900.0, floor=0.1, noise=0.001)
        self._rng = rng
        self._mix()
        self.heat_cpu, self.heat_gpu, self.heat = self.cpu, self.gpu, self.power

    def _mix(self) -> None:
        self.cpu = self._cpu.level
        self.gpu = self._gpu.level if self.gpu_live else 0.0
        self.engine = self._engine.level
        self.ram = self._ram.level
        self.swap = self._swap.level
        noise = self._rng.gauss(0.0, 0.02)
        if self.gpu_live:
            self.memory = clamp01(0.1 + 0.35 * self.cpu + 0.55 * self.gpu + noise)
            self.power = clamp01(0.45 * self.cpu + 0.4 * self.gpu + 0.15 * self.memory)
        else:
            self.memory = clamp01(0.1 + 0.7 * self.cpu + noise)
            self.power = clamp01(0.75 * self.cpu + 0.25 * self.memory)

    def step(self, dt: float) -> None:
        """Advance every level by ``dt`` seconds (one sample)."""
        for activity in (self._cpu, self._gpu, self._engine, self._ram, self._swap):
            activity.step(dt)
        self._mix()
        self.heat_cpu = _lag(self.heat_cpu, self.cpu, dt, HEAT_LAG_S)
        self.heat_gpu = _lag(self.heat_gpu, self.gpu, dt, HEAT_LAG_S)
        self.heat = _lag(self.heat, self.power, dt, HEAT_LAG_S)
