"""Many light push clients (``/ws`` or Socket.IO over WebSocket) in one process, for the bench.

What it does: opens N raw WebSocket connections with asyncio protocols (a few
microseconds per frame, so that a thousand clients on one core measure the server and not
themselves), answers pings, and for every frame that carries a document records the
delay from the document's ``timestamp`` (set by the server when it read the sample) to
the moment the frame arrived, on the same clock (``time.time()``). It also counts the
bytes each client received. Run as a program it prints ``measuring`` when the measured
window opens, then one JSON object::

    python bench/clients.py --port P --kind ws --count 100 --seconds 10 [--fields a,b]

What it does not: validate documents (the test suite does), or mask its delays: the
timestamp has millisecond resolution and is truncated, so each delay reads up to 1 ms
long; the time a frame waits in this process before its callback is included.
"""
from __future__ import annotations

import argparse
import asyncio
import base64
import calendar
import json
import os
import re
import struct
import sys
import time
from typing import Callable, Dict, List, Optional

TIMESTAMP_RE = re.compile(rb'"timestamp": ?"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\.(\d{3})Z"')
KEY = base64.b64encode(b"tegrastats-bench").decode("ascii")
CONNECT_BATCH = 50  # handshakes in flight at once
RECV_BYTES = 65536
PATHS = {"ws": "/ws", "sio": "/socket.io/?EIO=4&transport=websocket"}


def client_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """A masked client frame (RFC 6455 requires clients to mask; a zero key is allowed)."""
    assert len(payload) < 126
    return struct.pack("!BB4s", 0x80 | opcode, 0x80 | len(payload), b"\0\0\0\0") + payload


_epochs: Dict[bytes, float] = {}


def timestamp_epoch(frame: bytes) -> Optional[float]:
    """Epoch seconds of the document's ``timestamp`` in ``frame``, None when it has none."""
    match = TIMESTAMP_RE.search(frame)
    if match is None:
        return None
    whole = match.group(1)
    epoch = _epochs.get(whole)
    if epoch is None:  # every client gets the same second: parse it once
        epoch = calendar.timegm(time.strptime(whole.decode("ascii"), "%Y-%m-%dT%H:%M:%S"))
        if len(_epochs) > 1000:
            _epochs.clear()
        _epochs[whole] = epoch
    return epoch + int(match.group(2)) / 1000.0


class PushClient(asyncio.BufferedProtocol):
    """One raw WebSocket client: handshake, frame splitting, ping answers, delay records.

    A buffered protocol: the loop reads into one buffer of this client instead of
    allocating a new bytes object per read.
    """

    def __init__(self, kind: str, host: str, port: int, path: str, record: Callable[[float, float], None]) -> None:
        self.kind = kind
        self.request = (
            "GET %s HTTP/1.1\r\nHost: %s:%d\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, host, port, KEY)
        ).encode("ascii")
        self.record = record
        self.transport: Optional[asyncio.Transport] = None
        self.buffer = bytearray()
        self.inbox = memoryview(bytearray(RECV_BYTES))
        self.upgraded = False
        self.bytes = 0
        self.frames = 0
        self.ready = asyncio.get_running_loop().create_future()
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)  # type: ignore[union-attr]

    def connection_lost(self, exc: Optional[Exception]) -> None:
        self.closed = True
        if not self.ready.done():
            self.ready.set_exception(ConnectionError("closed during the handshake"))

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.inbox

    def buffer_updated(self, nbytes: int) -> None:
        now = time.time()
        self.bytes += nbytes
        self.buffer += self.inbox[:nbytes]
        if not self.upgraded:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.buffer.startswith(b"HTTP/1.1 101"):
                self.ready.set_exception(ConnectionError(bytes(self.buffer[:end]).decode("latin-1")))
                self.transport.close()  # type: ignore[union-attr]
                return
            del self.buffer[: end + 4]
            self.upgraded = True
            if self.kind == "ws":
                self.ready.set_result(None)
        self._frames(now)

    def _frames(self, now: float) -> None:
        buf = self.buffer
        while len(buf) >= 2:
            opcode, length, start = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, start = struct.unpack_from("!H", buf, 2)[0], 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, start = struct.unpack_from("!Q", buf, 2)[0], 10
            if len(buf) < start + length:
                return
            payload = bytes(buf[start : start + length])
            del buf[: start + length]
            self._on_frame(opcode, payload, now)

    def _on_frame(self, opcode: int, payload: bytes, now: float) -> None:
        if opcode == 0x9:  # ping
            self.transport.write(client_frame(payload, 0xA))  # type: ignore[union-attr]
            return
        if opcode == 0x8:
            self.transport.close()  # type: ignore[union-attr]
            return
        if self.kind == "sio":
            if payload[:1] == b"0":  # Engine.IO open: join the default namespace
                self.transport.write(client_frame(b"40"))  # type: ignore[union-attr]
                return
            if payload == b"2":  # Engine.IO ping
                self.transport.write(client_frame(b"3"))  # type: ignore[union-attr]
                return
            if payload[:2] == b"40" and not self.ready.done():
                self.ready.set_result(None)
                return
            if payload[:2] != b"42":
                return
        stamp = timestamp_epoch(payload)
        if stamp is not None:
            self.frames += 1
            self.record(stamp, now)


class Fleet:
    """N clients of one kind; delays of the documents read after :meth:`measure` began."""

    def __init__(self, host: str, port: int, kind: str, path: str) -> None:
        self.host, self.port, self.kind, self.path = host, port, kind, path
        self.clients: List[PushClient] = []
        self.since: Optional[float] = None
        self.delays_ms: List[float] = []

    def _record(self, stamp: float, now: float) -> None:
        if self.since is not None and stamp >= self.since:
            self.delays_ms.append((now - stamp) * 1000.0)

    async def connect(self, count: int) -> None:
        loop = asyncio.get_running_loop()
        for first in range(0, count, CONNECT_BATCH):
            batch = []
            for _ in range(first, min(count, first + CONNECT_BATCH)):
                client = PushClient(self.kind, self.host, self.port, self.path, self._record)
                batch.append(client)
                await loop.create_connection(lambda c=client: c, self.host, self.port)
            await asyncio.wait_for(asyncio.gather(*(c.ready for c in batch)), 30)
            self.clients += batch

    async def measure(self, seconds: float) -> Dict[str, object]:
        """Record for ``seconds``; counts, delay percentiles and bytes per client per second."""
        await asyncio.sleep(0.5)  # let the frames of the connect burst drain
        print("measuring", flush=True)  # the caller starts its server CPU meter here
        bytes0 = sum(c.bytes for c in self.clients)
        frames0 = sum(c.frames for c in self.clients)
        self.since, start, cpu0 = time.time(), time.monotonic(), time.process_time()
        await asyncio.sleep(seconds)
        elapsed = time.monotonic() - start
        self.since = None
        received = sum(c.bytes for c in self.clients) - bytes0
        frames = sum(c.frames for c in self.clients) - frames0
        return {
            "clients": len(self.clients),
            "closed": sum(c.closed for c in self.clients),
            "seconds": elapsed,
            "frames": frames,
            "delays_ms": summarize(self.delays_ms),
            "bytes_per_client_per_s": received / len(self.clients) / elapsed if self.clients else 0.0,
            "bytes_per_frame": received / frames if frames else None,
            "client_cpu_pct": 100.0 * (time.process_time() - cpu0) / elapsed,
        }

    def close(self) -> None:
        for client in self.clients:
            if client.transport is not None:
                client.transport.close()


def percentile(ordered: List[float], fraction: float) -> Optional[float]:
    """The value below which ``fraction`` of the sorted samples lie (nearest rank)."""
    if not ordered:
        return None
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summarize(values: List[float]) -> Dict[str, Optional[float]]:
    ordered = sorted(values)
    return {
        "count": len(ordered),
        "p50": percentile(ordered, 0.50),
        "p99": percentile(ordered, 0.99),
        "max": ordered[-1] if ordered else None,
    }


async def run(host: str, port: int, kind: str, count: int, seconds: float, fields: Optional[str]) -> Dict[str, object]:
    path = PATHS[kind] + ("?fields=" + fields if fields else "")
    fleet = Fleet(host, port, kind, path)
    started = time.monotonic()
    try:
        await fleet.connect(count)
        connect_s = time.monotonic() - started
        result = await fleet.measure(seconds)
    finally:
        fleet.close()
    result["connect_s"] = connect_s
    return result


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--kind", choices=sorted(PATHS), default="ws")
    parser.add_argument("--count", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--fields")
    parser.add_argument("--cpu", type=int, help="pin this process to one CPU")
    args = parser.parse_args(argv)
    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})
    result = asyncio.run(run(args.host, args.port, args.kind, args.count, args.seconds, args.fields))
    json.dump(result, sys.stdout)
    sys.stdout.write("\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
