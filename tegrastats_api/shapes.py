"""A faster :func:`~tegrastats_api.parser.parse_line` for a stream of lines of one shape.

What it does: :class:`LineParser` learns the *shape* of the lines it reads (the token
sequence, names and value forms: everything but the numbers) and compiles each shape it
has seen twice into one whole-line regex plus generated code (a builder of the snapshot,
and of its ``to_dict()`` document from the same numbers), so that the next line of that
shape costs one ``fullmatch`` and a few constructors. A board prints the same shape every
second; only its numbers change. The cache is a small LRU owned by the instance (the hub
holds one), never module state.

The rule: the fast path returns exactly what ``parse_line`` returns for the same arguments,
or declines (no match, an impossible timestamp date) and ``parse_line`` answers. It keeps
exactness because a shape's regex is ``TOKEN_RE`` itself along the path the template took:
names and every other character literal, each number as the same bounded group, so a text
it matches takes that same path through ``parse_line`` (the alternatives before it need
literal characters the shape does not have). Shapes holding anything unusual (a bare
word, a second ``RAM``, a CPU list with a gap) are not compiled: those lines take
``parse_line``.

What it does not: I/O, clocks, logging, or caching results (every line is parsed).
"""
from __future__ import annotations

import dataclasses
import functools
import operator
import re
from typing import Any, Callable, Dict, List, Optional, Set, Tuple, Union

from tegrastats_api import snapshot as _snapshot
from tegrastats_api.parser import (
    _N,
    _SIGNED,
    _T,
    EMC_NAMES,
    ENGINE_RE,
    GPC_RE,
    GPU_NAMES,
    TIMESTAMP_RE,
    TOKEN_RE,
    _put,
    _source_time,
    parse_line,
)
from tegrastats_api.snapshot import Snapshot

__all__ = ["LineParser"]

MAX_SHAPES = 32
Document = Dict[str, Any]
_Builder = Callable[..., Optional[Tuple[Snapshot, Tuple[int, ...]]]]
# The numbers of each token family and the pattern TOKEN_RE gives them.
_NUMBERS = {
    "ram": (("ram_u", _N), ("ram_t", _N), ("lfb_n", _N), ("lfb_s", _N), ("lfb_unit", "[kMG]B")),
    "swap": (("swap_u", _N), ("swap_t", _N), ("swap_c", _N)),
    "iram": (("iram_u", _N), ("iram_t", _N), ("iram_l", _N)),
    "mts": (("mts_fg", _N), ("mts_bg", _N)),
    "temp": (("temp_v", _T), ("temp_max", _T)),
    "rail": (("rail_c", _SIGNED), ("rail_a", _SIGNED), ("rail_x", _SIGNED)),
}
_INT_CODE_RE = re.compile(r"int\(g\[([0-9]+)\]\)")
_DIGITS_RE = re.compile(r"[0-9]+")
_CORE_RE = re.compile(r"off$|(?P<usage>{N})%(?P<at>@(?P<freq>{N}))?$".format(N=_N))
# parser._source_time's check on the two-digit fields, as strings ("01" <= month <= "12").
_TIME_CHECK = "'01' <= {mo} <= '12' and '01' <= {d} <= '31' and {h} < '24' and {mi} < '60' and {s} < '61'"


class _Unsupported(Exception):
    """The template holds something the fast path does not build (see the module docstring)."""


class _Shape:
    """The regex and builder code of one template line, built token by token."""

    def __init__(self) -> None:
        self.pieces: List[str] = []
        self.groups = 0
        self.source_time = "None"
        self.checks: List[str] = []
        self.ram: Optional[str] = None
        self.swap = "None"
        self.iram = "None"
        self.cores: Optional[str] = None
        self.core_vars: List[str] = []
        self.mts = "None"
        self.emc = "None"
        self.gpcs: List[Tuple[str, Optional[List[str]]]] = []
        self.temps: Dict[str, str] = {}
        self.rails: Dict[str, str] = {}
        self.engines: Dict[str, str] = {}
        self.extra: Dict[str, str] = {}
        self.statements: List[str] = []
        self.values: Dict[str, Tuple[type, Tuple[str, ...]]] = {}  # variable: (class, field codes)
        self.constants: Set[str] = set()  # variables made once, in the prelude
        self.prelude: List[str] = []

    def new(self, cls: type, *values: str) -> str:
        """Code making a ``cls`` from ``values`` (its fields in order); returns its variable.

        A frozen dataclass' ``__init__`` sets each field through ``object.__setattr__``; the
        builder sets the same attributes, in the same order, as one ``__dict__`` (about twice
        as fast). A class with a ``__post_init__`` or slots keeps its ``__init__``.
        """
        var = "v%d" % len(self.values)
        self.values[var] = (cls, values)
        # An object without numbers (an ``off`` core or engine) is made once, with the builder,
        # and shared by its snapshots: it is frozen.
        constant = all(v in ("None", "True", "False") or v.isdigit() or v in self.constants for v in values)
        if constant:
            self.constants.add(var)
        if hasattr(cls, "__post_init__") or hasattr(cls, "__slots__"):
            statement = "%s = %s(%s)" % (var, cls.__name__, ", ".join(values))
        else:
            names = [f.name for f in dataclasses.fields(cls)]
            pairs = ", ".join("%r: %s" % pair for pair in zip(names, values))
            statement = "%s = _new(%s); _set(%s, '__dict__', {%s})" % (var, cls.__name__, var, pairs)
        (self.prelude if constant else self.statements).append(statement)
        return var

    def group(self) -> str:
        """Count one more capturing group; returns the code reading it."""
        self.groups += 1
        return "g[%d]" % (self.groups - 1)

    def skeleton(self, m: re.Match[str], kind: str, spans: List[Tuple[str, str]]) -> Dict[str, str]:
        """The token's text with each number span (``(name, pattern)``) as a group."""
        start, end = m.span(kind)
        text, pos, piece, codes = m.string, start, [], {}
        for name, pattern in spans:
            if m.start(name) < 0:
                continue
            piece.append(re.escape(text[pos:m.start(name)]) + "(" + pattern + ")")
            codes[name] = self.group()
            pos = m.end(name)
        piece.append(re.escape(text[pos:end]))
        self.pieces.append("".join(piece))
        return codes

    def timestamp(self, stamp: re.Match[str]) -> None:
        if _source_time(stamp) is None:
            raise _Unsupported("impossible date")
        g = {k: self.group() for k in ("mo", "d", "y", "t", "h", "mi", "s")}  # in TIMESTAMP_RE's order
        self.pieces.append("([0-9]{2})-([0-9]{2})-([0-9]{4}) (([0-9]{2}):([0-9]{2}):([0-9]{2}))")
        self.checks.append(_TIME_CHECK.format(**g))
        self.source_time = '"%s-%s-%sT%s" % ({y}, {mo}, {d}, {t})'.format(**g)

    def token(self, m: re.Match[str]) -> None:
        kind = m.lastgroup or "word"
        if kind == "temp":
            codes = self.skeleton(m, kind, list(_NUMBERS[kind]))
            # parser._temperature inline: -256 (a sensor that is off) is None, -0.0 becomes 0.0
            var = "t%d" % len(self.statements)  # (v0, v1... name objects)
            self.statements.append("%s = float(%s)" % (var, codes["temp_v"]))
            _put(self.temps, m.group("temp_n").lower(), "None if {0} == -256 else {0} + 0.0".format(var))
        elif kind == "rail":
            c = self.skeleton(m, kind, list(_NUMBERS[kind]))
            values = ["int(%s)" % c[n] if n in c else "None" for n in ("rail_c", "rail_a", "rail_x")]
            _put(self.rails, m.group("rail_n").lower(), self.new(_snapshot.Rail, *values))
        elif kind == "clk":
            self.clock(m)
        elif kind == "ram" and self.ram is None:
            c = self.skeleton(m, kind, list(_NUMBERS[kind]))
            lfb = "None"
            if "lfb_n" in c:
                lfb = self.new(_snapshot.Lfb, "int(%s)" % c["lfb_n"], "int(%s)" % c["lfb_s"], c["lfb_unit"])
            self.ram = self.new(_snapshot.Ram, "int(%s)" % c["ram_u"], "int(%s)" % c["ram_t"], lfb)
        elif kind in ("swap", "iram") and getattr(self, kind) == "None":
            c = self.skeleton(m, kind, list(_NUMBERS[kind]))
            values = ["int(%s)" % c[n] if n in c else "None" for n, _ in _NUMBERS[kind]]
            cls = _snapshot.Swap if kind == "swap" else _snapshot.Iram
            setattr(self, kind, self.new(cls, *values))
        elif kind == "mts" and self.mts == "None":
            c = self.skeleton(m, kind, list(_NUMBERS[kind]))
            self.mts = self.new(_snapshot.Mts, "int(%s)" % c["mts_fg"], "int(%s)" % c["mts_bg"])
        elif kind == "cpu" and self.cores is None:
            self.cpu(m)
        else:  # a bare word, a second RAM/SWAP/IRAM/CPU/MTS block
            raise _Unsupported(kind)

    def cpu(self, m: re.Match[str]) -> None:
        """``CPU [..]@F``: each entry's form is fixed by the shape (``_cores`` in the parser)."""
        pieces: List[str] = []
        numbers: List[Optional[Tuple[str, Optional[str]]]] = []  # (usage, freq) codes; None: off
        for entry in m.group("cpu_list").split(","):
            form = _CORE_RE.match(entry)
            if form is None:  # a gap, a space, or an entry _cores rejects
                raise _Unsupported("cpu list")
            if form.group("usage") is None:
                pieces.append("off")
                numbers.append(None)
            elif form.group("at") is None:
                pieces.append("(%s)%%" % _N)
                numbers.append(("int(%s)" % self.group(), None))
            else:
                pieces.append("(%s)%%@(%s)" % (_N, _N))
                numbers.append(("int(%s)" % self.group(), "int(%s)" % self.group()))
        shared, tail = "None", r"\]"
        if m.start("cpu_f") >= 0:  # after the entries, as in the regex
            shared, tail = "int(%s)" % self.group(), r"\]@(%s)" % _N
        cores = []
        for i, number in enumerate(numbers):
            if number is None:
                cores.append(self.new(_snapshot.CpuCore, str(i), "False", "None", "None"))
            else:
                usage, freq = number
                cores.append(self.new(_snapshot.CpuCore, str(i), "True", usage, shared if freq is None else freq))
        self.pieces.append(re.escape(m.string[m.start("cpu"):m.start("cpu_list")]) + ",".join(pieces) + tail)
        self.cores = "(%s,)" % ", ".join(cores)
        self.core_vars = cores

    def clock(self, m: re.Match[str]) -> None:
        """A ``NAME value`` clock, in the branch ``_Line._clock_token`` takes for its form."""
        name, value = m.group("clk_n", "clk_v")
        whole = self.group()
        numbers = [self.group() for _ in _DIGITS_RE.findall(value)]
        parts = _DIGITS_RE.split(value)
        pattern = re.escape(parts[0]) + "".join("(%s)" % _N + re.escape(p) for p in parts[1:])
        self.pieces.append(re.escape(name + " ") + "(" + pattern + ")")
        off = value == "off"
        usage = "int(%s)" % numbers[0] if "%" in value else "None"
        freqs = [("int(%s)" % code) for code in (numbers[1:] if "%" in value else numbers)] or None
        engine = ENGINE_RE.match(name)
        if name in EMC_NAMES and self.emc == "None" and not off and (freqs is None or len(freqs) == 1):
            self.emc = self.new(_snapshot.Emc, usage, "None" if freqs is None else freqs[0])
        elif (name in GPU_NAMES and not self.gpcs) or (GPC_RE.match(name) and self.gpcs):
            if off:
                _put(self.extra, name, repr(value))
            else:
                self.gpcs.append((usage, freqs))
        elif engine is not None and (freqs is None or len(freqs) == 1):
            freq = "None" if freqs is None else freqs[0]
            _put(self.engines, engine.group("key").lower(),
                 self.new(_snapshot.Engine, repr(not off), usage, freq))
        else:
            _put(self.extra, name, whole)

    def gpu(self) -> str:
        """``_Line.gpu`` on the shape: which entries are None is fixed by the forms."""
        if not self.gpcs:
            return "_GPU0"
        freqs: List[str] = []
        for _usage, gpc_freqs in self.gpcs:
            freqs.extend(gpc_freqs if gpc_freqs is not None else ["None"])
        if all(f == "None" for f in freqs):
            freqs = []
        per_gpc = "None"
        if len(self.gpcs) > 1 and any(u != "None" for u, _ in self.gpcs[1:]):
            per_gpc = "(%s,)" % ", ".join(u for u, _ in self.gpcs)
        return self.new(_snapshot.Gpu, self.gpcs[0][0], "(%s)" % "".join(f + ", " for f in freqs), per_gpc)

    def document(self, gpu: str) -> str:
        """Code of ``Snapshot.to_dict()`` from the builder's field codes (mirroring each class'
        to_dict: tests/test_parser_shapes.py compares the two on every shape)."""
        def doc(var: str) -> str:
            if var == "None":
                return "None"
            if var == "_GPU0":
                return "{'gr3d_freq': None, 'usage': None, 'freq': []}"
            cls, v = self.values[var]
            if cls is _snapshot.Ram:
                return "{'used': %s, 'total': %s, 'unit': 'MB', 'lfb': %s}" % (v[0], v[1], doc(v[2]))
            if cls is _snapshot.Lfb:
                return "{'count': %s, 'size': %s, 'unit': s.ram.lfb.unit}" % v[:2]
            if cls is _snapshot.Swap:
                return "{'used': %s, 'total': %s, 'cached': %s, 'unit': 'MB'}" % v
            if cls is _snapshot.Iram:
                return "{'used': %s, 'total': %s, 'unit': 'kB', 'lfb': %s}" % v
            if cls is _snapshot.Rail:
                maximum = "" if v[2] == "None" else "'max': %s, " % v[2]
                return "{'current': %s, 'average': %s, %s'unit': 'mW'}" % (v[0], v[1], maximum)
            if cls is _snapshot.Gpu:
                per_gpc = "" if v[2] == "None" else ", 'usage_per_gpc': [%s]" % v[2][1:-1]
                return "{'gr3d_freq': %s, 'usage': %s, 'freq': [%s]%s}" % (v[0], v[0], v[1][1:-1], per_gpc)
            keys = {_snapshot.CpuCore: ("id", "online", "usage", "freq"), _snapshot.Engine: ("online", "usage", "freq"),
                    _snapshot.Emc: ("usage", "freq"), _snapshot.Mts: ("fg", "bg")}[cls]
            return "{%s}" % ", ".join("%r: %s" % pair for pair in zip(keys, v))

        def mapping(entries: Dict[str, str]) -> str:
            return "{%s}" % ", ".join("%r: %s" % (key, doc(var)) for key, var in entries.items())

        cores = [self.values[var][1] for var in self.core_vars]
        loads = [usage for _id, online, usage, _freq in cores if online == "True"]
        usage = "round((%s) / %d, 1)" % (" + ".join(loads), len(loads)) if loads else "None"
        mts = "" if self.mts == "None" else "'mts': %s, " % doc(self.mts)
        return ("{'schema': %d, 'timestamp': None if s.received_at is None else _format_timestamp(s.received_at), "
                "'source': s.source, 'source_time': s.source_time, 'cpu': {'usage': %s, 'cores': [%s]}, "
                "'memory': {'ram': %s, 'swap': %s, 'iram': %s}, 'temperature': dict(s.temperatures_c), "
                "'power': %s, 'gpu': %s, 'emc': %s, 'engines': %s, %s'extra': dict(s.extra)}"
                % (_snapshot.SCHEMA, usage, "".join(doc(var) + ", " for var in self.core_vars),
                   doc(self.ram or "None"), doc(self.swap), doc(self.iram), mapping(self.rails), doc(gpu),
                   doc(self.emc), mapping(self.engines), mts))

    def code(self) -> str:
        """The builder's source: ``build(g, received_at, source) -> (Snapshot, ints) or None``
        and ``document(s, n) -> dict``, the snapshot's ``to_dict()`` made from its numbers."""
        def mapping(entries: Dict[str, str]) -> str:
            return "{%s}" % ", ".join("%r: %s" % item for item in entries.items())

        assert self.ram is not None  # describe() returns no shape without RAM
        gpu = self.gpu()
        snap = self.new(
            Snapshot, self.ram, "received_at", "source", self.source_time, self.cores or "()", self.swap, self.iram,
            mapping(self.temps), mapping(self.rails), gpu, self.emc, mapping(self.engines), self.mts,
            mapping(self.extra))
        body = "\n".join("    " + statement for statement in self.statements + ["return %s, n" % snap])
        document = "    return " + self.document(gpu)
        # Every int() at once, in C (map over an itemgetter): a third of the builder's time otherwise.
        ints: Dict[str, str] = {}
        body, document = (_INT_CODE_RE.sub(lambda m: ints.setdefault(m.group(1), "n[%d]" % len(ints)), code)
                          for code in (body, document))
        lines = self.prelude + ["_pick = _itemgetter(%s)" % "".join(i + ", " for i in ints),
                 "def build(g, received_at, source):"]
        if self.checks:
            lines.append("    if not (%s):" % " and ".join(self.checks))
            lines.append("        return None")
        lines.append("    n = %s" % ("tuple(map(int, _pick(g)))" if len(ints) > 1 else "(int(_pick(g)),)"))
        return "\n".join(lines + [body, "def document(s, n):", document]) + "\n"


_NAMESPACE: Dict[str, Any] = {
    "_itemgetter": operator.itemgetter, "_new": object.__new__, "_set": object.__setattr__, "_GPU0": _snapshot.Gpu(),
    "_format_timestamp": _snapshot.format_timestamp,
    **{cls.__name__: cls for cls in (Snapshot, _snapshot.CpuCore, _snapshot.Lfb, _snapshot.Ram, _snapshot.Swap,
                                      _snapshot.Iram, _snapshot.Rail, _snapshot.Engine, _snapshot.Emc,
                                      _snapshot.Gpu, _snapshot.Mts)},
}


def describe(text: str) -> Optional[Tuple[str, str]]:
    """The shape of a normalised line: (regex source, builder source), or None when the
    line is not tegrastats output or holds a token the fast path does not build."""
    shape = _Shape()
    pos, end = 0, len(text)
    try:
        stamp = TIMESTAMP_RE.match(text)
        if stamp is not None:
            shape.timestamp(stamp)
            pos = stamp.end()
        while pos < end:
            m = TOKEN_RE.match(text, pos)
            if m is None:  # pragma: no cover - the word alternative matches any non-space run
                return None
            pos = m.end()
            shape.token(m)
    except _Unsupported:
        return None
    if shape.ram is None:
        return None
    return " ".join(shape.pieces), shape.code()


class _Compiled:
    """One compiled shape: its whole-line regex and builder."""

    __slots__ = ("fullmatch", "build", "document")

    def __init__(self, pattern: str, code: str) -> None:
        namespace = dict(_NAMESPACE)
        exec(compile(code, "<tegrastats shape>", "exec"), namespace)  # noqa: S102 - our own generated code
        self.fullmatch = re.compile(pattern, re.ASCII).fullmatch
        self.build: _Builder = namespace["build"]
        self.document: Callable[[Snapshot, Tuple[int, ...]], Document] = namespace["document"]


class LineParser:
    """:func:`~tegrastats_api.parser.parse_line` with a per-shape compiled fast path.

    Same arguments, results and errors as ``parse_line``. Keeps at most ``max_shapes``
    compiled shapes (least recently used out first) and the keys of as many shapes seen
    once: a shape is compiled when it is seen the second time, so that a line whose shape
    never repeats (a number inside an unknown word) costs no compilation.
    """

    def __init__(self, max_shapes: int = MAX_SHAPES) -> None:
        self.max_shapes = max_shapes
        self._shapes: List[Tuple[str, _Compiled]] = []  # most recently used first
        self._seen: Dict[str, None] = {}  # keys seen once, oldest first
        self.hits = 0  # lines a compiled shape answered

    def __len__(self) -> int:
        """How many compiled shapes are kept."""
        return len(self._shapes)

    def parse(self, line: Union[str, bytes], received_at: Optional[float] = None, *,
              source: Optional[str] = None) -> Snapshot:
        """Parse one tegrastats line, exactly as ``parse_line(line, received_at, source=source)``."""
        return self.parse_sample(line, received_at, source=source)[0]

    def parse_sample(self, line: Union[str, bytes], received_at: Optional[float] = None, *,
                     source: Optional[str] = None) -> Tuple[Snapshot, Optional[Callable[[], Document]]]:
        """:meth:`parse`, and a function making the snapshot's ``to_dict()`` document from the
        line's numbers (twice as fast), or None where ``to_dict`` is the way (a line that took
        ``parse_line``). The function holds the line's numbers: drop it once it is not needed.
        """
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                return parse_line(line), None  # parse_line raises its ParseError
        else:
            text = line
        # A shape admits single spaces between tokens only: a line one matches as it stands
        # is normalised already (parse_line's " ".join(line.split()) would not change it).
        text = text.rstrip()
        found = self._find(text)
        if found is None:
            normalised = " ".join(text.split())
            if normalised != text:
                text, found = normalised, self._find(normalised)
        if found is not None:
            i, m = found
            shape = self._shapes[i][1]
            built = shape.build(m.groups(), received_at, source)
            if built is not None:  # else the values take another branch of parse_line (a bad date)
                if i:
                    self._shapes.insert(0, self._shapes.pop(i))
                self.hits += 1
                return built[0], functools.partial(shape.document, *built)
        snapshot = parse_line(line, received_at, source=source)
        self._learn(text)
        return snapshot, None

    def _find(self, text: str) -> Optional[Tuple[int, re.Match[str]]]:
        """The first compiled shape (most recently used first) that matches ``text``."""
        for i, (_key, shape) in enumerate(self._shapes):
            m = shape.fullmatch(text)
            if m is not None:
                return i, m
        return None

    def _learn(self, text: str) -> None:
        """Note the shape of ``text`` (a line parse_line read); compile it on its second sighting."""
        described = describe(text)
        if described is None:
            return
        key = "\n".join(described)
        if any(k == key for k, _ in self._shapes):
            return
        if key not in self._seen:
            self._seen[key] = None
            if len(self._seen) > self.max_shapes:
                del self._seen[next(iter(self._seen))]
            return
        del self._seen[key]
        self._shapes.insert(0, (key, _Compiled(*described)))
        del self._shapes[self.max_shapes:]
