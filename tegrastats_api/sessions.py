"""Engine.IO sessions under watch: who may make one, and when one is closed.

What it does: :class:`EngineSessions` admits a Socket.IO handshake (a request without
``sid``) only while fewer than :data:`PENDING_PER_SLOT` per ``--max-connections`` (at least
:data:`MIN_PENDING`) sessions exist that hold no connection slot, and sweeps every
:data:`SWEEP_INTERVAL_S`: a session that has not joined the namespace within
:data:`PENDING_TTL_S`, and a joined polling session with no GET in flight for
:data:`POLL_GRACE_S` (its client is gone), is closed, which gives its slot back; a closed
session python-engineio still lists is forgotten (its own service task, which did that, is
off: see :func:`tegrastats_api.sio.make_sio`).
The GET in flight of a session its client closed is answered at once
(:meth:`EngineSessions.end_polls_of_closed`). :func:`payload_ok` tells whether a polling
POST body is made of packets python-engineio takes.

What it does not: check tokens or origins, or answer requests (the handler in
:mod:`tegrastats_api.sio` does both); joined WebSocket sessions are left to Engine.IO's
pings (the sweep stops while all sessions are such, and starts again with the next
handshake or a client leaving the namespace). It reads python-engineio's session table
(``eio.sockets`` and each socket's ``closing``, ``closed``, ``upgraded``, ``upgrading`` and
``queue``), the same in 4.0.0 and 4.15.
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Dict, Optional, Set

import engineio.packet
import engineio.payload
import socketio
from tornado.websocket import WebSocketHandler

from tegrastats_api.hub import ConnectionLimiter

log = logging.getLogger(__name__)

PENDING_PER_SLOT = 3  # Engine.IO sessions outside the namespace, per --max-connections ...
MIN_PENDING = 4  # ... and at least this many
PENDING_TTL_S = 5.0  # a session that has not joined the namespace by then is closed
POLL_GRACE_S = 5.0  # a polling session with no GET in flight for this long is closed
SWEEP_INTERVAL_S = 1.0
_LOG_EVERY_REFUSAL = 100  # a flood of refused handshakes logs its first one, then every 100th


class EngineSessions:
    """The Engine.IO sessions of one server: admission of handshakes, and the sweep.

    Pending sessions are those not holding a connection slot (not joined, or refused),
    plus direct WebSocket handshakes admitted whose session Engine.IO has yet to make. At most
    :attr:`cap` of them exist at a time; :meth:`sweep` (every :data:`SWEEP_INTERVAL_S`)
    closes the ones older than :data:`PENDING_TTL_S`, and joined polling sessions with no
    GET in flight since :data:`POLL_GRACE_S` (their client is gone: its slot is released).
    """

    def __init__(self, sio: socketio.AsyncServer, limiter: ConnectionLimiter, namespace: str = "/") -> None:
        self.sio = sio
        self.namespace = namespace
        self.limiter = limiter
        self.cap = max(MIN_PENDING, PENDING_PER_SLOT * limiter.limit)
        self.refused = 0
        self._reserved: Dict[Any, float] = {}  # handler of a direct WebSocket handshake -> when admitted
        self._seen: Dict[str, float] = {}  # Engine.IO sid -> when first seen (monotonic)
        self._polls: Dict[str, int] = {}  # Engine.IO sid -> its GETs in flight
        self._last_poll: Dict[str, float] = {}  # Engine.IO sid -> when its last GET began or ended
        self._websockets: Dict[str, WebSocketHandler] = {}  # Engine.IO sid -> its upgraded WebSocket
        self._task: Optional[asyncio.Future[None]] = None

    def refusal(self) -> str:
        return "too many Socket.IO handshakes in progress (limit %d)" % self.cap

    def joined(self) -> Set[str]:
        """Engine.IO sids of the clients that hold a connection slot."""
        eio_sids = set()
        for owner in self.limiter.owners():
            if isinstance(owner, str):
                eio_sid = self.sio.manager.eio_sid_from_sid(owner, self.namespace)
                if eio_sid:
                    eio_sids.add(eio_sid)
        return eio_sids

    def pending(self) -> int:
        """Sessions that hold no slot (open ones), plus WebSocket handshakes under way."""
        joined = self.joined()
        count = len(self._reserved)
        for eio_sid, socket in list(self.sio.eio.sockets.items()):
            if eio_sid not in joined and not (socket.closing or socket.closed):
                count += 1
        return count

    def admit(self, handler: Any, websocket: bool) -> bool:
        """Whether a handshake may make a session now; a WebSocket one is counted until its
        session exists (:meth:`unreserve`)."""
        self.start()
        if self.pending() >= self.cap:
            self.refused += 1
            if self.refused % _LOG_EVERY_REFUSAL == 1:
                log.warning("Socket.IO handshake refused: %s (%d so far)", self.refusal(), self.refused)
            return False
        if websocket:
            self._reserved[handler] = time.monotonic()
        return True

    def unreserve(self, handler: Any) -> None:
        self._reserved.pop(handler, None)

    def websocket_opened(self, eio_sid: str, handler: WebSocketHandler) -> None:
        """An existing session's WebSocket (an upgrade): closed with the session."""
        if eio_sid in self.sio.eio.sockets:
            self._websockets[eio_sid] = handler

    def poll_started(self, eio_sid: str) -> bool:
        """A polling GET of ``eio_sid`` begins; False for an unknown session (not tracked)."""
        if eio_sid not in self.sio.eio.sockets:
            return False
        self._polls[eio_sid] = self._polls.get(eio_sid, 0) + 1
        self._last_poll[eio_sid] = time.monotonic()
        return True

    def poll_ended(self, eio_sid: str) -> None:
        """A polling GET that :meth:`poll_started` returned True for is over (or its client left)."""
        left = self._polls.pop(eio_sid, 0) - 1
        if left > 0:
            self._polls[eio_sid] = left
        if eio_sid in self.sio.eio.sockets:
            self._last_poll[eio_sid] = time.monotonic()

    def end_polls_of_closed(self, eio_sid: str, socket: Any) -> None:
        """Answer the GET in flight of ``eio_sid`` at once if its session is now closed.

        A client closing its session (a CLOSE packet in a POST) makes python-engineio close
        it without waking the long-poll GET it holds: that GET waits out ``ping_interval +
        ping_timeout`` (45 s) and is then answered 400, so python-socketio's ``disconnect()``
        over polling blocks that long. ``None`` in the session's queue is python-engineio's
        own "nothing more" (its ``poll`` returns no packets): the GET gets an empty 200.
        ``socket`` is the session's object from before the POST (python-engineio may have
        dropped it from ``eio.sockets`` since).
        """
        if socket.closed and self._polls.get(eio_sid):
            socket.queue.put_nowait(None)

    async def sweep(self) -> None:
        """Close the sessions that never joined in time and the polling ones whose client left."""
        now = time.monotonic()
        sockets = dict(self.sio.eio.sockets)
        for table in (self._seen, self._polls, self._last_poll, self._websockets):
            for gone in [eio_sid for eio_sid in table if eio_sid not in sockets]:
                del table[gone]
        for handler in [h for h, since in self._reserved.items() if now - since >= PENDING_TTL_S]:
            del self._reserved[handler]  # a handshake that ended in a way no callback saw
        joined = self.joined()
        for eio_sid, socket in sockets.items():
            if socket.closed:
                # python-engineio drops a closed session at its next request; one whose client
                # never comes back (closed by a POST with no GET in flight) would stay listed.
                self.sio.eio.sockets.pop(eio_sid, None)
                continue
            if socket.closing:
                continue
            seen = self._seen.setdefault(eio_sid, now)
            if eio_sid not in joined:
                if now - seen >= PENDING_TTL_S:
                    await self.drop(eio_sid, "did not join the namespace within %g s" % PENDING_TTL_S)
            elif not (socket.upgraded or socket.upgrading or self._polls.get(eio_sid)):
                if now - self._last_poll.get(eio_sid, seen) >= POLL_GRACE_S:
                    log.info("Socket.IO polling client gone (no poll for %g s): disconnected", POLL_GRACE_S)
                    await self.drop(eio_sid, "stopped polling")

    async def drop(self, eio_sid: str, why: str) -> None:
        """Close one Engine.IO session now, without waiting for its client: the disconnect
        handlers run (the slot is released), the session is forgotten, its WebSocket closed."""
        log.debug("Engine.IO session closed: %s", why)
        socket = self.sio.eio.sockets.get(eio_sid)
        handler = self._websockets.pop(eio_sid, None)
        if handler is None:  # a direct WebSocket session: the handler of its handshake
            handler = self.sio.environ.get(eio_sid, {}).get("tornado.handler")
        members = [sid for sid in self.limiter.owners()
                   if isinstance(sid, str) and self.sio.manager.eio_sid_from_sid(sid, self.namespace) == eio_sid]
        if socket is not None and not socket.closed:
            try:
                # wait=False: waiting for the queue to drain would wait for a client that is gone.
                await socket.close(wait=False)
            except Exception:  # noqa: BLE001 - a session half closed already; it goes all the same
                log.debug("closing Engine.IO session failed", exc_info=True)
        self.sio.eio.sockets.pop(eio_sid, None)
        for sid in members:  # released by the disconnect handler already, unless close failed
            self.limiter.release(sid)
        if isinstance(handler, WebSocketHandler) and handler.ws_connection is not None:
            handler.close(1008, "session closed")
        for table in (self._seen, self._polls, self._last_poll):
            table.pop(eio_sid, None)

    def start(self) -> None:
        """Start the sweep (on a handshake, or a client leaving the namespace; idempotent)."""
        if self._task is None or self._task.done():
            self._task = asyncio.ensure_future(self._run())

    def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            self._task = None

    def watching(self) -> bool:
        """Whether a sweep has anything to watch: a WebSocket handshake under way, a closed
        session still listed, or an open session that has not joined the namespace or is not
        (yet) on a WebSocket."""
        if self._reserved:
            return True
        joined = self.joined()
        for eio_sid, socket in list(self.sio.eio.sockets.items()):
            if socket.closed or (not socket.closing and (eio_sid not in joined or not socket.upgraded)):
                return True
        return False

    async def _run(self) -> None:
        # Sweeps while there is something to watch, then ends: joined WebSocket sessions
        # are Engine.IO's pings' to watch, so a server whose clients all are costs no timer.
        # Whatever makes a session worth watching again starts it (a handshake, a client
        # leaving the namespace).
        while True:
            await asyncio.sleep(SWEEP_INTERVAL_S)
            try:
                await self.sweep()
                if not self.watching():
                    return
            except Exception:  # noqa: BLE001 - the sweep must go on
                log.exception("Engine.IO session sweep failed")


# What a polling client may POST. python-engineio answers any other packet type by closing
# the session and waiting for its queue to drain, which a polling client never does: the
# request would hang.
POLLING_PACKETS = frozenset({
    engineio.packet.CLOSE, engineio.packet.PONG, engineio.packet.MESSAGE, engineio.packet.UPGRADE,
})


def payload_ok(body: bytes) -> bool:
    """Whether a polling POST body is an Engine.IO payload of packets python-engineio takes."""
    try:
        text = body.decode("utf-8")
        if not text:
            return False
        packets = engineio.payload.Payload(encoded_payload=text).packets
    except (ValueError, IndexError, KeyError, TypeError):  # UnicodeError and binascii.Error too
        return False
    return all(packet.packet_type in POLLING_PACKETS for packet in packets)
