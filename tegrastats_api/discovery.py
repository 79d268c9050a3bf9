"""What goes over MQTT: the compact state of a sample, and its Home Assistant discovery configs.

What it does: :func:`state_of` reduces a schema-1 document to the flat ``<prefix>/state``
message (CPU and GPU load, RAM used and its percent, swap used, EMC load, input power,
every temperature, every rail, each engine on or off); :func:`entities_of` lists the
Home Assistant entities a sample has (a sensor the board does not print is not there:
no swap on a TX1, no rails without root); :func:`config_of` builds the retained discovery
config of one entity (``<discovery-prefix>/<component>/<node_id>/<object_id>/config``),
following Home Assistant's MQTT discovery schema: ``device_class`` temperature, power and
data_size with their units (°C, W, MB), ``state_class: measurement``, a ``value_template``
into the state JSON, the availability topic, a unique id and one device per board
(:func:`device_of`).

Units in the state: percent, °C, W (the document's mW / 1000) and MB. A value the sample
does not have is null, which Home Assistant's templates render as ``None``: the state
"unknown". PMIC@100C (Nano, TX1, Xavier) is a fixed pseudo-reading, not a sensor
(:data:`tegrastats_api.summary.IGNORED_SENSORS`), so it is never announced.

What it does not: connect, publish, keep state or read a clock (see :mod:`tegrastats_api.mqtt`).
"""
from __future__ import annotations

import json
import re
from typing import Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

from tegrastats_api import __version__
from tegrastats_api.summary import IGNORED_SENSORS, input_power_mw

MANUFACTURER = "NVIDIA"
ORIGIN = {"name": "tegrastats-api", "sw_version": __version__}
COMPONENTS = ("sensor", "binary_sensor")
_SAFE_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,63}$")  # the parser's names are [a-z0-9_-]


class Entity(NamedTuple):
    """One Home Assistant entity: its value is ``state[key[0]]`` (or ``state[key[0]][key[1]]``)."""

    component: str  # "sensor" or "binary_sensor"
    object_id: str  # [a-z0-9_-], unique within the device
    name: str
    key: Tuple[str, ...]
    device_class: Optional[str] = None
    unit: Optional[str] = None
    icon: Optional[str] = None


def _pct(used: Optional[float], total: Optional[float]) -> Optional[float]:
    if used is None or not total:
        return None
    return round(used * 100.0 / total, 1)


def _watts(mw: Optional[float]) -> Optional[float]:
    return None if mw is None else mw / 1000.0


def _named(mapping: Mapping[str, Any]) -> List[str]:
    return [name for name in mapping if _SAFE_NAME_RE.match(name)]


def state_of(document: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``<prefix>/state`` values of one sample (keys as in docs/API.md, MQTT section)."""
    memory = document["memory"]
    ram, swap, emc = memory["ram"], memory["swap"], document["emc"]
    return {
        "cpu": document["cpu"]["usage"],
        "gpu": document["gpu"]["usage"],
        "ram": ram["used"],
        "ram_pct": _pct(ram["used"], ram["total"]),
        "swap": swap["used"] if swap else None,
        "emc": emc["usage"] if emc else None,
        "power": _watts(input_power_mw(document["power"])),
        "temp": {name: document["temperature"][name] for name in _named(document["temperature"])
                 if name not in IGNORED_SENSORS},
        "rail": {name: _watts(document["power"][name]["current"]) for name in _named(document["power"])},
        "engine": {name: "ON" if document["engines"][name]["online"] else "OFF"
                   for name in _named(document["engines"])},
        "ts": document["timestamp"],
    }


_FIXED = (
    # (object_id, name, state key, device_class, unit, icon, "has it" test on the state)
    ("cpu_usage", "CPU usage", "cpu", None, "%", "mdi:cpu-64-bit"),
    ("gpu_usage", "GPU usage", "gpu", None, "%", "mdi:expansion-card"),
    ("ram_used", "RAM used", "ram", "data_size", "MB", "mdi:memory"),
    ("ram_used_pct", "RAM used (percent)", "ram_pct", None, "%", "mdi:memory"),
    ("swap_used", "Swap used", "swap", "data_size", "MB", "mdi:harddisk"),
    ("emc_load", "EMC load", "emc", None, "%", "mdi:chip"),
    ("power_input", "Input power", "power", "power", "W", None),
)


def entities_of(document: Mapping[str, Any]) -> List[Entity]:
    """Every entity the sample has, in a stable order: the fixed ones whose part the board
    prints (CPU cores, GPU load, swap, EMC, a rail), then one per temperature sensor, rail
    and engine."""
    state = state_of(document)
    has = {
        "cpu": bool(document["cpu"]["cores"]), "gpu": document["gpu"]["usage"] is not None,
        "ram": True, "ram_pct": bool(document["memory"]["ram"]["total"]),
        "swap": document["memory"]["swap"] is not None, "emc": document["emc"] is not None,
        "power": bool(document["power"]),
    }
    out = [Entity("sensor", oid, name, (key,), dc, unit, icon)
           for oid, name, key, dc, unit, icon in _FIXED if has[key]]
    out += [Entity("sensor", "temp_" + n, "%s temperature" % n.upper(), ("temp", n), "temperature", "°C")
            for n in state["temp"]]
    out += [Entity("sensor", "rail_" + n, "%s power" % n.upper(), ("rail", n), "power", "W") for n in state["rail"]]
    out += [Entity("binary_sensor", "engine_" + n, n.upper(), ("engine", n), "running", None, "mdi:chip")
            for n in state["engine"]]
    return out


def removable(entity: Entity) -> bool:
    """Whether an entity missing from the samples is removed in time. Engines are not: older
    tegrastats (JetPack 4) print NVENC, NVDEC... only while they run, so a missing engine is off."""
    return entity.key[0] != "engine"


def complete_state(state: Dict[str, Any], entities: Sequence[Entity]) -> Dict[str, Any]:
    """``state`` with a value for each announced entity it lacks, so that every
    ``value_template`` finds its key: ``OFF`` for an engine, else null (a sensor gone from
    the latest sample, not removed yet: "unknown" in Home Assistant)."""
    for entity in entities:
        if len(entity.key) == 2 and entity.key[1] not in state.get(entity.key[0], {}):
            state.setdefault(entity.key[0], {})[entity.key[1]] = None if removable(entity) else "OFF"
    return state


def encode(message: Mapping[str, Any]) -> bytes:
    """Compact JSON (no spaces), UTF-8: the payload of every message but availability."""
    return json.dumps(message, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def device_of(node_id: str, name: str, facts: Optional[Mapping[str, Any]] = None) -> Dict[str, Any]:
    """The ``device`` of every config: identifiers ``[node_id]`` (stable across restarts:
    derived from the topic prefix), ``name``, manufacturer NVIDIA, the model and ``L4T x
    (JetPack y)`` from ``/api/board``'s facts when known, ``sw_version`` this project's version."""
    facts = facts or {}
    device: Dict[str, Any] = {"identifiers": [node_id], "name": name, "manufacturer": MANUFACTURER,
                              "model": facts.get("model") or "Jetson", "sw_version": __version__}
    if facts.get("l4t"):
        device["hw_version"] = "L4T %s (JetPack %s)" % (facts["l4t"], facts.get("jetpack") or "?")
    return device


def template_of(entity: Entity) -> str:
    """The ``value_template`` that takes the entity's value out of the state JSON."""
    return "{{ value_json%s }}" % "".join("['%s']" % part for part in entity.key)  # names: _SAFE_NAME_RE


def config_topic(discovery_prefix: str, node_id: str, entity: Entity) -> str:
    """``<discovery-prefix>/<component>/<node_id>/<object_id>/config``."""
    return "%s/%s/%s/%s/config" % (discovery_prefix, entity.component, node_id, entity.object_id)


def config_of(entity: Entity, node_id: str, prefix: str, device: Mapping[str, Any]) -> Dict[str, Any]:
    """The discovery config of ``entity`` (state and availability under ``prefix``)."""
    config: Dict[str, Any] = {
        "name": entity.name,
        "unique_id": "%s_%s" % (node_id, entity.object_id),
        "state_topic": prefix + "/state",
        "value_template": template_of(entity),
        "availability_topic": prefix + "/availability",
    }
    if entity.device_class:
        config["device_class"] = entity.device_class
    if entity.component == "sensor":
        config["state_class"] = "measurement"
        config["unit_of_measurement"] = entity.unit
    if entity.icon and not entity.device_class:
        config["icon"] = entity.icon
    config["device"] = dict(device)
    config["origin"] = dict(ORIGIN)
    return config
