"""Value types for one tegrastats sample, and their JSON document (schema 1).

What it does: holds a parsed sample in frozen dataclasses whose attribute names carry
their units (``used_mb``, ``freq_mhz``, ``current_mw``), and turns it into the public
document of docs/API.md section 1 with :meth:`Snapshot.to_dict`.

What it does not: parse text (see :mod:`tegrastats_api.parser`), read a clock or do
I/O. ``None`` always means "not printed / not available", never 0.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Dict, List, Optional, Tuple

SCHEMA = 1


@dataclass(frozen=True)
class CpuCore:
    """One logical CPU as printed: ``off`` cores are offline with no load or frequency."""

    id: int
    online: bool
    usage_pct: Optional[int] = None
    freq_mhz: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"id": self.id, "online": self.online, "usage": self.usage_pct, "freq": self.freq_mhz}


@dataclass(frozen=True)
class Lfb:
    """Largest free block: ``count`` blocks of ``size`` ``unit`` (``MB`` or ``kB``)."""

    count: int
    size: int
    unit: str

    def to_dict(self) -> Dict[str, Any]:
        return {"count": self.count, "size": self.size, "unit": self.unit}


@dataclass(frozen=True)
class Ram:
    """RAM in MB."""

    used_mb: int
    total_mb: int
    lfb: Optional[Lfb] = None

    def to_dict(self) -> Dict[str, Any]:
        return {
            "used": self.used_mb,
            "total": self.total_mb,
            "unit": "MB",
            "lfb": self.lfb.to_dict() if self.lfb else None,
        }


@dataclass(frozen=True)
class Swap:
    """Swap in MB; ``cached_mb`` is None when the line prints no ``(cached ..)``."""

    used_mb: int
    total_mb: int
    cached_mb: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"used": self.used_mb, "total": self.total_mb, "cached": self.cached_mb, "unit": "MB"}


@dataclass(frozen=True)
class Iram:
    """IRAM of Tegra X1 boards (TX1, Nano) in kB; ``lfb_kb`` is the largest free block."""

    used_kb: int
    total_kb: int
    lfb_kb: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"used": self.used_kb, "total": self.total_kb, "unit": "kB", "lfb": self.lfb_kb}


@dataclass(frozen=True)
class Rail:
    """One power rail in mW: current, running average and (JetPack 7.2) running max."""

    current_mw: int
    average_mw: Optional[int] = None
    max_mw: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {"current": self.current_mw, "average": self.average_mw}
        if self.max_mw is not None:
            out["max"] = self.max_mw
        out["unit"] = "mW"
        return out


@dataclass(frozen=True)
class Engine:
    """A clocked engine (NVENC, VIC, APE...): ``off`` engines are offline with nulls."""

    online: bool
    usage_pct: Optional[int] = None
    freq_mhz: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"online": self.online, "usage": self.usage_pct, "freq": self.freq_mhz}


@dataclass(frozen=True)
class Emc:
    """External memory controller: load in percent and frequency in MHz."""

    usage_pct: Optional[int] = None
    freq_mhz: Optional[int] = None

    def to_dict(self) -> Dict[str, Any]:
        return {"usage": self.usage_pct, "freq": self.freq_mhz}


@dataclass(frozen=True)
class Gpu:
    """The iGPU: GR3D load (percent) and one frequency (MHz) per GPC.

    ``usage_per_gpc`` is set only when a separate ``GR3D2_FREQ`` token prints its own
    percent (Orin on JetPack 5.0-5.1.1).
    """

    usage_pct: Optional[int] = None
    freq_mhz: Tuple[Optional[int], ...] = ()
    usage_per_gpc: Optional[Tuple[Optional[int], ...]] = None

    def to_dict(self) -> Dict[str, Any]:
        out: Dict[str, Any] = {
            "gr3d_freq": self.usage_pct,
            "usage": self.usage_pct,
            "freq": list(self.freq_mhz),
        }
        if self.usage_per_gpc is not None:
            out["usage_per_gpc"] = list(self.usage_per_gpc)
        return out


@dataclass(frozen=True)
class Mts:
    """Denver/Carmel MTS foreground and background load in percent (TX2, Xavier)."""

    fg_pct: int
    bg_pct: int

    def to_dict(self) -> Dict[str, Any]:
        return {"fg": self.fg_pct, "bg": self.bg_pct}


def format_timestamp(epoch_s: float) -> str:
    """``epoch_s`` as UTC ISO 8601 with milliseconds and ``Z``: ``2025-10-03T04:54:14.408Z``."""
    moment = datetime.fromtimestamp(epoch_s, tz=timezone.utc)
    if 1000 <= moment.year:  # what strftime writes, at a third of its cost (%Y pads no year below 1000)
        return "%d-%02d-%02dT%02d:%02d:%02d.%03dZ" % (moment.year, moment.month, moment.day, moment.hour,
                                                      moment.minute, moment.second, moment.microsecond // 1000)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (moment.microsecond // 1000)


@dataclass(frozen=True)
class Snapshot:
    """One tegrastats sample.

    ``received_at`` is when the line was read (epoch seconds, None when unknown),
    ``source`` what produced it (``tegrastats``, ``simulator``, ``replay``), and
    ``source_time`` the time tegrastats printed (``YYYY-MM-DDThh:mm:ss``, board-local,
    no zone). Mappings keep the order in which the line printed their entries.
    """

    ram: Ram
    received_at: Optional[float] = None
    source: Optional[str] = None
    source_time: Optional[str] = None
    cores: Tuple[CpuCore, ...] = ()
    swap: Optional[Swap] = None
    iram: Optional[Iram] = None
    temperatures_c: Dict[str, Optional[float]] = field(default_factory=dict)
    rails: Dict[str, Rail] = field(default_factory=dict)
    gpu: Gpu = Gpu()
    emc: Optional[Emc] = None
    engines: Dict[str, Engine] = field(default_factory=dict)
    mts: Optional[Mts] = None
    extra: Dict[str, str] = field(default_factory=dict)

    @property
    def cpu_usage_pct(self) -> Optional[float]:
        """Mean load of the online cores, ``round(mean, 1)``; None when no core is online."""
        loads = [c.usage_pct for c in self.cores if c.online and c.usage_pct is not None]
        if not loads:
            return None
        return round(sum(loads) / len(loads), 1)

    def to_dict(self) -> Dict[str, Any]:
        """The schema-1 document of docs/API.md section 1 (a fresh, JSON-ready dict)."""
        # CpuCore, Rail (without max) and Engine.to_dict inline: a board has up to 14 cores and
        # 10 rails, and this runs once per sample the server sends (Sample.document in the hub)
        cores: List[Dict[str, Any]] = [
            {"id": core.id, "online": core.online, "usage": core.usage_pct, "freq": core.freq_mhz}
            for core in self.cores
        ]
        doc: Dict[str, Any] = {
            "schema": SCHEMA,
            "timestamp": None if self.received_at is None else format_timestamp(self.received_at),
            "source": self.source,
            "source_time": self.source_time,
            "cpu": {"usage": self.cpu_usage_pct, "cores": cores},
            "memory": {
                "ram": self.ram.to_dict(),
                "swap": self.swap.to_dict() if self.swap else None,
                "iram": self.iram.to_dict() if self.iram else None,
            },
            "temperature": dict(self.temperatures_c),
            "power": {
                name: {"current": rail.current_mw, "average": rail.average_mw, "unit": "mW"}
                if rail.max_mw is None else rail.to_dict()
                for name, rail in self.rails.items()
            },
            "gpu": self.gpu.to_dict(),
            "emc": self.emc.to_dict() if self.emc else None,
            "engines": {
                name: {"online": engine.online, "usage": engine.usage_pct, "freq": engine.freq_mhz}
                for name, engine in self.engines.items()
            },
        }
        if self.mts is not None:
            doc["mts"] = self.mts.to_dict()
        doc["extra"] = dict(self.extra)
        return doc
