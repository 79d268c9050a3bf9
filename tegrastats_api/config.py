"""Settings: the frozen :class:`Config` every other module receives.

This module holds the value type (and, with the CLI issue, the configargparse parser and
validation). It does no I/O at import and never configures logging.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional, Tuple

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 58090
DEFAULT_BOARD = "agx-orin"


@dataclass(frozen=True)
class Config:
    """Every setting of the server, with the contract's defaults.

    ``update_interval`` is in seconds (tegrastats gets it in ms); ``tegrastats`` is the
    executable name or path; ``simulate`` is a board name (or None); ``replay`` a file
    path (or None); ``cors_origins`` the allowed origins (``("*",)`` allows any).
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    debug: bool = False
    log_level: str = "INFO"
    max_connections: int = 10
    update_interval: float = 1.0
    tegrastats: str = "tegrastats"
    simulate: Optional[str] = None
    replay: Optional[str] = None
    cors_origins: Tuple[str, ...] = ("*",)
    auth_token: Optional[str] = None
    history_size: int = 300

    @property
    def interval_ms(self) -> int:
        """The sample interval in whole milliseconds, as tegrastats' ``--interval`` takes it."""
        return max(1, int(round(self.update_interval * 1000)))
