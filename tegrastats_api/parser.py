"""Parse one line of ``tegrastats`` output into a :class:`~tegrastats_api.snapshot.Snapshot`.

What it does: a pure function, :func:`parse_line`, that reads every token form that
tegrastats prints (docs/API.md sections 1, 2 and 4) by its shape, never by its position,
and keeps any token it does not understand verbatim in ``extra``. What it does not: I/O,
clocks, logging, or guessing: a value that is not printed stays ``None``.

One real line per supported format (ids of tests/fixtures/tegrastats/samples.tsv):

* TX1, old home-directory tool, L4T 24/28.1 (#17)::

    RAM 3691/3983MB (lfb 3x2MB) SWAP 2780/8192MB (cached 284MB) cpu [0%,0%,0%,0%]@1734 EMC 0%@1600 APE 25 GR3D 0%@998

* Nano, JetPack 4, root: IRAM, ``%@F``, rails without unit (#27)::

    RAM 1180/3965MB (lfb 1x2MB) SWAP 149/1024MB (cached 7MB) IRAM 0/252kB(lfb 252kB) CPU [30%@1036,...] EMC_FREQ 10%@1600 GR3D_FREQ 0%@76 NVENC 716 NVDEC 716 APE 25 PLL@57C ... POM_5V_IN 4520/4680

* TX2, ``off`` cores, MTS (#26 / #6)::

    ... CPU [2%@345,off,off,off,off,off] EMC_FREQ 13%@40 GR3D_FREQ 0%@114 APE 150 MTS fg 0% bg 0% ...

* AGX Orin, JetPack 5.0: timestamp, ``GR3D2_FREQ``, ``-256C``, duplicate ``NC`` rails (#57)::

    10-16-2023 10:59:22 RAM 1205/30623MB ... GR3D_FREQ 0%@114 GR3D2_FREQ 0%@114 NVJPG1 729 VIC_FREQ 729 APE 233 CV0@-256C ... NC 0mW/0mW

* AGX Orin, JetPack 6: GPC array, engine block with ``off`` (#8)::

    11-04-2025 01:46:53 RAM 7822/62841MB (lfb 73x4MB) ... GR3D_FREQ 31%@[305,305] NVENC off ... VDD_GPU_SOC 3188mW/3188mW

* Automotive Orin: ``EMC_FREQ @F`` and the ``*_LOAD`` family (#11)::

    ... EMC_FREQ @3199 GR3D_FREQ 99%@1274 GR3D2_FREQ 99%@1274 NVENC_LOAD 7% ...

* AGX Thor, JetPack 7.2: ``@[F,F,F]``, ``NAME_FREQ @F``, ``cur/max`` temperatures, 3-value rails (#67)::

    ... GR3D_FREQ @[314,314,314] NVENC0_FREQ @1556 ... cpu@34.843C/34.843C ... VDD_GPU 4925mW/4925mW/4925mW
"""
from __future__ import annotations

import re
from typing import Dict, List, Optional, Tuple, TypeVar, Union

from tegrastats_api.snapshot import (
    CpuCore,
    Emc,
    Engine,
    Gpu,
    Iram,
    Lfb,
    Mts,
    Rail,
    Ram,
    Snapshot,
    Swap,
)

__all__ = ["ParseError", "parse_line"]


class ParseError(ValueError):
    """The text is not tegrastats output at all (empty, or no ``RAM`` token).

    ``line`` holds the offending text (truncated to 200 characters).
    """

    def __init__(self, message: str, line: str) -> None:
        super().__init__(message)
        self.line = line[:200]


# Numbers are bounded so that int() never sees thousands of digits (Python limits that).
# Only sensor readings may be printed below zero: a temperature (``-256C`` for a sensor that
# is off, ``-40C``) and any value of a power rail (``VDD_CPU_CV -398mW/-398mW``, seen on an
# AGX Orin without root, JetPack 6). Loads, clocks and sizes are counts and never negative:
# a minus sign there is not understood, and the token goes to ``extra`` as printed.
_N_DIGITS = 10
_N = r"[0-9]{1,%d}" % _N_DIGITS
_SIGNED = r"-?" + _N
_T = r"-?[0-9]{1,4}(?:\.[0-9]{1,6})?"
_NAME = r"[A-Z][A-Z0-9_]*"
_FREQS = _N + r"(?:," + _N + r")*"

TIMESTAMP_RE = re.compile(
    r"(?P<mo>[0-9]{2})-(?P<d>[0-9]{2})-(?P<y>[0-9]{4}) (?P<t>(?P<h>[0-9]{2}):(?P<mi>[0-9]{2}):(?P<s>[0-9]{2}))(?= |$)",
    re.ASCII,
)

# One alternative per token family; each must end at a space or the end of the line,
# otherwise the regex engine falls through to the next alternative (and finally to a
# bare word), so a malformed token never swallows its neighbours.
TOKEN_RE = re.compile(
    r" *(?:"
    r"(?P<ram>RAM (?P<ram_u>{N})/(?P<ram_t>{N})MB(?: \(lfb (?P<lfb_n>{N})x(?P<lfb_s>{N})(?P<lfb_unit>[kMG]B)\))?)"
    r"|(?P<swap>SWAP (?P<swap_u>{N})/(?P<swap_t>{N})MB(?: \(cached (?P<swap_c>{N})MB\))?)"
    r"|(?P<iram>IRAM (?P<iram_u>{N})/(?P<iram_t>{N})kB(?: ?\(lfb (?P<iram_l>{N})kB\))?)"
    r"|(?P<cpu>(?:CPU|cpu) \[(?P<cpu_list>[0-9%@,of ]*)\](?:@(?P<cpu_f>{N}))?)"
    r"|(?P<mts>MTS fg (?P<mts_fg>{N})% bg (?P<mts_bg>{N})%)"
    r"|(?P<temp>(?P<temp_n>[A-Za-z][A-Za-z0-9_-]*)@(?P<temp_v>{T})C(?:/(?P<temp_max>{T})C)?)"
    r"|(?P<rail>(?P<rail_n>{NAME}) (?P<rail_c>{S})(?:mW|(?=/))(?:/(?P<rail_a>{S})(?:mW)?(?:/(?P<rail_x>{S})(?:mW)?)?)?)"
    r"|(?P<clk>(?P<clk_n>{NAME}) (?P<clk_v>off|@\[{F}\]|@{N}|{N}%@\[{F}\]|{N}%@{N}|{N}%|{N}))"
    r"|(?P<word>[^ ]+)"
    r")(?= |$)".format(N=_N, S=_SIGNED, T=_T, NAME=_NAME, F=_FREQS),
    re.ASCII,
)

CLOCK_RE = re.compile(
    r"(?:(?P<usage>{N})%)?(?:@(?:\[(?P<arr>{F})\]|(?P<freq>{N})))?$".format(N=_N, F=_FREQS), re.ASCII
)
CPU_CORE_RE = re.compile(r"(?P<usage>{N})%(?:@(?P<freq>{N}))?$".format(N=_N), re.ASCII)
EMC_NAMES = frozenset(["EMC_FREQ", "EMC"])
GPU_NAMES = frozenset(["GR3D_FREQ", "GR3D"])
GPC_RE = re.compile(r"GR3D[0-9]+_FREQ$")
# The engines tegrastats prints on every known board (GRAMMAR.md 7.3), with an optional
# index and a _FREQ/_LOAD suffix. Any other name is kept verbatim in ``extra``.
ENGINE_RE = re.compile(
    r"(?P<key>(?:NVENC|NVDEC|NVJPG)[01]?|MSENC|VIC|OFA|NVDLA[01]|PVA[01]|APE)(?:_FREQ|_LOAD)?$"
)
_NAME_WORD_RE = re.compile(r"[A-Za-z][A-Za-z0-9_]*$")
# A value that may follow an unknown name: anything that does not itself look like a name.
_VALUE_WORD_RE = re.compile(r"(?![A-Z][A-Z0-9_]*$)[^ ]+$")

_V = TypeVar("_V")
# (usage %, frequencies in MHz or None when none printed, offline)
_Clock = Tuple[Optional[int], Optional[List[int]], bool]


def _put(mapping: Dict[str, _V], key: str, value: _V) -> None:
    """Insert ``key``; a repeated key gets ``_2``, ``_3``... in order of appearance."""
    if key not in mapping:
        mapping[key] = value
        return
    if key in mapping:
        n = 2
        while "%s_%d" % (key, n) in mapping:
            n += 1
        key = "%s_%d" % (key, n)
    mapping[key] = value


def _clock(text: str) -> Optional[_Clock]:
    """Read ``off``, ``N``, ``N%``, ``@F``, ``N%@F``, ``@[F,..]`` or ``N%@[F,..]``."""
    if text == "off":
        return None, None, True
    if text.isdigit():
        return None, [int(text)], False
    m = CLOCK_RE.match(text)  # TOKEN_RE admitted the text: ASCII digits and %@[,] only
    if m is None:  # pragma: no cover - TOKEN_RE admits only the forms above
        return None
    usage = None if m.group("usage") is None else int(m.group("usage"))
    if m.group("arr") is not None:
        freqs: Optional[List[int]] = [int(f) for f in m.group("arr").split(",")]
    elif m.group("freq") is not None:
        freqs = [int(m.group("freq"))]
    else:
        freqs = None
    return usage, freqs, False


def _cores(listing: str, shared_freq: Optional[str]) -> Optional[Tuple[CpuCore, ...]]:
    """``30%@1036,off,...`` (per-core frequency) or ``17%,13%`` with a shared ``@F``.

    An empty entry (NVIDIA documents ``CPU [X%,Y%, , ]@Z``) is an offline core. Returns
    None when an entry is malformed, so the token goes to ``extra`` whole.
    """
    shared = None if shared_freq is None else int(shared_freq)
    cores = []
    for i, entry in enumerate(listing.split(",")):
        entry = entry.strip()
        if entry in ("off", ""):
            cores.append(CpuCore(i, False))
            continue
        # The common forms ``N%@F`` and ``N%`` without the regex (the listing holds only
        # ASCII digits, ``%@,of`` and spaces: TOKEN_RE); anything else takes CPU_CORE_RE.
        usage, percent, rest = entry.partition("%")
        if percent and usage.isdigit() and len(usage) <= _N_DIGITS:
            if not rest:
                cores.append(CpuCore(i, True, int(usage), shared))
                continue
            if rest[0] == "@" and rest[1:].isdigit() and len(rest) <= _N_DIGITS + 1:
                cores.append(CpuCore(i, True, int(usage), int(rest[1:])))
                continue
        m = CPU_CORE_RE.match(entry)
        if m is None:
            return None
        freq = m.group("freq")
        cores.append(CpuCore(i, True, int(m.group("usage")), shared if freq is None else int(freq)))
    return tuple(cores)


def _temperature(text: str) -> Optional[float]:
    """Degrees Celsius, below zero as printed; ``-256`` is tegrastats' mark of a powered-off
    sensor. ``-0`` reads as ``0.0`` (JSON has no use for a negative zero)."""
    value = float(text)
    return None if value == -256 else value + 0.0


class _Line:
    """Accumulates the sections of one line while its tokens are read."""

    def __init__(self) -> None:
        self.ram: Optional[Ram] = None
        self.swap: Optional[Swap] = None
        self.iram: Optional[Iram] = None
        self.cores: Optional[Tuple[CpuCore, ...]] = None
        self.mts: Optional[Mts] = None
        self.emc: Optional[Emc] = None
        self.gpcs: List[Tuple[Optional[int], Optional[List[int]]]] = []
        self.temps: Dict[str, Optional[float]] = {}
        self.rails: Dict[str, Rail] = {}
        self.engines: Dict[str, Engine] = {}
        self.extra: Dict[str, str] = {}

    def unknown(self, name: str, value: str = "") -> None:
        _put(self.extra, name, value)

    def token(self, m: re.Match[str]) -> None:
        """Store one matched token in its section (or in ``extra``)."""
        kind = m.lastgroup
        if kind == "temp":  # the most frequent kinds first
            name, value = m.group("temp_n", "temp_v")
            _put(self.temps, name.lower(), _temperature(value))
        elif kind == "clk":
            self._clock_token(*m.group("clk_n", "clk_v"))
        elif kind == "rail":
            name, current, average, maximum = m.group("rail_n", "rail_c", "rail_a", "rail_x")
            _put(self.rails, name.lower(), Rail(int(current), None if average is None else int(average),
                                                None if maximum is None else int(maximum)))
        elif kind == "ram" and self.ram is None:
            used, total, lfb_n, lfb_s, lfb_unit = m.group("ram_u", "ram_t", "lfb_n", "lfb_s", "lfb_unit")
            lfb = None if lfb_n is None else Lfb(int(lfb_n), int(lfb_s), lfb_unit)
            self.ram = Ram(int(used), int(total), lfb)
        elif kind == "swap" and self.swap is None:
            used, total, cached = m.group("swap_u", "swap_t", "swap_c")
            self.swap = Swap(int(used), int(total), None if cached is None else int(cached))
        elif kind == "iram" and self.iram is None:
            used, total, lfb_kb = m.group("iram_u", "iram_t", "iram_l")
            self.iram = Iram(int(used), int(total), None if lfb_kb is None else int(lfb_kb))
        elif kind == "cpu" and self.cores is None:
            cores = _cores(*m.group("cpu_list", "cpu_f"))
            if cores is None:
                self._split_unknown(m.group("cpu"))
            else:
                self.cores = cores
        elif kind == "mts" and self.mts is None:
            self.mts = Mts(int(m.group("mts_fg")), int(m.group("mts_bg")))
        else:  # a bare word, or a second RAM/SWAP/IRAM/CPU/MTS block
            self._split_unknown(m.group(kind or "word"))

    def _split_unknown(self, text: str) -> None:
        name, _, value = text.partition(" ")
        self.unknown(name, value)

    def _clock_token(self, name: str, value: str) -> None:
        clock = _clock(value)
        if clock is None:  # pragma: no cover - see _clock
            self.unknown(name, value)
            return
        usage, freqs, off = clock
        engine = ENGINE_RE.match(name)
        if name in EMC_NAMES and self.emc is None and not off and (freqs is None or len(freqs) == 1):
            self.emc = Emc(usage, None if freqs is None else freqs[0])
        elif (name in GPU_NAMES and not self.gpcs) or (GPC_RE.match(name) and self.gpcs):
            if off:
                self.unknown(name, value)
            else:
                self.gpcs.append((usage, freqs))
        elif engine is not None and (freqs is None or len(freqs) == 1):
            freq = None if freqs is None else freqs[0]
            _put(self.engines, engine.group("key").lower(), Engine(not off, usage, freq))
        else:
            self.unknown(name, value)

    def gpu(self) -> Gpu:
        """GR3D_FREQ plus any separate GR3Dn_FREQ tokens, one entry per GPC in order."""
        if not self.gpcs:
            return Gpu()
        freqs: List[Optional[int]] = []
        for _usage, gpc_freqs in self.gpcs:
            freqs.extend(gpc_freqs if gpc_freqs is not None else [None])
        if all(f is None for f in freqs):
            freqs = []
        per_gpc = None
        if len(self.gpcs) > 1 and any(u is not None for u, _ in self.gpcs[1:]):
            per_gpc = tuple(u for u, _ in self.gpcs)
        return Gpu(self.gpcs[0][0], tuple(freqs), per_gpc)


def _source_time(m: re.Match[str]) -> Optional[str]:
    """``MM-DD-YYYY hh:mm:ss`` as ``YYYY-MM-DDThh:mm:ss``; None for an impossible date."""
    month, day, hour, minute, second = (int(m.group(k)) for k in ("mo", "d", "h", "mi", "s"))
    if not (1 <= month <= 12 and 1 <= day <= 31 and hour < 24 and minute < 60 and second < 61):
        return None
    return "%s-%s-%sT%s" % (m.group("y"), m.group("mo"), m.group("d"), m.group("t"))


def parse_line(
    line: Union[str, bytes],
    received_at: Optional[float] = None,
    *,
    source: Optional[str] = None,
) -> Snapshot:
    """Parse one tegrastats line.

    ``received_at`` (epoch seconds) and ``source`` are copied into the snapshot as given;
    with ``received_at`` None the document's ``timestamp`` is null. Tokens the parser
    does not understand go to ``Snapshot.extra``. Raises :class:`ParseError` only for
    text that is not tegrastats output: empty, not UTF-8, or without a ``RAM`` token.
    """
    if isinstance(line, bytes):
        try:
            line = line.decode("utf-8")
        except UnicodeDecodeError:
            raise ParseError("not UTF-8 text", repr(line)) from None
    text = " ".join(line.split())  # tabs, CR/LF and runs of spaces become one space
    if not text:
        raise ParseError("empty line", line)
    state = _Line()
    source_time = None
    pos = 0
    stamp = TIMESTAMP_RE.match(text)
    if stamp is not None:
        source_time = _source_time(stamp)
        if source_time is None:
            state.unknown(stamp.group(0))
        pos = stamp.end()
    pending_word: Optional[str] = None
    match, end = TOKEN_RE.match, len(text)
    while pos < end:
        m = match(text, pos)
        if m is None:  # pragma: no cover - the word alternative matches any non-space run
            break
        pos = m.end()
        if m.lastgroup == "word":
            word = m.group("word")
            if pending_word is not None and _VALUE_WORD_RE.match(word):
                state.unknown(pending_word, word)
                pending_word = None
                continue
            if pending_word is not None:
                state.unknown(pending_word)
            pending_word = None
            if _NAME_WORD_RE.match(word):
                pending_word = word
            else:
                state.unknown(word)
            continue
        if pending_word is not None:
            state.unknown(pending_word)
            pending_word = None
        state.token(m)
    if pending_word is not None:
        state.unknown(pending_word)
    if state.ram is None:
        raise ParseError("not a tegrastats line: no RAM token", line)
    return Snapshot(
        ram=state.ram,
        received_at=received_at,
        source=source,
        source_time=source_time,
        cores=state.cores or (),
        swap=state.swap,
        iram=state.iram,
        temperatures_c=state.temps,
        rails=state.rails,
        gpu=state.gpu(),
        emc=state.emc,
        engines=state.engines,
        mts=state.mts,
        extra=state.extra,
    )
