"""Render a snapshot document as a terminal screen for ``tegrastats-api monitor``.

What it does: :func:`render` turns the schema-1 document into lines of styled spans no
wider than ``width`` columns: a header (source, sample time, connection state), load
bars, CPU per core, memory, GPU and EMC, engines, temperatures and power. Lines wrap
between fields, never inside one (so never inside a number) unless a field alone is
wider than the screen, which then breaks at its own spaces. Temperatures and the input
power follow the dashboard's rules (:mod:`tegrastats_api.summary`): amber from 70 °C,
red from 85 °C, a fixed reading such as ``PMIC@100C`` greyed and marked ``(fixed)``, the
board's input power first. Without colour every span's style is ``""`` and warm, hot
and fixed sensors are marked in words instead.

What it does not: any I/O, terminal control or colour codes (``monitor`` maps the style
names of :data:`STYLES` to its terminal's attributes).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

from tegrastats_api.summary import input_power, temperature_level

Document = Dict[str, Any]
DASH = "\u2014"
LABEL_WIDTH = 6
MIN_BAR = 10  # columns inside a load bar, at least...
MAX_BAR = 40  # ...and at most
# Style names a span may carry; "" is the terminal's default.
STYLES = ("title", "ok", "warn", "hot", "dim", "good", "note")
MARKS = {"warn": " (warm)", "hot": " (hot)"}  # without colour
# Said first on the screen, as on the dashboard's badge: these figures are not the board's.
LABELS = {"simulator": "SIMULATED DATA", "replay": "REPLAYED DATA"}


class Span(NamedTuple):
    """A run of text in one style (one of :data:`STYLES`, or ``""``)."""

    text: str
    style: str = ""


Line = List[Span]
Field = List[Span]


class Header(NamedTuple):
    """What the header says besides the document: the server, the connection's state
    (``level`` is a style: ``ok``, ``warn`` or ``hot``), a hint such as ``q quits`` and the
    board (``/api/board`` in one line: model, JetPack, power mode, fans)."""

    target: str = ""
    status: str = ""
    level: str = ""
    hint: str = ""
    board: str = ""


def watts(mw: Optional[float]) -> str:
    """Power as the dashboard writes it: ``11.0 W``, ``4.61 W``, ``802 mW`` (below 1 W)."""
    if mw is None:
        return DASH
    if abs(mw) < 1000:
        return "%d mW" % round(mw)
    return ("%.1f W" if abs(mw) >= 10000 else "%.2f W") % (mw / 1000.0)


def celsius(value: Optional[float]) -> str:
    """``50.3 °C``: one decimal always; ``off`` for a sensor that reads nothing."""
    return "off" if value is None else "%.1f \u00b0C" % value


def megabytes(mb: float) -> str:
    return "%.1f GB" % (mb / 1024.0) if mb >= 1024 else "%d MB" % mb


def _pct(value: Optional[float]) -> str:
    return DASH if value is None else ("%d%%" % value if value == int(value) else "%.1f%%" % value)


def sample_time(doc: Document) -> str:
    """When the sample was read, ``YYYY-MM-DD hh:mm:ss`` local time, whatever the source;
    from ``source_time`` (board-local) only when ``timestamp`` is missing."""
    for key, pattern, utc in (("timestamp", "%Y-%m-%dT%H:%M:%S.%fZ", True),
                              ("source_time", "%Y-%m-%dT%H:%M:%S", False)):
        try:
            when = datetime.strptime(doc.get(key) or "", pattern)
        except ValueError:
            continue
        if utc:
            when = when.replace(tzinfo=timezone.utc).astimezone()
        return when.strftime("%Y-%m-%d %H:%M:%S")
    return DASH


# --- layout ------------------------------------------------------------------------------


def _words(field: Field) -> List[Field]:
    """A field too wide for a line, as one field per word (styles kept)."""
    words: List[Field] = [[]]
    for span in field:
        for i, part in enumerate(span.text.split(" ")):
            if i:
                words.append([])
            if part:
                words[-1].append(Span(part, span.style))
    return [w for w in words if w]


def _flow(label: str, fields: List[Field], width: int, indent: int = LABEL_WIDTH) -> List[Line]:
    """``label`` then the fields two spaces apart, a new line (indented) where the next
    field does not fit. A field wider than a line is broken at its spaces; a word wider
    than the room after the indent starts at column 0, and only one wider than the whole
    line (a long name on a very narrow terminal) is cut."""
    room = max(1, width - indent)
    laid: List[Tuple[str, Field]] = []  # (separator from the one before, field)
    for field in fields:
        if sum(len(s.text) for s in field) <= room:
            laid.append(("  ", field))
        else:
            laid.extend((" " if i else "  ", word) for i, word in enumerate(_words(field)))
    lines: List[Line] = []
    line: Line = [Span(label.ljust(indent), "title")] if indent else []
    used, empty = indent, True
    for sep, field in laid:
        size = sum(len(s.text) for s in field)
        if not empty and used + len(sep) + size > width:
            lines.append(line)
            line, used, empty = [Span(" " * indent)] if indent else [], indent, True
        if empty and used + size > width and used:
            if label and not lines:  # keep the label on a line of its own
                lines.append(line)
            line, used = [], 0
        if not empty:
            line.append(Span(sep))
            used += len(sep)
        for span in field:
            text = span.text[:max(0, width - used)]
            line.append(Span(text, span.style))
            used += len(text)
        empty = False
    if not empty:
        lines.append(line)
    return lines


def _bars(doc: Document, width: int) -> List[Line]:
    """Load bars (CPU, GPU, EMC, RAM, SWAP), as many per line as fit at ``MIN_BAR``."""
    mem = doc["memory"]
    items: List[Tuple[str, Optional[float]]] = [("CPU", doc["cpu"]["usage"]), ("GPU", doc["gpu"]["usage"])]
    if doc["emc"]:
        items.append(("EMC", doc["emc"]["usage"]))
    for name, part in (("RAM", mem["ram"]), ("SWAP", mem["swap"])):
        if part:
            items.append((name, 100.0 * part["used"] / part["total"] if part["total"] else None))
    fixed = 5 + 2 + 7  # "SWAP " "[" "]" " 100.0%"
    room = width - LABEL_WIDTH + 2
    per_line = max(1, min(len(items), room // (fixed + MIN_BAR + 2)))
    inner = max(1, min(MAX_BAR, room // per_line - 2 - fixed))
    fields = []
    for name, pct in items:
        filled = 0 if pct is None else int(round(inner * max(0.0, min(100.0, pct)) / 100.0))
        text = _pct(None if pct is None else round(pct, 1))
        fields.append([Span("%-5s[" % name), Span("|" * filled, "good"), Span(" " * (inner - filled) + "]"),
                       Span(text.rjust(7))])
    return _flow("LOAD", fields, width)


def _cores(doc: Document) -> List[Field]:
    fields = [[Span("load@MHz", "dim")]]
    for c in doc["cpu"]["cores"]:
        if not c["online"]:
            fields.append([Span("%d:off" % c["id"], "dim")])
        else:
            fields.append([Span("%d:%s@%s" % (c["id"], _pct(c["usage"]), DASH if c["freq"] is None else c["freq"]))])
    return fields


def _memory(doc: Document) -> List[Field]:
    mem = doc["memory"]
    ram = mem["ram"]
    fields = [[Span("RAM %s of %s" % (megabytes(ram["used"]), megabytes(ram["total"])))]]
    if ram.get("lfb"):
        lfb = ram["lfb"]
        fields.append([Span("lfb %dx%d%s" % (lfb["count"], lfb["size"], lfb["unit"]), "dim")])
    if mem["swap"]:
        fields.append([Span("SWAP %s of %s" % (megabytes(mem["swap"]["used"]), megabytes(mem["swap"]["total"])))])
    if mem["iram"]:
        fields.append([Span("IRAM %d kB of %d kB" % (mem["iram"]["used"], mem["iram"]["total"]))])
    return fields


def _gpu(doc: Document) -> List[Field]:
    gpu, emc = doc["gpu"], doc["emc"]
    freqs = ",".join(DASH if f is None else str(f) for f in gpu["freq"])
    fields = [[Span("GPU %s%s" % (_pct(gpu["usage"]), " %s MHz" % freqs if freqs else ""))]]
    if emc:
        fields.append([Span("EMC %s%s" % (_pct(emc["usage"]), "" if emc["freq"] is None else " %d MHz" % emc["freq"]))])
    return fields


def _engines(doc: Document) -> List[Field]:
    fields = []
    for name, e in doc["engines"].items():
        if not e["online"]:
            fields.append([Span("%s off" % name.upper(), "dim")])
            continue
        parts = [p for p in (None if e["usage"] is None else _pct(e["usage"]),
                             None if e["freq"] is None else "%d MHz" % e["freq"]) if p]
        fields.append([Span(" ".join([name.upper()] + (parts or ["on"])))])
    return fields


def _temperatures(doc: Document, colour: bool) -> List[Field]:
    fields = []
    for name, value in doc["temperature"].items():
        level = temperature_level(name, value)
        if level == "fixed":
            fields.append([Span("%s %s (fixed)" % (name, celsius(value)), "dim")])
        elif level == "off":
            fields.append([Span("%s off" % name, "dim")])
        else:
            mark = "" if colour else MARKS.get(level, "")
            fields.append([Span(name + " "), Span(celsius(value) + mark, level)])
    return fields


def _power(doc: Document) -> List[Field]:
    power = doc["power"]
    total, rail = input_power(power)
    if total is None:
        return []
    rule = rail if rail is not None else "sum of %d rail%s" % (len(power), "s" if len(power) > 1 else "")
    fields = [[Span("input ", "title"), Span(watts(total), "title"), Span(" (%s)" % rule, "dim")]]
    for name, r in power.items():
        if name != rail:
            fields.append([Span("%s %s" % (name, watts(r["current"])))])
    return fields


def _header(doc: Optional[Document], header: Header) -> List[Field]:
    label = LABELS.get((doc or {}).get("source") or "")
    fields = [[Span(label, "note")]] if label else []
    fields.append([Span("tegrastats-api", "title")])
    if header.target:
        fields.append([Span(header.target)])
    if header.board:
        fields.append([Span(header.board, "title")])
    if doc is not None:
        source = doc.get("source") or DASH
        fields.append([Span("source "), Span(source, "" if source == "tegrastats" else "note")])
        fields.append([Span(sample_time(doc))])
    if header.status:
        fields.append([Span(header.status, header.level)])
    if header.hint:
        fields.append([Span(header.hint, "dim")])
    return fields


def render(doc: Optional[Document], width: int, *, colour: bool = False, header: Optional[Header] = None,
           stale: bool = False) -> List[Line]:
    """The screen: lines of :class:`Span`, none longer than ``width`` (at least 10) columns.

    ``doc`` None shows the header alone (no sample yet); ``stale`` greys the figures (they
    are old: the connection is down); ``colour`` False leaves every style ``""``.
    """
    width = max(10, width)
    lines = _flow("", _header(doc, header or Header()), width, indent=0)
    if doc is not None:
        body = _bars(doc, width)
        for label, fields in (("CPU", _cores(doc)), ("MEM", _memory(doc)), ("GPU", _gpu(doc)),
                              ("ENG", _engines(doc)), ("TEMP", _temperatures(doc, colour)),
                              ("POWER", _power(doc))):
            body += _flow(label, fields, width)
        if stale:
            body = [[Span(s.text, "dim") for s in line] for line in body]
        lines += body
    if not colour:
        lines = [[Span(s.text) for s in line] for line in lines]
    return lines


def text_of(lines: List[Line]) -> str:
    """The lines as plain text, one per row."""
    return "\n".join("".join(s.text for s in line).rstrip() for line in lines)


def format_snapshot(doc: Document, width: int = 80) -> str:
    """The document's screen as plain text no wider than ``width`` columns."""
    return text_of(render(doc, width))
