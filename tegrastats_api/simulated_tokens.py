"""How each token of a board's recorded line moves in a simulated line (see ``simulator``).

What it does: one writer per token family of a template line (``RAM``/``SWAP``, ``CPU
[..]``, ``MTS``, a temperature, a rail, a clock: EMC, GR3D, an engine), made from the
template's token and the same token in every recorded line, that writes the token
anew for the current :class:`~tegrastats_api.loads.BoardLoad`: only the numbers change,
the form stays the template's. :class:`Span` holds the range each number keeps to.

Ranges: each number stays within the lowest and highest value recorded for it (a rail's
averages count). A range narrower than its minimum is widened to it, centred on the
recorded values and moved inside the physical limits: loads to :data:`MIN_LOAD_SPAN_PCT`
percentage points, temperatures to :data:`MIN_TEMP_SPAN_C`, rails to
:data:`MIN_RAIL_SPAN` of their value (at least :data:`MIN_RAIL_SPAN_MW`), RAM and swap in
use to :data:`MIN_MEMORY_SPAN` of the total. Clocks are never widened.

What stays as recorded: totals, ``lfb``, IRAM, ``cached``, a fixed sensor (``PMIC``,
``-256C``), an ``off`` engine, a GPU whose clocks are all 0 (power-gated), a rail at 0 mW
in every line, a clock that is the same in every line (as under ``jetson_clocks``), and
a core ``off`` in every line. A core goes ``off`` and back (with the load) only where the
recorded lines show it both ways.

What it does not: choose the template, keep time or parse lines.
"""
from __future__ import annotations

import math
import random
import re
from fractions import Fraction
from typing import Callable, Dict, List, Optional, Sequence, Tuple

from tegrastats_api.loads import BoardLoad, clamp01
from tegrastats_api.summary import IGNORED_SENSORS

MIN_LOAD_SPAN_PCT = 20.0
MIN_TEMP_SPAN_C = 4.0
MIN_RAIL_SPAN = 0.2
MIN_RAIL_SPAN_MW = 50.0
MIN_MEMORY_SPAN = 0.02
MAX_TEMP_STEP_C = 0.75  # the most a temperature moves in one sample
OFF_TEMP_C = -256.0  # tegrastats' mark of a powered-off sensor
# The grids temperatures are printed on (tegrastats prints millidegrees, without zeros).
TEMP_GRIDS = tuple(Fraction(g) for g in ("1", "1/2", "1/4", "1/10", "1/20", "1/32", "1/1000"))
CLOCK_FORM_RE = re.compile(r"(?:(?P<usage>[0-9]+)%)?(?P<at>@)?(?:\[(?P<arr>[0-9,]+)\]|(?P<freq>[0-9]+))?$")
CORE_RE = re.compile(r"(?P<usage>[0-9]+)%(?:@(?P<freq>[0-9]+))?$")
GPU_NAME_RE = re.compile(r"GR3D[0-9]*(?:_FREQ)?$")
MEMORY_DOMAINS = frozenset(["SOC", "DDR", "VDDRQ", "VDDQ", "MSS", "EMC"])


class Span:
    """A closed range ``lo``..``hi``; :meth:`at` maps a level in [0, 1] onto it."""

    def __init__(self, lo: float, hi: float) -> None:
        self.lo, self.hi = lo, hi

    @classmethod
    def of(cls, values: Sequence[float], min_span: float = 0.0, floor: float = -math.inf,
           ceiling: float = math.inf) -> Span:
        """The recorded ``values``' range, widened to ``min_span`` inside floor..ceiling."""
        lo, hi = min(values), max(values)
        if hi - lo >= min_span:
            return cls(lo, hi)
        mid = (lo + hi) / 2.0
        lo, hi = mid - min_span / 2.0, mid + min_span / 2.0
        if lo < floor:
            lo, hi = floor, min(floor + min_span, ceiling)
        elif hi > ceiling:
            lo, hi = max(ceiling - min_span, floor), ceiling
        return cls(lo, hi)

    @property
    def fixed(self) -> bool:
        return self.lo == self.hi

    def at(self, level: float) -> float:
        return self.lo + (self.hi - self.lo) * clamp01(level)

    def whole(self, level: float) -> int:
        """:meth:`at`, rounded to a whole number inside the range."""
        return min(max(int(round(self.at(level))), math.ceil(self.lo)), math.floor(self.hi))


def _replace(match: re.Match[str], kind: str, values: Dict[str, str]) -> str:
    """The token's text with the named groups' text replaced by ``values``."""
    start = match.start(kind)
    text, pieces, pos = match.group(kind), [], 0
    for group, value in sorted(values.items(), key=lambda item: match.start(item[0])):
        if match.start(group) < 0:
            continue
        pieces += [text[pos:match.start(group) - start], value]
        pos = match.end(group) - start
    return "".join(pieces) + text[pos:]


class TokenWriter:
    """One token of the template; ``render`` writes its text for the current load."""

    def render(self, load: BoardLoad, rng: random.Random) -> str:  # pragma: no cover - abstract
        raise NotImplementedError


class LiteralToken(TokenWriter):
    """A token written as recorded (IRAM, a word the parser keeps in ``extra``)."""

    def __init__(self, text: str) -> None:
        self.text = text

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        return self.text


class MemoryToken(TokenWriter):
    """``RAM used/total`` or ``SWAP used/total``: the used part drifts; zero stays zero."""

    def __init__(self, match: re.Match[str], kind: str, used: Sequence[int], total: int) -> None:
        self.match, self.kind = match, kind
        self.span = Span.of(used, MIN_MEMORY_SPAN * total, 0.0, total) if any(used) else Span(0, 0)

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        level = load.ram if self.kind == "ram" else load.swap
        return _replace(self.match, self.kind, {self.kind + "_u": str(self.span.whole(level))})


class MtsToken(TokenWriter):
    """``MTS fg N% bg N%``: the Denver/Carmel cores' share follows the CPU load."""

    def __init__(self, match: re.Match[str], fg: Sequence[int], bg: Sequence[int]) -> None:
        self.match = match
        self.fg = Span.of(fg, MIN_LOAD_SPAN_PCT, 0.0, 100.0)
        self.bg = Span.of(bg, MIN_LOAD_SPAN_PCT, 0.0, 100.0)

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        fg = self.fg.whole(load.cpu + rng.gauss(0.0, 0.03))
        bg = self.bg.whole(load.cpu + rng.gauss(0.0, 0.03))
        return _replace(self.match, "mts", {"mts_fg": str(fg), "mts_bg": str(bg)})


def _temp_grid(values: Sequence[float]) -> Fraction:
    """The coarsest of :data:`TEMP_GRIDS` every recorded value is printed on."""
    for grid in TEMP_GRIDS:
        if all(abs(v - round(v / grid) * float(grid)) < 0.0015 for v in values):
            return grid
    return TEMP_GRIDS[-1]


def _degrees(ticks: int, grid: Fraction) -> str:
    """A temperature as tegrastats prints it: whole millidegrees, no trailing zeros."""
    milli = math.floor(ticks * grid * 1000)
    sign, milli = ("-" if milli < 0 else ""), abs(milli)
    if milli % 1000 == 0:
        return "%s%d" % (sign, milli // 1000)
    return ("%s%d.%03d" % (sign, milli // 1000, milli % 1000)).rstrip("0")


class TemperatureToken(TokenWriter):
    """``name@T C`` (or ``@T C/max C``): lags toward a level set by the board's heat.

    :meth:`advance` moves it (by at most :data:`MAX_TEMP_STEP_C`); :meth:`render` writes
    it. With ``peers`` (the ``tj`` junction sensor) it follows the hottest of them instead.
    """

    def __init__(self, match: re.Match[str], name: str, values: Sequence[float],
                 load: BoardLoad) -> None:
        self.match, self.name = match, name
        self.grid = _temp_grid(values)
        self.span = Span.of(values, MIN_TEMP_SPAN_C)
        self.max_step = max(1, int(MAX_TEMP_STEP_C / self.grid))
        lower = name.lower()
        self.fixed = lower in IGNORED_SENSORS or OFF_TEMP_C in values
        self.domain = "gpu" if "gpu" in lower and load.gpu_live else "cpu" if "cpu" in lower else ""
        self.peers: List[TemperatureToken] = []
        self.ticks = self._ticks(self._level(load))
        self.peak = self.ticks

    @property
    def celsius(self) -> float:
        return float(self.ticks * self.grid)

    def _level(self, load: BoardLoad) -> float:
        heat = load.heat
        if self.domain:
            heat = 0.5 * heat + 0.5 * (load.heat_gpu if self.domain == "gpu" else load.heat_cpu)
        return self.span.at(heat)

    def _ticks(self, celsius: float) -> int:
        lo, hi = math.ceil(self.span.lo / self.grid), math.floor(self.span.hi / self.grid)
        return min(max(int(round(celsius / self.grid)), lo), hi)

    def advance(self, load: BoardLoad, rng: random.Random) -> None:
        """One sample on: toward the heat's level (or the hottest peer), a little noise."""
        if self.peers:
            target = self._ticks(max(peer.celsius for peer in self.peers))
        else:
            target = self._ticks(self._level(load) + rng.gauss(0.0, 0.05))
        self.ticks += max(-self.max_step, min(self.max_step, target - self.ticks))
        self.peak = max(self.peak, self.ticks)

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        if self.fixed:
            return self.match.group("temp")
        return _replace(self.match, "temp", {"temp_v": _degrees(self.ticks, self.grid),
                                            "temp_max": _degrees(self.peak, self.grid)})


def _rail_driver(name: str, gpu_live: bool) -> Callable[[BoardLoad], float]:
    """The activity a rail's power follows, from the domains its name names."""
    parts = set(re.split(r"[_\W]+", name.upper()))
    picks: List[Callable[[BoardLoad], float]] = []
    if "GPU" in parts and gpu_live:
        picks.append(lambda load: load.gpu)
    if "CPU" in parts:
        picks.append(lambda load: load.cpu)
    if parts & MEMORY_DOMAINS:
        picks.append(lambda load: load.memory)
    if not picks:
        return lambda load: load.power
    return lambda load: sum(pick(load) for pick in picks) / len(picks)


class RailToken(TokenWriter):
    """``NAME cur/avg[/max]`` in mW (with or without the unit): power follows its domain."""

    def __init__(self, match: re.Match[str], name: str, values: Sequence[int], gpu_live: bool) -> None:
        self.match = match
        mid = (min(values) + max(values)) / 2.0
        self.span = Span.of(values, max(MIN_RAIL_SPAN * mid, MIN_RAIL_SPAN_MW), 0.0)
        self.fixed = not any(values)
        self.driver = _rail_driver(name, gpu_live)
        self.count, self.total, self.peak = 0, 0, 0

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        if self.fixed:
            return self.match.group("rail")
        current = self.span.whole(self.driver(load) + rng.gauss(0.0, 0.02))
        self.count, self.total, self.peak = self.count + 1, self.total + current, max(self.peak, current)
        average = int(round(self.total / self.count))  # tegrastats' average since it started
        return _replace(self.match, "rail", {"rail_c": str(current), "rail_a": str(average),
                                            "rail_x": str(self.peak)})


def _clock_values(text: str) -> Tuple[Optional[int], Optional[List[int]]]:
    """(usage %, [MHz...]) of a clock token's value; (None, None) for ``off``."""
    form = CLOCK_FORM_RE.match(text)
    if text == "off" or form is None:
        return None, None
    usage = None if form.group("usage") is None else int(form.group("usage"))
    freqs = form.group("arr") or form.group("freq")
    return usage, None if freqs is None else [int(f) for f in freqs.split(",")]


class ClockToken(TokenWriter):
    """EMC, GR3D (GPCs) or an engine: ``N%``, ``@F``, ``N%@F``, ``N%@[F,F]``, ``N``."""

    def __init__(self, match: re.Match[str], name: str, recorded: Sequence[str]) -> None:
        self.match, self.name = match, name
        self.form = CLOCK_FORM_RE.match(match.group("clk_v"))
        usage, freqs = _clock_values(match.group("clk_v"))
        rows = [_clock_values(text) for text in recorded]
        usages = [u for u, _ in rows if u is not None]
        self.usage = None if usage is None else Span.of(usages, MIN_LOAD_SPAN_PCT, 0.0, 100.0)
        self.freqs = None if freqs is None else [
            Span.of([f[i] for _, f in rows if f is not None and len(f) == len(freqs)])
            for i in range(len(freqs))]
        gated = self.freqs is not None and all(s.hi == 0 for s in self.freqs) and not any(usages)
        self.fixed = self.form is None or gated or (
            (self.usage is None or self.usage.fixed) and all(s.fixed for s in self.freqs or []))
        if name in ("EMC_FREQ", "EMC"):
            self.driver: Callable[[BoardLoad], float] = lambda load: load.memory
        elif GPU_NAME_RE.match(name):
            self.driver = lambda load: load.gpu
        else:
            self.driver = lambda load: load.engine

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        if self.fixed or self.form is None:
            return self.match.group("clk")
        level = clamp01(self.driver(load) + rng.gauss(0.0, 0.03))
        text = "" if self.usage is None else "%d%%" % self.usage.whole(level)
        text += "@" if self.form.group("at") else ""
        if self.freqs is not None:
            freqs = ",".join(str(s.whole(level)) for s in self.freqs)
            text += "[%s]" % freqs if self.form.group("arr") else freqs
        return _replace(self.match, "clk", {"clk_v": text})


def _cores(match: re.Match[str]) -> List[Optional[Tuple[int, Optional[int]]]]:
    """A ``CPU [..]`` token's cores: (usage %, MHz or None) or None for an offline core."""
    cores: List[Optional[Tuple[int, Optional[int]]]] = []
    shared = match.group("cpu_f")
    for entry in match.group("cpu_list").split(","):
        core = CORE_RE.match(entry.strip())
        freq = None if core is None else core.group("freq") or shared
        cores.append(None if core is None else (int(core.group("usage")), None if freq is None else int(freq)))
    return cores


def _clusters(rows: Sequence[List[Optional[Tuple[int, Optional[int]]]]], count: int) -> List[int]:
    """Each core's cluster: cores share one if their clocks were equal in every line."""
    cluster = list(range(count))
    for i in range(count):
        for j in range(i):
            both = [(row[i], row[j]) for row in rows if row[i] is not None and row[j] is not None]
            if both and all(a[1] == b[1] for a, b in both):  # type: ignore[index]
                cluster[i] = cluster[j]
                break
    return cluster


class CpuToken(TokenWriter):
    """``CPU [u%@F,...,off]`` (or ``cpu [u%,...]@F``): loads, clocks per cluster, hot-plug."""

    def __init__(self, match: re.Match[str], recorded: Sequence[re.Match[str]], rng: random.Random) -> None:
        self.match = match
        self.template = _cores(match)
        count = len(self.template)
        rows = [row for row in (_cores(m) for m in recorded) if len(row) == count]
        online = [core for row in rows for core in row if core is not None]
        self.usage = Span.of([u for u, _ in online] or [0], MIN_LOAD_SPAN_PCT, 0.0, 100.0)
        freqs = [f for _, f in online if f is not None]
        self.freq = Span.of(freqs) if freqs else None
        self.cluster = _clusters(rows, count)
        # a core goes off and back only if the recorded lines show it both ways
        self.plugged = [any(row[i] is not None for row in rows) for i in range(count)]
        self.hotplug = [any(row[i] is None for row in rows) and self.plugged[i] for i in range(count)]
        self.online = [core is not None for core in self.template]
        self.share = [rng.uniform(0.6, 1.4) for _ in range(count)]
        entries = match.group("cpu_list").split(",")
        self.off_text = next((e for e, c in zip(entries, self.template) if c is None), "off")

    def _plug(self, load: BoardLoad, rng: random.Random) -> None:
        for i, hotplug in enumerate(self.hotplug):
            if not hotplug or i == 0:
                self.online[i] = self.plugged[i]
            elif self.online[i] and load.cpu < 0.15 and rng.random() < 0.1:
                self.online[i] = False
            elif not self.online[i] and load.cpu > 0.3 and rng.random() < 0.5:
                self.online[i] = True

    def render(self, load: BoardLoad, rng: random.Random) -> str:
        self._plug(load, rng)
        levels = [clamp01(load.cpu * share + rng.gauss(0.0, 0.04)) for share in self.share]
        busiest: Dict[int, float] = {}
        for i, level in enumerate(levels):
            if self.online[i]:
                busiest[self.cluster[i]] = max(busiest.get(self.cluster[i], 0.0), level)
        shared = self.match.group("cpu_f") is not None
        entries = []
        for i, level in enumerate(levels):
            if not self.online[i]:
                entries.append(self.off_text)
            elif shared or self.freq is None:
                entries.append("%d%%" % self.usage.whole(level))
            else:
                entries.append("%d%%@%d" % (self.usage.whole(level), self.freq.whole(busiest[self.cluster[i]])))
        values = {"cpu_list": ",".join(entries)}
        if shared and self.freq is not None:
            values["cpu_f"] = str(self.freq.whole(max(busiest.values(), default=0.0)))
        return _replace(self.match, "cpu", values)
