"""What the ESP32 sketches in examples/esp32/ send, replayed byte for byte on raw sockets.

Arduino toolchains cannot run here, so these tests speak to a real server on 127.0.0.1 the
way the sketches' libraries do (their request texts are copied from the libraries' sources):

- ``summary_http``: ESP32 ``HTTPClient`` with ``useHTTP10(true)``, ``GET /api/summary``;
- ``ws_fields``: Links2004 arduinoWebSockets ``WebSocketsClient::begin(host, port, url)``,
  whose handshake carries ``Origin: file://`` and ``Sec-WebSocket-Protocol: arduino``;
- ``socketio``: the same library's ``SocketIOclient::begin(host, port, "/socket.io/?EIO=4")``:
  an Engine.IO polling handshake, then the WebSocket upgrade on the same keep-alive
  connection, ``2probe`` and ``5``, then ``40/`` (the sketch joins the default namespace),
  and a ``3`` for every ``2`` ping of the server.

WebSocket frames are written and read by hand (client frames masked, server frames not),
as a microcontroller would; nothing beyond the standard library is used.
"""
from __future__ import annotations

import base64
import hashlib
import json
import os
import socket
import struct
import time
from typing import Dict, Iterator, Optional, Tuple

import pytest

from tegrastats_api import Config, TegrastatsServer

TIMEOUT_S = 5.0
FIELDS = "cpu.usage,gpu.usage,temperature.tj"
WS_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TOKEN = "esp-s3cret"
TEXT, CLOSE, PING, PONG = 0x1, 0x8, 0x9, 0xA


# ------------------------------------------------------------------ a microcontroller's socket


class Wire:
    """One TCP connection with a read buffer, counting the bytes each way.

    Every read has one overall deadline (an absolute ``time.monotonic()`` time; default
    ``timeout`` from the call) that the pings and noops read meanwhile cannot extend:
    ``socket.timeout`` once it has passed. A helper that reads several frames computes
    one deadline and passes it down.
    """

    def __init__(self, port: int, timeout: float = TIMEOUT_S) -> None:
        self.host = "127.0.0.1:%d" % port
        self.timeout = timeout
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self.buf = b""
        self.sent = 0
        self.received = 0

    def deadline(self, deadline: Optional[float] = None, timeout: Optional[float] = None) -> float:
        """``deadline`` if given, else ``timeout`` (default: the wire's) from now."""
        if deadline is not None:
            return deadline
        return time.monotonic() + (self.timeout if timeout is None else timeout)

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)
        self.sent += len(data)

    def _fill(self, deadline: float) -> None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("deadline passed")
        self.sock.settimeout(max(remaining, 0.01))
        try:
            chunk = self.sock.recv(65536)
        finally:
            self.sock.settimeout(self.timeout)  # for sends
        if not chunk:
            raise EOFError("the server closed the connection")
        self.received += len(chunk)
        self.buf += chunk

    def read_until(self, marker: bytes, deadline: Optional[float] = None) -> bytes:
        deadline = self.deadline(deadline)
        while marker not in self.buf:
            self._fill(deadline)
        end = self.buf.index(marker) + len(marker)
        out, self.buf = self.buf[:end], self.buf[end:]
        return out

    def read_exact(self, size: int, deadline: Optional[float] = None) -> bytes:
        deadline = self.deadline(deadline)
        while len(self.buf) < size:
            self._fill(deadline)
        out, self.buf = self.buf[:size], self.buf[size:]
        return out

    def read_to_close(self, deadline: Optional[float] = None) -> bytes:
        deadline = self.deadline(deadline)
        try:
            while True:
                self._fill(deadline)
        except EOFError:
            pass
        out, self.buf = self.buf, b""
        return out

    def response_head(self, deadline: Optional[float] = None) -> Tuple[int, Dict[str, str], bytes]:
        """(status, headers with lowercase names, the raw head) of an HTTP response."""
        head = self.read_until(b"\r\n\r\n", deadline)
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        return int(lines[0].split()[1]), headers, head

    # -- WebSocket frames (RFC 6455), as arduinoWebSockets writes and reads them

    def ws_send(self, payload: bytes, opcode: int = TEXT) -> None:
        mask = os.urandom(4)
        size = len(payload)
        if size < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, size)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, size)
        self.send(header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload)))

    def ws_recv(self, deadline: Optional[float] = None) -> Tuple[int, bytes, int]:
        """(opcode, payload, bytes on the wire) of the next text/close frame.

        Ping frames are answered with a pong, as the library does, and skipped; they do
        not extend the wait (``deadline``, default: the wire's timeout from now).
        """
        deadline = self.deadline(deadline)
        while True:
            first, second = self.read_exact(2, deadline)
            assert second & 0x80 == 0, "a server frame must not be masked"
            assert first & 0x80, "unexpected fragmented frame"
            size, wire_size = second & 0x7F, 2
            if size == 126:
                size, wire_size = struct.unpack("!H", self.read_exact(2, deadline))[0], 4
            elif size == 127:
                size, wire_size = struct.unpack("!Q", self.read_exact(8, deadline))[0], 10
            payload = self.read_exact(size, deadline)
            opcode = first & 0x0F
            if opcode == PING:
                self.ws_send(payload, PONG)
                continue
            if opcode == PONG:
                continue
            return opcode, payload, wire_size + size


def accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + WS_GUID).digest()).decode("ascii")


def arduino_ws_handshake(wire: Wire, url: str, origin: Optional[str] = "file://",
                         authorization: Optional[str] = None,
                         deadline: Optional[float] = None) -> Tuple[int, Dict[str, str], str]:
    """WebSocketsClient::sendHeader(): the upgrade request arduinoWebSockets writes.

    ``origin`` is its default extra header (``Origin: file://``); None is what
    ``setExtraHeaders()`` leaves (no Origin at all). ``authorization`` is the value given
    to ``setAuthorization(...)``.
    """
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    request = (
        "GET %s HTTP/1.1\r\n"
        "Host: %s\r\n"
        "Connection: Upgrade\r\n"
        "Upgrade: websocket\r\n"
        "Sec-WebSocket-Version: 13\r\n"
        "Sec-WebSocket-Key: %s\r\n"
        "Sec-WebSocket-Protocol: arduino\r\n" % (url, wire.host, key)
    )
    if origin is not None:
        request += "Origin: %s\r\n" % origin
    request += "User-Agent: arduino-WebSocket-Client\r\n"
    if authorization is not None:
        request += "Authorization: %s\r\n" % authorization
    request += "\r\n"
    wire.send(request.encode("ascii"))
    status, headers, _ = wire.response_head(deadline)
    return status, headers, key


def assert_upgraded(status: int, headers: Dict[str, str], key: str) -> None:
    """What the library checks before it reports WStype_CONNECTED."""
    assert status == 101, status
    assert headers.get("connection", "").lower() == "upgrade"
    assert headers.get("upgrade", "").lower() == "websocket"
    assert headers.get("sec-websocket-accept") == accept_key(key)


# ------------------------------------------------------------------ servers


def wait_for_data(port: int) -> None:
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        wire = Wire(port)
        try:
            wire.send(b"GET /api/health HTTP/1.0\r\n\r\n")
            if b" 200 " in wire.read_to_close(max(deadline, time.monotonic() + 0.5))[:20]:
                return
        finally:
            wire.close()
        time.sleep(0.05)
    raise AssertionError("the server produced no sample in %.0f s" % TIMEOUT_S)


def start_server(**fields: object) -> Iterator[TegrastatsServer]:
    config = Config(**dict({"host": "127.0.0.1", "port": 0, "simulate": "agx-orin",
                            "update_interval": 0.2}, **fields))
    with TegrastatsServer(config) as server:
        wait_for_data(server.port)
        yield server


@pytest.fixture(scope="module")
def server() -> Iterator[TegrastatsServer]:
    yield from start_server()


@pytest.fixture(scope="module")
def restricted() -> Iterator[TegrastatsServer]:
    """``--cors-origins http://only.example``: browsers from elsewhere are refused."""
    yield from start_server(cors_origins=("http://only.example",))


@pytest.fixture(scope="module")
def locked() -> Iterator[TegrastatsServer]:
    yield from start_server(auth_token=TOKEN)


# ------------------------------------------------------------------ summary_http.ino


def http10_get(port: int, request: str) -> Tuple[int, Dict[str, str], bytes, bytes]:
    wire = Wire(port)
    try:
        deadline = wire.deadline()
        wire.send(request.encode("ascii"))
        status, headers, head = wire.response_head(deadline)
        body = wire.read_to_close(deadline)  # HTTP/1.0: the server closes after the body
    finally:
        wire.close()
    return status, headers, head, body


def test_minimal_http10_request_gets_a_small_summary_with_content_length(server):
    status, headers, _, body = http10_get(
        server.port, "GET /api/summary HTTP/1.0\r\nHost: 127.0.0.1:%d\r\n\r\n" % server.port)
    assert status == 200
    assert headers["content-type"].startswith("application/json")
    assert int(headers["content-length"]) == len(body) < 256
    summary = json.loads(body)
    assert set(summary) == {"timestamp", "source", "cpu", "gpu", "ram_used", "ram_total",
                            "swap_used", "temp_max", "temp_max_sensor", "power_mw"}
    assert summary["source"] == "simulator" and summary["ram_total"] == 62841
    assert summary["temp_max_sensor"] in ("cpu", "tj", "soc0", "soc1", "soc2", "gpu", "tboard", "tdiode")


def test_httpclient_request_with_bearer_token(locked):
    """HTTPClient with useHTTP10(true) and addHeader("Authorization", "Bearer " TOKEN)."""
    request = ("GET /api/summary HTTP/1.0\r\nHost: 127.0.0.1:%d\r\nUser-Agent: ESP32HTTPClient\r\n"
               "Connection: close\r\n%s\r\n")
    status, headers, _, body = http10_get(locked.port, request % (locked.port, ""))
    assert status == 401 and json.loads(body)["status"] == 401
    status, headers, _, body = http10_get(
        locked.port, request % (locked.port, "Authorization: Bearer %s\r\n" % TOKEN))
    assert status == 200 and int(headers["content-length"]) == len(body) < 256
    assert json.loads(body)["cpu"] is not None


# ------------------------------------------------------------------ ws_fields.ino


def read_filtered_frames(port: int, url: str, origin: Optional[str], count: int = 2,
                         authorization: Optional[str] = None) -> list:
    wire = Wire(port)
    try:
        status, headers, key = arduino_ws_handshake(wire, url, origin, authorization)
        assert_upgraded(status, headers, key)
        deadline = wire.deadline()  # for all the frames: one a second at the slowest
        docs = []
        for _ in range(count):
            opcode, payload, wire_size = wire.ws_recv(deadline)
            assert opcode == TEXT
            assert wire_size < 160, "a fields= frame should stay small (%d bytes)" % wire_size
            docs.append(json.loads(payload))
        return docs
    finally:
        wire.close()


def assert_only_fields(doc: dict) -> None:
    assert set(doc) == {"timestamp", "cpu", "gpu", "temperature"}, doc
    assert set(doc["cpu"]) == {"usage"} and set(doc["gpu"]) == {"usage"}
    assert set(doc["temperature"]) == {"tj"}
    assert isinstance(doc["cpu"]["usage"], float) and isinstance(doc["temperature"]["tj"], float)


@pytest.mark.parametrize("origin", ["file://", None], ids=["origin-file", "no-origin"])
def test_ws_fields_frames_with_arduino_handshake(server, origin):
    first, second = read_filtered_frames(server.port, "/ws?fields=" + FIELDS, origin)
    assert_only_fields(first)
    assert_only_fields(second)
    assert second["timestamp"] > first["timestamp"], "the second frame is the next sample"


@pytest.mark.parametrize("origin", ["file://", None], ids=["origin-file", "no-origin"])
def test_ws_fields_with_restricted_cors_origins(restricted, origin):
    for doc in read_filtered_frames(restricted.port, "/ws?fields=" + FIELDS, origin):
        assert_only_fields(doc)


def test_restricted_cors_origins_still_refuses_a_foreign_origin(restricted):
    """Control for the test above: the restriction is in force for browsers."""
    wire = Wire(restricted.port)
    try:
        status, headers, _ = arduino_ws_handshake(wire, "/ws?fields=" + FIELDS, "http://evil.example")
        assert status == 403
        assert json.loads(wire.read_exact(int(headers["content-length"])))["status"] == 403
    finally:
        wire.close()


def test_ws_fields_with_token_in_the_url(locked):
    wire = Wire(locked.port)
    try:
        status, headers, _ = arduino_ws_handshake(wire, "/ws?fields=" + FIELDS)
        assert status == 401
    finally:
        wire.close()
    for doc in read_filtered_frames(locked.port, "/ws?fields=%s&token=%s" % (FIELDS, TOKEN), "file://", 1):
        assert_only_fields(doc)
    # webSocket.setAuthorization("Bearer " TOKEN): the same, in a header
    for doc in read_filtered_frames(locked.port, "/ws?fields=" + FIELDS, "file://", 1, "Bearer " + TOKEN):
        assert_only_fields(doc)


def test_ws_unknown_field_is_refused_with_a_json_400(server):
    wire = Wire(server.port)
    try:
        status, headers, _ = arduino_ws_handshake(wire, "/ws?fields=cpu.usage,cpu.nope")
        assert status == 400
        body = json.loads(wire.read_exact(int(headers["content-length"])))
        assert "cpu.nope" in body["error"]
    finally:
        wire.close()


# ------------------------------------------------------------------ socketio.ino


def eio_open_packet(text: str, upgrades: Tuple[str, ...] = ()) -> dict:
    assert text.startswith("0{"), text
    packet = json.loads(text[1:])
    assert packet["sid"] and packet["pingInterval"] > 0 and packet["pingTimeout"] > 0
    assert tuple(packet["upgrades"]) == upgrades
    return packet


def arduino_socketio_connect(wire: Wire, url: str = "/socket.io/?EIO=4") -> dict:
    """SocketIOclient::begin(host, port, url): polling handshake, upgrade, probe, namespace.

    Returns the Engine.IO open packet. Leaves the connection after the ``40`` CONNECT reply.
    All of it within twice the wire's timeout (five exchanges).
    """
    deadline = wire.deadline(timeout=2 * wire.timeout)
    # 1. No session id yet: a polling GET on a keep-alive connection (WebSocketsClient::sendHeader).
    wire.send(("GET %s&transport=polling HTTP/1.1\r\nHost: %s\r\nConnection: keep-alive\r\n"
               "Origin: file://\r\nUser-Agent: arduino-WebSocket-Client\r\n\r\n" % (url, wire.host)).encode())
    status, headers, _ = wire.response_head(deadline)
    assert status == 200, status
    body = wire.read_exact(int(headers["content-length"]), deadline).decode()
    assert '"sid":"' in body  # the library searches the body (at most 256 bytes) for this
    assert len(body) <= 256
    opened = eio_open_packet(body.split("\x1e")[0], upgrades=("websocket",))
    # 2. The WebSocket upgrade with that sid, on the same connection.
    status, headers, key = arduino_ws_handshake(wire, "%s&transport=websocket&sid=%s" % (url, opened["sid"]),
                                                deadline=deadline)
    assert_upgraded(status, headers, key)
    # 3. WStype_CONNECTED: the library sends "2probe" and "5"; the sketch joins "/".
    wire.ws_send(b"2probe")
    wire.ws_send(b"5")
    assert socketio_text(wire, deadline) == "3probe"
    wire.ws_send(b"40/")
    reply = socketio_text(wire, deadline)
    assert reply.startswith("40{") and json.loads(reply[2:])["sid"], reply
    return opened


def socketio_text(wire: Wire, deadline: Optional[float] = None) -> str:
    """The next Engine.IO packet that is not a noop; pings are not answered here. Noops
    do not extend the wait: ``socket.timeout`` at ``deadline`` (default: the wire's timeout
    from now)."""
    deadline = wire.deadline(deadline)
    while True:
        opcode, payload, _ = wire.ws_recv(deadline)
        assert opcode == TEXT, (opcode, payload)
        text = payload.decode()
        if text != "6":
            return text


def next_update(wire: Wire, deadline: Optional[float] = None) -> Tuple[dict, int]:
    """The next ``tegrastats_update`` document and its frame size, answering pings. Pings
    and noops do not extend the wait: ``socket.timeout`` at ``deadline`` (default: the
    wire's timeout from now)."""
    deadline = wire.deadline(deadline)
    while True:
        opcode, payload, wire_size = wire.ws_recv(deadline)
        assert opcode == TEXT, (opcode, payload)
        text = payload.decode()
        if text == "2":
            wire.ws_send(b"3")
        elif text.startswith("42"):
            name, doc = json.loads(text[2:])
            assert name == "tegrastats_update"
            return doc, wire_size


def test_socketio_client_handshake_as_the_library_does_it(server):
    wire = Wire(server.port)
    try:
        arduino_socketio_connect(wire)
        first, _ = next_update(wire)
        second, size = next_update(wire)
    finally:
        wire.close()
    assert isinstance(first, dict) and first["schema"] == 1 and first["source"] == "simulator"
    assert second["timestamp"] > first["timestamp"]
    assert size < 4096, "a whole document per event: reserve 4 kB on the ESP32"


def test_socketio_direct_websocket_open_with_eio4(server):
    """``GET /socket.io/?EIO=4&transport=websocket`` straight away (a session from a cookie,
    or any minimal client): open packet first, then ``40``, then events."""
    wire = Wire(server.port)
    try:
        status, headers, key = arduino_ws_handshake(wire, "/socket.io/?EIO=4&transport=websocket")
        assert_upgraded(status, headers, key)
        eio_open_packet(socketio_text(wire))
        wire.ws_send(b"40")
        assert socketio_text(wire).startswith("40{")
        doc, _ = next_update(wire)
        assert doc["schema"] == 1
    finally:
        wire.close()


def test_socketio_eio3_is_refused(server):
    """Why the sketch asks for EIO=4: the library's default (EIO=3) gets no session."""
    wire = Wire(server.port)
    try:
        wire.send(("GET /socket.io/?EIO=3&transport=polling HTTP/1.1\r\nHost: %s\r\n"
                   "Connection: keep-alive\r\nOrigin: file://\r\n\r\n" % wire.host).encode())
        deadline = wire.deadline()
        status, headers, _ = wire.response_head(deadline)
        body = wire.read_exact(int(headers.get("content-length", "0")), deadline)
    finally:
        wire.close()
    assert status == 400 and b'"sid"' not in body


def test_socketio_token_in_the_url(locked):
    wire = Wire(locked.port)
    try:
        arduino_socketio_connect(wire, "/socket.io/?EIO=4&token=%s" % TOKEN)
        doc, _ = next_update(wire)
        assert doc["schema"] == 1
    finally:
        wire.close()


@pytest.fixture
def fast_ping_server(monkeypatch) -> Iterator[TegrastatsServer]:
    """A server whose Engine.IO pings every second and gives up 1 s after an unanswered one.

    The interval is a module constant of tegrastats_api.sio (25 s in production); the tests
    read the real values from the open packet, so they hold with any setting.
    """
    import tegrastats_api.sio as sio_module

    monkeypatch.setattr(sio_module, "PING_INTERVAL_S", 1)
    monkeypatch.setattr(sio_module, "PING_TIMEOUT_S", 1)
    yield from start_server()


def test_socketio_answering_pings_keeps_the_connection(fast_ping_server):
    wire = Wire(fast_ping_server.port)
    try:
        opened = arduino_socketio_connect(wire)
        interval_s = opened["pingInterval"] / 1000.0
        patience_s = interval_s + opened["pingTimeout"] / 1000.0
        pings, updates_after_ping = 0, 0
        deadline = time.monotonic() + patience_s + interval_s + 0.5  # past one whole ping timeout
        hard_deadline = deadline + TIMEOUT_S  # for the last read, which starts before `deadline`
        while time.monotonic() < deadline:
            opcode, payload, _ = wire.ws_recv(hard_deadline)
            assert opcode == TEXT, "the server closed the connection (%r)" % payload
            text = payload.decode()
            if text == "2":
                wire.ws_send(b"3")  # SocketIOclient: eIOtype_PING -> the same payload as PONG
                pings += 1
            elif text.startswith("42") and pings:
                updates_after_ping += 1
    finally:
        wire.close()
    assert pings >= 2, "expected at least two pings in %.1f s" % (deadline - time.monotonic())
    assert updates_after_ping > 0


def test_socketio_unanswered_pings_end_the_connection(fast_ping_server):
    """Control for the test above: the same client without pongs is dropped."""
    wire = Wire(fast_ping_server.port)
    try:
        opened = arduino_socketio_connect(wire)
        patience_s = (opened["pingInterval"] + opened["pingTimeout"]) / 1000.0
        # Events come every 0.2 s: 1.5 s without a text frame means the server dropped the
        # session (python-engineio 4.3 stops sending without closing the connection; newer
        # ones close it). WebSocket pings do not count: ws_recv skips them within its deadline.
        deadline = time.monotonic() + patience_s + TIMEOUT_S
        dropped = False
        while time.monotonic() < deadline and not dropped:
            try:
                # "2" pings are read and deliberately ignored
                opcode, payload, _ = wire.ws_recv(time.monotonic() + 1.5)
            except (EOFError, ConnectionResetError, socket.timeout):
                dropped = True
            else:
                dropped = opcode == CLOSE or payload == b"1"  # close frame, Engine.IO CLOSE
    finally:
        wire.close()
    assert dropped, "a client that never answers pings should be dropped"
