"""SnapshotHub and ConnectionLimiter: pure tests, no sockets and no event loop."""
from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tegrastats_api import hub as hub_module
from tegrastats_api.hub import SECTIONS, ConnectionLimiter, SnapshotHub, encode_document
from tegrastats_api.parser import parse_line


@pytest.fixture
def hub(fake_clock):
    return SnapshotHub("replay", clock=fake_clock, history_size=3, interval_s=1.0)


def test_empty_hub_has_no_data(hub):
    assert hub.latest is None and hub.latest_document is None and hub.latest_json is None
    assert hub.section_json("cpu") is None
    assert hub.last_sample_age() is None
    assert hub.health_status() == "starting"
    assert (hub.samples, hub.parse_errors, hub.restarts) == (0, 0, 0)


def test_feed_line_publishes_the_parsed_document(hub, fake_clock, transport_lines):
    hub.feed_line(transport_lines[0])
    expected = parse_line(transport_lines[0], fake_clock(), source="replay").to_dict()
    assert hub.latest.to_dict() == expected
    assert hub.latest_document == expected
    assert json.loads(hub.latest_json) == expected
    assert hub.latest_document["source"] == "replay"
    assert hub.samples == 1 and hub.last_sample_at == fake_clock()


def test_history_is_bounded_and_keeps_the_newest(hub, fake_clock, transport_lines):
    for line in transport_lines[:5]:
        fake_clock.advance(1)
        hub.feed_line(line)
    assert len(hub.history) == 3
    assert [s.snapshot.source_time for s in hub.history] == [
        parse_line(line).source_time for line in transport_lines[2:5]
    ]
    assert hub.samples == 5


def test_json_is_compact_and_encoded_once_per_sample(hub, transport_lines, monkeypatch):
    calls = []

    def counting(document):
        calls.append(document)
        return encode_document(document)

    monkeypatch.setattr(hub_module, "encode_document", counting)
    received = []
    hub.subscribe(lambda document, payload: received.append(payload))
    hub.subscribe(lambda document, payload: received.append(payload))
    hub.feed_line(transport_lines[0])
    first = hub.latest_json
    assert len(calls) == 1
    assert all(payload is first for payload in received)
    assert hub.latest_json is first
    assert b", " not in first and b'": ' not in first


def test_sections_are_encoded_lazily_once_per_sample(hub, transport_lines, monkeypatch):
    hub.feed_line(transport_lines[0])
    calls = []
    monkeypatch.setattr(hub_module, "encode_document", lambda d: calls.append(d) or b"{}")
    for _ in range(3):
        for section in SECTIONS:
            hub.section_json(section)
    assert len(calls) == len(SECTIONS)
    hub.feed_line(transport_lines[1])
    hub.section_json("cpu")
    assert len(calls) == len(SECTIONS) + 2  # the new document, then its cpu section


def test_section_document(hub, transport_lines):
    hub.feed_line(transport_lines[0])
    for section in SECTIONS:
        body = json.loads(hub.section_json(section))
        assert body == {section: hub.latest_document[section],
                        "timestamp": hub.latest_document["timestamp"]}
    with pytest.raises(KeyError):
        hub.section_json("gpu")


def test_parse_error_is_counted_and_logged(hub, transport_lines, caplog):
    hub.feed_line(transport_lines[0])
    with caplog.at_level(logging.WARNING, logger="tegrastats_api.hub"):
        hub.feed_line("this is not tegrastats output")
    assert hub.parse_errors == 1 and hub.samples == 1
    assert hub.latest_document["cpu"] is not None  # the last good sample stays
    assert "this is not tegrastats output" in caplog.text


def test_parse_error_log_is_rate_limited(hub, caplog):
    with caplog.at_level(logging.WARNING, logger="tegrastats_api.hub"):
        for index in range(250):
            hub.feed_line("garbage %d" % index)
    assert hub.parse_errors == 250
    assert len(caplog.records) == 5 + 2  # the first five, then the 100th and the 200th


def test_long_bad_line_is_truncated_in_the_log(hub, caplog):
    with caplog.at_level(logging.WARNING, logger="tegrastats_api.hub"):
        hub.feed_line("x" * 10000)
    assert len(caplog.records[0].getMessage()) < 300


def test_discard_counts_as_parse_error(hub):
    hub.discard("line too long")
    hub.discard("invalid utf-8")
    assert hub.parse_errors == 2 and hub.samples == 0


def test_failing_subscriber_is_dropped_and_others_still_served(hub, transport_lines, caplog):
    got = []

    def broken(document, payload):
        raise RuntimeError("boom")

    hub.subscribe(lambda document, payload: got.append(("a", document["timestamp"])))
    hub.subscribe(broken)
    hub.subscribe(lambda document, payload: got.append(("b", document["timestamp"])))
    with caplog.at_level(logging.ERROR, logger="tegrastats_api.hub"):
        hub.feed_line(transport_lines[0])
    assert [name for name, _ in got] == ["a", "b"]
    assert "boom" in caplog.text
    assert hub.subscriber_count == 2
    hub.feed_line(transport_lines[1])
    assert [name for name, _ in got] == ["a", "b", "a", "b"]


def test_unsubscribe(hub, transport_lines):
    got = []

    def callback(document, payload):
        got.append(payload)

    hub.subscribe(callback)
    hub.subscribe(callback)  # once only
    hub.feed_line(transport_lines[0])
    hub.unsubscribe(callback)
    hub.unsubscribe(callback)  # harmless
    hub.feed_line(transport_lines[1])
    assert len(got) == 1


def test_health_healthy_stale_and_restarting(hub, fake_clock, transport_lines):
    hub.feed_line(transport_lines[0])
    hub.set_state("running")
    assert hub.health_status() == "healthy"
    fake_clock.advance(4.9)
    assert hub.health_status() == "healthy"
    assert hub.last_sample_age() == pytest.approx(4.9)
    fake_clock.advance(0.2)
    assert hub.health_status() == "degraded"
    hub.feed_line(transport_lines[1])
    assert hub.health_status() == "healthy"
    hub.set_state("restarting")
    assert hub.health_status() == "degraded"


def test_restarts_count_transitions_into_restarting(hub):
    for state in ["running", "restarting", "restarting", "missing", "restarting", "running",
                  "restarting", "running"]:
        hub.set_state(state)
    assert hub.restarts == 3
    assert hub.state == "running"


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(max_size=200), max_size=5))
def test_feed_line_never_raises(lines):
    hub = SnapshotHub("replay")
    for line in lines:
        hub.feed_line(line)
    assert hub.samples + hub.parse_errors == len(lines)


def test_limiter_caps_and_releases():
    limiter = ConnectionLimiter(2)
    assert limiter.acquire("a") and limiter.acquire("b")
    assert limiter.acquire("a")  # already held: no second slot
    assert not limiter.acquire("c")
    assert limiter.count == 2 and limiter.owners() == ("a", "b")
    limiter.release("a")
    limiter.release("a")
    limiter.release("unknown")
    assert limiter.count == 1 and not limiter.holds("a")
    assert limiter.acquire("c")
    assert limiter.refusal() == "too many connections (limit 2)"
