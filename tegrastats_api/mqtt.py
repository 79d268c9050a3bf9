"""MQTT publishing: the samples to a broker, with Home Assistant discovery (``--mqtt URL``).

What it does: :class:`MqttBridge` subscribes to the hub like the other push consumers and,
while connected, publishes the newest sample's :func:`~tegrastats_api.discovery.state_of`
to ``<prefix>/state`` (QoS 0, not retained) on the first sample at least ``--mqtt-interval``
after the previous one (less half a sample interval, so that a message every N samples does
not drift by one): no timer of its own. ``<prefix>/availability`` is ``online`` (retained)
once connected, ``offline`` as the will (a killed server shows unavailable) and from a clean
:meth:`MqttBridge.stop`. With discovery on, each entity of the sample gets its retained
config (:mod:`tegrastats_api.discovery`) at each connect and when it first appears; one
missing from the samples of :data:`REMOVE_AFTER` state messages in a row is removed (an
empty retained config), and so is any retained config under our node id that this run does
not announce (a sensor of an earlier run: the bridge subscribes to its own config topics to
find them).

The client is paho-mqtt (1.x or 2.x, :mod:`tegrastats_api.compat`) in its own network thread
(``loop_start``): resolving, connecting, TLS and waiting for the broker never happen on the
IOLoop, whose only calls are paho's non-blocking ``publish``; paho's callbacks are handed back
to the IOLoop. A broker down or unreachable is logged once per outage (WARNING), its end
once (INFO); paho retries with a backoff doubling from 1 s to :data:`MAX_BACKOFF_S`. Nothing
queues without bound: no state message is published while disconnected, at most
:data:`MAX_PENDING` wait unwritten for a broker that stalls (the rest are skipped), and
paho keeps at most :data:`MAX_QUEUED` QoS 1 messages (a config or removal it refuses is
published again with the next state message).

What it does not: subscribe to commands, use MQTT 5, or keep messages for a broker that is
away (the state is a measurement: the next one replaces it).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import os
import ssl
import threading
import time
from typing import Any, Callable, Deque, Dict, Optional, Set

from tornado.ioloop import IOLoop

from tegrastats_api.board import BoardReader
from tegrastats_api.broker import node_id
from tegrastats_api.compat import mqtt_callbacks, mqtt_client
from tegrastats_api.config import CONFIG_FILE_LIMIT, Config, ConfigError, read_text_file
from tegrastats_api.discovery import Entity, complete_state, config_of, config_topic, device_of, encode, \
    entities_of, removable, state_of
from tegrastats_api.hub import Document, Sample, SnapshotHub

log = logging.getLogger(__name__)

KEEPALIVE_S = 30
MIN_BACKOFF_S = 1
MAX_BACKOFF_S = 30
MAX_PENDING = 4  # state messages written to no socket yet (a stalled broker) before skipping
MAX_QUEUED = 256  # QoS 1 messages paho keeps (configs and availability: about 50 at a connect)
REMOVE_AFTER = 3  # state messages without an entity before its config is removed
STOP_WAIT_S = 2.0  # for the broker to take ``offline`` at a clean stop, and paho's thread to end
ONLINE, OFFLINE = b"online", b"offline"


def tls_context(ca_file: Optional[str]) -> ssl.SSLContext:
    """Verify the broker's certificate and name against ``ca_file`` (PEM, a regular file of at
    most 1 MiB: never a FIFO that would block) or the system's CAs. Raises ConfigError."""
    try:
        if ca_file is None:
            return ssl.create_default_context()
        return ssl.create_default_context(cadata=read_text_file(ca_file, CONFIG_FILE_LIMIT))
    except (OSError, ValueError) as err:  # ssl.SSLError is an OSError
        reason = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
        raise ConfigError("--mqtt-ca: cannot use %s: %s" % (ca_file, reason)) from None


class MqttBridge:
    """Publishes ``hub``'s samples to ``config.mqtt`` (see the module docstring).

    ``board`` gives the device's model and L4T/JetPack; ``clock`` monotonic seconds (tests
    pass a fake one). Raises ConfigError when paho-mqtt is missing or the CA file is unusable.
    """

    def __init__(self, config: Config, hub: SnapshotHub, board: Optional[BoardReader] = None, *,
                 clock: Callable[[], float] = time.monotonic, min_backoff_s: float = MIN_BACKOFF_S,
                 max_backoff_s: float = MAX_BACKOFF_S) -> None:
        if config.mqtt is None or config.mqtt_prefix is None:
            raise ValueError("MQTT is off (--mqtt)")
        self.url = config.mqtt
        self.hub = hub
        self.board = board
        self.clock = clock
        self.prefix = config.mqtt_prefix
        self.interval_s = config.mqtt_interval
        self.discovery_prefix = config.mqtt_discovery_prefix
        self.node_id = node_id(self.prefix)
        self.state_topic = self.prefix + "/state"
        self.availability_topic = self.prefix + "/availability"
        # counters (tests, logs): state messages published, skipped for a stalled broker
        self.published = 0
        self.skipped = 0
        self.connected = False
        self.max_backoff_s = max_backoff_s
        self._slack_s = min(hub.interval_s, self.interval_s) / 2.0
        self._due: Optional[float] = None
        self._pending: Deque[Any] = collections.deque()
        self._announced: Dict[str, Entity] = {}  # object_id -> entity, on the broker now
        self._missing: Dict[str, int] = {}  # object_id -> state messages without it
        self._stale: Set[str] = set()  # retained config topics of ours not announced (yet)
        self._device: Optional[Dict[str, Any]] = None
        self._down_since: Optional[float] = None
        self._failures = 0
        self._stalled = False
        self._stopping = False
        self._loop: Optional[IOLoop] = None
        self.client = self._make_client(config, min_backoff_s, max_backoff_s)

    def _make_client(self, config: Config, min_backoff_s: float, max_backoff_s: float) -> Any:
        try:
            client = mqtt_client("tegrastats-api-%s-%d" % (self.node_id, os.getpid()))
        except ImportError:
            raise ConfigError("--mqtt: needs paho-mqtt (pip install 'tegrastats-api[mqtt]', "
                              "or apt install python3-paho-mqtt)") from None
        if self.url.username is not None:
            client.username_pw_set(self.url.username, self.url.password)
        if self.url.tls:
            client.tls_set_context(tls_context(config.mqtt_ca))
        client.will_set(self.availability_topic, OFFLINE, qos=1, retain=True)
        client.reconnect_delay_set(min_delay=min_backoff_s, max_delay=max_backoff_s)
        client.max_queued_messages_set(MAX_QUEUED)
        from paho.mqtt.client import MQTT_ERR_QUEUE_SIZE  # imported by mqtt_client; 15 on 1.x and 2.x

        self._queue_full: int = MQTT_ERR_QUEUE_SIZE
        mqtt_callbacks(client, connected=self._from_paho(self._on_connect),
                       disconnected=self._from_paho(self._on_disconnect),
                       connect_failed=self._from_paho(self._on_connect_fail),
                       message=self._from_paho(self._on_message))
        return client

    def _from_paho(self, method: Callable[..., None]) -> Callable[..., None]:
        """A paho callback (paho's thread) that runs ``method`` on the IOLoop instead, unless
        the bridge is stopping by then."""
        def on_loop(*args: Any) -> None:
            if not self._stopping:
                method(*args)

        def callback(*args: Any) -> None:
            loop = self._loop
            if loop is not None and not self._stopping:
                loop.add_callback(on_loop, *args)
        return callback

    # --- start and stop ---------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the hub and connect in paho's thread (returns at once)."""
        self._loop = IOLoop.current()
        self.hub.subscribe(self.on_sample)
        self.client.connect_async(self.url.host, self.url.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()
        log.info("MQTT: publishing to %s under %s/ every %g s (discovery: %s)", self.url, self.prefix,
                 self.interval_s, self.discovery_prefix or "off")

    async def stop(self, hurried: bool = False) -> None:
        """Unsubscribe, publish ``offline`` (retained) if connected, disconnect, end paho's thread;
        each wait at most :data:`STOP_WAIT_S` (``hurried``: a tenth of it)."""
        wait_s = STOP_WAIT_S / 10 if hurried else STOP_WAIT_S
        self.hub.unsubscribe(self.on_sample)
        if self._stopping:
            return
        self._stopping = True  # paho's events from now on are ignored: no `online` after this
        if self.connected:
            info = self.client.publish(self.availability_topic, OFFLINE, qos=1, retain=True)
            if not await _in_thread(lambda: info.wait_for_publish(wait_s), wait_s):
                log.warning("MQTT: the broker did not take 'offline' at stop")
        self.connected = False
        self.client.disconnect()
        if not await _in_thread(self.client.loop_stop, wait_s):
            log.debug("MQTT: paho's thread is still in a connection attempt; left to end by itself")

    # --- paho's events, on the IOLoop --------------------------------------------------

    def _on_connect(self, refusal: Optional[str]) -> None:
        if refusal is not None:
            self._outage("refused the connection (%s)" % refusal.rstrip("."))
            return
        self.connected = True
        self._pending.clear()
        self._announced.clear()  # a broker restarted without persistence lost them all
        self._missing.clear()
        self._stale.clear()
        self._due = None  # publish on the next sample
        if self._down_since is not None:
            log.info("MQTT: connected to %s again after %.0f s (%d failed attempts); publishing resumes",
                     self.url, self.clock() - self._down_since, self._failures)
        else:
            log.info("MQTT: connected to %s", self.url)
        self._down_since, self._failures, self._stalled = None, 0, False
        self.client.publish(self.availability_topic, ONLINE, qos=1, retain=True)
        if self.discovery_prefix is not None:
            for component in ("sensor", "binary_sensor"):
                self.client.subscribe("%s/%s/%s/+/config" % (self.discovery_prefix, component, self.node_id), qos=1)
        if self.hub.history:  # at once, not a sample later
            self.on_sample(self.hub.history[-1])

    def _on_disconnect(self, reason: Optional[str]) -> None:
        self.connected = False
        self._pending.clear()
        if reason is not None:
            self._outage("connection lost (%s)" % reason)

    def _on_connect_fail(self, error: str) -> None:
        self._outage("cannot connect (%s)" % error)

    def _outage(self, reason: str) -> None:
        """Count a failed attempt; log the first of an outage only."""
        self.connected = False
        self._failures += 1
        if self._down_since is None:
            self._down_since = self.clock()
            log.warning("MQTT: broker %s: %s; retrying (every %g s at most), publishing resumes by itself "
                        "(logged once per outage)", self.url, reason, self.max_backoff_s)
        else:
            log.debug("MQTT: broker %s: %s (attempt %d)", self.url, reason, self._failures)

    def _on_message(self, topic: str, payload: bytes, retain: bool) -> None:
        """A retained config under our node id (from our subscription): clear it unless announced."""
        if not retain or not payload or self.discovery_prefix is None:
            return
        if topic in self._announced_topics():
            return
        if not self._announced or not self._retain(topic, b""):
            self._stale.add(topic)  # cleared with the next state message

    # --- publishing ---------------------------------------------------------------------

    def on_sample(self, sample: Sample) -> None:
        """Hub subscriber: publish when connected and due; never blocks."""
        if not self.connected:
            return
        now = self.clock()
        if self._due is not None and now < self._due:
            return
        self._publish(sample.document)
        self._due = now + self.interval_s - self._slack_s

    def _publish(self, document: Document) -> None:
        if self.discovery_prefix is not None:
            self._announce(document)
        while self._pending and _written(self._pending[0]):
            self._pending.popleft()
        if len(self._pending) >= MAX_PENDING:
            self.skipped += 1
            if not self._stalled:  # once per connection: a broker that keeps up but lags would repeat it
                self._stalled = True
                log.warning("MQTT: broker %s takes no messages (%d unwritten); state messages are skipped until it "
                            "does", self.url, len(self._pending))
            return
        state = complete_state(state_of(document), list(self._announced.values()))
        info = self.client.publish(self.state_topic, encode(state), qos=0, retain=False)
        if info.rc == 0:
            self._pending.append(info)
            self.published += 1

    def _announce(self, document: Document) -> None:
        """Configs for new entities; removal of those missing for REMOVE_AFTER messages and stale ones."""
        assert self.discovery_prefix is not None
        if self._device is None:
            facts = self.board.facts().to_dict(None) if self.board is not None else None
            self._device = device_of(self.node_id, self.prefix.rsplit("/", 1)[-1], facts)
        current = {entity.object_id: entity for entity in entities_of(document)}
        for object_id, entity in current.items():
            self._missing.pop(object_id, None)
            if self._announced.get(object_id) != entity:
                config = config_of(entity, self.node_id, self.prefix, self._device)
                if self._retain(config_topic(self.discovery_prefix, self.node_id, entity), encode(config)):
                    self._announced[object_id] = entity
        for object_id in [oid for oid, e in self._announced.items() if oid not in current and removable(e)]:
            self._missing[object_id] = self._missing.get(object_id, 0) + 1
            entity = self._announced[object_id]
            if self._missing[object_id] >= REMOVE_AFTER \
                    and self._retain(config_topic(self.discovery_prefix, self.node_id, entity), b""):
                del self._announced[object_id], self._missing[object_id]
                log.info("MQTT: %s is gone from the samples; its Home Assistant entity is removed", entity.name)
        self._stale = {topic for topic in self._stale - self._announced_topics() if not self._retain(topic, b"")}

    def _announced_topics(self) -> Set[str]:
        assert self.discovery_prefix is not None
        return {config_topic(self.discovery_prefix, self.node_id, e) for e in self._announced.values()}

    def _retain(self, topic: str, payload: bytes) -> bool:
        """Publish a retained QoS 1 message (a config, or ``b""`` to clear one); False if paho
        refused it because it already holds MAX_QUEUED (a broker that takes nothing for
        minutes while entities come and go): the caller tries again with the next state
        message instead of counting it as done."""
        return self.client.publish(topic, payload, qos=1, retain=True).rc != self._queue_full


async def _in_thread(call: Callable[[], Any], timeout_s: float) -> bool:
    """Run ``call`` in a daemon thread (never the default executor, whose threads the
    interpreter waits for at exit); True if it returned within ``timeout_s``, False if it
    raised or is still running (it is then left to finish on its own)."""
    loop = asyncio.get_running_loop()
    done: asyncio.Future = loop.create_future()

    def run() -> None:
        ok = True
        try:
            call()
        except (ValueError, RuntimeError):  # paho's wait_for_publish: not queued, or failed
            ok = False
        try:
            loop.call_soon_threadsafe(_settle, done, ok)
        except RuntimeError:  # the loop is closed
            pass

    threading.Thread(target=run, name="mqtt-stop", daemon=True).start()
    try:
        return await asyncio.wait_for(done, timeout_s)
    except asyncio.TimeoutError:
        return False


def _settle(future: asyncio.Future, value: Any) -> None:
    if not future.done():
        future.set_result(value)


def _written(info: Any) -> bool:
    """Whether paho wrote a QoS 0 message to its socket (or dropped it: nothing to wait for)."""
    try:
        return bool(info.is_published())
    except (ValueError, RuntimeError):  # not queued, or failed
        return True
