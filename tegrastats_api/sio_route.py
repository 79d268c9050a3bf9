"""The ``/socket.io/`` route, with python-socketio imported at its first request.

What it does: :class:`SocketIORoute` is the Tornado router behind ``/socket.io/``. Importing
python-socketio imports its client half too (python-engineio's client, ``requests``,
``urllib3``, ``websocket-client``: some 200 modules and 8 MB of resident memory), which a
board nobody opens a Socket.IO connection to never needs. So the Socket.IO server
(:func:`tegrastats_api.sio.make_sio`) and its Tornado handler are made when the first
request reaches ``/socket.io/``, on the IOLoop, and every later request goes to the same
handler. At the server's stop, :meth:`SocketIORoute.close` disconnects its clients and
:meth:`SocketIORoute.shutdown` stops python-socketio's tasks, if it was ever made.
:func:`import_sio` imports python-socketio with the optional dependencies of its client
hidden (:data:`CLIENT_ONLY_MODULES`, about 6 MB of the 8), so that only the server half is
loaded.

What it does not: anything Socket.IO itself does (:mod:`tegrastats_api.sio`).
"""
from __future__ import annotations

import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any, Optional

from tornado.httputil import HTTPMessageDelegate, HTTPServerRequest
from tornado.routing import Router
from tornado.web import Application

from tegrastats_api.compat import shutdown_sio
from tegrastats_api.hub import ConnectionLimiter, SnapshotHub
from tegrastats_api.settings import Config

if TYPE_CHECKING:  # pragma: no cover - typing only: importing it is what this module defers
    import socketio

__all__ = ["CLIENT_ONLY_MODULES", "SocketIORoute", "import_sio"]

# What python-engineio's and python-socketio's clients import if they can; the server never
# uses them.
CLIENT_ONLY_MODULES = ("requests", "websocket", "aiohttp")


def import_sio() -> ModuleType:
    """:mod:`tegrastats_api.sio` (and python-socketio), without importing the Socket.IO
    client's optional dependencies; those not yet imported stay importable afterwards."""
    hidden = [name for name in CLIENT_ONLY_MODULES if name not in sys.modules]
    for name in hidden:
        sys.modules[name] = None  # type: ignore[assignment]  # `import name` raises ImportError
    try:
        import tegrastats_api.sio as module
    finally:
        for name in hidden:
            if name in sys.modules and sys.modules[name] is None:
                del sys.modules[name]
    return module


class SocketIORoute(Router):
    """Routes ``/socket.io/`` to python-socketio's Tornado handler, made at the first request.

    :meth:`bind` must give it the Application before the first request (``make_app`` does).
    """

    def __init__(self, hub: SnapshotHub, limiter: ConnectionLimiter, config: Config) -> None:
        self._hub = hub
        self._limiter = limiter
        self._config = config
        self._application: Optional[Application] = None
        self._handler: Optional[type] = None
        self.sio: Optional[socketio.AsyncServer] = None  # None until the first request

    def bind(self, application: Application) -> None:
        """The application whose settings and handlers' conventions requests get."""
        self._application = application

    def load(self) -> socketio.AsyncServer:
        """The Socket.IO server, made (and python-socketio imported) on the first call."""
        if self.sio is None:
            module = import_sio()
            sio = module.make_sio(self._hub, self._limiter, self._config)
            self._handler = module.make_sio_handler(sio, self._config)
            self.sio = sio
        return self.sio

    def find_handler(self, request: HTTPServerRequest, **kwargs: Any) -> Optional[HTTPMessageDelegate]:
        if self._application is None:
            raise RuntimeError("SocketIORoute.bind(application) was not called")
        self.load()
        return self._application.get_handler_delegate(request, self._handler)  # type: ignore[arg-type]

    async def close(self) -> None:
        """Disconnect every Socket.IO client (nothing if the server was never made)."""
        if self.sio is None:
            return
        await import_sio().snapshot_namespace(self.sio).disconnect_all()

    async def shutdown(self) -> None:
        """Stop python-socketio's background tasks (after :meth:`close` and the HTTP server)."""
        if self.sio is not None:
            await shutdown_sio(self.sio)
