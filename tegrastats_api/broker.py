"""The MQTT settings' values: the broker URL (password masked wherever it is shown) and topics.

What it does: :func:`parse_broker_url` turns ``--mqtt``'s ``mqtt://[user:password@]host[:port]``
or ``mqtts://...`` into a :class:`BrokerURL`, whose ``str()`` and ``repr()`` show the password
as ``***`` (so ``tegrastats-api config``, a logged Config and every log line that names the
broker never show it); :func:`check_topic` and :func:`node_id` check and derive topic parts.
Each raises ValueError with one line saying what is wrong (:mod:`tegrastats_api.config` names
the setting).

What it does not: connect (see :mod:`tegrastats_api.mqtt`) or read any file.
"""
from __future__ import annotations

import re
from typing import Any, Optional
from urllib.parse import quote, unquote, urlsplit

SCHEMES = {"mqtt": 1883, "mqtts": 8883}
MASK = "***"
TOPIC_LIMIT = 200  # characters of a prefix; the topics built from it stay far below MQTT's 65535 bytes
_NODE_RE = re.compile(r"[^A-Za-z0-9_-]+")


class BrokerURL:
    """A parsed ``--mqtt`` value: ``scheme`` (``mqtt``/``mqtts``), ``host``, ``port``,
    ``username`` and ``password`` (None when absent, percent-decoded). ``tls`` is True for
    ``mqtts``. Shown (``str``, ``repr``) with the password as ``***``."""

    __slots__ = ("scheme", "host", "port", "username", "password")

    def __init__(self, scheme: str, host: str, port: int, username: Optional[str] = None,
                 password: Optional[str] = None) -> None:
        self.scheme = scheme
        self.host = host
        self.port = port
        self.username = username
        self.password = password

    @property
    def tls(self) -> bool:
        return self.scheme == "mqtts"

    def _key(self) -> tuple:
        return (self.scheme, self.host, self.port, self.username, self.password)

    def __eq__(self, other: Any) -> bool:
        return isinstance(other, BrokerURL) and self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def __str__(self) -> str:
        user = ""
        if self.username is not None:
            user = quote(self.username, safe="")
            if self.password is not None:
                user += ":" + MASK
            user += "@"
        host = "[%s]" % self.host if ":" in self.host else self.host
        return "%s://%s%s:%d" % (self.scheme, user, host, self.port)

    def __repr__(self) -> str:
        return "BrokerURL(%r)" % str(self)


def parse_broker_url(value: Any) -> Optional[BrokerURL]:
    """``mqtt://[user[:password]@]host[:port]`` (or ``mqtts://``) as a :class:`BrokerURL`;
    None for an empty value or ``none``/``off``. The port defaults to 1883 (``mqtt``) or
    8883 (``mqtts``). Raises ValueError (one line, never quoting the password) when it is
    not such a URL; the host is checked by the caller."""
    if value is None or isinstance(value, BrokerURL):
        return value
    text = str(value).strip()
    if text.lower() in ("", "none", "off"):
        return None
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError:
        raise ValueError("not an mqtt://[user:password@]host[:port] URL (bad port or address)") from None
    scheme = parts.scheme.lower()
    if scheme not in SCHEMES:
        raise ValueError("the scheme must be mqtt:// or mqtts://, not %r" % (parts.scheme + "://"))
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ValueError("takes no path, query or fragment: mqtt://[user:password@]host[:port]")
    if not parts.hostname:
        raise ValueError("no broker host: mqtt://[user:password@]host[:port]")
    if port == 0:
        raise ValueError("port 0 is not a broker's port (1-65535)")
    username = unquote(parts.username) if parts.username is not None else None
    password = unquote(parts.password) if parts.password is not None else None
    if username == "" and password is None:
        username = None  # mqtt://@host
    return BrokerURL(scheme, parts.hostname, port or SCHEMES[scheme], username, password)


def check_topic(value: Any, what: str = "topic") -> str:
    """``value`` as a topic prefix without trailing ``/``; raises ValueError when it is empty,
    holds a wildcard (``+``, ``#``), a NUL or an empty level, or is over :data:`TOPIC_LIMIT`."""
    text = str(value).strip().rstrip("/")
    if not text:
        raise ValueError("an empty %s" % what)
    if "+" in text or "#" in text or "\0" in text:
        raise ValueError("%r: a %s holds no wildcard (+, #) or NUL" % (text, what))
    if "//" in text or text.startswith("/"):
        raise ValueError("%r: a %s has no empty level (no leading or double /)" % (text, what))
    if len(text) > TOPIC_LIMIT:
        raise ValueError("a %s of %d characters is over the limit of %d" % (what, len(text), TOPIC_LIMIT))
    return text


def node_id(prefix: str) -> str:
    """The Home Assistant node id of a topic prefix: ``tegrastats/orin-01`` -> ``tegrastats_orin-01``
    (characters outside ``[A-Za-z0-9_-]`` become ``_``); stable as long as the prefix is."""
    return _NODE_RE.sub("_", prefix).strip("_") or "tegrastats"
