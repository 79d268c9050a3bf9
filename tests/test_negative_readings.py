"""Readings below zero, through a real server fed by a real child (tests/fake_tegrastats.py).

A power rail can read below zero (``VDD_CPU_CV -398mW/-398mW`` was seen on an AGX Orin
without root, JetPack 6), and a temperature sensor can be below zero. Such a reading is a
value: it must be in ``power`` / ``temperature`` of every document (never in ``extra``),
count as printed in ``/api/summary``'s ``power_mw`` and in the ``/metrics`` gauges, never
make the energy counter go down, and show as printed in ``tegrastats-api monitor`` (on a
real terminal). The lines are real recorded lines (tests/fixtures/tegrastats/samples.tsv)
with readings changed to values below zero, in each rail form: ``mW/mW`` (row 33, AGX Orin
JetPack 6 without root), unitless ``cur/avg`` (row 53, Nano) and ``mW/mW/mW`` (row 67, Thor
JetPack 7.2). The dashboard's side is in tests/test_dashboard.py.
"""
from __future__ import annotations

import csv
import json
import os
import pty
import re
import select
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Tuple

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from tegrastats_api import parse_line
from tegrastats_api.console import format_snapshot
from tegrastats_api.summary import summarize

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "tegrastats"
with (FIXTURES / "samples.tsv").open(encoding="utf-8", newline="") as _f:
    ROWS = {row["id"]: row["line"] for row in csv.DictReader(_f, delimiter="\t")}
ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 20.0


def _changed(row: str, *substitutions: Tuple[str, str]) -> str:
    line = ROWS[row]
    for pattern, replacement in substitutions:
        line, count = re.subn(pattern, replacement, line)
        assert count == 1, (row, pattern)
    return line


# (name, line, expected power section, expected power_mw, expected temperatures to check)
ORIN = _changed("33", (r"VDD_CPU_CV \d+mW/\d+mW", "VDD_CPU_CV -398mW/-398mW"))
NANO = _changed("53", (r"POM_5V_GPU 0/0", "POM_5V_GPU -12/-3"), (r"AO@46C", "AO@-5.5C"))
NANO_IN = _changed("53", (r"POM_5V_IN 900/943", "POM_5V_IN -20/-15"), (r"PLL@39C", "PLL@-40C"))
THOR = _changed("67", (r"VDD_GPU 4925mW/4925mW/4925mW", "VDD_GPU -5mW/-3mW/-1mW"))
CASES = {
    "orin": (ORIN, {"vdd_gpu_soc": (2468, 2468, None), "vdd_cpu_cv": (-398, -398, None),
                    "vin_sys_5v0": (3383, 3383, None)}, 2468 - 398 + 3383, {}),
    "nano": (NANO, {"pom_5v_in": (900, 943, None), "pom_5v_gpu": (-12, -3, None),
                    "pom_5v_cpu": (123, 123, None)}, 900, {"ao": -5.5}),
    "nano_in": (NANO_IN, {"pom_5v_in": (-20, -15, None), "pom_5v_gpu": (0, 0, None),
                          "pom_5v_cpu": (123, 123, None)}, -20, {"pll": -40.0}),
    "thor": (THOR, {"vdd_gpu": (-5, -3, -1), "vdd_cpu_soc_mss": (8710, 8710, 8710),
                    "vin_sys_5v0": (6767, 6767, 6767)}, -5 + 8710 + 6767, {}),
}
# The Orin line twice in a row, so that its rail below zero is integrated into energy.
FAKE_LINES = [ORIN, ORIN, NANO, NANO_IN, THOR]


def _power(expected: Dict[str, Tuple[int, int, Any]]) -> Dict[str, Dict[str, Any]]:
    out = {}
    for name, (current, average, maximum) in expected.items():
        out[name] = {"current": current, "average": average}
        if maximum is not None:
            out[name]["max"] = maximum
        out[name]["unit"] = "mW"
    return out


def _case_of(doc: Dict[str, Any]) -> str:
    matches = [name for name, case in CASES.items() if doc["power"] == _power(case[1])]
    assert len(matches) == 1, "a document of none of the lines: %r" % doc["power"]
    return matches[0]


@pytest.fixture
def negative_server(server_process, tmp_path):
    lines = tmp_path / "negative.txt"
    lines.write_text("\n".join(FAKE_LINES) + "\n", encoding="utf-8")
    return server_process("--update-interval", "0.1", fake=("--lines", str(lines)), healthy=True)


def test_the_lines_are_as_described():
    for name, (line, power, power_mw, temps) in CASES.items():
        doc = parse_line(line).to_dict()
        assert doc["power"] == _power(power), name
        assert doc["extra"] == {}, name
        assert summarize(dict(doc, timestamp=None, source=None))["power_mw"] == power_mw, name
        for sensor, celsius in temps.items():
            assert doc["temperature"][sensor] == celsius


def _get(server, path: str) -> requests.Response:
    response = requests.get(server.url + path, timeout=5)
    assert response.status_code == 200, (path, response.text)
    return response


def test_status_history_and_summary_keep_readings_below_zero(negative_server):
    """Every line's document as printed (no ``extra``), and the summary of each with its
    power_mw: the input rail as printed (also below zero), else the sum with the rail
    below zero counted as printed."""
    server = negative_server
    docs: Dict[str, Dict[str, Any]] = {}
    summaries: Dict[str, Dict[str, Any]] = {}
    deadline = time.monotonic() + WAIT_S
    while (len(docs) < len(CASES) or len(summaries) < len(CASES)) and time.monotonic() < deadline:
        summary = _get(server, "/api/summary").json()
        history = _get(server, "/api/history").json()["samples"]
        by_time = {doc["timestamp"]: doc for doc in history}
        for doc in history:
            docs.setdefault(_case_of(doc), doc)
        if summary["timestamp"] in by_time:
            summaries.setdefault(_case_of(by_time[summary["timestamp"]]), summary)
        time.sleep(0.03)
    assert set(docs) == set(CASES) and set(summaries) == set(CASES), (sorted(docs), sorted(summaries))
    for name, (_line, power, power_mw, temps) in CASES.items():
        assert docs[name]["extra"] == {}, name
        assert docs[name]["power"] == _power(power), name
        for sensor, celsius in temps.items():
            assert docs[name]["temperature"][sensor] == celsius, (name, sensor)
        assert summaries[name]["power_mw"] == power_mw, name
    # AO, the hottest sensor of the recorded Nano line, reads -5.5 °C here: GPU is the hottest.
    assert (summaries["nano"]["temp_max"], summaries["nano"]["temp_max_sensor"]) == (41.0, "gpu")


def _scrape(text: str) -> Dict[Tuple[str, str], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, sample.labels.get("rail", sample.labels.get("sensor", "")))] = sample.value
    return out


def test_metrics_gauges_go_below_zero_and_energy_never_goes_down(negative_server):
    server = negative_server
    seen_board_power = set()
    seen_rail: Dict[Tuple[str, str], set] = {}
    energy_before: Dict[str, float] = {}
    scrapes = 0
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and (scrapes < 30 or len(seen_board_power) < len(CASES)):
        series = _scrape(_get(server, "/metrics").text)
        scrapes += 1
        seen_board_power.add(round(series[("jetson_board_power_watts", "")], 6))
        for key in (("jetson_rail_power_watts", "vdd_cpu_cv"), ("jetson_rail_average_power_watts", "pom_5v_gpu"),
                    ("jetson_rail_max_power_watts", "vdd_gpu"), ("jetson_temperature_celsius", "pll")):
            if key in series:
                seen_rail.setdefault(key, set()).add(series[key])
        energy = {rail: value for (name, rail), value in series.items()
                  if name == "jetson_rail_energy_joules_total"}
        for rail, joules in energy.items():
            assert joules >= energy_before.get(rail, 0.0), "the energy of %s went down" % rail
        energy_before = energy
        time.sleep(0.03)
    want = {round(power_mw / 1000.0, 6) for _, _, power_mw, _ in CASES.values()}
    assert want <= seen_board_power, (want, seen_board_power)
    assert seen_rail == {("jetson_rail_power_watts", "vdd_cpu_cv"): {-0.398},
                         ("jetson_rail_average_power_watts", "pom_5v_gpu"): {-0.003, 0.0},
                         ("jetson_rail_max_power_watts", "vdd_gpu"): {-0.001},
                         ("jetson_temperature_celsius", "pll"): {-40.0, 39.0}}
    assert energy_before["vdd_cpu_cv"] == 0.0, "a rail always below zero draws no energy"
    assert energy_before["vdd_gpu_soc"] > 0.0  # printed in the same two samples


def test_console_screen_shows_readings_below_zero():
    screens = {name: format_snapshot(parse_line(case[0], 0.0, source="tegrastats").to_dict(), 80)
               for name, case in CASES.items()}
    assert "vdd_cpu_cv -398 mW" in screens["orin"]
    assert "pom_5v_gpu -12 mW" in screens["nano"] and "ao -5.5 \u00b0C" in screens["nano"]
    assert "input -20 mW (pom_5v_in)" in screens["nano_in"] and "pll -40.0 \u00b0C" in screens["nano_in"]
    assert "vdd_gpu -5 mW" in screens["thor"]
    for screen in screens.values():
        assert all(len(row) <= 80 for row in screen.splitlines())
        assert "nan" not in screen.lower()


def test_monitor_on_a_terminal_shows_readings_below_zero(negative_server):
    """``tegrastats-api monitor`` on a real pseudo-terminal (its screen view, not JSON)."""
    server = negative_server
    port = str(server.port)
    controller, terminal = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
    env["PYTHONPATH"] = str(ROOT)
    env["TERM"] = "dumb"  # whole screens one after another (curses would redraw only what changed)
    child = subprocess.Popen(
        [sys.executable, "-m", "tegrastats_api", "--config", "/dev/null", "monitor", "--host", "127.0.0.1",
         "--port", port, "--duration", "3"],
        stdin=terminal, stdout=terminal, stderr=subprocess.PIPE, env=env, close_fds=True)
    os.close(terminal)
    output = b""
    deadline = time.monotonic() + WAIT_S
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([controller], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                break
            try:
                chunk = os.read(controller, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            output += chunk
        assert child.wait(WAIT_S) == 0, child.stderr.read() if child.stderr else ""
    finally:
        if child.poll() is None:
            child.kill()
            child.wait(5)
        if child.stderr:
            child.stderr.close()
        os.close(controller)
    text = output.decode("utf-8", "replace")
    assert not text.lstrip().startswith("{"), "JSON lines on a terminal: %r" % text[:200]
    assert "vdd_cpu_cv -398 mW" in text, text[-2000:]
    assert "input -20 mW (pom_5v_in)" in text, text[-2000:]


def test_fake_lines_are_real_lines_changed_only_in_their_readings():
    """The fixture lines differ from the recorded rows only where a reading went below zero."""
    for line, row in ((ORIN, "33"), (NANO, "53"), (NANO_IN, "53"), (THOR, "67")):
        changed: List[Tuple[str, str]] = [(a, b) for a, b in zip(line.split(" "), ROWS[row].split(" ")) if a != b]
        assert changed and len(line.split(" ")) == len(ROWS[row].split(" "))
        for new, _old in changed:
            assert "-" in new, (row, new)
    assert json.dumps(parse_line(ORIN).to_dict()["power"]["vdd_cpu_cv"]) == (
        '{"current": -398, "average": -398, "unit": "mW"}')
