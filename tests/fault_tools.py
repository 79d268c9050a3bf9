"""Tools of the suites that run real servers: the one harness for a server in a child
process, and the fault and abuse suites' tools (tests/test_faults.py, tests/test_abuse.py...).

What it holds: :class:`ServerProcess` (``python -m tegrastats_api run`` in a child process,
whose ``/proc`` entries count fds and RSS; optionally fed by tests/fake_tegrastats.py) and
:func:`server_processes`, the body of the ``server_process`` fixture of tests/conftest.py
that every suite uses; a tegrastats wrapper that writes a fault and then execs
tests/fake_tegrastats.py (:func:`faulty_tegrastats`), and clients on plain sockets that send
whatever they are told: :class:`RawWebSocket`, :func:`sio_client`, :func:`raw_exchange`;
and :func:`client_recv`/:func:`client_frame` for websocket-client's connections.

Every wait on a socket here has one overall deadline (an absolute ``time.monotonic()``
time) that no traffic can extend: a socket timeout alone restarts with every ``recv``, so
the pings and noops a server keeps sending would let a loop that skips them wait forever.
Public methods take ``timeout`` (seconds from the call) or ``deadline``; a helper that
reads several frames computes ONE deadline at entry and passes it down.

What it does not: assert anything about the server.
"""
from __future__ import annotations

import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time

import requests

from conftest import FAKE_TEGRASTATS, TESTS_DIR

WAIT_S = 10.0
ROOT_DIR = os.path.dirname(TESTS_DIR)
SERVING_RE = re.compile(r"serving on http://127\.0\.0\.1:(\d+) ")
SIO_PATH = "/socket.io/?EIO=4&transport=websocket"
WS_KEY = "dGhlIHNhbXBsZSBub25jZQ=="


MIN_WAIT_S = 0.01  # the socket timeout when a deadline is (almost) reached


def deadline_after(timeout=WAIT_S, deadline=None):
    """``deadline`` if given, else ``timeout`` seconds from now (``time.monotonic()``)."""
    return time.monotonic() + timeout if deadline is None else deadline


def recv_by(sock, deadline, size=65536):
    """``sock.recv(size)``, given up by ``deadline``: raises ``socket.timeout`` once it has
    passed, whatever arrived before. Leaves the socket's timeout set to what was left."""
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline passed")
    sock.settimeout(max(remaining, MIN_WAIT_S))
    return sock.recv(size)


def terminate(proc, timeout=WAIT_S):
    """SIGTERM ``proc`` and reap it; SIGKILL if it has not ended within ``timeout``."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout)


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


def proc_state(pid):
    """The state letter of ``pid`` in ``/proc`` (``"Z"`` for a zombie), None once it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return None


def kill_fake_tegrastats(pidfile):
    """SIGKILL the fake tegrastats whose pid ``pidfile`` holds (or its wrapper, before the
    exec), with its process group (the server starts it in a session of its own), if it
    still runs; a pid that now belongs to another program (reused) is left alone."""
    try:
        pid = int(pidfile.read_text())
        with open("/proc/%d/cmdline" % pid, "rb") as handle:
            argv = handle.read().split(b"\0")
    except (FileNotFoundError, ProcessLookupError, ValueError):
        return
    ours = {FAKE_TEGRASTATS.encode(), str(pidfile.parent / "tegrastats").encode()}
    if proc_state(pid) in (None, "Z") or not ours.intersection(argv):
        return
    try:
        if os.getpgid(pid) == pid:
            os.killpg(pid, signal.SIGKILL)
        else:
            os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        pass


class ServerProcess:
    """``python -m tegrastats_api --config /dev/null run --host 127.0.0.1 --port 0 SETTINGS``
    in a child process: the checkout's package (``PYTHONPATH``, so also its ``static/``),
    no ``TEGRASTATS_API_*`` variable, stdout discarded, stderr (the log) in a file under
    ``tmp_path``. Started by the constructor, which returns once the log says ``serving on``
    (the port is read from that line).

    ``settings``: any ``run`` flags; ``--log-level INFO`` comes first unless they set
    ``--debug`` or ``--log-level`` (the "serving on" line is logged at INFO: a level above
    that never lets the start finish).
    ``fake``: flags of tests/fake_tegrastats.py (``()`` for none): the server runs the fake
    as its tegrastats, through :func:`faulty_tegrastats`'s wrapper (``--tegrastats``), and
    :meth:`child_pid` reads its pid.
    ``healthy``: :meth:`start` also waits for a ``200`` from ``/api/health`` (a sample).
    ``env``: environment variables to set for the server (``TEGRASTATS_API_SYSROOT``...).

    :meth:`stop` signals it and returns its exit status; :meth:`start` starts it again on
    the same port (a client that keeps the URL reconnects). Use it through the
    ``server_process`` fixture (tests/conftest.py), whose teardown stops every server
    and kills any fake tegrastats left (:func:`server_processes`).
    """

    def __init__(self, tmp_path, *settings, fake=None, healthy=False, env=None):
        self.pidfile = tmp_path / "tegrastats.pid"
        self.log_path = tmp_path / ("server-%d.log" % time.monotonic_ns())
        self.settings = list(settings)
        if fake is not None:
            wrapper, _ = faulty_tegrastats(tmp_path, *fake)
            self.settings = ["--tegrastats", wrapper] + self.settings
        self.healthy = healthy
        self.extra_env = dict(env or {})
        self.port, self.url, self.proc, self._log = 0, None, None, None
        self.start()

    def argv(self):
        chosen = "--debug" in self.settings or "--log-level" in self.settings
        level = [] if chosen else ["--log-level", "INFO"]
        return [sys.executable, "-m", "tegrastats_api", "--config", os.devnull, "run", "--host", "127.0.0.1",
                "--port", str(self.port), *level, *self.settings]

    def start(self, timeout=WAIT_S):
        """Start the server (again: on the port it had) and wait until it serves; if it does
        not within ``timeout``, kill it and raise with the tail of its log."""
        assert not self.running(), "already running"
        self._close_log()
        offset = self.log_path.stat().st_size if self.log_path.exists() else 0
        self._log = open(self.log_path, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
        env["PYTHONPATH"] = ROOT_DIR
        env.update(self.extra_env)
        self.proc = subprocess.Popen(self.argv(), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=self._log, env=env)
        try:
            deadline = deadline_after(timeout)
            match = None
            while match is None:
                if self.proc.poll() is not None:
                    raise AssertionError("the server exited with %s before serving" % self.proc.returncode)
                if time.monotonic() > deadline:
                    raise AssertionError("the server did not serve within %s s" % timeout)
                match = SERVING_RE.search(self.log_path.read_bytes()[offset:].decode("utf-8", "replace"))
                if match is None:
                    time.sleep(0.02)
            self.port = int(match.group(1))
            self.url = "http://127.0.0.1:%d" % self.port
            if self.healthy:
                wait_until(lambda: self._health_status() == 200, max(deadline - time.monotonic(), 1.0),
                           what="200 from /api/health")
        except BaseException as err:
            self.stop(signal.SIGKILL)
            if isinstance(err, AssertionError):
                raise AssertionError("%s (%s); log %s ends:\n%s" % (
                    err, " ".join(self.argv()), self.log_path, self.log()[-3000:])) from None
            raise
        return self

    def _health_status(self):
        try:
            return self.get("/api/health").status_code
        except requests.RequestException:
            return None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def log(self):
        return self.log_path.read_text(errors="replace")

    def get(self, path, **kwargs):
        return requests.get(self.url + path, **dict({"timeout": WAIT_S}, **kwargs))

    def health(self):
        return self.get("/api/health").json()

    def child_pid(self):
        """The fake tegrastats's pid (with ``fake=``, or a :func:`faulty_tegrastats`)."""
        return int(self.pidfile.read_text())

    def rss_mb(self):
        return rss_mb(self.proc.pid)

    def fds(self):
        return fd_count(self.proc.pid)

    def stop(self, signum=signal.SIGTERM, timeout=WAIT_S):
        """Send ``signum`` (if it still runs) and wait ``timeout`` for the exit, then SIGKILL;
        the exit status (``-9`` if it had to be killed). Harmless when stopped already."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(signum)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(WAIT_S)
        self._close_log()
        return self.proc.returncode

    def _close_log(self):
        if self._log is not None:
            self._log.close()
            self._log = None


def server_processes(tmp_path):
    """The body of the ``server_process`` fixture (tests/conftest.py): yields ``start(*settings,
    **options)``, which returns a started :class:`ServerProcess`; afterwards stops them all
    (SIGTERM, then SIGKILL) and kills any fake tegrastats left, even when the test failed
    or a start did (:meth:`ServerProcess.start` kills a server that does not come up)."""
    started = []

    def start(*settings, **options):
        server = ServerProcess(tmp_path, *settings, **options)  # a failed start kills its own
        started.append(server)
        return server

    try:
        yield start
    finally:
        try:
            for server in started:
                server.stop()
        finally:
            kill_fake_tegrastats(tmp_path / "tegrastats.pid")


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
    """A WebSocket client on a plain socket, able to send anything, frames or not.

    ``timeout`` bounds the connect and the handshake, and is the default of every read
    (``frame``, ``text``...), counted from that call, pings and all.
    """

    def __init__(self, port, path, rcvbuf=None, timeout=WAIT_S, query=""):
        deadline = deadline_after(timeout)
        self.timeout = timeout
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
        head = self._read_until(b"\r\n\r\n", deadline)
        self.status = int(head.split(b" ", 2)[1])

    def _deadline(self, timeout, deadline):
        return deadline_after(self.timeout if timeout is None else timeout, deadline)

    def _recv(self, deadline):
        """One ``recv`` given up by ``deadline`` (``socket.timeout``); then the socket's
        timeout is ``self.timeout`` again, for sends (also ``self.sock.sendall`` by tests)."""
        try:
            return recv_by(self.sock, deadline)
        finally:
            try:
                self.sock.settimeout(self.timeout)
            except OSError:  # closed meanwhile: the recv's own error says more
                pass

    def _read_until(self, marker, deadline):
        while marker not in self.buffer:
            chunk = self._recv(deadline)
            if not chunk:
                raise ConnectionError("closed before %r" % marker)
            self.buffer += chunk
        head, self.buffer = self.buffer.split(marker, 1)
        return head

    def _read(self, size, deadline):
        while len(self.buffer) < size:
            chunk = self._recv(deadline)
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

    def frame(self, timeout=None, deadline=None):
        """``(opcode, payload)`` of the next frame; answers pings, which do not extend the
        wait: ``socket.timeout`` once ``deadline`` (default: ``timeout`` from now) passed."""
        deadline = self._deadline(timeout, deadline)
        while True:
            first, second = self._read(2, deadline)
            size = second & 0x7F
            if size == 126:
                size = struct.unpack("!H", self._read(2, deadline))[0]
            elif size == 127:
                size = struct.unpack("!Q", self._read(8, deadline))[0]
            opcode, payload = first & 0x0F, self._read(size, deadline)
            if opcode == 0x9:
                self.send(payload, 0xA)
                continue
            return opcode, payload

    def text(self, timeout=None, deadline=None):
        opcode, payload = self.frame(timeout, deadline)
        if opcode == 0x8:
            raise ConnectionError("close frame %r" % payload[:2])
        return payload.decode("utf-8")

    def is_closed_by_server(self, timeout=WAIT_S, deadline=None):
        """True once the server sent a close frame or closed the socket; False if neither
        happened by ``deadline`` (default: ``timeout`` from now), whatever else came."""
        deadline = deadline_after(timeout, deadline)
        try:
            while True:
                if self.frame(deadline=deadline)[0] == 0x8:
                    return True
        except socket.timeout:  # an OSError too (TimeoutError on 3.10+): first
            return False
        except (ConnectionError, OSError):
            return True

    def close(self, clean=True):
        try:
            if clean:
                self.send(struct.pack("!H", 1000), 0x8)
        except OSError:
            pass
        self.sock.close()


def sio_client(port, query="", timeout=WAIT_S):
    """A Socket.IO client over WebSocket, joined to the default namespace (all within
    ``timeout``)."""
    deadline = deadline_after(timeout)
    client = RawWebSocket(port, SIO_PATH, query=query, timeout=timeout)
    assert client.status == 101
    assert client.text(deadline=deadline).startswith("0{")  # Engine.IO open
    client.send("40")
    assert client.text(deadline=deadline).startswith("40")
    return client


def sio_event(client, timeout=WAIT_S, deadline=None):
    """The next ``tegrastats_update`` packet's text, answering Engine.IO pings; raises
    ``socket.timeout`` at ``deadline`` (default: ``timeout`` from now), which the pings,
    noops and other packets read meanwhile do not extend."""
    deadline = deadline_after(timeout, deadline)
    while True:
        text = client.text(deadline=deadline)
        if text == "2":  # Engine.IO ping
            client.send("3")
        elif text.startswith('42["tegrastats_update"'):
            return text


def client_frame(ws, timeout=WAIT_S, deadline=None):
    """``(opcode, data)`` of the next frame of a websocket-client connection, control
    frames included (websocket-client answers pings itself), by ``deadline`` (default:
    ``timeout`` from now): ``socket.timeout`` if it has passed, websocket-client's
    ``WebSocketTimeoutException`` if it passes during the read.

    websocket-client's own ``recv()`` skips pings inside one call, and each restarts its
    socket timeout: a server pinging more often than that timeout keeps it waiting.
    """
    deadline = deadline_after(timeout, deadline)
    remaining = deadline - time.monotonic()
    if remaining <= 0:
        raise socket.timeout("deadline passed")
    previous = ws.gettimeout()
    ws.settimeout(max(remaining, MIN_WAIT_S))
    try:
        return ws.recv_data(control_frame=True)
    finally:
        ws.settimeout(previous)


def client_recv(ws, timeout=WAIT_S, deadline=None):
    """What websocket-client's ``ws.recv()`` returns (text as str, binary as bytes, "" for
    a close frame), but given up at ``deadline`` (default: ``timeout`` from now) however
    many pings and pongs come meanwhile."""
    deadline = deadline_after(timeout, deadline)
    while True:
        opcode, data = client_frame(ws, deadline=deadline)
        if opcode == 0x1:
            return data.decode("utf-8") if isinstance(data, bytes) else data
        if opcode == 0x2:
            return data
        if opcode == 0x8:
            return ""


def document_time(text):
    return re.search(r'"timestamp": ?"([^"]+)"', text).group(1)


def raw_exchange(port, data, timeout=WAIT_S):
    """Send ``data`` (as much as the server takes) and return all it answers before closing;
    ``socket.timeout`` if it does not close within ``timeout`` (in all, not per read)."""
    deadline = deadline_after(timeout)
    sock = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    try:
        try:
            sock.sendall(data)  # the timeout bounds a whole sendall (Python 3.5+)
        except (BrokenPipeError, ConnectionResetError):
            pass  # refused part way: what it answered is still to be read
        answer = b""
        while True:
            try:
                chunk = recv_by(sock, deadline)
            except ConnectionResetError:
                break
            if not chunk:
                break
            answer += chunk
        return answer
    finally:
        sock.close()
