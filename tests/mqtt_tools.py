"""Tools of tests/test_mqtt.py: a real broker (Debian's ``mosquitto``) and a real subscriber.

What it holds: :class:`Broker` runs ``mosquitto`` on a free port of 127.0.0.1 with a config
written under the test's tmp_path (anonymous or with a password file, plain or TLS, no
persistence), and stops, kills, pauses or restarts it on the same port; :func:`make_certs`
makes a CA and a broker certificate for ``127.0.0.1``/``localhost`` with openssl;
:class:`Subscriber` is a paho-mqtt client (1.x or 2.x) in its own thread that records every
message and reconnects by itself. Every wait has one deadline.

What it does not: assert anything about the server.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from typing import Any, Callable, Dict, List, NamedTuple, Optional

WAIT_S = 10.0
MOSQUITTO = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)
MOSQUITTO_PASSWD = shutil.which("mosquitto_passwd")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def make_certs(folder: str) -> Dict[str, str]:
    """A CA and a broker key and certificate for 127.0.0.1 and localhost (EC P-256, 1 day),
    made with openssl in ``folder``; returns the paths: ``ca``, ``cert``, ``key``. With the
    extensions Python 3.13's strict verification (VERIFY_X509_STRICT) requires: a critical
    CA basicConstraints with keyCertSign, and key identifiers on both."""
    paths = {name: os.path.join(folder, name + ".pem") for name in ("ca", "ca-key", "cert", "key", "csr")}
    ext = os.path.join(folder, "san.ext")
    with open(ext, "w") as handle:
        handle.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=critical,CA:FALSE\n"
                     "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n"
                     "subjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid:always\n")

    def run(*argv: str) -> None:
        subprocess.run(["openssl", *argv], check=True, capture_output=True, timeout=WAIT_S)

    curve = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    run("req", "-x509", *curve, "-keyout", paths["ca-key"], "-out", paths["ca"], "-days", "1",
        "-subj", "/CN=tegrastats-api test CA", "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign", "-addext", "subjectKeyIdentifier=hash")
    run("req", *curve, "-keyout", paths["key"], "-out", paths["csr"], "-subj", "/CN=127.0.0.1")
    run("x509", "-req", "-in", paths["csr"], "-CA", paths["ca"], "-CAkey", paths["ca-key"], "-CAcreateserial",
        "-out", paths["cert"], "-days", "1", "-extfile", ext)
    return {"ca": paths["ca"], "cert": paths["cert"], "key": paths["key"]}


class Broker:
    """``mosquitto -c CONF`` on 127.0.0.1:``port`` (a free one by default), started at once.

    ``users``: ``{name: password}`` (anonymous clients are then refused); ``tls``: the paths
    of :func:`make_certs` (the listener speaks TLS only).
    """

    def __init__(self, folder: str, *, users: Optional[Dict[str, str]] = None,
                 tls: Optional[Dict[str, str]] = None) -> None:
        self.folder = folder
        self.port = free_port()
        self.log_path = os.path.join(folder, "mosquitto-%d.log" % self.port)
        self.conf = os.path.join(folder, "mosquitto-%d.conf" % self.port)
        lines = ["listener %d 127.0.0.1" % self.port, "persistence false",
                 "log_dest file %s" % self.log_path, "log_type all"]
        if os.geteuid() == 0:
            lines.append("user root")  # else it would switch to `mosquitto`, who cannot read tmp_path
        if users:
            passwd = os.path.join(folder, "passwd-%d" % self.port)
            open(passwd, "w").close()
            for name, password in users.items():
                subprocess.run([MOSQUITTO_PASSWD, "-b", passwd, name, password], check=True, timeout=WAIT_S)
            lines += ["allow_anonymous false", "password_file %s" % passwd]
        else:
            lines.append("allow_anonymous true")
        if tls:
            lines += ["cafile %s" % tls["ca"], "certfile %s" % tls["cert"], "keyfile %s" % tls["key"]]
        with open(self.conf, "w") as handle:
            handle.write("\n".join(lines) + "\n")
        self.proc: Optional[subprocess.Popen] = None
        self.start()

    def start(self) -> None:
        assert self.proc is None or self.proc.poll() is not None, "already running"
        self.proc = subprocess.Popen([MOSQUITTO, "-c", self.conf], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + WAIT_S
        while not _accepts(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise AssertionError("mosquitto did not listen on %d; its log:\n%s" % (self.port, self.log()))
            time.sleep(0.02)

    def log(self) -> str:
        try:
            with open(self.log_path, errors="replace") as handle:
                return handle.read()
        except FileNotFoundError:
            return ""

    def stop(self, signum: int = signal.SIGTERM) -> None:
        """Stop it (SIGTERM, or SIGKILL after WAIT_S); harmless when stopped."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.send_signal(signum)
        try:
            self.proc.wait(WAIT_S)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(WAIT_S)

    def pause(self) -> None:
        """SIGSTOP: connections stay open, nothing is read (a hung broker)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)


class Message(NamedTuple):
    topic: str
    payload: bytes
    retain: bool
    at: float  # time.monotonic() when received

    def json(self) -> Any:
        return json.loads(self.payload.decode("utf-8"))


def paho_client() -> Any:
    """A paho-mqtt client for the tests on 1.x and 2.x (VERSION2 callbacks on 2.x)."""
    import paho.mqtt.client as mqtt

    version = getattr(mqtt, "CallbackAPIVersion", None)
    return mqtt.Client(version.VERSION2) if version is not None else mqtt.Client()


class Subscriber:
    """Subscribes to ``topics`` on 127.0.0.1:``port`` (again after every reconnect) and keeps
    every message received. ``tls_ca``: verify a TLS broker with this CA; ``auth``: (user, password)."""

    def __init__(self, port: int, topics: List[str], *, tls_ca: Optional[str] = None,
                 auth: Optional[tuple] = None) -> None:
        self.messages: List[Message] = []
        self.connects = 0
        self._lock = threading.Lock()
        self.client = paho_client()
        if auth:
            self.client.username_pw_set(*auth)
        if tls_ca:
            self.client.tls_set_context(ssl.create_default_context(cafile=tls_ca))
        self.client.reconnect_delay_set(0.1, 0.5)

        def on_connect(client: Any, _userdata: Any, _flags: Any, rc: Any, *_: Any) -> None:
            if rc == 0:
                for topic in topics:
                    client.subscribe(topic, qos=1)
                self.connects += 1  # after the SUBSCRIBEs: what the test publishes next comes after them

        def on_message(_client: Any, _userdata: Any, msg: Any) -> None:
            with self._lock:
                self.messages.append(Message(msg.topic, bytes(msg.payload), bool(msg.retain), time.monotonic()))

        self.client.on_connect = on_connect
        self.client.on_message = on_message
        self.client.connect_async("127.0.0.1", port, keepalive=10)
        self.client.loop_start()

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def snapshot(self) -> List[Message]:
        with self._lock:
            return list(self.messages)

    def wait_for(self, condition: Callable[[List[Message]], Any], timeout: float = WAIT_S,
                 what: str = "messages") -> Any:
        """The first true ``condition(messages so far)``; AssertionError after ``timeout``."""
        deadline = time.monotonic() + timeout
        while True:
            value = condition(self.snapshot())
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError("%s not received in %s s; got %d messages: %s" % (
                    what, timeout, len(self.messages), [m.topic for m in self.snapshot()][-20:]))
            time.sleep(0.02)

    def on(self, topic: str, since: int = 0) -> List[Message]:
        return [m for m in self.snapshot()[since:] if m.topic == topic]

    def configs(self, prefix: str = "homeassistant") -> Dict[str, Any]:
        """``{topic: config}`` of the latest message on each ``<prefix>/.../config`` topic (an
        empty payload, a removal, leaves the topic out)."""
        latest: Dict[str, bytes] = {}
        for m in self.snapshot():
            if m.topic.startswith(prefix + "/") and m.topic.endswith("/config"):
                latest[m.topic] = m.payload
        return {topic: json.loads(payload) for topic, payload in latest.items() if payload}


def retained(port: int, topic_filter: str, **options: Any) -> Dict[str, bytes]:
    """What the broker retains under ``topic_filter`` now: a fresh subscriber's retained messages.

    The broker handles one connection's packets in order and sends the retained messages of a
    subscription with its SUBACK, so once a probe published after the SUBSCRIBE comes back,
    they have all arrived."""
    probe = "tegrastats-api-test/probe/%d" % free_port()
    sub = Subscriber(port, [topic_filter, probe], **options)
    try:
        sub.wait_for(lambda _m: sub.connects, what="a connection")
        sub.client.publish(probe, b"probe", qos=1)
        sub.wait_for(lambda messages: any(m.topic == probe for m in messages), what="the probe")
        return {m.topic: m.payload for m in sub.snapshot() if m.retain and m.topic != probe}
    finally:
        sub.close()
