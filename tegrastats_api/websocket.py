"""The native WebSocket endpoint ``/ws``: one JSON text frame per sample.

What it does: :class:`SnapshotSocket` checks the token, the Origin and the connection cap
before the upgrade (answering 401, 403 or 503 with a JSON body; 400 to a request that is no
upgrade, 405 to other methods: every error answer is the JSON error of docs/API.md, see
:class:`JSONErrorAnswers`, which Socket.IO's handler uses too), sends the latest
document at once on open, then one text frame per sample straight from the bytes the hub
encoded once. A client that cannot keep up loses intermediate frames: while one frame is
still being written, only the newest sample waits behind it (it replaces any older one),
so a slow client never delays the others, always gets the latest sample in the end, and
holds at most two frames of server memory. Keep-alive pings come from the application settings
``websocket_ping_interval``/``websocket_ping_timeout``; compression is off.

Why frames are written to the stream directly: a server's frames are not masked, so the
bytes of one sample's frame are the same for every client; :func:`text_frame` builds them
once per sample and view, and each client costs one socket write (:func:`write_frame`:
one ``send`` call while nothing earlier waits to go out, else the stream's buffered
write). Tornado's ``write_message`` would build the frame again per client and wrap each
write in a Task (about half the CPU of a push to 500 clients, see docs/PERFORMANCE.md).

What it does not: read anything clients send (messages are ignored), or encode JSON.
"""
from __future__ import annotations

import asyncio
import json
import logging
import socket
import struct
from http.client import responses
from typing import Any, Dict, List, Optional, Tuple, Union

from tornado.iostream import IOStream, SSLIOStream, StreamClosedError
from tornado.web import HTTPError, RequestHandler
from tornado.websocket import WebSocketClosedError, WebSocketHandler

from tegrastats_api.settings import Config
from tegrastats_api.fields import FieldsError, Path
from tegrastats_api.handlers import (
    JSON_TYPE,
    error_body,
    fields_argument,
    finish_with_error,
    origin_allowed,
)
from tegrastats_api.hub import ConnectionLimiter, Sample, SnapshotHub
from tegrastats_api.tokens import request_token, token_valid

log = logging.getLogger(__name__)

GOING_AWAY = 1001  # close code for a server shutdown
SEND_BUFFER_BYTES = 64 * 1024  # kernel send buffer of a /ws socket: ~30 frames (Linux doubles it)
_FRAME_CACHE_SIZE = 16  # frames of the newest samples and views, shared by every client
_frames: Dict[bytes, bytes] = {}
MAX_ERROR_CHARS = 200  # an error message taken from another's answer is cut to this


def error_message(status: int, body: bytes) -> str:
    """The message of the JSON error document for an error answer whose body was ``body``:
    our own document's ``error``, python-engineio's JSON string or ``{"message": ...}``, or
    tornado's text; the HTTP reason phrase when there is none (or it is HTML)."""
    text = body.decode("utf-8", "replace").strip()
    try:
        found: Any = json.loads(text)
    except ValueError:
        found = text
    if isinstance(found, dict):
        found = found.get("error", found.get("message"))
    if not isinstance(found, str) or not found.strip() or found.lstrip().startswith("<"):
        return responses.get(status, "error").lower()
    message = " ".join(found.split())
    return (message[:1].lower() + message[1:])[:MAX_ERROR_CHARS]


def _as_bytes(chunk: Union[str, bytes, Dict[str, Any]]) -> bytes:
    if isinstance(chunk, dict):
        return json.dumps(chunk).encode("utf-8")
    return chunk.encode("utf-8") if isinstance(chunk, str) else bytes(chunk)


class JSONErrorAnswers(RequestHandler):
    """Every error answer of a push endpoint as the JSON error of docs/API.md (``{"error": ...,
    "status": N}``, the status unchanged), whoever wrote it: our own refusals, tornado's (405
    for a method, 400 or 426 for a bad upgrade, 400 for a query that is not UTF-8) and
    python-engineio's (text/plain). Headers set beside it (CORS, ``Allow``,
    ``Sec-WebSocket-Version``) stay; a 405 names :attr:`allowed_methods` in ``Allow``.

    Mixed in before the WebSocket handler class. What is written while the status is an
    error is held back, and :meth:`finish` answers the JSON document made from it.
    """

    allowed_methods = "GET"
    _error_parts: Optional[List[bytes]] = None
    _answering = False

    def clear(self) -> None:
        super().clear()
        self._error_parts = None  # send_error() starts over

    def write(self, chunk: Union[str, bytes, Dict[str, Any]]) -> None:
        if self.get_status() >= 400 and not self._answering:
            self._error_parts = (self._error_parts or []) + [_as_bytes(chunk)]
            return
        super().write(chunk)

    def finish(self, chunk: Optional[Union[str, bytes, Dict[str, Any]]] = None) -> asyncio.Future[None]:
        status = self.get_status()
        if status < 400 or self._answering:
            return super().finish(chunk)
        parts = (self._error_parts or []) + ([] if chunk is None else [_as_bytes(chunk)])
        self._answering, self._error_parts = True, None
        if status == 405:
            self.set_header("Allow", self.allowed_methods)
        self.set_header("Content-Type", JSON_TYPE)
        return super().finish(error_body(status, error_message(status, b"".join(parts))))

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        exc = kwargs.get("exc_info", (None, None, None))[1]
        message = (getattr(exc, "reason", None) or responses.get(status_code, "error")).lower()
        if isinstance(exc, HTTPError) and status_code < 500 and exc.log_message:
            try:  # e.g. "Invalid unicode in fields: b'\\xff'": say what was wrong
                message = exc.log_message % exc.args
            except (TypeError, ValueError):
                message = exc.log_message
        self.finish(error_body(status_code, message))


def new_text_frame(payload: bytes) -> bytes:
    """The unmasked, unfragmented WebSocket text frame (RFC 6455 section 5.2) of ``payload``
    (UTF-8 text), built every call: :func:`text_frame` keeps the frames of samples."""
    size = len(payload)
    if size < 126:
        head = struct.pack("!BB", 0x81, size)
    elif size <= 0xFFFF:
        head = struct.pack("!BBH", 0x81, 126, size)
    else:
        head = struct.pack("!BBQ", 0x81, 127, size)
    return head + payload


def text_frame(payload: bytes) -> bytes:
    """:func:`new_text_frame` of ``payload``, built once per payload.

    Every client of a sample gets the same bytes object from the hub, whose hash Python
    keeps, so the lookup is cheap.
    """
    frame = _frames.get(payload)
    if frame is None:
        frame = new_text_frame(payload)
        if len(_frames) >= _FRAME_CACHE_SIZE:
            _frames.clear()
        _frames[payload] = frame
    return frame


def write_frame(stream: IOStream, frame: bytes) -> Optional[asyncio.Future[None]]:
    """Write ``frame`` to ``stream``: None when the socket took all of it at once, else the
    Future of ``stream.write`` for what is left (StreamClosedError when it is closed).

    While nothing written earlier still waits in the stream (public ``writing()``), the
    frame goes to the socket in one ``send`` call, which is what ``IOStream.write`` does
    first too, without the Future, buffer and done-callback it makes for every write
    (a third of a push's CPU per client). Whatever the socket does not take, and every
    frame while earlier bytes wait, goes through ``stream.write``, so bytes keep their
    order; a send that fails leaves the error to ``stream.write``, which closes the stream
    as it always does. TLS streams always take ``stream.write``.
    """
    if not stream.writing() and not stream.closed() and not isinstance(stream, SSLIOStream):
        try:
            sent = stream.socket.send(frame)
        except OSError:  # EAGAIN (full), or a broken connection: stream.write handles both
            sent = 0
        if sent == len(frame):
            return None
        if sent:
            return stream.write(memoryview(frame)[sent:])
    return stream.write(frame)


def open_stream(handler: WebSocketHandler) -> Optional[IOStream]:
    """The stream of ``handler``'s WebSocket connection, or None when there is none or it
    is closing (a frame written then would follow tornado's close frame)."""
    connection = handler.ws_connection
    stream = getattr(connection, "stream", None)
    if connection is None or connection.is_closing() or stream is None:
        return None
    return stream


def limit_send_buffer(handler: WebSocketHandler) -> None:
    """Cap the kernel send buffer of ``handler``'s connection at :data:`SEND_BUFFER_BYTES`.

    A client that stops reading would otherwise pin megabytes of kernel memory (Linux grows
    a loopback or LAN send buffer to 4 MB) before the server sees it is behind.
    """
    stream = getattr(handler.ws_connection, "stream", None)
    if stream is not None and stream.socket is not None:
        stream.socket.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SEND_BUFFER_BYTES)


class SnapshotSocket(JSONErrorAnswers, WebSocketHandler):
    """One ``/ws`` client: latest document on open, then every sample (or as many as it takes)."""

    def initialize(self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter) -> None:
        self.hub = hub
        self.config = config
        self.limiter = limiter
        self.frames_dropped = 0
        self._pending: Optional[asyncio.Future[None]] = None  # the frame being written
        self._queued: Optional[bytes] = None  # the newest frame waiting for it
        self.fields: Optional[Tuple[Path, ...]] = None  # ?fields=: the view this client wants

    async def get(self, *args: Any, **kwargs: Any) -> None:
        refusal = self._refusal()
        if refusal is not None:
            finish_with_error(self, *refusal)
            return
        try:
            # Returns only when the connection is over (or was never upgraded).
            await super().get(*args, **kwargs)
        finally:
            self.limiter.release(self)

    def _refusal(self) -> Optional[Tuple[int, str]]:
        """(status, message) when this handshake must be refused, else None (slot taken)."""
        headers = self.request.headers
        if headers.get("Upgrade", "").lower() != "websocket":
            return 400, "expected a WebSocket upgrade"
        try:
            self.fields = fields_argument(self)  # the same rules as REST (empty: whole document)
        except FieldsError as err:
            return 400, str(err)
        given = request_token(headers.get("Authorization"), self.request.query)
        if not token_valid(self.config.auth_token, given):
            return 401, "missing or invalid token"
        if not self.check_origin(headers.get("Origin", "")):
            return 403, "origin not allowed"
        if not self.limiter.acquire(self):
            log.warning("/ws client from %s refused: %s", self.request.remote_ip, self.limiter.refusal())
            return 503, self.limiter.refusal()
        return None

    def check_origin(self, origin: str) -> bool:
        return origin_allowed(origin, self.request.host, self.config.cors_origins)

    def open(self, *args: Any, **kwargs: Any) -> None:
        log.debug("/ws client %s connected", self.request.remote_ip)
        limit_send_buffer(self)  # past it, frames are dropped here (see on_sample)
        self.hub.subscribe(self.on_sample)
        payload = self.hub.latest_json if self.fields is None else self.hub.fields_json(self.fields)
        if payload is not None:
            self._send(payload)

    def on_sample(self, sample: Sample) -> None:
        """Hub subscriber: send now, or keep only this newest frame until the last one is out.

        With ``?fields=`` the frame is the hub's view of this sample for that field list,
        encoded once for every client that asked for the same list.
        """
        payload = sample.payload
        if self.fields is not None:
            payload = self.hub.fields_json(self.fields) or payload
        if self._pending is not None and not self._pending.done():
            if self._queued is not None:
                self.frames_dropped += 1
            self._queued = payload
            return
        self._send(payload)

    def _send(self, payload: bytes) -> None:
        stream = open_stream(self)
        try:
            if stream is None:
                raise WebSocketClosedError()
            # No compression is negotiated (see the module docstring), so the shared
            # frame goes to the stream as it is, after any frame tornado wrote itself.
            future = write_frame(stream, text_frame(payload))
        except (WebSocketClosedError, StreamClosedError):
            self.hub.unsubscribe(self.on_sample)
            return
        if future is None or future.done():  # the usual case: the socket took it all at once
            self._pending = None
            return
        self._pending = future
        future.add_done_callback(self._on_written)

    def _on_written(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            return
        try:
            future.result()
        except (WebSocketClosedError, StreamClosedError):
            self._queued = None
            return
        queued, self._queued = self._queued, None
        if queued is not None:
            self._send(queued)

    def on_message(self, message: Any) -> None:
        """Clients have nothing to say yet; their messages are ignored."""

    def on_close(self) -> None:
        self.hub.unsubscribe(self.on_sample)
        self.limiter.release(self)
        log.debug(
            "/ws client %s gone (code %s, %d frames dropped)",
            self.request.remote_ip, self.close_code, self.frames_dropped,
        )

    def shutdown(self) -> None:
        """Close with a 1001 close frame (server going away)."""
        self.hub.unsubscribe(self.on_sample)
        self.close(GOING_AWAY, "server shutting down")

