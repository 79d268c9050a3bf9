"""``fields=`` projections of the snapshot document, for clients that show a few numbers.

What it does: :func:`parse_fields` checks a ``fields=cpu.usage,temperature.tj`` list
against the schema-1 document's shape (a sensor, rail or engine name is any name; a fixed
key must exist) and :func:`select` keeps only those paths, in the document's nested shape,
plus ``timestamp`` always. A path that reaches a list (``cpu.cores.usage``) applies the
rest of the path to every element.

What it does not: encode JSON or know about HTTP (the handlers turn :class:`FieldsError`
into a 400 answer naming the unknown paths).
"""
from __future__ import annotations

from typing import Any, Dict, List, Mapping, Optional, Sequence, Tuple

Path = Tuple[str, ...]
ANY = "*"  # a key chosen by the board: sensor, rail, engine or unknown token name

_RAIL = {"current": None, "average": None, "max": None, "unit": None}
_ENGINE = {"online": None, "usage": None, "freq": None}
SHAPE: Dict[str, Any] = {
    "schema": None,
    "timestamp": None,
    "source": None,
    "source_time": None,
    "cpu": {"usage": None, "cores": {"id": None, "online": None, "usage": None, "freq": None}},
    "memory": {
        "ram": {"used": None, "total": None, "unit": None, "lfb": {"count": None, "size": None, "unit": None}},
        "swap": {"used": None, "total": None, "cached": None, "unit": None},
        "iram": {"used": None, "total": None, "unit": None, "lfb": None},
    },
    "temperature": {ANY: None},
    "power": {ANY: _RAIL},
    "gpu": {"gr3d_freq": None, "usage": None, "freq": None, "usage_per_gpc": None},
    "emc": {"usage": None, "freq": None},
    "engines": {ANY: _ENGINE},
    "mts": {"fg": None, "bg": None},
    "extra": {ANY: None},
}
MAX_FIELDS = 64


class FieldsError(ValueError):
    """Unknown or malformed paths; ``paths`` names them."""

    def __init__(self, paths: Sequence[str]) -> None:
        super().__init__("unknown field%s: %s" % ("" if len(paths) == 1 else "s", ", ".join(paths)))
        self.paths = list(paths)


def _known(path: Path) -> bool:
    shape: Any = SHAPE
    for key in path:
        if not isinstance(shape, dict):
            return False
        if key in shape:
            shape = shape[key]
        elif ANY in shape:
            shape = shape[ANY]
        else:
            return False
    return True


def parse_fields(text: Optional[str]) -> Optional[Tuple[Path, ...]]:
    """``"cpu.usage, gpu"`` → ``(("cpu", "usage"), ("gpu",))``; None for no/empty ``fields``.

    Raises :class:`FieldsError` naming every path that the document cannot have.
    """
    if text is None or not text.strip():
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    paths = [tuple(name.split(".")) for name in names]
    bad = [name for name, path in zip(names, paths) if "" in path or not _known(path)]
    if len(names) > MAX_FIELDS:
        bad.append("(more than %d fields)" % MAX_FIELDS)
    if bad:
        raise FieldsError(bad)
    return tuple(dict.fromkeys(paths))  # keep order, drop repeats


def _merge(into: Dict[str, Any], key: str, value: Any) -> None:
    if isinstance(value, dict) and isinstance(into.get(key), dict):
        for k, v in value.items():
            _merge(into[key], k, v)
    else:
        into[key] = value


def _pick(value: Any, path: Path) -> Tuple[bool, Any]:
    """(found, projection of ``value`` along ``path``)."""
    if not path:
        return True, value
    if isinstance(value, list):
        picked = [_pick(item, path) for item in value]
        return True, [v for found, v in picked if found]
    if not isinstance(value, dict):
        return value is None, None  # a null section (swap, emc) stays null
    if path[0] not in value:
        return False, None
    found, inner = _pick(value[path[0]], path[1:])
    return found, {path[0]: inner} if found else None


def select(document: Mapping[str, Any], paths: Sequence[Path]) -> Dict[str, Any]:
    """The document cut down to ``paths`` (plus ``timestamp``), same nesting as the original."""
    out: Dict[str, Any] = {"timestamp": document.get("timestamp")}
    for path in paths:
        found, picked = _pick(document, path)
        if found and picked is not None:
            for key, value in picked.items():
                _merge(out, key, value)
    return out


def select_all(documents: List[Mapping[str, Any]], paths: Optional[Sequence[Path]]) -> List[Mapping[str, Any]]:
    """:func:`select` over a list (history); ``paths`` None keeps the documents whole."""
    return list(documents) if paths is None else [select(d, paths) for d in documents]
