"""``fields=`` views end to end: bounded memory under many distinct field lists, the loop kept
free by ``/api/history?fields=``, and the merged answers on REST, ``/api/history`` and ``/ws``.

Real servers on 127.0.0.1: a child process (``server_process``) where RSS is measured, or a
``live_server`` in a thread where the hub can be fed and looked at. Memory bounds are compared
with the caches' byte budgets (tegrastats_api.hub) with a generous margin; nothing here
asserts a time, only that every answer comes within the usual deadline.
"""
from __future__ import annotations

import http.client
import json
import socket
import threading
from urllib.parse import quote

import pytest
import requests

from fault_tools import WAIT_S, RawWebSocket, wait_until
from tegrastats_api import handlers
from tegrastats_api import hub as hub_module
from tegrastats_api.fields import parse_fields, select

MIB = 1024 * 1024
WHOLE_BUT_EXTRA = "cpu,memory,temperature,power,gpu,emc,engines"
LONG_NAME = "n" * 400


def big_distinct_fields(index: int, names: int = 56) -> str:
    """A valid field list of about 23 kB (under the 32 kB header limit), distinct per index:
    the whole document but ``extra`` (so the answer is as big as it gets) plus ``names``
    long ``extra`` names, which the board does not print."""
    return ",".join("extra.%s%d_%d" % (LONG_NAME, index, j) for j in range(names)) + "," + WHOLE_BUT_EXTRA


class Getter:
    """Plain GETs on one keep-alive connection (thousands of requests in a few seconds)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=WAIT_S)

    def get(self, path: str):
        self.conn.request("GET", path)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


class HealthWatcher:
    """A thread asking ``/api/health`` all along; every answer must be the JSON health document."""

    def __init__(self, url: str, statuses=(200,)) -> None:
        self.url, self.statuses = url, statuses
        self.answers, self.failures = 0, []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        session = requests.Session()
        while not self._stop.is_set():
            try:
                answer = session.get(self.url + "/api/health", timeout=WAIT_S)
                if answer.status_code not in self.statuses or answer.json()["service"] != "tegrastats-api":
                    self.failures.append((answer.status_code, answer.text[:200]))
                self.answers += 1
            except (requests.RequestException, ValueError) as err:
                self.failures.append(repr(err))
            self._stop.wait(0.02)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(WAIT_S + 1)
        assert self.answers >= 1, "health was never asked"
        assert not self.failures, self.failures[:3]


# --- memory: thousands of distinct field lists -------------------------------------------


def test_distinct_status_and_ws_field_lists_stay_within_the_cache_budget(server_process):
    # One sample an hour: the views of the newest sample are never emptied by a new one
    # (the worst case, as when tegrastats stalls).
    server = server_process("--simulate", "--update-interval", "3600", "--max-connections", "50")
    wait_until(lambda: server.get("/api/health").status_code == 200, what="first sample")
    whole = server.get("/api/status").json()
    getter = Getter(server.port)
    for index in range(300):  # warm up: allocator arenas, tornado's buffers, a full cache
        assert getter.get("/api/status?fields=" + big_distinct_fields(index))[0] == 200
    rss_before = server.rss_mb()
    watcher = HealthWatcher(server.url)
    for index in range(300, 1500):
        status, body = getter.get("/api/status?fields=" + big_distinct_fields(index))
        assert status == 200, body[:200]
        if index % 400 == 0:
            answer = json.loads(body)
            assert answer == {key: whole[key] for key in ["timestamp"] + WHOLE_BUT_EXTRA.split(",")}
    for index in range(60):  # /ws clients with distinct lists share the same bounded cache
        ws = RawWebSocket(server.port, "/ws", query="?fields=" + big_distinct_fields(10_000 + index, names=40))
        assert ws.status == 101
        assert json.loads(ws.text())["timestamp"] == whole["timestamp"]
        ws.close()
    watcher.stop()
    getter.close()
    grown = server.rss_mb() - rss_before
    # Unbounded, these 1,200 lists held about 42 MB (35 kB each); the budget is 1 MiB.
    budget_mb = (hub_module.FIELD_VIEWS_MAX_BYTES + hub_module.VIEWS_MAX_BYTES) / MIB
    assert grown < budget_mb + 12, "RSS grew by %.1f MB" % grown
    assert server.get("/api/health").status_code == 200


def test_distinct_history_field_lists_stay_within_the_cache_budget(server_process):
    server = server_process("--simulate", "--update-interval", "0.01", "--history-size", "200")
    wait_until(lambda: server.get("/api/health").json()["samples"] >= 200, what="a full history")
    getter = Getter(server.port)
    for index in range(30):  # warm up, and fill the history views' cache (about 400 kB a list)
        assert getter.get("/api/history?fields=%s,extra.w%d" % (WHOLE_BUT_EXTRA, index))[0] == 200
    rss_before = server.rss_mb()
    watcher = HealthWatcher(server.url, statuses=(200, 503))  # 50 ms without a sample is "degraded"
    for index in range(100):
        status, body = getter.get("/api/history?fields=%s,extra.k%d" % (WHOLE_BUT_EXTRA, index))
        assert status == 200, body[:200]
        samples = json.loads(body)["samples"]
        assert len(samples) == 200 and set(samples[-1]) == {"timestamp"} | set(WHOLE_BUT_EXTRA.split(","))
    watcher.stop()
    getter.close()
    grown = server.rss_mb() - rss_before
    # Unbounded, 100 more views of 200 whole samples would hold about 40 MB; the budget is 8 MiB.
    assert grown < hub_module.HISTORY_VIEWS_MAX_BYTES / MIB + 12, "RSS grew by %.1f MB" % grown


# --- the loop stays free ---------------------------------------------------------------------


@pytest.fixture
def full_history_server(live_server, transport_lines):
    server = live_server(transport_lines[:1], history_size=300)

    def fill():
        for index in range(299):
            server.hub.feed_line(transport_lines[index % len(transport_lines)])

    server.call(fill)
    return server


def _history_in_thread(url: str, query: str, results: list) -> threading.Thread:
    def run():
        try:
            results.append((query, requests.get(url + "/api/history?fields=" + query, timeout=WAIT_S * 3)))
        except requests.RequestException as err:
            results.append((query, err))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_history_builds_take_turns_and_health_keeps_answering(full_history_server, monkeypatch):
    server = full_history_server
    monkeypatch.setattr(hub_module, "HISTORY_STEP", 4)  # many small steps
    watcher = HealthWatcher(server.url)
    results = []
    threads = [_history_in_thread(server.url, "%s,extra.t%d" % (WHOLE_BUT_EXTRA, index), results)
               for index in range(8)]
    for thread in threads:
        thread.join(WAIT_S * 3)
    watcher.stop()
    assert len(results) == 8
    history = server.call(lambda: [s.document for s in server.hub.history])
    for query, answer in results:
        assert not isinstance(answer, Exception), answer
        assert answer.status_code == 200
        assert answer.json()["samples"] == [select(d, parse_fields(query)) for d in history]


def test_history_clients_that_hang_up_give_their_turn_back(full_history_server, monkeypatch):
    server = full_history_server
    monkeypatch.setattr(hub_module, "HISTORY_STEP", 1)  # 300 steps per answer
    builds = {"started": 0, "finished": 0}
    real_steps = server.hub.history_steps

    def watched_steps(seconds=None, paths=None):
        builds["started"] += 1
        yield from real_steps(seconds, paths)
        builds["finished"] += 1

    server.hub.history_steps = watched_steps
    for index in range(12):  # ask for a long build, then hang up once it has begun
        sock = socket.create_connection(("127.0.0.1", server.server.port), timeout=WAIT_S)
        sock.sendall(("GET /api/history?fields=cpu,extra.gone%d HTTP/1.1\r\nHost: x\r\n\r\n" % index).encode())
        wait_until(lambda count=index + 1: builds["started"] >= count, what="build %d started" % index)
        sock.close()
    gates = handlers._history_gates
    wait_until(lambda: server.call(lambda: gates[server.hub]._value) == handlers.HISTORY_BUILDERS,
               what="every turn given back")
    assert builds["finished"] < builds["started"], "no build stopped when its client left"
    results = []
    threads = [_history_in_thread(server.url, "gpu,extra.after%d" % index, results) for index in range(4)]
    for thread in threads:
        thread.join(WAIT_S * 3)
    assert len(results) == 4 and all(getattr(answer, "status_code", None) == 200 for _, answer in results), results


# --- merged answers, the same on every endpoint --------------------------------------------


@pytest.fixture
def fed_server(live_server, transport_lines):
    server = live_server(transport_lines[:1], max_connections=20)
    for line in transport_lines[1:4]:
        server.feed(line)
    return server


def _rest(server, path):
    answer = requests.get(server.url + path, timeout=WAIT_S)
    assert answer.status_code == 200, answer.text[:200]
    return answer.content


def _ws_first(server, fields):
    ws = RawWebSocket(server.server.port, "/ws", query="?fields=" + quote(fields, safe=",."))
    try:
        assert ws.status == 101
        return ws.text().encode("utf-8")
    finally:
        ws.close()


def test_paths_through_a_list_merge_on_every_endpoint(fed_server):
    server = fed_server
    document = server.hub.latest_document
    expected_cores = [{"usage": c["usage"], "freq": c["freq"]} for c in document["cpu"]["cores"]]
    for fields in ("cpu.cores.usage,cpu.cores.freq", "cpu.cores.usage,,cpu.cores.freq,cpu.cores.usage"):
        status = json.loads(_rest(server, "/api/status?fields=" + fields))
        assert status == {"timestamp": document["timestamp"], "cpu": {"cores": expected_cores}}
        assert json.loads(_ws_first(server, fields)) == status
        history = json.loads(_rest(server, "/api/history?fields=" + fields))["samples"]
        assert history[-1] == status and len(history) == 4
        for sample, answer in zip(server.hub.history, history):
            cores = sample.document["cpu"]["cores"]
            assert answer["cpu"]["cores"] == [{"usage": c["usage"], "freq": c["freq"]} for c in cores]
            assert answer == select(sample.document, parse_fields(fields))


@pytest.mark.parametrize("fields,same_as", [
    ("cpu,cpu.cores", "cpu"),
    ("cpu.cores.usage,cpu", "cpu"),
    ("cpu.cores,cpu.cores.usage", "cpu.cores"),
    ("memory,memory", "memory"),
    ("memory.ram.used,memory.ram.total,memory.ram.used", "memory.ram.used,memory.ram.total"),
])
def test_overlaps_and_repeats_answer_like_the_shorter_list(fed_server, fields, same_as):
    server = fed_server
    assert _rest(server, "/api/status?fields=" + fields) == _rest(server, "/api/status?fields=" + same_as)
    assert _rest(server, "/api/history?fields=" + fields) == _rest(server, "/api/history?fields=" + same_as)
    assert _ws_first(server, fields) == _ws_first(server, same_as)


@pytest.mark.parametrize("query", ["fields=", "fields=,,,", "fields=%20,%20", "fields=,%20,,", "fields=&fields=,"])
def test_no_path_at_all_is_the_whole_document_on_every_endpoint(fed_server, query):
    server = fed_server
    whole = server.hub.latest_json
    assert _rest(server, "/api/status?" + query) == whole
    assert _rest(server, "/api/history?" + query) == _rest(server, "/api/history")
    ws = RawWebSocket(server.server.port, "/ws", query="?" + query)
    try:
        assert ws.status == 101 and ws.text().encode("utf-8") == whole
    finally:
        ws.close()
