"""A broker outage, measured: REST latency and RSS of a server publishing to MQTT.

Usage: ``python bench/mqtt_outage.py [--up S] [--down S] [--after S]`` (defaults 30, 60, 30).
Starts Debian's ``mosquitto`` on a free port and ``tegrastats-api run --simulate --mqtt ...
--mqtt-interval 1 --history-size 10`` (1 sample/s, a state message a second; a short history,
so that RSS does not grow with /api/history filling up), then: the broker up, stopped for
``--down`` seconds, started again on the same port. In each phase a client on another CPU
asks ``/api/status`` every 50 ms over one keep-alive connection; the table gives the
latencies, the server's RSS at the start and end of the phase, the state messages a
subscriber received, and how long publishing took to resume.

Timings are printed, never judged (tests/test_mqtt.py holds the behaviour). Needs mosquitto
and paho-mqtt.
"""
from __future__ import annotations

import argparse
import http.client
import os
import sys
import tempfile
import time
from typing import Dict, List

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tests"))

from mqtt_tools import Broker, Subscriber  # noqa: E402
from procstat import rss_mb  # noqa: E402
from serverproc import HOST, ServerProcess, free_port, tegrastats_api_argv  # noqa: E402

PREFIX = "tegrastats/bench"


def measure(port: int, pid: int, seconds: float) -> Dict[str, float]:
    """``/api/status`` every 50 ms for ``seconds``: latencies (ms) and RSS (MB) at both ends."""
    conn = http.client.HTTPConnection(HOST, port, timeout=5)
    times: List[float] = []
    rss_start = rss_mb(pid)
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        started = time.perf_counter()
        conn.request("GET", "/api/status")
        response = conn.getresponse()
        response.read()
        assert response.status == 200, response.status
        times.append((time.perf_counter() - started) * 1000)
        time.sleep(0.05)
    conn.close()
    times.sort()
    return {"requests": len(times), "p50": times[len(times) // 2], "p99": times[int(len(times) * 0.99)],
            "max": times[-1], "rss_start": rss_start, "rss_end": rss_mb(pid)}


def main(argv: List[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--up", type=float, default=30.0)
    parser.add_argument("--down", type=float, default=60.0)
    parser.add_argument("--after", type=float, default=30.0)
    args = parser.parse_args(argv)
    os.sched_setaffinity(0, {1 % os.cpu_count()})  # the client on CPU 1, the server on CPU 0
    folder = tempfile.mkdtemp(prefix="mqtt-outage-")
    broker = Broker(folder)
    port = free_port()
    log_path = os.path.join(folder, "server.log")
    server = ServerProcess(tegrastats_api_argv(port, "--simulate", "--mqtt", "mqtt://127.0.0.1:%d" % broker.port,
                                               "--mqtt-interval", "1", "--mqtt-prefix", PREFIX,
                                               "--history-size", "10"), port,
                           log_path=log_path)
    sub = Subscriber(broker.port, [PREFIX + "/state"])
    rows = []
    try:
        sub.wait_for(lambda m: m, timeout=20, what="a state message")
        count = len(sub.snapshot())
        rows.append(("broker up", measure(port, server.pid, args.up), len(sub.snapshot()) - count))
        broker.stop()
        rows.append(("broker stopped", measure(port, server.pid, args.down), 0))
        broker.start()
        restarted = time.monotonic()
        count = len(sub.snapshot())
        sub.wait_for(lambda m: len(m) > count, timeout=60, what="a state message after the restart")
        resumed = time.monotonic() - restarted
        count = len(sub.snapshot())
        rows.append(("broker back", measure(port, server.pid, args.after), len(sub.snapshot()) - count))
    finally:
        sub.close()
        server.stop()
        broker.stop()
    print("| phase | s | requests | p50 ms | p99 ms | max ms | RSS MB start -> end | state messages |")
    print("|---|---|---|---|---|---|---|---|")
    for (name, m, states), seconds in zip(rows, (args.up, args.down, args.after)):
        print("| %s | %.0f | %d | %.2f | %.2f | %.2f | %.1f -> %.1f | %d |" % (
            name, seconds, m["requests"], m["p50"], m["p99"], m["max"], m["rss_start"], m["rss_end"], states))
    print("\npublishing resumed %.1f s after the broker was back" % resumed)
    with open(log_path, errors="replace") as handle:
        mqtt_lines = [line.rstrip() for line in handle if "MQTT" in line and "INFO" not in line[:5]]
    print("server log, MQTT warnings: %d" % len(mqtt_lines))
    for line in mqtt_lines:
        print("  " + line)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
