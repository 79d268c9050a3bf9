"""Socket.IO at ``/socket.io/``: event ``tegrastats_update`` with the document of each sample.

What it does: :func:`make_sio` builds a python-socketio ``AsyncServer`` in Tornado mode
whose :class:`SnapshotNamespace` checks the token and the shared connection cap on
connect (refusing with a ``connect_error`` that says why), sends the latest document to
the new client, and broadcasts every sample from the hub (the payload is the document as
an object). :func:`make_sio_handler` subclasses python-engineio's Tornado handler to apply
our Origin rule (missing, ``null``, ``file://``, same host or allow-listed) to polling and
WebSocket requests alike, and to turn off per-message compression, which it forces on.

What it does not: encode documents (python-socketio does, per emit), or keep a backlog:
a polling client whose Engine.IO queue is already full skips samples, and clients that
stop answering pings are dropped by Engine.IO after ``ping_interval + ping_timeout``.
Works with python-socketio 5.0.3/python-engineio 4.0 and newer (see :mod:`tegrastats_api.compat`).
"""
from __future__ import annotations

import asyncio
import logging
from typing import Any, Dict, List, Optional

import engineio.packet
import socketio
from tornado.ioloop import IOLoop

from tegrastats_api.compat import AuthKeepingServer, connect_auth, connection_refused
from tegrastats_api.config import Config
from tegrastats_api.handlers import (
    ALLOW_HEADERS,
    finish_with_error,
    origin_allowed,
    request_token,
    token_valid,
)
from tegrastats_api.hub import ConnectionLimiter, Document, SnapshotHub

log = logging.getLogger(__name__)

EVENT = "tegrastats_update"
NAMESPACE = "/"
MAX_BACKLOG = 4  # Engine.IO packets queued for one client before it skips samples
PING_INTERVAL_S = 10
PING_TIMEOUT_S = 20


class SnapshotNamespace(socketio.AsyncNamespace):
    """The default namespace: auth and cap on connect, latest document, per-sample broadcast."""

    def __init__(self, hub: SnapshotHub, limiter: ConnectionLimiter, config: Config) -> None:
        super().__init__(NAMESPACE)
        self.hub = hub
        self.limiter = limiter
        self.config = config

    async def on_connect(self, sid: str, environ: Dict[str, Any], auth: Any = None) -> None:
        given = _token_of(environ, connect_auth(environ, auth))
        if not token_valid(self.config.auth_token, given):
            raise connection_refused("missing or invalid token")
        if not self.limiter.acquire(sid):
            log.warning("Socket.IO client refused: %s", self.limiter.refusal())
            raise connection_refused(self.limiter.refusal())
        IOLoop.current().spawn_callback(self._send_latest, sid)

    async def on_disconnect(self, sid: str, reason: Any = None) -> None:
        self.limiter.release(sid)

    async def _send_latest(self, sid: str) -> None:
        # The CONNECT packet goes out after on_connect returns (and newer versions mark
        # the client connected only then), so wait for that before the first event.
        for _ in range(100):
            if self.server.manager.is_connected(sid, NAMESPACE) or not self.limiter.holds(sid):
                break
            await asyncio.sleep(0.01)
        document = self.hub.latest_document
        if document is not None and self.limiter.holds(sid):
            await self.emit(EVENT, document, room=sid)

    def on_sample(self, document: Document, payload: bytes) -> None:
        """Hub subscriber: schedule the broadcast; never waits for any client."""
        if any(isinstance(owner, str) for owner in self.limiter.owners()):
            IOLoop.current().spawn_callback(self._broadcast, document)

    async def _broadcast(self, document: Document) -> None:
        await self.emit(EVENT, document, skip_sid=self._backlogged() or None)

    def _backlogged(self) -> List[str]:
        """Clients with more than MAX_BACKLOG Engine.IO packets still queued (slow pollers)."""
        slow = []
        for sid in self.limiter.owners():
            if isinstance(sid, str) and _queued(self.server, sid) > MAX_BACKLOG:
                slow.append(sid)
        return slow

    async def disconnect_all(self) -> None:
        """Disconnect every Socket.IO client (server shutdown)."""
        for sid in [owner for owner in self.limiter.owners() if isinstance(owner, str)]:
            await self.server.disconnect(sid, namespace=NAMESPACE)
            self.limiter.release(sid)


def _token_of(environ: Dict[str, Any], auth: Any) -> Optional[str]:
    """The token from the ``auth`` object, the Authorization header or ``?token=``."""
    if isinstance(auth, dict) and isinstance(auth.get("token"), str):
        return auth["token"]
    return request_token(environ.get("HTTP_AUTHORIZATION"), environ.get("QUERY_STRING", ""))


def _queued(sio: socketio.AsyncServer, sid: str) -> int:
    """Engine.IO packets waiting for ``sid`` (0 when unknown)."""
    eio_sid = sio.manager.eio_sid_from_sid(sid, NAMESPACE)
    socket = sio.eio.sockets.get(eio_sid) if eio_sid else None
    queue = getattr(socket, "queue", None)
    return queue.qsize() if queue is not None else 0


def make_sio(hub: SnapshotHub, limiter: ConnectionLimiter, config: Config) -> socketio.AsyncServer:
    """The Socket.IO server, subscribed to ``hub``.

    python-engineio compares the Origin with a plain list, which would refuse ``null``,
    ``file://`` and (in 4.3) anything when the list holds ``*``; ``cors_allowed_origins=[]`` turns
    that check and its CORS headers off, and the handler from :func:`make_sio_handler`
    applies our rule to every request instead.
    """
    sio = AuthKeepingServer(
        async_mode="tornado",
        cors_allowed_origins=[],
        ping_interval=PING_INTERVAL_S,
        ping_timeout=PING_TIMEOUT_S,
        logger=False,
        engineio_logger=False,
    )
    namespace = SnapshotNamespace(hub, limiter, config)
    sio.register_namespace(namespace)
    hub.subscribe(namespace.on_sample)
    return sio


def snapshot_namespace(sio: socketio.AsyncServer) -> SnapshotNamespace:
    """The namespace :func:`make_sio` registered (for shutdown)."""
    return sio.namespace_handlers[NAMESPACE]


def make_sio_handler(sio: socketio.AsyncServer, config: Config) -> type:
    """python-engineio's Tornado handler with our Origin rule, CORS headers and no compression."""
    base = socketio.get_tornado_handler(sio)

    class SocketIOHandler(base):  # type: ignore[misc, valid-type]
        def prepare(self) -> None:
            origin = self.request.headers.get("Origin")
            if not origin_allowed(origin, self.request.host, config.cors_origins):
                finish_with_error(self, 403, "origin not allowed")
                return
            if origin:
                self.set_header("Access-Control-Allow-Origin", origin)
                self.set_header("Vary", "Origin")
            if self.request.method == "OPTIONS":
                self.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS")
                self.set_header("Access-Control-Allow-Headers", ALLOW_HEADERS)

        def check_origin(self, origin: str) -> bool:
            return origin_allowed(origin, self.request.host, config.cors_origins)

        def get_compression_options(self) -> None:
            return None  # tiny frames: compression costs more CPU and memory than it saves

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

