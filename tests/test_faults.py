"""Faults and abuse: the server keeps serving everybody else, within bounded memory.

Real servers on 127.0.0.1 and real sockets. Where a test counts file descriptors or RSS,
the server is ``python -m tegrastats_api run`` in a child process (its ``/proc`` entries
are its own); tegrastats faults come from a wrapper script that writes the fault and then
execs tests/fake_tegrastats.py. The rest run the server in a thread (``live_server``).
Every wait has a deadline; the whole file runs in well under a minute.
"""
from __future__ import annotations

import hmac
import os
import random
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests

from conftest import FAKE_TEGRASTATS, TESTS_DIR

WAIT_S = 10.0
ROOT_DIR = os.path.dirname(TESTS_DIR)
SERVING_RE = re.compile(r"serving on http://127\.0\.0\.1:(\d+) ")
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
TOKEN = "tok-3f9a1c-SECRET"
WRONG_TOKEN = "tok-wrong-77e2b0"


def wait_until(condition, timeout=WAIT_S, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError("%s not met in %s s" % (what, timeout))


def rss_mb(pid):
    with open("/proc/%d/status" % pid) as handle:
        return next(int(row.split()[1]) / 1024.0 for row in handle if row.startswith("VmRSS:"))


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def settled_fds(server):
    """The server's fd count once two readings 0.2 s apart agree (closes lag behind clients)."""
    previous = None
    for _ in range(50):
        count = server.fds()
        if count == previous:
            return count
        previous = count
        time.sleep(0.2)
    return previous


# --- a server in a child process, and a tegrastats that misbehaves -----------------------


class ServerProcess:
    """``python -m tegrastats_api run --port 0 SETTINGS`` with its log in a file."""

    def __init__(self, tmp_path, *settings):
        self.log_path = tmp_path / ("server-%d.log" % time.monotonic_ns())
        self._log = open(self.log_path, "w")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
        env["PYTHONPATH"] = ROOT_DIR
        level = [] if "--debug" in settings else ["--log-level", "INFO"]
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tegrastats_api", "--config", os.devnull, "run", "--host", "127.0.0.1",
             "--port", "0", *level, *settings],
            stdout=subprocess.DEVNULL, stderr=self._log, env=env,
        )
        match = wait_until(lambda: self.proc.poll() is None and SERVING_RE.search(self.log()),
                           what="server start (log: %s)" % self.log_path)
        self.port = int(match.group(1))
        self.url = "http://127.0.0.1:%d" % self.port

    def log(self):
        return self.log_path.read_text(errors="replace")

    def get(self, path, **kwargs):
        return requests.get(self.url + path, timeout=WAIT_S, **kwargs)

    def health(self):
        return self.get("/api/health").json()

    def rss_mb(self):
        return rss_mb(self.proc.pid)

    def fds(self):
        return fd_count(self.proc.pid)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(WAIT_S)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def server_process(tmp_path):
    started = []

    def start(*settings):
        server = ServerProcess(tmp_path, *settings)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
    pidfile = tmp_path / "tegrastats.pid"
    if pidfile.exists():  # never leave a fake tegrastats behind, even on failure
        try:
            os.kill(int(pidfile.read_text()), signal.SIGKILL)
        except (ProcessLookupError, ValueError):
            pass


WRAPPER = '''#!%(python)s
"""tegrastats with a fault: one real line, then (once %(go)s exists) the fault bytes, then the fake."""
import os, sys, time
sys.path.insert(0, %(tests)r)
import fake_tegrastats
with open(%(pidfile)r, "w") as handle:  # the fake keeps this pid: exec, not a child
    handle.write("%%d\\n" %% os.getpid())
fault = %(fault)r
if fault:
    sys.stdout.buffer.write(fake_tegrastats.DEFAULT_LINES[0].encode() + b"\\n")
    sys.stdout.buffer.flush()
    deadline = time.time() + 20
    while not os.path.exists(%(go)r) and time.time() < deadline:
        time.sleep(0.01)
    with open(fault, "rb") as source:
        for chunk in iter(lambda: source.read(65536), b""):
            sys.stdout.buffer.write(chunk)
    sys.stdout.buffer.flush()
os.execv(sys.executable, [sys.executable, %(fake)r, "--pidfile", %(pidfile)r] + %(flags)r + sys.argv[1:])
'''


def faulty_tegrastats(tmp_path, *flags, fault=None):
    """An executable tegrastats for ``--tegrastats``: the fake with ``flags``; with ``fault``
    (bytes), first one real line, then ``fault`` once the test calls ``go()``.

    Returns ``(path, go)``; the fake keeps the wrapper's pid, written to tegrastats.pid.
    """
    fault_path = ""
    if fault is not None:
        fault_path = str(tmp_path / "fault.bin")
        with open(fault_path, "wb") as handle:
            handle.write(fault)
    go_path = tmp_path / "go"
    script = tmp_path / "tegrastats"
    script.write_text(WRAPPER % {
        "python": sys.executable, "tests": TESTS_DIR, "fault": fault_path, "go": str(go_path),
        "fake": FAKE_TEGRASTATS, "pidfile": str(tmp_path / "tegrastats.pid"), "flags": list(flags),
    })
    script.chmod(0o755)
    return str(script), lambda: go_path.write_text("go")


def child_pid(tmp_path):
    return int((tmp_path / "tegrastats.pid").read_text())


# --- WebSocket and Engine.IO over a plain socket -----------------------------------------


class RawWebSocket:
    """A WebSocket client on a plain socket, able to send anything, frames or not."""

    def __init__(self, port, path, rcvbuf=None, timeout=WAIT_S, query=""):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(timeout)
        self.sock.connect(("127.0.0.1", port))
        self.sock.sendall((
            "GET %s%s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, query, port, WS_KEY)
        ).encode("ascii"))
        self.buffer = b""
        head = self._read_until(b"\r\n\r\n")
        self.status = int(head.split(b" ", 2)[1])

    def _read_until(self, marker):
        while marker not in self.buffer:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed before %r" % marker)
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read(self, size):
        while len(self.buffer) < size:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise ConnectionError("closed")
            self.buffer += chunk
        data, self.buffer = self.buffer[:size], self.buffer[size:]
        return data

    def send(self, payload, opcode=0x1):
        """One masked frame (the zero mask key leaves the payload as it is)."""
        if isinstance(payload, str):
            payload = payload.encode("utf-8")
        size = len(payload)
        if size < 126:
            head = struct.pack("!BB", 0x80 | opcode, 0x80 | size)
        elif size <= 0xFFFF:
            head = struct.pack("!BBH", 0x80 | opcode, 0xFE, size)
        else:
            head = struct.pack("!BBQ", 0x80 | opcode, 0xFF, size)
        self.sock.sendall(head + b"\0\0\0\0" + payload)

    def frame(self):
        """``(opcode, payload)`` of the next frame; answers pings."""
        while True:
            first, second = self._read(2)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8))[0]
            opcode, payload = first & 0x0F, self._read(size)
            if opcode == 0x9:
                self.send(payload, 0xA)
                continue
            return opcode, payload

    def text(self):
        opcode, payload = self.frame()
        if opcode == 0x8:
            raise ConnectionError("close frame %r" % payload[:2])
        return payload.decode("utf-8")

    def is_closed_by_server(self, timeout=WAIT_S):
        """True once the server sent a close frame or closed the socket."""
        self.sock.settimeout(timeout)
        try:
            while True:
                if self.frame()[0] == 0x8:
                    return True
        except (ConnectionError, OSError):
            return True
        except socket.timeout:
            return False

    def close(self, clean=True):
        try:
            if clean:
                self.send(struct.pack("!H", 1000), 0x8)
        except OSError:
            pass
        self.sock.close()


def sio_client(port, query=""):
    """A Socket.IO client over WebSocket, joined to the default namespace."""
    client = RawWebSocket(port, SIO_PATH, query=query)
    assert client.status == 101
    assert client.text().startswith("0{")  # Engine.IO open
    client.send("40")
    assert client.text().startswith("40")
    return client


def sio_event(client):
    """The next ``tegrastats_update`` packet's text."""
    while True:
        text = client.text()
        if text == "2":  # Engine.IO ping
            client.send("3")
        elif text.startswith('42["tegrastats_update"'):
            return text


def document_time(text):
    return re.search(r'"timestamp": ?"([^"]+)"', text).group(1)


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


def test_ten_megabytes_of_garbage_are_counted_within_bounded_memory(server_process, tmp_path):
    garbage, count = _garbage(10)
    tegrastats, go = faulty_tegrastats(tmp_path, fault=garbage)
    server = server_process("--tegrastats", tegrastats, "--update-interval", "0.05")
    wait_until(lambda: server.get("/api/status").status_code == 200, what="first sample")
    rss_before = server.rss_mb()
    go()
    wait_until(lambda: server.health()["parse_errors"] == count, timeout=30, what="all garbage counted")
    samples = server.health()["samples"]
    wait_until(lambda: server.health()["samples"] > samples + 3, what="samples after the garbage")
    assert server.health()["restarts"] == 0
    assert server.get("/api/status").json()["memory"]["ram"]["total"] == 62841
    assert server.rss_mb() - rss_before < 15, "RSS grew with the garbage"
    # the first few bad lines are logged, then one in a hundred
    assert server.log().count("WARNING tegrastats_api.hub") <= count // 100 + 10


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
    while document_time(stalled.text()) < newest:
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
    # up to ping_interval + ping_timeout (30 s) later: bounded, but not back to the baseline yet.
    assert server.rss_mb() - rss_before < 30
    assert server.health()["status"] == "healthy"


def _raw_exchange(port, data, timeout=WAIT_S):
    """Send ``data`` (as much as the server takes) and return all it answers before closing."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused part way: what it answered is still to be read
        answer = b""
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return answer
    finally:
        sock.close()


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
    answer = _raw_exchange(server.server.port, request_bytes)
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
    assert MAX_BODY_BYTES >= server.server.sio.eio.max_http_buffer_size


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
    answer = _raw_exchange(port, ("GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n" % path).encode())
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
    oversized.send("4" + "x" * 2_000_000)
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


# --- the server's own footprint -------------------------------------------------------------


def test_run_loads_no_socketio_client_dependencies():
    """`run` hides requests, websocket-client and aiohttp from python-engineio's client
    modules (about 6 MB of RSS, docs/PERFORMANCE.md); they stay importable afterwards."""
    code = (
        "import sys\n"
        "from tegrastats_api.cli import CLIENT_ONLY_MODULES, import_server_modules\n"
        "import_server_modules()\n"
        "import tegrastats_api.app, tegrastats_api.sio\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in CLIENT_ONLY_MODULES + ('urllib3',)))\n"
        "import requests\n"
        "print('requests importable')\n"
    )
    pytest.importorskip("requests")  # a test dependency: without it there is nothing to hide
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60,
                         env=dict(os.environ, PYTHONPATH=ROOT_DIR))
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]", "requests importable"]


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
