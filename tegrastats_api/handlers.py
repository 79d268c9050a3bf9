"""REST handlers: JSON answers, CORS, auth and the rules shared with the push endpoints.

What it does: :class:`BaseAPIHandler` answers JSON only (errors included, as
``{"error": ..., "status": N}``), sets CORS headers for the configured origins, answers
``OPTIONS`` with 204, supports ``HEAD`` and checks the bearer token. The endpoints are
:class:`HealthHandler`, :class:`StatusHandler` and one :class:`SectionHandler` per section
(a row of the route table each), :class:`HistoryHandler` (``/api/history``),
:class:`BoardHandler` (``/api/board``, the board's own facts),
:class:`MetricsHandler` (``/metrics``, Prometheus text) and :class:`OpenAPIHandler`
(``/api/openapi.json``). :func:`origin_allowed` is the Origin rule that ``/ws`` and
Socket.IO apply as well; the token rules are in :mod:`tegrastats_api.tokens`.

What it does not: encode sample documents (the hub does, once per sample), or hold state
between requests.
"""
from __future__ import annotations

import asyncio
import json
import math
import os
import weakref
from http.client import responses
from typing import Any, Dict, Optional, Sequence, Tuple
from urllib.parse import urlsplit

from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from tegrastats_api import __version__
from tegrastats_api.board import BoardReader
from tegrastats_api.settings import Config
from tegrastats_api.fields import FieldsError, Path, parse_fields
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.metrics import Exporter
from tegrastats_api.snapshot import format_timestamp
from tegrastats_api.tokens import request_token, token_valid

JSON_TYPE = "application/json; charset=UTF-8"
ALLOW_METHODS = "GET, HEAD, OPTIONS"
ALLOW_HEADERS = "Authorization, Content-Type"


def origin_allowed(origin: Optional[str], host: str, cors_origins: Sequence[str]) -> bool:
    """Whether a push client sending ``Origin: origin`` to ``Host: host`` may connect.

    Always allowed: no Origin, ``null`` and ``file://`` (microcontrollers, local pages)
    and the server's own host (the bundled dashboard); otherwise the origin must be in
    ``cors_origins`` or that list must hold ``*``.
    """
    if not origin or origin == "null" or origin.lower().startswith("file://"):
        return True
    if "*" in cors_origins or origin.rstrip("/") in cors_origins:
        return True
    return urlsplit(origin).netloc.lower() == host.lower()


def parse_seconds(text: Optional[str]) -> Optional[float]:
    """``?seconds=N`` as a finite number >= 0; None when absent or empty. Raises ValueError naming it."""
    if text is None or not text.strip():
        return None
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not (math.isfinite(seconds) and seconds >= 0):
        raise ValueError("seconds: %r is not a number of seconds >= 0" % text[:40])
    return seconds


def fields_argument(handler: RequestHandler) -> Optional[Tuple[Path, ...]]:
    """The canonical paths of a request's ``fields=`` (REST and ``/ws`` alike), None for the
    whole document. Repeated ``fields=`` arguments add up (``fields=cpu&fields=gpu`` is
    ``fields=cpu,gpu``); empty items count for nothing, so ``fields=``, ``fields=,,,`` and
    ``fields= , `` all mean the whole document. Raises FieldsError (a ValueError)."""
    return parse_fields(",".join(handler.get_query_arguments("fields")))


def error_body(status: int, message: str) -> bytes:
    """The JSON error document of every endpoint."""
    return json.dumps({"error": message, "status": status}).encode("utf-8")


def finish_with_error(handler: RequestHandler, status: int, message: str) -> None:
    """Answer ``handler``'s request with the JSON error document (push handshakes too)."""
    handler.set_status(status)
    handler.set_header("Content-Type", JSON_TYPE)
    handler.finish(error_body(status, message))


class JSONErrorMixin:
    """Render every error raised through Tornado (404, 405, 500...) as a JSON document."""

    def write_error(self, status_code: int, **kwargs: Any) -> None:
        handler: RequestHandler = self  # type: ignore[assignment]
        exc = kwargs.get("exc_info", (None, None, None))[1]
        reason = getattr(exc, "reason", None) or responses.get(status_code, "error")
        handler.set_header("Content-Type", JSON_TYPE)
        handler.finish(error_body(status_code, reason.lower()))


class BaseAPIHandler(JSONErrorMixin, RequestHandler):
    """JSON-only handler with CORS, OPTIONS, HEAD and bearer-token auth."""

    requires_auth = True

    def initialize(self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter) -> None:
        self.hub = hub
        self.config = config
        self.limiter = limiter

    def set_default_headers(self) -> None:
        # Runs before initialize() and again for every error page, so the origins come
        # from the application settings rather than from the handler's arguments.
        self.set_header("Content-Type", JSON_TYPE)
        self.set_header("Cache-Control", "no-store")
        origins = self.settings.get("cors_origins", ("*",))
        origin = self.request.headers.get("Origin")
        if "*" in origins:
            self.set_header("Access-Control-Allow-Origin", "*")
        else:
            self.set_header("Vary", "Origin")
            if origin and origin.rstrip("/") in origins:
                self.set_header("Access-Control-Allow-Origin", origin)

    def prepare(self) -> None:
        if self.request.method == "OPTIONS" or not self.requires_auth:
            return
        given = request_token(self.request.headers.get("Authorization"), self.request.query)
        if not token_valid(self.config.auth_token, given):
            self.set_header("WWW-Authenticate", 'Bearer realm="tegrastats-api"')
            finish_with_error(self, 401, "missing or invalid token")

    def compute_etag(self) -> Optional[str]:
        return None  # the data changes every interval; no hashing of every answer

    def options(self, *args: Any) -> None:
        self.set_header("Access-Control-Allow-Methods", ALLOW_METHODS)
        self.set_header("Access-Control-Allow-Headers", ALLOW_HEADERS)
        self.set_header("Access-Control-Max-Age", "600")
        self.set_status(204)
        self.finish()

    def head(self, *args: Any) -> None:
        self.get(*args)  # Tornado sends the headers (with Content-Length) and no body

    def send_json(self, payload: Optional[bytes], status: int = 200) -> None:
        """Finish with ``payload``, or 503 ``no data yet`` when it is None."""
        if payload is None:
            finish_with_error(self, 503, "no data yet")
            return
        self.set_status(status)
        self.finish(payload)


class BoardAwareHandler(BaseAPIHandler):
    """A handler that also knows the board's facts (:class:`tegrastats_api.board.BoardReader`)."""

    def initialize(  # type: ignore[override]
        self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter, board: BoardReader
    ) -> None:
        super().initialize(hub, config, limiter)
        self.board = board


class HealthHandler(BoardAwareHandler):
    """``/api/health``: 200 when healthy, else 503 with the same body; never needs a token."""

    requires_auth = False

    def get(self, *args: Any) -> None:
        body = self.health()
        status = 200 if body["status"] == "healthy" else 503
        self.send_json(json.dumps(body).encode("utf-8"), status)

    def health(self) -> Dict[str, Any]:
        hub = self.hub
        age = hub.last_sample_age()
        return {
            "status": hub.health_status(),
            "service": "tegrastats-api",
            "timestamp": format_timestamp(hub.clock()),
            "connected_clients": self.limiter.count,
            "max_connections": self.limiter.limit,
            "source": hub.source,
            "last_sample_age": None if age is None else round(age, 3),
            "samples": hub.samples,
            "parse_errors": hub.parse_errors,
            "restarts": hub.restarts,
            "interval": hub.interval_s,
            "stale_after": round(hub.stale_after_s, 6),
            "version": __version__,
            "model": self.board.model,
        }


class BoardHandler(BoardAwareHandler):
    """``/api/board``: model, L4T, JetPack, power mode, fans, hostname, kernel and uptime
    (:mod:`tegrastats_api.board`); 200 from the start (board facts do not wait for a sample)."""

    def get(self, *args: Any) -> None:
        document = self.board.facts().to_dict(format_timestamp(self.hub.clock()))
        self.send_json(json.dumps(document).encode("utf-8"))


class StatusHandler(BaseAPIHandler):
    """``/api/status[?fields=a.b,c]``: the full document, from the bytes the hub encoded once,
    or the document cut down to ``fields`` (encoded once per sample and field list)."""

    def get(self, *args: Any) -> None:
        try:
            paths = fields_argument(self)
        except FieldsError as err:
            finish_with_error(self, 400, str(err))
            return
        self.send_json(self.hub.latest_json if paths is None else self.hub.fields_json(paths))


class SummaryHandler(BaseAPIHandler):
    """``/api/summary``: the headline numbers of the newest sample in under 256 bytes."""

    def get(self, *args: Any) -> None:
        self.send_json(self.hub.summary_json())


class SectionHandler(BaseAPIHandler):
    """``/api/<section>``: ``{"<section>": ..., "timestamp": ...}`` of the newest sample."""

    def initialize(  # type: ignore[override]
        self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter, section: str
    ) -> None:
        super().initialize(hub, config, limiter)
        self.section = section

    def get(self, *args: Any) -> None:
        self.send_json(self.hub.section_json(self.section))


HISTORY_BUILDERS = 2  # /api/history?fields= answers that may encode samples at the same time, per hub
_history_gates: weakref.WeakKeyDictionary[SnapshotHub, asyncio.Semaphore] = weakref.WeakKeyDictionary()


class HistoryHandler(BaseAPIHandler):
    """``/api/history[?seconds=N][&fields=a.b,c]``: ``{"samples": [...]}``, oldest first.

    ``seconds`` keeps the samples read within the last N seconds (a non-negative number;
    anything else is a 400 naming it); without it, every kept sample (``--history-size``).
    503 ``no data yet`` before the first sample, like every data endpoint.

    With ``fields`` the hub encodes the samples its view of that list lacks in steps
    (:meth:`SnapshotHub.history_steps`): between two steps the loop serves other requests,
    and at most :data:`HISTORY_BUILDERS` answers per hub take steps at a time (the others
    wait their turn), so that no mix of history requests blocks the loop for more than a
    few steps. An answer whose client has gone stops there.
    """

    _gone = False

    def on_connection_close(self) -> None:
        self._gone = True

    async def get(self, *args: Any) -> None:
        try:
            seconds = parse_seconds(self.get_query_argument("seconds", None))
            paths = fields_argument(self)
        except ValueError as err:  # FieldsError is a ValueError too
            finish_with_error(self, 400, str(err))
            return
        steps = self.hub.history_steps(seconds, paths)
        gate: Optional[asyncio.Semaphore] = None
        answer: Optional[bytes] = None
        try:
            for answer in steps:
                if answer is not None:
                    break
                if gate is None:  # the first pause: there is work to do, wait for a turn
                    gate = _history_gates.get(self.hub)
                    if gate is None:
                        gate = _history_gates[self.hub] = asyncio.Semaphore(HISTORY_BUILDERS)
                    await gate.acquire()
                else:
                    await asyncio.sleep(0)
                if self._gone:
                    return
        finally:
            steps.close()
            if gate is not None:
                gate.release()
        if not self._gone:
            self.send_json(answer)

    async def head(self, *args: Any) -> None:  # type: ignore[override]
        await self.get(*args)


class MetricsHandler(BaseAPIHandler):
    """``/metrics``: the Prometheus text format from this server's registry; always 200
    (before the first sample it holds the exporter's own metrics only)."""

    def initialize(  # type: ignore[override]
        self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter, exporter: Exporter
    ) -> None:
        super().initialize(hub, config, limiter)
        self.exporter = exporter

    def get(self, *args: Any) -> None:
        self.set_header("Content-Type", self.exporter.content_type)
        self.finish(self.exporter.render())


class OpenAPIHandler(BaseAPIHandler):
    """``/api/openapi.json``: the OpenAPI 3.1 description, encoded once at the first request
    (its module, some 0.2 MB of RSS, is not loaded before)."""

    def get(self, *args: Any) -> None:
        from tegrastats_api.openapi import encode_spec

        self.send_json(encode_spec())


class NotFoundHandler(BaseAPIHandler):
    """Any unknown API path: JSON 404 (also the application's default handler)."""

    requires_auth = False

    def prepare(self) -> None:
        raise HTTPError(404)


class StaticHandler(JSONErrorMixin, StaticFileHandler):
    """The dashboard's files; open without a token, errors as JSON like the API.

    A file whose real path (symlinks resolved) is outside the static folder is refused
    with 403: tornado before 6.5 checks only the path as written and follows links out.
    """

    def validate_absolute_path(self, root: str, absolute_path: str) -> Optional[str]:
        if "\x00" in absolute_path:  # realpath would raise; no file has such a name
            raise HTTPError(404)
        real_root = os.path.realpath(root)
        real_path = os.path.realpath(absolute_path)
        if real_path != real_root and not real_path.startswith(real_root + os.sep):
            raise HTTPError(403, "%s is not in root static directory", self.path)
        return super().validate_absolute_path(root, absolute_path)
