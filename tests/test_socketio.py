"""Socket.IO at /socket.io/: the python-socketio client and the real JavaScript client.

The server runs in a background thread (``live_server``); the sync python-socketio
client and ``node tests/node/sio_client.js`` connect over polling, websocket and polling
with upgrade, and must receive ``tegrastats_update`` with the same document as
``/api/status``.
"""
from __future__ import annotations

import json
import inspect
import os
import queue
import shutil
import subprocess
import threading
import time

import pytest
import requests
import socketio
import websocket

from conftest import TESTS_DIR, require_tool
from fault_tools import SIO_PATH, RawWebSocket, client_recv, deadline_after, wait_until
from tegrastats_api.sio import MAX_BACKLOG

WAIT_S = 5
NODE_CLIENT = os.path.join(TESTS_DIR, "node", "sio_client.js")
NODE_MODULES = os.path.join(TESTS_DIR, "node", "node_modules", "socket.io-client")
TRANSPORTS = {"websocket": ["websocket"], "polling": ["polling"], "upgrade": None}


def rest_status(server, **kwargs):
    response = requests.get(server.url + "/api/status", timeout=WAIT_S, **kwargs)
    assert response.status_code == 200
    return response.json()


# The stack's own python-socketio is the client too. Before 5.1 (Ubuntu 22.04's 5.0.3) its
# connect() has no ``auth`` or ``wait_timeout`` and returns before the namespace is
# accepted or refused; PyClient waits for that itself, and the auth object is checked with
# a raw Socket.IO client (raw_connect) and socket.io-client on every stack.
CONNECT_PARAMS = inspect.signature(socketio.Client.connect).parameters
CLIENT_HAS_AUTH = "auth" in CONNECT_PARAMS


class PyClient:
    """A python-socketio client that records its events."""

    def __init__(self):
        self.sio = socketio.Client(reconnection=False)
        self.updates = queue.Queue()
        self.errors = []
        self.disconnected = threading.Event()
        self.sio.on("tegrastats_update", self.updates.put)
        self.sio.on("connect_error", self.errors.append)
        self.sio.on("disconnect", lambda *args: self.disconnected.set())

    def connect(self, url, transports=None, wait_timeout=WAIT_S, **kwargs):
        if "wait_timeout" in CONNECT_PARAMS:
            self.sio.connect(url, transports=transports, wait_timeout=wait_timeout, **kwargs)
            return self
        self.sio.connect(url, transports=transports, **kwargs)
        try:
            wait_until(lambda: self.errors or "/" in self.sio.namespaces, timeout=wait_timeout)
        except AssertionError:
            raise socketio.exceptions.ConnectionError("no answer to the namespace connect") from None
        if self.errors:
            raise socketio.exceptions.ConnectionError(self.errors[0])
        return self

    def next_update(self):
        return self.updates.get(timeout=WAIT_S)

    def close(self):
        # python-engineio's sync client can wait 25 s in disconnect() over polling (a
        # race in its write loop, seen with any server); do not let a test wait for it.
        thread = threading.Thread(target=self.sio.disconnect, daemon=True)
        thread.start()
        thread.join(0.3)


@pytest.fixture
def py_client():
    clients = []

    def make():
        client = PyClient()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.close()


def refused_message(client, url, transports, **kwargs):
    """The connect_error message. (Over polling, python-engineio's sync client may hang
    25 s after a refusal, see PyClient.close; node covers refusals over polling. And
    python-socketio 5.7's client waits all of ``wait_timeout`` after a refusal.)"""
    with pytest.raises(socketio.exceptions.ConnectionError):
        client.connect(url, transports=transports, wait_timeout=1, **kwargs)
    return client.errors[0]["message"] if client.errors else None


@pytest.mark.parametrize("transport", sorted(TRANSPORTS))
def test_python_client_gets_the_rest_document(live_server, py_client, transport_lines, transport):
    server = live_server(transport_lines[:1])
    client = py_client().connect(server.url, TRANSPORTS[transport])
    first = client.next_update()
    assert isinstance(first, dict)  # an object, not a JSON string
    assert first == rest_status(server) == server.hub.latest_document
    for line in transport_lines[1:3]:
        server.feed(line)
        assert client.next_update() == rest_status(server)
    assert server.limiter.count == 1


def straight_pushes(server):
    """Sample frames written straight to Socket.IO WebSockets so far (SamplePushes.pushed)."""
    from tegrastats_api.sio import snapshot_namespace

    return server.call(lambda: snapshot_namespace(server.server.sio).pushes.pushed)


@pytest.mark.parametrize("transport", ["websocket", "upgrade"])
def test_websocket_clients_get_every_sample_straight_and_in_order(live_server, py_client, transport_lines, transport):
    """Once python-engineio has written a sample to a WebSocket client (one that began as
    one, or upgraded from polling), the next ones go to its socket straight; the client
    sees every sample once, in order, the same documents as the hub's, one at a time and in
    a burst of samples made in one step of the loop, while a polling client beside it gets
    every sample through python-engineio."""
    server = live_server(transport_lines[:1])
    client = py_client().connect(server.url, TRANSPORTS[transport])
    poller = py_client().connect(server.url, ["polling"])
    assert client.next_update() == poller.next_update() == server.hub.latest_document
    wait_until(lambda: client.sio.transport() == "websocket")  # the upgrade is done
    before = straight_pushes(server)
    for index in range(10):
        server.feed(transport_lines[index % len(transport_lines)])
        document = server.hub.latest_document
        assert client.next_update() == poller.next_update() == document
    assert straight_pushes(server) - before >= 8, "samples did not go straight to the WebSocket"

    def burst():
        documents = []
        for index in range(20):
            server.hub.feed_line(transport_lines[index % len(transport_lines)])
            documents.append(server.hub.latest_document)
        return documents

    before = straight_pushes(server)
    sent = server.call(burst)
    assert [client.next_update() for _ in sent] == sent
    assert straight_pushes(server) - before == len(sent)
    time.sleep(0.2)
    assert client.updates.empty()  # nothing twice


def test_socketio_takes_samples_from_the_hub_only_while_it_has_clients(live_server, py_client, transport_lines):
    """Without Socket.IO clients the hub has no subscriber for it (and so no document to
    make for it); the first client subscribes, the last one leaving unsubscribes."""
    server = live_server(transport_lines[:1])
    assert server.hub.subscriber_count == 0
    first = py_client().connect(server.url, ["websocket"])
    second = py_client().connect(server.url, ["websocket"])
    assert first.next_update() == second.next_update() == server.hub.latest_document
    assert server.hub.subscriber_count == 1
    first.sio.disconnect()
    wait_until(lambda: server.limiter.count == 1, timeout=WAIT_S)
    assert server.hub.subscriber_count == 1
    server.feed(transport_lines[1])
    assert second.next_update() == rest_status(server)
    second.sio.disconnect()
    wait_until(lambda: server.limiter.count == 0 and server.hub.subscriber_count == 0, timeout=WAIT_S)
    third = py_client().connect(server.url, ["websocket"])
    third.next_update()
    server.feed(transport_lines[2])
    assert third.next_update() == rest_status(server)


def test_cap_is_shared_with_ws_and_names_the_limit(live_server, py_client, transport_lines):
    server = live_server(transport_lines[:1], max_connections=2)
    first = py_client().connect(server.url, ["websocket"])
    first.next_update()
    ws = websocket.create_connection(server.url.replace("http", "ws") + "/ws", timeout=WAIT_S)
    try:
        client_recv(ws, WAIT_S)
        assert server.limiter.count == 2
        message = refused_message(py_client(), server.url, ["websocket"])
        assert message == "too many connections (limit 2)"
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(server.url.replace("http", "ws") + "/ws", timeout=WAIT_S)
        assert refused.value.status_code == 503
        server.feed(transport_lines[1])  # the connected clients are untouched
        assert first.next_update() == server.hub.latest_document
        assert json.loads(client_recv(ws, WAIT_S)) == server.hub.latest_document
    finally:
        ws.close()


def test_slot_is_released_on_disconnect(live_server, py_client, transport_lines):
    server = live_server(transport_lines[:1], max_connections=1)
    client = py_client().connect(server.url, ["websocket"])
    client.next_update()
    client.close()
    wait_until(lambda: server.limiter.count == 0)
    py_client().connect(server.url, ["websocket"]).next_update()


def test_polling_client_that_stops_polling_skips_samples(live_server, py_client, transport_lines):
    server = live_server(transport_lines[:1])
    fast = py_client().connect(server.url, ["websocket"])
    fast.next_update()
    base = server.url + "/socket.io/?EIO=4&transport=polling"
    eio_sid = json.loads(requests.get(base, timeout=WAIT_S).text[1:])["sid"]
    requests.post(base + "&sid=" + eio_sid, data="40", timeout=WAIT_S)  # connect, never poll
    wait_until(lambda: server.limiter.count == 2)
    for index in range(20):
        server.feed(transport_lines[index % len(transport_lines)])
        assert fast.next_update() == server.hub.latest_document  # others keep every sample
    queued = server.call(lambda: server.server.sio.eio.sockets[eio_sid].queue.qsize())
    assert queued <= MAX_BACKLOG + 1


def test_server_stop_disconnects_clients(live_server, py_client, transport_lines):
    server = live_server(transport_lines[:1])
    client = py_client().connect(server.url, ["websocket"])
    client.next_update()
    server.stop()
    assert client.disconnected.wait(WAIT_S)


def raw_connect(port, auth=None, query="&token=s3cret"):
    """A Socket.IO connect on a raw WebSocket whose handshake carries ``query``; the server's
    answer to it (``40{...}`` or ``44{...}``)."""
    deadline = deadline_after(2 * WAIT_S)  # for the whole exchange: pings do not extend it
    client = RawWebSocket(port, SIO_PATH, query=query)
    try:
        assert client.status == 101 and client.text(deadline=deadline).startswith("0{")  # Engine.IO open
        client.send("40" + ("" if auth is None else json.dumps(auth)))
        while True:
            answer = client.text(deadline=deadline)
            if answer.startswith("4"):
                return answer
            client.send("3")  # answer Engine.IO pings
    finally:
        client.close()


@pytest.mark.parametrize("auth, accepted", [
    ({"token": "s3cret"}, True), ({"token": "bad"}, False), ({"token": "s3cret", "more": [1]}, True),
    ({"token": 1}, True), ({}, True), (None, True),  # no token string in it: the handshake's counts
])
def test_auth_object_on_the_wire(live_server, transport_lines, auth, accepted):
    """A token in the CONNECT packet's auth object is checked too, on every stack (python-socketio
    5.0 drops the object; tegrastats_api.compat keeps it), and a refusal carries
    ``{"message": ...}`` on every stack (5.0 would send a bare string)."""
    server = live_server(transport_lines[:1], auth_token="s3cret")
    answer = raw_connect(server.server.port, auth)
    if accepted:
        assert answer.startswith("40{") and json.loads(answer[2:])["sid"], answer
    else:
        assert answer.startswith("44") and json.loads(answer[2:]) == {"message": "missing or invalid token"}


@pytest.mark.parametrize("query", ["", "&token=bad", "&token=", "&Token=s3cret"])
def test_a_handshake_without_the_token_is_refused_before_a_session(live_server, transport_lines, query):
    server = live_server(transport_lines[:1], auth_token="s3cret")
    response = requests.get(server.url + "/socket.io/?EIO=4&transport=polling" + query, timeout=WAIT_S)
    assert response.status_code == 401 and response.json()["error"] == "missing or invalid token"
    assert RawWebSocket(server.server.port, SIO_PATH, query=query).status == 401
    assert server.server.sio.eio.sockets == {}, "a refused handshake must not leave an Engine.IO session"


def test_auth(live_server, py_client, transport_lines):
    server = live_server(transport_lines[:1], auth_token="s3cret")
    with pytest.raises(socketio.exceptions.ConnectionError):  # refused at the handshake (HTTP 401)
        py_client().connect(server.url, ["websocket"], wait_timeout=1)
    good = rest_status(server, headers={"Authorization": "Bearer s3cret"})
    cases = [
        ({"headers": {"Authorization": "Bearer s3cret"}}, server.url, ["polling"]),
        ({}, server.url + "?token=s3cret", ["websocket"]),
    ]
    if CLIENT_HAS_AUTH:
        assert refused_message(py_client(), server.url + "?token=s3cret", ["websocket"],
                               auth={"token": "bad"}) == "missing or invalid token"
        cases.append(({"auth": {"token": "s3cret"}}, server.url + "?token=s3cret", ["websocket"]))
    for kwargs, url, transports in cases:
        client = py_client().connect(url, transports, **kwargs)
        assert client.next_update() == good
        client.close()
    assert wait_until(lambda: server.limiter.count == 0)


@pytest.mark.parametrize("origin, allowed", [
    (None, True), ("null", True), ("file://", True), ("http://dash.example", True),
    ("SAME", True), ("http://evil.example", False),
])
def test_origins_over_polling(live_server, py_client, transport_lines, origin, allowed):
    server = live_server(transport_lines[:1], cors_origins=("http://dash.example",))
    origin = server.url if origin == "SAME" else origin
    headers = {} if origin is None else {"Origin": origin}
    client = py_client()
    if allowed:
        client.connect(server.url, ["polling"], headers=headers).next_update()
    else:
        with pytest.raises(socketio.exceptions.ConnectionError, match="403"):
            client.connect(server.url, ["polling"], headers=headers)
    response = requests.get(server.url + "/socket.io/?EIO=4&transport=polling",
                            headers=headers, timeout=WAIT_S)
    assert response.status_code == (200 if allowed else 403)
    if allowed and origin:
        assert response.headers["Access-Control-Allow-Origin"] == origin


@pytest.mark.parametrize("origin, allowed", [
    (None, True), ("null", True), ("file://", True), ("http://dash.example", True),
    ("SAME", True), ("http://evil.example", False),
])
def test_origins_over_websocket(live_server, transport_lines, origin, allowed):
    server = live_server(transport_lines[:1], cors_origins=("http://dash.example",))
    origin = server.url if origin == "SAME" else origin
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    options = {"suppress_origin": True} if origin is None else {"origin": origin}
    if not allowed:
        with pytest.raises(websocket.WebSocketBadStatusException) as refused:
            websocket.create_connection(url, timeout=WAIT_S, **options)
        assert refused.value.status_code == 403
        return
    ws = websocket.create_connection(url, timeout=WAIT_S, **options)
    try:
        assert client_recv(ws, WAIT_S).startswith("0{")  # the Engine.IO open packet
    finally:
        ws.close()


def test_websocket_compression_is_off(live_server, transport_lines):
    server = live_server(transport_lines[:1])
    url = server.url.replace("http", "ws") + "/socket.io/?EIO=4&transport=websocket"
    ws = websocket.create_connection(
        url, timeout=WAIT_S, header=["Sec-WebSocket-Extensions: permessage-deflate"])
    try:
        assert "sec-websocket-extensions" not in {k.lower() for k in ws.getheaders()}
    finally:
        ws.close()


# --- the JavaScript client ------------------------------------------------------------


@pytest.fixture
def node_client():
    require_tool(shutil.which("node") and os.path.isdir(NODE_MODULES),
                 "node with socket.io-client in tests/node (run `make node`)")
    started = []

    def start(url, *args):
        client = NodeClient(url, *args)
        started.append(client)
        return client

    yield start
    for client in started:
        client.kill()


class NodeClient:
    """``node tests/node/sio_client.js URL ARGS``, its JSON lines read in a thread."""

    def __init__(self, url, *args):
        self.proc = subprocess.Popen(
            ["node", NODE_CLIENT, url, "--timeout", str(WAIT_S * 1000)] + list(args),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        self.lines = queue.Queue()
        self.seen = []  # every line read so far
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self):
        for line in self.proc.stdout:
            self.lines.put(json.loads(line))
        self.lines.put({"event": "eof"})

    def next(self, event=None):
        """The next line (of type ``event`` if given), within 3 * WAIT_S (node's start
        included) however many other lines come meanwhile; ``queue.Empty`` then."""
        deadline = deadline_after(3 * WAIT_S)
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise queue.Empty("no %s line in %s s" % (event or "", 3 * WAIT_S))
            item = self.lines.get(timeout=remaining)
            self.seen.append(item)
            if event is None or item["event"] in (event, "eof", "timeout", "connect_error"):
                return item

    def wait(self):
        try:
            return self.proc.wait(WAIT_S)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()

    def kill(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)


@pytest.mark.parametrize("args, transports", [
    (["--transports", "websocket"], {"websocket"}),
    (["--transports", "polling"], {"polling"}),
    (["--transports", "polling,websocket", "--expect-upgrade"], {"polling", "websocket"}),
])
def test_node_client(live_server, node_client, transport_lines, args, transports):
    server = live_server(transport_lines[:1])
    client = node_client(server.url, "--count", "3", *args)
    first = client.next("tegrastats_update")
    assert first["data"] == rest_status(server)
    assert client.next("ready") == {"event": "ready"}
    for line in transport_lines[1:3]:
        server.feed(line)
        update = client.next("tegrastats_update")
        assert update["data"] == rest_status(server), update
    assert client.wait() == 0
    seen = {first["transport"], update["transport"]}
    assert seen <= transports
    if "--expect-upgrade" in args:
        events = [(item["event"], item.get("transport")) for item in client.seen]
        assert events[0] == ("open", "polling")
        assert ("upgrade", "websocket") in events


@pytest.mark.parametrize("args", [["--transports", "websocket"], ["--transports", "polling,websocket",
                                                                  "--expect-upgrade"]])
def test_node_client_gets_a_burst_straight_and_in_order(live_server, node_client, transport_lines, args):
    """socket.io-client 4 over WebSocket (from the start, or after an upgrade) gets a burst
    of samples made in one step of the loop, every one once and in order, mostly written
    straight to its socket."""
    server = live_server(transport_lines[:1])
    count = 20
    client = node_client(server.url, "--count", str(count + 2), *args)
    assert client.next("tegrastats_update")["data"] == server.hub.latest_document
    assert client.next("ready") == {"event": "ready"}
    if "--expect-upgrade" in args and not any(item["event"] == "upgrade" for item in client.seen):
        client.next("upgrade")
    server.feed(transport_lines[1])  # python-engineio writes it: the client is caught up
    assert client.next("tegrastats_update")["data"] == server.hub.latest_document
    before = straight_pushes(server)

    def burst():
        documents = []
        for index in range(count):
            server.hub.feed_line(transport_lines[index % len(transport_lines)])
            documents.append(server.hub.latest_document)
        return documents

    sent = server.call(burst)
    updates = [client.next("tegrastats_update") for _ in sent]
    assert [update["data"] for update in updates] == sent
    assert {update["transport"] for update in updates} == {"websocket"}
    assert client.wait() == 0
    assert straight_pushes(server) - before == count


def test_node_client_cap_and_auth(live_server, node_client, py_client, transport_lines):
    server = live_server(transport_lines[:1], max_connections=1, auth_token="s3cret")
    # A wrong token: socket.io-client reports the server's reason, whether the handshake was
    # refused (?token=, HTTP 401 over polling) or the namespace connect (the auth object).
    for args in (["--token", "wrong"], ["--token", "wrong", "--transports", "polling"],
                 ["--token", "wrong", "--auth-only"]):
        bad = node_client(server.url, *args)
        assert bad.next("connect_error")["reason"] == "missing or invalid token", args
        assert bad.wait() == 2
    good = node_client(server.url, "--token", "s3cret", "--count", "1")
    assert good.next("tegrastats_update")["data"] == server.hub.latest_document
    assert good.wait() == 0
    wait_until(lambda: server.limiter.count == 0)
    py_client().connect(server.url + "?token=s3cret", ["websocket"]).next_update()
    over = node_client(server.url, "--token", "s3cret")
    assert over.next("connect_error")["reason"] == "too many connections (limit 1)"
    assert over.wait() == 2


def test_the_broadcast_packet_is_what_python_socketio_would_encode():
    """Each sample's Socket.IO packet is made once from the hub's JSON (sio_push.event_packet); for
    every recorded line, and a document with text that JSON escapes, it is the very text
    python-socketio's own encoder makes of ``[event, document]``, and decodes back to the
    document."""
    import csv

    from socketio import packet as sio_packet

    from tegrastats_api.hub import SnapshotHub, encode_document
    from tegrastats_api.sio import EVENT
    from tegrastats_api.sio_push import event_packet

    with open(os.path.join(TESTS_DIR, "fixtures", "tegrastats", "samples.tsv"), encoding="utf-8", newline="") as f:
        lines = [row["line"] for row in csv.DictReader(f, delimiter="\t")]
    hub = SnapshotHub("replay")
    documents = []
    for line in lines:
        hub.feed_line(line)
        documents.append(hub.latest_document)
    documents.append({"text": 'quote " backslash \\ newline \n unicode \u00e9\u2603 \U0001f600',
                      "n": [1.5, -0.0, None]})
    assert len(documents) > 50
    for document in documents:
        expected = sio_packet.Packet(sio_packet.EVENT, data=[EVENT, document]).encode()
        made = event_packet(EVENT, encode_document(document))
        assert made == expected
        decoded = sio_packet.Packet(encoded_packet=made)
        assert decoded.data == [EVENT, document]
