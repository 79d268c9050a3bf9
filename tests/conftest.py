"""Shared pytest fixtures. Append new fixtures at the end; keep each one small."""
from __future__ import annotations

import os
import sys
from typing import Callable

import pytest

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
FAKE_TEGRASTATS = os.path.join(TESTS_DIR, "fake_tegrastats.py")


@pytest.fixture
def fake_tegrastats_argv() -> Callable[..., list[str]]:
    """Build the argv of tests/fake_tegrastats.py: ``fake_tegrastats_argv("--garbage")``.

    The fake runs under this interpreter at a 20 ms interval unless ``interval_ms`` says
    otherwise; extra arguments are its fault flags (see the fake's docstring).
    """

    def build(*flags: str, interval_ms: int = 20) -> list[str]:
        return [sys.executable, FAKE_TEGRASTATS, "--interval", str(interval_ms), *flags]

    return build


def require_tool(found: object, what: str) -> None:
    """Skip loudly when a system tool is missing; with ``CI=true`` fail instead.

    ``found`` is whatever the lookup returned (a path, a module, True/False).
    """
    if found:
        return
    message = "MISSING TOOL: %s is not installed; this group of tests cannot run" % what
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true makes a missing tool a failure)")
    pytest.skip(message)


# --- transport fixtures (hub, REST, /ws, Socket.IO, server tests) -------------------------

TRANSPORT_LINES = os.path.join(TESTS_DIR, "fixtures", "transport_lines.tsv")


def read_transport_lines() -> list[tuple[str, str]]:
    """``(id, line)`` of the real lines in tests/fixtures/transport_lines.tsv."""
    rows = []
    with open(TRANSPORT_LINES, encoding="utf-8") as handle:
        for row in handle:
            if row.strip() and not row.startswith("#"):
                sample_id, _board, line = row.rstrip("\n").split("\t")
                rows.append((sample_id, line))
    return rows


@pytest.fixture
def transport_lines() -> list[str]:
    """Real tegrastats lines (samples.tsv ids 8, 9, 10, 31, 21, 5), in that order."""
    return [line for _id, line in read_transport_lines()]


class FakeClock:
    """A settable epoch clock for the hub: ``clock()``, ``clock.advance(seconds)``."""

    def __init__(self, now: float = 1_760_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def fake_clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def live_server():
    """Start servers in a background thread: ``live_server(lines, **config_fields)``.

    Each is a :class:`tegrastats_api.app.Server` on 127.0.0.1, port 0, fed by a replay
    source that sends ``lines[0]`` at once and nothing more (interval one hour); the test
    pushes further samples with ``server.feed(line)``. All are stopped at teardown.
    """
    started = []

    def start(lines, **fields):
        server = LiveServer(lines, **fields)
        started.append(server)
        server.start()
        return server

    yield start
    for server in started:
        server.stop()


class LiveServer:
    """A :class:`tegrastats_api.app.Server` running on its own event loop in a thread."""

    TIMEOUT_S = 10.0

    def __init__(self, lines: list[str], **fields: object) -> None:
        from tegrastats_api.config import Config
        from tegrastats_api.plan import SourcePlan

        fields = dict({"host": "127.0.0.1", "port": 0, "update_interval": 3600.0}, **fields)
        self.config = Config(**fields)  # type: ignore[arg-type]
        self.plan = SourcePlan(kind="replay", lines=list(lines))
        self.server = None
        self.loop = None
        self._thread = None
        self._stop = None

    def start(self) -> None:
        import asyncio
        import concurrent.futures
        import threading

        ready: concurrent.futures.Future[None] = concurrent.futures.Future()

        async def main() -> None:
            from tegrastats_api.app import Server

            self.loop = asyncio.get_running_loop()
            self._stop = asyncio.Event()
            self.server = Server(self.config, plan=self.plan)
            try:
                await self.server.start()
            except Exception as exc:  # handed to the test thread
                ready.set_exception(exc)
                return
            ready.set_result(None)
            await self._stop.wait()
            await self.server.stop()

        self._thread = threading.Thread(target=asyncio.run, args=(main(),), daemon=True)
        self._thread.start()
        ready.result(timeout=self.TIMEOUT_S)

    @property
    def url(self) -> str:
        return self.server.url

    @property
    def hub(self):
        return self.server.hub

    @property
    def limiter(self):
        return self.server.limiter

    def call(self, func, *args):
        """Run ``func(*args)`` on the server's loop and return its result."""
        import asyncio

        async def invoke():
            return func(*args)

        return asyncio.run_coroutine_threadsafe(invoke(), self.loop).result(self.TIMEOUT_S)

    def feed(self, line: str) -> None:
        """Push one tegrastats line through the hub, as the source would."""
        self.call(self.server.hub.feed_line, line)

    def stop(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            return
        self.loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(self.TIMEOUT_S)
        assert not self._thread.is_alive(), "live server did not stop in time"


class PytestCompatMixin:
    """Lets tornado 6.2's AsyncTestCase run under pytest >= 8.2.

    pytest builds every unittest TestCase once with ``methodName="runTest"`` while
    collecting; tornado < 6.4.1 then looks that method up and fails. An empty ``runTest``
    is never collected as a test while the class has ``test_*`` methods.
    """

    def runTest(self) -> None:  # noqa: N802 - unittest's name
        pass


def hub_app_case():
    """Base class for AsyncHTTPTestCase tests over ``make_app`` and a hub fed by ``feed()``.

    Subclasses set ``config`` (a Config) and get ``self.hub``, ``self.clock`` (FakeClock)
    and ``self.limiter``. Built lazily so that importing conftest needs no tornado.
    """
    from tornado.testing import AsyncHTTPTestCase

    from tegrastats_api.app import make_app
    from tegrastats_api.config import Config
    from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
    from tegrastats_api.sio_route import SocketIORoute

    class HubAppTestCase(PytestCompatMixin, AsyncHTTPTestCase):
        __test__ = False  # a base class; subclasses say __test__ = True
        config = Config(host="127.0.0.1", port=0)
        lines = [line for _id, line in read_transport_lines()]

        def get_app(self):
            self.clock = FakeClock()
            self.hub = SnapshotHub("replay", clock=self.clock, interval_s=1.0)
            self.limiter = ConnectionLimiter(self.config.max_connections)
            return make_app(self.hub, self.limiter, SocketIORoute(self.hub, self.limiter, self.config), self.config)

        def feed(self, count=1, start=0):
            for line in self.lines[start:start + count]:
                self.hub.feed_line(line)
            self.hub.set_state("running")

    return HubAppTestCase


@pytest.fixture
def server_process(tmp_path):
    """Start ``python -m tegrastats_api run`` in child processes, on 127.0.0.1, port 0:
    ``server_process(*run_flags, fake=None, healthy=False)`` returns a started
    :class:`fault_tools.ServerProcess` (``fake=("--garbage",)`` feeds it the fake
    tegrastats with those flags). Teardown stops them all and kills any fake left."""
    from fault_tools import server_processes  # lazily: fault_tools imports this module

    yield from server_processes(tmp_path)
