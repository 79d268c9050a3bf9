"""The MQTT messages without a broker: tegrastats_api.discovery and tegrastats_api.broker.

What it proves, on every recorded board and every real line of samples.tsv: the discovery
configs pass Home Assistant's schema (tests/ha_schema.py) with unique ids and safe topic
parts, each template renders (Jinja2, as Home Assistant does) the document's own value, no
config for a sensor the line lacks or for PMIC's pseudo-reading, a state message of under
1 kB; and the broker URL is parsed in every accepted form with its password in no
``str``/``repr``. The broker-side behaviour is in tests/test_mqtt.py.

Pure: no server, no socket.
"""
from __future__ import annotations

import csv
import json
import os
import re

import pytest
from conftest import TESTS_DIR
from ha_schema import check_config

from tegrastats_api import __version__, parse_line
from tegrastats_api.board import SIMULATED_BOARDS
from tegrastats_api.broker import BrokerURL, check_topic, node_id, parse_broker_url
from tegrastats_api.config import Config, ConfigError
from tegrastats_api.discovery import (
    complete_state,
    config_of,
    config_topic,
    device_of,
    encode,
    entities_of,
    state_of,
)
from tegrastats_api.plan import load_board

jinja2 = pytest.importorskip("jinja2")

with open(os.path.join(TESTS_DIR, "fixtures", "tegrastats", "samples.tsv"), encoding="utf-8", newline="") as _f:
    ROWS = [row for row in csv.DictReader(_f, delimiter="\t")]
LINES = [("board:" + board, load_board(board)[0]) for board in sorted(SIMULATED_BOARDS)]
LINES += [("row:" + row["id"], row["line"]) for row in ROWS]
NODE, PREFIX = "tegrastats_orin-01", "tegrastats/orin-01"


def _doc(line: str) -> dict:
    return parse_line(line, received_at=1_760_000_000.0, source="tegrastats").to_dict()


def _value(doc: dict, object_id: str):
    """The value an entity must show, read from the document by hand (units: %, °C, W, MB)."""
    ram = doc["memory"]["ram"]
    fixed = {"cpu_usage": doc["cpu"]["usage"], "gpu_usage": doc["gpu"]["usage"], "ram_used": ram["used"],
             "ram_used_pct": round(ram["used"] * 100.0 / ram["total"], 1),
             "swap_used": (doc["memory"]["swap"] or {}).get("used"), "emc_load": (doc["emc"] or {}).get("usage")}
    if object_id in fixed:
        return fixed[object_id]
    kind, _, name = object_id.partition("_")
    if kind == "temp":
        return doc["temperature"][name]
    if kind == "rail":
        return doc["power"][name]["current"] / 1000.0
    if kind == "engine":
        return "ON" if doc["engines"][name]["online"] else "OFF"
    assert object_id == "power_input", object_id
    rails = doc["power"]
    named = [rails[n]["current"] for n in ("vdd_in", "pom_5v_in", "vin") if n in rails]
    return (named[0] if named else sum(r["current"] for r in rails.values())) / 1000.0


@pytest.mark.parametrize("name, line", LINES, ids=[name for name, _ in LINES])
def test_configs_pass_the_schema_and_templates_render_the_documents_values(name, line):
    doc = _doc(line)
    device = device_of(NODE, "orin-01", {"model": "NVIDIA Jetson", "l4t": "36.4.3", "jetpack": "6.2"})
    entities = entities_of(doc)
    state = json.loads(encode(complete_state(state_of(doc), entities)))
    assert len(encode(state)) < 1024
    seen = set()
    for entity in entities:
        topic = config_topic("homeassistant", NODE, entity)
        config = json.loads(encode(config_of(entity, NODE, PREFIX, device)))
        parts = check_config(topic, config)
        assert (parts["prefix"], parts["node_id"], parts["object_id"]) == ("homeassistant", NODE, entity.object_id)
        assert config["unique_id"] not in seen
        seen.add(config["unique_id"])
        rendered = jinja2.Environment().from_string(config["value_template"]).render(value_json=state)
        assert rendered == str(_value(doc, entity.object_id)), entity.object_id
    ids = {e.object_id for e in entities}
    assert {"temp_" + t for t in doc["temperature"] if t != "pmic"} <= ids
    assert not [i for i in ids if "pmic" in i]
    assert ("swap_used" in ids) == (doc["memory"]["swap"] is not None)
    assert ("gpu_usage" in ids) == (doc["gpu"]["usage"] is not None)
    assert ("power_input" in ids) == bool(doc["power"])
    assert {"rail_" + r for r in doc["power"]} | {"engine_" + e for e in doc["engines"]} <= ids


def test_the_device_carries_the_board_facts_when_known():
    full = device_of(NODE, "orin-01", {"model": "NVIDIA Jetson AGX Orin Developer Kit", "l4t": "36.4.3",
                                       "jetpack": "6.2"})
    assert full == {"identifiers": [NODE], "name": "orin-01", "manufacturer": "NVIDIA",
                    "model": "NVIDIA Jetson AGX Orin Developer Kit", "sw_version": __version__,
                    "hw_version": "L4T 36.4.3 (JetPack 6.2)"}
    bare = device_of(NODE, "orin-01", {"model": None, "l4t": None, "jetpack": None})
    assert bare["model"] == "Jetson" and "hw_version" not in bare
    assert device_of(NODE, "x", {"model": "M", "l4t": "36.9.9", "jetpack": None})["hw_version"] == \
        "L4T 36.9.9 (JetPack ?)"


def test_a_missing_value_is_null_but_a_missing_engine_is_off():
    with_all = _doc(load_board("nano")[0])  # NVENC, NVDEC printed
    without = _doc(load_board("nano")[1])  # not printed: JetPack 4 prints running engines only
    announced = entities_of(with_all)
    assert "engine_nvenc" in {e.object_id for e in announced}
    without["temperature"].pop("gpu")
    state = complete_state(state_of(without), announced)
    assert state["engine"]["nvenc"] == "OFF" and state["temp"]["gpu"] is None
    assert "nvenc" not in state_of(without)["engine"]


@pytest.mark.parametrize("text, parts", [
    ("mqtt://127.0.0.1", ("mqtt", "127.0.0.1", 1883, None, None)),
    ("mqtts://broker.local", ("mqtts", "broker.local", 8883, None, None)),
    ("MQTT://Broker.Local:1884/", ("mqtt", "broker.local", 1884, None, None)),
    ("mqtt://jetson@h", ("mqtt", "h", 1883, "jetson", None)),
    ("mqtt://jetson:@h", ("mqtt", "h", 1883, "jetson", "")),
    ("mqtt://je%40tson:p%3Aw%2F%40x@h:1", ("mqtt", "h", 1, "je@tson", "p:w/@x")),
    ("mqtt://u:p@ss@h", ("mqtt", "h", 1883, "u", "p@ss")),
    ("mqtts://[::1]:8884", ("mqtts", "::1", 8884, None, None)),
])
def test_broker_urls(text, parts):
    url = parse_broker_url(text)
    assert (url.scheme, url.host, url.port, url.username, url.password) == parts
    assert url.tls == (parts[0] == "mqtts")
    if url.password:
        for shown in (str(url), repr(url), repr(Config(mqtt=text)), str(Config(mqtt=text))):
            assert url.password not in shown.replace(str(url.host), "") and "***" in shown


@pytest.mark.parametrize("text", ["", "none", "off", None])
def test_broker_url_off(text):
    assert parse_broker_url(text) is None
    assert Config(mqtt=text).mqtt is None


@pytest.mark.parametrize("text", ["http://h", "mqtt://", "mqtt://h:0", "mqtt://h:65536", "mqtt://h/x",
                                  "mqtt://h?x=1", "mqtt://h#f", "mqtt://u:pw/x@h", "tcp://h:1883", "h:1883"])
def test_broker_url_refused_without_the_password(text):
    with pytest.raises(ValueError) as err:
        parse_broker_url(text)
    assert "pw" not in str(err.value) and "\n" not in str(err.value)


def test_topics_and_node_ids():
    assert check_topic(" a/b/ ") == "a/b"
    for bad in ("", "/", "a/+", "a/#", "/a", "a//b", "a\0b", "x" * 201):
        with pytest.raises(ValueError):
            check_topic(bad)
    assert node_id("tegrastats/orin-01") == "tegrastats_orin-01"
    assert node_id("home/jetson.lab/ü") == "home_jetson_lab"
    assert Config(mqtt="mqtt://h", mqtt_prefix="a/b/").mqtt_prefix == "a/b"
    assert Config().mqtt_prefix.startswith("tegrastats/") and "." not in Config().mqtt_prefix
    assert Config(mqtt_discovery_prefix="None").mqtt_discovery_prefix is None
    with pytest.raises(ConfigError):
        Config(mqtt="mqtt://h", mqtt_interval=0.5)  # below the 1 s sample interval
    assert Config(mqtt_interval=0.5).mqtt_interval == 0.5  # MQTT off: no relation checked
    assert isinstance(Config(mqtt=BrokerURL("mqtt", "h", 1)).mqtt, BrokerURL)


# --- docs/API.md section 6 against the encoding ------------------------------------------

DOC = open(os.path.join(os.path.dirname(TESTS_DIR), "docs", "API.md"), encoding="utf-8").read()


def _doc_block(marker: str) -> str:
    match = re.search(r"<!-- doc-test: %s -->\n```json\n(.*?)\n```" % re.escape(marker), DOC, re.S)
    assert match, "docs/API.md has no block marked %r" % marker
    return match.group(1)


def _orin_doc() -> dict:
    return parse_line(load_board("agx-orin")[0], received_at=1759467254.408, source="tegrastats").to_dict()


def test_the_documented_state_message_is_the_encoding():
    doc = _orin_doc()
    assert _doc_block("mqtt state agx-orin").encode() == encode(complete_state(state_of(doc), entities_of(doc)))


def test_the_documented_config_is_the_encoding():
    shown = json.loads(_doc_block("mqtt config agx-orin temp_tj"))
    facts = {"model": shown["device"]["model"], "l4t": "36.4.3", "jetpack": "6.2"}
    assert shown["device"]["hw_version"] == "L4T 36.4.3 (JetPack 6.2)"
    entity = next(e for e in entities_of(_orin_doc()) if e.object_id == "temp_tj")
    made = config_of(entity, NODE, PREFIX, device_of(NODE, "orin-01", facts))
    shown["device"]["sw_version"] = shown["origin"]["sw_version"] = __version__
    assert shown == made


def _packet(topic: str, payload: bytes, qos: int) -> int:
    """Bytes of an MQTT 3.1.1 PUBLISH: fixed header, topic, packet id (QoS > 0), payload."""
    remaining = 2 + len(topic.encode()) + (2 if qos else 0) + len(payload)
    return 1 + (1 if remaining < 128 else 2 if remaining < 16384 else 3) + remaining


def test_the_size_table_is_the_encoding():
    rows = re.findall(r"^\| ([a-z0-9-]+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \| (\d+) \|$", DOC, re.M)
    assert sorted(r[0] for r in rows) == sorted(SIMULATED_BOARDS)
    for board, entities, payload, packet, rate, configs in rows:
        recorded = SIMULATED_BOARDS[board]
        device = device_of(NODE, "orin-01", {"model": recorded.model, "l4t": recorded.l4t,
                                             "jetpack": recorded.jetpack})
        seen, config_bytes, sizes = set(), 0, []
        for line in load_board(board):
            doc = parse_line(line, received_at=1.76e9, source="tegrastats").to_dict()
            found = entities_of(doc)
            sizes.append(len(encode(complete_state(state_of(doc), found))))
            for entity in found:
                if entity.object_id not in seen:
                    seen.add(entity.object_id)
                    config_bytes += _packet(config_topic("homeassistant", NODE, entity),
                                            encode(config_of(entity, NODE, PREFIX, device)), 1)
        state_packet = _packet(PREFIX + "/state", b"x" * max(sizes), 0)
        assert (int(entities), int(payload), int(packet), int(rate)) == (
            len(seen), max(sizes), state_packet, round(state_packet / 10)), board
        # the configs carry the version twice each: a release changes them by a few bytes
        assert abs(int(configs) - config_bytes) <= 4 * len(seen) * abs(len(__version__) - 5) + 0, board
