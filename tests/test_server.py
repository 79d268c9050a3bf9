"""End to end: the server as a real process, reading tests/fake_tegrastats.py as a real child.

The server is ``python -m tegrastats_api run --port 0 ...`` (the ``server_process`` fixture,
``fake=`` for the fake's fault flags: a wrapper script stands in for ``tegrastats``); the
bound port is read from its ``serving on http://...`` log line. Also, in process: port 0,
port in use and the simulator fallback.
"""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import struct

import pytest
import websocket

from fault_tools import client_frame, client_recv, deadline_after, wait_until
from test_socketio import PyClient
from tegrastats_api.app import ListenError, Server
from tegrastats_api.config import Config
from tegrastats_api.plan import SourcePlan

WAIT_S = 10
FAST = ("--update-interval", "0.05")  # with fake=(...): the fake tegrastats every 50 ms


def _pid_or_none(path):
    try:
        return int(path.read_text())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid):
    """True while ``pid`` exists and is not a zombie."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_serves_the_child_and_counts_garbage_not_stderr(server_process):
    server = server_process(*FAST, fake=("--stderr-noise", "--garbage"))
    health = wait_until(lambda: server.get("/api/health").status_code == 200 and server.health())
    assert health["source"] == "tegrastats"
    wait_until(lambda: server.health()["parse_errors"] >= 3, what="garbage counted")
    status = server.get("/api/status")
    assert status.status_code == 200
    document = status.json()
    assert document["source"] == "tegrastats" and document["memory"]["ram"]["total"] == 62841
    assert document["extra"] == {}
    assert b"noise" not in status.content and b"garbage" not in status.content
    for section in ["cpu", "memory", "temperature", "power"]:
        assert set(server.get("/api/" + section).json()) == {section, "timestamp"}
    wait_until(lambda: "stderr noise" in server.log(), what="stderr logged")


# The health body rounds last_sample_age to 1 ms: within that of the limit either is right.
AGE_ROUNDING_S = 0.0005


def test_a_stalled_tegrastats_is_stale_by_the_rule_health_answers(server_process, tmp_path):
    """tegrastats stops printing but keeps running: /api/health answers its rule
    (``stale_after`` = 5 intervals) and is ``degraded`` exactly when the newest sample is
    older than that, ``healthy`` before; healthy again once samples come back."""
    pause = tmp_path / "pause"
    server = server_process("--update-interval", "0.2", fake=("--pause-file", str(pause)), healthy=True)
    health = server.health()
    assert (health["interval"], health["stale_after"]) == (0.2, 1.0)
    pause.touch()
    seen = []

    def observe():
        response = server.get("/api/health")
        body = response.json()
        seen.append((response.status_code, body["status"], body["last_sample_age"], body["stale_after"]))
        return body["status"] == "degraded" and body["last_sample_age"] > 1.3

    wait_until(observe, what="degraded")
    for code, status, age, stale_after in seen:
        assert stale_after == 1.0
        if abs(age - stale_after) <= AGE_ROUNDING_S:
            continue
        want = ("degraded", 503) if age > stale_after else ("healthy", 200)
        assert (status, code) == want, (age, seen)
    pause.unlink()
    wait_until(lambda: server.get("/api/health").status_code == 200, what="healthy again")


def test_rest_ws_and_socketio_carry_the_same_document(server_process):
    server = server_process(*FAST, fake=())
    wait_until(lambda: server.get("/api/status").status_code == 200)
    frames = []
    ws = websocket.create_connection(server.url.replace("http", "ws") + "/ws", timeout=WAIT_S)
    sio = PyClient().connect(server.url, ["websocket"])
    try:
        frames.append(json.loads(client_recv(ws, WAIT_S)))
        rest = server.get("/api/status").json()
        deadline = deadline_after(WAIT_S)  # for all nine: pings do not extend it
        while len(frames) < 10:
            frames.append(json.loads(client_recv(ws, deadline=deadline)))
        wait_until(lambda: sio.updates.qsize() >= 10, what="Socket.IO events")
        events = [sio.updates.get_nowait() for _ in range(sio.updates.qsize())]
        assert rest in frames, "REST document not pushed on /ws"
        assert rest in events, "REST document not pushed on Socket.IO"
        assert server.health()["connected_clients"] == 2
    finally:
        ws.close()
        sio.close()


def test_kill_9_of_the_child_is_healed(server_process):
    server = server_process(*FAST, fake=())
    wait_until(lambda: server.get("/api/health").status_code == 200)
    first_pid = server.child_pid()
    samples = server.health()["samples"]
    os.kill(first_pid, signal.SIGKILL)
    wait_until(lambda: server.health()["restarts"] >= 1, what="restart counted")
    wait_until(lambda: _pid_or_none(server.pidfile) not in (None, first_pid), what="new child")
    wait_until(lambda: server.health()["samples"] > samples + 5, what="data resumed")
    assert server.get("/api/health").status_code == 200
    assert not _alive(first_pid)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_cleanly_with_no_child_left(server_process, signum):
    server = server_process(*FAST, fake=())
    wait_until(lambda: server.get("/api/health").status_code == 200)
    ws = websocket.create_connection(server.url.replace("http", "ws") + "/ws", timeout=WAIT_S)
    client_recv(ws, WAIT_S)
    child = server.child_pid()
    assert server.stop(signum) == 0
    assert not _alive(child)
    assert _close_code(ws) == 1001  # going away
    assert "Traceback" not in server.log()


def _close_code(ws, timeout=WAIT_S):
    """Read frames up to the close frame, within ``timeout`` in all; its status code."""
    deadline = deadline_after(timeout)
    while True:
        opcode, data = client_frame(ws, deadline=deadline)
        if opcode == websocket.ABNF.OPCODE_CLOSE:
            return struct.unpack("!H", data[:2])[0]


@pytest.mark.slow
def test_a_hanging_child_is_killed_on_stop(server_process):
    server = server_process(*FAST, fake=("--hang",))
    wait_until(lambda: server.get("/api/health").status_code == 200)
    child = server.child_pid()
    assert server.stop() == 0
    assert not _alive(child)


# --- in process ----------------------------------------------------------------------


def _replay_plan(transport_lines):
    return SourcePlan(kind="replay", lines=transport_lines[:1])


def test_port_zero_binds_a_free_port(transport_lines):
    async def scenario():
        server = Server(Config(host="127.0.0.1", port=0), plan=_replay_plan(transport_lines))
        await server.start()
        try:
            assert server.port > 0 and server.url == "http://127.0.0.1:%d" % server.port
        finally:
            await server.stop()
        await server.stop()  # a second stop is harmless

    asyncio.run(scenario())


def test_port_in_use_is_a_listen_error(transport_lines):
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen(1)
    port = busy.getsockname()[1]

    async def scenario():
        server = Server(Config(host="127.0.0.1", port=port), plan=_replay_plan(transport_lines))
        with pytest.raises(ListenError) as caught:
            await server.start()
        assert caught.value.port == port
        assert str(caught.value).startswith("cannot listen on 127.0.0.1:%d: " % port)
        assert server.source is None  # nothing was started

    try:
        asyncio.run(scenario())
    finally:
        busy.close()


def test_without_tegrastats_off_a_jetson_simulates_loudly(caplog, tmp_path, monkeypatch):
    # --tegrastats left at its default: one named explicitly is never replaced (test_cli_usage.py)
    monkeypatch.setenv("PATH", str(tmp_path))  # no tegrastats on PATH
    monkeypatch.setenv("TEGRASTATS_API_SYSROOT", str(tmp_path))  # no /etc/nv_tegra_release: not a Jetson
    config = Config(host="127.0.0.1", port=0)

    async def scenario():
        server = Server(config)
        await server.start()
        try:
            return server.hub.source, server.hub.latest_document
        finally:
            await server.stop()

    with caplog.at_level(logging.WARNING, logger="tegrastats_api.app"):
        source, document = asyncio.run(scenario())
    assert source == "simulator" and document["source"] == "simulator"
    assert "SIMULATED" in caplog.text
