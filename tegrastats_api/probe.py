"""Clients of a running server: the checks of ``tegrastats-api test``.

What it does: :func:`probe_all` calls every endpoint of docs/API.md (health, status, the
four sections, summary, history, ``/metrics``, the OpenAPI document, the dashboard, the
board, ``/ws`` and Socket.IO: Engine.IO 4 over a WebSocket, spoken directly, so no extra
client library is needed) and returns one :class:`Result` per check. ``monitor`` uses its
:func:`base_url` and request helpers.

What it does not: print tables itself (``cli`` does), or start a server.
"""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, Awaitable, Callable, Dict, List, NamedTuple, Tuple
from urllib.parse import quote

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest, HTTPResponse
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tegrastats_api.board import describe
from tegrastats_api.settings import Config

SECTIONS = ("cpu", "memory", "temperature", "power")
SUMMARY_MAX_BYTES = 256  # docs/API.md, GET /api/summary


class ProbeError(Exception):
    """The server could not be reached or answered something unusable."""


class Result(NamedTuple):
    """One check: its name, whether it passed, how long it took (ms), and why."""

    name: str
    ok: bool
    ms: float
    detail: str


def base_url(config: Config, scheme: str = "http") -> str:
    """Where a client reaches the server: a wildcard ``--host`` means this machine."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(config.host, config.host)
    if ":" in host:
        host = "[%s]" % host
    return "%s://%s:%d" % (scheme, host, config.port)


def _headers(config: Config) -> Dict[str, str]:
    return {"Authorization": "Bearer " + config.auth_token} if config.auth_token else {}


def _query(config: Config, first: str = "?") -> str:
    return first + "token=" + quote(config.auth_token) if config.auth_token else ""


def _reason(err: BaseException) -> str:
    if isinstance(err, HTTPClientError) and err.response is not None:
        try:
            return "HTTP %d: %s" % (err.code, json.loads(err.response.body)["error"])
        except (ValueError, KeyError, TypeError):
            return "HTTP %d" % err.code
    if isinstance(err, ConnectionRefusedError):
        return "connection refused (is the server running on this port?)"
    if isinstance(err, asyncio.TimeoutError):
        return "timed out"
    return str(err) or type(err).__name__


async def _get(config: Config, path: str, timeout: float) -> HTTPResponse:
    request = HTTPRequest(base_url(config) + path, headers=_headers(config), request_timeout=timeout)
    response = await AsyncHTTPClient().fetch(request, raise_error=False)
    if response.code == 599 and response.error is not None:
        raise response.error
    return response


async def _get_json(config: Config, path: str, timeout: float) -> Tuple[int, Any]:
    response = await _get(config, path, timeout)
    try:
        return response.code, json.loads(response.body)
    except ValueError:
        raise ProbeError("%s answered HTTP %d with non-JSON" % (path, response.code)) from None


async def _check_health(config: Config, timeout: float) -> str:
    code, body = await _get_json(config, "/api/health", timeout)
    if code != 200:
        raise ProbeError("HTTP %d, status %s" % (code, body.get("status")))
    return "%s, source %s, %d samples, %d parse errors" % (
        body["status"], body["source"], body["samples"], body["parse_errors"])


async def _check_status(config: Config, timeout: float) -> str:
    code, body = await _get_json(config, "/api/status", timeout)
    if code != 200:
        raise ProbeError("HTTP %d: %s" % (code, body.get("error")))
    if body.get("schema") != 1:
        raise ProbeError("not a schema-1 document")
    return "%d cores, RAM %s/%s MB" % (
        len(body["cpu"]["cores"]), body["memory"]["ram"]["used"], body["memory"]["ram"]["total"])


def _section_check(section: str) -> Callable[[Config, float], Awaitable[str]]:
    async def check(config: Config, timeout: float) -> str:
        code, body = await _get_json(config, "/api/" + section, timeout)
        if code != 200:
            raise ProbeError("HTTP %d: %s" % (code, body.get("error")))
        if section not in body or "timestamp" not in body:
            raise ProbeError("no %r key in the answer" % section)
        value = body[section]
        if section == "cpu":
            return "%d cores, usage %s%%" % (len(value["cores"]), value["usage"])
        if section == "memory":
            return "RAM %s/%s MB" % (value["ram"]["used"], value["ram"]["total"])
        return "%d %s" % (len(value), "sensors" if section == "temperature" else "rails")

    return check


async def _check_summary(config: Config, timeout: float) -> str:
    response = await _get(config, "/api/summary", timeout)
    body = _json_body(response, "/api/summary")
    if len(response.body) > SUMMARY_MAX_BYTES:
        raise ProbeError("%d bytes, more than %d" % (len(response.body), SUMMARY_MAX_BYTES))
    return "%d bytes, CPU %s%%, hottest %s C" % (len(response.body), body["cpu"], body["temp_max"])


async def _check_history(config: Config, timeout: float) -> str:
    code, body = await _get_json(config, "/api/history?seconds=60", timeout)
    if code != 200:
        raise ProbeError("HTTP %d: %s" % (code, body.get("error")))
    samples = body["samples"]
    if not isinstance(samples, list) or not all(isinstance(s, dict) and s.get("schema") == 1 for s in samples):
        raise ProbeError("not a list of schema-1 documents")
    return "%d samples in the last 60 s" % len(samples)


async def _check_metrics(config: Config, timeout: float) -> str:
    response = await _get(config, "/metrics", timeout)
    if response.code != 200:
        raise ProbeError(_failure(response))
    families = [line.split()[2] for line in response.body.decode("utf-8").splitlines() if line.startswith("# TYPE ")]
    if not any(name.startswith("jetson_") for name in families):
        raise ProbeError("no jetson_ metric in the answer")
    return "%d metric families" % len(families)


async def _check_board(config: Config, timeout: float) -> str:
    code, body = await _get_json(config, "/api/board", timeout)
    if code != 200:
        raise ProbeError("HTTP %d: %s" % (code, body.get("error")))
    if "model" not in body or not isinstance(body.get("fans"), list):
        raise ProbeError("not a board document")
    return describe(body)


async def _check_openapi(config: Config, timeout: float) -> str:
    code, body = await _get_json(config, "/api/openapi.json", timeout)
    if code != 200:
        raise ProbeError("HTTP %d: %s" % (code, body.get("error")))
    if not str(body.get("openapi", "")).startswith("3.") or not body.get("paths"):
        raise ProbeError("not an OpenAPI 3 document")
    return "OpenAPI %s, %d paths" % (body["openapi"], len(body["paths"]))


async def _check_dashboard(config: Config, timeout: float) -> str:
    response = await _get(config, "/", timeout)
    if response.code != 200:
        raise ProbeError(_failure(response))
    kind = response.headers.get("Content-Type", "")
    if not kind.startswith("text/html"):
        raise ProbeError("Content-Type %s, not HTML" % (kind or "missing"))
    return "%d bytes of HTML" % len(response.body)


def _failure(response: HTTPResponse) -> str:
    """``HTTP 401: missing or invalid token``: the code and the server's JSON reason if any."""
    try:
        return "HTTP %d: %s" % (response.code, json.loads(response.body)["error"])
    except (ValueError, KeyError, TypeError):
        return "HTTP %d" % response.code


def _json_body(response: HTTPResponse, path: str) -> Any:
    try:
        body = json.loads(response.body)
    except ValueError:
        raise ProbeError("%s answered HTTP %d with non-JSON" % (path, response.code)) from None
    if not isinstance(body, dict):
        raise ProbeError("%s answered HTTP %d with JSON that is not an object" % (path, response.code))
    if response.code != 200:
        raise ProbeError("HTTP %d: %s" % (response.code, body.get("error")))
    return body


async def _connect(config: Config, url: str, timeout: float) -> WebSocketClientConnection:
    request = HTTPRequest(url, headers=_headers(config), request_timeout=timeout)
    return await asyncio.wait_for(websocket_connect(request), timeout)


async def _check_ws(config: Config, timeout: float) -> str:
    conn = await _connect(config, base_url(config, "ws") + "/ws" + _query(config), timeout)
    try:
        message = await asyncio.wait_for(conn.read_message(), timeout)
    finally:
        conn.close()
    if message is None:
        raise ProbeError("closed without a frame")
    document = json.loads(message)
    return "first frame %d bytes, schema %s" % (len(message), document.get("schema"))


def _refusal_reason(payload: str) -> str:
    """The reason of a Socket.IO CONNECT_ERROR: ``{"message": ...}``, or a bare string
    from a server on python-socketio 5.0 (or nothing at all)."""
    try:
        data = json.loads(payload)
    except ValueError:
        return payload or "no reason given"
    if isinstance(data, dict):
        data = data.get("message")
    return str(data) if data else "no reason given"


async def _check_socketio(config: Config, timeout: float) -> str:
    """Engine.IO 4 open, Socket.IO connect, then wait for ``tegrastats_update``."""
    url = base_url(config, "ws") + "/socket.io/?EIO=4&transport=websocket" + _query(config, "&")
    conn = await _connect(config, url, timeout)
    try:
        deadline = time.monotonic() + timeout
        connected = False
        while time.monotonic() < deadline:
            packet = await asyncio.wait_for(conn.read_message(), max(0.01, deadline - time.monotonic()))
            if packet is None:
                raise ProbeError("closed by the server")
            packet = str(packet)
            if packet.startswith("0"):  # Engine.IO open: now connect the namespace
                auth = json.dumps({"token": config.auth_token}) if config.auth_token else ""
                await conn.write_message("40" + auth)
            elif packet == "2":  # Engine.IO ping
                await conn.write_message("3")
            elif packet.startswith("44"):
                raise ProbeError("connect refused: %s" % _refusal_reason(packet[2:]))
            elif packet.startswith("40"):
                connected = True
            elif packet.startswith("42"):
                event, document = json.loads(packet[2:])[:2]
                if event == "tegrastats_update" and connected:
                    return "tegrastats_update, schema %s" % document.get("schema")
        raise ProbeError("no tegrastats_update within %.1f s" % timeout)
    finally:
        conn.close()


CHECKS: List[Tuple[str, Callable[[Config, float], Awaitable[str]]]] = (
    [("health", _check_health), ("status", _check_status)]
    + [(section, _section_check(section)) for section in SECTIONS]
    + [("summary", _check_summary), ("history", _check_history), ("board", _check_board), ("metrics", _check_metrics),
       ("openapi", _check_openapi), ("dashboard", _check_dashboard)]
    + [("websocket", _check_ws), ("socket.io", _check_socketio)]
)


async def _probe_all(config: Config, timeout: float) -> List[Result]:
    results = []
    for name, check in CHECKS:
        start = time.perf_counter()
        try:
            detail, ok = await check(config, timeout), True
        except (ProbeError, OSError, HTTPClientError, asyncio.TimeoutError, ValueError, KeyError) as err:
            detail, ok = _reason(err), False
        results.append(Result(name, ok, (time.perf_counter() - start) * 1000, detail))
    return results


def probe_all(config: Config, timeout: float = 5.0) -> List[Result]:
    """Run every check against the server at ``config.host:config.port``."""
    return asyncio.run(_probe_all(config, max(timeout, 3 * config.update_interval)))


def format_table(results: List[Result]) -> List[str]:
    """The report of ``tegrastats-api test``: one row per check, then a summary line."""
    lines = ["%-12s %-6s %9s  %s" % ("check", "result", "time", "detail")]
    for r in results:
        lines.append("%-12s %-6s %7.1f ms  %s" % (r.name, "PASS" if r.ok else "FAIL", r.ms, r.detail))
    failed = sum(not r.ok for r in results)
    lines.append("%d passed, %d failed" % (len(results) - failed, failed))
    return lines
