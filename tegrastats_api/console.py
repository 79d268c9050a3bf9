"""Render a snapshot document as a terminal screen for ``tegrastats-api monitor``.

What it does: :func:`format_snapshot` turns the schema-1 document into at most ``width``
columns of plain text: CPU per core, memory, GPU and EMC, engines, temperatures, power.
What it does not: any I/O or terminal control (``probe.monitor`` clears the screen).
"""
from __future__ import annotations

import textwrap
from typing import Any, Dict, List, Optional

Document = Dict[str, Any]
# Said first on the screen, as on the dashboard's badge: these figures are not the board's.
LABELS = {"simulator": "SIMULATED DATA", "replay": "REPLAYED DATA"}


def _num(value: Optional[float], unit: str = "", fmt: str = "%g") -> str:
    return "-" if value is None else (fmt % value) + unit


def _wrap(label: str, items: List[str], width: int) -> List[str]:
    if not items:
        return []
    # Items never break inside: their own spaces are non-breaking while wrapping.
    text = "  ".join(item.replace(" ", "\xa0") for item in items)
    lines = textwrap.wrap(text, width, initial_indent="%-6s" % label, subsequent_indent=" " * 6)
    return [line.replace("\xa0", " ") for line in lines]


def _cores(doc: Document) -> List[str]:
    return [
        "%d:%s" % (c["id"], "off" if not c["online"] else "%s%%@%s" % (_num(c["usage"]), _num(c["freq"])))
        for c in doc["cpu"]["cores"]
    ]


def _memory(doc: Document) -> List[str]:
    mem = doc["memory"]
    ram = mem["ram"]
    items = ["RAM %d/%d MB (%d%%)" % (ram["used"], ram["total"], 100 * ram["used"] // max(ram["total"], 1))]
    if mem["swap"]:
        items.append("SWAP %d/%d MB" % (mem["swap"]["used"], mem["swap"]["total"]))
    if mem["iram"]:
        items.append("IRAM %d/%d kB" % (mem["iram"]["used"], mem["iram"]["total"]))
    return items


def _gpu(doc: Document) -> List[str]:
    gpu, emc = doc["gpu"], doc["emc"]
    freqs = ",".join(_num(f) for f in gpu["freq"]) or "-"
    items = ["%s %s MHz" % (_num(gpu["usage"], "%"), freqs)]
    if emc:
        items.append("EMC %s @%s MHz" % (_num(emc["usage"], "%"), _num(emc["freq"])))
    return items


def _engines(doc: Document) -> List[str]:
    return [
        "%s %s" % (name, "off" if not e["online"] else " ".join(
            p for p in (_num(e["usage"], "%") if e["usage"] is not None else "",
                        _num(e["freq"], "MHz") if e["freq"] is not None else "") if p))
        for name, e in doc["engines"].items()
    ]


def format_snapshot(doc: Document, width: int = 80) -> str:
    """The document as lines no wider than ``width`` (at least 40)."""
    width = max(40, width)
    when = doc.get("source_time") or doc.get("timestamp") or "-"
    label = LABELS.get(doc.get("source") or "")
    lines = ["%stegrastats-api  source %s  %s" % (label + "  " if label else "", doc.get("source") or "-", when)]
    lines += _wrap("CPU", ["%s avg" % _num(doc["cpu"]["usage"], "%")] + _cores(doc), width)
    lines += _wrap("MEM", _memory(doc), width)
    lines += _wrap("GPU", _gpu(doc), width)
    lines += _wrap("ENG", _engines(doc), width)
    lines += _wrap("TEMP", ["%s %s" % (k, _num(v, "C")) for k, v in doc["temperature"].items()], width)
    lines += _wrap("POWER", [
        "%s %s" % (k, _num(r["current"], "mW")) for k, r in doc["power"].items()], width)
    return "\n".join(line[:width] for line in lines)
