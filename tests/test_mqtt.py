"""MQTT publishing against a real broker (Debian's ``mosquitto``) and a real subscriber (paho).

Each test starts its own ``mosquitto`` on a free port of 127.0.0.1 (tests/mqtt_tools.py) and
the server in a child process (``server_process``) or, where its queues are looked at, in
this process. What they prove: the retained Home Assistant discovery configs of every
sensor a board has (and only those), valid against Home Assistant's schema
(tests/ha_schema.py), with templates that take the right value out of a state message
whose values match the server's own documents; availability online, ``offline`` as the will
on ``kill -9`` and from a clean stop; one warning per outage, reconnection by itself after
the broker restarts, REST unaffected meanwhile; nothing queued without bound for a hung
broker; ``mqtts://`` against a test CA, username and password, and the password in no log
or ``config`` output; sensors that disappear removed, stale configs of an earlier run
cleared; discovery off; and every bad setting one line with exit status 2.

Without ``mosquitto`` (or paho-mqtt) the group skips loudly, and fails under ``CI=true``.
"""
from __future__ import annotations

import asyncio
import importlib.util
import io
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from typing import Any, Dict, List, Optional
from urllib.parse import quote

import pytest
from conftest import require_tool
from fault_tools import ROOT_DIR, WAIT_S, wait_until
from mqtt_tools import MOSQUITTO, Broker, Subscriber, make_certs, retained

from tegrastats_api import __version__

PREFIX = "tegrastats/test-board"
NODE = "tegrastats_test-board"
DISCOVERY = "homeassistant"
UPDATE_S, MQTT_S = 0.1, 0.3
IGNORED_SENSORS = ("pmic",)  # PMIC@100C: a fixed pseudo-reading (docs/API.md, MQTT)
OUTAGE_WARNING = "(logged once per outage)"


@pytest.fixture(autouse=True)
def _tools() -> None:
    require_tool(MOSQUITTO, "mosquitto (apt-get install mosquitto)")
    require_tool(importlib.util.find_spec("paho"), "paho-mqtt (pip install -e '.[test]')")


@pytest.fixture
def brokers(tmp_path):
    """``brokers(**options)`` starts a :class:`mqtt_tools.Broker`; all are stopped afterwards."""
    started: List[Broker] = []

    def start(**options: Any) -> Broker:
        broker = Broker(str(tmp_path), **options)
        started.append(broker)
        return broker

    yield start
    for broker in started:
        if broker.proc is not None and broker.proc.poll() is None:
            broker.resume()  # a paused broker would not act on SIGTERM
        broker.stop()


@pytest.fixture
def subscribers():
    made: List[Subscriber] = []

    def make(port: int, topics: Optional[List[str]] = None, **options: Any) -> Subscriber:
        sub = Subscriber(port, topics or [DISCOVERY + "/#", "tegrastats/#"], **options)
        made.append(sub)
        sub.wait_for(lambda _m: sub.connects, what="the subscriber's connection")
        return sub

    yield make
    for sub in made:
        sub.close()


def mqtt_flags(url: str, *extra: str) -> List[str]:
    return ["--update-interval", str(UPDATE_S), "--mqtt", url, "--mqtt-interval", str(MQTT_S),
            "--mqtt-prefix", PREFIX, *extra]


def states(sub: Subscriber, since: int = 0) -> List[Any]:
    return [m.json() for m in sub.on(PREFIX + "/state", since)]


def availability(sub: Subscriber) -> List[bytes]:
    return [m.payload for m in sub.on(PREFIX + "/availability")]


# --- what Home Assistant is told: computed here from the server's documents --------------


def input_power_w(power: Dict[str, Any]) -> Optional[float]:
    """docs/API.md section 2.3: vdd_in, pom_5v_in or vin, else the sum of the rails, in W."""
    for name in ("vdd_in", "pom_5v_in", "vin"):
        if name in power:
            return power[name]["current"] / 1000.0
    return sum(rail["current"] for rail in power.values()) / 1000.0 if power else None


def expected_entities(doc: Dict[str, Any]) -> Dict[str, Any]:
    """``{object_id: value in the state}`` of every entity the document's board has."""
    ram = doc["memory"]["ram"]
    out: Dict[str, Any] = {"cpu_usage": doc["cpu"]["usage"], "ram_used": ram["used"],
                           "ram_used_pct": round(100.0 * ram["used"] / ram["total"], 1)}
    if doc["gpu"]["usage"] is not None:
        out["gpu_usage"] = doc["gpu"]["usage"]
    if doc["memory"]["swap"] is not None:
        out["swap_used"] = doc["memory"]["swap"]["used"]
    if doc["emc"] is not None:
        out["emc_load"] = doc["emc"]["usage"]
    if doc["power"]:
        out["power_input"] = input_power_w(doc["power"])
    out.update({"temp_" + k: v for k, v in doc["temperature"].items() if k not in IGNORED_SENSORS})
    out.update({"rail_" + k: v["current"] / 1000.0 for k, v in doc["power"].items()})
    out.update({"engine_" + k: "ON" if v["online"] else "OFF" for k, v in doc["engines"].items()})
    return out


def render(template: str, state: Dict[str, Any]) -> str:
    """A value_template as Home Assistant renders it: Jinja2 with ``value_json``."""
    jinja2 = pytest.importorskip("jinja2")
    return jinja2.Environment().from_string(template).render(value_json=state)


def check_state_against(state: Dict[str, Any], doc: Dict[str, Any], configs: Dict[str, Any]) -> None:
    """Every announced entity's template, rendered on ``state``, gives the document's value: an
    engine the sample does not print is off (JetPack 4 prints only those running), any other
    value it lacks unknown (``None``)."""
    want = expected_entities(doc)
    assert state["ts"] == doc["timestamp"]
    assert set(want) <= {topic.split("/")[-2] for topic in configs}
    for topic, config in configs.items():
        object_id = topic.split("/")[-2]
        absent = "OFF" if object_id.startswith("engine_") else "None"
        assert render(config["value_template"], state) == str(want.get(object_id, absent)), object_id


# --- the board's configs and states -------------------------------------------------------


@pytest.mark.parametrize("board", ["agx-orin", "nano", "tx1"])
def test_retained_configs_of_every_sensor_and_states_that_match_the_api(board, brokers, subscribers,
                                                                         server_process):
    from ha_schema import check_config

    broker = brokers()
    sub = subscribers(broker.port)
    server = server_process("--simulate", board, *mqtt_flags("mqtt://127.0.0.1:%d" % broker.port))
    sub.wait_for(lambda _m: len(states(sub)) >= 4, what="four state messages")
    docs = {d["timestamp"]: d for d in server.get("/api/history").json()["samples"]}
    facts = server.get("/api/board").json()
    held = retained(broker.port, DISCOVERY + "/#")
    configs = {topic: json.loads(payload) for topic, payload in held.items()}

    # every entity the board's samples have, and no other, retained; valid for Home Assistant
    entities = {object_id for doc in docs.values() for object_id in expected_entities(doc)}
    assert sorted(t.split("/")[-2] for t in configs) == sorted(entities)
    assert not [t for t in configs if "pmic" in t]
    assert ("swap_used" in {t.split("/")[-2] for t in configs}) == (board != "tx1")
    unique_ids = [c["unique_id"] for c in configs.values()]
    assert len(set(unique_ids)) == len(unique_ids)
    for topic, config in configs.items():
        parts = check_config(topic, config)
        assert (parts["prefix"], parts["node_id"]) == (DISCOVERY, NODE)
        assert parts["component"] == ("binary_sensor" if parts["object_id"].startswith("engine_") else "sensor")
        assert config["state_topic"] == PREFIX + "/state"
        assert config["availability_topic"] == PREFIX + "/availability"
        assert config["device"] == {"identifiers": [NODE], "name": "test-board", "manufacturer": "NVIDIA",
                                    "model": facts["model"], "sw_version": __version__,
                                    **({"hw_version": "L4T %s (JetPack %s)" % (facts["l4t"], facts["jetpack"])}
                                       if facts["l4t"] else {})}
    units = {topic.split("/")[-2]: c.get("unit_of_measurement") for topic, c in configs.items()}
    assert {units[k] for k in units if k.startswith("temp_")} == {"°C"}
    assert {units[k] for k in units if k.startswith(("rail_", "power_"))} == {"W"}
    assert (units["cpu_usage"], units["ram_used"], units["ram_used_pct"]) == ("%", "MB", "%")

    # each state message: the values of the sample it names, and every template finds its own
    sent = states(sub)
    matched = [s for s in sent if s["ts"] in docs]
    assert len(matched) >= 3, "state messages whose sample /api/history no longer holds"
    for state in matched:
        check_state_against(state, docs[state["ts"]], configs)
    assert held[DISCOVERY + "/sensor/%s/cpu_usage/config" % NODE]  # retained, not only sent
    assert retained(broker.port, PREFIX + "/#") == {PREFIX + "/availability": b"online"}  # state not retained

    # one state per --mqtt-interval, driven by the samples: fewer states than samples, each
    # at least the interval (less half a sample) after the one before
    stamps = [time.mktime(time.strptime(s["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(s["ts"][19:23])
              for s in sent]
    gaps = [b - a for a, b in zip(stamps, stamps[1:])]
    assert gaps and min(gaps) >= MQTT_S - UPDATE_S / 2 - 0.02, gaps
    samples = [d for d in docs.values() if stamps[0] <= time.mktime(time.strptime(
        d["timestamp"][:19], "%Y-%m-%dT%H:%M:%S")) + float(d["timestamp"][19:23]) <= stamps[-1]]
    assert len(sent) < len(samples)


def test_discovery_none_publishes_state_and_availability_only(brokers, subscribers, server_process):
    broker = brokers()
    sub = subscribers(broker.port, ["#"])
    server_process("--simulate", "orin-nano", *mqtt_flags("mqtt://127.0.0.1:%d" % broker.port),
                   "--mqtt-discovery-prefix", "none")
    sub.wait_for(lambda _m: len(states(sub)) >= 3, what="three state messages")
    assert {m.topic for m in sub.snapshot()} == {PREFIX + "/state", PREFIX + "/availability"}
    state = states(sub)[-1]
    assert set(state) == {"cpu", "gpu", "ram", "ram_pct", "swap", "emc", "power", "temp", "rail", "engine", "ts"}


# --- availability: the will, a clean stop --------------------------------------------------


def test_kill_9_shows_offline_through_the_will_and_a_clean_stop_publishes_it(brokers, subscribers,
                                                                            server_process):
    broker = brokers()
    sub = subscribers(broker.port)
    flags = mqtt_flags("mqtt://127.0.0.1:%d" % broker.port)
    server = server_process("--simulate", *flags)
    sub.wait_for(lambda _m: availability(sub) == [b"online"], what="online")
    server.proc.send_signal(signal.SIGKILL)
    server.proc.wait(WAIT_S)
    sub.wait_for(lambda _m: availability(sub)[-1:] == [b"offline"], what="the will (offline)")
    assert retained(broker.port, PREFIX + "/availability") == {PREFIX + "/availability": b"offline"}
    # The broker saw the connection die, not a DISCONNECT ("Client X disconnected."): a FIN
    # ("closed its connection.") or, when the kernel had unread bytes for the killed
    # process, a reset ("Socket error on client X, disconnecting."); its log may lag the will.
    client = "tegrastats-api-%s-%d" % (NODE, server.proc.pid)
    unclean = ("Client %s closed its connection." % client, "Socket error on client %s, disconnecting." % client)
    wait_until(lambda: any(line in broker.log() for line in unclean), what="the broker's log of the lost connection")
    assert "Client %s disconnected." % client not in broker.log()

    server.start()  # again, then a clean stop
    sub.wait_for(lambda _m: availability(sub)[-1:] == [b"online"], what="online again")
    count = len(availability(sub))
    assert server.stop(signal.SIGTERM) == 0
    sub.wait_for(lambda _m: len(availability(sub)) > count, what="offline at the clean stop")
    assert availability(sub)[count:] == [b"offline"]
    assert retained(broker.port, PREFIX + "/availability") == {PREFIX + "/availability": b"offline"}
    # a clean DISCONNECT: the broker discards the will, so that `offline` was the server's own
    assert "Client tegrastats-api-%s-%d disconnected." % (NODE, server.proc.pid) in broker.log()
    assert "MQTT" not in "".join(line for line in server.log().splitlines() if line.startswith("WARNING"))


# --- outages ------------------------------------------------------------------------------


def _rest_times(server, count: int) -> List[float]:
    times = []
    for _ in range(count):
        started = time.monotonic()
        assert server.get("/api/status", timeout=2.0).status_code == 200
        times.append(time.monotonic() - started)
        time.sleep(0.05)
    return times


def test_broker_restart_one_warning_rest_unaffected_and_publishing_resumes(brokers, subscribers,
                                                                          server_process):
    broker = brokers()
    sub = subscribers(broker.port)
    server = server_process("--simulate", *mqtt_flags("mqtt://127.0.0.1:%d" % broker.port))
    sub.wait_for(lambda _m: len(states(sub)) >= 2, what="state messages")
    before = _rest_times(server, 20)
    broker.stop()
    wait_until(lambda: OUTAGE_WARNING in server.log(), what="the outage warning")
    during = _rest_times(server, 60)  # 3 s or more: several reconnection attempts (1 s, 2 s...)
    assert server.health()["status"] == "healthy"
    print("REST /api/status median: broker up %.1f ms, down %.1f ms" % (
        1000 * sorted(before)[10], 1000 * sorted(during)[30]))
    seen = len(sub.snapshot())
    broker.start()  # same port, no persistence: the retained configs are gone
    sub.wait_for(lambda _m: len(states(sub, seen)) >= 2, timeout=20, what="state messages after the restart")
    wait_until(lambda: "again after" in server.log(), what="the reconnection line")
    log = server.log()
    assert log.count(OUTAGE_WARNING) == 1, log
    attempts = int(re.search(r"again after \d+ s \((\d+) failed attempts\)", log).group(1))
    assert attempts >= 2, log  # several attempts, one warning
    held = retained(broker.port, "#")
    assert held[PREFIX + "/availability"] == b"online"
    assert len([t for t in held if t.startswith(DISCOVERY + "/")]) >= 10  # announced again


def test_broker_down_at_start_then_up(brokers, subscribers, server_process):
    broker = brokers()
    broker.stop()
    server = server_process("--simulate", *mqtt_flags("mqtt://127.0.0.1:%d" % broker.port))
    assert server.get("/api/status").status_code == 200
    wait_until(lambda: OUTAGE_WARNING in server.log(), what="the outage warning")
    broker.start()
    sub = subscribers(broker.port)
    sub.wait_for(lambda _m: states(sub), timeout=20, what="a state message")
    assert server.log().count(OUTAGE_WARNING) == 1


def test_a_hung_broker_queues_nothing_without_bound_and_publishing_resumes(brokers, subscribers, transport_lines):
    """In this process: the bridge's and paho's queues while the broker is stopped (SIGSTOP: the
    connection stays, nothing is read) and samples keep coming. The client's socket buffer is
    made small so that it fills after a few hundred messages, not 5 MB. The lines cycle through
    six boards, so Home Assistant configs come and go all the time (QoS 1, retained): paho
    holds at most MAX_QUEUED of them and refuses more; once the broker is back, what it
    retains is exactly what the bridge has announced, for the board of the last lines."""
    from tegrastats_api.config import Config
    from tegrastats_api.hub import SnapshotHub
    from tegrastats_api.mqtt import MAX_PENDING, MAX_QUEUED, MqttBridge

    broker = brokers()
    sub = subscribers(broker.port, [PREFIX + "/state"])
    clock = [0.0]
    lines = transport_lines

    async def main() -> Dict[str, Any]:
        config = Config(mqtt="mqtt://127.0.0.1:%d" % broker.port, mqtt_prefix=PREFIX, update_interval=1.0,
                        mqtt_interval=1.0)
        hub = SnapshotHub("replay", interval_s=1.0)
        bridge = MqttBridge(config, hub, clock=lambda: clock[0])
        bridge.client.on_socket_open = lambda _c, _u, sock: sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
        fed = 0

        def feed() -> None:
            nonlocal fed
            clock[0] += 1.0  # every sample is due
            hub.feed_line(lines[fed % len(lines)])
            fed += 1

        bridge.start()
        try:
            await _until(lambda: bridge.connected, "connected")
            feed()
            await _until(lambda: len(states(sub)) == 1, "the first state")
            broker.pause()
            deadline = time.monotonic() + 30
            while bridge.skipped == 0:
                assert time.monotonic() < deadline, "the broker's stall went unnoticed (%d fed)" % fed
                feed()
                await asyncio.sleep(0.001)
            out = {"skipped_then": bridge.skipped, "published_then": bridge.published, "max_pending": 0,
                   "max_state_packets": 0, "max_packets": 0, "max_qos1": 0}
            for n in range(3000):
                feed()
                out["max_pending"] = max(out["max_pending"], len(bridge._pending))
                packets = list(bridge.client._out_packet)
                out["max_state_packets"] = max(out["max_state_packets"], sum(p["qos"] == 0 for p in packets))
                out["max_packets"] = max(out["max_packets"], len(packets))
                out["max_qos1"] = max(out["max_qos1"], len(bridge.client._out_messages))
                if n % 50 == 0:
                    await asyncio.sleep(0.001)
            out["skipped"] = bridge.skipped
            out["published"] = bridge.published
            broker.resume()
            before = bridge.published
            deadline = time.monotonic() + WAIT_S
            while bridge.published < before + 5 and time.monotonic() < deadline:
                feed()
                await asyncio.sleep(0.02)
            out["resumed"] = bridge.published - before
            await _until(lambda: fed_again(bridge), "the configs of one board, all acknowledged", timeout=20)
            out["announced"] = announced_topics(bridge)
            out["inflight_limit"] = bridge.client._max_inflight_messages
            return out
        finally:
            await bridge.stop()

    def fed_again(bridge: Any) -> bool:
        """Feeds the last line again; whether the bridge has :func:`settled`."""
        clock[0] += 1.0
        bridge.hub.feed_line(lines[-1])
        return settled(bridge)

    seen = asyncio.run(main())
    print({k: v for k, v in seen.items() if k != "announced"})
    assert sorted(retained(broker.port, DISCOVERY + "/#")) == seen["announced"]
    # 3000 samples while it hangs: each one is written to the socket or skipped, never queued
    assert seen["skipped"] - seen["skipped_then"] + seen["published"] - seen["published_then"] == 3000, seen
    assert seen["skipped"] - seen["skipped_then"] >= 1000, seen
    # state messages: the bridge's own bound (+1 being written); configs: paho's inflight limit
    assert seen["max_pending"] <= MAX_PENDING and seen["max_state_packets"] <= MAX_PENDING + 1, seen
    assert seen["max_packets"] <= MAX_PENDING + 1 + seen["inflight_limit"] and seen["max_qos1"] <= MAX_QUEUED, seen
    assert seen["resumed"] >= 5, seen
    sub.wait_for(lambda _m: len(states(sub)) >= seen["published"], timeout=20,
                 what="every state message written, before the stall and after it")


def test_configs_paho_refuses_are_published_again(brokers, transport_lines, monkeypatch):
    """Paho holds at most MAX_QUEUED QoS 1 messages and refuses more (a broker that took
    nothing for long while entities came and went). Here it may hold 3, so most of a board's
    configs are refused at first, and so are most removals when another board follows, and
    most clearings of an earlier run's configs: each is published again with the next sample
    until the broker retains exactly what the bridge has announced."""
    from tegrastats_api import mqtt
    from tegrastats_api.config import Config
    from tegrastats_api.discovery import entities_of, removable
    from tegrastats_api.hub import SnapshotHub

    monkeypatch.setattr(mqtt, "MAX_QUEUED", 3)
    broker = brokers()
    first, second = transport_lines[0], transport_lines[-1]

    def entities(line: str) -> Dict[str, bool]:
        hub = SnapshotHub("replay")
        hub.feed_line(line)
        return {e.object_id: removable(e) for e in entities_of(hub.history[-1].document)}

    async def run_bridge(*lines: str) -> Dict[str, Any]:
        """A bridge fed each line in turn until the broker retains what it has announced."""
        config = Config(mqtt="mqtt://127.0.0.1:%d" % broker.port, mqtt_prefix=PREFIX, update_interval=1.0,
                        mqtt_interval=1.0)
        clock = [0.0]
        hub = SnapshotHub("replay", interval_s=1.0)
        bridge = mqtt.MqttBridge(config, hub, clock=lambda: clock[0])
        seen: Dict[str, Any] = {"topics": []}

        def feed(line: str) -> None:
            clock[0] += 1.0
            hub.feed_line(line)

        def fed_and_settled(line: str) -> bool:
            feed(line)
            return settled(bridge)

        bridge.start()
        try:
            await _until(lambda: bridge.connected and not bridge.client._out_messages, "`online` acknowledged")
            broker.pause()  # no acknowledgement frees room in paho while the first sample is announced
            try:
                feed(lines[0])
                seen["announced_at_once"] = len(bridge._announced)
            finally:
                broker.resume()
            for line in lines:
                await _until(lambda line=line: fed_and_settled(line) and sorted(
                    retained(broker.port, DISCOVERY + "/#")) == announced_topics(bridge),
                    "the broker retaining what the bridge announced")
                seen["topics"].append(announced_topics(bridge))
        finally:
            await bridge.stop()
        return seen

    def ids(topics: List[str]) -> set:
        return {topic.split("/")[-2] for topic in topics}

    one, two = entities(first), entities(second)
    gone = {oid for oid, can_go in one.items() if can_go} - set(two)
    assert len(gone) > 3 and len({oid for oid, can_go in two.items() if can_go} - set(one)) > 3

    seen = asyncio.run(run_bridge(first, second))
    assert seen["announced_at_once"] == 3 < len(one), seen  # the refused ones are not counted as announced
    assert ids(seen["topics"][0]) == set(one)
    assert ids(seen["topics"][1]) == set(two) | {oid for oid, can_go in one.items() if not can_go}  # engines stay

    # a new run with the first board: the second's configs, retained from that run, are cleared
    seen = asyncio.run(run_bridge(first))
    assert sorted(retained(broker.port, DISCOVERY + "/#")) == seen["topics"][0]
    assert ids(seen["topics"][0]) == set(one)


def settled(bridge: Any) -> bool:
    """Whether the bridge has announced the entities of its newest sample and, besides them,
    only engines (kept while they do not run: discovery.removable), has no earlier run's
    config left to clear, and paho holds no unacknowledged message."""
    from tegrastats_api.discovery import entities_of, removable

    if bridge.client._out_messages or bridge._stale:
        return False
    current = {e.object_id for e in entities_of(bridge.hub.history[-1].document)}
    return current <= set(bridge._announced) and all(
        oid in current or not removable(e) for oid, e in bridge._announced.items())


def announced_topics(bridge: Any) -> List[str]:
    from tegrastats_api.discovery import config_topic

    return sorted(config_topic(DISCOVERY, NODE, e) for e in bridge._announced.values())


async def _until(condition, what: str, timeout: float = WAIT_S) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.02)


def test_a_silent_broker_never_holds_up_rest_or_the_stop(tmp_path, server_process):
    """A listener that never answers: paho waits in its TLS handshake, in its own thread."""
    certs = make_certs(str(tmp_path))
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        server = server_process("--simulate", *mqtt_flags("mqtts://127.0.0.1:%d" % port), "--mqtt-ca", certs["ca"])
        times = _rest_times(server, 40)
        print("REST /api/status median with a silent broker: %.1f ms" % (1000 * sorted(times)[20]))
        started = time.monotonic()
        assert server.stop(signal.SIGTERM, timeout=8) == 0
        print("stop took %.2f s" % (time.monotonic() - started))
    assert "stopped" in server.log()


# --- TLS, passwords -------------------------------------------------------------------------

PASSWORD = "s3cr:t@/pw"


def test_mqtts_with_a_test_ca_and_a_password_that_no_log_shows(tmp_path, brokers, subscribers, server_process):
    certs = make_certs(str(tmp_path))
    broker = brokers(tls=certs, users={"jetson": PASSWORD, "viewer": "viewer-pw"})
    sub = subscribers(broker.port, tls_ca=certs["ca"], auth=("viewer", "viewer-pw"))
    url = "mqtts://jetson:%s@127.0.0.1:%d" % (quote(PASSWORD, safe=""), broker.port)
    server = server_process("--simulate", "--debug", *mqtt_flags(url), "--mqtt-ca", certs["ca"])
    sub.wait_for(lambda _m: availability(sub) == [b"online"] and len(states(sub)) >= 2, what="online and states")
    assert len(sub.configs()) >= 10
    server.stop()
    log = server.log()
    assert "mqtts://jetson:***@127.0.0.1:%d" % broker.port in log
    for secret in (PASSWORD, quote(PASSWORD, safe=""), "s3cr"):
        assert secret not in log

    # the system's CAs do not know the test CA: one warning naming the cause, REST as usual
    untrusted = server_process("--simulate", *mqtt_flags(url))
    wait_until(lambda: OUTAGE_WARNING in untrusted.log(), what="the outage warning")
    assert re.search(r"certificate verify failed|CERTIFICATE_VERIFY_FAILED", untrusted.log()), untrusted.log()
    assert untrusted.get("/api/status").status_code == 200


def test_a_wrong_password_is_one_warning_without_the_password(brokers, server_process):
    broker = brokers(users={"jetson": PASSWORD})
    wrong = "not-the-pw-42"
    server = server_process("--simulate", *mqtt_flags("mqtt://jetson:%s@127.0.0.1:%d" % (wrong, broker.port)))
    wait_until(lambda: OUTAGE_WARNING in server.log(), what="the outage warning")
    wait_until(lambda: broker.log().count("disconnected, not authorised.") >= 2, timeout=15, what="a second attempt")
    log = server.log()
    assert log.count(OUTAGE_WARNING) == 1
    assert re.search(r"refused the connection \(.*(?i:not authori[sz]ed)", log), log
    assert wrong not in log and PASSWORD not in log
    assert server.get("/api/status").status_code == 200
    assert server.stop() == 0 and "stopped" in server.log()  # no wait for a broker that refuses


def _cli(*argv: str, env: Optional[Dict[str, str]] = None) -> subprocess.CompletedProcess:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
    environ.update(env or {}, PYTHONPATH=ROOT_DIR)
    return subprocess.run([sys.executable, "-m", "tegrastats_api", *argv], capture_output=True, text=True,
                          env=environ, timeout=30, stdin=subprocess.DEVNULL)


def test_config_output_masks_the_password_from_every_source(tmp_path):
    url = "mqtt://jetson:%s@broker.local:1884" % quote(PASSWORD, safe="")
    conf = tmp_path / "t.conf"
    conf.write_text("mqtt = %s\nmqtt_prefix = garage/orin\n" % url)
    for argv, env in ((["--config", os.devnull, "config", "--mqtt", url], None),
                      (["--config", os.devnull, "config"], {"TEGRASTATS_API_MQTT": url}),
                      (["--config", str(conf), "config"], None)):
        done = _cli(*argv, env=env)
        assert done.returncode == 0, done.stderr
        assert "mqtt = mqtt://jetson:***@broker.local:1884  (" in done.stdout
        assert PASSWORD not in done.stdout + done.stderr and "s3cr" not in done.stdout + done.stderr
    assert "mqtt_prefix = garage/orin  (file" in done.stdout
    assert re.search(r"(?m)^mqtt_discovery_prefix = homeassistant  \(default\)$", done.stdout)


# --- sensors that come and go ----------------------------------------------------------------


def test_a_sensor_gone_is_removed_and_an_earlier_runs_configs_are_cleared(tmp_path, brokers, subscribers,
                                                                         server_process):
    from tegrastats_api.plan import load_board

    line = load_board("orin-nano")[0]
    assert " gpu@" in line
    without = re.sub(r" gpu@[0-9.]+C", "", line)
    replay = tmp_path / "gpu.log"
    replay.write_text("\n".join([line] + [without] * 6) + "\n")
    broker = brokers()
    sub = subscribers(broker.port)
    topic = DISCOVERY + "/sensor/%s/temp_gpu/config" % NODE
    flags = mqtt_flags("mqtt://127.0.0.1:%d" % broker.port)
    flags[flags.index("--mqtt-interval") + 1] = str(UPDATE_S)  # a state per sample
    server = server_process("--replay", str(replay), *flags)
    sub.wait_for(lambda _m: [m.payload for m in sub.on(topic)][:1] != [] and sub.on(topic)[-1].payload == b"",
                 what="temp_gpu removed")
    sub.wait_for(lambda _m: sub.on(topic)[-1].payload != b"", what="temp_gpu announced again")
    payloads = [bool(m.payload) for m in sub.on(topic)]
    assert payloads[:3] == [True, False, True], payloads
    # a state while it is gone but still announced: null, which Home Assistant shows as unknown
    assert any(s["temp"].get("gpu", "absent") is None for s in states(sub))
    server.stop()

    # another board under the same prefix: only its own entities stay retained
    tx1 = server_process("--simulate", "tx1", *mqtt_flags("mqtt://127.0.0.1:%d" % broker.port))
    wait_until(lambda: len(tx1.get("/api/history").json()["samples"]) >= 3, what="samples")
    doc = tx1.get("/api/status").json()
    want = sorted(expected_entities(doc))
    wait_until(lambda: sorted(t.split("/")[-2] for t in retained(broker.port, DISCOVERY + "/#")) == want,
               what="the retained configs of tx1 alone")
    assert all(json.loads(p)["device"]["model"] == "NVIDIA Jetson TX1"
               for p in retained(broker.port, DISCOVERY + "/#").values())


# --- bad settings ----------------------------------------------------------------------------


@pytest.mark.parametrize("argv, named", [
    (["--mqtt", "http://127.0.0.1"], "--mqtt"),
    (["--mqtt", "mqtt://"], "--mqtt"),
    (["--mqtt", "mqtt://127.0.0.1:0"], "--mqtt"),
    (["--mqtt", "mqtt://127.0.0.1:70000"], "--mqtt"),
    (["--mqtt", "mqtt://127.0.0.1/topic"], "--mqtt"),
    (["--mqtt", "mqtt://jetson:%s@999.1.1.1" % quote(PASSWORD, safe="")], "--mqtt"),
    (["--mqtt", "mqtt://jetson:s3cr#t@host"], "--mqtt"),
    (["--mqtt", "mqtt://h", "--mqtt-interval", "0.5"], "--mqtt-interval"),
    (["--mqtt", "mqtt://h", "--mqtt-interval", "0"], "--mqtt-interval"),
    (["--mqtt", "mqtt://h", "--mqtt-interval", "ten"], "--mqtt-interval"),
    (["--mqtt", "mqtt://h", "--mqtt-prefix", "jetsons/+"], "--mqtt-prefix"),
    (["--mqtt", "mqtt://h", "--mqtt-prefix", "/"], "--mqtt-prefix"),
    (["--mqtt", "mqtt://h", "--mqtt-discovery-prefix", "ha/#"], "--mqtt-discovery-prefix"),
    (["--mqtt", "mqtt://h", "--mqtt-ca", "/etc/ssl/certs/ca-certificates.crt"], "--mqtt-ca"),
])
def test_a_bad_mqtt_setting_is_one_line_and_exit_2(argv, named):
    from tegrastats_api.cli import main

    out, err = io.StringIO(), io.StringIO()
    assert main(["--config", os.devnull, "run", *argv], environ={}, stdout=out, stderr=err) == 2
    text = err.getvalue()
    assert text.count("\n") == 1 and text.startswith("tegrastats-api: error: %s: " % named), text
    assert "s3cr" not in text


def test_an_unusable_ca_file_or_no_paho_is_one_line_and_exit_2(tmp_path):
    fifo = tmp_path / "ca.fifo"
    os.mkfifo(str(fifo))
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a certificate\n")
    base = ["--config", os.devnull, "run", "--simulate", "--port", "0", "--mqtt", "mqtts://127.0.0.1:1"]
    for ca, reason in ((tmp_path / "missing.pem", "No such file"), (fifo, "a FIFO"), (garbage, "")):
        done = _cli(*base, "--mqtt-ca", str(ca))
        assert done.returncode == 2, done.stderr
        assert done.stderr.startswith("tegrastats-api: error: --mqtt-ca: cannot use %s: %s" % (ca, reason))
        assert "Traceback" not in done.stderr and "serving on" not in done.stderr

    blocker = tmp_path / "blocked"
    (blocker / "paho").mkdir(parents=True)
    (blocker / "paho" / "__init__.py").write_text("raise ImportError('paho-mqtt hidden by the test')\n")
    done = subprocess.run([sys.executable, "-m", "tegrastats_api", *base[:-1], "mqtt://127.0.0.1:1"],
                          capture_output=True, text=True, timeout=30, stdin=subprocess.DEVNULL,
                          env=dict({k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")},
                                   PYTHONPATH="%s:%s" % (blocker, ROOT_DIR)))
    assert done.returncode == 2, done.stderr
    assert "tegrastats-api: error: --mqtt: needs paho-mqtt" in done.stderr and "Traceback" not in done.stderr
