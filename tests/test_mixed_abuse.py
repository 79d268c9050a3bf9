"""Mixed abuse for a minute: every kind of attacker at once against one server with a token,
while well-behaved clients must lose nothing and stay served.

The server is ``python -m tegrastats_api run --simulate --auth-token ...`` in a child process
(the ``server_process`` fixture), so its RSS and fds are its own. For :data:`ATTACK_S` seconds,
threads of this process (each loop bounded in count and time, 127.0.0.1 only):

(a) Engine.IO handshakes without the token or with a bad one (polling and WebSocket);
(b) REST requests with thousands of distinct ``fields=`` lists on /api/status and /api/history;
(c) Socket.IO polling sessions that join (``?token=``) and never poll again;
(d) malformed /ws frames and Socket.IO/Engine.IO packets from raw clients;
(e) slow clients that connect (/ws, Socket.IO, a full /api/history) and never read.

Meanwhile one raw ``/ws`` client and one raw Socket.IO client with the token must receive
every sample (compared with /api/history afterwards: consecutive, none missing), and a
prober in a process of its own (so that the attackers' threads do not delay its clock
readings) measures ``/api/health`` latency on a new connection each time, as a health
checker does. Asserted: peak RSS below twice the idle RSS, the prober's p99, every sample
received, and the server's fd count back to its baseline a few seconds after the attack.
The figures are printed (``pytest -s``); so are the server log's size and its tracebacks,
which are not asserted.
"""
from __future__ import annotations

import collections
import json
import math
import os
import re
import socket
import struct
import subprocess
import sys
import threading
import time
from urllib.parse import quote

import pytest
import requests

from fault_tools import (
    SIO_PATH,
    WAIT_S,
    RawWebSocket,
    deadline_after,
    document_time,
    recv_by,
    settled_fds,
    sio_client,
    sio_event,
    wait_until,
)

pytestmark = pytest.mark.slow

ATTACK_S = 60.0  # the requirement: a minute of mixed abuse
INTERVAL_S = 0.2  # --update-interval: 300 samples during the attack
HISTORY_SIZE = 1000  # every sample of the test stays in /api/history, to compare with
MAX_CONNECTIONS = 64  # the push clients' slots: attackers take some, the two good clients keep theirs
HEALTH_P99_S = 0.1  # the bound on the prober's p99 (measured: under 20 ms on 2 cores)
PROBE_PERIOD_S = 0.05
FD_SETTLE_S = 5.0  # the attackers' connections are closed once the attack stops
TOKEN = "mixed-abuse-t0ken"
BAD_TOKEN = "mixed-abuse-wrong"
POLLING = "/socket.io/?EIO=4&transport=polling"
ATTACK_ERRORS = (OSError, ConnectionError, requests.RequestException, AssertionError, ValueError)

# The prober: GET /api/health on a new connection every PERIOD seconds for SECONDS; prints
# [[latency_s, status or error], ...] as JSON. Standard library only.
PROBER = r"""
import http.client, json, sys, time
port, seconds, period = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3])
results, end = [], time.monotonic() + seconds
while time.monotonic() < end:
    started = time.monotonic()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/api/health")
        response = conn.getresponse()
        response.read()
        results.append([time.monotonic() - started, response.status])
    except (OSError, http.client.HTTPException) as err:
        results.append([time.monotonic() - started, type(err).__name__])
    finally:
        conn.close()
    time.sleep(max(0.0, period - (time.monotonic() - started)))
json.dump(results, sys.stdout)
"""


def cpu_seconds(pid):
    """User and system CPU time of ``pid`` so far."""
    with open("/proc/%d/stat" % pid) as handle:
        fields = handle.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def seconds_until(condition, timeout):
    """How long ``condition()`` took to become true, polled every 0.05 s; None if it did not
    within ``timeout`` (no exception: the test prints its figures first)."""
    started = time.monotonic()
    while not condition():
        if time.monotonic() - started > timeout:
            return None
        time.sleep(0.05)
    return time.monotonic() - started


def percentile(values, fraction):
    ordered = sorted(values)
    return ordered[max(0, math.ceil(fraction * len(ordered)) - 1)]


class Prober:
    """The health prober in a child process (see :data:`PROBER`)."""

    def __init__(self, port, seconds):
        self.seconds = seconds
        self.proc = subprocess.Popen([sys.executable, "-c", PROBER, str(port), str(seconds), str(PROBE_PERIOD_S)],
                                     stdout=subprocess.PIPE, stdin=subprocess.DEVNULL)

    def results(self):
        """``(latencies, outcomes)`` once it is done."""
        try:
            out, _ = self.proc.communicate(timeout=self.seconds + 2 * WAIT_S + 10)
        finally:
            self.close()
        rows = json.loads(out)
        return [row[0] for row in rows], collections.Counter(row[1] for row in rows)

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(WAIT_S)


# --- the well-behaved push clients --------------------------------------------------------


class Subscriber:
    """A raw push client in a thread, keeping the timestamp of every document it receives."""

    def __init__(self, name, connect, next_text):
        self.name, self.stamps, self.error = name, [], None
        self.client = connect()
        self._next_text = next_text
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def _run(self):
        try:
            while not self._stop.is_set():
                self.stamps.append(document_time(self._next_text(self.client, deadline_after(WAIT_S))))
        except Exception as err:  # noqa: BLE001 - reported by the test
            self.error = "%s: %r after %d documents" % (self.name, err, len(self.stamps))

    def has(self, stamp):
        return bool(self.stamps) and self.stamps[-1] >= stamp  # ISO 8601 times, one format

    def stop(self):
        self._stop.set()
        self._thread.join(WAIT_S + 2)
        self.client.close()


def ws_subscriber(port):
    return Subscriber("/ws", lambda: RawWebSocket(port, "/ws", query="?token=" + TOKEN),
                      lambda client, deadline: client.text(deadline=deadline))


def sio_subscriber(port):
    return Subscriber("Socket.IO", lambda: sio_client(port, query="&token=" + TOKEN),
                      lambda client, deadline: sio_event(client, deadline=deadline))


def missing_and_extra(received, published):
    """What a client missed of the samples published between its first and last one, and
    what it got that was not published (or out of order); repeats of one document in a row
    (the latest one sent on joining may also come as the next broadcast) count once."""
    distinct = [stamp for index, stamp in enumerate(received) if index == 0 or stamp != received[index - 1]]
    window = [stamp for stamp in published if distinct[0] <= stamp <= distinct[-1]]
    missing = sorted(set(window) - set(distinct))
    known = set(window)
    extra = [stamp for stamp in distinct if stamp not in known]
    if not missing and not extra and distinct != window:
        extra = ["out of order"]
    return missing, extra, len(received) - len(distinct)


# --- the attackers ------------------------------------------------------------------------


class Attack:
    """Attacker threads until ``stop_at``: each runs ``step(index)`` at most ``limit`` times
    and counts the outcomes it returns (expected errors by their type's name)."""

    def __init__(self, port, seconds):
        self.port = port
        self.url = "http://127.0.0.1:%d" % port
        self.stop_at = time.monotonic() + seconds
        self.outcomes = collections.defaultdict(collections.Counter)
        self.unexpected = []
        self._threads = []
        self._lock = threading.Lock()

    def running(self):
        return time.monotonic() < self.stop_at

    def start(self, name, step, limit, pause=0.0, cleanup=None):
        def run():
            try:
                for index in range(limit):
                    if not self.running():
                        break
                    try:
                        outcome = step(index)
                    except ATTACK_ERRORS as err:
                        outcome = type(err).__name__
                    except Exception as err:  # noqa: BLE001 - a bug of the attacker: fails the test
                        outcome = "unexpected"
                        with self._lock:
                            self.unexpected.append("%s: %r" % (name, err))
                    with self._lock:
                        self.outcomes[name][str(outcome)] += 1
                    if pause:
                        time.sleep(pause)
            finally:
                if cleanup is not None:
                    cleanup()

        thread = threading.Thread(target=run, name=name, daemon=True)
        self._threads.append(thread)
        thread.start()

    def join(self):
        for thread in self._threads:
            thread.join(max(0.0, self.stop_at - time.monotonic()) + 3 * WAIT_S)
        alive = [thread.name for thread in self._threads if thread.is_alive()]
        assert not alive, "attackers still running: %s" % alive

    def stop(self):
        """End the attack now (after a failure): each thread stops after its current step."""
        self.stop_at = time.monotonic()
        for thread in self._threads:
            thread.join(3 * WAIT_S)


def handshakes_without_the_token(attack):
    """(a) Engine.IO handshakes without the token or with a bad one: 401 before any session."""
    session = requests.Session()
    variants = [
        lambda: session.get(attack.url + POLLING, timeout=WAIT_S),
        lambda: session.get(attack.url + POLLING + "&token=" + BAD_TOKEN, timeout=WAIT_S),
        lambda: session.get(attack.url + POLLING, headers={"Authorization": "Bearer " + BAD_TOKEN}, timeout=WAIT_S),
        lambda: session.get(attack.url + POLLING + "&token=" + TOKEN[:-1], timeout=WAIT_S),
    ]
    attack.start("a-polling", lambda index: variants[index % len(variants)]().status_code, 100_000,
                 cleanup=session.close)

    def upgrade(index):
        query = "" if index % 2 else "&token=" + BAD_TOKEN
        ws = RawWebSocket(attack.port, SIO_PATH, query=query, timeout=WAIT_S)
        ws.close(clean=False)
        return ws.status

    attack.start("a-websocket", upgrade, 100_000)


def fields_list(index):
    """A valid ``fields=`` list of its own for each index."""
    sections = ["cpu.usage", "memory.ram", "gpu", "emc.freq", "engines", "cpu.cores.usage", "power"]
    chosen = [sections[(index + k) % len(sections)] for k in range(1 + index % 3)]
    return ",".join(chosen + ["extra.abuse%d" % index, "temperature.t%d" % index, "power.rail%d.current" % index])


def distinct_field_lists(attack):
    """(b) Thousands of distinct field lists (a few invalid: 400) on /api/status and /api/history."""
    headers = {"Authorization": "Bearer " + TOKEN}

    def getter(name, path_of):
        session = requests.Session()

        def step(index):
            fields = fields_list(index) if index % 20 else "cpu.nope%d" % index
            answer = session.get(attack.url + path_of(index) + quote(fields, safe=",."), headers=headers,
                                 timeout=WAIT_S)
            return answer.status_code

        attack.start(name, step, 100_000, cleanup=session.close)

    getter("b-status", lambda index: "/api/status?fields=")
    # mostly the last 2 s; every 50th the whole history (up to HISTORY_SIZE samples to encode)
    getter("b-history", lambda index: "/api/history?%sfields=" % ("" if index % 50 == 1 else "seconds=2&"))


def polling_sessions_left_behind(attack):
    """(c) Socket.IO over polling: handshake and join with ?token=, then never poll again."""
    session = requests.Session()
    query = POLLING + "&token=" + TOKEN

    def step(index):
        answer = session.get(attack.url + query, timeout=WAIT_S)
        if answer.status_code != 200:
            return answer.status_code
        sid = json.loads(answer.text[1:].split("\x1e")[0])["sid"]
        joined = session.post(attack.url + query + "&sid=" + sid, data="40", timeout=WAIT_S)
        return "joined" if joined.status_code == 200 else "join %d" % joined.status_code

    # about 5 a second: with 5 s of grace before the sweep closes them, ~30 slots held at a time
    attack.start("c-polling-left", step, 2_000, pause=0.2, cleanup=session.close)


WS_MALFORMED = [
    ("invalid-utf8", lambda ws: ws.send(b"\xff\xfe\xfd", 0x1)),
    ("binary", lambda ws: ws.send(b"\x00\x01junk" * 50, 0x2)),
    ("reserved-opcode", lambda ws: ws.send(b"what", 0x3)),
    ("rsv-bits", lambda ws: ws.sock.sendall(b"\xf1\x84\0\0\0\0abcd")),
    ("unmasked", lambda ws: ws.sock.sendall(b"\x81\x05hello")),
    ("huge-length", lambda ws: ws.sock.sendall(b"\x81\xff" + struct.pack("!Q", 2 ** 62) + b"\0\0\0\0abc")),
    ("over-64k", lambda ws: ws.send(b"x" * 70_000, 0x1)),
    ("lone-continuation", lambda ws: ws.send(b"cont", 0x0)),
    ("long-ping", lambda ws: ws.send(b"p" * 200, 0x9)),
    ("bad-close-code", lambda ws: ws.send(struct.pack("!H", 999), 0x8)),
    ("one-byte-close", lambda ws: ws.send(b"\x03", 0x8)),
    ("text-then-garbage", lambda ws: (ws.send('{"subscribe": "everything"}'), ws.sock.sendall(b"\x00" * 64))),
]

SIO_MALFORMED = [
    "42[", '42["tegrastats_update"', "4{", "49", "7", "", "40/nope,", "41", "3", "5", "6", "2probe",
    '451-["x",{"_placeholder":true,"num":5}]', '42["x",' + '"a",' * 5000 + '"a"]',
    '42["tegrastats_update",' + "[" * 5000 + "]" * 5000 + "]", "4" + "\x00" * 100,
]

RAW_MALFORMED = [
    b"GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Version: 99\r\n\r\n" % TOKEN.encode(),
    b"GET /ws?token=%s HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n" % TOKEN.encode(),
    b"POST /socket.io/?EIO=4&transport=polling&sid=bogus&token=%s HTTP/1.1\r\nHost: x\r\n"
    b"Content-Length: 4\r\nConnection: close\r\n\r\n4\x1e\x1e9" % TOKEN.encode(),
    b"GET /socket.io/?EIO=3&transport=polling&token=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    % TOKEN.encode(),
    b"GET /socket.io/?EIO=4&transport=flash&token=%s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    % TOKEN.encode(),
    b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 64,  # a TLS hello
    b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
]


def malformed_packets(attack):
    """(d) Malformed /ws frames, Socket.IO/Engine.IO packets and HTTP upgrades, each on a
    new connection; a short look whether the server closed it, then it is dropped."""

    def ws_step(index):
        name, send = WS_MALFORMED[index % len(WS_MALFORMED)]
        ws = RawWebSocket(attack.port, "/ws", query="?token=" + TOKEN, timeout=WAIT_S)
        try:
            send(ws)
            return "closed" if ws.is_closed_by_server(timeout=0.1) else "open"
        finally:
            ws.close(clean=False)

    def sio_step(index):
        client = sio_client(attack.port, query="&token=" + TOKEN, timeout=WAIT_S)
        try:
            packet = SIO_MALFORMED[index % len(SIO_MALFORMED)]
            if index % 7 == 0:
                client.send(packet.encode("utf-8"), 0x2)  # as a binary frame
            else:
                client.send(packet)
            return "closed" if client.is_closed_by_server(timeout=0.1) else "open"
        finally:
            client.close(clean=False)

    def raw_step(index):
        """The first line of the answer within 1 s (none to a TLS hello: its request head
        never ends; a 426 keeps the connection open), then the connection is dropped."""
        deadline = deadline_after(1.0)
        with socket.create_connection(("127.0.0.1", attack.port), timeout=WAIT_S) as sock:
            sock.sendall(RAW_MALFORMED[index % len(RAW_MALFORMED)])
            answer = b""
            try:
                while b"\r\n" not in answer:
                    chunk = recv_by(sock, deadline)
                    if not chunk:
                        break
                    answer += chunk
            except socket.timeout:
                return "no answer in 1 s"
        return answer.split(b"\r\n", 1)[0].decode("latin-1") or "closed"

    attack.start("d-ws", ws_step, 100_000)
    attack.start("d-socketio", sio_step, 20_000)
    attack.start("d-raw", raw_step, 20_000)


def slow_readers(attack, holding=8, hold_s=4.0):
    """(e) Clients that connect and never read: /ws and Socket.IO subscribers with a small
    receive buffer, and whole-/api/history requests; ``holding`` at a time, each for
    ``hold_s`` seconds, then closed (no clean close: it would need a read)."""
    opened = collections.deque()

    def slow_socket():
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(WAIT_S)
        sock.connect(("127.0.0.1", attack.port))
        return sock

    def step(index):
        while opened and (len(opened) >= holding or time.monotonic() - opened[0][0] > hold_s):
            opened.popleft()[1].close()
        kind = index % 3
        if kind == 0:
            ws = RawWebSocket(attack.port, "/ws", query="?token=" + TOKEN, rcvbuf=4096, timeout=WAIT_S)
            opened.append((time.monotonic(), ws.sock))
            return "ws %d" % ws.status
        if kind == 1:
            ws = RawWebSocket(attack.port, SIO_PATH, query="&token=" + TOKEN, rcvbuf=4096, timeout=WAIT_S)
            if ws.status == 101:
                ws.send("40")  # joins, and never reads the open packet nor anything after
            opened.append((time.monotonic(), ws.sock))
            return "sio %d" % ws.status
        sock = slow_socket()
        sock.sendall(b"GET /api/history HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n\r\n" % TOKEN.encode())
        opened.append((time.monotonic(), sock))
        return "history"

    def close_all():
        while opened:
            opened.popleft()[1].close()

    attack.start("e-slow", step, 5_000, pause=0.5, cleanup=close_all)


class RssWatch:
    """The server's RSS every 0.2 s in a thread: the peak."""

    def __init__(self, server):
        self.server, self.peak, self.readings = server, 0.0, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self):
        while not self._stop.is_set():
            try:
                self.peak = max(self.peak, self.server.rss_mb())
                self.readings += 1
            except (OSError, StopIteration):  # the server is gone: the test says so
                return
            self._stop.wait(0.2)

    def stop(self):
        self._stop.set()
        self._thread.join(WAIT_S)
        return self.peak


# --- the test -----------------------------------------------------------------------------


SERVER_SETTINGS = ("--simulate", "--update-interval", str(INTERVAL_S), "--auth-token", TOKEN,
                   "--max-connections", str(MAX_CONNECTIONS), "--history-size", str(HISTORY_SIZE))


def mixed_abuse(server, seconds=ATTACK_S):
    """Attack ``server`` (a :class:`fault_tools.ServerProcess` started with
    :data:`SERVER_SETTINGS`) for ``seconds`` with every attacker at once, and return the
    figures: what the test asserts and ``make bench`` (section ``abuse``) prints."""
    auth = {"Authorization": "Bearer " + TOKEN}
    wait_until(lambda: server.health()["samples"] >= 5, what="a few samples")
    idle_rss = server.rss_mb()
    watch = RssWatch(server)
    subscribers, prober, attack = [], None, None
    try:
        subscribers = [ws_subscriber(server.port), sio_subscriber(server.port)]
        wait_until(lambda: all(len(s.stamps) >= 3 for s in subscribers), what="the good clients served")
        idle_prober = Prober(server.port, 2.0)
        idle_latencies, _ = idle_prober.results()
        fds_before = settled_fds(server)

        cpu_before, own_cpu_before, started = cpu_seconds(server.proc.pid), time.process_time(), time.monotonic()
        prober = Prober(server.port, seconds)
        attack = Attack(server.port, seconds)
        for launch in (handshakes_without_the_token, distinct_field_lists, polling_sessions_left_behind,
                       malformed_packets, slow_readers):
            launch(attack)
        fds_during = []
        while attack.running():
            fds_during.append(server.fds())
            time.sleep(1.0)
        attack.join()
        elapsed = time.monotonic() - started
        server_cpu = (cpu_seconds(server.proc.pid) - cpu_before) / elapsed
        own_cpu = (time.process_time() - own_cpu_before) / elapsed
        latencies, health_outcomes = prober.results()

        assert server.proc.poll() is None, "the server died: %s" % server.log()[-3000:]
        fds_settled_s = seconds_until(lambda: server.fds() <= fds_before, FD_SETTLE_S)
        fds_after = settled_fds(server)
        newest = server.get("/api/status", headers=auth).json()["timestamp"]
        seconds_until(lambda: all(s.has(newest) or s.error for s in subscribers), WAIT_S)
        for subscriber in subscribers:
            subscriber.stop()
        published = [doc["timestamp"] for doc in server.get("/api/history", headers=auth).json()["samples"]]
        peak_rss = watch.stop()
    finally:
        if attack is not None:
            attack.stop()
        for subscriber in subscribers:
            subscriber.stop()
        if prober is not None:
            prober.close()
        watch.stop()

    clients = {}
    for subscriber in subscribers:
        missing, extra, repeats = missing_and_extra(subscriber.stamps, published)
        window = [s for s in published if subscriber.stamps[0] <= s <= subscriber.stamps[-1]]
        clients[subscriber.name] = {"missing": missing, "extra": extra, "repeats": repeats, "error": subscriber.error,
                                    "caught_up": subscriber.has(newest), "window": len(window), "newest": newest}
    log = server.log()
    return {
        "seconds": seconds, "idle_rss": idle_rss, "peak_rss": peak_rss, "rss_readings": watch.readings,
        "latencies": latencies, "health_outcomes": health_outcomes, "idle_latencies": idle_latencies,
        "clients": clients, "fds_before": fds_before, "fds_max": max(fds_during), "fds_after": fds_after,
        "fds_settled_s": fds_settled_s, "server_cpu": server_cpu, "own_cpu": own_cpu,
        "log_kb": len(log) // 1024, "log_lines": log.count("\n"),
        "log_levels": collections.Counter(re.findall(r"^(WARNING|ERROR|CRITICAL) ", log, re.MULTILINE)),
        "log_tracebacks": log.count("Traceback (most recent call last)"),
        "outcomes": attack.outcomes, "unexpected": attack.unexpected,
    }


def print_figures(figures):
    latencies = figures["latencies"]
    p99, p50 = percentile(latencies, 0.99), percentile(latencies, 0.5)
    print("\nmixed abuse for %.0f s:" % figures["seconds"])
    print("  RSS idle %.1f MB, peak %.1f MB (%.2fx; %d readings)" % (
        figures["idle_rss"], figures["peak_rss"], figures["peak_rss"] / figures["idle_rss"], figures["rss_readings"]))
    print("  /api/health: %d probes, p50 %.1f ms, p99 %.1f ms, max %.1f ms, outcomes %s; idle p99 %.1f ms"
          % (len(latencies), p50 * 1000, p99 * 1000, max(latencies) * 1000, dict(figures["health_outcomes"]),
             percentile(figures["idle_latencies"], 0.99) * 1000))
    for name, client in figures["clients"].items():
        print("  %s: %d of %d samples received (%d missing, %d repeated)"
              % (name, client["window"] - len(client["missing"]), client["window"], len(client["missing"]),
                 client["repeats"]))
    print("  fds: %d before, max %d during, %d after (back to %d or fewer after %s)" % (
        figures["fds_before"], figures["fds_max"], figures["fds_after"], figures["fds_before"],
        "never" if figures["fds_settled_s"] is None else "%.1f s" % figures["fds_settled_s"]))
    print("  CPU during the attack: server %.0f%%, this process (attackers, good clients) %.0f%% of a core"
          % (figures["server_cpu"] * 100, figures["own_cpu"] * 100))
    print("  server log: %d kB, %d lines, %s, %d tracebacks" % (
        figures["log_kb"], figures["log_lines"], dict(figures["log_levels"]), figures["log_tracebacks"]))
    for name in sorted(figures["outcomes"]):
        outcomes = figures["outcomes"][name]
        print("  %s: %d, %s" % (name, sum(outcomes.values()), dict(outcomes.most_common(6))))


def test_a_minute_of_mixed_abuse_leaves_good_clients_whole(server_process):
    server = server_process(*SERVER_SETTINGS)
    figures = mixed_abuse(server, ATTACK_S)
    print_figures(figures)
    attack_outcomes, health_outcomes = figures["outcomes"], figures["health_outcomes"]
    p99 = percentile(figures["latencies"], 0.99)

    assert not figures["unexpected"], figures["unexpected"][:5]
    assert figures["fds_settled_s"] is not None, "fds not back to %d within %g s: %d" % (
        figures["fds_before"], FD_SETTLE_S, figures["fds_after"])
    assert figures["peak_rss"] < 2 * figures["idle_rss"], "RSS %.1f MB, idle %.1f MB" % (
        figures["peak_rss"], figures["idle_rss"])
    for name, client in figures["clients"].items():
        assert client["error"] is None, client["error"]
        assert client["caught_up"], "%s: never received the newest sample %s" % (name, client["newest"])
        assert not client["missing"] and not client["extra"], "%s: missing %s, unexpected %s" % (
            name, client["missing"][:5], client["extra"][:5])
    assert sum(health_outcomes.values()) == health_outcomes[200], dict(health_outcomes)
    assert p99 < HEALTH_P99_S, "/api/health p99 %.0f ms" % (p99 * 1000)
    # the log stays within its budget (tegrastats_api/logbudget.py): tens of lines a second at most
    assert figures["log_lines"] < 20 * ATTACK_S, "%d log lines" % figures["log_lines"]
    # every attacker did its part
    for name, least in [("a-polling", 1000), ("a-websocket", 300), ("b-status", 1000), ("b-history", 1000),
                        ("c-polling-left", 100), ("d-ws", 100), ("d-socketio", 100), ("d-raw", 20), ("e-slow", 50)]:
        assert sum(attack_outcomes[name].values()) >= least, (name, dict(attack_outcomes[name]))
    assert set(attack_outcomes["a-polling"]) == {"401"}, dict(attack_outcomes["a-polling"])
    assert set(attack_outcomes["a-websocket"]) == {"401"}, dict(attack_outcomes["a-websocket"])
    assert set(attack_outcomes["b-status"]) == {"200", "400"}, dict(attack_outcomes["b-status"])
    assert set(attack_outcomes["b-history"]) == {"200", "400"}, dict(attack_outcomes["b-history"])
    assert attack_outcomes["c-polling-left"]["joined"] >= 100, dict(attack_outcomes["c-polling-left"])
