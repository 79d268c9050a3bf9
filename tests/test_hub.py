"""SnapshotHub and ConnectionLimiter: pure tests, no sockets and no event loop."""
from __future__ import annotations

import json
import logging

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tegrastats_api import hub as hub_module
from tegrastats_api.fields import normalize, parse_fields, select
from tegrastats_api.hub import SECTIONS, ConnectionLimiter, HistoryView, SnapshotHub, ViewCache, encode_document
from tegrastats_api.parser import parse_line
from tegrastats_api.shapes import Parsed


@pytest.fixture
def hub(fake_clock):
    return SnapshotHub("replay", clock=fake_clock, history_size=3, interval_s=1.0)


@pytest.fixture
def encodings(monkeypatch):
    """The samples' JSON the hub makes, each way: ``documents`` (encode_document, the
    documents it encoded) and ``lines`` (Parsed.json, straight from a compiled shape's match)."""
    made = {"documents": [], "lines": []}
    real_encode, real_json = hub_module.encode_document, Parsed.json

    def encode(document):
        made["documents"].append(document)
        return real_encode(document)

    def from_line(parsed):
        payload = real_json(parsed)
        if payload is not None:
            made["lines"].append(payload)
        return payload

    monkeypatch.setattr(hub_module, "encode_document", encode)
    monkeypatch.setattr(Parsed, "json", from_line)
    return made


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


def test_json_is_compact_and_encoded_once_per_sample(hub, transport_lines, encodings):
    received = []
    hub.subscribe(lambda sample: received.append(sample.payload))
    hub.subscribe(lambda sample: received.append(sample.payload))
    for count, line in enumerate([transport_lines[0]] * 3 + transport_lines[1:3], 1):
        hub.feed_line(line)
        payload = hub.latest_json
        assert len(encodings["documents"]) + len(encodings["lines"]) == count
        assert received[-2:] == [payload, payload] and all(p is payload for p in received[-2:])
        assert hub.latest_json is payload
        assert b", " not in payload and b'": ' not in payload
        assert payload == encode_document(hub.latest_document)
    # the first line's shape is compiled at its second sighting: from then on its JSON is
    # made from the line, without a document
    assert len(encodings["documents"]) == 2 and len(encodings["lines"]) == 3


def test_the_json_of_a_compiled_shape_needs_no_document(hub, transport_lines, encodings):
    for _ in range(3):
        hub.feed_line(transport_lines[0])
    got = []
    hub.subscribe(lambda sample: got.append(sample.payload))
    hub.feed_line(transport_lines[0])
    sample = hub.history[-1]
    assert got == [sample.payload] and encodings["lines"] == got
    assert sample._document is None  # no subscriber read it
    assert sample.payload == encode_document(sample.document) == json.dumps(
        parse_line(transport_lines[0], sample.received_at, source="replay").to_dict(),
        separators=(",", ":")).encode("ascii")


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
    assert len(calls) == len(SECTIONS) + 1  # its cpu section; the whole document is not asked for yet
    for _ in range(3):
        assert hub.latest_json is not None
    assert len(calls) == len(SECTIONS) + 2  # now the document, once


def test_a_sample_nobody_asks_for_is_parsed_but_not_encoded(hub, transport_lines, encodings):
    """A server without clients or requests only parses: the document and its JSON are made
    at the first use, once, and then are the same for every use (REST, history, subscribers)."""
    def made():
        return len(encodings["documents"]) + len(encodings["lines"])

    for line in transport_lines:
        hub.feed_line(line)
    assert made() == 0 and hub.samples == len(transport_lines)
    got = []
    hub.subscribe(lambda sample: got.append(sample.payload))
    hub.feed_line(transport_lines[0])
    assert made() == 1 and got == [hub.latest_json]
    assert made() == 1
    history = json.loads(hub.history_json())["samples"]
    assert len(hub.history) == 3 and made() == 3  # the older kept samples, at the history request
    assert history[-1] == json.loads(got[0])
    hub.history_json()
    assert made() == 3


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

    def broken(sample):
        raise RuntimeError("boom")

    hub.subscribe(lambda sample: got.append(("a", sample.document["timestamp"])))
    hub.subscribe(broken)
    hub.subscribe(lambda sample: got.append(("b", sample.document["timestamp"])))
    with caplog.at_level(logging.ERROR, logger="tegrastats_api.hub"):
        hub.feed_line(transport_lines[0])
    assert [name for name, _ in got] == ["a", "b"]
    assert "boom" in caplog.text
    assert hub.subscriber_count == 2
    hub.feed_line(transport_lines[1])
    assert [name for name, _ in got] == ["a", "b", "a", "b"]


def test_unsubscribe(hub, transport_lines):
    got = []

    def callback(sample):
        got.append(sample.payload)

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


# --- bounded caches of client-chosen views -------------------------------------------------


def test_view_cache_holds_at_most_its_entries_least_recently_used_out_first():
    cache = ViewCache(max_entries=3, max_bytes=10_000)
    for key in "abc":
        assert cache.put(key, key.upper(), 10)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("d", "D", 10)
    assert cache.keys() == ["c", "a", "d"] and "b" not in cache and cache.get("b") is None
    cache.put("e", "E", 10)
    assert cache.keys() == ["a", "d", "e"]
    assert len(cache) == 3 and cache.bytes == 30 and cache.evictions == 2
    cache.put("a", "A2", 10)  # a new value for a key: still one entry, now the newest
    assert cache.keys() == ["d", "e", "a"] and cache.get("a") == "A2" and len(cache) == 3


def test_view_cache_holds_at_most_its_bytes():
    cache = ViewCache(max_entries=100, max_bytes=100)
    for index in range(10):
        cache.put(index, index, 30)
        assert cache.bytes <= 100 and len(cache) <= 3
    assert cache.keys() == [7, 8, 9] and cache.bytes == 90
    cache.put("big", "x", 80)  # makes room by evicting the oldest
    assert cache.keys() == ["big"] and cache.bytes == 80
    assert not cache.put("huge", "y", 101)  # alone over the budget: not kept, nothing evicted for it
    assert "huge" not in cache and cache.keys() == ["big"]
    assert not cache.put("big", "z", 101)  # a key that grows past the budget is dropped
    assert len(cache) == 0 and cache.bytes == 0
    cache.put("a", 1, 60)
    cache.put("a", 1, 20)  # re-put with a new cost replaces the old one
    assert cache.bytes == 20
    cache.discard("a")
    cache.discard("a")
    assert cache.bytes == 0 and len(cache) == 0
    cache.put("b", 1, 5)
    cache.clear()
    assert cache.bytes == 0 and len(cache) == 0
    assert not ViewCache(0, 100).put("a", 1, 1)


@settings(max_examples=200, deadline=None)
@given(st.integers(1, 8), st.integers(1, 500),
       st.lists(st.tuples(st.sampled_from("abcdefghij"), st.integers(0, 600), st.booleans()), max_size=60))
def test_view_cache_never_passes_its_bounds_and_evicts_lru(max_entries, max_bytes, operations):
    cache = ViewCache(max_entries, max_bytes)
    model = []  # (key, cost), least recently used first
    for key, cost, is_put in operations:
        if is_put:
            model = [entry for entry in model if entry[0] != key]
            if cost <= max_bytes:
                model.append((key, cost))
                while len(model) > max_entries or sum(c for _, c in model) > max_bytes:
                    model.pop(0)
            cache.put(key, cost, cost)
        elif cache.get(key) is not None:
            model = [entry for entry in model if entry[0] != key] + [entry for entry in model if entry[0] == key]
        assert len(cache) <= max_entries and cache.bytes <= max_bytes
        assert cache.keys() == [k for k, _ in model]
        assert cache.bytes == sum(c for _, c in model)


def _distinct_fields(index, long_name=0):
    """A valid, distinct field list: the whole document but extra, plus one extra name."""
    return parse_fields("cpu,memory,temperature,power,gpu,emc,engines,extra.%s%d" % ("x" * long_name, index))


def test_fields_views_are_bounded_in_entries_and_bytes(hub, transport_lines):
    hub.feed_line(transport_lines[0])
    document = hub.latest_document
    limit_entries = hub_module.FIELD_VIEWS_MAX_ENTRIES
    for index in range(3 * limit_entries):
        paths = _distinct_fields(index)
        assert json.loads(hub.fields_json(paths)) == select(document, paths)
        assert len(hub._field_views) <= limit_entries
        assert hub._field_views.bytes <= hub_module.FIELD_VIEWS_MAX_BYTES
    assert len(hub._field_views) == limit_entries  # full, the newest ones kept
    newest = _distinct_fields(3 * limit_entries - 1)
    assert hub._field_views.keys()[-1] == newest
    assert hub.fields_json(newest) is hub.fields_json(newest)
    oldest = _distinct_fields(0)
    assert oldest not in hub._field_views  # evicted first
    assert hub.fields_json(oldest) is hub.fields_json(oldest)  # cached again, as the newest
    assert hub._field_views.keys()[-1] == oldest
    # long keys count in the byte budget too: fewer entries fit
    for index in range(200):
        hub.fields_json(_distinct_fields(index, long_name=20_000))
        assert hub._field_views.bytes <= hub_module.FIELD_VIEWS_MAX_BYTES
    assert len(hub._field_views) < 1024 * 1024 // 20_000 + 1
    hub.feed_line(transport_lines[1])  # a new sample empties them
    assert len(hub._field_views) == 0 and hub._field_views.bytes == 0


def test_fields_views_lists_meaning_the_same_share_one_encoding(hub, transport_lines):
    hub.feed_line(transport_lines[0])
    first = hub.fields_json(parse_fields("cpu,cpu.usage"))
    assert hub.fields_json(parse_fields("cpu.cores,cpu")) is first
    assert hub.fields_json(parse_fields("cpu")) is first
    assert len(hub._field_views) == 1


def test_fields_views_never_crowd_out_sections_and_summary(hub, transport_lines, monkeypatch):
    hub.feed_line(transport_lines[0])
    calls = []
    real = hub_module.encode_document
    summary = hub.summary_json()
    sections = {section: hub.section_json(section) for section in SECTIONS}
    monkeypatch.setattr(hub_module, "encode_document", lambda d: calls.append(1) or real(d))
    for index in range(2 * hub_module.FIELD_VIEWS_MAX_ENTRIES):
        hub.fields_json(_distinct_fields(index))
    assert hub.summary_json() is summary
    assert all(hub.section_json(section) is payload for section, payload in sections.items())
    assert len(calls) == 2 * hub_module.FIELD_VIEWS_MAX_ENTRIES


@pytest.fixture
def long_hub(fake_clock, transport_lines):
    hub = SnapshotHub("replay", clock=fake_clock, history_size=50, interval_s=1.0)
    for index in range(50):
        fake_clock.advance(1)
        hub.feed_line(transport_lines[index % len(transport_lines)])
    return hub


def _counting(monkeypatch):
    calls = []
    real = hub_module.encode_document
    monkeypatch.setattr(hub_module, "encode_document", lambda d: calls.append(d) or real(d))
    return calls


def test_samples_are_numbered(long_hub):
    seqs = [sample.seq for sample in long_hub.history]
    assert seqs == list(range(long_hub.samples - 50, long_hub.samples))


def test_history_fields_encode_each_sample_once_per_list(long_hub, fake_clock, transport_lines, monkeypatch):
    paths = parse_fields("cpu.cores.usage,cpu.cores.freq,power")
    expected = [select(s.document, paths) for s in long_hub.history]
    calls = _counting(monkeypatch)
    assert json.loads(long_hub.history_json(None, paths))["samples"] == expected
    assert len(calls) == 50
    for seconds in (None, 0, 5, 1e9):
        long_hub.history_json(seconds, paths)
    assert len(calls) == 50  # all cached; seconds is not part of the key
    fake_clock.advance(1)
    long_hub.feed_line(transport_lines[0])  # one new sample: one new encoding (its whole document: none yet)
    answer = json.loads(long_hub.history_json(None, paths))["samples"]
    assert answer == [select(s.document, paths) for s in long_hub.history]
    assert len(calls) == 50 + 1
    assert len(long_hub._history_views) == 1


def test_a_narrow_window_encodes_only_its_samples(long_hub, monkeypatch):
    calls = _counting(monkeypatch)
    paths = parse_fields("gpu.usage")
    assert len(json.loads(long_hub.history_json(2.5, paths))["samples"]) == 3
    assert len(calls) == 3
    assert json.loads(long_hub.history_json(None, paths))["samples"] == [
        select(s.document, paths) for s in long_hub.history]
    assert len(calls) == 50


def test_history_views_drop_samples_that_left_the_history(long_hub, fake_clock, transport_lines):
    paths = parse_fields("memory.ram")
    long_hub.history_json(None, paths)
    view = long_hub._history_views.get(tuple(paths))
    size = view.bytes
    for index in range(120):
        fake_clock.advance(1)
        long_hub.feed_line(transport_lines[index % len(transport_lines)])
        body = json.loads(long_hub.history_json(None, paths))
        assert body["samples"] == [select(s.document, paths) for s in long_hub.history]
        assert len(view.parts) == 50
        assert view.bytes <= size + 50 * 20  # samples differ a little in size, never in number
    assert sorted(view.parts) == [s.seq for s in long_hub.history]


def test_history_views_are_bounded_in_lists_and_bytes(long_hub):
    limit = hub_module.HISTORY_VIEWS_MAX_ENTRIES
    for index in range(3 * limit):
        paths = _distinct_fields(index)
        answer = json.loads(long_hub.history_json(None, paths))["samples"]
        assert answer == [select(s.document, paths) for s in long_hub.history]
        cache = long_hub._history_views
        assert len(cache) <= limit and cache.bytes <= hub_module.HISTORY_VIEWS_MAX_BYTES
        assert sum(cache.get(key).bytes for key in cache.keys()) == cache.bytes
    assert cache.keys()[-1] == tuple(_distinct_fields(3 * limit - 1))


def test_history_views_byte_budget(long_hub, monkeypatch):
    monkeypatch.setattr(hub_module, "HISTORY_VIEWS_MAX_BYTES", 200_000)
    hub = SnapshotHub("replay", clock=long_hub.clock, history_size=50)
    hub.history = long_hub.history
    hub.samples = long_hub.samples
    for index in range(40):
        paths = _distinct_fields(index)
        answer = json.loads(hub.history_json(None, paths))["samples"]
        assert answer == [select(s.document, paths) for s in hub.history]
        assert hub._history_views.bytes <= 200_000
    assert 1 <= len(hub._history_views) < hub_module.HISTORY_VIEWS_MAX_ENTRIES
    # a list whose view alone is over the budget is answered, not kept
    monkeypatch.setattr(hub_module, "HISTORY_VIEWS_MAX_BYTES", 1000)
    small = SnapshotHub("replay", clock=long_hub.clock, history_size=50)
    small.history = long_hub.history
    answer = json.loads(small.history_json(None, parse_fields("cpu")))["samples"]
    assert answer == [select(s.document, parse_fields("cpu")) for s in small.history]
    assert len(small._history_views) == 0 and small._history_views.bytes == 0


def test_history_steps_pause_between_bounded_batches(long_hub, monkeypatch):
    monkeypatch.setattr(hub_module, "HISTORY_STEP", 8)
    calls = _counting(monkeypatch)
    paths = parse_fields("cpu.usage,temperature")
    steps = []
    for step in long_hub.history_steps(None, paths):
        steps.append((step, len(calls)))
    pauses = [count for step, count in steps if step is None]
    assert pauses == [0, 8, 16, 24, 32, 40, 48]  # a pause before every 8 new encodings
    assert steps[-1][0] == long_hub.history_json(None, paths)  # then the answer (from the cache)
    assert list(long_hub.history_steps(None, paths)) == [steps[-1][0]]  # cached: no pause at all
    assert list(SnapshotHub("replay").history_steps(None, paths)) == [None]  # no data yet
    assert list(long_hub.history_steps(None, None)) == [long_hub.history_json()]  # whole: no encoding


def test_history_view_accounting():
    view = HistoryView(key_cost=100)
    base = view.bytes
    view.add(5, b"12345")
    view.add(5, b"12345")  # once only
    view.add(6, b"1")
    assert view.bytes == base + 6 + 2 * hub_module.PART_OVERHEAD_BYTES
    view.prune(6)
    assert list(view.parts) == [6] and view.bytes == base + 1 + hub_module.PART_OVERHEAD_BYTES
    view.add(3, b"old")  # a sample gone from the history meanwhile is not added back
    assert list(view.parts) == [6]
    assert normalize([("cpu",), ("cpu", "usage")]) == (("cpu",),)


def _standard_json(document):
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


ODD_DOCUMENTS = [
    {"text": 'quote " backslash \\ newline \n tab \t unicode \u00e9\u2603 \U0001f600 \u2028'},
    {"small": [1e-05, 0.0001, 1e-7, -2.5e-06], "big": [1e16, 1.5e300, 12345678901234.5], "zero": [0.0, -0.0]},
    {"ints": [2 ** 63, -(2 ** 63) - 1, 2 ** 70, 0, -1], "rounded": [0.1 + 0.2, 1 / 3, 47.437, 100.0]},
    {1: "an int key", "nested": {"list": [None, True, False, [], {}]}},
    {"key 1e5": "1E5 in text", "soc0e": 1},
]


@pytest.mark.parametrize("orjson", ["installed", "absent"])
def test_encode_document_is_the_standard_encoding(orjson, transport_lines, monkeypatch):
    """encode_document gives json.dumps' compact bytes for every recorded line's document, its
    views, and documents with what encoders write differently (non-ASCII text, exponents,
    big integers, non-text keys), with orjson (the optional speed-up) and without it."""
    import csv
    import os

    if orjson == "installed":
        pytest.importorskip("orjson")
        assert hub_module._orjson_module() is not None
    else:
        monkeypatch.setattr(hub_module, "_orjson_module", lambda: None)
    with open(os.path.join(os.path.dirname(__file__), "fixtures", "tegrastats", "samples.tsv"),
              encoding="utf-8", newline="") as f:
        lines = [row["line"] for row in csv.DictReader(f, delimiter="\t")]
    hub = SnapshotHub("replay")
    documents = list(ODD_DOCUMENTS)
    for line in lines:
        hub.feed_line(line)
        documents.append(hub.latest_document)
        documents.append(json.loads(hub.summary_json()))
    assert len(documents) > 100
    for document in documents:
        assert encode_document(document) == _standard_json(document)
