"""The application: the route table, and a server that starts and stops in order.

What it does: :func:`make_app` holds the whole route table (REST, ``/ws``, ``/socket.io/``
and the dashboard's static files). :class:`Server` picks the source (docs/API.md
section 6.3), builds the hub and the application (the Socket.IO server is made at the first
``/socket.io/`` request: :mod:`tegrastats_api.sio_route`), listens (port 0
picks a free port, see :attr:`Server.port`), starts the source (and, with ``--mqtt``, the
MQTT bridge), and stops in order: stop accepting, close ``/ws`` clients with a close frame,
disconnect Socket.IO clients, stop MQTT (publishing ``offline``), stop the source (no
tegrastats child left). :func:`serve` runs a :class:`Server` until
SIGTERM, SIGINT, SIGHUP or SIGQUIT and returns the exit status 0 (a repeated signal hurries
the stop but keeps its order); :func:`run` is its blocking form.

What it does not: parse settings or configure logging (see :mod:`tegrastats_api.cli`),
or ever use Tornado's ``debug``/``autoreload`` (a reload would orphan the child).
"""
from __future__ import annotations

import asyncio
import errno
import gc
import importlib.util
import ipaddress
import logging
import os
import random
import signal
import threading
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterable, List, Optional, Union

from tornado.httpserver import HTTPServer
from tornado.netutil import bind_sockets
from tornado.routing import PathMatches, Rule
from tornado.web import Application

from tegrastats_api.addresses import open_urls
from tegrastats_api.board import BoardReader, sysroot_from_environ
from tegrastats_api.handlers import (
    BoardHandler,
    HealthHandler,
    HistoryHandler,
    MetricsHandler,
    NotFoundHandler,
    OpenAPIHandler,
    SectionHandler,
    StaticHandler,
    StatusHandler,
    SummaryHandler,
)
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.logbudget import BUDGETED_LOGGERS, LogBudget, install_log_budget
from tegrastats_api.metrics import Exporter
from tegrastats_api.sio_route import SocketIORoute
from tegrastats_api.plan import SourcePlan, plan_source
from tegrastats_api.replay import ReplaySource
from tegrastats_api.settings import Config
from tegrastats_api.source import TegrastatsProcess
from tegrastats_api.tokens import install_token_log_filter, log_request
from tegrastats_api.websocket import SnapshotSocket

if TYPE_CHECKING:  # pragma: no cover - imported with --mqtt only (start)
    from tegrastats_api.mqtt import MqttBridge

log = logging.getLogger(__name__)

Source = Union[TegrastatsProcess, ReplaySource]

# /ws keep-alive: a ping every 10 s; a client that stops answering is closed after
# tornado's own ping timeout (30 s before tornado 6.5, one interval since; setting it
# explicitly would be wrong for one of the two, so it is left at the default).
WS_PING_INTERVAL_S = 10
WS_MAX_MESSAGE_BYTES = 64 * 1024  # clients send nothing we read
# HTTP limits: our requests are small GETs and Engine.IO polling POSTs (python-engineio
# refuses those over 1,000,000 bytes itself); anything bigger is refused before it is read.
# A request whose headers have not all arrived within HEADER_TIMEOUT_S is dropped, and so is
# an idle keep-alive connection (slowloris; tornado's default is an hour).
MAX_HEADER_BYTES = 32 * 1024
MAX_BODY_BYTES = 1024 * 1024
HEADER_TIMEOUT_S = 60.0
CLOSE_WAIT_S = 1.0  # time for close frames to go out before the source is stopped
# Every signal that ends the server ends it in order; SIGQUIT too, which would otherwise
# dump core and leave tegrastats running (it is in a session of its own).
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT)
REPO_STATIC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "static")
SYSTEM_STATIC = "/usr/share/tegrastats-api/static"


class ListenError(OSError):
    """The server cannot listen on ``host:port`` (port in use, no permission, bad address).

    ``setting`` names the setting at fault: ``port`` when the port is in use or needs
    privileges, else ``host`` (an address this machine does not have, a name that does not
    resolve).
    """

    def __init__(self, host: str, port: int, error: OSError) -> None:
        reason = error.strerror or str(error)
        shown = "[%s]" % host if ":" in host else host
        super().__init__(error.errno, "cannot listen on %s:%d: %s" % (shown, port, reason))
        self.host = host
        self.port = port
        self.setting = "port" if error.errno in (errno.EADDRINUSE, errno.EACCES) else "host"

    def __str__(self) -> str:
        return str(self.strerror)


def bind_address(host: str) -> Optional[str]:
    """What ``bind_sockets`` gets for ``--host``: None for an IPv6 wildcard (``::`` however
    written), which binds ``0.0.0.0`` and ``::`` on one port, so that IPv4 clients (an ESP32)
    reach a server told to listen on ``::``; Tornado would bind ``::`` alone, IPv6 only
    (it sets IPV6_V6ONLY). Any other host is bound as it is: an IPv4 wildcard, an address
    or a name (every address it resolves to)."""
    try:
        if ipaddress.ip_address(host.strip()) == ipaddress.IPv6Address("::"):
            return None
    except ValueError:
        pass
    return host or None


def _address_text(sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return "[%s]:%d" % (host, port) if ":" in host else "%s:%d" % (host, port)


def default_static_dir() -> str:
    """The dashboard's folder: the installed ``tegrastats_api/static`` package, else the
    checkout's ``static/``, else the Debian path (returned even if missing)."""
    candidates: List[str] = []
    spec = importlib.util.find_spec("tegrastats_api.static")
    if spec is not None and spec.submodule_search_locations:
        candidates.extend(spec.submodule_search_locations)
    candidates += [REPO_STATIC, SYSTEM_STATIC]
    for folder in candidates:
        if os.path.isfile(os.path.join(folder, "index.html")):
            return folder
    return candidates[0]


def make_app(
    hub: SnapshotHub,
    limiter: ConnectionLimiter,
    socketio_route: SocketIORoute,
    config: Config,
    *,
    static_dir: Optional[str] = None,
    board: Optional[BoardReader] = None,
) -> Application:
    """The Tornado application with the whole route table (and the token masked in every log).

    ``board`` answers ``/api/board``; without one, no board file is read (every fact null
    but a simulated board's recorded identity).
    """
    # What a client can make the server log is bounded, and never shows a token.
    install_log_budget(BUDGETED_LOGGERS, LogBudget())
    install_token_log_filter()
    board = board or BoardReader.for_source(hub.source, hub.board, None)
    common: Dict[str, Any] = {"hub": hub, "config": config, "limiter": limiter}
    routes: List[Any] = [
        (r"/api/health", HealthHandler, dict(common, board=board)),
        (r"/api/board", BoardHandler, dict(common, board=board)),
        (r"/api/status", StatusHandler, common),
        (r"/api/cpu", SectionHandler, dict(common, section="cpu")),
        (r"/api/memory", SectionHandler, dict(common, section="memory")),
        (r"/api/temperature", SectionHandler, dict(common, section="temperature")),
        (r"/api/power", SectionHandler, dict(common, section="power")),
        (r"/api/summary", SummaryHandler, common),
        (r"/api/history", HistoryHandler, common),
        (r"/api/openapi\.json", OpenAPIHandler, common),
        (r"/metrics", MetricsHandler, dict(common, exporter=Exporter(hub, limiter, board))),
        (r"/api/.*", NotFoundHandler, common),
        (r"/ws", SnapshotSocket, common),
        Rule(PathMatches(r"/socket\.io/"), socketio_route),  # python-socketio imported at its first request
        (r"/(.*)", StaticHandler,
         {"path": static_dir or default_static_dir(), "default_filename": "index.html"}),
    ]
    app = Application(
        routes,
        default_handler_class=NotFoundHandler,
        default_handler_args=common,
        cors_origins=tuple(config.cors_origins),
        websocket_ping_interval=WS_PING_INTERVAL_S,
        websocket_max_message_size=WS_MAX_MESSAGE_BYTES,
        debug=False,
        autoreload=False,
        log_function=log_request,  # the access log without ?token= values
    )
    socketio_route.bind(app)
    return app


def make_source(plan: SourcePlan, hub: SnapshotHub, config: Config) -> Source:
    """The source the plan names, reporting to ``hub``."""
    if plan.kind == "tegrastats":
        return TegrastatsProcess(plan.argv, hub.feed_line, hub.set_state, hub.discard)
    lines: Iterable[str] = plan.lines
    if plan.kind == "simulator":  # new lines in the board's format, not the recorded ones
        from tegrastats_api.simulator import SimulatedBoard  # only here: 0.7 MB a real board never needs

        lines = SimulatedBoard(plan.lines, random.Random(), interval_s=config.update_interval)
    return ReplaySource(
        lines, hub.feed_line, hub.set_state, hub.discard,
        interval_s=config.update_interval, live_timestamps=plan.kind == "simulator",
    )


class Server:
    """One running tegrastats-api: source, hub, REST, ``/ws``, Socket.IO and MQTT.

    ``await start()`` and ``await stop()`` must run on the IOLoop the server serves on
    (any thread). ``plan`` overrides the source choice (tests, the library); ``sysroot`` is
    where the board's files are read (default: ``$TEGRASTATS_API_SYSROOT``, else ``/``; the
    one place that variable is read).
    """

    def __init__(self, config: Config, *, plan: Optional[SourcePlan] = None, sysroot: Optional[str] = None) -> None:
        self.config = config
        self.plan = plan
        self.sysroot = sysroot if sysroot is not None else sysroot_from_environ(os.environ)
        self.hub: Optional[SnapshotHub] = None
        self.limiter = ConnectionLimiter(config.max_connections)
        self.socketio: Optional[SocketIORoute] = None
        self.source: Optional[Source] = None
        self.mqtt: Optional[MqttBridge] = None  # with --mqtt
        self.port: Optional[int] = None
        self._http: Optional[HTTPServer] = None
        self._hurried = False

    @property
    def sio(self) -> Any:
        """The python-socketio ``AsyncServer``: None until the first ``/socket.io/`` request."""
        return None if self.socketio is None else self.socketio.sio

    @property
    def url(self) -> str:
        """``http://host:port`` to reach the server (a wildcard host becomes loopback)."""
        host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(
            self.config.host, self.config.host
        )
        if ":" in host:
            host = "[%s]" % host
        return "http://%s:%s" % (host, self.port)

    @property
    def urls(self) -> List[str]:
        """Every URL a user can open: :attr:`url` first, then, when listening on every
        address, those of this machine's interfaces."""
        if self.port is None:
            raise RuntimeError("the server is not listening")
        urls = open_urls(self.config.host, self.port)
        return [self.url] + [u for u in urls if u != self.url]

    async def start(self) -> None:
        """Choose the source, listen, start the source; raises ListenError,
        TegrastatsNotFoundError and the source plan's errors (nothing left running)."""
        config = self.config
        plan = self.plan or plan_source(
            tegrastats=config.tegrastats, interval_ms=config.interval_ms,
            simulate=config.simulate, replay=config.replay,
        )
        self.hub = hub = SnapshotHub(
            plan.kind, history_size=config.history_size, interval_s=config.update_interval, board=plan.board
        )
        self.socketio = SocketIORoute(hub, self.limiter, config)
        board = BoardReader.for_source(plan.kind, plan.board, self.sysroot)
        # before listening: a missing paho-mqtt or a bad CA file leaves nothing running
        if config.mqtt is not None:  # its modules only when MQTT is on
            from tegrastats_api.mqtt import MqttBridge

            self.mqtt = MqttBridge(config, hub, board)
        self._listen(make_app(hub, self.limiter, self.socketio, config, board=board))
        if plan.warning:  # once every setting has proved good: a failed start logs no warning
            log.warning("!!! %s", plan.warning)
        self.source = make_source(plan, hub, config)
        started = False
        try:
            self.source.start()
            started = True
        finally:
            if not started:  # e.g. tegrastats vanished since plan_source looked
                self._http.stop()  # type: ignore[union-attr]
                self._http = None
        if self.mqtt is not None:
            self.mqtt.start()
        source = plan.kind
        if plan.kind == "simulator":
            source += ": SIMULATED %s, not a real board's readings" % plan.board
        log.info("%s; serving on %s (source: %s; listening on %s)", board.facts().describe(), " and ".join(self.urls),
                 source,
                 " and ".join(self.addresses))

    def _listen(self, app: Application) -> None:
        try:
            sockets = bind_sockets(self.config.port, address=bind_address(self.config.host))
        except OSError as exc:
            raise ListenError(self.config.host, self.config.port, exc) from exc
        # every address served, e.g. ["0.0.0.0:58090", "[::]:58090"] for --host ::
        self.addresses = [_address_text(sock.getsockname()) for sock in sockets]
        self._http = HTTPServer(
            app, max_header_size=MAX_HEADER_BYTES, max_body_size=MAX_BODY_BYTES,
            idle_connection_timeout=HEADER_TIMEOUT_S,
        )
        self._http.add_sockets(sockets)
        self.port = sockets[0].getsockname()[1]

    def hurry(self) -> None:
        """Make a stop (in progress or to come) quick: no waiting for clients to close, and
        the tegrastats child's process group SIGKILLed instead of given time after SIGTERM."""
        self._hurried = True
        if self.source is not None:
            self.source.hurry()

    async def stop(self) -> None:
        """Stop in order: accept nothing, close push clients, stop the source."""
        if self._http is None:
            return
        http, self._http = self._http, None
        http.stop()
        for owner in self.limiter.owners():
            if isinstance(owner, SnapshotSocket):
                owner.shutdown()
        if self.socketio is not None:
            await self.socketio.close()
        await _wait_for(lambda: self._hurried or self.limiter.count == 0, CLOSE_WAIT_S)
        if self.mqtt is not None:
            await self.mqtt.stop(hurried=self._hurried)  # publishes `offline`
        if self.source is not None:
            await self.source.stop()
        try:
            await asyncio.wait_for(http.close_all_connections(), CLOSE_WAIT_S)
        except asyncio.TimeoutError:
            log.debug("some HTTP connections were still open at shutdown")
        if self.socketio is not None:
            await self.socketio.shutdown()
        log.info("stopped")


async def _wait_for(condition: Callable[[], bool], timeout: float) -> bool:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition():
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True


async def serve(
    config: Config, *, ready: Optional[Callable[[Server], None]] = None, sysroot: Optional[str] = None
) -> int:
    """Serve until one of :data:`STOP_SIGNALS` (or cancellation), stop in order, return 0.

    ``ready(server)`` is called once the server listens (``server.port`` is the bound
    port, useful with port 0). Signal handlers are installed only in the main thread,
    before the server starts and until it has stopped: a signal during start-up stops it
    once started, and a repeated one hurries the stop (:meth:`Server.hurry`) instead of
    killing the process with the child still running. ``sysroot`` as for :class:`Server`.
    Raises what :meth:`Server.start` raises.
    """
    server = Server(config, sysroot=sysroot)
    stop = asyncio.Event()
    signals = _install_signal_handlers(lambda signum: _on_signal(signum, stop, server))
    try:
        await server.start()
        if ready is not None:
            ready(server)
        await stop.wait()
    finally:
        await server.stop()
        _remove_signal_handlers(signals)
    return 0


def run(config: Config, sysroot: Optional[str] = None) -> int:
    """Blocking :func:`serve` on a new event loop; the process exit status.

    What is loaded by now (modules, classes: most of the heap) lives as long as the
    process, so ``gc.freeze()`` takes it out of the collector's view: a full collection
    would walk it all and hold up the pushes for tens of ms (docs/PERFORMANCE.md).
    """
    gc.freeze()
    return asyncio.run(serve(config, sysroot=sysroot))


def _install_signal_handlers(handler: Callable[[int], None]) -> List[int]:
    if threading.current_thread() is not threading.main_thread():
        return []
    loop = asyncio.get_running_loop()
    installed: List[int] = []
    for signum in STOP_SIGNALS:
        loop.add_signal_handler(signum, handler, int(signum))
        installed.append(int(signum))
    return installed


def _on_signal(signum: int, stop: asyncio.Event, server: Server) -> None:
    """The first stop signal starts the orderly stop; any later one hurries it."""
    name = signal.Signals(signum).name
    if not stop.is_set():
        log.info("%s received: stopping", name)
        stop.set()
        return
    log.warning("%s received again: hurrying the stop (tegrastats gets SIGKILL)", name)
    server.hurry()


def _remove_signal_handlers(signals: List[int]) -> None:
    loop = asyncio.get_running_loop()
    for signum in signals:
        loop.remove_signal_handler(signum)
