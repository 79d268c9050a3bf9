"""Simulated tegrastats lines for ``--simulate BOARD``: a recorded board, brought to life.

What it does: :class:`SimulatedBoard` takes a board's recorded real lines
(``data/boards/*.txt``). The first one is the template: the new lines keep its tokens,
in its order and exact forms (``@`` temperatures, ``mW/mW`` or bare ``N/N`` rails,
``[usage%@MHz,...]`` cores, ``%@[MHz,MHz]`` GPCs...), and only the numbers change, within
the ranges of every recorded line (:mod:`tegrastats_api.simulated_tokens` says how each
token moves and which stay as recorded). Each ``next()`` advances a
:class:`~tegrastats_api.loads.BoardLoad` by one second and writes one line:

* CPU cores, GPU, engines, EMC and MTS loads follow their activity (slow drift, bursts);
  clocks follow the load of their core cluster (cores whose clocks were equal in every
  recorded line), GPU, engine or EMC;
* a rail's power follows the load of its domain (``GPU``, ``CPU``, ``SOC``/``DDR``...,
  else the whole board); its average is the running average, its max the running max;
* temperatures follow the board's power with a lag of tens of seconds and move at most
  ``MAX_TEMP_STEP_C`` per sample, on the grid the recorded values are printed on;
* RAM and swap in use drift slowly.

One line is one second of the board whatever the interval, so the curves look the same
at every ``--update-interval`` (a shorter one plays them faster).

What it does not: keep time (:class:`~tegrastats_api.replay.ReplaySource` sends one line
per interval and stamps it with the local time), read files, or parse lines into
snapshots: every line it writes is tegrastats text for
:func:`~tegrastats_api.parser.parse_line`, like tegrastats' own.
"""
from __future__ import annotations

import random
import re
import time
from typing import Dict, Iterator, List, Optional, Sequence, Tuple

from tegrastats_api.loads import BoardLoad
from tegrastats_api.parser import TIMESTAMP_RE, TOKEN_RE
from tegrastats_api.simulated_tokens import (
    GPU_NAME_RE,
    ClockToken,
    CpuToken,
    LiteralToken,
    MemoryToken,
    MtsToken,
    RailToken,
    TemperatureToken,
    TokenWriter,
)

STEP_S = 1.0  # the board's time per line, whatever the interval
TIMESTAMP_FORMAT = "%m-%d-%Y %H:%M:%S"

Key = Tuple[str, ...]


def _tokens(line: str) -> Tuple[Optional[str], List[Tuple[Key, re.Match[str]]]]:
    """(timestamp or None, [(key, match)]) of a line; keys number repeated names."""
    text = " ".join(line.split())
    stamp = TIMESTAMP_RE.match(text)
    pos = stamp.end() if stamp is not None else 0
    seen: Dict[Key, int] = {}
    out = []
    while pos < len(text):
        match = TOKEN_RE.match(text, pos)
        if match is None:  # pragma: no cover - the word alternative matches any non-space run
            break
        pos = match.end()
        kind = str(match.lastgroup)
        name = {"temp": "temp_n", "rail": "rail_n", "clk": "clk_n"}.get(kind)
        base: Key = (kind, match.group(name)) if name else (kind, match.group(kind))
        if kind in ("ram", "swap", "iram", "cpu", "mts"):
            base = (kind,)
        seen[base] = seen.get(base, 0) + 1
        out.append((base + (str(seen[base]),), match))
    return (stamp.group(0) if stamp else None), out


class SimulatedBoard(Iterator[str]):
    """Endless new tegrastats lines in the format and ranges of a board's recorded lines.

    ``lines`` are the board's recorded lines (the first is the template); ``rng`` drives
    everything (seed it to replay a run). Each line is :data:`STEP_S` of the board's
    life; ``interval_s`` only spaces the timestamps: a template with a timestamp gets the
    recorded one, advanced by ``interval_s`` per line (the replay source replaces it with
    the local time). Raises ValueError without lines or with an interval that is not
    positive.
    """

    def __init__(self, lines: Sequence[str], rng: random.Random, *, interval_s: float = 1.0) -> None:
        if not lines:
            raise ValueError("SimulatedBoard needs at least one recorded line")
        if interval_s <= 0:
            raise ValueError("interval_s must be positive, got %r" % (interval_s,))
        self._rng = rng
        self._interval_s = interval_s
        stamp, tokens = _tokens(lines[0])
        self._clock = time.mktime(time.strptime(stamp.strip(), TIMESTAMP_FORMAT)) if stamp else None
        recorded: Dict[Key, List[re.Match[str]]] = {}
        for line in lines:
            for key, match in _tokens(line)[1]:
                recorded.setdefault(key, []).append(match)
        clocks = {key: ClockToken(m, key[1], [r.group("clk_v") for r in recorded[key]])
                  for key, m in tokens if key[0] == "clk"}
        gpu_live = any(GPU_NAME_RE.match(c.name) and not c.fixed for c in clocks.values())
        self._load = BoardLoad(rng, gpu_live=gpu_live)
        self._slots = [clocks.get(key) or self._slot(key, m, recorded[key]) for key, m in tokens]
        # every temperature moves before any is written: ``tj`` (the junction) is the hottest
        sensors = [s for s in self._slots if isinstance(s, TemperatureToken) and not s.fixed]
        junction = [s for s in sensors if s.name.lower() == "tj"]
        for sensor in junction:
            sensor.peers = [s for s in sensors if s not in junction]
        self._sensors = [s for s in sensors if s not in junction] + junction

    def _slot(self, key: Key, match: re.Match[str], recorded: List[re.Match[str]]) -> TokenWriter:
        kind = key[0]
        if kind in ("ram", "swap"):
            used = [int(m.group(kind + "_u")) for m in recorded]
            return MemoryToken(match, kind, used, int(match.group(kind + "_t")))
        if kind == "cpu":
            return CpuToken(match, recorded, self._rng)
        if kind == "mts":
            return MtsToken(match, [int(m.group("mts_fg")) for m in recorded],
                            [int(m.group("mts_bg")) for m in recorded])
        if kind == "temp":
            values = [float(m.group(g)) for m in recorded for g in ("temp_v", "temp_max") if m.group(g)]
            return TemperatureToken(match, key[1], values, self._load)
        if kind == "rail":
            rail_values = [int(m.group(g)) for m in recorded for g in ("rail_c", "rail_a", "rail_x") if m.group(g)]
            return RailToken(match, key[1], rail_values, self._load.gpu_live)
        return LiteralToken(match.group(kind))  # IRAM, and words the parser keeps in ``extra``

    def __next__(self) -> str:
        """The next line: the load advanced by one step, every token written anew."""
        self._load.step(STEP_S)
        for sensor in self._sensors:
            sensor.advance(self._load, self._rng)
        text = " ".join(slot.render(self._load, self._rng) for slot in self._slots)
        if self._clock is None:
            return text
        self._clock += self._interval_s
        return time.strftime(TIMESTAMP_FORMAT, time.localtime(self._clock)) + " " + text
