"""Abuse: oversized requests, paths out of static/, malformed WebSocket and Socket.IO
traffic, and the token in logs and in comparisons.

Real servers on 127.0.0.1 (in a thread, ``live_server``, or a child process where the log
is read) and clients on plain sockets that send whatever they are told. Every wait has a
deadline. Faults of tegrastats and of well-formed clients are in tests/test_faults.py.
"""
from __future__ import annotations

import hmac
import os
import struct

import pytest
import requests

from fault_tools import (
    SIO_PATH,
    WAIT_S,
    RawWebSocket,
    document_time,
    raw_exchange,
    sio_client,
    sio_event,
    wait_until,
)

TOKEN = "tok-3f9a1c-SECRET"
WRONG_TOKEN = "tok-wrong-77e2b0"


@pytest.mark.parametrize("request_bytes", [
    b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\nConnection: close\r\n\r\n",
    b"GET /api/status HTTP/1.1\r\nHost: x\r\n" + b"X-Many: a\r\n" * 10_000 + b"Connection: close\r\n\r\n",
    b"POST /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\nContent-Length: 2000000\r\n"
    b"Connection: close\r\n\r\n" + b"4" * 2_000_000,
    b"POST /api/status HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000000\r\nConnection: close\r\n\r\n",
    b"POST /api/status HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
    + (b"10000\r\n" + b"a" * 0x10000 + b"\r\n") * 32 + b"0\r\n\r\n",  # 32 chunks of 64 KiB
], ids=["one-huge-header", "many-headers", "2MB-body", "10GB-content-length", "2MB-chunked"])
def test_oversized_requests_are_refused(live_server, transport_lines, request_bytes):
    server = live_server(transport_lines[:1])
    answer = raw_exchange(server.server.port, request_bytes)
    status = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/1.1 ") else None
    assert status is None or 400 <= status < 500, answer[:200]
    assert requests.get(server.url + "/api/status", timeout=WAIT_S).status_code == 200


def test_http_server_limits(live_server, transport_lines):
    from tegrastats_api.app import MAX_BODY_BYTES, MAX_HEADER_BYTES

    server = live_server(transport_lines[:1])
    params = server.server._http.conn_params  # tornado's HTTP1ConnectionParameters
    assert (params.max_header_size, params.max_body_size) == (MAX_HEADER_BYTES, MAX_BODY_BYTES)
    assert params.header_timeout <= 60, "a half-sent request may hold a connection for an hour"
    # Engine.IO's long-polling POSTs must still fit.
    assert MAX_BODY_BYTES >= server.call(server.server.socketio.load).eio.max_http_buffer_size


# --- static files ---------------------------------------------------------------------------


@pytest.fixture
def static_server(live_server, transport_lines, tmp_path, monkeypatch):
    """A server whose static/ holds index.html, links out of it and a link within it."""
    import tegrastats_api.app as app_module

    static, outside = tmp_path / "static", tmp_path / "outside"
    static.mkdir()
    outside.mkdir()
    (static / "index.html").write_text("<html>dashboard</html>")
    (outside / "secret.txt").write_text("TOP-SECRET")
    os.symlink(str(outside / "secret.txt"), str(static / "secret.txt"))
    os.symlink(str(outside), str(static / "outside"))
    os.symlink("index.html", str(static / "home.html"))  # a link inside static/ is fine
    monkeypatch.setattr(app_module, "default_static_dir", lambda: str(static))
    return live_server(transport_lines[:1])


def _get_raw_path(port, path):
    answer = raw_exchange(port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
    return int(answer.split(b" ", 2)[1]), answer


@pytest.mark.parametrize("path", [
    "/../outside/secret.txt", "/%2e%2e/outside/secret.txt", "/%2e%2e%2foutside%2fsecret.txt",
    "/..%2foutside%2fsecret.txt", "/%2E%2E%2F%2E%2E%2F%2E%2E%2Fetc%2Fpasswd", "/./../outside/secret.txt",
    "/%252e%252e%252foutside%252fsecret.txt", "/..%5coutside%5csecret.txt", "//etc/passwd",
    "/index.html/../../outside/secret.txt", "/%00../outside/secret.txt",
])
def test_traversal_never_leaves_static(static_server, path):
    status, answer = _get_raw_path(static_server.server.port, path)
    assert status in (400, 403, 404), answer[:200]
    assert b"TOP-SECRET" not in answer and b"root:" not in answer


@pytest.mark.parametrize("path", ["/secret.txt", "/outside/secret.txt"])
def test_symlinks_out_of_static_are_refused(static_server, path):
    status, answer = _get_raw_path(static_server.server.port, path)
    assert status in (403, 404), answer[:200]
    assert b"TOP-SECRET" not in answer


def test_links_within_static_and_the_dashboard_are_served(static_server):
    for path in ("/", "/index.html", "/home.html"):
        status, answer = _get_raw_path(static_server.server.port, path)
        assert status == 200 and b"dashboard" in answer, path


# --- malformed protocol traffic -------------------------------------------------------------


@pytest.fixture
def watched_server(live_server, transport_lines):
    """A server with a ``/ws`` and a Socket.IO client that must keep receiving throughout."""
    server = live_server(transport_lines[:1], max_connections=20)
    ws, sio = RawWebSocket(server.server.port, "/ws"), sio_client(server.server.port)
    ws.text()
    sio_event(sio)
    lines = iter(transport_lines[1:] * 20)

    def others_still_receive():
        server.feed(next(lines))
        expected = server.hub.latest_document["timestamp"]
        assert document_time(ws.text()) == expected
        assert document_time(sio_event(sio)) == expected

    server.others_still_receive = others_still_receive
    yield server
    ws.close()
    sio.close()


WS_VIOLATIONS = {  # each must close the connection that sent it
    "unknown opcode": struct.pack("!BB", 0x83, 0x80) + b"\0\0\0\0",
    "length 2**63": struct.pack("!BBQ", 0x81, 0xFF, 2 ** 63 - 1) + b"\0\0\0\0",
    "over the message limit": struct.pack("!BBQ", 0x81, 0xFF, 100_000) + b"\0\0\0\0" + b"a" * 100_000,
    "text not UTF-8": struct.pack("!BB", 0x81, 0x84) + b"\0\0\0\0" + b"\xff\xfe\xfd\xfc",
    "continuation first": struct.pack("!BB", 0x80, 0x80) + b"\0\0\0\0",
    "control frame over 125 bytes": struct.pack("!BBH", 0x89, 0xFE, 200) + b"\0\0\0\0" + b"a" * 200,
}
WS_ODDITIES = {  # tornado may close or ignore these, depending on its version
    "reserved bits": struct.pack("!BB", 0xF1, 0x80) + b"\0\0\0\0",
    "unmasked": struct.pack("!BB", 0x81, 0x05) + b"hello",
    "fragmented ping": struct.pack("!BB", 0x09, 0x80) + b"\0\0\0\0",
    "garbage": b"\x00\x01\x02 not a frame at all \xff" * 10,
}


def test_malformed_websocket_frames_close_only_that_client(watched_server):
    port = watched_server.server.port
    for name, raw in list(WS_VIOLATIONS.items()) + list(WS_ODDITIES.items()):
        bad = RawWebSocket(port, "/ws")
        bad.text()
        bad.sock.sendall(raw)
        if name in WS_VIOLATIONS:
            assert bad.is_closed_by_server(), name
        watched_server.others_still_receive()
        bad.close()
    wait_until(lambda: watched_server.limiter.count == 2, what="the bad clients' slots released")


SIO_MALFORMED = [  # Engine.IO accepts these as packets; Socket.IO ignores or refuses them
    "4", "42", "42[bad json", '42["tegrastats_update"', "40", "43[\"x\"]", "6", "9999",
    '451-["a",{"_placeholder":true,"num":99}]', "40/nope,", b"\xff\x00 binary junk",
]
EIO_MALFORMED = ["zzz", "", "bA"]  # not Engine.IO packets: that client is closed


def test_malformed_socketio_packets_hurt_only_that_client(watched_server):
    port = watched_server.server.port
    for packet in SIO_MALFORMED + EIO_MALFORMED:
        bad = sio_client(port)
        bad.send(packet, 0x2 if isinstance(packet, bytes) else 0x1)
        if packet in EIO_MALFORMED:
            assert bad.is_closed_by_server(), packet
        watched_server.others_still_receive()
        bad.close()
    oversized = sio_client(port)  # over Engine.IO's buffer: that client is dropped
    try:
        oversized.send("4" + "x" * 2_000_000)
    except (ConnectionResetError, BrokenPipeError):
        pass  # the server dropped it while the 2 MB were still on their way: what is asked
    else:
        assert oversized.is_closed_by_server()
    watched_server.others_still_receive()
    wait_until(lambda: watched_server.limiter.count == 2, what="the bad clients' slots released")


# --- the token --------------------------------------------------------------------------------


def test_the_token_is_never_logged(server_process):
    server = server_process("--simulate", "--debug", "--auth-token", TOKEN)
    wait_until(lambda: server.get("/api/health").status_code == 200)
    for token in (TOKEN, WRONG_TOKEN):
        for path in ("/api/status", "/api/cpu", "/api/nope", "/api/status?fields=nope", "/index.html", "/api/health"):
            joiner = "&" if "?" in path else "?"
            server.get(path + joiner + "token=" + token)
            server.get(path + joiner + "x=1&Token=%s&y=2" % token)
            server.get(path, headers={"Authorization": "Bearer " + token})
        for query in ("?token=" + token, "?a=b&token=" + token):
            ws = RawWebSocket(server.port, "/ws", query=query)
            if ws.status == 101:
                ws.text()
            ws.close()
            server.get("/socket.io/?EIO=4&transport=polling&" + query[1:])
            ws = RawWebSocket(server.port, SIO_PATH, query="&" + query[1:])
            ws.close()
    assert server.stop() == 0
    log = server.log()
    assert "GET /api/status?token=*** " in log, "the access log was not on: nothing was checked"
    assert TOKEN not in log and WRONG_TOKEN not in log
    assert TOKEN.split("-")[-1] not in log


def test_the_token_is_compared_in_constant_time(live_server, transport_lines, monkeypatch):
    compared = []
    real = hmac.compare_digest
    verdict = {"forced": None}

    def spy(expected, given):
        compared.append((expected, given))
        return real(expected, given) if verdict["forced"] is None else verdict["forced"]

    monkeypatch.setattr(hmac, "compare_digest", spy)
    server = live_server(transport_lines[:1], auth_token=TOKEN)
    url, port = server.url, server.server.port
    expected = TOKEN.encode("utf-8")
    assert requests.get(url + "/api/status", headers={"Authorization": "Bearer " + TOKEN}).status_code == 200
    assert requests.get(url + "/api/status?token=" + TOKEN).status_code == 200
    assert requests.get(url + "/api/status?token=" + WRONG_TOKEN).status_code == 401
    assert RawWebSocket(port, "/ws", query="?token=" + TOKEN).status == 101
    sio_client(port, query="&token=" + TOKEN).close()
    assert compared and all(pair[0] == expected for pair in compared)
    assert {pair[1] for pair in compared} == {expected, WRONG_TOKEN.encode("utf-8")}
    assert len(compared) >= 5, "every endpoint compares through hmac.compare_digest"
    verdict["forced"] = False  # the comparison alone decides: the right token is now refused
    assert requests.get(url + "/api/status?token=" + TOKEN).status_code == 401
    assert RawWebSocket(port, "/ws", query="?token=" + TOKEN).status == 401
