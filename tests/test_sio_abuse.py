"""Abuse of Socket.IO and its Engine.IO sessions, and the error answers of both push paths.

- A connect whose checks raise (a lone surrogate as the auth token, a failing limiter, a
  handler that raises past the guard) is refused, holds no slot and gets no broadcast.
- Engine.IO handshakes need the token when one is set (401 before any session exists); without
  one, sessions that never join the namespace are capped (503 beyond) and expire.
- Polling clients that stop polling (never poll, poll once, leave during a long-poll) give
  their slots back within seconds; clients that keep polling, and WebSocket ones, keep them.
- Every error of ``/ws`` and ``/socket.io/`` is the contract's JSON, with the right status,
  for every method, bad queries, bad upgrades and bad POST bodies.

Real servers on 127.0.0.1 (``live_server``) and clients on plain sockets or requests. Loops
are a few hundred requests; waits are deadlines, and the assertions are on status codes,
counts and slots.
"""
from __future__ import annotations

import collections
import json
import asyncio
import logging
import re
import socket
import threading
import time

import pytest
import requests
import socketio

from fault_tools import (
    SIO_PATH,
    WAIT_S,
    RawWebSocket,
    deadline_after,
    document_time,
    recv_by,
    sio_client,
    sio_event,
    wait_until,
)
from tegrastats_api import sessions as sessions_module
from tegrastats_api import sio as sio_module

TOKEN = "tok-5d1e-SECRET"
POLLING = "/socket.io/?EIO=4&transport=polling"
JSON_TYPE = "application/json"
SIO_METHODS = "GET, POST, OPTIONS"
SWEEP_WAIT_S = 30.0  # generous: a sweep every second, 5 s of grace, a loaded machine
PING_TIMEOUT_WAIT_S = 12.0  # less than python-engineio's ping interval + timeout (45 s here)


# --- helpers ----------------------------------------------------------------------------------


def http_answer(port, request, timeout=WAIT_S):
    """Send one raw request (bytes); ``(status, headers, body)`` of the answer, its body read
    by Content-Length (none for HEAD), all by one deadline."""
    deadline = deadline_after(timeout)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = recv_by(sock, deadline)
            if not chunk:
                raise ConnectionError("closed before the answer's head: %r" % data[:200])
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        length = 0 if request.startswith(b"HEAD ") else int(headers.get("content-length", "0"))
        while len(body) < length:
            chunk = recv_by(sock, deadline)
            if not chunk:
                break
            body += chunk
        return int(lines[0].split(" ")[1]), headers, body[:length]
    finally:
        sock.close()


def request_bytes(method, path, headers=(), body=b""):
    lines = ["%s %s HTTP/1.1" % (method, path), "Host: 127.0.0.1"] + list(headers)
    if body or method in ("POST", "PUT", "PATCH"):
        lines.append("Content-Length: %d" % len(body))
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


UPGRADE = ["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
           "Sec-WebSocket-Version: 13"]


def assert_json_error(answer, status, has_body=True):
    """The contract's error answer: that status, JSON, ``{"error": <text>, "status": status}``."""
    code, headers, body = answer
    assert code == status, answer
    assert headers.get("content-type", "").startswith(JSON_TYPE), answer
    if not has_body:
        assert body == b"" and int(headers["content-length"]) > 0, answer
        return None
    document = json.loads(body)
    assert list(document) == ["error", "status"] and document["status"] == status, answer
    assert isinstance(document["error"], str) and document["error"], answer
    assert "<" not in document["error"], answer
    return document["error"]


def eio_sessions(server):
    return server.call(lambda: len(server.server.socketio.load().eio.sockets))


def polling_handshake(server, http=None, **kwargs):
    """``(status, response)`` of ``GET /socket.io/?EIO=4&transport=polling``."""
    response = (http or requests).get(server.url + POLLING + kwargs.pop("query", ""), timeout=WAIT_S, **kwargs)
    return response.status_code, response


def open_polling(server, query=""):
    """A new polling session's Engine.IO sid."""
    status, response = polling_handshake(server, query=query)
    assert status == 200, response.text
    return json.loads(response.text[1:].split("\x1e")[0])["sid"]


def post(server, eio_sid, body):
    return requests.post(server.url + POLLING + "&sid=" + eio_sid, data=body, timeout=WAIT_S)


def poll(server, eio_sid):
    return requests.get(server.url + POLLING + "&sid=" + eio_sid, timeout=WAIT_S)


def join_polling(server, eio_sid):
    """Join the namespace over polling; the texts of the packets read, up to the answer and
    the latest document sent on joining (nothing is left queued)."""
    assert post(server, eio_sid, "40").status_code == 200
    packets = []
    deadline = deadline_after()
    while not (any(p.startswith("40{") for p in packets)
               and any(p.startswith('42["tegrastats_update"') for p in packets)):
        assert time.monotonic() < deadline, packets
        answer = poll(server, eio_sid)
        assert answer.status_code == 200, answer.text
        packets += answer.text.split("\x1e")
    return packets


def next_packet(client, deadline):
    """The next Socket.IO packet (``4x``) of a raw client, answering Engine.IO pings."""
    while True:
        text = client.text(deadline=deadline)
        if text == "2":
            client.send("3")
        elif text.startswith("4"):
            return text


def updates_within(client, seconds):
    """How many ``tegrastats_update`` packets a raw client gets within ``seconds`` (till closed)."""
    deadline = deadline_after(seconds)
    count = 0
    try:
        while True:
            text = client.text(deadline=deadline)
            if text == "2":
                client.send("3")
            elif text.startswith('42["tegrastats_update"'):
                count += 1
    except (socket.timeout, ConnectionError, OSError):
        return count


def member(port, query=""):
    """A raw Socket.IO client that joined and read the latest document sent on joining."""
    client = sio_client(port, query=query)
    sio_event(client)
    return client


def feed_and_expect(server, line, *clients):
    """Push one sample; every client gets it (control: the broadcast works)."""
    server.feed(line)
    expected = server.hub.latest_document["timestamp"]
    for client in clients:
        assert document_time(sio_event(client)) == expected


# --- 1. a connect whose check raises ----------------------------------------------------------


@pytest.mark.parametrize("auth_text, reason", [
    ('{"token":"\\ud800"}', "connection refused"),
    ('{"token":"\\udfff"}', "connection refused"),
    ('{"token":"%s\\udbff"}' % TOKEN, "connection refused"),
    ('{"token":"\\ud800","more":[1]}', "connection refused"),
    ('{"token":"\\ud83d\\ude00"}', "missing or invalid token"),  # a valid pair: just wrong
    ('{"token":"%s"}' % TOKEN, None),  # control: accepted
], ids=["lone-high", "lone-low", "token-then-surrogate", "with-more-keys", "valid-pair", "right-token"])
def test_connect_whose_token_check_raises_is_refused(live_server, transport_lines, caplog, auth_text, reason):
    caplog.set_level(logging.INFO)
    server = live_server(transport_lines[:1], auth_token=TOKEN)
    port = server.server.port
    good = member(port, query="&token=" + TOKEN)
    client = RawWebSocket(port, SIO_PATH, query="&token=" + TOKEN)  # the handshake has the token
    try:
        deadline = deadline_after()
        assert client.status == 101 and client.text(deadline=deadline).startswith("0{")
        client.send("40" + auth_text)  # JSON escapes: the server decodes them to lone surrogates
        answer = next_packet(client, deadline)
        if reason is None:
            assert answer.startswith("40{"), answer
            assert server.limiter.count == 2
            feed_and_expect(server, transport_lines[1], good)
            assert updates_within(client, 1.0) >= 1  # control: an accepted client gets them
        else:
            # The check may raise (refused as "connection refused") or, with a token check
            # that is total, say no: refused either way, and never half connected.
            assert answer.startswith("44"), answer
            assert json.loads(answer[2:]) in ({"message": reason}, {"message": "missing or invalid token"})
            assert server.limiter.count == 1, "a refused client holds no slot"
            feed_and_expect(server, transport_lines[1], good)
            assert updates_within(client, 1.0) == 0, "a refused client got a broadcast"
            assert client.is_closed_by_server(SWEEP_WAIT_S), "the refused session was never closed"
    finally:
        client.close()
        good.close()
    # The server's loggers only: a python-socketio client thread of an earlier test may log
    # "packet queue is empty, aborting" on engineio.client as it winds down.
    records = [r for r in caplog.records if r.name.startswith(("tegrastats_api", "socketio.server", "engineio.server"))]
    assert not [r for r in records if r.levelno >= logging.ERROR], [r.getMessage() for r in records]
    for record in records:
        text = record.getMessage()
        assert "\ud800" not in text and "\udfff" not in text and TOKEN not in text, text
    failures = [r for r in records if "check failed" in r.getMessage()]
    assert len(failures) <= (1 if reason == "connection refused" else 0)  # once, at WARNING
    assert all(r.levelno == logging.WARNING for r in failures)


def test_any_exception_in_the_connect_check_refuses(live_server, transport_lines):
    """Not only the token: the limiter failing (no token configured) ends in a refusal too."""
    server = live_server(transport_lines[:1])
    port = server.server.port
    good = member(port)

    def broken(owner):
        raise RuntimeError("limiter broken")

    server.call(setattr, server.limiter, "acquire", broken)
    client = RawWebSocket(port, SIO_PATH)
    try:
        deadline = deadline_after()
        assert client.text(deadline=deadline).startswith("0{")
        client.send("40")
        answer = next_packet(client, deadline)
        assert answer.startswith("44") and json.loads(answer[2:]) == {"message": "connection refused"}
        assert server.limiter.count == 1
        feed_and_expect(server, transport_lines[1], good)
        assert updates_within(client, 1.0) == 0
    finally:
        client.close()
    server.call(delattr, server.limiter, "acquire")  # control: the same connect works again
    again = member(port)
    try:
        assert server.limiter.count == 2
        feed_and_expect(server, transport_lines[2], good, again)
    finally:
        again.close()
        good.close()


def test_broadcasts_reach_only_accepted_clients(live_server, transport_lines):
    """A connect handler that raises past the guard (as before the fix) leaves the client in
    the namespace on python-socketio 5.0; it still gets no broadcast, and its session ends."""
    server = live_server(transport_lines[:1])
    port = server.server.port
    good = member(port)  # the first Socket.IO request makes the Socket.IO server
    namespace = sio_module.snapshot_namespace(server.server.sio)

    async def raising(sid, environ, auth=None):
        raise RuntimeError("unguarded")

    server.call(setattr, namespace, "on_connect", raising)
    rogue = RawWebSocket(port, SIO_PATH)
    try:
        assert rogue.text().startswith("0{")
        rogue.send("40")
        wait_until(lambda: server.call(lambda: len(server.server.sio.eio.sockets)) == 2)
        for line in transport_lines[1:4]:
            feed_and_expect(server, line, good)
        assert updates_within(rogue, 1.0) == 0, "a client that was never accepted got a broadcast"
        assert server.limiter.count == 1
        assert rogue.is_closed_by_server(SWEEP_WAIT_S)
    finally:
        rogue.close()
        server.call(delattr, namespace, "on_connect")
    feed_and_expect(server, transport_lines[4], good)
    good.close()


# --- 5. handshakes: the token, the cap on sessions outside the namespace, expiry ---------------


TOKENLESS = [
    ("polling, no token", POLLING, []),
    ("polling, wrong token", POLLING + "&token=wrong", []),
    ("polling, empty token", POLLING + "&token=", []),
    ("polling, wrong bearer", POLLING, ["Authorization: Bearer wrong"]),
    ("polling, basic auth", POLLING, ["Authorization: Basic " + TOKEN]),
    ("polling, token in another parameter", POLLING + "&tok=" + TOKEN, []),
    ("websocket, no token", SIO_PATH, UPGRADE),
    ("websocket, wrong token", SIO_PATH + "&token=wrong", UPGRADE),
    ("websocket, wrong bearer", SIO_PATH, UPGRADE + ["Authorization: Bearer wrong"]),
]


def test_handshake_without_the_token_is_refused_before_any_session(live_server, transport_lines):
    server = live_server(transport_lines[:1], auth_token=TOKEN)
    port = server.server.port
    for _ in range(20):  # a bounded flood: nothing of it may stay
        for name, path, headers in TOKENLESS:
            answer = http_answer(port, request_bytes("GET", path, headers))
            assert assert_json_error(answer, 401) == "missing or invalid token", name
            assert answer[1].get("www-authenticate", "").startswith("Bearer"), name
    assert eio_sessions(server) == 0
    # The auth object alone comes after the handshake: refused with the handshake.
    assert RawWebSocket(port, SIO_PATH).status == 401
    # Controls: the token in the query or the header makes a session, on both transports.
    assert polling_handshake(server, query="&token=" + TOKEN)[0] == 200
    assert polling_handshake(server, headers={"Authorization": "Bearer " + TOKEN})[0] == 200
    ws = RawWebSocket(port, SIO_PATH, query="&token=" + TOKEN)
    try:
        assert ws.status == 101 and ws.text().startswith("0{")
        assert eio_sessions(server) == 3
    finally:
        ws.close()
    member(port, query="&token=" + TOKEN).close()  # the dashboard's way: the ?token= of its page


def test_handshakes_that_never_join_are_capped(live_server, transport_lines, monkeypatch):
    monkeypatch.setattr(sessions_module, "PENDING_TTL_S", 3600.0)  # nothing expires meanwhile
    server = live_server(transport_lines[:1], max_connections=2)
    port = server.server.port
    cap = max(sessions_module.MIN_PENDING, sessions_module.PENDING_PER_SLOT * 2)
    joined = member(port)  # it takes a slot, not one of the pending places
    idle_ws = [RawWebSocket(port, SIO_PATH) for _ in range(2)]  # WebSocket sessions count too
    assert all(ws.status == 101 for ws in idle_ws)
    statuses = collections.Counter()
    refusal = None
    with requests.Session() as http:
        for _ in range(300):
            status, response = polling_handshake(server, http)
            statuses[status] += 1
            if status == 503:
                refusal = response
    assert statuses == {200: cap - 2, 503: 300 - (cap - 2)}, statuses
    assert refusal.headers["Content-Type"].startswith(JSON_TYPE)
    assert refusal.json() == {"error": "too many Socket.IO handshakes in progress (limit %d)" % cap,
                              "status": 503}
    assert eio_sessions(server) == cap + 1
    ws_refused = http_answer(port, request_bytes("GET", SIO_PATH, UPGRADE))
    assert "limit %d" % cap in assert_json_error(ws_refused, 503)
    # Joining takes a session out of the pending ones: a handshake fits again.
    idle_ws[0].text()
    idle_ws[0].send("40")
    assert next_packet(idle_ws[0], deadline_after()).startswith("40{")
    assert polling_handshake(server)[0] == 200
    assert polling_handshake(server)[0] == 503
    feed_and_expect(server, transport_lines[1], joined)  # members are served throughout
    for ws in idle_ws + [joined]:
        ws.close()


def test_sessions_that_never_join_expire(live_server, transport_lines):
    server = live_server(transport_lines[:1], max_connections=1)
    port = server.server.port
    cap = sessions_module.MIN_PENDING
    idle_ws = [RawWebSocket(port, SIO_PATH) for _ in range(2)]
    polling = [open_polling(server) for _ in range(cap - 2)]
    assert len(polling) == cap - 2 and all(ws.status == 101 for ws in idle_ws)
    assert polling_handshake(server)[0] == 503
    # Each is closed after PENDING_TTL_S: the WebSockets by the server, the polling ones forgotten.
    for ws in idle_ws:
        assert ws.is_closed_by_server(SWEEP_WAIT_S)
        ws.close()
    wait_until(lambda: eio_sessions(server) == 0, SWEEP_WAIT_S, "the idle sessions closed")
    for eio_sid in polling:
        assert_json_error(http_answer(port, request_bytes("GET", POLLING + "&sid=" + eio_sid)), 400)
    assert server.limiter.count == 0
    client = member(port)  # control: the places are free again, and joining works
    try:
        assert server.limiter.count == 1
        feed_and_expect(server, transport_lines[1], client)
    finally:
        client.close()


def test_joined_clients_outlive_the_sweeps(live_server, transport_lines, monkeypatch):
    """Control for expiry and poll grace: clients that are there keep their slots."""
    monkeypatch.setattr(sessions_module, "PENDING_TTL_S", 1.0)
    monkeypatch.setattr(sessions_module, "POLL_GRACE_S", 2.0)
    server = live_server(transport_lines[:1])
    ws_client = member(server.server.port)  # answers pings only when read: reads below
    updates = collections.deque()
    py = socketio.Client(reconnection=False)
    py.on("tegrastats_update", updates.append)
    py.connect(server.url, transports=["polling"])
    try:
        wait_until(lambda: updates and server.limiter.count == 2, what="both clients joined")
        time.sleep(5.0)  # more than the grace and the time to join, several sweeps
        assert server.limiter.count == 2 and py.connected
        feed_and_expect(server, transport_lines[1], ws_client)
        wait_until(lambda: updates and updates[-1]["timestamp"] == server.hub.latest_document["timestamp"],
                   what="the polling client's update")
    finally:
        ws_client.close()
        threading.Thread(target=py.disconnect, daemon=True).start()  # may hang over polling


def test_the_sweep_runs_only_while_a_session_needs_watching(live_server, transport_lines, monkeypatch):
    """No timer while every session is a joined WebSocket one (Engine.IO's pings watch those);
    a polling session starts the sweep again, and a WebSocket client that leaves the
    namespace but keeps its Engine.IO session is still closed by it."""
    from tegrastats_api.sio import snapshot_namespace

    monkeypatch.setattr(sessions_module, "PENDING_TTL_S", 1.0)
    server = live_server(transport_lines[:1])
    port = server.server.port
    client = member(port)
    sessions = snapshot_namespace(server.server.sio).sessions

    def sweeping():
        return server.call(lambda: sessions._task is not None and not sessions._task.done())

    wait_until(lambda: not sweeping(), SWEEP_WAIT_S, "the sweep stopped")
    time.sleep(2.5 * sessions_module.SWEEP_INTERVAL_S)
    assert not sweeping() and server.limiter.count == 1
    feed_and_expect(server, transport_lines[1], client)  # control: the client is served
    eio_sid = open_polling(server)  # a session that has not joined: watched
    assert sweeping()
    wait_until(lambda: eio_sid not in server.server.sio.eio.sockets, SWEEP_WAIT_S, "the idle session closed")
    wait_until(lambda: not sweeping(), SWEEP_WAIT_S, "the sweep stopped again")
    client.send("41")  # leaves the namespace, keeps the Engine.IO session
    wait_until(lambda: server.limiter.count == 0, what="the slot released")
    # Within seconds (PENDING_TTL_S and a sweep), not Engine.IO's ping timeout (45 s).
    assert client.is_closed_by_server(PING_TIMEOUT_WAIT_S)
    wait_until(lambda: eio_sessions(server) == 0, SWEEP_WAIT_S, "its session closed")
    client.close()


def timers_due_within(server, seconds):
    """How far away (s) the server loop's timers due within ``seconds`` are (asyncio keeps
    them in the loop's ``_scheduled`` heap, the same on Python 3.8 to 3.13)."""
    def due():
        loop = asyncio.get_event_loop()
        now = loop.time()
        return sorted(round(h.when() - now, 2) for h in loop._scheduled  # noqa: SLF001
                      if not h.cancelled() and h.when() - now < seconds)
    return server.call(due)


def test_socketio_clients_at_rest_set_no_timer_for_the_next_seconds(live_server, transport_lines, monkeypatch):
    """Ten joined Socket.IO WebSocket clients and no sample coming: nothing wakes the server
    within the next 10 s (python-engineio's service task, which would wake every ping
    timeout / clients, 0.2 s here, is off; Engine.IO pings come every 25 s and no WebSocket
    pings beside them), and the clients are served."""
    from tegrastats_api.sio import snapshot_namespace

    monkeypatch.setattr(sio_module, "PING_TIMEOUT_S", 2)  # the service task's cycle, if it ran
    server = live_server(transport_lines[:1])
    clients = [member(server.server.port) for _ in range(10)]
    try:
        sessions = snapshot_namespace(server.server.sio).sessions
        wait_until(lambda: server.call(lambda: sessions._task is None or sessions._task.done()),
                   SWEEP_WAIT_S, "the sweep stopped")
        for _ in range(6):
            assert timers_due_within(server, 10.0) == []
            time.sleep(0.5)
        feed_and_expect(server, transport_lines[1], *clients)  # control: all served
        assert timers_due_within(server, 10.0) == []
    finally:
        for client in clients:
            client.close()


@pytest.mark.parametrize("joined", [True, False], ids=["joined", "never-joined"])
def test_sessions_closed_by_clients_that_never_come_back_are_forgotten(live_server, transport_lines, joined):
    """A polling client that closes its session (a CLOSE in a POST, no GET in flight) and
    never sends another request: python-engineio would list the closed session until one
    came (its service task, off here, dropped them); the sweep forgets them, so they cannot
    pile up, and then stops."""
    from tegrastats_api.sio import snapshot_namespace

    server = live_server(transport_lines[:1])
    for _ in range(12):
        eio_sid = open_polling(server)
        if joined:
            join_polling(server, eio_sid)
        assert post(server, eio_sid, "1").status_code == 200
    sessions = snapshot_namespace(server.server.sio).sessions  # (made at the first request)
    wait_until(lambda: server.limiter.count == 0, what="the slots released")
    wait_until(lambda: eio_sessions(server) == 0, SWEEP_WAIT_S, "the closed sessions forgotten")
    wait_until(lambda: server.call(lambda: sessions._task is None or sessions._task.done()),
               SWEEP_WAIT_S, "the sweep stopped")
    client = member(server.server.port)  # control: a new client is served
    try:
        feed_and_expect(server, transport_lines[1], client)
    finally:
        client.close()


# --- 6. polling clients that stop polling -------------------------------------------------------


def test_polling_clients_that_stop_polling_release_their_slots(live_server, transport_lines, monkeypatch):
    grace = sessions_module.POLL_GRACE_S
    monkeypatch.setattr(sessions_module, "POLL_GRACE_S", 3600.0)  # none is let go while they are set up
    server = live_server(transport_lines[:1])  # 10 slots
    port = server.server.port
    limit = server.limiter.limit
    never_polled, polled_once, left_mid_poll = [], [], []
    for index in range(limit):
        eio_sid = open_polling(server)
        if index % 3 == 0:  # joins and never reads again (not even the answer to its join)
            assert post(server, eio_sid, "40").status_code == 200
            never_polled.append(eio_sid)
        elif index % 3 == 1:  # reads the answer to its join, then stops
            join_polling(server, eio_sid)
            polled_once.append(eio_sid)
        else:  # leaves while a long-poll is in flight
            join_polling(server, eio_sid)
            sock = socket.create_connection(("127.0.0.1", port), timeout=WAIT_S)
            sock.sendall(request_bytes("GET", POLLING + "&sid=" + eio_sid))
            left_mid_poll.append(sock)
    wait_until(lambda: server.limiter.count == limit, what="every slot taken")
    # The slots are really held: /ws and Socket.IO clients are refused.
    assert "limit %d" % limit in assert_json_error(http_answer(port, request_bytes("GET", "/ws", UPGRADE)), 503)
    assert server.limiter.count == limit
    monkeypatch.setattr(sessions_module, "POLL_GRACE_S", grace)  # the default from now on
    for sock in left_mid_poll:
        time.sleep(0.2)  # the GET reaches the server and waits there
        sock.close()
    wait_until(lambda: server.limiter.count == 0, SWEEP_WAIT_S, "the abandoned slots released")
    wait_until(lambda: eio_sessions(server) == 0, SWEEP_WAIT_S, "the abandoned sessions closed")
    ws = RawWebSocket(port, "/ws")  # control: room again for push clients
    client = member(port)
    try:
        assert ws.status == 101 and json.loads(ws.text())["schema"] == 1
        assert server.limiter.count == 2
        feed_and_expect(server, transport_lines[1], client)
    finally:
        ws.close()
        client.close()


@pytest.mark.parametrize("goodbye", ["1", "41\x1e1", "3\x1e1"], ids=["close", "leave-and-close", "pong-and-close"])
def test_a_polling_client_that_closes_gets_its_long_poll_answered_at_once(
        live_server, transport_lines, caplog, goodbye):
    """A polling client that closes its session (a CLOSE packet, alone or after others, in a
    POST) while its long-poll GET waits: the GET is answered at once, an empty 200 (python-engineio
    alone lets it wait out ping_interval + ping_timeout, 45 s, then answers 400), and the
    slot is free. One more GET right after (python-socketio's client can send one) is a
    JSON 400, and none of it is logged at WARNING or above."""
    caplog.set_level(logging.INFO, logger="tornado.access")  # earlier tests may leave it at WARNING
    server = live_server(transport_lines[:1])
    eio_sid = open_polling(server)
    join_polling(server, eio_sid)  # nothing left queued: the next GET waits
    assert server.limiter.count == 1
    sessions = sio_module.snapshot_namespace(server.server.sio).sessions
    answers = []
    waiting = threading.Thread(target=lambda: answers.append(poll(server, eio_sid)), daemon=True)
    waiting.start()
    wait_until(lambda: server.call(lambda: sessions._polls.get(eio_sid)), what="the GET waiting in the server")
    started = time.monotonic()
    assert post(server, eio_sid, goodbye).status_code == 200
    waiting.join(WAIT_S)  # a GET still waiting would raise requests' timeout after WAIT_S
    assert answers, "the long-poll was not answered within %s s" % WAIT_S
    assert time.monotonic() - started < 3.0
    assert (answers[0].status_code, answers[0].text) == (200, "")
    late = poll(server, eio_sid)  # the session is closed, listed by python-engineio or not
    assert (late.status_code, late.json()["error"]) == (400, "unknown Engine.IO session")
    wait_until(lambda: server.limiter.count == 0, what="the slot released")
    assert eio_sessions(server) == 0
    assert poll(server, eio_sid).status_code == 400  # the session is gone
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert any("400 GET /socket.io/" in r.getMessage() for r in caplog.records)  # logged at INFO


def test_a_poll_of_a_session_its_client_closed_is_a_quiet_json_400(live_server, transport_lines, caplog):
    """A GET or POST naming a session its client closed (python-engineio still lists it
    until its next request) is a JSON 400 logged at INFO, not an ERROR of python-engineio's
    plus a WARNING: python-socketio's client over polling may send such a GET after its own
    disconnect."""
    caplog.set_level(logging.INFO, logger="tornado.access")  # earlier tests may leave it at WARNING
    server = live_server(transport_lines[:1])
    for method in (poll, lambda server, eio_sid: post(server, eio_sid, "2")):
        eio_sid = open_polling(server)
        join_polling(server, eio_sid)
        assert post(server, eio_sid, "1").status_code == 200  # closed, no GET in flight
        late = method(server, eio_sid)
        assert (late.status_code, late.json()["error"]) == (400, "unknown Engine.IO session")
        wait_until(lambda: server.limiter.count == 0, what="the slot released")
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert sum("400 GET /socket.io/" in r.getMessage() for r in caplog.records) == 1


def test_python_socketio_over_polling_disconnects_at_once(live_server, transport_lines, caplog):
    """python-socketio's client over polling (its transport when websocket-client is not
    installed): ``disconnect()`` returns at once, the slot is freed, and the server logs no
    warning for it (it used to block for pingInterval + pingTimeout, then get a 400 logged
    at WARNING)."""
    server = live_server(transport_lines[:1])
    with caplog.at_level(logging.WARNING, logger="tornado.access"):
        client = socketio.Client(reconnection=False)
        got = threading.Event()
        client.on("tegrastats_update", lambda data: got.set())
        client.connect("http://127.0.0.1:%d" % server.server.port, transports=["polling"])
        assert got.wait(WAIT_S)
        started = time.monotonic()
        closing = threading.Thread(target=client.disconnect, daemon=True)
        closing.start()
        closing.join(WAIT_S)
        assert not closing.is_alive(), "disconnect() did not return within %s s" % WAIT_S
        assert time.monotonic() - started < 3.0, "disconnect() took %.1f s" % (time.monotonic() - started)
        wait_until(lambda: server.limiter.count == 0, what="the slot released")
        time.sleep(0.2)  # a last answer's access-log line, if any, is written by now
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []


# --- 12. every error is the contract's JSON -------------------------------------------------------


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "HEAD", "PROPFIND"])
def test_ws_other_methods_are_a_json_405(live_server, transport_lines, method):
    server = live_server(transport_lines[:1])
    body = b"x" if method == "POST" else b""
    answer = http_answer(server.server.port, request_bytes(method, "/ws?fields=cpu", body=body))
    assert_json_error(answer, 405, has_body=method != "HEAD")
    assert answer[1]["allow"] == "GET"


@pytest.mark.parametrize("method", ["PUT", "DELETE", "PATCH", "HEAD", "PROPFIND"])
def test_socketio_other_methods_are_a_json_405(live_server, transport_lines, method):
    server = live_server(transport_lines[:1])
    answer = http_answer(server.server.port, request_bytes(method, POLLING))
    assert_json_error(answer, 405, has_body=method != "HEAD")
    assert answer[1]["allow"] == SIO_METHODS
    assert eio_sessions(server) == 0


def test_socketio_options_is_a_204_with_cors(live_server, transport_lines):
    server = live_server(transport_lines[:1])
    status, headers, body = http_answer(server.server.port, request_bytes(
        "OPTIONS", POLLING, ["Origin: http://dash.example", "Access-Control-Request-Method: POST"]))
    assert (status, body) == (204, b"")
    assert headers["access-control-allow-origin"] == "http://dash.example"
    assert "POST" in headers["access-control-allow-methods"]


@pytest.mark.parametrize("query", [
    "", "EIO=3", "EIO=3&transport=polling", "EIO=5&transport=polling", "EIO=abc", "EIO=%ff",
    "EIO=4&EIO=4", "transport=polling", "EIO=4&transport=bogus", "EIO=4&transport=Polling",
    "EIO=4&transport=websocket", "EIO=4&transport=polling&transport=websocket",
    "EIO=4&transport=polling&sid=bogus", "EIO=4&transport=polling&sid=%ff", "EIO=4&sid=" + "x" * 5000,
    "EIO=4&transport=polling&j=x", "%ff%fe=%00", "EIO=4&transport=" + "x" * 5000,
], ids=lambda q: q[:40])
def test_socketio_bad_queries_are_a_json_400(live_server, transport_lines, query):
    server = live_server(transport_lines[:1])
    port = server.server.port
    for method, body in (("GET", b""), ("POST", b"40")):
        answer = http_answer(port, request_bytes(method, "/socket.io/?" + query, body=body))
        if answer[0] == 200:  # only a valid handshake may succeed: none of these is one
            pytest.fail("%s /socket.io/?%s was accepted: %r" % (method, query, answer))
        assert_json_error(answer, 400)
    assert eio_sessions(server) == 0


@pytest.mark.parametrize("path", ["/ws", SIO_PATH])
@pytest.mark.parametrize("headers, status", [
    (["Upgrade: websocket", "Connection: keep-alive", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 13"], 400),
    (["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ=="], 426),
    (["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
      "Sec-WebSocket-Version: 99"], 426),
    (["Upgrade: websocket", "Connection: Upgrade", "Sec-WebSocket-Version: 13"], 400),
], ids=["connection-not-upgrade", "no-version", "version-99", "no-key"])
def test_bad_upgrades_are_json(live_server, transport_lines, path, headers, status):
    server = live_server(transport_lines[:1])
    answer = http_answer(server.server.port, request_bytes("GET", path, headers))
    assert_json_error(answer, status)
    if status == 426:
        assert "13" in answer[1]["sec-websocket-version"]  # which version to use
    assert eio_sessions(server) == 0 and server.limiter.count == 0


@pytest.mark.parametrize("query, headers, says", [
    ("", [], "upgrade"),  # no upgrade at all
    ("?fields=cpu.nope", UPGRADE, "cpu.nope"),
    ("?fields=%ff", UPGRADE, "fields"),
    ("?fields=cpu&fields=%ff%fe", UPGRADE, "fields"),
], ids=["no-upgrade", "unknown-field", "fields-not-utf8", "second-fields-not-utf8"])
def test_ws_bad_requests_are_a_json_400(live_server, transport_lines, query, headers, says):
    server = live_server(transport_lines[:1])
    answer = http_answer(server.server.port, request_bytes("GET", "/ws" + query, headers))
    assert says in assert_json_error(answer, 400).lower()
    assert server.limiter.count == 0
    ws = RawWebSocket(server.server.port, "/ws", query="?fields=cpu.usage")  # control
    try:
        assert ws.status == 101 and set(json.loads(ws.text())) == {"timestamp", "cpu"}
    finally:
        ws.close()


@pytest.mark.parametrize("body", [
    b"zzz", b"\xff\xfe", b"", b"bAAA%", b"4\x1e", b"\x1e", b"0", b"2", b"6", b"9", b"99",
    b"d=", b"3\x1e" * 20 + b"3",
], ids=lambda b: repr(b)[:20])
def test_bad_post_bodies_are_a_json_400_and_close_the_session(live_server, transport_lines, body):
    server = live_server(transport_lines[:1])
    eio_sid = open_polling(server)
    join_polling(server, eio_sid)
    assert server.limiter.count == 1
    answer = post(server, eio_sid, body)
    assert answer.status_code == 400 and answer.headers["Content-Type"].startswith(JSON_TYPE), answer.text
    assert answer.json() == {"error": "malformed Engine.IO payload", "status": 400}
    assert server.limiter.count == 0, "the closed session's slot is released"
    assert_json_error(http_answer(server.server.port, request_bytes("GET", POLLING + "&sid=" + eio_sid)), 400)
    assert eio_sessions(server) == 0


def test_oversized_post_is_a_json_413_and_closes_the_session(live_server, transport_lines):
    server = live_server(transport_lines[:1])
    eio_sid = open_polling(server)
    join_polling(server, eio_sid)
    limit = server.call(server.server.socketio.load).eio.max_http_buffer_size
    answer = post(server, eio_sid, b"4" + b"x" * limit)  # over Engine.IO's limit, under the HTTP one
    assert answer.status_code == 413 and answer.json()["status"] == 413, answer.text
    assert server.limiter.count == 0 and eio_sessions(server) == 0


def test_good_post_bodies_are_taken(live_server, transport_lines):
    """Control for the two tests above: what clients really POST is answered ``ok``."""
    server = live_server(transport_lines[:1])
    eio_sid = open_polling(server)
    join_polling(server, eio_sid)
    for body in (b"3", b'42["ping"]', b"3\x1e3", b'42["x",{"a":"\xc3\xa9"}]'):
        answer = post(server, eio_sid, body)
        assert (answer.status_code, answer.text.lower()) == (200, "ok"), (body, answer.text)
    assert server.limiter.count == 1
    feed_and_expect_polling(server, eio_sid, transport_lines[1])


def feed_and_expect_polling(server, eio_sid, line):
    server.feed(line)
    expect_polling(server, eio_sid, server.hub.latest_document["timestamp"])


def expect_polling(server, eio_sid, expected):
    """The polling client gets the sample already fed (with the document's ``timestamp``)."""
    deadline = deadline_after()
    while time.monotonic() < deadline:
        answer = poll(server, eio_sid)
        assert answer.status_code == 200
        if expected in answer.text:
            return
    pytest.fail("the polling client never got the sample")


# --- each sample's WebSocket frame is built once -------------------------------------------------


def test_websocket_clients_get_python_socketios_bytes_from_one_frame_per_sample(
        live_server, transport_lines, monkeypatch):
    """Every Socket.IO WebSocket client gets each sample as exactly the text python-socketio
    would send (``4`` + its EVENT packet of the document), in a well-formed frame, without
    tornado's ``write_message`` building a frame per client; a polling client in the same
    broadcast, and a WebSocket client that went away mid-stream, change nothing for the
    others. No text packet at all (CONNECT answers, pings, the document sent on joining)
    takes tornado's own ``write_message``, which wraps every write in a task; binary ones
    still do."""
    from tornado.websocket import WebSocketHandler

    from tegrastats_api.sio import snapshot_namespace

    built = []
    tornado_write = WebSocketHandler.write_message

    def counting_write(self, message, binary=False):
        if self.ws_connection is not None and not self.ws_connection.is_closing():
            built.append(message)  # a frame tornado builds for a live connection
        return tornado_write(self, message, binary=binary)

    monkeypatch.setattr(WebSocketHandler, "write_message", counting_write)
    server = live_server(transport_lines[:1])
    port = server.server.port
    probe = member(port)  # control: a binary message does go through tornado's write_message
    pushes = snapshot_namespace(server.server.sio).pushes
    server.call(lambda: [h.write_message(b"\x04binary", binary=True) for h in pushes._websockets.values()])
    assert built == [b"\x04binary"]
    assert probe.frame() == (0x2, b"\x04binary")
    probe.close()
    clients = [member(port) for _ in range(3)]
    leaver = member(port)
    eio_sid = open_polling(server)
    join_polling(server, eio_sid)
    leaver.sock.close()  # gone without a close frame
    before = len(built)
    for line in transport_lines[1:5]:
        server.feed(line)
        document = server.hub.latest_document
        expected = "4" + socketio.packet.Packet(socketio.packet.EVENT, data=["tegrastats_update", document]).encode()
        for client in clients:
            assert sio_event(client) == expected
        expect_polling(server, eio_sid, document["timestamp"])
    assert built[before:] == [], "a frame was built by tornado's write_message"
    assert [m for m in built if isinstance(m, str)] == [], "a text packet went through tornado's write_message"
    for client in clients:
        client.close()


# --- samples straight to the WebSocket clients python-engineio has caught up with ---------------


def test_a_websocket_is_caught_up_only_once_engineio_wrote_the_last_sample_it_was_handed():
    """SamplePushes lets a sample go straight to a session's WebSocket only when the last
    sample handed to python-engineio for that session has been written through it (every
    earlier packet then has too): not before anything was written, not while a later one
    waits in python-engineio's queue, not after the WebSocket closed; other packets written
    (pings, the CONNECT) change nothing."""
    from tornado.websocket import WebSocketHandler

    from tegrastats_api.sio_push import SamplePushes

    pushes = SamplePushes("tegrastats_update")
    handler = object.__new__(WebSocketHandler)  # only its identity is used here
    one, packet_one = pushes.make(b'{"n":1}')
    assert packet_one == '2["tegrastats_update",{"n":1}]'
    two, packet_two = pushes.make(b'{"n":2}')
    assert pushes.make(b'{"n":2}') == (two, packet_two)  # the same sample: the same number
    assert two > one
    pushes.opened("e1", handler)
    assert pushes.caught_up("e1") is None  # nothing handed, nothing written
    pushes.handed("e1", one)
    assert pushes.caught_up("e1") is None
    pushes.handed("e1", two)
    pushes.written(handler, "4" + packet_one)
    assert pushes.caught_up("e1") is None  # the second is still in python-engineio's queue
    for other in ("2", '40{"sid":"x"}', "4" + packet_two[:-1]):
        pushes.written(handler, other)
        assert pushes.caught_up("e1") is None
    pushes.written(handler, "4" + packet_two)
    assert pushes.caught_up("e1") is handler
    assert pushes.caught_up("e2") is None  # another session
    three, _ = pushes.make(b'{"n":3}')
    pushes.handed("e1", three)
    assert pushes.caught_up("e1") is None
    pushes.written(handler, "4" + pushes.make(b'{"n":3}')[1])
    assert pushes.caught_up("e1") is handler
    pushes.closed("e1", handler)
    assert pushes.caught_up("e1") is None
    assert pushes.sessions() == 1
    pushes.forget(set())
    assert pushes.sessions() == 0


def numbered_line(line, number):
    """``line`` with ``number`` MB of RAM used: samples told apart by ``ram_used(text)``."""
    return re.sub(r"RAM \d+/", "RAM %d/" % number, line, count=1)


def ram_used(text):
    return int(re.search(r'"ram": ?\{"used": ?(\d+)', text).group(1))


def test_a_socketio_client_that_stops_reading_skips_samples_and_holds_one_frame(live_server, transport_lines):
    """A Socket.IO WebSocket client that stops reading skips samples once its socket is full:
    the server holds at most the frame being written for it, the others get every sample,
    and when it reads again it gets samples in order, the newest in the end."""
    from tegrastats_api.sio import snapshot_namespace

    server = live_server(transport_lines[:1])
    port = server.server.port
    fast = member(port)
    slow = RawWebSocket(port, SIO_PATH, rcvbuf=4096)
    assert slow.text().startswith("0{")
    slow.send("40")
    assert slow.text().startswith("40")
    assert sio_event(slow)
    pushes = snapshot_namespace(server.server.sio).pushes
    sent = 0
    deadline = deadline_after(20)
    while server.call(lambda: pushes.skipped) < 5:
        assert time.monotonic() < deadline, "the slow client never skipped a sample"
        sent += 1
        server.feed(numbered_line(transport_lines[0], sent))
        assert ram_used(sio_event(fast)) == sent  # the others get every sample
    frame = len(pushes.frame_of(pushes._message) or b"")
    buffered = server.call(lambda: max(len(h.ws_connection.stream._write_buffer)
                                       for h in pushes._websockets.values()))
    assert buffered <= frame + 64  # tornado's private buffer, read only here
    # Reading again: samples in order, and the newest in the end.
    got = []
    while not got or got[-1] != sent:
        got.append(ram_used(sio_event(slow)))
    assert got == sorted(set(got)) and len(got) < sent
    fast.close()
    slow.close()


def known_of_clients(pushes):
    """How many WebSockets, written and pushed-to handlers, waiting ones and sessions handed
    samples a SamplePushes holds (its private tables, read only here)."""
    return (len(pushes._websockets), len(pushes._written), len(pushes._sent), len(pushes._waiting),
            pushes.sessions())


def test_what_is_known_of_socketio_clients_goes_with_them(live_server, transport_lines, monkeypatch):
    """Clients that leave, with a close frame, without one, or by leaving the namespace,
    leave nothing behind in SamplePushes once no client is left (it would grow with every
    client over a server's life)."""
    from tegrastats_api.sio import snapshot_namespace

    monkeypatch.setattr(sessions_module, "PENDING_TTL_S", 1.0)
    server = live_server(transport_lines[:1])
    port = server.server.port
    for _ in range(2):
        clients = [member(port) for _ in range(6)]
        pushes = snapshot_namespace(server.server.sio).pushes
        for line in transport_lines[1:3]:  # the second one goes straight to every client
            feed_and_expect(server, line, *clients)
        assert server.call(known_of_clients, pushes) == (6, 6, 6, 0, 6)
        for index, client in enumerate(clients):
            if index % 3 == 0:
                client.sock.close()  # gone without a close frame
            elif index % 3 == 1:
                client.close()
            else:
                client.send("41")  # leaves the namespace; the server closes it soon after
        wait_until(lambda: server.limiter.count == 0, SWEEP_WAIT_S, "every slot released")
        wait_until(lambda p=pushes: server.call(known_of_clients, p) == (0, 0, 0, 0, 0),
                   SWEEP_WAIT_S, "nothing left of the clients")
        for client in clients:
            client.close()


@pytest.mark.parametrize("path", ["/ws", SIO_PATH])
def test_stopping_with_clients_that_stopped_reading_logs_no_error(live_server, transport_lines, caplog, path):
    """Clients whose sockets are full when the server stops (pending close frames, pings,
    Socket.IO's disconnect packets) are dropped quietly: no write of theirs is left for the
    loop's shutdown to cancel, which asyncio would log as an error per write."""
    import gc

    server = live_server(transport_lines[:1])
    port = server.server.port
    stalled = []
    for _ in range(3):
        client = RawWebSocket(port, path, rcvbuf=4096)
        assert client.status == 101
        if path == SIO_PATH:
            assert client.text().startswith("0{")
            client.send("40")
            assert client.text().startswith("40")
        client.text()  # the latest document; then it never reads again
        stalled.append(client)
    for number in range(200):  # fills their sockets: writes wait in the server
        server.feed(numbered_line(transport_lines[number % len(transport_lines)], number + 2))
    with caplog.at_level(logging.DEBUG):
        server.stop()
        gc.collect()  # an un-retrieved task exception is logged when it is collected
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], [r.getMessage() for r in errors]
    for client in stalled:
        client.sock.close()
