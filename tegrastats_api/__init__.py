"""tegrastats-api: live NVIDIA Jetson health from ``tegrastats``, served over the network.

Public names: :func:`parse_line`, :class:`ParseError`, :class:`Snapshot` and, once the
server is in, :class:`Config` and :class:`TegrastatsServer`. Importing the package has
no side effects: the server modules are imported only when their names are used.

This module alone must stay parseable by Python 2.7, 3.6 and 3.7 (no annotations, no
``from __future__ import annotations``, no f-strings): it is what an old ``python3``
runs first, and its version check turns that into one line instead of a SyntaxError
traceback from the modules below.
"""
import sys

if sys.version_info < (3, 8):  # noqa: UP036 - JetPack 4's python3 is 3.6: say so in one line
    sys.exit(
        "tegrastats-api needs Python 3.8 or newer; this is Python %d.%d.%d (%s). On JetPack 4 "
        "(Ubuntu 18.04): sudo apt install python3.8 python3.8-venv, then packaging/install.sh "
        "(it finds python3.8 by itself)." % (tuple(sys.version_info[:3]) + (sys.executable or "python",))
    )

__version__ = "0.1.0"

from typing import Any  # noqa: E402, F401 - after the version check; used by the type comment below

from tegrastats_api.parser import ParseError, parse_line  # noqa: E402
from tegrastats_api.snapshot import Snapshot  # noqa: E402

__all__ = ["__version__", "ParseError", "Snapshot", "parse_line", "Config", "TegrastatsServer"]

_LAZY = {"Config": "tegrastats_api.settings", "TegrastatsServer": "tegrastats_api.server"}


def __getattr__(name):  # type: (str) -> Any
    """Import the server side only when ``Config`` or ``TegrastatsServer`` is asked for."""
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError("module 'tegrastats_api' has no attribute %r" % name)
    import importlib

    return getattr(importlib.import_module(module), name)
