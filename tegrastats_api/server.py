"""The library face of the server: ``TegrastatsServer``.

What it does: runs one :class:`tegrastats_api.app.Server` either blocking in the
calling thread (:meth:`TegrastatsServer.run`, stops on SIGINT/SIGTERM) or in a
background thread with its own event loop (:meth:`start`/:meth:`stop`, or a ``with``
block), and reports where it listens (:attr:`url`, :attr:`port`; port 0 picks a free one).

What it does not: configure logging or print (a library leaves that to its caller).
"""
from __future__ import annotations

import asyncio
import threading
from types import TracebackType
from typing import Optional, Type

from tegrastats_api.app import Server, run
from tegrastats_api.settings import Config, check_files


class TegrastatsServer:
    """``with TegrastatsServer(Config(port=0, simulate="nano")) as server: server.url``.

    ``sysroot``: where the board's files are read (``/api/board``); default
    ``$TEGRASTATS_API_SYSROOT``, else ``/``.
    """

    def __init__(self, config: Optional[Config] = None, *, sysroot: Optional[str] = None) -> None:
        self.config = config if config is not None else Config()
        self.sysroot = sysroot
        self._server: Optional[Server] = None
        self._loop: Optional[asyncio.AbstractEventLoop] = None
        self._thread: Optional[threading.Thread] = None

    def run(self) -> int:
        """Serve in this thread until SIGINT/SIGTERM; returns the exit status (0)."""
        check_files(self.config)
        return run(self.config, self.sysroot)

    @property
    def port(self) -> Optional[int]:
        """The bound TCP port while started, else None."""
        return self._server.port if self._server is not None else None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (a wildcard host is reported as loopback)."""
        if self._server is None or self._server.port is None:
            raise RuntimeError("the server is not started")
        return self._server.url

    def start(self, timeout: float = 15.0) -> TegrastatsServer:
        """Start serving in a background thread; returns once it listens.

        Raises what start-up raises (``ListenError``, ``TegrastatsNotFoundError``,
        ``ConfigError``) in the calling thread, with nothing left running.
        """
        if self._thread is not None:
            raise RuntimeError("the server is already started")
        check_files(self.config)
        ready = threading.Event()
        failure: list = []
        self._thread = threading.Thread(
            target=self._serve, args=(ready, failure), name="tegrastats-api", daemon=True
        )
        self._thread.start()
        if not ready.wait(timeout):
            raise TimeoutError("tegrastats-api did not start within %s s" % timeout)
        if failure:
            self._thread.join(timeout)
            self._thread = None
            raise failure[0]
        return self

    def _serve(self, ready: threading.Event, failure: list) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        self._loop = loop
        self._server = Server(self.config, sysroot=self.sysroot)
        try:
            loop.run_until_complete(self._server.start())
        except Exception as err:  # handed to the thread that called start()
            failure.append(err)
            self._server = None
            _close_loop(loop)
            ready.set()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            _close_loop(loop)

    def stop(self, timeout: float = 15.0) -> None:
        """Stop in order (push clients, source, listener) and join the thread."""
        thread, loop, server = self._thread, self._loop, self._server
        if thread is None or loop is None or server is None:
            return
        asyncio.run_coroutine_threadsafe(server.stop(), loop).result(timeout)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout)
        self._thread = None
        self._server = None

    def __enter__(self) -> TegrastatsServer:
        return self.start()

    def __exit__(
        self,
        exc_type: Optional[Type[BaseException]],
        exc: Optional[BaseException],
        tb: Optional[TracebackType],
    ) -> None:
        self.stop()


def _close_loop(loop: asyncio.AbstractEventLoop) -> None:
    """Cancel what is still pending on the server's loop (engineio's service task...), then close it."""
    pending = [task for task in asyncio.all_tasks(loop) if not task.done()]
    for task in pending:
        task.cancel()
    if pending:
        loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
    loop.run_until_complete(loop.shutdown_asyncgens())
    loop.close()
