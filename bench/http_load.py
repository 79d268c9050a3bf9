"""HTTP load for the bench: ``wrk`` where installed, else a small asyncio load generator.

What it does: :func:`load` sends GET requests over ``connections`` keep-alive
connections for ``seconds`` and returns requests/s and latency p50/p99 (ms); it runs
``wrk --latency`` when it is on PATH, else this file as a program (the asyncio
generator, one process). ``python bench/http_load.py hello --port P`` serves the
framework's ceiling: a minimal Tornado hello-world handler, on the same interpreter.

What it does not: pin CPUs (the caller does), or check answers beyond the status line.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import time
from typing import Dict, List, Optional

LATENCY_RE = re.compile(r"^\s+(50|99)(?:\.0+)?%\s+([\d.]+)(us|ms|s)\s*$", re.M)
RATE_RE = re.compile(r"^Requests/sec:\s+([\d.]+)", re.M)
ERRORS_RE = re.compile(r"Non-2xx or 3xx responses: (\d+)|Socket errors: (.*)")
UNIT_MS = {"us": 0.001, "ms": 1.0, "s": 1000.0}


def tool() -> str:
    """Which load generator :func:`load` uses here."""
    return "wrk" if shutil.which("wrk") else "asyncio"


def load(url: str, connections: int, seconds: float, cpu: Optional[int] = None) -> Dict[str, object]:
    """``{"requests_per_s", "p50_ms", "p99_ms", "errors", "tool"}`` of a closed-loop load on ``url``."""
    pin = ["taskset", "-c", str(cpu)] if cpu is not None and shutil.which("taskset") else []
    if tool() == "wrk":
        argv = pin + ["wrk", "-t1", "-c%d" % connections, "-d%ds" % max(1, round(seconds)), "--latency", url]
        out = subprocess.run(argv, check=True, capture_output=True, text=True).stdout
        latencies = {int(m.group(1)): float(m.group(2)) * UNIT_MS[m.group(3)] for m in LATENCY_RE.finditer(out)}
        errors = [m.group(0) for m in ERRORS_RE.finditer(out)]
        rate = RATE_RE.search(out)
        return {"requests_per_s": float(rate.group(1)) if rate else 0.0, "p50_ms": latencies.get(50),
                "p99_ms": latencies.get(99), "errors": errors, "tool": "wrk"}
    argv = pin + [sys.executable, os.path.abspath(__file__), "load", "--url", url,
                  "--connections", str(connections), "--seconds", str(seconds)]
    result = json.loads(subprocess.run(argv, check=True, capture_output=True, text=True).stdout)
    result["tool"] = "asyncio"
    return result


# --- the asyncio load generator -------------------------------------------------------


async def _connection(host: str, port: int, request: bytes, until: float, latencies: List[float],
                      errors: List[str]) -> None:
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while time.monotonic() < until:
            start = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = re.search(rb"(?i)\r\ncontent-length: *(\d+)", head)
            await reader.readexactly(int(length.group(1)) if length else 0)
            latencies.append((time.perf_counter() - start) * 1000.0)
            if not head.startswith(b"HTTP/1.1 200"):
                errors.append(head.split(b"\r\n", 1)[0].decode("latin-1"))
    finally:
        writer.close()


async def _load(url: str, connections: int, seconds: float) -> Dict[str, object]:
    match = re.match(r"http://([^:/]+):(\d+)(/.*)?$", url)
    assert match, url
    host, port, path = match.group(1), int(match.group(2)), match.group(3) or "/"
    request = ("GET %s HTTP/1.1\r\nHost: %s:%d\r\n\r\n" % (path, host, port)).encode("ascii")
    latencies: List[float] = []
    errors: List[str] = []
    start = time.monotonic()
    await asyncio.gather(*(_connection(host, port, request, start + seconds, latencies, errors)
                           for _ in range(connections)))
    elapsed = time.monotonic() - start
    latencies.sort()
    return {
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": latencies[len(latencies) // 2] if latencies else None,
        "p99_ms": latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))] if latencies else None,
        "errors": errors[:5],
    }


# --- the framework's ceiling ----------------------------------------------------------


def serve_hello(port: int) -> None:
    """Serve ``Hello, world`` on 127.0.0.1:port until killed (Tornado, default settings)."""
    from tornado.ioloop import IOLoop
    from tornado.web import Application, RequestHandler

    class Hello(RequestHandler):
        def get(self) -> None:
            self.write("Hello, world")

    Application([(r"/", Hello)]).listen(port, address="127.0.0.1")
    print("listening", flush=True)
    IOLoop.current().start()


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("mode", choices=["hello", "load"])
    parser.add_argument("--port", type=int)
    parser.add_argument("--url")
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.mode == "hello":
        serve_hello(args.port)
        return 0
    print(json.dumps(asyncio.run(_load(args.url, args.connections, args.seconds))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
