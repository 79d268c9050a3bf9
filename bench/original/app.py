"""A stand-in for the original tegrastats API (Flask-SocketIO), for ``make bench`` only.

The original is not on PyPI; this is its architecture in a few lines, so that the bench can
compare against it on the same machine in the same run: Flask-SocketIO in threading mode
(Werkzeug's server, ``simple-websocket`` for WebSocket), one thread that reads tegrastats
lines with a blocking ``readline`` and parses each into a dict with regular expressions, a
loop that emits the newest document to every Socket.IO client once a second
(``tegrastats_update``), and the same REST route (``GET /api/status``), plus
``GET /api/health`` with a sample count for the bench's bookkeeping.

Run by bench/run.py with the interpreter of a scratch venv (bench/.venv-original: flask,
flask-socketio, simple-websocket)::

    python bench/original/app.py --port P --tegrastats tests/fake_tegrastats.py --interval 1000

Not part of the package; never imported by it.
"""
from __future__ import annotations

import argparse
import datetime
import re
import subprocess
import threading
import time
from typing import Any, Dict, Optional

from flask import Flask, jsonify
from flask_socketio import SocketIO

RAM = re.compile(r"RAM (\d+)/(\d+)MB")
SWAP = re.compile(r"SWAP (\d+)/(\d+)MB")
CPU = re.compile(r"CPU \[([^\]]*)\]")
GPU = re.compile(r"GR3D_FREQ (\d+)%")
TEMP = re.compile(r"(\w+)@(-?[\d.]+)C")
POWER = re.compile(r"(\w+) (\d+)mW/(\d+)mW")


def parse(line: str) -> Dict[str, Any]:
    """The original's kind of parser: a handful of regular expressions over the line."""
    cores = []
    match = CPU.search(line)
    for i, core in enumerate(match.group(1).split(",") if match else []):
        usage, _, freq = core.partition("%@")
        cores.append({"id": i, "usage": int(usage) if usage.isdigit() else None,
                      "freq": int(freq) if freq.isdigit() else None})
    ram, swap, gpu = RAM.search(line), SWAP.search(line), GPU.search(line)
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "timestamp": now.strftime("%Y-%m-%dT%H:%M:%S.") + "%03dZ" % (now.microsecond // 1000),
        "cpu": {"cores": cores},
        "memory": {"ram": {"used": int(ram.group(1)), "total": int(ram.group(2))} if ram else None,
                   "swap": {"used": int(swap.group(1)), "total": int(swap.group(2))} if swap else None},
        "gpu": {"usage": int(gpu.group(1)) if gpu else None},
        "temperature": {name: float(value) for name, value in TEMP.findall(line)},
        "power": {name.lower(): {"current": int(cur), "average": int(avg)} for name, cur, avg in POWER.findall(line)},
    }


class Stats:
    def __init__(self) -> None:
        self.latest: Optional[Dict[str, Any]] = None
        self.samples = 0
        self.lock = threading.Lock()


def reader(argv: list, stats: Stats) -> None:
    """The original's reader thread: run tegrastats, blocking readline, parse each line."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    while True:
        line = proc.stdout.readline()
        if not line:
            return
        document = parse(line)
        with stats.lock:
            stats.latest = document
            stats.samples += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--tegrastats", required=True)
    parser.add_argument("--interval", type=int, default=1000, help="ms")
    args = parser.parse_args()

    app = Flask(__name__)
    socketio = SocketIO(app, async_mode="threading", cors_allowed_origins="*")
    stats = Stats()

    @app.route("/api/status")
    def status() -> Any:
        return jsonify(stats.latest or {})

    @app.route("/api/health")
    def health() -> Any:
        return jsonify({"status": "healthy", "samples": stats.samples})

    def emit_loop() -> None:
        while True:
            socketio.sleep(args.interval / 1000.0)
            if stats.latest is not None:
                socketio.emit("tegrastats_update", stats.latest)

    threading.Thread(target=reader, args=([args.tegrastats, "--interval", str(args.interval)], stats),
                     daemon=True).start()
    socketio.start_background_task(emit_loop)
    while stats.latest is None:  # answer /api/status with data from the start, as the bench expects
        time.sleep(0.01)
    socketio.run(app, host=args.host, port=args.port, allow_unsafe_werkzeug=True, log_output=False)


if __name__ == "__main__":
    main()
