"""REST handlers: JSON answers, CORS, auth and the rules shared with the push endpoints.

What it does: :class:`BaseAPIHandler` answers JSON only (errors included, as
``{"error": ..., "status": N}``), sets CORS headers for the configured origins, answers
``OPTIONS`` with 204, supports ``HEAD`` and checks the bearer token. The endpoints are
:class:`HealthHandler`, :class:`StatusHandler` and one :class:`SectionHandler` per section
(a row of the route table each), :class:`HistoryHandler` (``/api/history``),
:class:`MetricsHandler` (``/metrics``, Prometheus text) and :class:`OpenAPIHandler`
(``/api/openapi.json``). :func:`origin_allowed` and :func:`request_token` are the Origin and
token rules that ``/ws`` and Socket.IO apply as well.

What it does not: encode sample documents (the hub does, once per sample), or hold state
between requests.
"""
from __future__ import annotations

import asyncio
import hmac
import json
import logging
import math
import os
import re
import weakref
from http.client import responses
from typing import Any, Dict, List, Optional, Sequence, Tuple
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry
from tornado.httputil import HTTPHeaders, HTTPServerRequest
from tornado.log import access_log
from tornado.web import HTTPError, RequestHandler, StaticFileHandler

from tegrastats_api import __version__
from tegrastats_api.config import Config
from tegrastats_api.fields import FieldsError, Path, parse_fields
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.metrics import render
from tegrastats_api.snapshot import format_timestamp

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


# --- the token: where it is read, how it is compared ------------------------------------------

TOKEN_KEY = "token"  # the query parameter: ``?token=T``, as parse_qs decodes the key
HTTP_SPACE = " \t"  # the only whitespace of HTTP (RFC 9110 OWS)


def bearer_token(authorization: Optional[str]) -> Optional[str]:
    """The token of an ``Authorization: Bearer T`` header value, else None.

    Only HTTP whitespace (space, tab) is stripped: header values arrive as Latin-1 text, in
    which ``\\xa0`` and ``\\x85`` are bytes of UTF-8 characters (``à`` is ``C3 A0``), not spaces.
    """
    if not isinstance(authorization, str) or not authorization:
        return None
    scheme, _, token = authorization.strip(HTTP_SPACE).partition(" ")
    token = token.strip(HTTP_SPACE)
    if scheme.lower() != "bearer" or not token:
        return None
    return token


def wire_bytes(text: str) -> Optional[bytes]:
    """The bytes a client sent, from text Tornado decoded as Latin-1 (header values, the
    request line, and so python-engineio's environ); text that is not Latin-1 is taken as
    UTF-8; None when it is neither (a lone surrogate)."""
    for encoding in ("latin-1", "utf-8"):
        try:
            return text.encode(encoding)
        except UnicodeEncodeError:
            continue
    return None


def query_pairs(query: str) -> List[Tuple[str, str]]:
    """Every ``key=value`` of a query string in order, blanks kept, ``%XX`` and ``+`` decoded
    byte for byte into Latin-1 text (:func:`wire_bytes` gives the bytes back).

    The one reading of a query for the token: :func:`request_token` takes the token from it
    and :func:`redact_query` masks with it, so what is accepted is what is masked, with the
    separators this Python's ``parse_qsl`` honours.
    """
    return parse_qsl(query or "", keep_blank_values=True, encoding="latin-1")


def request_token(authorization: Optional[str], query: str) -> Optional[bytes]:
    """The client's token as the bytes it sent: from the Authorization header, else the
    first non-empty ``token`` of the query (what ``parse_qs(query)["token"][0]`` is), else None.

    Non-ASCII tokens are UTF-8 on the wire (percent-encoded in the query, raw in the header);
    comparing bytes makes them match (:func:`token_valid`).
    """
    token = bearer_token(authorization)
    if token is not None:
        return wire_bytes(token)
    for key, value in query_pairs(query):
        if key == TOKEN_KEY and value:
            return wire_bytes(value)
    return None


def _token_bytes(value: Any) -> Optional[bytes]:
    """A token as bytes: bytes as they are, text as UTF-8; None for anything else, and for
    text that has no UTF-8 form (a lone surrogate such as ``"\\ud800"`` from JSON)."""
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, str):
        try:
            return value.encode("utf-8")
        except UnicodeEncodeError:
            return None
    return None


def _strips_latin1_spaces() -> bool:
    """Whether this Tornado strips Unicode whitespace from header values (before 6.3.3 it
    did, taking a trailing ``\\xa0`` or ``\\x85`` byte of a UTF-8 character with it)."""
    try:
        return HTTPHeaders.parse("X: a\xa0\r\n").get("X") == "a"
    except Exception:  # pragma: no cover - a Tornado that refuses the byte keeps it too
        return False


_HEADER_CUTS_TOKENS = _strips_latin1_spaces()


def _header_cut(token: bytes) -> Optional[bytes]:
    """``token`` as an old Tornado hands it over from ``Authorization``, when that differs:
    ``voilà`` (``...C3 A0``) arrives as ``...C3``. None when the header keeps it whole."""
    if not _HEADER_CUTS_TOKENS:
        return None
    cut = token.decode("latin-1").rstrip().encode("latin-1")
    if cut == token or not cut:
        return None
    try:
        cut.decode("utf-8")
    except UnicodeDecodeError:
        return cut  # a character lost its last byte(s): only Tornado's strip does that
    return None  # the token ends with real whitespace, which no header carries anyway


def token_valid(expected: Optional[str], given: Any) -> bool:
    """True when no token is configured, or ``given`` is it (constant-time, on UTF-8 bytes).

    ``given`` is what the client sent: bytes (:func:`request_token`), text (the Socket.IO
    auth object's ``token``, taken as UTF-8) or None. Never raises: text without a UTF-8
    form (a lone surrogate) and any other type are refusals.
    """
    if expected is None or (isinstance(expected, (str, bytes)) and not expected):
        return True
    want, got = _token_bytes(expected), _token_bytes(given)
    if want is None or got is None:
        return False
    match = hmac.compare_digest(want, got)
    cut = _header_cut(want)  # depends on the configured token only: no timing signal
    if cut is not None:
        match = hmac.compare_digest(cut, got) | match
    return match


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


# --- the token in logs --------------------------------------------------------------------

MASK = "***"
_LOG_SAFE = "/:@!$'()*,~"  # left as they are in a logged query (with letters, digits, _.-)
_PATH_PARAMETER_RE = re.compile(r";([^;/=?]*)=([^;/?]*)")
_AUTHORIZATION_RE = re.compile(r"""(?i)(authorization['"]?\s*[:=]\s*['"]?)[^'"\r\n]*""")
_BEARER_RE = re.compile(r"""(?i)\b(bearer\s+)[^\s'",;)\]}]+""")
_JSON_TOKEN_RE = re.compile(r"""(?i)(['"]token['"]\s*:\s*)("(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|[^\s,}\]]+)""")
_WORD_RE = re.compile(r"\S+")


def _is_token_key(key: str) -> bool:
    """Whether a decoded query key names a token: ``token`` in any case, spaces around it
    ignored, read as Latin-1 and as UTF-8 (a superset of the one key the server accepts)."""
    names = [key]
    raw = wire_bytes(key)
    if raw is not None:
        names.append(raw.decode("utf-8", "replace"))
    return any(name.strip().casefold() == TOKEN_KEY for name in names)


def _hides_token(key: str, value: str) -> bool:
    if _is_token_key(key):
        return True
    # ``;`` separates parameters for older Pythons' parse_qs (before 3.8.8/3.9.2) and many
    # proxies: ``a=1;token=T`` is masked whole wherever parse_qsl splits it.
    pieces = (key + "=" + value).split(";")
    return any(_is_token_key(piece.partition("=")[0]) for piece in pieces[1:])


def _log_quote(text: str) -> str:
    return quote(text, safe=_LOG_SAFE, encoding="latin-1", errors="backslashreplace")


def redact_query(query: str) -> str:
    """``query`` rebuilt from what the server decodes of it (:func:`query_pairs`), every
    parameter whose key decodes to ``token`` (any case, any encoding, after a ``;`` too)
    with the value ``***``, the others re-encoded."""
    return "&".join(
        _log_quote(key) + "=" + (MASK if _hides_token(key, value) else _log_quote(value))
        for key, value in query_pairs(query)
    )


def _query_hides_token(query: str) -> bool:
    return any(_hides_token(key, value) for key, value in query_pairs(query))


def redact_token(uri: str) -> str:
    """``uri`` as the logs show it: the query rebuilt by :func:`redact_query` (so the value of
    every ``token`` parameter, however encoded, is ``***``) and ``;token=`` path parameters
    masked. The path is otherwise left as sent."""
    path, sep, query = (uri or "").partition("?")
    path = _PATH_PARAMETER_RE.sub(
        lambda m: ";%s=%s" % (m.group(1), MASK if _is_token_key(unquote(m.group(1), "latin-1")) else m.group(2)),
        path,
    )
    return path + sep + redact_query(query) if sep else path


def redact_text(text: str) -> str:
    """Free log text with every token masked that a request could have put there: a query
    (each word holding ``?`` or ``=``, read as :func:`redact_token` reads a URI), an
    ``Authorization`` value, a ``Bearer`` credential and a JSON ``"token"`` member."""
    def word(match: Any) -> str:
        run = match.group(0)
        if "=" not in run:
            return run
        _, sep, query = run.partition("?")
        if sep:
            return redact_token(run) if _query_hides_token(query) else run
        return redact_query(run) if _query_hides_token(run) else run

    text = _AUTHORIZATION_RE.sub(r"\1" + MASK, text)
    text = _BEARER_RE.sub(r"\1" + MASK, text)
    text = _JSON_TOKEN_RE.sub(r'\1"%s"' % MASK, text)
    return _WORD_RE.sub(word, text)


class _Shown:
    """A log argument replaced by ready-made text, for %s and for %r."""

    def __init__(self, text: str, shown: Optional[str] = None) -> None:
        self.text = text
        self.shown = text if shown is None else shown

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return self.shown


def _request_repr(request: HTTPServerRequest) -> str:
    fields = ("protocol", "host", "method", "uri", "version", "remote_ip")
    shown = ("%s=%r" % (name, redact_token(request.uri or "") if name == "uri" else getattr(request, name, None))
             for name in fields)
    return "%s(%s)" % (type(request).__name__, ", ".join(shown))


def _safe_arg(arg: Any) -> Any:
    """A log argument with its tokens masked (the argument itself when it holds none)."""
    if isinstance(arg, HTTPServerRequest):  # in tornado's "Uncaught exception" line
        return _Shown(_request_repr(arg))
    if arg is None or isinstance(arg, (bool, int, float)):
        return arg
    plain, shown = str(arg), repr(arg)
    safe_plain, safe_shown = redact_text(plain), redact_text(shown)
    if safe_plain == plain and safe_shown == shown:
        return arg
    return safe_plain if isinstance(arg, str) else _Shown(safe_plain, safe_shown)


class TokenLogFilter(logging.Filter):
    """Masks tokens in the records of the loggers that may print a request (Tornado's,
    python-engineio's and python-socketio's): request URIs and reprs, Authorization values,
    Bearer credentials, ``"token"`` members; tracebacks too. Never drops a record."""

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            args = record.args
            if isinstance(args, tuple):
                record.args = tuple(_safe_arg(arg) for arg in args)
            elif isinstance(args, dict):
                record.args = {key: _safe_arg(value) for key, value in args.items()}
            if isinstance(record.msg, str) and not record.args:  # a message formatted already
                record.msg = redact_text(record.msg)
            if record.exc_info and not record.exc_text:
                text = logging.Formatter().formatException(record.exc_info)
                if redact_text(text) != text:
                    record.exc_text = redact_text(text)
        except Exception:  # a filter must never lose a record
            pass
        return True


TOKEN_LOG_FILTER = TokenLogFilter()
FILTERED_LOGGERS = ("tornado.access", "tornado.application", "tornado.general",
                    "engineio.server", "socketio.server", "engineio", "socketio", "asyncio")


def install_token_log_filter() -> None:
    """Put :data:`TOKEN_LOG_FILTER` on :data:`FILTERED_LOGGERS` (done on import; idempotent)."""
    for name in FILTERED_LOGGERS:
        logging.getLogger(name).addFilter(TOKEN_LOG_FILTER)


install_token_log_filter()


def log_request(handler: RequestHandler) -> None:
    """The application's ``log_function``: tornado's access log line, token masked.

    Tornado's own would log ``GET /api/status?token=T``, at WARNING for a refused token. The
    query is logged as the server decodes it (:func:`redact_token`), so that a token the
    server accepts under any spelling (``to%6Ben``, ``+``, repeated keys) is masked; the
    Authorization header is never logged.
    """
    status = handler.get_status()
    if status < 400:
        log_method = access_log.info
    elif status < 500 or status == 503:
        # 503 is this service's own "no data yet / degraded" answer (health probes get it
        # all through a tegrastats restart), not a server error worth an ERROR line.
        log_method = access_log.warning
    else:
        log_method = access_log.error
    request = handler.request
    log_method("%d %s %s (%s) %.2fms", status, request.method, redact_token(request.uri or ""),
               request.remote_ip, 1000.0 * request.request_time())


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


class HealthHandler(BaseAPIHandler):
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
            "version": __version__,
        }


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
        self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter, registry: CollectorRegistry
    ) -> None:
        super().initialize(hub, config, limiter)
        self.registry = registry

    def get(self, *args: Any) -> None:
        self.set_header("Content-Type", CONTENT_TYPE_LATEST)
        self.finish(render(self.registry))


class OpenAPIHandler(BaseAPIHandler):
    """``/api/openapi.json``: the OpenAPI 3.1 description, encoded once per application."""

    def initialize(  # type: ignore[override]
        self, hub: SnapshotHub, config: Config, limiter: ConnectionLimiter, document: bytes
    ) -> None:
        super().initialize(hub, config, limiter)
        self.document = document

    def get(self, *args: Any) -> None:
        self.send_json(self.document)


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
