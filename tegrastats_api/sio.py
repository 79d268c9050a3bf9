"""Socket.IO at ``/socket.io/``: event ``tegrastats_update`` with the document of each sample.

What it does: :func:`make_sio` builds a python-socketio ``AsyncServer`` in Tornado mode
whose :class:`SnapshotNamespace` checks the token and the shared connection cap on
connect (refusing with a ``connect_error`` that says why; a check that fails in any other
way refuses too, with a generic reason), sends the latest document to the new client, and
broadcasts every sample from the hub to the clients it accepted, and to no one else (the
payload is the document as an object). :func:`make_sio_handler` subclasses
python-engineio's Tornado handler to apply our Origin rule (missing, ``null``, ``file://``,
same host or allow-listed) to polling and WebSocket requests alike, to turn off
per-message compression, which it forces on, and to answer every error as docs/API.md's
JSON document (:class:`tegrastats_api.websocket.JSONErrorAnswers`).

Engine.IO sessions cost memory before their client joins the namespace, and a polling
client's slot outlives the client unless someone notices it is gone:
:class:`tegrastats_api.sessions.EngineSessions` caps the sessions that hold no slot, closes
the ones that never join and the polling ones whose client left. The handler here refuses a
handshake (a request without ``sid``) without the token when one is set (401 before any
session exists), and one over that cap (503).

Each sample's Socket.IO packet is made once from the hub's JSON
(:class:`tegrastats_api.sio_push.SamplePushes`). A WebSocket client that python-engineio has
written every sample of ours to that it was handed gets the next ones straight on its
socket; the others get them queued through python-engineio's public ``send``.

What it does not: encode documents (the hub does, once per sample), or keep a backlog:
a polling client whose Engine.IO queue is already full, and a WebSocket client whose
socket is, skip samples, and clients that stop answering pings are dropped by Engine.IO
after ``ping_interval + ping_timeout``.
Works with python-socketio 5.0.3/python-engineio 4.0 and newer (see :mod:`tegrastats_api.compat`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional, Tuple, Union
from urllib.parse import parse_qs

import engineio.packet
import engineio.payload
import socketio
from tornado.httputil import HTTPServerRequest
from tornado.ioloop import IOLoop
from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketClosedError

from tegrastats_api.compat import auth_keeping_server, connect_auth, connection_refused, enter_room
from tegrastats_api.settings import Config
from tegrastats_api.handlers import (
    ALLOW_HEADERS,
    finish_with_error,
    origin_allowed,
)
from tegrastats_api.hub import ConnectionLimiter, Sample, SnapshotHub
from tegrastats_api.sessions import EngineSessions, payload_ok
from tegrastats_api.tokens import request_token, token_valid
from tegrastats_api.sio_push import SamplePushes, open_packet_sid
from tegrastats_api.websocket import JSONErrorAnswers, limit_send_buffer, new_text_frame, open_stream, write_frame

log = logging.getLogger(__name__)

EVENT = "tegrastats_update"
NAMESPACE = "/"
ACCEPTED_ROOM = "tegrastats_api.accepted"  # the clients on_connect accepted: broadcasts go here
MAX_BACKLOG = 4  # Engine.IO packets queued for one client before it skips samples
# Engine.IO's defaults (python-engineio's, socket.io's, and the original's): a ping every
# 25 s; a WebSocket client silent for PING_INTERVAL_S + PING_TIMEOUT_S (45 s) is closed.
PING_INTERVAL_S = 25
PING_TIMEOUT_S = 20
ALLOWED_METHODS = "GET, POST, OPTIONS"
CONNECT_FAILED = "connection refused"  # the reason given when a connect check failed by itself
TOKEN_REFUSED = "missing or invalid token"


class SnapshotNamespace(socketio.AsyncNamespace):
    """The default namespace: auth and cap on connect, latest document, per-sample broadcast."""

    def __init__(self, hub: SnapshotHub, limiter: ConnectionLimiter, config: Config) -> None:
        super().__init__(NAMESPACE)
        self.hub = hub
        self.limiter = limiter
        self.config = config
        self.sessions: Optional[EngineSessions] = None  # set by make_sio
        self.pushes = SamplePushes(EVENT)  # each sample's packet and frame; straight pushes

    async def on_connect(self, sid: str, environ: Dict[str, Any], auth: Any = None) -> None:
        # Whatever goes wrong here must end in a refusal: an exception python-socketio does
        # not expect would leave the client half connected (in the namespace, without a slot).
        try:
            refusal = await self._admit(sid, environ, auth)
        except Exception as exc:  # noqa: BLE001 - any failure refuses; never log the token
            self.limiter.release(sid)
            self._unsubscribe_when_alone()
            log.warning("Socket.IO connect refused: its check failed (%s)", type(exc).__name__)
            raise connection_refused(CONNECT_FAILED) from None
        if refusal is not None:
            raise connection_refused(refusal)
        IOLoop.current().spawn_callback(self._send_latest, sid)

    async def _admit(self, sid: str, environ: Dict[str, Any], auth: Any) -> Optional[str]:
        """None when ``sid`` is accepted (slot taken, in :data:`ACCEPTED_ROOM`), else the reason."""
        given = _token_of(environ, connect_auth(environ, auth))
        if not token_valid(self.config.auth_token, given):
            return TOKEN_REFUSED
        if not self.limiter.acquire(sid):
            log.warning("Socket.IO client refused: %s", self.limiter.refusal())
            return self.limiter.refusal()
        await enter_room(self.server, sid, ACCEPTED_ROOM, NAMESPACE)
        self.hub.subscribe(self.on_sample)  # idempotent
        return None

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.limiter.release(sid)
        self._unsubscribe_when_alone()
        if self.sessions is not None:
            self.sessions.start()  # its Engine.IO session may stay open without a slot

    def _has_clients(self) -> bool:
        """Whether a Socket.IO client holds a slot (their owners are sids; /ws's are handlers)."""
        return any(isinstance(owner, str) for owner in self.limiter.owners())

    def _unsubscribe_when_alone(self) -> None:
        """Stop getting samples once no Socket.IO client holds a slot: the hub then has no
        document to make for us (a server nobody watches only parses), and nothing handed
        to python-engineio for anyone matters any more."""
        if not self._has_clients():
            self.hub.unsubscribe(self.on_sample)
            self.pushes.forget(set())

    async def _send_latest(self, sid: str) -> None:
        # The CONNECT packet goes out after on_connect returns (and newer versions mark
        # the client connected only then), so wait for that before the first event.
        for _ in range(100):
            if self.server.manager.is_connected(sid, NAMESPACE) or not self.limiter.holds(sid):
                break
            await asyncio.sleep(0.01)
        payload = self.hub.latest_json
        eio_sid = self.server.manager.eio_sid_from_sid(sid, NAMESPACE)
        # A client a broadcast reached already has a sample as new as this one.
        if payload is None or not self.limiter.holds(sid) or eio_sid is None \
                or self.pushes.last_handed(eio_sid) is not None:
            return
        number, packet = self.pushes.make(payload)
        self.pushes.handed(eio_sid, number)
        await self.server.eio.send(eio_sid, packet)

    def on_sample(self, sample: Sample) -> None:
        """Hub subscriber: the sample to every accepted client, straight to the WebSocket
        of those python-engineio has caught up with (:class:`SamplePushes`), through
        python-engineio for the others (scheduled); never waits for any client."""
        if not self._has_clients():
            return
        number, packet = self.pushes.make(sample.payload)
        eio = self.server.eio
        participants = list(self.server.manager.get_participants(NAMESPACE, ACCEPTED_ROOM))
        queued = []
        for _sid, eio_sid in participants:
            last = self.pushes.last_handed(eio_sid)
            if last is not None and last >= number:
                continue  # it has this sample already (the latest document on connect)
            if self.pushes.push(eio_sid):
                continue
            socket = eio.sockets.get(eio_sid)
            if socket is None or _backlog(socket) > MAX_BACKLOG:
                continue  # gone, or a slow poller: it skips this sample
            self.pushes.handed(eio_sid, number)
            queued.append(eio_sid)
        if self.pushes.sessions() > len(participants):
            self.pushes.forget({eio_sid for _sid, eio_sid in participants})
        if queued:
            IOLoop.current().spawn_callback(self._broadcast, packet, queued)

    async def _broadcast(self, packet: str, eio_sids: List[str]) -> None:
        """Hand one encoded Socket.IO packet to these clients' Engine.IO queues.

        ``AsyncServer.emit`` would encode the document again (python-socketio < 5.8: once per
        client) and make a task per client; the packet here is the hub's JSON of the sample,
        encoded once, handed to each client's Engine.IO queue with the public
        ``AsyncServer.send`` of python-engineio (same in 4.0 and 4.15): the bytes on the wire
        are those ``emit`` would send (:func:`tegrastats_api.sio_push.event_packet`).
        """
        for eio_sid in eio_sids:
            await self.server.eio.send(eio_sid, packet)

    async def disconnect_all(self) -> None:
        """Disconnect every Socket.IO client and stop watching sessions (server shutdown)."""
        if self.sessions is not None:
            self.sessions.stop()
        for sid in [owner for owner in self.limiter.owners() if isinstance(owner, str)]:
            await self.server.disconnect(sid, namespace=NAMESPACE)
            self.limiter.release(sid)


def _token_of(environ: Dict[str, Any], auth: Any) -> Union[str, bytes, None]:
    """The token from the ``auth`` object, the Authorization header or ``?token=``."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return auth["token"]
    return request_token(environ.get("HTTP_AUTHORIZATION"), environ.get("QUERY_STRING", ""))


def _handshake_token_ok(expected: Optional[str], request: HTTPServerRequest) -> bool:
    """Whether a handshake carries the token (``Authorization: Bearer`` or ``?token=``)."""
    try:
        return token_valid(expected, request_token(request.headers.get("Authorization"), request.query))
    except ValueError:  # a token that is no text at all is no valid token
        return False


def _backlog(socket: Any) -> int:
    """Engine.IO packets waiting in one session's queue (0 when it has none)."""
    queue = getattr(socket, "queue", None)
    return queue.qsize() if queue is not None else 0


def library_logger(name: str) -> logging.Logger:
    """python-socketio's or python-engineio's logger, errors only, through our handlers.

    Given ``logger=False`` they log their errors all the same, on a ``StreamHandler`` of
    their own that prints every line (and traceback) a second time beside the application's
    handlers; given a logger they use it as it is. So we give them their own loggers at the
    level they would choose (ERROR), unless a level was set on them already.
    """
    logger = logging.getLogger(name)
    if logger.level == logging.NOTSET:
        logger.setLevel(logging.ERROR)
    return logger


def make_sio(hub: SnapshotHub, limiter: ConnectionLimiter, config: Config) -> socketio.AsyncServer:
    """The Socket.IO server, subscribed to ``hub``.

    python-engineio compares the Origin with a plain list, which would refuse ``null``,
    ``file://`` and (in 4.3) anything when the list holds ``*``; ``cors_allowed_origins=[]`` turns
    that check and its CORS headers off, and the handler from :func:`make_sio_handler`
    applies our rule to every request instead.
    """
    sio = auth_keeping_server(
        async_mode="tornado",
        cors_allowed_origins=[],
        ping_interval=PING_INTERVAL_S,
        ping_timeout=PING_TIMEOUT_S,
        # python-engineio's service task would wake every PING_TIMEOUT_S / clients (every 2 s
        # with 10 clients, and every 20 s for ever once there were any) to look for sessions
        # whose pong is late. Without it: a WebSocket session's reader closes it after
        # PING_INTERVAL_S + PING_TIMEOUT_S of silence, python-engineio's send() checks the
        # pong of polling sessions (each sample goes through it), and EngineSessions' sweep
        # closes pollers that stop polling and forgets closed sessions (sessions.py).
        monitor_clients=False,
        logger=library_logger("socketio.server"),
        engineio_logger=library_logger("engineio.server"),
    )
    namespace = SnapshotNamespace(hub, limiter, config)
    namespace.sessions = EngineSessions(sio, limiter, NAMESPACE)
    sio.register_namespace(namespace)  # subscribed to the hub while it has clients
    return sio


def snapshot_namespace(sio: socketio.AsyncServer) -> SnapshotNamespace:
    """The namespace :func:`make_sio` registered (for shutdown)."""
    return sio.namespace_handlers[NAMESPACE]


def make_sio_handler(sio: socketio.AsyncServer, config: Config) -> type:
    """python-engineio's Tornado handler with our Origin rule, CORS headers, no compression,
    the handshake rules of :class:`EngineSessions` and JSON error answers."""
    base = socketio.get_tornado_handler(sio)
    made = snapshot_namespace(sio).sessions
    if made is None:
        raise ValueError("make the Socket.IO server with make_sio")
    sessions: EngineSessions = made
    pushes = snapshot_namespace(sio).pushes

    class SocketIOHandler(JSONErrorAnswers, base):  # type: ignore[misc, valid-type]
        allowed_methods = ALLOWED_METHODS
        _sid: Optional[str] = None  # the Engine.IO session this request belongs to
        _eio_sid: Optional[str] = None  # the Engine.IO session of this WebSocket
        _poll_sid: Optional[str] = None  # set while this request is a polling GET in flight
        routine_refusal = False  # log_request logs this request at INFO even if refused

        def prepare(self) -> None:
            origin = self.request.headers.get("Origin")
            if not origin_allowed(origin, self.request.host, config.cors_origins):
                finish_with_error(self, 403, "origin not allowed")
                return
            if origin:
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Vary", "Origin")
            method = self.request.method
            if method == "OPTIONS":
                self.set_header("Access-Control-Allow-Methods", ALLOWED_METHODS)
                self.set_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
                self.set_status(204)
                self.finish()
                return
            if method not in ("GET", "POST"):
                finish_with_error(self, 405, "method not allowed")
                return
            query = parse_qs(self.request.query)
            self._sid = query.get("sid", [None])[0]
            if self._sid is None:
                refusal = self._handshake_refusal(query)
                if refusal is not None:
                    finish_with_error(self, *refusal)
            elif getattr(sio.eio.sockets.get(self._sid), "closed", True):  # expired, closed or made up
                # A closed session python-engineio still lists would log an ERROR there. A
                # python-socketio client over polling may send one more GET after its own
                # CLOSE (its read loop races its disconnect()): a routine 400, logged at INFO.
                self.routine_refusal = True
                finish_with_error(self, 400, "unknown Engine.IO session")

        def _handshake_refusal(self, query: Dict[str, List[str]]) -> Optional[Tuple[int, str]]:
            """(status, message) when a request without ``sid`` must not reach Engine.IO
            (which would make a session of it), else None."""
            if not _handshake_token_ok(config.auth_token, self.request):
                self.set_header("WWW-Authenticate", 'Bearer realm="tegrastats-api"')
                return 401, TOKEN_REFUSED
            if self.request.method != "GET":
                return 400, "no sid: a POST goes to an open Engine.IO session"
            if query.get("EIO") != ["4"]:
                return 400, "unsupported Engine.IO version: EIO=4 is required"
            transport = query.get("transport", ["polling"])
            upgrade = self.request.headers.get("Upgrade", "").lower() == "websocket"
            if transport not in (["polling"], ["websocket"]):
                return 400, "unknown transport: polling or websocket"
            if (transport == ["websocket"]) != upgrade:
                return 400, "transport=websocket goes with a WebSocket upgrade, and only it"
            if not sessions.admit(self, websocket=upgrade):
                return 503, sessions.refusal()
            return None

        async def get(self, *args: Any, **kwargs: Any) -> None:
            upgrade = self.request.headers.get("Upgrade", "").lower() == "websocket"
            if self._sid is not None and not upgrade and sessions.poll_started(self._sid):
                self._poll_sid = self._sid
            try:
                answered = super().get(*args, **kwargs)
                if answered is not None:
                    await answered
            finally:
                self._end_poll()

        async def post(self, *args: Any, **kwargs: Any) -> None:
            # python-engineio answers 200 to a body it cannot decode (and logs a traceback),
            # and never answers one that is too big or holds a packet it does not take (it
            # waits for the closed session's queue to drain). Such a client is closed here,
            # like one sending a malformed WebSocket message.
            refusal: Optional[Tuple[int, str]] = None
            socket = sio.eio.sockets.get(self._sid) if self._sid is not None else None
            if socket is not None:
                limit = sio.eio.max_http_buffer_size
                if len(self.request.body) > limit:
                    refusal = 413, "Engine.IO payload over %d bytes" % limit
                elif not payload_ok(self.request.body):
                    refusal = 400, "malformed Engine.IO payload"
            if refusal is not None:
                log.debug("Socket.IO client from %s posted a bad payload (%s); closed",
                          self.request.remote_ip, refusal[1])
                await sessions.drop(self._sid, refusal[1])  # type: ignore[arg-type]
                finish_with_error(self, *refusal)
                return
            answered = super().post(*args, **kwargs)
            if answered is not None:
                await answered
            if socket is not None:  # the POST may have closed the session: its GET ends now
                sessions.end_polls_of_closed(self._sid, socket)  # type: ignore[arg-type]

        async def open(self, *args: Any, **kwargs: Any) -> None:
            limit_send_buffer(self)  # past it, samples are skipped (SamplePushes.push)
            try:
                await super().open(*args, **kwargs)  # schedules Engine.IO's handling of this socket
            finally:
                if self._sid is not None:
                    sessions.websocket_opened(self._sid, self)
                    self._eio_sid = self._sid
                    pushes.opened(self._sid, self)
                else:
                    # The session is made in the first step of the task just scheduled; this
                    # callback runs after that step, so the handshake is counted until then.
                    asyncio.get_running_loop().call_soon(sessions.unreserve, self)

        def on_finish(self) -> None:
            if self.get_status() != 101:  # no upgrade: no session will come of it
                sessions.unreserve(self)
            super().on_finish()

        def on_close(self) -> None:
            pushes.closed(self._eio_sid, self)
            super().on_close()

        def on_connection_close(self) -> None:
            super().on_connection_close()
            self._end_poll()  # a long-poll whose client left counts as over
            if self.get_status() != 101:
                sessions.unreserve(self)

        def _end_poll(self) -> None:
            if self._poll_sid is not None:
                sessions.poll_ended(self._poll_sid)
                self._poll_sid = None

        def check_origin(self, origin: str) -> bool:
            return origin_allowed(origin, self.request.host, config.cors_origins)

        def get_compression_options(self) -> None:
            return None  # tiny frames: compression costs more CPU and memory than it saves

        @property
        def ping_interval(self) -> Optional[float]:
            # Engine.IO pings its clients itself (PING_INTERVAL_S): no WebSocket pings beside
            # them, which the application's websocket_ping_interval (for /ws) would add.
            return None

        def write_message(
            self, message: Union[str, bytes, Dict[str, Any]], binary: bool = False
        ) -> asyncio.Future[None]:
            # python-engineio writes every packet of a WebSocket client with this (public)
            # method: the OPEN packet names the session (a WebSocket that made its own), and
            # the samples written tell SamplePushes when it has caught up. A sample's message
            # is the same text for every client, so its frame is built once
            # (SamplePushes.frame_of) and each client costs one socket write (write_frame).
            # Other text (pings, the CONNECT answer, the disconnect and CLOSE packets) is
            # written the same way: tornado's own method wraps each write in a task, which
            # the loop's shutdown cancels when the client stopped reading, and asyncio logs
            # an error for every such write. Binary messages, and a closing connection, take
            # tornado's path (which raises WebSocketClosedError for the latter, as
            # python-engineio expects).
            frame = None
            if isinstance(message, str) and not binary:
                if self._eio_sid is None:
                    self._eio_sid = open_packet_sid(message)
                    if self._eio_sid is not None:
                        pushes.opened(self._eio_sid, self)
                pushes.written(self, message)
                frame = pushes.frame_of(message) or new_text_frame(message.encode("utf-8"))
            stream = open_stream(self)
            if frame is None or stream is None:
                return super().write_message(message, binary=binary)
            try:
                rest = write_frame(stream, frame)
            except StreamClosedError:
                raise WebSocketClosedError() from None
            if rest is None:  # all of it went out: the Future tornado's method would give, done
                rest = asyncio.get_running_loop().create_future()
                rest.set_result(None)
            return rest

        async def on_message(self, message: Any) -> None:
            # python-engineio decodes a WebSocket message outside its reader's error
            # handling: a malformed one (``zzz``, empty, bad base64) ends the reader but
            # keeps the session, and its connection slot, until the ping timeout. Such a
            # client is closed here instead, before engineio sees the message. An empty
            # message is no packet either (python-engineio 4.0 would take it for a NOOP).
            try:
                if not message:
                    raise ValueError("empty Engine.IO packet")
                engineio.packet.Packet(encoded_packet=message)
            except (ValueError, IndexError, TypeError):
                log.debug("Socket.IO client from %s sent a malformed packet; closed", self.request.remote_ip)
                self.close(1002, "malformed Engine.IO packet")
                return
            await super().on_message(message)

    return SocketIOHandler
