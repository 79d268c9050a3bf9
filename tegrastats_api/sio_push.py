"""Socket.IO sample pushes: each sample's packet made once, and written straight to the
WebSocket clients python-engineio has caught up with.

What it does: :class:`SamplePushes` numbers every sample it makes a Socket.IO packet of
(:meth:`~SamplePushes.make`: the packet, its Engine.IO message as written to a WebSocket,
and that message's frame, built once for every client). It records, per Engine.IO session,
the number of the last sample handed to python-engineio's queue for it
(:meth:`~SamplePushes.handed`), and our Socket.IO WebSocket handler tells it which sample it
last saw python-engineio write through it (:meth:`~SamplePushes.written`). When the two are
the same, every packet python-engineio had of ours for that client is on the wire, in order
(Engine.IO's queue is first in, first out, across an upgrade too), the namespace CONNECT
before them; so the next sample's frame can go to that WebSocket straight away
(:meth:`~SamplePushes.push`), which costs a client what a ``/ws`` client costs (one
``send``), instead of python-engineio's queue, writer task and timer per packet (about
four fifths of a Socket.IO push's CPU, see docs/PERFORMANCE.md). Pings, the CONNECT and
anything else python-engineio sends still go its way, and bytes never overtake each other
on a connection (:func:`tegrastats_api.websocket.write_frame`).

A client whose last frame is still being written skips samples (as one whose Engine.IO
queue is backlogged does), so a slow client holds at most one frame of server memory.
Polling clients, and WebSocket clients until python-engineio has written a sample of ours to
them, get every sample through python-engineio.

What it does not: decide who gets samples (the namespace's accepted room does), or read
anything of python-engineio's but what its public handler method ``write_message`` is given.
"""
from __future__ import annotations

import json
import logging
from asyncio import Future
from typing import Dict, Optional, Set, Tuple

from tornado.iostream import StreamClosedError
from tornado.websocket import WebSocketHandler

from tegrastats_api.websocket import open_stream, text_frame, write_frame

log = logging.getLogger(__name__)

RECENT = 16  # messages of the newest samples that a handler's writes are recognised by


class SamplePushes:
    """The newest samples' Socket.IO packets, and which WebSocket clients may get theirs straight."""

    def __init__(self, event: str) -> None:
        self.event = event
        self.count = 0  # samples made so far: the number of the newest
        self.pushed = 0  # frames written straight to a WebSocket client
        self.skipped = 0  # samples a busy WebSocket client skipped
        self._payload: Optional[bytes] = None  # the newest sample's JSON
        self._packet = ""  # ... its Socket.IO packet, as given to python-engineio
        self._message = ""  # ... its Engine.IO message as written to a WebSocket
        self._frame = b""  # ... that message's WebSocket frame
        self._numbers: Dict[str, int] = {}  # Engine.IO message of a recent sample -> its number
        self._handed: Dict[str, int] = {}  # Engine.IO sid -> number of the last sample handed to its queue
        self._websockets: Dict[str, WebSocketHandler] = {}  # Engine.IO sid -> its WebSocket handler
        self._written: Dict[WebSocketHandler, int] = {}  # handler -> number of the last sample written through it
        self._sent: Dict[WebSocketHandler, int] = {}  # handler -> number of the last sample pushed straight
        self._waiting: Set[WebSocketHandler] = set()  # handlers whose socket is full: newest sample when it drains

    def make(self, payload: bytes) -> Tuple[int, str]:
        """(number, Socket.IO packet) of the sample whose document's JSON is ``payload``;
        the newest sample's again when ``payload`` is that one's."""
        if payload is not self._payload and payload != self._payload:
            self.count += 1
            self._payload = payload
            self._packet = event_packet(self.event, payload)
            self._message = "4" + self._packet  # Engine.IO's MESSAGE packet, as sent on a WebSocket
            self._frame = text_frame(self._message.encode("utf-8"))
            if len(self._numbers) >= RECENT:
                self._numbers.clear()
            self._numbers[self._message] = self.count
        return self.count, self._packet

    def frame_of(self, message: str) -> Optional[bytes]:
        """The WebSocket frame of ``message`` when it is the newest sample's message (built
        once for every client), else None."""
        return self._frame if message == self._message else None

    def handed(self, eio_sid: str, number: int) -> None:
        """Sample ``number`` was handed to python-engineio's queue of ``eio_sid``."""
        self._handed[eio_sid] = number

    def last_handed(self, eio_sid: str) -> Optional[int]:
        """The number of the last sample handed to python-engineio for ``eio_sid``, if any."""
        return self._handed.get(eio_sid)

    def opened(self, eio_sid: str, handler: WebSocketHandler) -> None:
        """``handler`` is the WebSocket of Engine.IO session ``eio_sid``."""
        self._websockets[eio_sid] = handler

    def written(self, handler: WebSocketHandler, message: str) -> None:
        """python-engineio wrote ``message`` through ``handler``: note it if it is a sample's."""
        number = self._numbers.get(message)
        if number is not None:
            self._written[handler] = number

    def closed(self, eio_sid: Optional[str], handler: WebSocketHandler) -> None:
        """``handler``'s connection is over."""
        self._written.pop(handler, None)
        self._sent.pop(handler, None)
        self._waiting.discard(handler)
        if eio_sid is not None and self._websockets.get(eio_sid) is handler:
            del self._websockets[eio_sid]

    def sessions(self) -> int:
        """The Engine.IO sessions a sample was handed to and not yet forgotten."""
        return len(self._handed)

    def forget(self, alive: Set[str]) -> None:
        """Forget the samples handed to the sessions not in ``alive`` (their WebSockets are
        forgotten when they close)."""
        for gone in [eio_sid for eio_sid in self._handed if eio_sid not in alive]:
            del self._handed[gone]

    def caught_up(self, eio_sid: str) -> Optional[WebSocketHandler]:
        """``eio_sid``'s WebSocket handler if python-engineio wrote through it the last
        sample it was handed for that session (so everything before it too), else None."""
        handler = self._websockets.get(eio_sid)
        if handler is None:
            return None
        last = self._handed.get(eio_sid)
        return handler if last is not None and self._written.get(handler) == last else None

    def push(self, eio_sid: str) -> bool:
        """Write the newest sample's frame to ``eio_sid``'s WebSocket if it is
        :meth:`caught_up`: True when done with that client, False when the sample must go
        through python-engineio.

        While the frame before is still being written, the newest sample waits instead
        (only one, the newest: a slow client skips samples, and gets the newest in the end).
        """
        handler = self.caught_up(eio_sid)
        if handler is None:
            return False
        stream = open_stream(handler)
        if stream is None or stream.closed():
            return False  # python-engineio's way meets the closed connection as it expects
        if self._sent.get(handler, 0) >= self.count:
            return True  # it has this one
        if stream.writing():
            if handler not in self._waiting:
                self._waiting.add(handler)
                # Done when everything written so far is out (tornado's public write()).
                stream.write(b"").add_done_callback(lambda done: self._drained(eio_sid, handler, done))
            self.skipped += 1
            return True
        try:
            write_frame(stream, self._frame)
        except StreamClosedError:
            return False
        self._sent[handler] = self.count
        self.pushed += 1
        return True

    def _drained(self, eio_sid: str, handler: WebSocketHandler, done: Future[None]) -> None:
        """A full socket drained: the newest sample, if it still may go straight."""
        self._waiting.discard(handler)
        if done.cancelled() or done.exception() is not None:
            return  # closed: python-engineio hears of it
        if self.caught_up(eio_sid) is handler:
            pushed = self.pushed
            self.push(eio_sid)
            if self.pushed > pushed:
                self.skipped -= 1  # it was counted as skipped while it waited, and went out now


def event_packet(event: str, payload: bytes) -> str:
    """The Socket.IO EVENT packet ``[event, document]`` of the default namespace, from the
    document's compact JSON: the text python-socketio's ``Packet(EVENT, data=[event,
    document]).encode()`` gives (``2`` then ``json.dumps(..., separators=(",", ":"))``)."""
    return "2[%s,%s]" % (json.dumps(event), payload.decode("utf-8"))


def open_packet_sid(message: str) -> Optional[str]:
    """The session id of an Engine.IO OPEN packet (``0{"sid": ...}``), else None."""
    if not message.startswith("0{"):
        return None
    try:
        sid = json.loads(message[1:]).get("sid")
    except (ValueError, AttributeError):
        return None
    return sid if isinstance(sid, str) else None
