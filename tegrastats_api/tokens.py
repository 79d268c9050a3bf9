"""The token: where a request carries it, how it is checked, and how it is kept out of logs.

What it does: :func:`request_token` reads the client's token from ``Authorization: Bearer``
or ``?token=`` as the bytes the client sent (header values are re-encoded from Tornado's
Latin-1, the query is percent-decoded byte for byte), :func:`token_valid` compares it with
the configured token in constant time and never raises, and everything that may write a
request to a log (:func:`log_request`, the access log; :class:`TokenLogFilter` on Tornado's,
python-engineio's and python-socketio's loggers, installed by :func:`install_token_log_filter`)
masks every query key that decodes to ``token``, Authorization values and ``"token"`` members.
The query is read by one function, :func:`query_pairs`, for checking and masking alike, so
what is accepted and what is masked cannot diverge.

What it does not: decide which endpoints need the token (the handlers do), or configure
logging (only :mod:`tegrastats_api.cli` does; the filter only masks records).
"""
from __future__ import annotations

import hmac
import logging
import re
from typing import Any, List, Optional, Tuple
from urllib.parse import parse_qsl, quote, unquote

from tornado.httputil import HTTPHeaders, HTTPInputError, HTTPServerRequest
from tornado.log import access_log
from tornado.web import RequestHandler

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
    except HTTPInputError:  # a Tornado that refuses the byte does not strip it either
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
    """Put :data:`TOKEN_LOG_FILTER` on :data:`FILTERED_LOGGERS` (make_app does; idempotent)."""
    for name in FILTERED_LOGGERS:
        logging.getLogger(name).addFilter(TOKEN_LOG_FILTER)



def log_request(handler: RequestHandler) -> None:
    """The application's ``log_function``: tornado's access log line, token masked.

    Tornado's own would log ``GET /api/status?token=T``, at WARNING for a refused token. The
    query is logged as the server decodes it (:func:`redact_token`), so that a token the
    server accepts under any spelling (``to%6Ben``, ``+``, repeated keys) is masked; the
    Authorization header is never logged. Error answers are logged at WARNING (ERROR from
    500, but 503), or at INFO when the handler set ``routine_refusal``.
    """
    status = handler.get_status()
    if status < 400 or getattr(handler, "routine_refusal", False):
        # routine_refusal: a handler's answer to something clients do in normal use (a
        # Socket.IO poll racing its own disconnect), not worth a WARNING line.
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
