"""Bridges to the oldest library versions Jetsons ship, each in one named function.

What it does: gives the rest of the package one spelling for the few things that differ
between the libraries of Ubuntu 22.04 (JetPack 6: tornado 6.1, python-socketio 5.0.3,
python-engineio 4.0.0) and the newest releases. Every bridge says which versions need it,
so that it can be deleted once they are no longer supported.

- :func:`wait_event`: tornado 6.1's ``Event.wait(timeout)`` raises ``tornado.util.TimeoutError``,
  its own class (from 6.2 that name is ``asyncio.TimeoutError``).
- :func:`connection_refused`: python-socketio 5.0's ``ConnectionRefusedError("why")`` sends the
  bare JSON string ``"why"`` (5.1+: ``{"message": "why"}``, which clients read).
- :func:`auth_keeping_server`: python-socketio 5.0 drops the auth object of the CONNECT packet
  (5.1+ passes it to the connect handler as ``auth``); :func:`connect_auth` reads it on both.
- :func:`shutdown_sio`: python-socketio < 5.12 has no ``AsyncServer.shutdown()``.
- :func:`enter_room`: python-socketio < 5.10's ``AsyncServer.enter_room`` is a plain function
  (5.10+: a coroutine).
- :func:`mqtt_client` and :func:`mqtt_callbacks`: paho-mqtt 2.x wants a ``CallbackAPIVersion``
  first and passes ``ReasonCode`` objects (VERSION2 callbacks); 1.x (Debian and Ubuntu ship
  1.6.1) takes no version and passes ints, with other callback signatures. paho-mqtt is
  optional (``tegrastats-api[mqtt]``): it is imported only when MQTT is on.

Sending to one Socket.IO client uses ``room=sid``, which every 5.x release accepts
(``to=`` came in 5.1), so it needs no bridge.

What it does not: pick features by version number; every bridge tests for the behaviour
itself, so a backported fix is used as it is. Nor import python-socketio before a Socket.IO
server is made (:mod:`tegrastats_api.sio_route` defers that until the first request).
"""
from __future__ import annotations

import asyncio
import inspect
import sys
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Callable, Dict, Optional

import tornado.util
from tornado.locks import Event

if TYPE_CHECKING:  # pragma: no cover - typing only; imported when a Socket.IO server is made
    import socketio

# tornado 6.1 raises its own TimeoutError from gen.with_timeout (and so Event.wait);
# from 6.2 on the two names are one class, and the tuple is harmless.
_TIMEOUT_ERRORS = (asyncio.TimeoutError, tornado.util.TimeoutError)


async def wait_event(event: Event, timeout_s: float) -> bool:
    """Wait up to ``timeout_s`` seconds for ``event``; True if it was set, False on time-out."""
    try:
        await event.wait(timeout=timedelta(seconds=timeout_s))
    except _TIMEOUT_ERRORS:
        return event.is_set()
    return True


def connection_refused(message: str) -> socketio.exceptions.ConnectionRefusedError:
    """The exception that refuses a Socket.IO connect with ``{"message": message}``.

    Clients read the reason from that object (socket.io-client's ``err.message``, the
    dashboard, ``tegrastats-api test``); python-socketio 5.0 would send ``message`` alone.
    """
    import socketio

    exc = socketio.exceptions.ConnectionRefusedError(message)
    exc.error_args = {"message": message}
    return exc


_AUTH_KEY = "tegrastats_api.auth"


def auth_keeping_server(**options: Any) -> socketio.AsyncServer:
    """A ``socketio.AsyncServer(**options)`` whose connect handler gets the CONNECT packet's
    auth object through :func:`connect_auth` on every version.

    python-socketio 5.1 added the packet's data to ``_handle_connect`` (and passes it on as
    ``auth``): there it is the plain server. On 5.0, which discards it, a subclass keeps it
    in the session's WSGI-style environ. Only a text CONNECT packet is looked at, and only to
    copy its data; a packet that does not decode is passed on untouched for python-socketio to
    deal with as it always does.
    """
    import socketio

    if "data" in inspect.signature(socketio.AsyncServer._handle_connect).parameters:
        return socketio.AsyncServer(**options)

    class AuthKeepingServer(socketio.AsyncServer):  # python-socketio 5.0
        async def _handle_eio_message(self, eio_sid: str, data: Any) -> None:
            if isinstance(data, str) and data[:1] == "0":
                try:
                    pkt = socketio.packet.Packet(encoded_packet=data)
                except ValueError:
                    pkt = None
                environ = self.environ.get(eio_sid)
                if pkt is not None and environ is not None:
                    environ[_AUTH_KEY] = pkt.data
            await super()._handle_eio_message(eio_sid, data)

    return AuthKeepingServer(**options)


def connect_auth(environ: Dict[str, Any], auth: Optional[Any]) -> Optional[Any]:
    """The auth object of a Socket.IO connect: ``auth`` as passed (5.1+), else what
    :func:`auth_keeping_server` kept (5.0)."""
    return auth if auth is not None else environ.get(_AUTH_KEY)


async def shutdown_sio(sio: Any) -> None:
    """Stop python-socketio's background tasks where the installed version has them."""
    shutdown = getattr(sio, "shutdown", None)  # python-socketio >= 5.12
    if shutdown is not None:
        await shutdown()


async def enter_room(sio: Any, sid: str, room: str, namespace: str) -> None:
    """Put the Socket.IO client ``sid`` in ``room``: ``AsyncServer.enter_room`` is a plain
    function before python-socketio 5.10 and a coroutine since."""
    entered = sio.enter_room(sid, room, namespace=namespace)
    if inspect.isawaitable(entered):
        await entered


# --- paho-mqtt 1.x and 2.x -------------------------------------------------------------


def mqtt_client(client_id: str) -> Any:
    """A paho-mqtt ``Client`` (MQTT 3.1.1, clean session): VERSION2 callbacks on paho-mqtt 2.x,
    the only API there is on 1.x. Raises ImportError without paho-mqtt."""
    import paho.mqtt.client as mqtt

    version = getattr(mqtt, "CallbackAPIVersion", None)  # paho-mqtt >= 2.0
    if version is not None:
        return mqtt.Client(version.VERSION2, client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)
    return mqtt.Client(client_id=client_id, clean_session=True, protocol=mqtt.MQTTv311)


def _v2_failure(reason: Any) -> Optional[str]:
    """None for a VERSION2 reason code of success, else its text ("Not authorized")."""
    failed = getattr(reason, "is_failure", None)
    if failed is None:  # an int, as some 2.x paths pass for a lost connection
        failed = reason != 0
    return str(reason) if failed else None


def mqtt_callbacks(
    client: Any,
    *,
    connected: Callable[[Optional[str]], None],
    disconnected: Callable[[Optional[str]], None],
    connect_failed: Callable[[str], None],
    message: Callable[[str, bytes, bool], None],
) -> None:
    """Install the same callbacks on paho-mqtt 1.x and 2.x, called in paho's thread:

    - ``connected(refusal)``: the broker's CONNACK; refusal is None when accepted, else its
      reason (``Not authorized``);
    - ``disconnected(reason)``: the connection ended; None after our own ``disconnect()``;
    - ``connect_failed(error)``: no connection at all (refused, unreachable, TLS handshake):
      the exception's text, which both versions leave as the one being handled while they
      call ``on_connect_fail`` (from inside their ``except OSError``);
    - ``message(topic, payload, retain)``.
    """
    import paho.mqtt.client as mqtt

    if hasattr(mqtt, "CallbackAPIVersion"):  # the client is mqtt_client()'s: VERSION2 on 2.x
        client.on_connect = lambda _c, _u, _flags, reason, _props=None: connected(_v2_failure(reason))
        client.on_disconnect = lambda _c, _u, _flags, reason, _props=None: disconnected(_v2_failure(reason))
    else:
        client.on_connect = lambda _c, _u, _flags, rc: connected(None if rc == 0 else mqtt.connack_string(rc))
        client.on_disconnect = lambda _c, _u, rc: disconnected(None if rc == 0 else mqtt.error_string(rc))

    def on_connect_fail(_client: Any, _userdata: Any) -> None:
        error = sys.exc_info()[1]
        connect_failed(str(error) if error is not None else "connection failed")

    client.on_connect_fail = on_connect_fail
    client.on_message = lambda _c, _u, msg: message(msg.topic, bytes(msg.payload), bool(msg.retain))

