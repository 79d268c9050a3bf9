"""Board facts (``GET /api/board``, ``/api/health`` ``model``, ``/metrics``, the start-up line).

The fake roots of tests/fixtures/sysroots/ (a JetPack 4 Nano, a JetPack 5 Xavier NX, a
JetPack 6 Orin Nano, a JetPack 7 Thor, a root of garbage; sources in their README) go
through the real server: ``python -m tegrastats_api run --replay FILE`` in a child process
with ``TEGRASTATS_API_SYSROOT`` set. Broken roots made here (missing files, a mode the conf
lacks, a FIFO, a directory or a huge file where a file should be, two fans) give nulls,
never an error or a hang. The parsers are checked on their own, and the cache with a fake clock.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from typing import Any, Dict

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from conftest import TESTS_DIR, FakeClock, hub_app_case, read_transport_lines, require_tool
from tegrastats_api import __version__
from tegrastats_api.board import (
    JETPACK_BY_L4T,
    SIMULATED_BOARDS,
    BoardReader,
    jetpack_for,
    parse_count,
    parse_l4t,
    parse_mode_names,
    parse_pmode,
    parse_uptime,
    parse_word,
    pwm_percent,
    sysroot_from_environ,
)
from tegrastats_api.plan import list_boards

SYSROOTS = os.path.join(TESTS_DIR, "fixtures", "sysroots")
NULLS = {"model": None, "l4t": None, "jetpack": None, "power_mode": None, "fans": [], "hostname": None,
         "kernel": None, "uptime": None}

# What each fake root must give (timestamp and source aside); see tests/fixtures/sysroots/README.md.
EXPECTED: Dict[str, Dict[str, Any]] = {
    "jp4-nano": {
        "model": "NVIDIA Jetson Nano Developer Kit", "l4t": "32.7.6", "jetpack": "4.6.6",
        "power_mode": {"id": 1, "name": "5W"}, "fans": [{"name": "pwm-fan", "speed": 30.2, "rpm": 1380}],
        "hostname": "jetson-nano", "kernel": "4.9.337-tegra", "uptime": 86400.25,
    },
    "jp5-xavier-nx": {
        "model": "NVIDIA Jetson Xavier NX Developer Kit", "l4t": "35.4.1", "jetpack": "5.1.2",
        "power_mode": {"id": 8, "name": "MODE_20W_6CORE"}, "fans": [{"name": "pwmfan", "speed": 100.0, "rpm": 4850}],
        "hostname": "xavier-nx", "kernel": "5.10.120-tegra", "uptime": 3600.0,
    },
    "jp6-orin-nano": {
        "model": "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super", "l4t": "36.4.3",
        "jetpack": "6.2", "power_mode": {"id": 2, "name": "MAXN_SUPER"},
        "fans": [{"name": "pwmfan", "speed": 42.0, "rpm": 2100}],
        "hostname": "orin", "kernel": "5.15.148-tegra", "uptime": 12345.6,
    },
    "jp7-thor": {
        "model": "NVIDIA Jetson AGX Thor Developer Kit", "l4t": "38.2.0", "jetpack": "7.0",
        "power_mode": {"id": 0, "name": "MAXN"}, "fans": [{"name": "pwmfan", "speed": 25.1, "rpm": 1636}],
        "hostname": "thor", "kernel": "6.8.12-tegra", "uptime": 720.5,
    },
    "garbage": dict(NULLS, fans=[{"name": "pwmfan", "speed": None, "rpm": None}]),
}


def root(name: str) -> str:
    return os.path.join(SYSROOTS, name)


def facts(sysroot: str, **options: Any) -> Dict[str, Any]:
    document = BoardReader(sysroot, **options).facts().to_dict(None)
    del document["timestamp"]
    return document


def copy_root(tmp_path, name: str = "jp6-orin-nano"):
    target = tmp_path / name
    shutil.copytree(root(name), str(target))
    return target


# --- the parsers ---------------------------------------------------------------------------


@pytest.mark.parametrize("text, expected", [
    (b"# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: x\n", "36.4.3"),
    (b"# R32 (release), REVISION: 5.0, GCID: 1\n", "32.5.0"),
    (b"# R38 (release), REVISION: 2.0, GCID: 41844464, BOARD: generic\n# KERNEL_VARIANT: oot\n", "38.2.0"),
    (b"# R28 (release), REVISION: 2.1, GCID: 11272647, BOARD: t186ref, EABI: aarch64\n", "28.2.1"),
    (b"# R35 (release), REVISION: 4\n", "35.4.0"),  # no patch: the first release of a branch
    (b"# R36 (release), REVISION: 4.3", "36.4.3"),  # no newline, no more fields
    (b"\n# R36 (release), REVISION: 4.3\n", None),  # only the first line counts
    (b"R36 REVISION 4.3\n", None),
    (b"# R36 (release), REVISION: x.3\n", None),
    (b"# R36 (release), REVISION: 4.3x\n", None),
    (b"\xff\xfe# R36 (release), REVISION: 4.3\n", None),
    (b"", None),
    (None, None),
])
def test_l4t_from_the_first_line_of_nv_tegra_release(text, expected):
    assert parse_l4t(text) == expected


def test_jetpack_comes_from_the_table_and_an_unknown_release_is_null():
    assert jetpack_for("36.4.3") == "6.2" and jetpack_for("36.4.4") == "6.2.1" and jetpack_for("32.7.1") == "4.6.1"
    assert jetpack_for("38.2.0") == "7.0" and jetpack_for("35.4.1") == "5.1.2"
    for unknown in ("36.9.9", "99.1.0", "", None):
        assert jetpack_for(unknown) is None
    assert all(re.match(r"^\d+\.\d+\.\d+$", l4t) for l4t in JETPACK_BY_L4T)


@pytest.mark.parametrize("text, expected", [
    (b"pmode:0002\n", 2), (b"pmode:0000 fmode:quiet\n", 0), (b"pmode:0008", 8), (b"pmode: 3\n", 3),
    (b"pmode:abc\n", None), (b"fmode:quiet pmode:0002\n", None), (b"pmode:00021234567\n", None),
    (b"pmode:2x\n", None), (b"", None), (None, None), (b"\xff", None),
])
def test_power_mode_id_from_status(text, expected):
    assert parse_pmode(text) == expected


def test_mode_names_from_nvpmodel_conf():
    conf = (b"# < POWER_MODEL ID=id_num NAME=mode_name >\n< POWER_MODEL ID=0 NAME=15W >\nCPU_ONLINE CORE_0 1\n"
            b"< POWER_MODEL ID=2 NAME=MAXN_SUPER >\n<POWER_MODEL ID=3 NAME=7W>\n< POWER_MODEL ID=0 NAME=LATER >\n"
            b"< POWER_MODEL NAME=X ID=4 >\n< POWER_MODEL ID=5 NAME= >\n< PM_CONFIG DEFAULT=2 >\n")
    assert parse_mode_names(conf) == {0: "15W", 2: "MAXN_SUPER", 3: "7W"}
    assert parse_mode_names(b"\xff\xfe") == {} and parse_mode_names(None) == {}


@pytest.mark.parametrize("text, expected", [
    (b"NVIDIA Jetson AGX Orin Developer Kit\x00", "NVIDIA Jetson AGX Orin Developer Kit"),
    (b"orin\n", "orin"), (b"  5.15.148-tegra  \n", "5.15.148-tegra"),
    (b"\x00", None), (b"", None), (b"\n", None), (b"a\x00b", None), (b"\xff\xfe", None), (b"a\tb", None),
    (b"x" * 201, None), (None, None),
])
def test_one_line_words(text, expected):
    assert parse_word(text) == expected


@pytest.mark.parametrize("pwm, full, expected", [
    (107, 255, 42.0), (255, 255, 100.0), (0, 255, 0.0), (77, 255, 30.2), (50, 100, 50.0),
    (256, 255, None), (None, 255, None), (10, 0, None), (10, None, None),
])
def test_pwm_as_percent_of_full_scale(pwm, full, expected):
    assert pwm_percent(pwm, full) == expected


@pytest.mark.parametrize("text, expected", [
    (b"12\n", 12), (b"0", 0), (b" 2100 \n", 2100), (b"-5\n", None), (b"banana\n", None), (b"1.5\n", None),
    (b"99999999\n", None), (b"", None), (None, None),
])
def test_counts(text, expected):
    assert parse_count(text) == expected


@pytest.mark.parametrize("text, expected", [
    (b"12345.67 45678.90\n", 12345.67), (b"0.00 0.00\n", 0.0), (b"soon\n", None), (b"-1 0\n", None),
    (b"nan 0\n", None), (b"inf 0\n", None), (b"", None), (None, None),
])
def test_uptime(text, expected):
    assert parse_uptime(text) == expected


def test_the_sysroot_comes_from_the_environment_or_is_slash():
    assert sysroot_from_environ({}) == "/"
    assert sysroot_from_environ({"TEGRASTATS_API_SYSROOT": ""}) == "/"
    assert sysroot_from_environ({"TEGRASTATS_API_SYSROOT": " /host "}) == "/host"


# --- the reader over fake roots --------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_fake_root_gives_its_facts(name):
    assert facts(root(name)) == dict(EXPECTED[name], source="board")


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_each_document_follows_the_openapi_schema(name):
    from jsonschema import Draft202012Validator, ValidationError

    from tegrastats_api.openapi import build_spec

    schema = Draft202012Validator(build_spec()["components"]["schemas"]["Board"])
    for source in ("board", "replay"):
        schema.validate(BoardReader(root(name), source=source).facts().to_dict("2025-10-09T08:53:20.000Z"))
    schema.validate(BoardReader(None).facts().to_dict("2025-10-09T08:53:20.000Z"))
    with pytest.raises(ValidationError, match="is not one of"):
        schema.validate(dict(BoardReader(None).facts().to_dict(None), source="tegrastats"))


def test_missing_files_give_nulls_and_no_sysroot_reads_nothing(tmp_path):
    assert facts(str(tmp_path)) == dict(NULLS, source="board")
    assert facts(str(tmp_path / "does-not-exist")) == dict(NULLS, source="board")
    assert facts(None) == dict(NULLS, source="board")  # type: ignore[arg-type]
    assert facts(str(tmp_path), source="replay")["source"] == "replay"
    with pytest.raises(ValueError):
        BoardReader(str(tmp_path), source="tegrastats")


def test_a_status_naming_a_mode_the_conf_lacks(tmp_path):
    board = copy_root(tmp_path)
    (board / "var/lib/nvpmodel/status").write_text("pmode:0009\n")
    assert facts(str(board))["power_mode"] == {"id": 9, "name": None}
    (board / "etc/nvpmodel.conf").unlink()
    (board / "var/lib/nvpmodel/status").write_text("pmode:0002\n")
    assert facts(str(board))["power_mode"] == {"id": 2, "name": None}
    (board / "var/lib/nvpmodel/status").unlink()
    assert facts(str(board))["power_mode"] is None


def test_an_unknown_release_has_l4t_but_no_jetpack(tmp_path):
    board = copy_root(tmp_path)
    (board / "etc/nv_tegra_release").write_text("# R99 (release), REVISION: 1.0, GCID: 1, BOARD: generic\n")
    got = facts(str(board))
    assert (got["l4t"], got["jetpack"]) == ("99.1.0", None)


def test_no_file_can_block_or_flood_the_reader(tmp_path):
    """A FIFO (no writer: a blocking open would hang), a directory, a device and a 2 MB file
    where files should be: null, at once."""
    board = copy_root(tmp_path)
    os.unlink(str(board / "proc/device-tree/model"))
    os.mkfifo(str(board / "proc/device-tree/model"))
    os.unlink(str(board / "var/lib/nvpmodel/status"))
    os.mkfifo(str(board / "var/lib/nvpmodel/status"))
    os.unlink(str(board / "proc/uptime"))
    os.symlink("/dev/zero", str(board / "proc/uptime"))
    (board / "etc/nv_tegra_release").unlink()
    (board / "etc/nv_tegra_release").mkdir()
    (board / "etc/nvpmodel.conf").write_text("< POWER_MODEL ID=2 NAME=BIG >\n" + "#" * (2 * 1024 * 1024))
    result: Dict[str, Any] = {}
    reader = threading.Thread(target=lambda: result.update(facts(str(board))), daemon=True)
    reader.start()
    reader.join(10)
    assert not reader.is_alive(), "reading the board blocked"
    assert result["model"] is None and result["power_mode"] is None and result["uptime"] is None
    assert result["l4t"] is None and result["fans"] == EXPECTED["jp6-orin-nano"]["fans"]


def test_two_pwmfan_devices_and_one_tachometer(tmp_path):
    """rbonghi/jetson_stats#907: names pwmfan, pwmfan, nvme, pwm_tach; the names are made unique
    and the tachometer, which could belong to either fan, is given to neither."""
    hwmon = tmp_path / "sys/class/hwmon"
    for number, name, files in [(0, "pwmfan", {"pwm1": "128"}), (1, "pwmfan", {"pwm1": "255"}),
                                (2, "nvme", {}), (3, "pwm_tach", {"rpm": "3000"}), (10, "pwmfan", {"pwm1": "0"})]:
        device = hwmon / ("hwmon%d" % number)
        device.mkdir(parents=True)
        (device / "name").write_text(name + "\n")
        for file, value in files.items():
            (device / file).write_text(value + "\n")
    assert facts(str(tmp_path))["fans"] == [
        {"name": "pwmfan", "speed": 50.2, "rpm": None}, {"name": "pwmfan_2", "speed": 100.0, "rpm": None},
        {"name": "pwmfan_3", "speed": 0.0, "rpm": None},  # hwmon10 after hwmon3, not after hwmon1
    ]
    (hwmon / "hwmon1").rename(hwmon / "gone")
    (hwmon / "hwmon10").rename(hwmon / "gone10")
    assert facts(str(tmp_path))["fans"] == [{"name": "pwmfan", "speed": 50.2, "rpm": 3000}]


def test_an_hwmon_fan_wins_over_the_jetpack_4_layout(tmp_path):
    board = copy_root(tmp_path, "jp4-nano")
    device = board / "sys/class/hwmon/hwmon0"
    device.mkdir(parents=True)
    (device / "name").write_text("pwmfan\n")  # JetPack 4's pwmfan hwmon has no pwm1: not a fan
    assert facts(str(board))["fans"] == EXPECTED["jp4-nano"]["fans"]
    (device / "pwm1").write_text("51\n")
    assert facts(str(board))["fans"] == [{"name": "pwmfan", "speed": 20.0, "rpm": None}]
    (board / "sys/devices/pwm-fan/pwm_cap").write_text("0\n")
    (device / "pwm1").unlink()
    assert facts(str(board))["fans"] == [{"name": "pwm-fan", "speed": None, "rpm": 1380}]


def test_static_facts_once_dynamic_ones_every_few_seconds(tmp_path):
    board = copy_root(tmp_path)
    clock = FakeClock(1000.0)
    reader = BoardReader(str(board), clock=clock)
    first = reader.facts()
    (board / "proc/device-tree/model").write_bytes(b"Another board\x00")
    (board / "sys/class/hwmon/hwmon0/pwm1").write_text("255\n")
    (board / "var/lib/nvpmodel/status").write_text("pmode:0003\n")
    clock.advance(1.5)
    second = reader.facts()
    assert second.fans == first.fans and second.power_mode_name == "MAXN_SUPER"
    assert second.uptime_s == pytest.approx(12345.6 + 1.5)  # the last reading plus the time since
    clock.advance(0.5)
    third = reader.facts()
    assert third.fans[0].speed_pct == 100.0 and third.power_mode_name == "7W" and third.uptime_s == 12345.6
    assert third.model == first.model == EXPECTED["jp6-orin-nano"]["model"]  # read once
    clock.advance(-50)  # a clock that goes back reads again rather than trusting the cache
    (board / "sys/class/hwmon/hwmon0/pwm1").write_text("0\n")
    assert reader.facts().fans[0].speed_pct == 0.0


def test_simulated_boards_carry_their_recorded_identity_only(tmp_path):
    assert set(list_boards()) == set(SIMULATED_BOARDS), "every --simulate board needs its identity"
    for name, recorded in SIMULATED_BOARDS.items():
        assert recorded.model.startswith("NVIDIA Jetson ")
        assert recorded.jetpack == jetpack_for(recorded.l4t) if recorded.l4t else recorded.jetpack is None
        assert name.replace("-", " ").split()[-1].lower() in recorded.model.lower()
    got = BoardReader.for_source("simulator", "thor", root("jp6-orin-nano")).facts().to_dict(None)
    assert (got["model"], got["l4t"], got["jetpack"]) == ("NVIDIA Jetson AGX Thor 128GB", "38.4.0", "7.1")
    assert got["power_mode"] is None and got["fans"] == [] and got["source"] == "simulator"
    assert got["hostname"] == "orin" and got["kernel"] == "5.15.148-tegra"  # the machine that serves
    assert BoardReader.for_source("replay", None, root("jp7-thor")).facts().model == EXPECTED["jp7-thor"]["model"]
    assert BoardReader.for_source("tegrastats", None, root("jp7-thor")).facts().source == "board"
    assert BoardReader.for_source("simulator", "no-such-board", None).facts().model is None


def test_the_start_up_description():
    assert BoardReader(root("jp6-orin-nano")).facts().describe() == (
        "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super, JetPack 6.2 (L4T 36.4.3), "
        "power mode MAXN_SUPER, fan 42%")
    assert BoardReader(None).facts().describe() == "unknown board"
    assert BoardReader.for_source("simulator", "nano", None).facts().describe() == "simulated NVIDIA Jetson Nano 4GB"
    # the same from the JSON a client got (what a terminal view of /api/board prints)
    from tegrastats_api.board import describe

    document = json.loads(json.dumps(BoardReader(root("jp4-nano")).facts().to_dict(None)))
    assert describe(document) == ("NVIDIA Jetson Nano Developer Kit, JetPack 4.6.6 (L4T 32.7.6), power mode 5W, "
                                  "fan 30.2%")
    assert describe({"power_mode": {"id": 9, "name": None}, "fans": [{"name": "pwmfan", "speed": None}]}) == (
        "unknown board, power mode 9, fan ?%")


# --- through the real server ---------------------------------------------------------------


@pytest.fixture
def replay_file(tmp_path):
    path = tmp_path / "log.txt"
    path.write_text("\n".join(line for _id, line in read_transport_lines()[:3]) + "\n")
    return str(path)


def scrape(text: str) -> Dict[Any, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.parametrize("name", sorted(EXPECTED) + ["(none)"])
def test_run_with_a_sysroot_serves_the_board_everywhere(server_process, replay_file, tmp_path, name):
    sysroot = root(name) if name != "(none)" else str(tmp_path / "empty")
    expected = dict(EXPECTED.get(name, NULLS), source="replay")
    server = server_process("--replay", replay_file, healthy=True, env={"TEGRASTATS_API_SYSROOT": sysroot})
    answer = server.get("/api/board")
    assert answer.status_code == 200 and answer.headers["Content-Type"].startswith("application/json")
    board = answer.json()
    assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$", board.pop("timestamp"))
    uptime, board["uptime"] = board["uptime"], expected["uptime"]
    assert board == expected
    assert (uptime is None) == (expected["uptime"] is None) and (uptime is None or uptime >= expected["uptime"])
    assert server.health()["model"] == expected["model"]
    series = scrape(server.get("/metrics").text)
    info = {"source": "replay", "version": __version__, "model": expected["model"] or "",
            "l4t": expected["l4t"] or "", "jetpack": expected["jetpack"] or ""}
    infos = [dict(labels) for (metric, labels) in series if metric == "jetson_info"]
    assert len(infos) == 1 and infos[0].pop("board") and infos[0] == info
    mode = expected["power_mode"]
    modes = [labels for (metric, labels) in series if metric == "jetson_power_mode_info"]
    assert modes == ([] if mode is None else [(("id", str(mode["id"])), ("name", mode["name"] or ""))])
    for fan in expected["fans"]:
        assert series.get(("jetson_fan_speed_ratio", (("fan", fan["name"]),))) == (
            None if fan["speed"] is None else pytest.approx(fan["speed"] / 100))
        assert series.get(("jetson_fan_rpm", (("fan", fan["name"]),))) == fan["rpm"]
    described = BoardReader(sysroot, source="replay").facts().describe()
    assert re.search(r"INFO tegrastats_api\.app: %s; serving on http://127\.0\.0\.1:%d \(source: replay; "
                     % (re.escape(described), server.port), server.log()), server.log()


def test_the_metrics_of_every_fake_root_are_promtool_clean(server_process, replay_file):
    promtool = shutil.which("promtool")
    require_tool(promtool, "promtool (Debian package prometheus)")
    for name in sorted(EXPECTED):
        server = server_process("--replay", replay_file, healthy=True, env={"TEGRASTATS_API_SYSROOT": root(name)})
        text = server.get("/metrics").text
        server.stop()
        assert "jetson_fan_speed_ratio{" in text or name == "garbage"
        result = subprocess.run([promtool, "check", "metrics"], input=text.encode(), capture_output=True, timeout=30)
        assert result.returncode == 0 and not result.stdout and not result.stderr, (
            name, result.stdout.decode() + result.stderr.decode())


def test_a_simulated_board_says_so_whatever_the_sysroot(server_process):
    server = server_process("--simulate", "thor", healthy=True,
                            env={"TEGRASTATS_API_SYSROOT": root("jp6-orin-nano")})
    board = server.get("/api/board").json()
    assert (board["source"], board["model"], board["jetpack"], board["fans"], board["power_mode"]) == (
        "simulator", "NVIDIA Jetson AGX Thor 128GB", "7.1", [], None)
    assert board["hostname"] == "orin"
    assert server.health()["model"] == "NVIDIA Jetson AGX Thor 128GB"
    assert "simulated NVIDIA Jetson AGX Thor 128GB, JetPack 7.1 (L4T 38.4.0); serving on" in server.log()


class TestBoardEndpointRules(hub_app_case()):
    """Same auth, CORS and error rules as the other data endpoints; the Socket.IO and /ws
    document stays the sample."""

    __test__ = True

    def get_app(self):
        from tegrastats_api.app import make_app
        from tegrastats_api.config import Config
        from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
        from tegrastats_api.sio_route import SocketIORoute

        self.config = Config(host="127.0.0.1", port=0, auth_token="s3cret", cors_origins="https://grafana.example")
        self.clock = FakeClock()
        self.hub = SnapshotHub("replay", clock=self.clock, interval_s=1.0)
        self.limiter = ConnectionLimiter(self.config.max_connections)
        board = BoardReader(root("jp7-thor"), source="replay")
        return make_app(self.hub, self.limiter, SocketIORoute(self.hub, self.limiter, self.config), self.config,
                        board=board)

    def test_token_cors_options_head_and_json_errors(self):
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            response = self.fetch("/api/board", headers=headers)
            self.assertEqual(response.code, 401)
            self.assertEqual(json.loads(response.body), {"error": "missing or invalid token", "status": 401})
        ok = self.fetch("/api/board", headers={"Authorization": "Bearer s3cret", "Origin": "https://grafana.example"})
        self.assertEqual(ok.code, 200)  # before the first sample too: board facts do not wait for one
        self.assertEqual(ok.headers["Access-Control-Allow-Origin"], "https://grafana.example")
        self.assertEqual(ok.headers["Cache-Control"], "no-store")
        body = json.loads(ok.body)
        self.assertEqual((body["model"], body["source"]), (EXPECTED["jp7-thor"]["model"], "replay"))
        self.assertEqual(body["timestamp"], "2025-10-09T08:53:20.000Z")  # the hub's clock
        self.assertEqual(self.fetch("/api/board?token=s3cret").code, 200)
        self.assertEqual(self.fetch("/api/board", method="OPTIONS").code, 204)
        head = self.fetch("/api/board", method="HEAD", headers={"Authorization": "Bearer s3cret"})
        self.assertEqual((head.code, head.body), (200, b""))
        post = self.fetch("/api/board", method="POST", body=b"{}", headers={"Authorization": "Bearer s3cret"})
        self.assertEqual((post.code, json.loads(post.body)["status"]), (405, 405))
        self.assertEqual(self.fetch("/api/boards?token=s3cret").code, 404)
        health = json.loads(self.fetch("/api/health").body)  # open without the token
        self.assertEqual(health["model"], EXPECTED["jp7-thor"]["model"])

    def test_the_pushed_document_is_still_the_sample(self):
        self.feed()
        status = json.loads(self.fetch("/api/status?token=s3cret").body)
        for key in ("model", "l4t", "jetpack", "power_mode", "fans", "uptime"):
            self.assertNotIn(key, status)
        self.assertEqual(self.hub.latest_json, self.fetch("/api/status?token=s3cret").body)


def test_a_live_server_without_board_files_still_answers(live_server, transport_lines):
    """The test machine has none of the board's files (or some of them): never an error."""
    server = live_server(transport_lines[:1])
    board = requests.get(server.url + "/api/board", timeout=5).json()
    assert set(board) == set(NULLS) | {"source", "timestamp"} and board["source"] == "replay"


# --- the documentation ------------------------------------------------------------------------


def test_the_doc_example_and_jetpack_table_are_the_servers():
    from tegrastats_api.openapi import build_spec

    doc = open(os.path.join(os.path.dirname(TESTS_DIR), "docs", "API.md"), encoding="utf-8").read()
    section = doc[doc.index("### `GET /api/board`"):]
    section = section[:section.index("\n### ", 10)]
    example = json.loads(re.search(r"<!-- doc-test: board -->\n```json\n(.*?)```", section, re.S).group(1))
    assert list(example) == list(BoardReader(None).facts().to_dict(None))
    from jsonschema import Draft202012Validator

    Draft202012Validator(build_spec()["components"]["schemas"]["Board"]).validate(example)
    keys = set(re.findall(r"^\| `([a-z][a-z0-9_\[\].]*)` \|", section, re.M))
    assert keys == set(example) | {"fans[].name", "fans[].speed", "fans[].rpm"}
    table = dict(re.findall(r"`(\d+\.\d+\.\d+)` \| ([0-9][0-9. A-Z]*?) (?=\|)", section))
    assert table == JETPACK_BY_L4T
    assert "TEGRASTATS_API_SYSROOT" in section
