"""The hub: one place where each tegrastats line becomes a sample for every client.

What it does: :class:`SnapshotHub` parses each line once (its own
:class:`~tegrastats_api.shapes.LineParser`: ``parse_line``, compiled per line shape), keeps the
latest sample and a bounded history, encodes each sample's JSON document once (reused by
REST and ``/ws``), encodes the REST section documents lazily once per sample, counts
samples, parse errors and restarts, integrates each rail's energy (:mod:`tegrastats_api.energy`),
answers history queries (``/api/history``) from the pre-encoded samples, and fans each
sample out to subscribers. A subscriber that raises is logged and dropped; the others
still get the sample.
:class:`ConnectionLimiter` counts the push clients of ``/ws`` and Socket.IO together.

Caches keyed by what clients ask for (``fields=`` lists) are :class:`ViewCache` LRUs bounded
both in entries and in (estimated) bytes, so no number of distinct requests can grow the
server past them (docs/API.md "fields="):

- the views of the newest sample (sections, summary): :data:`VIEWS_MAX_ENTRIES` entries,
  :data:`VIEWS_MAX_BYTES`; the ``fields=`` views of the newest sample:
  :data:`FIELD_VIEWS_MAX_ENTRIES` entries, :data:`FIELD_VIEWS_MAX_BYTES`; both emptied at
  every sample;
- the ``/api/history?fields=`` views: per field list, the encoded projection of each kept
  sample, filled in as requests need them (each sample is encoded once per list, not once
  per request), :data:`HISTORY_VIEWS_MAX_ENTRIES` lists, :data:`HISTORY_VIEWS_MAX_BYTES`.
  :meth:`SnapshotHub.history_steps` builds an answer in steps of at most
  :data:`HISTORY_STEP` new encodings, so that a server can let other requests run between
  them.

What it does not: read tegrastats (see :mod:`tegrastats_api.source`), know about HTTP or
sockets, or keep any global state: the server builds one hub and hands it around.
"""
from __future__ import annotations

import collections
import functools
import logging
import re
import time
from types import ModuleType
from typing import (
    Any,
    Callable,
    Deque,
    Dict,
    Generator,
    Generic,
    Hashable,
    List,
    Optional,
    Sequence,
    Tuple,
    TypeVar,
)

from tegrastats_api.energy import EnergyMeter
from tegrastats_api.fields import Path, merge_paths, project
from tegrastats_api.parser import ParseError
from tegrastats_api.shapecode import encode_standard
from tegrastats_api.shapes import LineParser, Parsed
from tegrastats_api.snapshot import Snapshot
from tegrastats_api.summary import summarize

log = logging.getLogger(__name__)

Document = Dict[str, Any]
Subscriber = Callable[["Sample"], None]

SECTIONS = ("cpu", "memory", "temperature", "power")
# The one staleness rule (docs/API.md, GET /api/health): the newest sample is stale once it
# is older than this many sample intervals. /api/health turns degraded then, the dashboard
# (which reads stale_after from /api/health) says "stale data", and the energy counter
# leaves such a gap out.
STALE_INTERVALS = 5
UNHEALTHY_STATES = frozenset({"restarting", "missing", "stopped"})
_LOG_FIRST_ERRORS = 5  # log the first few bad lines, then every _LOG_EVERY_ERRORS-th
_LOG_EVERY_ERRORS = 100

# Bounds of the caches (see the module docstring). A cache's bytes are estimated: the
# encoded JSON, the key's strings and a fixed overhead per entry and per history sample.
VIEWS_MAX_ENTRIES = 32  # the hub's own views (4 sections and the summary): never full
VIEWS_MAX_BYTES = 1024 * 1024
FIELD_VIEWS_MAX_ENTRIES = 128  # distinct fields= lists of the newest sample
FIELD_VIEWS_MAX_BYTES = 1024 * 1024
HISTORY_VIEWS_MAX_ENTRIES = 16  # distinct fields= lists of /api/history
HISTORY_VIEWS_MAX_BYTES = 8 * 1024 * 1024  # 300 AGX Orin samples cut to nothing: ~60 kB; whole: ~600 kB
HISTORY_STEP = 32  # new encodings between two pauses of history_steps (about 3 ms on a Jetson)
ENTRY_OVERHEAD_BYTES = 200  # a cache entry's own objects (key tuple, node, bytes header)
PART_OVERHEAD_BYTES = 110  # one history sample's encoding: bytes header, dict slot, int key

V = TypeVar("V")


@functools.lru_cache(maxsize=None)
def _orjson_module() -> Optional[ModuleType]:
    """orjson, an optional speed-up used where installed for the very same bytes
    (:func:`encode_document`); None without it. Imported at the first encoding, not at
    start-up: about 0.9 MB of RSS a server nobody reads never needs."""
    try:
        import orjson
    except ImportError:
        return None
    return orjson

# What orjson writes unlike json.dumps: exponents (1e-5 for 1e-05, 1e16 for 1e+16), found by
# a digit before an "e" (also in some strings: those just take the standard encoder). The
# search is ``[0-9][eE]`` done as one translate (digits to 0, E to e) and a search for ``0e``:
# four times faster than that regex on a 2 kB document (a literal search skips ahead).
_EXPONENT_MARKS = bytes.maketrans(b"0123456789E", b"0000000000e")
_EXPONENT_RE = re.compile(b"0e")


def encode_document(document: Document) -> bytes:
    """Compact JSON of one document, as UTF-8 bytes (the hub's encoder of documents; a
    compiled shape writes the same bytes from the line itself, ``Parsed.json``):
    ``json.dumps(document, separators=(",", ":"))``, ASCII only.

    With orjson installed (an optional speed-up, several times faster) orjson encodes, and
    its answer is used only where it is certainly those bytes: all ASCII (orjson writes other
    text as UTF-8, json as ``\\u`` escapes) and no number in exponent form; anything orjson
    refuses (non-text keys, integers over 64 bits) or may write differently goes to the
    standard encoder. Documents hold no NaN or infinity (orjson would write null).
    """
    orjson = _orjson_module()
    if orjson is not None:
        try:
            encoded: bytes = orjson.dumps(document)
        except TypeError:  # orjson.JSONEncodeError is a TypeError
            pass
        else:
            if encoded.isascii() and _EXPONENT_RE.search(encoded.translate(_EXPONENT_MARKS)) is None:
                return encoded
    return encode_standard(document).encode("utf-8")


def json_encoder() -> str:
    """Which encoder :func:`encode_document` uses: ``orjson X.Y`` or ``json (standard library)``."""
    orjson = _orjson_module()
    if orjson is not None:
        return "orjson %s" % getattr(orjson, "__version__", "")
    return "json (standard library)"


class Sample:
    """One parsed line: the snapshot, its document, the document's JSON bytes, and its
    number (``seq``: 0 for the hub's first sample, counting up; never reused).

    The snapshot, the document and its JSON are each made at their first use (a client, a
    request, a subscriber), once (:class:`~tegrastats_api.shapes.Parsed`): a server nobody
    is watching only matches its lines, its clients' documents need no snapshot, and the
    JSON pushed to them needs no document.
    """

    __slots__ = ("parsed", "seq", "_document", "_payload")

    def __init__(self, parsed: Parsed, seq: int = 0) -> None:
        self.parsed = parsed
        self.seq = seq
        self._document: Optional[Document] = None
        self._payload: Optional[bytes] = None

    @property
    def snapshot(self) -> Snapshot:
        return self.parsed.snapshot()

    @property
    def received_at(self) -> Optional[float]:
        return self.parsed.received_at

    @property
    def document(self) -> Document:
        if self._document is None:
            self._document = self.parsed.document()
        return self._document

    @property
    def payload(self) -> bytes:
        """The document's JSON (:func:`encode_document`'s bytes); of a line a compiled shape
        read, made straight from the line's numbers, without the document."""
        if self._payload is None:
            self._payload = self.parsed.json() or encode_document(self.document)
        return self._payload


def paths_cost(paths: Sequence[Path]) -> int:
    """Estimated bytes held by a cache key made of ``paths``."""
    return sum(64 + sum(56 + len(key) for key in path) for path in paths)


class ViewCache(Generic[V]):
    """A least-recently-used map bounded by ``max_entries`` and by ``max_bytes`` of costs.

    :meth:`put` gives each value its cost (estimated bytes); the least recently used
    entries go first when either bound is passed, and a value that alone costs more than
    ``max_bytes`` is not kept at all. ``evictions`` counts what was dropped to make room.
    """

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.bytes = 0
        self.evictions = 0
        self._entries: collections.OrderedDict[Hashable, Tuple[V, int]] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._entries

    def keys(self) -> List[Hashable]:
        """The keys, least recently used first."""
        return list(self._entries)

    def get(self, key: Hashable) -> Optional[V]:
        """The value of ``key`` (now the most recently used), or None."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        self._entries.move_to_end(key)
        return entry[0]

    def put(self, key: Hashable, value: V, cost: int) -> bool:
        """Keep ``value`` under ``key`` as the most recently used, evicting the least recently
        used entries to stay within the bounds. False (and nothing kept under ``key``) when
        ``value`` alone is over ``max_bytes`` or ``max_entries`` is 0."""
        self.discard(key)
        if cost > self.max_bytes or self.max_entries < 1:
            return False
        self._entries[key] = (value, cost)
        self.bytes += cost
        while len(self._entries) > self.max_entries or self.bytes > self.max_bytes:
            _key, (_value, old_cost) = self._entries.popitem(last=False)
            self.bytes -= old_cost
            self.evictions += 1
        return True

    def discard(self, key: Hashable) -> None:
        """Forget ``key``, if present."""
        entry = self._entries.pop(key, None)
        if entry is not None:
            self.bytes -= entry[1]

    def clear(self) -> None:
        self._entries.clear()
        self.bytes = 0


class HistoryView:
    """One ``fields=`` list's encoded projections of the kept samples, by sample ``seq``."""

    __slots__ = ("parts", "bytes", "floor")

    def __init__(self, key_cost: int) -> None:
        self.parts: Dict[int, bytes] = {}
        self.bytes = ENTRY_OVERHEAD_BYTES + key_cost  # estimated, as ViewCache counts it
        self.floor = 0  # samples below this seq have left the history

    def add(self, seq: int, part: bytes) -> None:
        if seq >= self.floor and seq not in self.parts:
            self.parts[seq] = part
            self.bytes += len(part) + PART_OVERHEAD_BYTES

    def prune(self, oldest_seq: int) -> None:
        """Drop the encodings of samples older than ``oldest_seq`` (gone from the history)."""
        if oldest_seq <= self.floor:
            return
        self.floor = oldest_seq
        for seq in [seq for seq in self.parts if seq < oldest_seq]:
            self.bytes -= len(self.parts.pop(seq)) + PART_OVERHEAD_BYTES


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
        self.parser = LineParser()  # parse_line's results, at a third of its cost per line
        self.state: Optional[str] = None
        self.samples = 0
        self.parse_errors = 0
        self.restarts = 0
        self.last_sample_at: Optional[float] = None
        self.energy = EnergyMeter(max_gap_s=self.stale_after_s)
        # Encodings derived from the newest sample (emptied at every sample), and the
        # history's fields= views; all bounded (module docstring).
        self._views: ViewCache[bytes] = ViewCache(VIEWS_MAX_ENTRIES, VIEWS_MAX_BYTES)
        self._field_views: ViewCache[bytes] = ViewCache(FIELD_VIEWS_MAX_ENTRIES, FIELD_VIEWS_MAX_BYTES)
        self._history_views: ViewCache[HistoryView] = ViewCache(HISTORY_VIEWS_MAX_ENTRIES, HISTORY_VIEWS_MAX_BYTES)
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
            parsed = self.parser.parse_deferred(line, received_at=now, source=self.source)
        except ParseError:
            self._count_bad_line("unparseable line %r", line[:120])
            return
        sample = Sample(parsed, self.samples)
        self.history.append(sample)
        self._views.clear()
        self._field_views.clear()
        self.samples += 1
        self.last_sample_at = now
        self.energy.add(now, parsed.power_mw)
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
        """``build(newest document)`` as JSON bytes, encoded at most once per sample and key
        while it stays in the bounded cache of the newest sample's views.

        None before the first sample. Every client asking for the same view of the same
        sample (a section, the summary) shares one encoding.
        """
        return self._view(self._views, key, 0, build)

    def _view(self, cache: ViewCache[bytes], key: Hashable, key_cost: int,
              build: Callable[[Document], Document]) -> Optional[bytes]:
        document = self.latest_document
        if document is None:
            return None
        payload = cache.get(key)
        if payload is None:
            payload = encode_document(build(document))
            cache.put(key, payload, ENTRY_OVERHEAD_BYTES + key_cost + len(payload))
        return payload

    def section_json(self, section: str) -> Optional[bytes]:
        """``{"<section>": ..., "timestamp": ...}`` of the newest sample as JSON bytes.

        Raises KeyError for a name that is not one of :data:`SECTIONS`.
        """
        if section not in SECTIONS:
            raise KeyError(section)
        return self.view_json(("section", section), lambda d: {section: d[section], "timestamp": d["timestamp"]})

    def summary_json(self) -> Optional[bytes]:
        """The ``/api/summary`` document of the newest sample (docs/API.md, ``GET /api/summary``)."""
        return self.view_json("summary", summarize)

    def fields_json(self, paths: Sequence[Path]) -> Optional[bytes]:
        """The newest document cut down to ``paths`` (see :mod:`tegrastats_api.fields`).

        Encoded once per sample and field list while it stays in the bounded cache; pass
        the canonical paths :func:`~tegrastats_api.fields.parse_fields` returns, so that
        lists meaning the same share one entry.
        """
        key = tuple(paths)
        return self._view(self._field_views, key, paths_cost(key), lambda d: project(d, merge_paths(key)))

    def history_json(self, seconds: Optional[float] = None, paths: Optional[Sequence[Path]] = None) -> Optional[bytes]:
        """``{"samples": [document, ...]}`` of the kept samples read within the last ``seconds``
        (all of them when None), oldest first; each cut down to ``paths`` when given.

        Without ``paths`` the body is joined from the bytes encoded once per sample, with
        no re-encoding; with ``paths``, from the field list's history view, which encodes
        only the samples it does not hold yet. None before the first sample. In one go:
        see :meth:`history_steps` for the same answer in steps.
        """
        answer: Optional[bytes] = None
        for step in self.history_steps(seconds, paths):
            answer = step
        return answer

    def history_steps(self, seconds: Optional[float] = None,
                      paths: Optional[Sequence[Path]] = None) -> Generator[Optional[bytes], None, None]:
        """:meth:`history_json` in steps: yields None (a pause, where a server lets other
        work run or waits for its turn) before each batch of at most :data:`HISTORY_STEP`
        new encodings, and last the answer (None before the first sample). An answer the
        field list's view already holds comes at once, without a pause. The samples are
        those kept when it started.
        """
        if not self.history:
            yield None
            return
        samples: List[Sample] = list(self.history)
        if seconds is not None:
            since = self.clock() - seconds
            samples = [s for s in samples if (s.received_at or 0.0) >= since]
        if paths is None:
            yield b'{"samples":[' + b",".join(s.payload for s in samples) + b"]}"
            return
        key = tuple(paths)
        cache = self._history_views
        view = cache.get(key)
        if view is None:
            view = HistoryView(paths_cost(key))
        view.prune(self.history[0].seq)
        tree = merge_paths(key)
        parts: List[bytes] = []
        budget = 0  # encodings left before the next pause
        for sample in samples:
            part = view.parts.get(sample.seq)
            if part is None and budget == 0:
                if view.parts:
                    cache.put(key, view, view.bytes)  # keep what is done so far
                yield None  # pause before each batch of encodings
                budget = HISTORY_STEP
                part = view.parts.get(sample.seq)  # another answer may have done it meanwhile
            if part is None:
                part = encode_document(project(sample.document, tree))
                view.add(sample.seq, part)
                budget -= 1
            parts.append(part)
        if view.parts:
            cache.put(key, view, view.bytes)
        yield b'{"samples":[' + b",".join(parts) + b"]}"

    @property
    def stale_after_s(self) -> float:
        """Seconds after which the newest sample is stale: :data:`STALE_INTERVALS` intervals."""
        return STALE_INTERVALS * self.interval_s

    def last_sample_age(self) -> Optional[float]:
        """Seconds since the newest sample was read, None before the first one."""
        if self.last_sample_at is None:
            return None
        return max(0.0, self.clock() - self.last_sample_at)

    def health_status(self) -> str:
        """``healthy``, ``starting`` (no sample yet, and the source has not failed) or ``degraded``
        (stale data, a sick source, or no sample yet from a source that has already restarted)."""
        age = self.last_sample_age()
        if age is None:
            return "degraded" if self.restarts or self.state in UNHEALTHY_STATES else "starting"
        if age > self.stale_after_s or self.state in UNHEALTHY_STATES:
            return "degraded"
        return "healthy"

    def subscribe(self, callback: Subscriber) -> None:
        """Call ``callback(sample)`` (a :class:`Sample`) for every new sample, in the IOLoop
        thread; what it reads of the sample is made then (once, shared by every subscriber)."""
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
        if not self._subscribers:
            return  # nobody to encode the sample for (yet)
        for callback in list(self._subscribers):
            try:
                callback(sample)
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
