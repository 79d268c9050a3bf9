"""``fields=`` projections of the snapshot document, for clients that show a few numbers.

What it does: :func:`parse_fields` checks a ``fields=cpu.usage,temperature.tj`` list
against the schema-1 document's shape (a sensor, rail or engine name is any name; a fixed
key must exist) and returns it in canonical form (:func:`normalize`); :func:`select` keeps
only those paths, in the document's nested shape, plus ``timestamp`` always.

The rules (docs/API.md "fields="), the same for ``/api/status``, ``/api/history`` and ``/ws``:

- No path at all (``fields`` absent, ``fields=``, ``fields=,,,``, ``fields= , ``) means
  the whole document: :func:`parse_fields` returns None.
- The paths are merged into one tree before anything is picked, so paths that share a
  prefix share it in the answer: ``memory.ram.used,memory.ram.total`` gives one ``ram``
  with both keys. A path through a list applies the rest of the tree to each element, so
  ``cpu.cores.usage,cpu.cores.freq`` gives every core with both ``usage`` and ``freq``,
  and element *i* of the answer is element *i* of the document.
- A path that names a whole subtree covers every longer path under it, whatever their
  order: ``cpu,cpu.cores`` and ``cpu.cores.usage,cpu`` are both ``cpu``; repeats count once.
- Keys come in the order of their first mention, after ``timestamp``.

What it does not: encode JSON or know about HTTP (the handlers turn :class:`FieldsError`
into a 400 answer naming the unknown paths).
"""
from __future__ import annotations

from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

Path = Tuple[str, ...]
# A merged set of paths: key -> subtree, where None means "the whole value".
Tree = Dict[str, Optional["Tree"]]
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
    """``"cpu.usage, gpu"`` → ``(("cpu", "usage"), ("gpu",))``, in canonical form (:func:`normalize`).

    None when ``text`` names no path at all (None, ``""``, ``",,,"``, ``" , "``): the
    whole document. Empty items between commas are skipped. Raises :class:`FieldsError`
    naming every path that the document cannot have, and for more than
    :data:`MAX_FIELDS` paths.
    """
    if text is None:
        return None
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        return None
    paths = [tuple(name.split(".")) for name in names]
    bad = [name for name, path in zip(names, paths) if "" in path or not _known(path)]
    if len(names) > MAX_FIELDS:
        bad.append("(more than %d fields)" % MAX_FIELDS)
    if bad:
        raise FieldsError(bad)
    return normalize(paths)


def merge_paths(paths: Iterable[Path]) -> Tree:
    """The paths as one tree: shared prefixes merged, a whole subtree covering its longer paths."""
    root: Tree = {}
    for path in paths:
        node = root
        for depth, key in enumerate(path):
            if key in node and node[key] is None:
                break  # this key is already asked for whole
            if depth == len(path) - 1:
                node[key] = None  # whole value: drops any longer paths under it
                break
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            node = child
    return root


def _leaves(tree: Tree, prefix: Path) -> List[Path]:
    out: List[Path] = []
    for key, child in tree.items():
        if child is None:
            out.append(prefix + (key,))
        else:
            out.extend(_leaves(child, prefix + (key,)))
    return out


def normalize(paths: Iterable[Path]) -> Tuple[Path, ...]:
    """The canonical form of a list of paths: the leaves of :func:`merge_paths`, in order of
    first mention. Lists that select the same thing (repeats, ``cpu,cpu.usage`` and
    ``cpu``) have the same canonical form, so they share one cached view."""
    return tuple(_leaves(merge_paths(paths), ()))


def _project(value: Any, tree: Optional[Tree]) -> Tuple[bool, Any]:
    """(found, projection of ``value`` onto ``tree``)."""
    if tree is None:
        return True, value
    if isinstance(value, list):
        return True, [_element(item, tree) for item in value]
    if isinstance(value, dict):
        out: Dict[str, Any] = {}
        for key, child in tree.items():
            if key in value:
                found, inner = _project(value[key], child)
                if found:
                    out[key] = inner
        return bool(out), out
    return value is None, None  # a null section (swap, emc) stays null


def _element(item: Any, tree: Tree) -> Any:
    """One list element projected; one that holds none of the paths keeps its place as
    ``{}`` (or null), so that element *i* of the answer is element *i* of the document."""
    found, inner = _project(item, tree)
    if found:
        return inner
    return {} if isinstance(item, dict) else None


def project(document: Mapping[str, Any], tree: Tree) -> Dict[str, Any]:
    """The document cut down to a :func:`merge_paths` tree, plus ``timestamp`` (first)."""
    out: Dict[str, Any] = {"timestamp": document.get("timestamp")}
    _found, picked = _project(document if isinstance(document, dict) else dict(document), tree)
    out.update(picked)
    return out


def select(document: Mapping[str, Any], paths: Sequence[Path]) -> Dict[str, Any]:
    """The document cut down to ``paths`` (plus ``timestamp``), same nesting as the original."""
    return project(document, merge_paths(paths))


def select_all(documents: List[Mapping[str, Any]], paths: Optional[Sequence[Path]]) -> List[Mapping[str, Any]]:
    """:func:`select` over a list (history); ``paths`` None keeps the documents whole."""
    if paths is None:
        return list(documents)
    tree = merge_paths(paths)
    return [project(d, tree) for d in documents]
