"""The tests' own tools: the socket helpers give up by their deadline, whatever keeps coming
meanwhile; the server harness (fault_tools.ServerProcess) leaves no process behind.

A server that pings (WebSocket ping frames, Engine.IO ``2`` pings, ``6`` noops) every
0.2 s but never sends the awaited message restarts a per-``recv`` socket timeout with each
of them: a helper that skips them in a loop would wait forever (``make test`` hung so on
Ubuntu 22.04's libraries). Here each helper must raise its timeout by its deadline.
"""
from __future__ import annotations

import base64
import hashlib
import signal
import socket
import struct
import threading
import time

import pytest
import websocket  # websocket-client

from fault_tools import (
    RawWebSocket,
    ServerProcess,
    client_frame,
    client_recv,
    proc_state,
    raw_exchange,
    server_processes,
    sio_client,
    sio_event,
    wait_until,
)
from test_esp32 import Wire, arduino_ws_handshake, next_update, socketio_text

TIMEOUT_S = 1.0
GIVE_UP_S = 3.0  # generous: 2 cores, maybe another test run at the same time
PERIOD_S = 0.2
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
WS_PING = struct.pack("!BB", 0x89, 0)


def text_frame(text):
    return struct.pack("!BB", 0x81, len(text)) + text.encode("ascii")


# What the server sends every PERIOD_S after the upgrade, by the request's path: never a
# tegrastats_update, and never anything a helper's caller waits for.
KEEPALIVES = {
    "/ping": [WS_PING],  # WebSocket pings only
    "/noop": [WS_PING, text_frame("6")],  # and Engine.IO noops
    "/eio": [WS_PING, text_frame("2"), text_frame("6")],  # and Engine.IO pings
    "/sio": [WS_PING, text_frame("2"), text_frame("6")],  # after an open packet and 40
    "/http": [b"x"],  # no upgrade: a response that trickles and never ends
}


class PingingServer:
    """A server on 127.0.0.1 that upgrades any request, then sends keepalives forever."""

    def __init__(self):
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.stop = threading.Event()
        self.sent = 0  # keepalives sent, on all connections
        self.threads = [threading.Thread(target=self._accept, daemon=True)]
        self.threads[0].start()

    def _accept(self):
        self.listener.settimeout(0.1)
        while not self.stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, conn):
        with conn:
            conn.settimeout(5)
            request = b""
            while b"\r\n\r\n" not in request:
                chunk = conn.recv(4096)
                if not chunk:
                    return
                request += chunk
            head = request.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
            path = head[0].split()[1].split("?")[0]
            if path.startswith("/socket.io/"):
                path = "/sio"
            if path == "/http":
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000000\r\n\r\n")
            else:
                key = next(line.split(":", 1)[1].strip() for line in head if
                           line.lower().startswith("sec-websocket-key:"))
                accept = base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode()
                conn.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                              "Connection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n" % accept).encode())
            if path == "/sio":  # Engine.IO open, and the namespace joined at once
                conn.sendall(text_frame('0{"sid":"x","upgrades":[],"pingInterval":200,"pingTimeout":200}'))
                conn.sendall(text_frame('40{"sid":"y"}'))
            conn.setblocking(False)
            keepalives = KEEPALIVES[path]
            index = 0
            while not self.stop.wait(PERIOD_S):
                try:
                    conn.recv(65536)  # pongs, "3"s: read and dropped
                except (BlockingIOError, InterruptedError):
                    pass
                except OSError:
                    return
                try:
                    conn.sendall(keepalives[index % len(keepalives)])
                except OSError:
                    return
                index += 1
                self.sent += 1

    def close(self):
        self.stop.set()
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


@pytest.fixture
def pinging():
    server = PingingServer()
    yield server
    server.close()


def gives_up(pinging, call, *errors):
    """``call()`` raises one of ``errors`` (a timeout) in TIMEOUT_S, not much later, while
    the server kept sending."""
    sent = pinging.sent
    started = time.monotonic()
    with pytest.raises(errors or (socket.timeout,)):
        call()
    elapsed = time.monotonic() - started
    assert elapsed < GIVE_UP_S, "gave up after %.1f s, not by its %.1f s deadline" % (elapsed, TIMEOUT_S)
    assert elapsed > TIMEOUT_S * 0.9, "gave up early, after %.2f s" % elapsed
    assert pinging.sent - sent >= 2, "the server did not keep sending: nothing was tested"


# --- tests/fault_tools.py -----------------------------------------------------------------


def test_raw_websocket_text_and_frame_give_up_through_ping_frames(pinging):
    ws = RawWebSocket(pinging.port, "/ping")
    try:
        assert ws.status == 101
        gives_up(pinging, lambda: ws.text(timeout=TIMEOUT_S))
        gives_up(pinging, lambda: ws.frame(deadline=time.monotonic() + TIMEOUT_S))
    finally:
        ws.close()


def test_raw_websocket_default_timeout_is_one_deadline(pinging):
    ws = RawWebSocket(pinging.port, "/ping", timeout=TIMEOUT_S)
    try:
        gives_up(pinging, ws.text)
        ws.send("still usable for sends after a timeout")
    finally:
        ws.close()


def test_is_closed_by_server_is_false_when_only_pings_come(pinging):
    ws = RawWebSocket(pinging.port, "/eio")
    try:
        started = time.monotonic()
        assert ws.is_closed_by_server(timeout=TIMEOUT_S) is False  # a timeout is not a close
        assert time.monotonic() - started < GIVE_UP_S
    finally:
        ws.close()


def test_sio_event_gives_up_through_engineio_pings_and_noops(pinging):
    client = sio_client(pinging.port)
    try:
        gives_up(pinging, lambda: sio_event(client, timeout=TIMEOUT_S))
    finally:
        client.close()


def test_raw_exchange_gives_up_on_a_response_that_never_ends(pinging):
    gives_up(pinging, lambda: raw_exchange(pinging.port, b"GET /http HTTP/1.1\r\n\r\n", timeout=TIMEOUT_S))


def test_websocket_client_recv_gives_up_through_ping_frames(pinging):
    ws = websocket.create_connection("ws://127.0.0.1:%d/ping" % pinging.port, timeout=TIMEOUT_S)
    try:
        gives_up(pinging, lambda: client_recv(ws, TIMEOUT_S), socket.timeout, websocket.WebSocketTimeoutException)
        opcode, _ = client_frame(ws, GIVE_UP_S)  # the pings are there, one at a time
        assert opcode == websocket.ABNF.OPCODE_PING
    finally:
        ws.close()


# --- tests/fault_tools.py's ServerProcess and server_processes -----------------------------


def test_a_server_that_exits_at_start_is_reported_with_its_log(tmp_path):
    with pytest.raises(AssertionError, match="exited with 2 before serving") as caught:
        ServerProcess(tmp_path, "--simulate", "--update-interval", "1e-9")
    assert "error: --update-interval" in str(caught.value)  # the log's tail


def test_a_server_that_never_says_serving_is_killed(tmp_path):
    server = ServerProcess(tmp_path, "--simulate")
    assert server.stop() == 0
    server.settings += ["--log-level", "WARNING"]  # the "serving on" line is INFO
    with pytest.raises(AssertionError, match="did not serve within 1"):
        server.start(timeout=1.0)
    assert server.proc.returncode == -signal.SIGKILL


def test_a_restart_keeps_the_port(tmp_path):
    server = ServerProcess(tmp_path, "--simulate", "--update-interval", "0.1", healthy=True)
    port = server.port
    try:
        assert server.stop(signal.SIGKILL) == -signal.SIGKILL
        server.start()
        assert server.port == port and server.get("/api/health").status_code == 200
        assert server.log().count("serving on") == 2
    finally:
        server.stop()


def test_the_fixture_kills_a_fake_tegrastats_its_server_left(tmp_path):
    """The server killed with SIGKILL leaves its tegrastats (in a session of its own, here
    one that ignores SIGTERM) running: the teardown kills it."""
    fixture = server_processes(tmp_path)
    start = next(fixture)
    server = start("--update-interval", "0.1", fake=("--hang",))
    wait_until(lambda: server.health()["samples"] > 0, what="a sample")
    child = server.child_pid()
    assert server.stop(signal.SIGKILL) == -signal.SIGKILL
    assert proc_state(child) not in (None, "Z"), "the fake went with the server: nothing to test"
    next(fixture, None)  # the teardown
    wait_until(lambda: proc_state(child) in (None, "Z"), timeout=5, what="the fake killed")


# --- tests/test_esp32.py's Wire -----------------------------------------------------------------


@pytest.fixture
def wire(pinging):
    wire = Wire(pinging.port)
    yield wire
    wire.close()


def test_wire_ws_recv_and_next_update_give_up_through_pings(pinging, wire):
    status, _, _ = arduino_ws_handshake(wire, "/eio")
    assert status == 101
    gives_up(pinging, lambda: next_update(wire, time.monotonic() + TIMEOUT_S))


def test_wire_socketio_text_gives_up_through_noops(pinging, wire):
    assert arduino_ws_handshake(wire, "/noop")[0] == 101
    gives_up(pinging, lambda: socketio_text(wire, time.monotonic() + TIMEOUT_S))


def test_wire_ws_recv_gives_up_through_ping_frames(pinging, wire):
    assert arduino_ws_handshake(wire, "/ping")[0] == 101
    gives_up(pinging, lambda: wire.ws_recv(time.monotonic() + TIMEOUT_S))


def test_wire_reads_give_up_on_a_response_that_never_ends(pinging):
    wire = Wire(pinging.port, timeout=TIMEOUT_S)
    try:
        wire.send(b"GET /http HTTP/1.1\r\n\r\n")
        assert wire.response_head()[0] == 200
        gives_up(pinging, wire.read_to_close)
        gives_up(pinging, lambda: wire.read_exact(10 ** 6))
        gives_up(pinging, lambda: wire.read_until(b"never"))
    finally:
        wire.close()
