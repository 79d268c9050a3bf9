"""A faster :func:`~tegrastats_api.parser.parse_line` for a stream of lines of one shape.

What it does: :class:`LineParser` learns the *shape* of the lines it reads (the token
sequence, names and value forms: everything but the numbers) and compiles each shape it
has seen twice into one whole-line regex plus generated code (a builder of the snapshot,
of its ``to_dict()`` document from the same numbers, and of that document's JSON), so
that the next line of that shape costs one ``fullmatch`` and a few constructors. A board
prints the same shape every second; only its numbers change. The cache is a small LRU
owned by the instance (the hub holds one), never module state.
:meth:`LineParser.parse_deferred` goes one step further for the hub: a matched line is
checked and its rails' power read at once, and its snapshot, document and JSON are made
only when something asks for them (:class:`Parsed`; a shape's JSON maker itself is made
for the first JSON asked for).

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

import re
from typing import Any, Callable, Dict, List, Optional, Tuple, Union

from tegrastats_api.parser import parse_line
from tegrastats_api.shapecode import NAMESPACE, describe, payload_code
from tegrastats_api.snapshot import Snapshot

__all__ = ["LineParser", "Parsed"]

MAX_SHAPES = 32
# A line no shape can be compiled for (a bare word, an 11-digit number...) is described again
# only every RETRY_DECLINED lines of the same rough shape: describing costs three parses.
RETRY_DECLINED = 64
_DIGITS_RE = re.compile(r"[0-9]+")
Document = Dict[str, Any]


class _Compiled:
    """One compiled shape: its whole-line regex and the functions of its groups
    (:meth:`tegrastats_api.shapecode._Shape.code`)."""

    __slots__ = ("fullmatch", "valid", "build", "document", "power", "_code", "_namespace", "_payload")

    def __init__(self, pattern: str, code: str) -> None:
        namespace = dict(NAMESPACE)
        exec(compile(code, "<tegrastats shape>", "exec"), namespace)  # noqa: S102 - our own generated code
        self._code: Optional[str] = code  # until the JSON maker is made of it
        self._namespace = namespace
        self._payload: Optional[Callable[[re.Match[str], Optional[float], Optional[str]], bytes]] = None
        self.fullmatch = re.compile(pattern, re.ASCII).fullmatch
        self.valid: Callable[[re.Match[str]], bool] = namespace["valid"]
        self.build: Callable[[re.Match[str], Optional[float], Optional[str]], Snapshot] = namespace["build"]
        self.document: Callable[[re.Match[str], Optional[float], Optional[str]], Document] = namespace["document"]
        self.power: Callable[[re.Match[str]], Dict[str, int]] = namespace["power"]

    def payload(self, g: re.Match[str], received_at: Optional[float], source: Optional[str]) -> Optional[bytes]:
        """The document's compact JSON from the groups (:func:`shapecode.payload_code`, made
        and compiled at the first call); None if this shape has no JSON maker."""
        make = self._payload
        if make is None:
            if self._code is None:
                return None  # no JSON maker for this shape: the document is encoded
            code, self._code = payload_code(self._code), None
            if code is None:
                return None
            exec(compile(code, "<tegrastats shape>", "exec"), self._namespace)  # noqa: S102 - our generated code
            make = self._payload = self._namespace["payload"]
        return make(g, received_at, source)


class Parsed:
    """One line :func:`~tegrastats_api.parser.parse_line` accepts, as
    :meth:`LineParser.parse_deferred` read it: :meth:`snapshot` is what ``parse_line``
    returns and :meth:`document` its ``to_dict()``, both made when first asked for.

    A line a compiled shape matched holds the match (the line and where its numbers are)
    until then: the snapshot is built from it once, at the first :meth:`snapshot`, and each
    :meth:`document` is made from it without a snapshot. A line that took ``parse_line``
    holds its snapshot. ``power_mw`` (each rail's ``current_mw``) is read at once.
    """

    __slots__ = ("received_at", "source", "power_mw", "_shape", "_match", "_snapshot")

    def __init__(self, received_at: Optional[float], source: Optional[str], power_mw: Dict[str, int],
                 snapshot: Optional[Snapshot] = None, shape: Optional[_Compiled] = None,
                 match: Optional[re.Match[str]] = None) -> None:
        self.received_at = received_at
        self.source = source
        self.power_mw = power_mw
        self._snapshot = snapshot
        self._shape = shape
        self._match = match

    @property
    def compiled(self) -> bool:
        """True when a compiled shape read the line (its document skips the snapshot)."""
        return self._shape is not None

    def snapshot(self) -> Snapshot:
        """The line's snapshot, made at the first call; the same object after that."""
        if self._snapshot is None:
            assert self._shape is not None and self._match is not None  # given when no snapshot is
            self._snapshot = self._shape.build(self._match, self.received_at, self.source)
        return self._snapshot

    def document(self) -> Document:
        """The snapshot's ``to_dict()``: a new dict each call (callers may change it)."""
        if self._shape is None or self._match is None:
            return self.snapshot().to_dict()
        return self._shape.document(self._match, self.received_at, self.source)

    def json(self) -> Optional[bytes]:
        """The document's compact JSON (``json.dumps(document(), separators=(",", ":"))``,
        ASCII) made without the document, for a line a compiled shape matched; else None
        (the caller encodes :meth:`document`)."""
        if self._shape is None or self._match is None:
            return None
        return self._shape.payload(self._match, self.received_at, self.source)


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
        # rough shapes (the text without its digits) describe() declined: lines since then
        self._declined: Dict[str, int] = {}
        self.hits = 0  # lines a compiled shape answered

    def __len__(self) -> int:
        """How many compiled shapes are kept."""
        return len(self._shapes)

    def parse(self, line: Union[str, bytes], received_at: Optional[float] = None, *,
              source: Optional[str] = None) -> Snapshot:
        """Parse one tegrastats line, exactly as ``parse_line(line, received_at, source=source)``."""
        return self.parse_deferred(line, received_at, source=source).snapshot()

    def parse_deferred(self, line: Union[str, bytes], received_at: Optional[float] = None, *,
                       source: Optional[str] = None) -> Parsed:
        """:meth:`parse`, with the snapshot and its document made when first asked for
        (:class:`Parsed`); raises ``parse_line``'s ParseError at once."""
        if isinstance(line, bytes):
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError:
                text = ""  # no shape matches: parse_line below raises its ParseError
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
            if shape.valid(m):  # else the values take another branch of parse_line (a bad date)
                if i:
                    self._shapes.insert(0, self._shapes.pop(i))
                self.hits += 1
                return Parsed(received_at, source, shape.power(m), shape=shape, match=m)
        snapshot = parse_line(line, received_at, source=source)
        self._learn(text)
        return Parsed(received_at, source, {name: rail.current_mw for name, rail in snapshot.rails.items()},
                      snapshot=snapshot)

    def _find(self, text: str) -> Optional[Tuple[int, re.Match[str]]]:
        """The first compiled shape (most recently used first) that matches ``text``."""
        for i, (_key, shape) in enumerate(self._shapes):
            m = shape.fullmatch(text)
            if m is not None:
                return i, m
        return None

    def _learn(self, text: str) -> None:
        """Note the shape of ``text`` (a line parse_line read); compile it on its second sighting.

        A line whose shape cannot be compiled is not described again for the next
        ``RETRY_DECLINED`` lines of its rough shape (its text without digits): a board whose
        every line holds an unknown word pays for parse_line alone, and a shape declined for
        a passing value (an impossible date, a number too long) is tried again soon after.
        """
        rough = _DIGITS_RE.sub("", text)
        since = self._declined.get(rough)
        if since is not None and since < RETRY_DECLINED:
            self._declined[rough] = since + 1
            return
        described = describe(text)
        if described is None:
            self._declined.pop(rough, None)
            self._declined[rough] = 0  # newest last
            if len(self._declined) > self.max_shapes:
                del self._declined[next(iter(self._declined))]
            return
        self._declined.pop(rough, None)
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
