"""``/metrics``: Prometheus names and units, values equal to the document, energy, auth.

Every recorded line (tests/fixtures/tegrastats/samples.tsv) goes through a hub and the
collector, and the exposition, read back with prometheus_client's own text parser, must
hold exactly the document's numbers in base units (watts = mW / 1000, bytes = MB * 1024 *
1024, hertz = MHz * 1e6, ratio = % / 100) and nothing for its nulls. ``promtool check
metrics`` (Debian's prometheus package) must print nothing. Over HTTP: a live server, the
answer before the first sample, and the token. The energy counter is fed with a fake clock.
"""
from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
from typing import Any, Dict, List, Mapping, Optional, Tuple

import pytest
import requests
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY
from prometheus_client.parser import text_string_to_metric_families

from conftest import TESTS_DIR, FakeClock, hub_app_case, require_tool
from tegrastats_api import __version__
from tegrastats_api.config import Config
from tegrastats_api.energy import EnergyMeter
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.metrics import guess_board, make_registry, render
from tegrastats_api.plan import list_boards, load_board

SAMPLES_TSV = os.path.join(TESTS_DIR, "fixtures", "tegrastats", "samples.tsv")
with open(SAMPLES_TSV, encoding="utf-8", newline="") as _handle:
    ROWS = {row["id"]: row["line"] for row in csv.DictReader(_handle, delimiter="\t")}
MIB = 1024 * 1024
EXPORTER = {
    "jetson_exporter_samples_total", "jetson_exporter_parse_errors_total", "jetson_exporter_restarts_total",
    "jetson_exporter_push_clients", "jetson_exporter_last_sample_timestamp_seconds", "jetson_info",
}
UNIT_SUFFIXES = ("_ratio", "_hertz", "_bytes", "_celsius", "_watts", "_joules_total", "_seconds", "_total",
                 "_online", "_blocks", "_clients", "_info", "_rpm")  # jetson_fan_rpm: the name docs/API.md gives
Key = Tuple[str, Tuple[Tuple[str, str], ...]]


def scrape(text: str) -> Dict[Key, float]:
    """``{(sample name, sorted labels): value}`` as prometheus_client's parser reads ``text``."""
    out: Dict[Key, float] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            key = (sample.name, tuple(sorted(sample.labels.items())))
            assert key not in out, "duplicate series %r" % (key,)
            out[key] = sample.value
    return out


def families(text: str) -> Dict[str, str]:
    """``{family name: type}`` of every declared family."""
    return {family.name: family.type for family in text_string_to_metric_families(text)}


def expected(document: Mapping[str, Any]) -> Dict[Key, float]:
    """What /metrics must say about ``document``, derived here independently of the collector."""
    out: Dict[Key, float] = {}

    def put(name: str, value: Optional[float], **labels: str) -> None:
        if value is not None:
            out[("jetson_" + name, tuple(sorted(labels.items())))] = value

    def pct(value: Optional[float]) -> Optional[float]:
        return None if value is None else value / 100

    def mhz(value: Optional[float]) -> Optional[float]:
        return None if value is None else value * 1e6

    def mw(value: Optional[float]) -> Optional[float]:
        return None if value is None else value / 1000

    for core in document["cpu"]["cores"]:
        put("cpu_online", 1.0 if core["online"] else 0.0, core=str(core["id"]))
        put("cpu_utilization_ratio", pct(core["usage"]), core=str(core["id"]))
        put("cpu_frequency_hertz", mhz(core["freq"]), core=str(core["id"]))
    gpu, emc = document["gpu"], document["emc"] or {}
    put("gpu_utilization_ratio", pct(gpu["usage"]))
    for i, value in enumerate(gpu.get("usage_per_gpc", [])):
        put("gpu_gpc_utilization_ratio", pct(value), gpc=str(i))
    for i, value in enumerate(gpu["freq"]):
        put("gpu_frequency_hertz", mhz(value), gpc=str(i))
    put("emc_utilization_ratio", pct(emc.get("usage")))
    put("emc_frequency_hertz", mhz(emc.get("freq")))
    for name, engine in document["engines"].items():
        put("engine_online", 1.0 if engine["online"] else 0.0, engine=name)
        put("engine_utilization_ratio", pct(engine["usage"]), engine=name)
        put("engine_frequency_hertz", mhz(engine["freq"]), engine=name)
    memory = document["memory"]
    ram, swap, iram = memory["ram"], memory["swap"], memory["iram"]
    put("memory_ram_used_bytes", ram["used"] * MIB)
    put("memory_ram_total_bytes", ram["total"] * MIB)
    if ram["lfb"]:
        put("memory_ram_lfb_bytes", ram["lfb"]["size"] * {"MB": MIB, "kB": 1024}[ram["lfb"]["unit"]])
        put("memory_ram_lfb_blocks", ram["lfb"]["count"])
    if swap:
        put("memory_swap_used_bytes", swap["used"] * MIB)
        put("memory_swap_total_bytes", swap["total"] * MIB)
        put("memory_swap_cached_bytes", None if swap["cached"] is None else swap["cached"] * MIB)
    if iram:
        put("memory_iram_used_bytes", iram["used"] * 1024)
        put("memory_iram_total_bytes", iram["total"] * 1024)
        put("memory_iram_lfb_bytes", None if iram["lfb"] is None else iram["lfb"] * 1024)
    for sensor, celsius in document["temperature"].items():
        put("temperature_celsius", celsius, sensor=sensor)
    if "mts" in document:
        put("mts_foreground_ratio", pct(document["mts"]["fg"]))
        put("mts_background_ratio", pct(document["mts"]["bg"]))
    for rail, power in document["power"].items():
        put("rail_power_watts", mw(power["current"]), rail=rail)
        put("rail_average_power_watts", mw(power["average"]), rail=rail)
        put("rail_max_power_watts", mw(power.get("max")), rail=rail)
    rails = document["power"]
    board = next((rails[n]["current"] for n in ("vdd_in", "pom_5v_in", "vin") if n in rails), None)
    if board is None and rails:
        board = sum(r["current"] for r in rails.values())
    put("board_power_watts", mw(board))
    return out


def document_part(series: Mapping[Key, float]) -> Dict[Key, float]:
    """The series that come from the document (not the exporter's own, info or energy)."""
    return {k: v for k, v in series.items()
            if k[0] not in EXPORTER and k[0] != "jetson_rail_energy_joules_total"}


def assert_agrees(text: str, document: Mapping[str, Any]) -> None:
    got, want = document_part(scrape(text)), expected(document)
    assert set(got) == set(want), "missing %s; unexpected %s" % (set(want) - set(got), set(got) - set(want))
    for key, value in want.items():
        assert got[key] == pytest.approx(value, rel=1e-12), key


def fed_hub(*lines: str, step_s: float = 1.0, source: str = "replay", **kwargs: Any) -> SnapshotHub:
    clock = FakeClock()
    hub = SnapshotHub(source, clock=clock, interval_s=1.0, **kwargs)
    for line in lines:
        hub.feed_line(line)
        clock.advance(step_s)
    return hub


def exposition(hub: SnapshotHub, clients: int = 0) -> str:
    limiter = ConnectionLimiter(10)
    for owner in range(clients):
        limiter.acquire(owner)
    return render(make_registry(hub, limiter)).decode("utf-8")


# --- every recorded line ---------------------------------------------------------------


@pytest.mark.parametrize("row", sorted(ROWS, key=int))
def test_each_recorded_line_agrees_with_its_document(row):
    hub = fed_hub(ROWS[row])
    assert_agrees(exposition(hub), hub.latest_document)


def test_names_units_and_labels_follow_prometheus_practice():
    names: Dict[str, str] = {}
    label_values = set()
    for line in ROWS.values():
        text = exposition(fed_hub(line, line))
        names.update(families(text))
        for (_name, labels) in scrape(text):
            label_values.update(value for key, value in labels if key in ("rail", "sensor", "engine"))
    for name, kind in names.items():
        assert re.match(r"^jetson_[a-z0-9_]+$", name), name
        full = name + "_total" if kind == "counter" else name
        assert full.endswith(UNIT_SUFFIXES), "no unit suffix: %s" % full
        assert (kind == "counter") == full.endswith("_total"), full
        assert not any("_%s_" % value in full + "_" for value in label_values if len(value) > 3), full
    assert "jetson_rail_energy_joules" in names and names["jetson_rail_energy_joules"] == "counter"


def test_offline_sensors_off_engines_and_off_cores_give_no_sample():
    # Row 28: JetPack 5 AGX Orin prints CV0@-256C ... GPU@-256C (null); row 8: engines off;
    # row 6: TX2 with five of six cores off.
    series = scrape(exposition(fed_hub(ROWS["28"])))
    sensors = {dict(labels)["sensor"] for name, labels in series if name == "jetson_temperature_celsius"}
    assert "cpu" in sensors and not sensors & {"cv0", "cv1", "cv2", "gpu"}
    series = scrape(exposition(fed_hub(ROWS["8"])))
    assert series[("jetson_engine_online", (("engine", "nvenc"),))] == 0.0
    assert ("jetson_engine_frequency_hertz", (("engine", "nvenc"),)) not in series
    assert ("jetson_engine_utilization_ratio", (("engine", "nvenc"),)) not in series
    assert series[("jetson_engine_frequency_hertz", (("engine", "ape"),))] == 174e6
    series = scrape(exposition(fed_hub(ROWS["6"])))
    assert series[("jetson_cpu_online", (("core", "1"),))] == 0.0
    assert ("jetson_cpu_utilization_ratio", (("core", "1"),)) not in series
    assert series[("jetson_cpu_utilization_ratio", (("core", "0"),))] == 0.02


def test_max_power_only_where_printed():
    series = scrape(exposition(fed_hub(ROWS["67"])))  # Thor, JetPack 7.2: cur/avg/max
    assert series[("jetson_rail_max_power_watts", (("rail", "vdd_gpu"),))] == 4.925
    assert not any(name == "jetson_rail_max_power_watts" for name, _ in scrape(exposition(fed_hub(ROWS["8"]))))


@pytest.mark.parametrize("board", list_boards())
def test_promtool_check_metrics_is_clean(board):
    promtool = shutil.which("promtool")
    require_tool(promtool, "promtool (Debian package prometheus)")
    for text in (exposition(SnapshotHub("simulator")), exposition(fed_hub(*load_board(board)), clients=2)):
        result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert result.returncode == 0 and not result.stdout and not result.stderr, (
            result.stdout.decode() + result.stderr.decode())


# --- board name, registries ------------------------------------------------------------


@pytest.mark.parametrize("board", list_boards())
def test_board_guess_names_every_simulated_board(board):
    for line in load_board(board):
        assert guess_board(fed_hub(line).latest_document) == board


def info_labels(
    board: str, source: str, model: str = "", l4t: str = "", jetpack: str = ""
) -> Tuple[Tuple[str, str], ...]:
    """The sorted labels of ``jetson_info`` (model, L4T and JetPack empty when unknown)."""
    return tuple(sorted({"board": board, "source": source, "version": __version__, "model": model, "l4t": l4t,
                         "jetpack": jetpack}.items()))


def test_info_names_version_source_and_board():
    series = scrape(exposition(SnapshotHub("tegrastats")))
    assert series[("jetson_info", info_labels("unknown", "tegrastats"))] == 1.0
    assert ("jetson_info", info_labels("nano", "replay")) in scrape(exposition(fed_hub(ROWS["27"])))  # a Nano, replayed
    # the simulator's board name wins over the guess, and its recorded identity comes along
    series = scrape(exposition(fed_hub(ROWS["8"], source="simulator", board="thor")))
    assert series[("jetson_info", info_labels("thor", "simulator", "NVIDIA Jetson AGX Thor 128GB", "38.4.0", "7.1"))]


def test_each_server_has_its_own_registry():
    one, two = fed_hub(ROWS["8"]), fed_hub(ROWS["27"], ROWS["27"])
    assert scrape(exposition(one))[("jetson_exporter_samples_total", ())] == 1
    assert scrape(exposition(two))[("jetson_exporter_samples_total", ())] == 2
    assert not [m for m in REGISTRY.collect() if m.name.startswith("jetson_")]


def test_exporter_counters():
    clock = FakeClock()
    hub = SnapshotHub("tegrastats", clock=clock)
    hub.feed_line(ROWS["8"])
    hub.feed_line("not tegrastats")
    hub.set_state("restarting")
    series = scrape(exposition(hub, clients=3))
    assert series[("jetson_exporter_samples_total", ())] == 1
    assert series[("jetson_exporter_parse_errors_total", ())] == 1
    assert series[("jetson_exporter_restarts_total", ())] == 1
    assert series[("jetson_exporter_push_clients", ())] == 3
    assert series[("jetson_exporter_last_sample_timestamp_seconds", ())] == clock.now


# --- energy ------------------------------------------------------------------------------


def energy(hub: SnapshotHub) -> Dict[str, float]:
    return {dict(labels)["rail"]: value for (name, labels), value in scrape(exposition(hub)).items()
            if name == "jetson_rail_energy_joules_total"}


def test_energy_grows_by_power_times_interval():
    line = ROWS["8"]  # VDD_GPU_SOC 3188mW, VDD_CPU_CV 2390mW, VIN_SYS_5V0 4614mW, VDDQ_VDD2_1V8AO 802mW
    hub = fed_hub(line)
    assert energy(hub) == {"vdd_gpu_soc": 0.0, "vdd_cpu_cv": 0.0, "vin_sys_5v0": 0.0, "vddq_vdd2_1v8ao": 0.0}
    hub.clock.advance(0.5)  # now 1.5 s after the first sample
    hub.feed_line(line)
    got = energy(hub)
    assert got["vdd_gpu_soc"] == pytest.approx(3.188 * 1.5)
    assert got["vin_sys_5v0"] == pytest.approx(4.614 * 1.5)
    hub.clock.advance(1.0)
    hub.feed_line(line)
    assert energy(hub)["vdd_cpu_cv"] == pytest.approx(2.390 * 2.5)


def test_energy_uses_the_trapezoid_rule_and_skips_gaps():
    clock = FakeClock()
    hub = SnapshotHub("replay", clock=clock, interval_s=1.0)
    a = "RAM 1/2MB VDD_IN 1000mW/1000mW"
    b = "RAM 1/2MB VDD_IN 3000mW/2000mW VDD_SOC 500mW/500mW"
    hub.feed_line(a)
    clock.advance(2.0)
    hub.feed_line(b)  # (1 W + 3 W) / 2 * 2 s = 4 J; vdd_soc first seen: 0 J
    assert energy(hub) == pytest.approx({"vdd_in": 4.0, "vdd_soc": 0.0})
    clock.advance(60.0)  # longer than 5 intervals: a hole, not 60 s of guessed power
    hub.feed_line(b)
    clock.advance(-10.0)  # the clock went back: nothing
    hub.feed_line(b)
    clock.advance(1.0)
    hub.feed_line(a)  # vdd_in (3 + 1) / 2 * 1 = 2 J more; vdd_soc not printed: keeps its total
    assert energy(hub) == pytest.approx({"vdd_in": 6.0, "vdd_soc": 0.0})
    assert hub.energy.totals_j == pytest.approx({"vdd_in": 6.0, "vdd_soc": 0.0})


def test_energy_meter_alone():
    meter = EnergyMeter(max_gap_s=5.0)
    meter.add(100.0, {"r": 2000})
    meter.add(101.0, {"r": 4000})
    meter.add(104.0, {"r": 4000})
    assert meter.totals_j == {"r": pytest.approx(3.0 + 12.0)}


def test_energy_counts_a_reading_below_zero_as_zero():
    """Energy drawn never goes down: a rail below zero (``VDD_CPU_CV -398mW``) adds nothing,
    and a step across zero adds only the part above it."""
    meter = EnergyMeter(max_gap_s=5.0)
    meter.add(100.0, {"r": -398, "s": -1000})
    meter.add(101.0, {"r": -398, "s": 3000})  # r: 0 J; s: (0 + 3 W) / 2 * 1 s
    assert meter.totals_j == {"r": 0.0, "s": pytest.approx(1.5)}
    meter.add(102.0, {"r": -1, "s": -500})  # s: (3 W + 0) / 2 * 1 s
    assert meter.totals_j == {"r": 0.0, "s": pytest.approx(3.0)}


def test_gauges_below_zero_agree_with_the_document():
    line = ROWS["33"].replace("VDD_CPU_CV 246mW/246mW", "VDD_CPU_CV -398mW/-398mW")
    hub = fed_hub(line, line)
    assert hub.latest_document["power"]["vdd_cpu_cv"]["current"] == -398
    text = exposition(hub)
    assert_agrees(text, hub.latest_document)
    series = scrape(text)
    assert series[("jetson_rail_power_watts", (("rail", "vdd_cpu_cv"),))] == -0.398
    assert series[("jetson_board_power_watts", ())] == pytest.approx((2468 - 398 + 3383) / 1000)
    assert energy(hub)["vdd_cpu_cv"] == 0.0


# --- over HTTP -------------------------------------------------------------------------


def test_live_metrics_agree_with_api_status(live_server, transport_lines):
    server = live_server(transport_lines[:1])
    for line in [None] + transport_lines[1:]:
        if line is not None:
            server.feed(line)
        response = requests.get(server.url + "/metrics", timeout=5)
        assert response.status_code == 200
        assert response.headers["Content-Type"] == CONTENT_TYPE_LATEST
        document = requests.get(server.url + "/api/status", timeout=5).json()
        assert_agrees(response.text, document)
        series = scrape(response.text)
        assert set(energy_rails(series)) >= set(document["power"])


def energy_rails(series: Mapping[Key, float]) -> List[str]:
    return [dict(labels)["rail"] for name, labels in series if name == "jetson_rail_energy_joules_total"]


class MetricsHTTPCase(hub_app_case()):
    def scrape_http(self, status: int = 200, **kwargs: Any) -> str:
        response = self.fetch("/metrics", **kwargs)
        self.assertEqual(response.code, status, response.body)
        return response.body.decode("utf-8")


class TestBeforeTheFirstSample(MetricsHTTPCase):
    __test__ = True

    def test_200_with_the_exporters_own_metrics(self):
        response = self.fetch("/metrics")
        self.assertEqual(response.code, 200)
        self.assertEqual(response.headers["Content-Type"], CONTENT_TYPE_LATEST)
        series = scrape(response.body.decode())
        self.assertEqual({name for name, _ in series}, EXPORTER - {"jetson_exporter_last_sample_timestamp_seconds"})
        self.assertEqual(series[("jetson_exporter_samples_total", ())], 0)
        self.assertEqual(self.fetch("/api/status").code, 503)
        self.feed()
        self.assertIn("jetson_cpu_utilization_ratio", families(self.scrape_http()))

    def test_head_and_options(self):
        self.assertEqual(self.fetch("/metrics", method="HEAD").code, 200)
        self.assertEqual(self.fetch("/metrics", method="OPTIONS").code, 204)


class TestMetricsAuth(MetricsHTTPCase):
    __test__ = True
    config = Config(host="127.0.0.1", port=0, auth_token="s3cret")

    def test_token_required(self):
        self.feed()
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = self.fetch("/metrics", headers=headers)
            self.assertEqual(response.code, 401)
            self.assertEqual(json.loads(response.body)["status"], 401)
            self.assertNotIn(b"jetson_", response.body)
        # What Prometheus sends for `authorization: {credentials: s3cret}` (type Bearer).
        self.assertIn("jetson_cpu_utilization_ratio", self.scrape_http(headers={"Authorization": "Bearer s3cret"}))
        self.assertIn("jetson_info", self.scrape_http(headers={}, path_token="s3cret"))
        self.assertEqual(self.fetch("/api/health").code, 200)  # health stays open

    def scrape_http(self, status: int = 200, path_token: Optional[str] = None, **kwargs: Any) -> str:
        path = "/metrics" if path_token is None else "/metrics?token=" + path_token
        response = self.fetch(path, **kwargs)
        self.assertEqual(response.code, status, response.body)
        return response.body.decode("utf-8")


# --- the Grafana dashboard and the scrape example ----------------------------------------

GRAFANA_DIR = os.path.join(os.path.dirname(TESTS_DIR), "packaging", "grafana")
METRIC_RE = re.compile(r"\bjetson_[a-z0-9_]+\b")
# Grafana's own variables, replaced by what Grafana would put there, so PromQL tools can read the queries.
GRAFANA_VARIABLES = {"$instance": ".*", "$__rate_interval": "2s", "$__range": "10s"}
SIMULATED = ("agx-orin", "nano")
# A third board, replayed from the orin-nano recording with the fake Orin Nano root of
# tests/fixtures/sysroots/ (power mode, fan): the simulators have neither.
REPLAYED = "orin-nano"
FLEET = SIMULATED + (REPLAYED,)
SYSROOT = os.path.join(TESTS_DIR, "fixtures", "sysroots", "jp6-orin-nano")


def dashboard() -> Dict[str, Any]:
    with open(os.path.join(GRAFANA_DIR, "tegrastats-api.json"), encoding="utf-8") as handle:
        return json.load(handle)


def dashboard_queries() -> List[str]:
    """Every PromQL expression of the dashboard (panel targets and the board picker)."""
    exprs = [target["expr"] for panel in dashboard()["panels"] for target in panel.get("targets", [])]
    exprs += [var["definition"] for var in dashboard()["templating"]["list"] if var["type"] == "query"]
    return exprs


def promql(expr: str) -> str:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    return expr


@pytest.fixture(scope="module")
def simulated_fleet(tmp_path_factory):
    """A simulated AGX Orin, a simulated Nano and a replayed Orin Nano with a board root, 20
    samples a second: ``{board: server}``."""
    from tegrastats_api import TegrastatsServer

    replay = tmp_path_factory.mktemp("fleet") / "orin-nano.txt"
    replay.write_text("\n".join(load_board(REPLAYED)) + "\n")
    servers = {}
    try:
        for board in SIMULATED:
            config = Config(host="127.0.0.1", port=0, simulate=board, update_interval=0.05)
            servers[board] = TegrastatsServer(config).start()
        config = Config(host="127.0.0.1", port=0, replay=str(replay), update_interval=0.05)
        servers[REPLAYED] = TegrastatsServer(config, sysroot=SYSROOT).start()
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def test_dashboard_has_the_board_picker_and_every_panel():
    board = dashboard()
    variables = {var["name"]: var for var in board["templating"]["list"]}
    assert variables["instance"]["definition"] == "label_values(jetson_info, instance)"
    assert variables["instance"]["multi"] and variables["instance"]["includeAll"]
    titles = " ".join(panel["title"].lower() for panel in board["panels"])
    for word in ("cpu", "gpu", "emc", "engine", "temperature", "power", "energy", "memory"):
        assert word in titles, word
    for panel in board["panels"]:
        for target in panel.get("targets", []):
            assert 'instance=~"$instance"' in target["expr"], target["expr"]
            assert target["datasource"]["uid"] == "${datasource}"


def test_every_dashboard_metric_is_served_by_two_simulated_boards_and_a_board_root(simulated_fleet):
    wanted = {name for expr in dashboard_queries() for name in METRIC_RE.findall(expr)}
    sampled = set()
    identity = {
        "agx-orin": ("simulator", "NVIDIA Jetson AGX Orin 64GB", "36.4.4", "6.2.1"),
        "nano": ("simulator", "NVIDIA Jetson Nano 4GB", "", ""),
        REPLAYED: ("replay", "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "36.4.3", "6.2"),
    }
    for board, server in simulated_fleet.items():
        declared, seen = scrape_one_loop(server.url, len(load_board(board)))
        assert wanted <= declared, "%s lacks %s" % (board, sorted(wanted - declared))
        sampled |= seen
        info = [labels for name, labels in scrape(requests.get(server.url + "/metrics", timeout=5).text)
                if name == "jetson_info"]
        assert info == [info_labels(board, *identity[board])]
    assert wanted <= sampled, "never sampled: %s" % sorted(wanted - sampled)


def scrape_one_loop(url: str, lines: int, timeout_s: float = 10.0) -> Tuple[set, set]:
    """(declared family names, sample names) over scrapes covering every line of the loop."""
    import time

    declared, seen = set(), set()
    deadline = time.monotonic() + timeout_s
    first = None
    while time.monotonic() < deadline:
        text = requests.get(url + "/metrics", timeout=5).text
        declared |= {name + "_total" if kind == "counter" else name for name, kind in families(text).items()}
        series = scrape(text)
        seen |= {name for name, _ in series}
        count = series[("jetson_exporter_samples_total", ())]
        first = count if first is None else first
        if count - first > 2 * lines:
            return declared, seen
        time.sleep(0.02)
    raise AssertionError("the simulator did not go round its loop in %s s" % timeout_s)


def test_dashboard_queries_are_valid_promql(tmp_path):
    promtool = shutil.which("promtool")
    require_tool(promtool, "promtool (Debian package prometheus)")
    rules = ["      - record: dashboard:query_%d\n        expr: %s\n" % (i, json.dumps(promql(expr)))
             for i, expr in enumerate(dashboard_queries()) if not expr.startswith("label_values")]
    path = tmp_path / "rules.yml"
    path.write_text("groups:\n  - name: dashboard\n    rules:\n" + "".join(rules))
    result = subprocess.run([promtool, "check", "rules", str(path)], capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_scrape_example_is_a_valid_config_on_the_servers_port():
    with open(os.path.join(GRAFANA_DIR, "prometheus.yml"), encoding="utf-8") as handle:
        text = handle.read()
    targets = re.findall(r"^\s+- ([\w.-]+):(\d+)$", text, re.M)
    assert len(targets) >= 2 and {port for _host, port in targets} == {"58090"}
    assert not re.search(r":(9100|9102|9400)\b", text)
    promtool = shutil.which("promtool")
    require_tool(promtool, "promtool (Debian package prometheus)")
    result = subprocess.run([promtool, "check", "config", os.path.join(GRAFANA_DIR, "prometheus.yml")],
                            capture_output=True, timeout=30)
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()


def test_prometheus_graphs_every_dashboard_query_from_two_boards(simulated_fleet, tmp_path):
    """The issue's "done when": a real Prometheus scraping a simulated AGX Orin and Nano (and a
    replayed board with a board root, for the fan and power-mode panels) returns data for
    every query of the dashboard, and sees every board in jetson_info.
    About 6 s: Prometheus applies new scrape targets on a 5 s tick."""
    import socket
    import time

    prometheus = shutil.which("prometheus")
    require_tool(prometheus, "prometheus (Debian package prometheus)")
    targets = ", ".join('"%s"' % server.url.split("//")[1] for server in simulated_fleet.values())
    # 0.3 s scrapes against a 5-line loop at 0.05 s: each scrape lands on another line.
    (tmp_path / "prometheus.yml").write_text(
        "global: {scrape_interval: 300ms, scrape_timeout: 250ms}\n"
        "scrape_configs: [{job_name: jetson, static_configs: [{targets: [%s]}]}]\n" % targets)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    log = open(tmp_path / "prometheus.log", "wb")
    process = subprocess.Popen(
        [prometheus, "--config.file", str(tmp_path / "prometheus.yml"), "--storage.tsdb.path", str(tmp_path / "data"),
         "--web.listen-address", "127.0.0.1:%d" % port],
        stdout=log, stderr=subprocess.STDOUT)
    try:
        api = "http://127.0.0.1:%d/api/v1/" % port
        start = time.time()
        pending = {expr: promql(expr) for expr in dashboard_queries() if not expr.startswith("label_values")}
        deadline = time.monotonic() + 25
        while pending and time.monotonic() < deadline:
            time.sleep(0.5)
            for expr, query in list(pending.items()):
                if prometheus_has_data(api, query, start):
                    del pending[expr]
        assert not pending, "no data for %s; log: %s" % (sorted(pending), (tmp_path / "prometheus.log").read_text())
        boards = requests.get(api + "query", params={"query": "jetson_info"}, timeout=5).json()["data"]["result"]
        assert sorted(r["metric"]["board"] for r in boards) == sorted(FLEET)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        log.close()


def prometheus_has_data(api: str, query: str, start: float) -> bool:
    import time

    try:
        answer = requests.get(api + "query_range", timeout=5,
                              params={"query": query, "start": start, "end": time.time(), "step": "0.2"})
    except requests.ConnectionError:
        return False  # still starting
    return answer.ok and bool(answer.json()["data"]["result"])


LAZY_IMPORT_SCRIPT = r'''
import asyncio, sys
from tornado.httpclient import AsyncHTTPClient
from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tegrastats_api.app import make_app
from tegrastats_api.config import Config
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.sio_route import SocketIORoute

async def main():
    hub = SnapshotHub("replay")
    hub.feed_line(sys.argv[1])
    limiter, config = ConnectionLimiter(10), Config(host="127.0.0.1", port=0)
    sockets = bind_sockets(0, "127.0.0.1")
    HTTPServer(make_app(hub, limiter, SocketIORoute(hub, limiter, config), config)).add_sockets(sockets)
    url = "http://127.0.0.1:%d" % sockets[0].getsockname()[1]
    seen = ["prometheus_client" in sys.modules]
    await AsyncHTTPClient().fetch(url + "/api/status")
    seen.append("prometheus_client" in sys.modules)
    for _ in range(2):
        answer = await AsyncHTTPClient().fetch(url + "/metrics")
        seen.append("prometheus_client" in sys.modules)
        seen.append(b"jetson_cpu_utilization_ratio{" in answer.body)
        seen.append(answer.headers["Content-Type"])
    print(repr(seen))

asyncio.run(main())
'''


def test_prometheus_client_is_imported_at_the_first_scrape_not_at_start_up():
    """A server that is never scraped never imports prometheus_client (about 2 MB of RSS);
    the first scrape does, and answers as every later one does."""
    import ast
    import sys

    answer = subprocess.run([sys.executable, "-c", LAZY_IMPORT_SCRIPT, ROWS["8"]], capture_output=True,
                            text=True, timeout=60, check=True)
    seen = ast.literal_eval(answer.stdout.strip().splitlines()[-1])
    assert seen == [False, False, True, True, CONTENT_TYPE_LATEST, True, True, CONTENT_TYPE_LATEST], seen
