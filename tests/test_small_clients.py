"""``/api/summary`` and ``fields=`` on a live server (real sockets on 127.0.0.1)."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

import pytest
import websocket  # websocket-client

from fault_tools import client_recv  # ws.recv() under one deadline, pings or not
from tegrastats_api.fields import parse_fields, select
from tegrastats_api.summary import summarize


def _get(url: str, headers: dict = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), err.read()


@pytest.fixture
def server(live_server, transport_lines):
    return live_server(transport_lines[:1])


def test_summary_is_the_contract_document_of_the_newest_sample(server, transport_lines):
    server.feed(transport_lines[1])
    status, headers, body = _get(server.url + "/api/summary")
    assert status == 200 and headers["Content-Type"].startswith("application/json")
    assert int(headers["Content-Length"]) == len(body) <= 256
    summary = json.loads(body)
    assert summary == summarize(server.hub.latest_document)
    assert summary["ram_total"] == 62841 and summary["source"] == "replay"


def test_summary_before_data_and_with_a_token(live_server, transport_lines):
    locked = live_server(transport_lines[:1], auth_token="t0k")
    status, _, body = _get(locked.url + "/api/summary")
    assert status == 401 and json.loads(body)["status"] == 401
    status, _, body = _get(locked.url + "/api/summary?token=t0k")
    assert status == 200 and json.loads(body)["cpu"] is not None
    empty = live_server(["not a tegrastats line"])  # a parse error: still no sample
    status, _, body = _get(empty.url + "/api/summary")
    assert status == 503 and json.loads(body) == {"error": "no data yet", "status": 503}


def test_status_fields(server):
    status, _, body = _get(server.url + "/api/status?fields=cpu.usage,gpu.usage,temperature.tj")
    assert status == 200
    doc = server.hub.latest_document
    assert json.loads(body) == {"timestamp": doc["timestamp"], "cpu": {"usage": doc["cpu"]["usage"]},
                                "gpu": {"usage": doc["gpu"]["usage"]}, "temperature": {"tj": doc["temperature"]["tj"]}}


def test_status_unknown_field_is_a_400_naming_it(server):
    status, headers, body = _get(server.url + "/api/status?fields=cpu.usage,cpu.Bogus,nothing")
    assert status == 400 and headers["Content-Type"].startswith("application/json")
    assert json.loads(body) == {"error": "unknown fields: cpu.Bogus, nothing", "status": 400}


def test_ws_fields_frames_are_filtered_and_shared(server, transport_lines):
    url = server.url.replace("http", "ws") + "/ws?fields=cpu.usage,memory.ram.used"
    first = websocket.create_connection(url, timeout=5)
    second = websocket.create_connection(url, timeout=5)
    try:
        paths = parse_fields("cpu.usage,memory.ram.used")
        assert json.loads(client_recv(first, 5)) == select(server.hub.latest_document, paths)
        client_recv(second, 5)
        server.feed(transport_lines[2])
        frame = client_recv(first, 5)
        assert client_recv(second, 5) == frame
        assert json.loads(frame) == select(server.hub.latest_document, paths)
        assert set(json.loads(frame)) == {"timestamp", "cpu", "memory"}
        # one encoding of this view for every client that asked for it
        assert server.call(server.hub.fields_json, paths) is server.call(server.hub.fields_json, paths)
    finally:
        first.close()
        second.close()


def test_ws_unknown_field_is_refused_before_the_upgrade(server):
    url = server.url.replace("http", "ws") + "/ws?fields=gpu.bogus"
    with pytest.raises(websocket.WebSocketBadStatusException) as err:
        websocket.create_connection(url, timeout=5)
    assert err.value.status_code == 400
    assert json.loads(err.value.resp_body) == {"error": "unknown field: gpu.bogus", "status": 400}
    assert server.limiter.count == 0


def test_ws_without_fields_still_gets_whole_documents(server, transport_lines):
    conn = websocket.create_connection(server.url.replace("http", "ws") + "/ws", timeout=5)
    try:
        assert json.loads(client_recv(conn, 5))["schema"] == 1
        server.feed(transport_lines[3])
        assert client_recv(conn, 5).encode() == server.hub.latest_json
    finally:
        conn.close()


def test_a_503_is_logged_as_a_warning_not_an_error(live_server, caplog):
    import logging

    empty = live_server(["not a tegrastats line"])
    with caplog.at_level(logging.INFO, logger="tornado.access"):
        assert _get(empty.url + "/api/health?token=secret")[0] == 503
        assert _get(empty.url + "/api/nothing-here")[0] == 404
    records = [r for r in caplog.records if r.name == "tornado.access"]
    health = [r for r in records if "/api/health" in r.getMessage()]
    assert health and all(r.levelno == logging.WARNING for r in health)
    assert not [r for r in records if r.levelno >= logging.ERROR]
    assert "secret" not in caplog.text
