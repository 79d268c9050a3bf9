"""The code of one line shape, for :class:`tegrastats_api.shapes.LineParser`.

What it does: :func:`describe` reads a normalised tegrastats line token by token, with the
parser's own ``TOKEN_RE``, and writes its *shape*: one whole-line regex (names and every
other character literal, each number as the bounded group ``TOKEN_RE`` gives it) and the
Python source of ``valid`` (the timestamp's date check ``parse_line`` makes), ``build``
(groups to the :class:`~tegrastats_api.snapshot.Snapshot` that ``parse_line`` makes of such a
line, following ``_Line``'s branches for the shape's forms), ``document`` (that snapshot's
``to_dict()`` from the same groups, without making the snapshot) and ``power`` (each rail's
``current_mw``, for the energy counter); :func:`payload_code` writes from that source a
fifth, ``payload`` (the document's compact JSON, the standard encoder's bytes, without
making the document). A shape holding
anything the builder does not make (a bare word, a second ``RAM``, a CPU list with a gap,
an impossible date) has no code: ``describe`` returns None.

What it does not: compile or cache (see :mod:`tegrastats_api.shapes`), I/O, clocks, logging.
"""
from __future__ import annotations

import ast
import dataclasses
import json
import operator
import re
from typing import Any, Dict, List, Optional, Set, Tuple

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
)
from tegrastats_api.snapshot import Snapshot

__all__ = ["NAMESPACE", "describe", "encode_standard", "payload_code"]

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
        self.temp_statements: List[str] = []  # the temperatures' floats, for build and document
        self.values: Dict[str, Tuple[type, Tuple[str, ...]]] = {}  # variable: (class, field codes)
        self.constants: Set[str] = set()  # variables made once, in the prelude
        self.prelude: List[str] = []

    def new(self, cls: type, *values: str) -> str:
        """Code making a ``cls`` from ``values`` (its fields in order); returns its variable.

        A frozen dataclass' ``__init__`` sets each field through ``object.__setattr__``; the
        builder stores the same attributes, in the same order, in the new object's
        ``__dict__`` (three times as fast). A class with a ``__post_init__`` or slots keeps
        its ``__init__``.
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
            stores = "".join("; d[%r] = %s" % pair for pair in zip(names, values))
            statement = "%s = _new(%s); d = %s.__dict__%s" % (var, cls.__name__, var, stores)
        (self.prelude if constant else self.statements).append(statement)
        return var

    def group(self) -> str:
        """Count one more capturing group; returns the code reading it (``g`` is the match:
        ``g[1]`` its first group, made into a string only when read)."""
        self.groups += 1
        return "g[%d]" % self.groups

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
            var = "t%d" % len(self.temp_statements)  # (v0, v1... name objects)
            self.temp_statements.append("%s = float(%s)" % (var, codes["temp_v"]))
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
        to_dict: tests/test_parser_shapes.py compares the two on every shape), reading the
        groups, ``received_at`` and ``source`` only: no snapshot is made for it."""
        def doc(var: str) -> str:
            if var == "None":
                return "None"
            if var == "_GPU0":
                return "{'gr3d_freq': None, 'usage': None, 'freq': []}"
            cls, v = self.values[var]
            if cls is _snapshot.Ram:
                return "{'used': %s, 'total': %s, 'unit': 'MB', 'lfb': %s}" % (v[0], v[1], doc(v[2]))
            if cls is _snapshot.Lfb:
                return "{'count': %s, 'size': %s, 'unit': %s}" % v
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
        return ("{'schema': %d, 'timestamp': None if received_at is None else _format_timestamp(received_at), "
                "'source': source, 'source_time': %s, 'cpu': {'usage': %s, 'cores': [%s]}, "
                "'memory': {'ram': %s, 'swap': %s, 'iram': %s}, 'temperature': %s, "
                "'power': %s, 'gpu': %s, 'emc': %s, 'engines': %s, %s'extra': %s}"
                % (_snapshot.SCHEMA, self.source_time, usage, "".join(doc(var) + ", " for var in self.core_vars),
                   doc(self.ram or "None"), doc(self.swap), doc(self.iram), _dict_code(self.temps),
                   mapping(self.rails), doc(gpu), doc(self.emc), mapping(self.engines), mts, _dict_code(self.extra)))

    def code(self) -> str:
        """The shape's source, four functions of the match ``g`` (``re.Match``): ``valid(g)``, False
        for a date ``parse_line`` refuses (its other branch then answers); and for valid
        groups ``build(g, received_at, source) -> Snapshot``, ``document(g, received_at,
        source) -> dict`` (that snapshot's ``to_dict()``, a new one each call) and
        ``power(g) -> {rail: current_mw}``. :func:`payload_code` makes the fifth from it."""
        assert self.ram is not None  # describe() returns no shape without RAM
        gpu = self.gpu()
        power = _dict_code({name: self.values[var][1][0] for name, var in self.rails.items()})
        snap = self.new(
            Snapshot, self.ram, "received_at", "source", self.source_time, self.cores or "()", self.swap, self.iram,
            _dict_code(self.temps), _dict_code(self.rails), gpu, self.emc, _dict_code(self.engines), self.mts,
            _dict_code(self.extra))
        body = "\n".join("    " + statement for statement in self.statements + ["return %s" % snap])
        document = "    return " + self.document(gpu)
        # Every int() at once, in C (map over an itemgetter): a third of the builder's time otherwise.
        ints: Dict[str, str] = {}
        body, document = (_INT_CODE_RE.sub(lambda m: ints.setdefault(m.group(1), "n[%d]" % len(ints)), code)
                          for code in (body, document))
        numbers = ["    n = %s" % ("tuple(map(int, _pick(g)))" if len(ints) > 1 else "(int(_pick(g)),)")]
        numbers += ["    " + statement for statement in self.temp_statements]
        lines = self.prelude + [
            "_pick = _itemgetter(%s)" % "".join(i + ", " for i in ints),
            "def valid(g):", "    return %s" % (" and ".join(self.checks) or "True"),
            "def build(g, received_at, source):", *numbers, body,
            _DOCUMENT_DEF, *numbers, document,
            "def power(g):", "    return " + power]
        return "\n".join(lines) + "\n"


def _dict_code(entries: Dict[str, str]) -> str:
    """Code of a dict literal of ``entries`` (key: value code): a new dict each time it runs
    (as ``to_dict``'s ``dict(...)`` copies are)."""
    return "{%s}" % ", ".join("%r: %s" % item for item in entries.items())


_DOCUMENT_DEF = "def document(g, received_at, source):"


def payload_code(code: str) -> Optional[str]:
    """The source of ``payload(g, received_at, source) -> bytes`` for a shape whose
    :meth:`_Shape.code` is ``code``: its document's compact JSON, the standard encoder's
    bytes, without making the document (:func:`_json_code`); None if the document's code
    holds what the template does not write (nothing :meth:`_Shape.document` makes).

    Made apart from the other four, at the first use, because only a server with clients
    needs it: a server nobody watches would keep about a quarter of a megabyte more for
    having compiled it (the parse and compile's peak, which the allocator keeps).
    """
    lines = code[code.index(_DOCUMENT_DEF):].split("\n")
    end = next(i for i, line in enumerate(lines) if line.startswith("    return "))
    try:
        json_code = _json_code(lines[end][len("    return "):])
    except _Unsupported:
        return None
    return "\n".join(["def payload(g, received_at, source):", *lines[1:end], "    return " + json_code]) + "\n"


# The standard encoder of documents (hub.encode_document's, without orjson): compact, ASCII.
encode_standard = json.JSONEncoder(separators=(",", ":")).encode
_encode_text = json.encoder.encode_basestring_ascii  # ... what it writes of a str


def _json_value(value: Any) -> str:
    """``encode_standard(value)`` of one value of a document; the common cases without the encoder
    object's call (a float in 0.4 of its time, a short string in 0.7)."""
    if value is None:
        return "null"
    kind = type(value)
    if kind is str:
        return _encode_text(value)
    if kind is int:
        return int.__repr__(value)
    if kind is float and value - value == 0.0:  # finite (NaN and the infinities: the encoder's words)
        return float.__repr__(value)
    return encode_standard(value)


def _json_code(document: str) -> str:
    """Code of the compact JSON bytes of the document the dict-literal code ``document``
    (from :meth:`_Shape.document`) makes, without making it: one ``%`` format of a template.

    The template is the document's structure in JSON (keys, constants, brackets, as the
    standard encoder writes them), and a field for each value the line gives: ``%d`` for the
    numbers read as ints (``n[i]``), :func:`_json_value` of anything else (the
    temperatures, the CPU's mean usage, the timestamp, the source, text of the line). The
    result is the standard encoder's bytes of that document (tests/test_parser_shapes.py
    compares them on every shape).
    """
    tree = ast.parse(document, mode="eval").body
    encoded = document.encode("utf-8")  # the nodes' column offsets count UTF-8 bytes
    pieces: List[str] = []
    values: List[str] = []

    def literal(value: Any) -> None:
        pieces.append(encode_standard(value).replace("%", "%%"))

    def walk(node: ast.expr) -> None:
        if isinstance(node, ast.Dict):
            keys = [key.value if isinstance(key, ast.Constant) else None for key in node.keys]
            if not all(isinstance(key, str) for key in keys) or len(set(keys)) != len(keys):
                raise _Unsupported("keys")  # parse_line's are text, each once (_put numbers a repeat)
            pieces.append("{")
            for i, (key, value) in enumerate(zip(keys, node.values)):
                pieces.append("," if i else "")
                literal(key)
                pieces.append(":")
                walk(value)
            pieces.append("}")
        elif isinstance(node, (ast.List, ast.Tuple)):
            pieces.append("[")
            for i, item in enumerate(node.elts):
                pieces.append("," if i else "")
                walk(item)
            pieces.append("]")
        elif isinstance(node, ast.Constant):
            literal(node.value)
        else:
            # the node's code (ast.get_source_segment, at a thousandth of its cost: it splits
            # the whole text into lines for every node; this text is one line)
            if node.lineno != 1 or node.end_lineno != 1:  # pragma: no cover - one line, as written
                raise _Unsupported("code")
            code = encoded[node.col_offset:node.end_col_offset].decode("utf-8")
            number = isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "n"
            pieces.append("%d" if number else "%s")
            values.append(code if number else "_json_value(%s)" % code)

    walk(tree)
    return "(%r %% (%s)).encode('ascii')" % ("".join(pieces), "".join(v + ", " for v in values))


# What the generated code refers to (each shape executes in a copy).
NAMESPACE: Dict[str, Any] = {
    "_itemgetter": operator.itemgetter, "_new": object.__new__, "_GPU0": _snapshot.Gpu(),
    "_format_timestamp": _snapshot.format_timestamp, "_json_value": _json_value,
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
