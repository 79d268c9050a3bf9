"""The ``/ws`` feed of a running server for ``tegrastats-api monitor``, reopened after a loss.

What it does: :class:`Link` connects to ``/ws`` (with the token), hands every frame on
and reconnects the way the dashboard does (static/app.js): 1 s after a loss, then every
2 s; 5 s after the server refused the connection (token, connection cap). It keeps the
state the status line shows (:meth:`Link.status`: ``connecting…``, ``reconnecting…``,
``refused: …``, ``stale data``, ``live``); :class:`Samples` keeps the newest document and
when documents arrive; :class:`Facts` asks the server, at each connect and every
:data:`FACTS_EVERY_S` seconds while connected (as the dashboard does), for its staleness
rule (``/api/health``'s ``stale_after``: the one rule of health and dashboard) and the
board's facts (``/api/board``) for the header.

What it does not: show anything (``monitor``) or parse the documents' contents.
"""
from __future__ import annotations

import asyncio
import json
import statistics
import time
from collections import deque
from typing import Any, Callable, Deque, Dict, Optional, Tuple

from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest
from tornado.websocket import WebSocketClientConnection, websocket_connect

from tegrastats_api.board import describe
from tegrastats_api.config import Config
from tegrastats_api.hub import STALE_INTERVALS
from tegrastats_api.probe import _headers, _query, _reason, base_url

RETRY_S = (1.0, 2.0)  # app.js reconnectionDelay, reconnectionDelayMax: 1 s, then every 2 s
REFUSED_RETRY_S = 5.0  # app.js REFUSED_RETRY_MS
FACTS_EVERY_S = 10.0  # app.js refreshes the board and the staleness rule as often
CONNECT_TIMEOUT_S = 10.0
# Pings notice a server that vanished without closing (Tornado 6.1: no pong for 30 s;
# 6.5 and later: no pong within one interval).
PING_S = 5.0


class MonitorError(Exception):
    """The server could not be reached at all (one line for the user)."""


class Link:
    """The ``/ws`` connection, reopened after every loss; its state for the status line."""

    def __init__(self, config: Config, on_frame: Callable[[str], None], on_change: Callable[[], None],
                 facts: Optional[Facts] = None) -> None:
        self.url = base_url(config, "ws") + "/ws" + _query(config)
        self.headers = _headers(config)
        self.facts = facts
        self.on_frame = on_frame
        self.on_change = on_change
        self.connected = False
        self.ever_connected = False
        self.refused = False
        self.reason = ""
        self.retry_at: Optional[float] = None
        self.failures = 0

    async def _open(self) -> WebSocketClientConnection:
        request = HTTPRequest(self.url, headers=self.headers, request_timeout=CONNECT_TIMEOUT_S)
        future = websocket_connect(request, ping_interval=PING_S)
        return await asyncio.wait_for(future, CONNECT_TIMEOUT_S)

    async def run(self, give_up: bool) -> None:
        """Connect, hand every frame on, and reconnect forever; with ``give_up``, a first
        connection that fails raises :class:`MonitorError`."""
        while True:
            try:
                conn = await self._open()
            except (OSError, HTTPClientError, asyncio.TimeoutError) as err:
                if give_up and not self.ever_connected:
                    raise MonitorError("cannot connect to %s: %s" % (self.url.split("?")[0], _reason(err))) from None
                self.refused = isinstance(err, HTTPClientError) and err.code < 599
                await self._wait(_reason(err), REFUSED_RETRY_S if self.refused else self._backoff())
                continue
            self.connected = self.ever_connected = True
            self.refused, self.reason, self.retry_at, self.failures = False, "", None, 0
            self.on_change()
            asking = asyncio.ensure_future(self.facts.follow(self.on_change)) if self.facts else None
            try:
                message = await conn.read_message()
                while message is not None:
                    self.on_frame(str(message))
                    message = await conn.read_message()
            finally:
                conn.close()
                if asking is not None:
                    asking.cancel()
            self.connected = False
            await self._wait(conn.close_reason or "the server closed the connection", self._backoff())

    def _backoff(self) -> float:
        self.failures += 1
        return RETRY_S[min(self.failures, len(RETRY_S)) - 1]

    async def _wait(self, reason: str, delay: float) -> None:
        self.reason, self.retry_at = reason, time.monotonic() + delay
        self.on_change()
        await asyncio.sleep(delay)

    def status(self, age: Optional[float], stale_after: float) -> Tuple[str, str]:
        """(text, style) of the connection state as the dashboard's badge says it."""
        if not self.connected:
            wait = "" if self.retry_at is None else "; retry in %d s" % max(1, round(self.retry_at - time.monotonic()))
            if self.refused:
                return "refused: %s (%s)" % (self.reason, wait[2:]), "hot"
            word = "reconnecting\u2026" if self.ever_connected else "connecting\u2026"
            return (word + " (%s%s)" % (self.reason, wait) if self.reason else word), "warn"
        if age is None:
            return "connected, waiting for the first sample\u2026", "warn"
        if age > stale_after:
            return "stale data (age %d s)" % round(age), "warn"
        return "live", "good"


class Samples:
    """The newest document and when documents arrive (for the age and the stale rule)."""

    def __init__(self) -> None:
        self.doc: Optional[Dict[str, Any]] = None
        self.last_at: Optional[float] = None
        self.spacings: Deque[float] = deque(maxlen=8)

    def add(self, doc: Dict[str, Any]) -> None:
        now = time.monotonic()
        if self.last_at is not None:
            self.spacings.append(now - self.last_at)
        self.doc, self.last_at = doc, now

    def age(self) -> Optional[float]:
        return None if self.last_at is None else time.monotonic() - self.last_at

    def stale_after(self, facts: Optional[Facts] = None) -> float:
        """The server's ``stale_after`` once known; until then the same rule
        (:data:`~tegrastats_api.hub.STALE_INTERVALS` intervals) on the measured spacing."""
        if facts is not None and facts.stale_after is not None:
            return facts.stale_after
        interval = statistics.median(self.spacings) if self.spacings else 1.0
        return STALE_INTERVALS * interval


class Facts:
    """What the monitor asks the server besides the samples: ``/api/health``'s
    ``stale_after`` (no token needed) and the ``/api/board`` document, as one header line
    (:func:`tegrastats_api.board.describe`). A failed question keeps what was known."""

    def __init__(self, config: Config) -> None:
        self.base = base_url(config)
        self.headers = _headers(config)
        self.stale_after: Optional[float] = None
        self.board: str = ""

    async def _get(self, path: str) -> Optional[Dict[str, Any]]:
        request = HTTPRequest(self.base + path, headers=self.headers, request_timeout=CONNECT_TIMEOUT_S)
        try:
            response = await AsyncHTTPClient().fetch(request, raise_error=False)
        except (OSError, asyncio.TimeoutError):
            return None
        if response.code not in (200, 503):  # health answers 503 with the same body when stale
            return None
        try:
            body = json.loads(response.body)
        except ValueError:
            return None
        return body if isinstance(body, dict) else None

    async def ask(self) -> None:
        health = await self._get("/api/health")
        if health is not None and isinstance(health.get("stale_after"), (int, float)):
            self.stale_after = float(health["stale_after"])
        board = await self._get("/api/board")
        if board is not None and (board.get("model") or board.get("source") == "simulator"):
            self.board = describe(board)  # nothing when the server knows nothing of its board

    async def follow(self, on_change: Callable[[], None]) -> None:
        """Ask now and every :data:`FACTS_EVERY_S` seconds (until cancelled)."""
        while True:
            before = (self.stale_after, self.board)
            await self.ask()
            if (self.stale_after, self.board) != before:
                on_change()
            await asyncio.sleep(FACTS_EVERY_S)
