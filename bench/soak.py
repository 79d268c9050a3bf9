"""``make soak``: hours of a day in minutes; fails if the server's memory or fds keep growing.

What it does: runs ``tegrastats-api run`` at 50 samples/s (``--simulate``) and, in a
second process, 50 push clients that come and go (``/ws``, ``/ws?fields=...`` and
Socket.IO in turn; each stays 2 to 20 s, then leaves with or without a goodbye, and a new
one takes its place). Every minute it prints the server's RSS, open fds (and the clients
connected at that moment, each of which holds one), and CPU. At the end it fails (exit
1) if RSS or the fds not held by a client rose at every reading of the last minutes by
more than a tolerance, or ended far above where they were after the first minute.

``SOAK_MINUTES`` (or ``--minutes``) sets the length, 10 by default. Figures go to
``bench/results/soak-latest.json``.

What it does not: measure latency (``make bench`` does), or run in ``make test``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

from clients import PushClient, client_frame
from procstat import CpuMeter, fd_count, rss_mb
from serverproc import HOST, ServerProcess, free_port, health, tegrastats_api_argv

RESULTS = Path(__file__).resolve().parent / "results"
KINDS = [("ws", "/ws"), ("ws", "/ws?fields=cpu.usage,gpu.usage,temperature.tj"),
         ("sio", "/socket.io/?EIO=4&transport=websocket")]
STAY_S = (2.0, 20.0)
LAST_READINGS = 4  # growth at every one of the last readings (minutes) means a leak...
RSS_STEP_MB = 0.25  # ...if each step is above this
RSS_DRIFT_MB = 8.0  # or the end is this far above the first minute's reading
FD_DRIFT = 5  # fds not held by clients: allowed drift from the first minute


async def _slot(index: int, port: int, until: float, stats: Dict[str, int]) -> None:
    """One client place: connect, stay a while, leave, and again until ``until``."""
    rng = random.Random(index)
    loop = asyncio.get_running_loop()
    turn = index
    while loop.time() < until:
        kind, path = KINDS[turn % len(KINDS)]
        turn += 1
        client = PushClient(kind, HOST, port, path, lambda stamp, now: None)
        try:
            await loop.create_connection(lambda c=client: c, HOST, port)
            await asyncio.wait_for(client.ready, 10)
            stats["connects"] += 1
            await asyncio.sleep(min(rng.uniform(*STAY_S), max(0.0, until - loop.time())))
            stats["frames"] += client.frames
        except (OSError, ConnectionError, asyncio.TimeoutError):
            stats["errors"] += 1
            await asyncio.sleep(1.0)
        if client.transport is not None:
            if rng.random() < 0.5:  # a goodbye: a close frame, then the TCP close
                client.transport.write(client_frame(b"\x03\xe8", 0x8))
                client.transport.close()
            else:
                client.transport.abort()  # just gone: a reset


async def churn(port: int, clients: int, seconds: float) -> Dict[str, int]:
    stats = {"connects": 0, "frames": 0, "errors": 0}
    until = asyncio.get_running_loop().time() + seconds
    await asyncio.gather(*(_slot(index, port, until, stats) for index in range(clients)))
    return stats


def verdict(readings: List[Dict[str, Any]]) -> List[str]:
    """Why the run failed (empty when it passed)."""
    problems = []
    if len(readings) < 2:
        return problems
    rss = [r["rss_mb"] for r in readings]
    spare_fds = [r["fds"] - r["clients"] for r in readings]
    last = rss[-(LAST_READINGS + 1):]
    if len(last) >= 3 and all(b - a > RSS_STEP_MB for a, b in zip(last, last[1:])):
        problems.append("RSS rose at each of the last %d readings: %s MB" % (len(last) - 1, last))
    if rss[-1] - rss[0] > RSS_DRIFT_MB:
        problems.append("RSS ended %.1f MB above the first minute's %.1f MB" % (rss[-1] - rss[0], rss[0]))
    last_fds = spare_fds[-(LAST_READINGS + 1):]
    if len(last_fds) >= 3 and all(b > a for a, b in zip(last_fds, last_fds[1:])):
        problems.append("fds not held by clients rose at each of the last readings: %s" % last_fds)
    if spare_fds[-1] - spare_fds[0] > FD_DRIFT:
        problems.append("fds not held by clients went from %d to %d" % (spare_fds[0], spare_fds[-1]))
    return problems


def soak(minutes: float, rate: float, clients: int, every_s: float) -> int:
    port = free_port()
    argv = tegrastats_api_argv(port, "--simulate", "agx-orin", "--update-interval", str(1.0 / rate),
                               "--max-connections", str(clients * 2), "--log-level", "WARNING")
    seconds = minutes * 60.0
    log_path = os.path.join(tempfile.gettempdir(), "tegrastats-api-soak-server.log")
    RESULTS.mkdir(parents=True, exist_ok=True)
    readings: List[Dict[str, Any]] = []
    with ServerProcess(argv, port, cpu=0, log_path=log_path) as server:
        start_rss, start_fds = rss_mb(server.pid), fd_count(server.pid)
        print("soak: %.0f min at %.0f samples/s, %d push clients coming and going; server pid %d, "
              "RSS %.1f MB, %d fds at start (log: %s)" % (minutes, rate, clients, server.pid, start_rss,
                                                          start_fds, log_path), flush=True)
        load = subprocess.Popen([sys.executable, os.path.abspath(__file__), "churn", "--port", str(port),
                                 "--clients", str(clients), "--seconds", str(seconds + 5)],
                                stdout=subprocess.PIPE, text=True,
                                preexec_fn=lambda: os.sched_setaffinity(0, {1 % (os.cpu_count() or 1)}))
        began = time.monotonic()
        while time.monotonic() - began < seconds - 1:
            meter = CpuMeter(server.pid).start()
            time.sleep(min(every_s, seconds - (time.monotonic() - began)))
            reading = {"minute": round((time.monotonic() - began) / 60.0, 2), "rss_mb": rss_mb(server.pid),
                       "fds": fd_count(server.pid), "clients": int(health(port).get("connected_clients") or 0),
                       "cpu_pct": meter.stop()}
            readings.append(reading)
            print("minute %(minute)5.1f: RSS %(rss_mb)5.1f MB, %(fds)3d fds (%(clients)2d clients), "
                  "CPU %(cpu_pct)4.1f%%" % reading, flush=True)
        out, _ = load.communicate(timeout=60)
        churned = json.loads(out.strip().splitlines()[-1]) if out.strip() else {}
        exit_status = server.stop()
    problems = verdict(readings)
    print("clients: %s; server exit status %s" % (churned, exit_status))
    report = {"minutes": minutes, "rate": rate, "clients": clients, "start_rss_mb": start_rss,
              "start_fds": start_fds, "readings": readings, "churn": churned, "problems": problems}
    (RESULTS / "soak-latest.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for problem in problems:
        print("FAIL: " + problem)
    if not problems:
        print("PASS: neither RSS nor fds kept growing")
    return 1 if problems or exit_status != 0 else 0


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Soak tegrastats-api with push clients coming and going.")
    sub = parser.add_subparsers(dest="mode")
    run = sub.add_parser("run")
    run.add_argument("--minutes", type=float, default=float(os.environ.get("SOAK_MINUTES") or 10))
    run.add_argument("--rate", type=float, default=50.0, help="samples per second")
    run.add_argument("--clients", type=int, default=50)
    run.add_argument("--every", type=float, default=60.0, help="seconds between readings")
    load = sub.add_parser("churn")
    load.add_argument("--port", type=int, required=True)
    load.add_argument("--clients", type=int, default=50)
    load.add_argument("--seconds", type=float, default=600.0)
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in ("run", "churn"):
        argv.insert(0, "run")
    args = parser.parse_args(argv)
    if args.mode == "churn":
        print(json.dumps(asyncio.run(churn(args.port, args.clients, args.seconds))))
        return 0
    return soak(args.minutes, args.rate, args.clients, args.every)


if __name__ == "__main__":
    raise SystemExit(main())
