"""The hub: one place where each tegrastats line becomes a sample for every client.

What it does: :class:`SnapshotHub` parses each line once (:func:`parse_line`), keeps the
latest sample and a bounded history, encodes each sample's JSON document once (reused by
REST and ``/ws``), encodes the REST section documents lazily once per sample, counts
samples, parse errors and restarts, integrates each rail's energy (:mod:`tegrastats_api.energy`),
answers history queries (``/api/history``) from the pre-encoded samples, and fans each
sample out to subscribers. A subscriber that raises is logged and dropped; the others
still get the sample.
:class:`ConnectionLimiter` counts the push clients of ``/ws`` and Socket.IO together.

What it does not: read tegrastats (see :mod:`tegrastats_api.source`), know about HTTP or
sockets, or keep any global state: the server builds one hub and hands it around.
"""
from __future__ import annotations

import collections
import json
import logging
import time
from typing import Any, Callable, Deque, Dict, Hashable, List, NamedTuple, Optional, Sequence, Tuple

from tegrastats_api.energy import EnergyMeter
from tegrastats_api.fields import Path, select
from tegrastats_api.parser import ParseError, parse_line
from tegrastats_api.snapshot import Snapshot
from tegrastats_api.summary import summarize

log = logging.getLogger(__name__)

Document = Dict[str, Any]
Subscriber = Callable[[Document, bytes], None]

SECTIONS = ("cpu", "memory", "temperature", "power")
STALE_INTERVALS = 5  # a sample older than this many intervals makes the service degraded
UNHEALTHY_STATES = frozenset({"restarting", "missing", "stopped"})
_LOG_FIRST_ERRORS = 5  # log the first few bad lines, then every _LOG_EVERY_ERRORS-th
_LOG_EVERY_ERRORS = 100


def encode_document(document: Document) -> bytes:
    """Compact JSON of one document, as UTF-8 bytes (the only encoder of the hub)."""
    return json.dumps(document, separators=(",", ":")).encode("utf-8")


class Sample(NamedTuple):
    """One parsed line: the snapshot, its document and the document's JSON bytes."""

    snapshot: Snapshot
    document: Document
    payload: bytes


class SnapshotHub:
    """Latest sample, bounded history, counters and fan-out for one source.

    ``source`` names what produces the lines (``tegrastats``, ``simulator``, ``replay``)
    and goes into every document; ``clock`` gives epoch seconds (tests pass a fake one);
    ``interval_s`` is the sample interval, used to tell fresh data from stale; ``board``
    names the simulated board, when the lines come from the simulator (None otherwise).
    """

    def __init__(
        self,
        source: str,
        *,
        clock: Callable[[], float] = time.time,
        history_size: int = 300,
        interval_s: float = 1.0,
        board: Optional[str] = None,
    ) -> None:
        self.source = source
        self.board = board
        self.clock = clock
        self.interval_s = interval_s
        self.history: Deque[Sample] = collections.deque(maxlen=max(1, history_size))
        self.state: Optional[str] = None
        self.samples = 0
        self.parse_errors = 0
        self.restarts = 0
        self.last_sample_at: Optional[float] = None
        self.energy = EnergyMeter(max_gap_s=STALE_INTERVALS * interval_s)
        self._views: Dict[Hashable, bytes] = {}  # encodings derived from the newest sample
        self._subscribers: List[Subscriber] = []

    @property
    def latest(self) -> Optional[Snapshot]:
        """The newest snapshot, or None before the first sample."""
        return self.history[-1].snapshot if self.history else None

    @property
    def latest_document(self) -> Optional[Document]:
        """The newest document (shared: callers must not modify it), or None."""
        return self.history[-1].document if self.history else None

    @property
    def latest_json(self) -> Optional[bytes]:
        """The newest document as JSON bytes, encoded once per sample; None before the first."""
        return self.history[-1].payload if self.history else None

    def feed_line(self, line: str) -> None:
        """Parse one line and publish it; a line that is not tegrastats is counted and logged."""
        now = self.clock()
        try:
            snapshot = parse_line(line, received_at=now, source=self.source)
        except ParseError:
            self._count_bad_line("unparseable line %r", line[:120])
            return
        document = snapshot.to_dict()
        sample = Sample(snapshot, document, encode_document(document))
        self.history.append(sample)
        self._views = {}
        self.samples += 1
        self.last_sample_at = snapshot.received_at
        self.energy.add(now, {name: rail.current_mw for name, rail in snapshot.rails.items()})
        self._publish(sample)

    def discard(self, reason: str) -> None:
        """Count a line the source dropped (too long, not UTF-8) as a parse error."""
        self._count_bad_line("discarded line: %s", reason)

    def set_state(self, state: str) -> None:
        """Record the source's state; each change to ``restarting`` counts one restart."""
        if state == "restarting" and self.state != "restarting":
            self.restarts += 1
        if state != self.state:
            log.info("source %s: %s", self.source, state)
        self.state = state

    def view_json(self, key: Hashable, build: Callable[[Document], Document]) -> Optional[bytes]:
        """``build(newest document)`` as JSON bytes, encoded at most once per sample and key.

        None before the first sample. Every client asking for the same view of the same
        sample (a section, the summary, one ``fields=`` list) shares one encoding.
        """
        document = self.latest_document
        if document is None:
            return None
        payload = self._views.get(key)
        if payload is None:
            payload = encode_document(build(document))
            self._views[key] = payload
        return payload

    def section_json(self, section: str) -> Optional[bytes]:
        """``{"<section>": ..., "timestamp": ...}`` of the newest sample as JSON bytes.

        Raises KeyError for a name that is not one of :data:`SECTIONS`.
        """
        if section not in SECTIONS:
            raise KeyError(section)
        return self.view_json(("section", section), lambda d: {section: d[section], "timestamp": d["timestamp"]})

    def summary_json(self) -> Optional[bytes]:
        """The ``/api/summary`` document of the newest sample (CONTRACT.md section 6)."""
        return self.view_json("summary", summarize)

    def fields_json(self, paths: Sequence[Path]) -> Optional[bytes]:
        """The newest document cut down to ``paths`` (see :mod:`tegrastats_api.fields`)."""
        return self.view_json(("fields", tuple(paths)), lambda d: select(d, paths))

    def history_json(self, seconds: Optional[float] = None, paths: Optional[Sequence[Path]] = None) -> Optional[bytes]:
        """``{"samples": [document, ...]}`` of the kept samples read within the last ``seconds``
        (all of them when None), oldest first; each cut down to ``paths`` when given.

        Without ``paths`` the body is joined from the bytes encoded once per sample, with
        no re-encoding. None before the first sample.
        """
        if not self.history:
            return None
        samples: List[Sample] = list(self.history)
        if seconds is not None:
            since = self.clock() - seconds
            samples = [s for s in samples if (s.snapshot.received_at or 0.0) >= since]
        if paths is None:
            parts = [s.payload for s in samples]
        else:
            parts = [encode_document(select(s.document, paths)) for s in samples]
        return b'{"samples":[' + b",".join(parts) + b"]}"

    def last_sample_age(self) -> Optional[float]:
        """Seconds since the newest sample was read, None before the first one."""
        if self.last_sample_at is None:
            return None
        return max(0.0, self.clock() - self.last_sample_at)

    def health_status(self) -> str:
        """``starting`` (no sample yet), ``healthy`` or ``degraded`` (stale data or a sick source)."""
        age = self.last_sample_age()
        if age is None:
            return "starting"
        if age > STALE_INTERVALS * self.interval_s or self.state in UNHEALTHY_STATES:
            return "degraded"
        return "healthy"

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(document, payload)`` for every new sample, in the IOLoop thread."""
        if callback not in self._subscribers:
            self._subscribers.append(callback)

    def unsubscribe(self, callback: Subscriber) -> None:
        """Stop calling ``callback``; unknown callbacks are ignored."""
        if callback in self._subscribers:
            self._subscribers.remove(callback)

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def _publish(self, sample: Sample) -> None:
        for callback in list(self._subscribers):
            try:
                callback(sample.document, sample.payload)
            except Exception:  # noqa: BLE001 - subscribers are arbitrary code
                # A broken subscriber must not stop the fan-out to the others: it is
                # logged with its traceback and dropped.
                log.exception("subscriber %r failed; dropped", callback)
                self.unsubscribe(callback)

    def _count_bad_line(self, message: str, detail: str) -> None:
        self.parse_errors += 1
        count = self.parse_errors
        if count <= _LOG_FIRST_ERRORS or count % _LOG_EVERY_ERRORS == 0:
            log.warning(message + " (%d bad lines so far)", detail, count)


class ConnectionLimiter:
    """Slots for push clients (``/ws`` and Socket.IO together), at most ``limit`` held.

    Each slot is held by an owner (a handler object or a Socket.IO sid); releasing twice
    or releasing an unknown owner is harmless, so every exit path may release.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._owners: Dict[Hashable, None] = {}

    @property
    def count(self) -> int:
        """Slots in use."""
        return len(self._owners)

    def acquire(self, owner: Hashable) -> bool:
        """Take a slot for ``owner``; False when all ``limit`` slots are taken."""
        if owner in self._owners:
            return True
        if len(self._owners) >= self.limit:
            return False
        self._owners[owner] = None
        return True

    def release(self, owner: Hashable) -> None:
        """Give back ``owner``'s slot, if it holds one."""
        self._owners.pop(owner, None)

    def holds(self, owner: Hashable) -> bool:
        return owner in self._owners

    def owners(self) -> Tuple[Hashable, ...]:
        """The current holders, oldest first (for shutdown)."""
        return tuple(self._owners)

    def refusal(self) -> str:
        """The message a refused client gets: names the limit."""
        return "too many connections (limit %d)" % self.limit
