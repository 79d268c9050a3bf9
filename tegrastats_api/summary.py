"""``/api/summary``: the headline numbers a small display shows, in under 256 bytes.

What it does: :func:`summarize` reduces a schema-1 document to flat keys (docs/API.md,
``GET /api/summary``): CPU and GPU load, RAM and swap use, the hottest sensor and the
board's input power (section 2.3: a rail reading below zero counts as printed). The rules
behind them (which rail is the input, which sensor is a fixed reading, when a temperature is
warm or hot) are the dashboard's too (static/app.js holds the same constants) and the
terminal monitor's (``console``). What it does not: encode JSON or serve HTTP.
"""
from __future__ import annotations

from typing import Any, Dict, Mapping, Optional, Tuple

# Rails that measure the whole board's input, in order of preference; if none is
# printed, the board's power is the sum of every rail it prints.
INPUT_RAILS = ("vdd_in", "pom_5v_in", "vin")
# PMIC@50C / PMIC@100C is a fixed pseudo-reading, not a measurement.
IGNORED_SENSORS = ("pmic",)
# Temperature levels: amber from WARN_C, red from HOT_C (°C).
WARN_C = 70.0
HOT_C = 85.0
MAX_BYTES = 256


def hottest(temperatures: Mapping[str, Optional[float]]) -> Tuple[Optional[float], Optional[str]]:
    """(°C, sensor) of the hottest real sensor; (None, None) when none reads."""
    readings = [(v, k) for k, v in temperatures.items() if v is not None and k not in IGNORED_SENSORS]
    if not readings:
        return None, None
    value, name = max(readings, key=lambda pair: pair[0])
    return value, name


def temperature_level(name: str, value: Optional[float]) -> str:
    """How a sensor is shown: ``fixed`` (a pseudo-reading, greyed), ``off`` (no reading),
    ``hot`` (>= :data:`HOT_C`), ``warn`` (>= :data:`WARN_C`) or ``ok``."""
    if name in IGNORED_SENSORS:
        return "fixed"
    if value is None:
        return "off"
    return "hot" if value >= HOT_C else "warn" if value >= WARN_C else "ok"


def input_power(power: Mapping[str, Mapping[str, Any]]) -> Tuple[Optional[int], Optional[str]]:
    """(mW, rail) of the board's input power, as printed (so below zero too): the first of
    :data:`INPUT_RAILS` printed, else (sum of every rail, None); (None, None) when no rail
    is printed."""
    for name in INPUT_RAILS:
        if name in power:
            return power[name]["current"], name
    if not power:
        return None, None
    return sum(rail["current"] for rail in power.values()), None


def input_power_mw(power: Mapping[str, Mapping[str, Any]]) -> Optional[int]:
    """The board's input power in mW (see :func:`input_power`); None when no rail is printed."""
    return input_power(power)[0]


def summarize(document: Mapping[str, Any]) -> Dict[str, Any]:
    """The ``/api/summary`` document of one sample."""
    memory = document["memory"]
    temp_max, temp_sensor = hottest(document["temperature"])
    return {
        "timestamp": document["timestamp"],
        "source": document["source"],
        "cpu": document["cpu"]["usage"],
        "gpu": document["gpu"]["usage"],
        "ram_used": memory["ram"]["used"],
        "ram_total": memory["ram"]["total"],
        "swap_used": memory["swap"]["used"] if memory["swap"] else None,
        "temp_max": temp_max,
        "temp_max_sensor": temp_sensor,
        "power_mw": input_power_mw(document["power"]),
    }
