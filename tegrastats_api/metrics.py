"""Prometheus metrics of the newest sample: what ``GET /metrics`` serves.

What it does: :class:`SnapshotCollector` is a custom ``prometheus_client`` collector that
turns the hub's newest document into metric families at scrape time (no second sampling,
no copy of the data): one prefix (``jetson_``), base units (``_ratio`` 0 to 1 for percents,
``_hertz``, ``_bytes``, ``_celsius``, ``_watts``, ``_joules_total``, ``_seconds``) and one
label per dimension (``core``, ``gpc``, ``engine``, ``sensor``, ``rail``). A value the
document holds as null gives no sample; the family is still declared (HELP and TYPE), so
a name exists on every board once there is data. :func:`make_registry` gives each server
its own ``CollectorRegistry`` (never the global default one) and :func:`render` its
exposition text; :class:`Exporter` makes that registry at the first scrape, so that a server
nobody scrapes never imports ``prometheus_client``. :func:`guess_board` names the board for ``jetson_info``.

The board's own facts (:mod:`tegrastats_api.board`, read at most every few seconds) add
``model``, ``l4t`` and ``jetpack`` labels to ``jetson_info`` (empty when unknown),
``jetson_power_mode_info{id,name} 1`` and, per fan, ``jetson_fan_speed_ratio`` and
``jetson_fan_rpm``; they do not wait for a sample.

Before the first sample only the exporter's own families, ``jetson_info`` and the board's
families are served (still a 200: scrapers treat errors as a dead target). The energy counter is integrated by
the hub as samples arrive (:mod:`tegrastats_api.energy`), not here.

What it does not: serve HTTP (see :mod:`tegrastats_api.handlers`) or read any clock.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, List, Mapping, Optional, Sequence, Tuple

from tegrastats_api import __version__
from tegrastats_api.board import BoardFacts, BoardReader
from tegrastats_api.hub import ConnectionLimiter, Document, SnapshotHub
from tegrastats_api.summary import input_power_mw

if TYPE_CHECKING:  # prometheus_client is imported at the first scrape (Exporter), not at start-up
    from prometheus_client import CollectorRegistry
    from prometheus_client.core import Metric

log = logging.getLogger(__name__)

PREFIX = "jetson_"
PCT = 100  # percent per ratio of 1
HZ_PER_MHZ = 1_000_000
MW_PER_W = 1000
BYTES_PER = {"kB": 1024, "MB": 1024 * 1024}  # tegrastats' kB and MB are binary multiples

Row = Tuple[Sequence[str], Optional[float]]


def _scale(value: Optional[float], factor: float = 1, divisor: float = 1) -> Optional[float]:
    """``value * factor / divisor``, None for None (dividing last keeps 47 / 100 = 0.47 exact)."""
    return None if value is None else value * factor / divisor


def _family(kind: Any, name: str, help_text: str, labels: Sequence[str], rows: Iterable[Row]) -> Metric:
    """A ``kind`` family ``jetson_<name>``; rows whose value is None give no sample."""
    family = kind(PREFIX + name, help_text, labels=list(labels))
    for values, value in rows:
        if value is not None:
            family.add_metric(list(values), float(value))
    return family


def _gauge(name: str, help_text: str, labels: Sequence[str], rows: Iterable[Row]) -> Metric:
    """A gauge family ``jetson_<name>``."""
    from prometheus_client.core import GaugeMetricFamily

    return _family(GaugeMetricFamily, name, help_text, labels, rows)


def _counter(name: str, help_text: str, labels: Sequence[str], rows: Iterable[Row]) -> Metric:
    """A counter family ``jetson_<name>_total`` (``name`` without the suffix)."""
    from prometheus_client.core import CounterMetricFamily

    return _family(CounterMetricFamily, name, help_text, labels, rows)


def guess_board(document: Optional[Mapping[str, Any]]) -> str:
    """The board that printed ``document``, from its shape: ``agx-orin``, ``orin-nx``,
    ``orin-nano``, ``thor``, ``agx-xavier``, ``xavier-nx``, ``tx2``, ``tx1``, ``nano``,
    or ``unknown`` (also before the first sample). A best guess from the rail names,
    the core count, the sensors and IRAM; it never reads the hardware.
    """
    if document is None:
        return "unknown"
    rails = set(document["power"])
    sensors = set(document["temperature"])
    cores = len(document["cpu"]["cores"])
    if "pom_5v_in" in rails:
        return "nano"
    if "vdd_cpu_soc_mss" in rails or cores == 14:
        return "thor"
    if rails & {"vdd_gpu_soc", "vdd_cpu_cv"} or cores == 12:
        return "agx-orin"
    if rails & {"vddrq", "sys5v"} or ("mts" in document and cores == 8):
        return "agx-xavier"
    if sensors & {"bcpu", "mcpu"} or rails & {"vdd_wifi", "vdd_4v0_wifi"}:
        return "tx2"
    if "mts" in document and cores == 6:
        return "xavier-nx"
    if "tj" in sensors:  # Orin modules print a tj sensor; only the NX has 8 cores or a DLA
        return "orin-nx" if cores >= 8 or "nvdla0" in document["engines"] else "orin-nano"
    if document["memory"]["iram"] is not None and cores == 4:
        return "tx1" if "tdiode" in sensors or "vdd_in" in rails else "nano"
    return "unknown"


def cpu_families(document: Document) -> List[Metric]:
    cores = document["cpu"]["cores"]
    return [
        _gauge("cpu_online", "1 when the CPU core is online, 0 when tegrastats prints it off",
               ["core"], [((str(c["id"]),), 1.0 if c["online"] else 0.0) for c in cores]),
        _gauge("cpu_utilization_ratio", "Load of the CPU core, 0 to 1 (cpu.cores[].usage / 100)",
               ["core"], [((str(c["id"]),), _scale(c["usage"], divisor=PCT)) for c in cores]),
        _gauge("cpu_frequency_hertz", "Clock of the CPU core (cpu.cores[].freq MHz)",
               ["core"], [((str(c["id"]),), _scale(c["freq"], HZ_PER_MHZ)) for c in cores]),
    ]


def gpu_families(document: Document) -> List[Metric]:
    gpu = document["gpu"]
    emc = document["emc"] or {}
    return [
        _gauge("gpu_utilization_ratio", "GR3D load of the GPU, 0 to 1 (gpu.usage / 100)",
               [], [((), _scale(gpu["usage"], divisor=PCT))]),
        _gauge("gpu_gpc_utilization_ratio", "Load of one GPC, 0 to 1, where tegrastats prints it (gpu.usage_per_gpc)",
               ["gpc"], [((str(i),), _scale(v, divisor=PCT)) for i, v in enumerate(gpu.get("usage_per_gpc", []))]),
        _gauge("gpu_frequency_hertz", "Clock of one GPU GPC (gpu.freq[] MHz)",
               ["gpc"], [((str(i),), _scale(v, HZ_PER_MHZ)) for i, v in enumerate(gpu["freq"])]),
        _gauge("emc_utilization_ratio", "External memory controller load, 0 to 1 (emc.usage / 100)",
               [], [((), _scale(emc.get("usage"), divisor=PCT))]),
        _gauge("emc_frequency_hertz", "External memory controller clock (emc.freq MHz)",
               [], [((), _scale(emc.get("freq"), HZ_PER_MHZ))]),
    ]


def engine_families(document: Document) -> List[Metric]:
    engines = document["engines"].items()
    return [
        _gauge("engine_online", "1 when the engine (NVENC, VIC, APE...) is on, 0 when printed off",
               ["engine"], [((name, ), 1.0 if e["online"] else 0.0) for name, e in engines]),
        _gauge("engine_utilization_ratio", "Load of the engine, 0 to 1, where printed (engines.<engine>.usage / 100)",
               ["engine"], [((name,), _scale(e["usage"], divisor=PCT)) for name, e in engines]),
        _gauge("engine_frequency_hertz", "Clock of the engine (engines.<engine>.freq MHz)",
               ["engine"], [((name,), _scale(e["freq"], HZ_PER_MHZ)) for name, e in engines]),
    ]


def memory_families(document: Document) -> List[Metric]:
    memory = document["memory"]
    ram, swap, iram = memory["ram"], memory["swap"] or {}, memory["iram"] or {}
    lfb = ram["lfb"] or {}
    mib, kib = BYTES_PER["MB"], BYTES_PER["kB"]

    def one(name: str, help_text: str, value: Optional[float], factor: float) -> Metric:
        return _gauge(name, help_text, [], [((), _scale(value, factor))])

    return [
        one("memory_ram_used_bytes", "RAM in use (memory.ram.used MB)", ram["used"], mib),
        one("memory_ram_total_bytes", "RAM available to Linux (memory.ram.total MB)", ram["total"], mib),
        one("memory_ram_lfb_bytes", "Size of the largest free RAM block (memory.ram.lfb.size)",
            lfb.get("size"), BYTES_PER.get(lfb.get("unit", "MB"), mib)),
        one("memory_ram_lfb_blocks", "Number of free RAM blocks of the largest size (memory.ram.lfb.count)",
            lfb.get("count"), 1),
        one("memory_swap_used_bytes", "Swap in use (memory.swap.used MB)", swap.get("used"), mib),
        one("memory_swap_total_bytes", "Swap size (memory.swap.total MB)", swap.get("total"), mib),
        one("memory_swap_cached_bytes", "Swap cache (memory.swap.cached MB)", swap.get("cached"), mib),
        one("memory_iram_used_bytes", "IRAM in use, TX1 and Nano (memory.iram.used kB)", iram.get("used"), kib),
        one("memory_iram_total_bytes", "IRAM size, TX1 and Nano (memory.iram.total kB)", iram.get("total"), kib),
        one("memory_iram_lfb_bytes", "Largest free IRAM block (memory.iram.lfb kB)", iram.get("lfb"), kib),
    ]


def sensor_families(document: Document) -> List[Metric]:
    mts = document.get("mts") or {}
    return [
        _gauge("temperature_celsius", "Temperature of the sensor; sensors printed off (-256C) give no sample",
               ["sensor"], [((name,), value) for name, value in document["temperature"].items()]),
        _gauge("mts_foreground_ratio", "Denver/Carmel MTS foreground load, 0 to 1 (mts.fg / 100)",
               [], [((), _scale(mts.get("fg"), divisor=PCT))]),
        _gauge("mts_background_ratio", "Denver/Carmel MTS background load, 0 to 1 (mts.bg / 100)",
               [], [((), _scale(mts.get("bg"), divisor=PCT))]),
    ]


def power_families(document: Document) -> List[Metric]:
    rails = document["power"].items()
    return [
        _gauge("rail_power_watts", "Instantaneous power of the rail (power.<rail>.current mW)",
               ["rail"], [((name,), _scale(r["current"], divisor=MW_PER_W)) for name, r in rails]),
        _gauge("rail_average_power_watts", "Running average power of the rail since tegrastats started",
               ["rail"], [((name,), _scale(r["average"], divisor=MW_PER_W)) for name, r in rails]),
        _gauge("rail_max_power_watts", "Running maximum power of the rail, where printed (JetPack 7.2)",
               ["rail"], [((name,), _scale(r.get("max"), divisor=MW_PER_W)) for name, r in rails]),
        _gauge("board_power_watts", "Board input power: vdd_in, pom_5v_in or vin, else the sum of the rails",
               [], [((), _scale(input_power_mw(document["power"]), divisor=MW_PER_W))]),
    ]


def board_families(facts: BoardFacts) -> List[Metric]:
    """The power mode and the fans, from the board's files (never from the samples)."""
    mode = [] if facts.power_mode_id is None else [((str(facts.power_mode_id), facts.power_mode_name or ""), 1.0)]
    return [
        _gauge("power_mode_info", "Always 1: the nvpmodel power mode (id, and name from nvpmodel.conf)",
               ["id", "name"], mode),
        _gauge("fan_speed_ratio", "PWM duty of the fan, 0 to 1 of full speed (/api/board fans[].speed / 100)",
               ["fan"], [((f.name,), _scale(f.speed_pct, divisor=PCT)) for f in facts.fans]),
        _gauge("fan_rpm", "Fan speed from its tachometer, revolutions per minute, where there is one",
               ["fan"], [((f.name,), f.rpm) for f in facts.fans]),
    ]


DOCUMENT_FAMILIES: Tuple[Callable[[Document], List[Metric]], ...] = (
    cpu_families, gpu_families, engine_families, memory_families, sensor_families, power_families,
)


class SnapshotCollector:
    """Metric families of the hub's newest sample, the energy totals and the exporter's counters."""

    def __init__(self, hub: SnapshotHub, limiter: ConnectionLimiter, board: BoardReader) -> None:
        self.hub = hub
        self.limiter = limiter
        self.board = board

    def collect(self) -> Iterator[Metric]:
        hub = self.hub
        document = hub.latest_document
        facts = self.board.facts()
        yield from self._exporter_families()
        name = hub.board or guess_board(document)
        labels = (__version__, hub.source, name, facts.model or "", facts.l4t or "", facts.jetpack or "")
        yield _gauge("info", "Always 1: tegrastats-api version, sample source, board name (guessed from the "
                     "samples), and the board's model, L4T and JetPack (empty when unknown)",
                     ["version", "source", "board", "model", "l4t", "jetpack"], [(labels, 1.0)])
        yield from board_families(facts)
        if document is None:
            return
        for build in DOCUMENT_FAMILIES:
            yield from build(document)
        yield _counter("rail_energy_joules", "Energy of the rail since the server started, integrated from the "
                       "samples (trapezoid rule over the time between samples)",
                       ["rail"], [((name,), joules) for name, joules in hub.energy.totals_j.items()])

    def _exporter_families(self) -> List[Metric]:
        hub = self.hub
        return [
            _counter("exporter_samples", "tegrastats lines parsed into samples since start", [], [((), hub.samples)]),
            _counter("exporter_parse_errors", "Lines that could not be parsed (or were discarded) since start",
                     [], [((), hub.parse_errors)]),
            _counter("exporter_restarts", "Restarts of the tegrastats child since start", [], [((), hub.restarts)]),
            _gauge("exporter_push_clients", "Connected push clients (/ws and Socket.IO together)",
                   [], [((), self.limiter.count)]),
            _gauge("exporter_last_sample_timestamp_seconds", "When the newest sample was read (Unix time)",
                   [], [((), hub.last_sample_at)]),
        ]


def make_registry(
    hub: SnapshotHub, limiter: ConnectionLimiter, board: Optional[BoardReader] = None
) -> CollectorRegistry:
    """A registry of this server's own (not the process-wide default) holding one collector;
    without ``board``, no board file is read."""
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    board = board or BoardReader.for_source(hub.source, hub.board, None)
    registry.register(SnapshotCollector(hub, limiter, board))  # type: ignore[arg-type]
    return registry


def render(registry: CollectorRegistry) -> bytes:
    """The registry in the Prometheus text format (``CONTENT_TYPE_LATEST``)."""
    from prometheus_client import generate_latest

    return generate_latest(registry)


class Exporter:
    """What ``GET /metrics`` serves: the registry of :func:`make_registry`, made (and
    ``prometheus_client`` imported, about 2 MB of RSS) at the first scrape, not at start-up:
    most monitors are never scraped."""

    def __init__(self, hub: SnapshotHub, limiter: ConnectionLimiter, board: Optional[BoardReader] = None) -> None:
        self.hub = hub
        self.limiter = limiter
        self.board = board
        self._registry: Optional[CollectorRegistry] = None

    @property
    def registry(self) -> CollectorRegistry:
        if self._registry is None:
            self._registry = make_registry(self.hub, self.limiter, self.board)
        return self._registry

    @property
    def content_type(self) -> str:
        """prometheus_client's ``CONTENT_TYPE_LATEST`` (the text format version it writes)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return str(CONTENT_TYPE_LATEST)

    def render(self) -> bytes:
        return render(self.registry)
