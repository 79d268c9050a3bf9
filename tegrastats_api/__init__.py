"""tegrastats-api: live NVIDIA Jetson health from ``tegrastats``, served over the network.

Public names: :func:`parse_line`, :class:`ParseError`, :class:`Snapshot` and, once the
server is in, :class:`Config` and :class:`TegrastatsServer`. Importing the package has
no side effects: the server modules are imported only when their names are used.
"""
from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

from tegrastats_api.parser import ParseError, parse_line
from tegrastats_api.snapshot import Snapshot

__all__ = ["__version__", "ParseError", "Snapshot", "parse_line", "Config", "TegrastatsServer"]

_LAZY = {"Config": "tegrastats_api.config", "TegrastatsServer": "tegrastats_api.server"}


def __getattr__(name: str) -> Any:
    """Import the server side only when ``Config`` or ``TegrastatsServer`` is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'tegrastats_api' has no attribute %r" % name)
    import importlib

    return getattr(importlib.import_module(module), name)
