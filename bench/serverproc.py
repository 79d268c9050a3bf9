"""``tegrastats-api run`` (or any server) as a child process of the bench and the soak run.

What it does: :class:`ServerProcess` starts a command pinned to one CPU, waits for the
first ``200`` on a path (and says how long that took from the spawn), exposes the pid for
``/proc`` readings, and stops it with SIGTERM (SIGKILL if it hangs).
:func:`tegrastats_api_argv` builds the ``run`` command line with a clean environment.

What it does not: read the server's output (it goes to a log file), or judge figures.
"""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from typing import Dict, List, Optional

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def console_script() -> List[str]:
    """``tegrastats-api`` next to this interpreter (a venv), else ``python -m tegrastats_api``."""
    script = os.path.join(os.path.dirname(sys.executable), "tegrastats-api")
    return [script] if os.access(script, os.X_OK) else [sys.executable, "-m", "tegrastats_api"]


def tegrastats_api_argv(port: int, *settings: str) -> List[str]:
    """``tegrastats-api --config /dev/null run --host 127.0.0.1 --port P SETTINGS...``."""
    return console_script() + ["--config", os.devnull, "run", "--host", HOST, "--port", str(port), *settings]


def clean_env() -> Dict[str, str]:
    """This environment without ``TEGRASTATS_API_*`` (they would change the settings)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}


def http_status(port: int, path: str, timeout: float = 1.0) -> Optional[int]:
    """The status code of ``GET path`` on 127.0.0.1:port, None if nothing answers."""
    try:
        with socket.create_connection((HOST, port), timeout=timeout) as sock:
            sock.sendall(("GET %s HTTP/1.1\r\nHost: %s:%d\r\nConnection: close\r\n\r\n"
                          % (path, HOST, port)).encode("ascii"))
            head = sock.recv(64)
    except OSError:
        return None
    parts = head.split(b" ", 2)
    return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def health(port: int) -> Dict[str, object]:
    """The ``/api/health`` document (a 503 carries it too); empty if nothing answers."""
    try:
        with urllib.request.urlopen("http://%s:%d/api/health" % (HOST, port), timeout=5) as answer:
            return dict(json.load(answer))
    except urllib.error.HTTPError as err:
        return dict(json.loads(err.read()))
    except OSError:
        return {}


class ServerProcess:
    """A server child pinned to ``cpu``; ``ready_s`` is spawn-to-first-200 on ``ready_path``."""

    def __init__(self, argv: List[str], port: int, *, cpu: Optional[int] = 0, ready_path: str = "/api/status",
                 log_path: str = os.devnull, timeout: float = 20.0,
                 env: Optional[Dict[str, str]] = None, cwd: str = ROOT) -> None:
        self.port = port
        self.url = "http://%s:%d" % (HOST, port)
        self._log = open(log_path, "ab")
        start = time.perf_counter()
        self.proc = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            env=dict(clean_env(), **(env or {})),
            cwd=cwd, preexec_fn=(lambda: os.sched_setaffinity(0, {cpu})) if cpu is not None else None,
        )
        deadline = start + timeout
        while http_status(port, ready_path) != 200:
            if self.proc.poll() is not None or time.perf_counter() > deadline:
                self.stop()
                raise RuntimeError("server %r did not answer 200 on %s" % (argv, ready_path))
            time.sleep(0.005)
        self.ready_s = time.perf_counter() - start

    @property
    def pid(self) -> int:
        return self.proc.pid

    def stop(self) -> Optional[int]:
        """SIGTERM, then SIGKILL after 10 s; the exit status."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        self._log.close()
        return self.proc.returncode

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
