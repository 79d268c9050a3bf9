"""Faults: tegrastats misbehaves, clients misbehave; the server keeps serving everybody else,
within bounded memory.

Real servers on 127.0.0.1 and real sockets. Where a test counts file descriptors or RSS,
the server is ``python -m tegrastats_api run`` in a child process (its ``/proc`` entries
are its own); tegrastats faults come from a wrapper script that writes the fault and then
execs tests/fake_tegrastats.py. Every wait has a deadline. Requests, static files,
malformed protocol traffic and the token are in tests/test_abuse.py.
"""
from __future__ import annotations

import os
import random
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import FAKE_TEGRASTATS
from fault_tools import (
    ROOT_DIR,
    WAIT_S,
    RawWebSocket,
    deadline_after,
    child_pid,
    document_time,
    faulty_tegrastats,
    settled_fds,
    sio_client,
    sio_event,
    wait_until,
)
from tegrastats_api.config import Config, ConfigError


# --- tegrastats misbehaves ----------------------------------------------------------------


def test_flapping_child_is_restarted_at_the_backoff_rate(server_process, tmp_path):
    """Exits every ~100 ms: restarts follow 0.5, 1, 2 s of backoff, data served between."""
    tegrastats, _ = faulty_tegrastats(tmp_path, "--exit-after", "2")
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.1")
    wait_until(lambda: server.get("/api/status").status_code == 200, what="first sample")
    start, counted, restarts_at, statuses = time.monotonic(), 0, [], set()
    while time.monotonic() - start < 5.5:
        health = server.health()
        if health["restarts"] > counted:
            counted = health["restarts"]
            restarts_at.append(time.monotonic())
        statuses.add(server.get("/api/status").status_code)
        time.sleep(0.02)
    gaps = [later - earlier for earlier, later in zip(restarts_at, restarts_at[1:])]
    # A child that dies at once would be respawned ~30 times in 5.5 s without backoff.
    assert 3 <= counted <= 5, (counted, gaps)
    for index, gap in enumerate(gaps):
        assert gap >= 0.5 * 2 ** index * 0.9, (index, gaps)  # 0.5, 1, 2 s (+ the child's life)
    assert statuses == {200}, "the latest sample stays served while the child is down"
    assert server.health()["samples"] >= 2 * counted, "each child's lines were served"


def _garbage(megabytes):
    """``megabytes`` MB of lines that are not tegrastats (some not UTF-8); how many lines."""
    rng = random.Random(8)
    words = [b"garbage", b"Error:", b"\xff\xfe", b"%s", b"{}", b"NaN", b"\x1b[31m", b"CPU", b"@", b"mW/"]
    lines, size = [], 0
    while size < megabytes * 1024 * 1024:
        line = b" ".join(rng.choice(words) for _ in range(rng.randint(5, 40))) + b"\n"
        lines.append(line)
        size += len(line)
    return b"".join(lines), len(lines)


def test_ten_megabytes_of_garbage_are_shed_or_counted_within_bounded_memory(server_process, tmp_path):
    """Written at once, the garbage is a backlog: of each read only the newest line is parsed
    (and counted as a parse error), the others are skipped and logged; none goes unaccounted."""
    garbage, count = _garbage(10)
    tegrastats, go = faulty_tegrastats(tmp_path, fault=garbage)
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.05")
    wait_until(lambda: server.get("/api/status").status_code == 200, what="first sample")
    rss_before, samples = server.rss_mb(), server.health()["samples"]
    go()
    # the fake's lines follow the garbage: once they are served, the garbage has been read
    wait_until(lambda: server.health()["samples"] > samples + 3, timeout=30, what="samples after the garbage")
    health = server.health()
    assert health["restarts"] == 0 and health["parse_errors"] > 0
    assert server.get("/api/status").json()["memory"]["ram"]["total"] == 62841
    assert server.rss_mb() - rss_before < 15, "RSS grew with the garbage"
    assert _stop(server, signal.SIGTERM) == 0  # the child's end logs the last skipped lines
    log = server.log()
    skipped = int(re.findall(r"lines skipped \((\d+) in all\)", log)[-1])
    assert count <= health["parse_errors"] + skipped <= count + 2, (health["parse_errors"], skipped, count)
    # the first few bad lines are logged, then one in a hundred
    assert log.count("WARNING tegrastats_api.hub") <= count // 100 + 10


@pytest.mark.parametrize("newline", [False, True], ids=["no-newline", "newline"])
def test_a_megabyte_line_is_discarded_and_the_child_kept(server_process, tmp_path, newline):
    tegrastats, go = faulty_tegrastats(tmp_path, fault=b"X" * (1024 * 1024) + (b"\n" if newline else b""))
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.05")
    wait_until(lambda: server.get("/api/status").status_code == 200, what="first sample")
    rss_before, pid = server.rss_mb(), child_pid(tmp_path)
    go()
    # Without a newline, the fake's first line ends the long one and is lost with it.
    wait_until(lambda: server.health()["parse_errors"] == 1, what="the long line counted")
    samples = server.health()["samples"]
    wait_until(lambda: server.health()["samples"] > samples + 3, what="samples after the long line")
    health = server.health()
    assert (health["restarts"], health["parse_errors"], child_pid(tmp_path)) == (0, 1, pid)
    assert server.rss_mb() - rss_before < 10


def test_invalid_utf8_is_counted_and_the_child_kept(server_process, tmp_path):
    tegrastats, _ = faulty_tegrastats(tmp_path, "--invalid-utf8")
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.05")
    wait_until(lambda: server.health()["samples"] >= 5, what="samples after the bad line")
    health = server.health()
    assert (health["parse_errors"], health["restarts"]) == (1, 0)
    pid = child_pid(tmp_path)
    assert server.log().count("started ") == 1, "the child was never replaced"
    assert os.path.exists("/proc/%d" % pid)


def _proc_stat(pid):
    """``(state, pgrp)`` of a process from /proc, or None once it is gone (reaped)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            fields = handle.read().rsplit(")", 1)[1].split()
    except (FileNotFoundError, ProcessLookupError):
        return None
    return fields[0], int(fields[2])


def _alive(pid):
    """True while ``pid`` runs. A zombie counts as dead: an orphan's zombie may stay where
    init does not reap (as in some containers)."""
    stat = _proc_stat(pid)
    return stat is not None and stat[0] != "Z"


def _group_alive(pgid):
    """The live processes of the process group ``pgid``."""
    alive = []
    for entry in os.listdir("/proc"):
        stat = _proc_stat(int(entry)) if entry.isdigit() else None
        if stat is not None and stat[0] != "Z" and stat[1] == pgid:
            alive.append(int(entry))
    return alive


def _stop(server, *signums, between=None):
    """Send the signals to the server (before each later one, wait until ``between`` is in
    its log); its exit status."""
    for index, signum in enumerate(signums):
        if index:
            wait_until(lambda: between in server.log(), what=repr(between))
        server.proc.send_signal(signum)
    return server.proc.wait(WAIT_S)


def _child(tmp_path):
    """The pid of the fake tegrastats (the wrapper writes it, then execs the fake)."""
    def read():
        try:
            return child_pid(tmp_path)
        except (FileNotFoundError, ValueError):  # not yet written, or being rewritten
            return None

    return wait_until(read, what="the child's pid")


def test_a_flooding_child_freezes_neither_the_server_nor_its_stop(server_process, tmp_path):
    """tegrastats writing lines without pause (hundreds of thousands a second)."""
    tegrastats, _ = faulty_tegrastats(tmp_path, "--flood")
    server = server_process("--tegrastats", tegrastats)
    child = _child(tmp_path)
    for _ in range(5):
        started = time.monotonic()
        health = server.get("/api/health")
        assert time.monotonic() - started < 2.0, "/api/health took %.1f s" % (time.monotonic() - started)
        assert health.json()["source"] == "tegrastats"
        time.sleep(0.2)
    assert server.health()["samples"] > 0
    wait_until(lambda: "lines skipped" in server.log(), what="the skipped lines logged")
    started = time.monotonic()
    assert _stop(server, signal.SIGTERM) == 0
    assert time.monotonic() - started < 5.0
    assert not _alive(child) and not _group_alive(child)
    assert "Traceback" not in server.log()


def test_a_stderr_flood_is_logged_within_limits(server_process, tmp_path):
    tegrastats, _ = faulty_tegrastats(tmp_path, "--stderr-flood")
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.1")
    wait_until(lambda: server.health()["samples"] >= 10, what="samples during the flood")
    started = time.monotonic()
    server.get("/api/status")
    assert time.monotonic() - started < 2.0
    assert _stop(server, signal.SIGTERM) == 0
    log = server.log()
    logged = log.count("tegrastats stderr: ")
    assert 0 < logged <= 2 * 10, "%d stderr lines logged (at most 10 every 10 s)" % logged
    suppressed = [int(n) for n in re.findall(r"(\d+) tegrastats stderr lines suppressed", log)]
    assert suppressed and sum(suppressed) > 1000
    assert len(log) < 100 * 1024


def test_a_child_that_leaves_a_grandchild_holding_stdout_is_noticed(server_process, tmp_path):
    """The child exits, a grandchild keeps its stdout open: the exit is noticed, the
    grandchild is killed with the child's process group, and the child is reaped."""
    grandchildren = tmp_path / "grandchildren"

    def forked():
        return [int(pid) for pid in grandchildren.read_text().split()] if grandchildren.exists() else []

    tegrastats, _ = faulty_tegrastats(tmp_path, "--exit-after", "3", "--fork-grandchild", str(grandchildren))
    try:
        server = server_process("--tegrastats", tegrastats, "--update-interval", "0.05")
        first_child = _child(tmp_path)
        wait_until(lambda: server.health()["restarts"] >= 1, what="the child's exit noticed")
        wait_until(lambda: forked() and not _alive(forked()[0]), what="the grandchild killed")
        assert _proc_stat(first_child) is None, "the child was not reaped"
        child = _child(tmp_path)
        started = time.monotonic()
        assert _stop(server, signal.SIGTERM) == 0
        assert time.monotonic() - started < 5.0
        wait_until(lambda: not [pid for pid in forked() if _alive(pid)] and not _group_alive(child),
                   timeout=5, what="no grandchild left")
        assert "Traceback" not in server.log()
    finally:
        for pid in forked():
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("names", [("SIGTERM", "SIGTERM"), ("SIGINT", "SIGTERM"), ("SIGINT", "SIGINT"),
                                   ("SIGHUP", "SIGQUIT")], ids="+".join)
def test_a_repeated_signal_hurries_the_stop_and_the_exit_stays_clean(server_process, tmp_path, names):
    """The child ignores SIGTERM, so the orderly stop would give it 3 s: the second signal
    cuts that short with SIGKILL, and the server still exits 0 with no child left."""
    tegrastats, _ = faulty_tegrastats(tmp_path, "--hang")
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.1")
    wait_until(lambda: server.get("/api/status").status_code == 200, what="first sample")
    child = _child(tmp_path)
    first, second = (getattr(signal, name) for name in names)
    server.proc.send_signal(first)
    wait_until(lambda: "%s received: stopping" % names[0] in server.log(), what="the stop started")
    started = time.monotonic()
    server.proc.send_signal(second)
    assert server.proc.wait(WAIT_S) == 0
    assert time.monotonic() - started < 2.5, "not hurried: the stop waited for SIGTERM"
    log = server.log()
    assert "%s received again: hurrying" % names[1] in log
    assert "Traceback" not in log
    assert not _alive(child) and not _group_alive(child)


@pytest.mark.parametrize("name", ["SIGHUP", "SIGQUIT"])
def test_sighup_and_sigquit_stop_in_order(server_process, tmp_path, name):
    tegrastats, _ = faulty_tegrastats(tmp_path)
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.1")
    wait_until(lambda: server.get("/api/status").status_code == 200, what="first sample")
    child = _child(tmp_path)
    assert _stop(server, getattr(signal, name)) == 0
    log = server.log()
    assert "%s received: stopping" % name in log and "INFO tegrastats_api.app: stopped" in log
    assert "Traceback" not in log
    assert not _alive(child)


def test_a_child_that_crashes_at_once_makes_the_service_degraded(server_process, tmp_path):
    tegrastats, _ = faulty_tegrastats(tmp_path, "--crash-at-once")
    server = server_process("--tegrastats", tegrastats)
    wait_until(lambda: server.health()["restarts"] >= 2, what="restarts")
    response = server.get("/api/health")
    body = response.json()
    assert (response.status_code, body["status"], body["samples"]) == (503, "degraded", 0)


@pytest.mark.parametrize("argv, env", [
    (["--update-interval", "1e-9"], {}),
    (["--update-interval", "0.005"], {}),
    ([], {"TEGRASTATS_API_UPDATE_INTERVAL": "0.0001"}),
], ids=["flag-1e-9", "flag-5ms", "env-0.1ms"])
def test_an_interval_tegrastats_cannot_honour_is_refused_in_one_line(argv, env):
    clean = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
    out = subprocess.run([sys.executable, "-m", "tegrastats_api", "--config", os.devnull, "run", "--simulate", *argv],
                         capture_output=True, text=True, timeout=60, env=dict(clean, PYTHONPATH=ROOT_DIR, **env))
    assert out.returncode == 2
    lines = out.stderr.splitlines()
    named = "TEGRASTATS_API_UPDATE_INTERVAL" if env else "--update-interval"  # as the user gave it
    assert len(lines) == 1 and lines[0].startswith("tegrastats-api: error: %s: " % named), out.stderr
    assert "0.01" in lines[0]


def test_the_shortest_interval_is_10_ms():
    assert Config(update_interval=0.01).interval_ms == 10
    with pytest.raises(ConfigError):
        Config(update_interval=0.0099)


# --- clients misbehave --------------------------------------------------------------------


def test_idle_connections_do_not_starve_a_normal_client(server_process):
    """Slowloris: 200 connections, half silent and half stuck inside their headers."""
    server = server_process("--simulate", "--update-interval", "0.1")
    wait_until(lambda: server.get("/api/status").status_code == 200)
    fds_before, rss_before = settled_fds(server), server.rss_mb()
    idle = []
    try:
        for index in range(200):
            sock = socket.create_connection(("127.0.0.1", server.port), timeout=WAIT_S)
            if index % 2:
                sock.sendall(b"GET /api/status HTTP/1.1\r\nHost: x\r\nX-Slow: ")
            idle.append(sock)
        wait_until(lambda: server.fds() >= fds_before + 200, what="the idle connections accepted")
        for _ in range(20):
            started = time.monotonic()
            assert server.get("/api/status").status_code == 200
            assert time.monotonic() - started < 2.0
        ws = RawWebSocket(server.port, "/ws")
        stamps = [document_time(ws.text()) for _ in range(3)]
        assert stamps == sorted(set(stamps))
        ws.close()
        assert server.rss_mb() - rss_before < 20
    finally:
        for sock in idle:
            sock.close()
    wait_until(lambda: server.fds() <= fds_before, what="the idle connections' fds closed")


def _tx_queue_bytes(server_port, client_port):
    """Bytes the kernel holds unsent on the server's side of one loopback connection."""
    local, remote = "0100007F:%04X" % server_port, "0100007F:%04X" % client_port
    with open("/proc/net/tcp") as handle:
        for row in handle:
            fields = row.split()
            if fields[1] == local and fields[2] == remote:
                return int(fields[4].split(":")[0], 16)
    raise AssertionError("connection not found")


def test_a_ws_client_that_never_reads_loses_frames_and_nobody_waits(server_process):
    # 100 samples/s; a short history, so that its filling up does not count as growth
    server = server_process("--simulate", "--update-interval", "0.01", "--history-size", "10")
    wait_until(lambda: server.get("/api/status").status_code == 200)
    reader = RawWebSocket(server.port, "/ws")
    received, stop = [], threading.Event()

    def read():
        while not stop.is_set():
            received.append(document_time(reader.text()))

    thread = threading.Thread(target=read, daemon=True)
    thread.start()
    stalled = RawWebSocket(server.port, "/ws", rcvbuf=4096)
    rss_before, samples_before = server.rss_mb(), server.health()["samples"]
    time.sleep(4.0)
    produced = server.health()["samples"] - samples_before
    stuck = _tx_queue_bytes(server.port, stalled.sock.getsockname()[1])
    rss_growth = server.rss_mb() - rss_before
    # Now the stalled client reads: what it gets before the newest sample is what was
    # kept for it, in the kernel and in the server.
    newest = server.get("/api/status").json()["timestamp"]
    kept = 0
    deadline = deadline_after()
    while document_time(stalled.text(deadline=deadline)) < newest:
        kept += 1
    stop.set()
    thread.join(WAIT_S)
    assert produced >= 250, produced
    assert stuck <= 300 * 1024, "the kernel holds %d bytes for one client" % stuck
    assert kept < produced // 3, "%d of %d frames were kept for a client that did not read" % (kept, produced)
    assert rss_growth < 5
    assert received == sorted(set(received)), "the other client's frames are in order, none twice"
    assert len(received) >= 0.8 * produced, "the other client waited for the stalled one"
    reader.close()
    stalled.close()


def _stalled_clients(port):
    """Clients that stop reading with the server's writes to them waiting: /ws, Socket.IO on
    a WebSocket, and HTTP answers asked for 20 at a time, each on a small receive buffer and
    never read after the first answer."""
    clients = []
    for path in ("/ws", "/socket.io/?EIO=4&transport=websocket"):
        client = RawWebSocket(port, path, rcvbuf=4096)
        assert client.status == 101
        if path != "/ws":
            assert client.text().startswith("0{")
            client.send("40")
        client.text()
        clients.append(client)
    for request in ("GET /api/history HTTP/1.1", "GET /metrics HTTP/1.1"):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.connect(("127.0.0.1", port))
        sock.sendall((request + "\r\nHost: 127.0.0.1\r\n\r\n").encode("ascii") * 20)
        clients.append(sock)
    return clients


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_stop_with_clients_that_stopped_reading_is_quiet_and_prompt(server_process, signum):
    """A signal while clients of every kind have writes waiting (their sockets full): the
    server exits 0 within seconds, and nothing of theirs is logged as an error (a write left
    pending at the loop's end is cancelled, which asyncio would log for each)."""
    server = server_process("--simulate", "--update-interval", "0.01", "--history-size", "600")
    wait_until(lambda: server.get("/api/status").status_code == 200)
    clients = [client for _ in range(3) for client in _stalled_clients(server.port)]
    wait_until(lambda: server.health()["samples"] >= 300, what="their sockets filled")
    assert server.health()["connected_clients"] >= 6
    started = time.monotonic()
    assert server.stop(signum) == 0
    assert time.monotonic() - started < 5.0
    log = server.log()
    assert "stopped" in log
    errors = re.findall(r"^(?:ERROR|CRITICAL) .*", log, re.MULTILINE)
    assert errors == [] and "Traceback" not in log, log[-3000:]
    for client in clients:
        (client.sock if isinstance(client, RawWebSocket) else client).close()


def _cycle(port, kind, index):
    if kind == "ws":
        client = RawWebSocket(port, "/ws")
        assert client.status == 101
        client.text()
    else:
        client = sio_client(port)
        if index % 4 == 0:  # the others leave before their first event is sent
            sio_event(client)
    client.close(clean=index % 2 == 0)  # half say goodbye, half just vanish


def test_connect_disconnect_cycles_leak_no_file_descriptors(server_process):
    server = server_process("--simulate", "--update-interval", "0.2", "--max-connections", "50")
    wait_until(lambda: server.get("/api/status").status_code == 200)
    for kind in ("ws", "sio"):  # warm up both paths before the baseline
        _cycle(server.port, kind, 0)
    wait_until(lambda: server.health()["connected_clients"] == 0)
    fds_before, rss_before = settled_fds(server), server.rss_mb()
    with ThreadPoolExecutor(8) as pool:
        for kind in ("ws", "sio"):
            list(pool.map(lambda index, kind=kind: _cycle(server.port, kind, index), range(2000)))
    wait_until(lambda: server.health()["connected_clients"] == 0, what="every slot released")
    wait_until(lambda: server.fds() <= fds_before, what="fds back to %d (now %d)" % (fds_before, server.fds()))
    # python-engineio keeps each closed session's objects (~10 kB) until its ping task ends,
    # up to ping_interval + ping_timeout (45 s) later: bounded, but not back to the baseline yet.
    assert server.rss_mb() - rss_before < 30
    assert server.health()["status"] == "healthy"


# --- the server's own footprint -------------------------------------------------------------


def test_run_imports_socketio_at_the_first_socketio_request_without_its_client():
    """`run` imports python-socketio only when a client first asks for ``/socket.io/`` (some
    8 MB of RSS a board nobody opens a Socket.IO connection to never needs), and then without
    requests, websocket-client and aiohttp, which only its client half uses; they stay
    importable afterwards. Checked inside a real `run` (cli.main) serving on a real port."""
    from mqtt_tools import free_port

    port = free_port()
    code = (
        "import json, os, signal, sys, threading, time, urllib.request\n"
        "WATCHED = {'socketio', 'engineio', 'requests', 'websocket', 'aiohttp', 'urllib3'}\n"
        "def loaded():\n"
        "    return sorted({m.split('.')[0] for m in list(sys.modules)} & WATCHED)\n"
        "def probe():\n"
        "    url = 'http://127.0.0.1:%d'\n"
        "    deadline = time.monotonic() + 30\n"
        "    while True:\n"
        "        try:\n"
        "            urllib.request.urlopen(url + '/api/status', timeout=5).read()\n"
        "            break\n"
        "        except OSError:\n"
        "            if time.monotonic() > deadline:\n"
        "                os._exit(3)\n"
        "            time.sleep(0.05)\n"
        "    before = loaded()\n"
        "    opened = urllib.request.urlopen(url + '/socket.io/?EIO=4&transport=polling', timeout=10).read()\n"
        "    after = loaded()\n"
        "    import requests\n"
        "    print(json.dumps([before, after, opened[:1].decode()]), flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGTERM)\n"
        "threading.Thread(target=probe, daemon=True).start()\n"
        "from tegrastats_api.cli import main\n"
        "sys.exit(main(['run', '--host', '127.0.0.1', '--port', '%d', '--tegrastats', %r]))\n"
    ) % (port, port, FAKE_TEGRASTATS)
    pytest.importorskip("requests")  # a test dependency: without it there is nothing to hide
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT_DIR))
    assert out.returncode == 0, out.stderr
    import json

    before, after, opened = json.loads(out.stdout.splitlines()[0])
    assert before == [], "imported before any Socket.IO request: %s" % before
    assert after == ["engineio", "socketio"]
    assert opened == "0", "the Engine.IO handshake answers an OPEN packet"


def test_run_freezes_the_start_up_heap_before_serving(monkeypatch):
    """A full collection walks every object: `run` freezes the start-up heap first."""
    import gc

    import tegrastats_api.app as app_module
    from tegrastats_api.config import Config

    calls = []
    monkeypatch.setattr(gc, "freeze", lambda: calls.append("freeze"))

    def fake_asyncio_run(coroutine):
        coroutine.close()
        calls.append("serve")
        return 0

    monkeypatch.setattr(app_module.asyncio, "run", fake_asyncio_run)
    assert app_module.run(Config(host="127.0.0.1", port=0, simulate="agx-orin")) == 0
    assert calls == ["freeze", "serve"]
