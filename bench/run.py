"""``make bench``: measure tegrastats-api on this machine and print a markdown table.

Measures (timings are printed and saved, never asserted):

* parse rate over every real sample line, and over simulated lines of each board (same
  shapes, other numbers), against the frozen baseline (bench/baseline/);
* ``/api/status`` requests/s and latency at 50 keep-alive connections, next to a Tornado
  hello-world handler on the same interpreter in the same run (``wrk`` where installed,
  else an asyncio generator); the server on CPU 0, the load on CPU 1;
* push delay (the document's ``timestamp``, set when the sample was read, to the frame's
  arrival, same clock) and server CPU with 100 to 1000 ``/ws`` clients and 100 Socket.IO
  clients at 10 samples/s, the clients in another process on CPU 1;
* RSS after start and after that load; CPU at 1 sample/s over 30 s with 0 and 10 clients;
* time from ``tegrastats-api run`` to the first 200 on ``/api/status``;
* bytes per push and per client per second for ``/ws``, ``/ws?fields=...`` and Socket.IO;
* a minute of mixed abuse (tests/test_mixed_abuse.py's attackers at once): peak RSS against
  idle, ``/api/health`` p99 for a bystander, samples the well-behaved push clients received,
  fds, the server's CPU and log lines.

Results go to ``bench/results/latest.json`` (and a dated copy). ``--quick`` shortens every
window for a try-out; ``--only SECTION`` runs some sections.
"""
from __future__ import annotations

import argparse
import csv
import datetime
import json
import os
import platform
import random
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

import http_load
from procstat import CpuMeter, fd_count, rss_mb
from serverproc import ServerProcess, free_port, health, tegrastats_api_argv

from tegrastats_api import __version__, parse_line

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "fixtures" / "tegrastats" / "samples.tsv"
RESULTS = ROOT / "bench" / "results"
CLIENTS = str(Path(__file__).resolve().parent / "clients.py")
SERVER_CPU, LOAD_CPU = 0, 1
FIELDS = "cpu.usage,gpu.usage,temperature.tj"
PUSH_RUNS = [("ws", 100, None), ("sio", 100, None), ("ws", 200, None), ("ws", 500, None), ("ws", 1000, None),
             ("ws", 100, FIELDS)]
AB_ROUNDS = 2  # more 100-client /ws and Socket.IO runs, taking turns, for the per-client comparison
TARGETS = {"ratio": 0.85, "push_p99_ms_200": 20.0, "idle_cpu_pct_10": 1.0, "rss_mb": 40.0, "startup_s": 1.0}
Row = Tuple[str, str]


def load_lines() -> List[str]:
    with SAMPLES.open(encoding="utf-8", newline="") as f:
        return [row["line"] for row in csv.DictReader(f, delimiter="\t")]


VARIANTS_PER_LINE = 8  # simulated lines per real line, for the rate on lines whose numbers vary
Stream = Tuple[int, str]  # (which board's stream, line)


def variant_lines(lines: List[str]) -> List[Stream]:
    """For each real line, :data:`VARIANTS_PER_LINE` lines of its board as the simulator writes
    them (the line's shape, other numbers; seeded), tagged with the line's index: a board
    prints one shape, so each index is one stream."""
    from tegrastats_api.simulator import SimulatedBoard

    streams: List[Stream] = []
    for i, line in enumerate(lines):
        board = SimulatedBoard([line], random.Random(i))
        streams.extend((i, next(board)) for _ in range(VARIANTS_PER_LINE))
    return streams


def parse_paths(streams: int) -> Dict[str, Callable[[int, str], Any]]:
    """Today's parse paths and the frozen baseline's (bench/baseline/, the code before the
    speed-ups): ``parse_line`` alone, the hub's parser (:class:`~tegrastats_api.shapes.LineParser`,
    one per stream as each hub has its own), and parse + snapshot document + JSON encoding
    (the hub's work per sample with a client: ``LineParser.parse_deferred``, the document as
    ``hub.Sample`` makes it, :func:`tegrastats_api.hub.encode_document`)."""
    from baseline.parser import parse_line as baseline_parse_line

    from tegrastats_api.hub import encode_document
    from tegrastats_api.shapes import LineParser

    def baseline_encode(document: Dict[str, Any]) -> bytes:
        return json.dumps(document, separators=(",", ":")).encode("utf-8")

    parsers = [LineParser() for _ in range(streams)]
    return {
        "parse_line, baseline": lambda i, line: baseline_parse_line(line, 1.0, source="bench"),
        "parse_line, today": lambda i, line: parse_line(line, 1.0, source="bench"),
        "LineParser.parse, today": lambda i, line: parsers[i].parse(line, 1.0, source="bench"),
        "parse+to_dict+json, baseline": lambda i, line: baseline_encode(
            baseline_parse_line(line, 1.0, source="bench").to_dict()),
        "parse+to_dict+json, today": lambda i, line: encode_document(
            parsers[i].parse_deferred(line, 1.0, source="bench").document()),
    }


def bench_parse(lines: List[Stream], seconds: float = 2.0, rounds: int = 5) -> Dict[str, float]:
    """Lines per second of each of :func:`parse_paths`, A/B interleaved: ``rounds`` rounds of
    ``seconds / rounds`` each, the paths taking turns, the best round of each kept (other
    work on the machine only ever slows a round down)."""
    paths = parse_paths(1 + max(i for i, _ in lines))
    best = {name: 0.0 for name in paths}
    for _ in range(rounds):
        for name, work in paths.items():
            done, start = 0, time.perf_counter()
            while time.perf_counter() - start < seconds / rounds:
                for i, line in lines:
                    work(i, line)
                done += len(lines)
            best[name] = max(best[name], done / (time.perf_counter() - start))
    return best


def section_parse(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    """The rates on the real lines, and on simulated lines of each board (numbers that vary)."""
    from tegrastats_api.hub import json_encoder

    lines = load_lines()
    sets = {"real": list(enumerate(lines)), "simulated": variant_lines(lines)}
    rates = {name: bench_parse(streams, 1.0 if quick else 4.0) for name, streams in sets.items()}
    rows = []
    for name, streams in sets.items():
        what = ("%d real lines" % len(streams) if name == "real"
                else "%d simulated lines, %d per real line" % (len(streams), VARIANTS_PER_LINE))
        for path in ("parse_line", "LineParser.parse", "parse+to_dict+json"):
            today, baseline = rates[name][path + ", today"], rates[name][path.replace("LineParser.parse", "parse_line")
                                                                          + ", baseline"]
            rows.append(("parse rate, %s, %s (lines/s): today / baseline, A/B interleaved%s"
                         % (path, what, " (JSON: %s)" % json_encoder() if path.startswith("parse+") else ""),
                         "%.0f / %.0f (%.2fx)" % (today, baseline, today / baseline)))
    return {"parse_rate": rates}, rows


def section_http(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    """Best of four rounds each, alternating, so that a burst of other work on the machine
    does not decide the ratio (other work only ever slows a round down)."""
    seconds, rounds = (2.0, 2) if quick else (3.0, 4)
    hello_port, api_port = free_port(), free_port()
    hello_argv = [sys.executable, str(Path(__file__).resolve().parent / "http_load.py"), "hello", "--port",
                  str(hello_port)]
    api_argv = tegrastats_api_argv(api_port, "--simulate", "agx-orin", "--log-level", "WARNING")
    runs: Dict[str, List[Dict[str, Any]]] = {"hello": [], "status": []}
    with ServerProcess(hello_argv, hello_port, cpu=SERVER_CPU, ready_path="/") as hello, \
            ServerProcess(api_argv, api_port, cpu=SERVER_CPU) as api:
        urls = {"hello": hello.url + "/", "status": api.url + "/api/status"}
        for url in urls.values():
            http_load.load(url, 50, 1.0, cpu=LOAD_CPU)  # warm up
        for _ in range(rounds):
            for name, url in urls.items():
                runs[name].append(http_load.load(url, 50, seconds, cpu=LOAD_CPU))
    best = {name: max(results, key=lambda r: r["requests_per_s"]) for name, results in runs.items()}
    ratio = best["status"]["requests_per_s"] / best["hello"]["requests_per_s"]
    round_ratios = sorted(s["requests_per_s"] / h["requests_per_s"] for h, s in zip(runs["hello"], runs["status"]))
    rows = []
    for name, label in (("hello", "hello-world handler"), ("status", "`/api/status`")):
        r = best[name]
        rows.append(("%s, 50 keep-alive connections (%s): requests/s; p50 / p99 ms" % (label, r["tool"]),
                     "%.0f; %s / %s" % (r["requests_per_s"], _ms(r["p50_ms"]), _ms(r["p99_ms"]))))
    rows.append(("`/api/status` / hello-world requests/s, best rounds (target >= %.2f); each round's"
                 % TARGETS["ratio"], "%.2f; %s" % (ratio, " ".join("%.2f" % r for r in round_ratios))))
    return {"http": {"runs": runs, "best": best, "ratio": ratio, "round_ratios": round_ratios}}, rows


def run_clients(port: int, server_pid: int, kind: str, count: int, seconds: float,
                fields: Optional[str]) -> Dict[str, Any]:
    """One fleet of push clients in a child process; the server's CPU over its window."""
    argv = [sys.executable, CLIENTS, "--port", str(port), "--kind", kind, "--count", str(count),
            "--seconds", str(seconds), "--cpu", str(LOAD_CPU)] + (["--fields", fields] if fields else [])
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    meter: Optional[CpuMeter] = None
    result: Dict[str, Any] = {}
    samples = 0
    for line in proc.stdout:
        if line.strip() == "measuring":
            meter = CpuMeter(server_pid).start()
            samples = int(health(port).get("samples") or 0)
        elif line.startswith("{"):
            cpu = meter.stop() if meter else None
            result = json.loads(line)
            result["server_cpu_pct"] = cpu
            result["samples"] = int(health(port).get("samples") or 0) - samples
    if proc.wait() != 0 or not result:
        raise RuntimeError("push clients failed: %r" % argv)
    return result


def section_push(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    seconds = 3.0 if quick else 8.0
    port = free_port()
    argv = tegrastats_api_argv(port, "--simulate", "agx-orin", "--update-interval", "0.1",
                               "--max-connections", "2000", "--log-level", "WARNING")
    results = []
    ab: Dict[str, List[float]] = {"ws": [], "sio": []}
    with ServerProcess(argv, port, cpu=SERVER_CPU) as server:
        time.sleep(1.0)
        rss_start, fds_start = rss_mb(server.pid), fd_count(server.pid)
        meter = CpuMeter(server.pid, fine=True).start()
        time.sleep(seconds)
        cpu_0 = meter.stop()  # the same rate without clients: what a client adds is above it
        for kind, count, fields in PUSH_RUNS:
            r = run_clients(port, server.pid, kind, count, seconds, fields)
            r.update(kind=kind, fields=fields)
            results.append(r)
            if count == 100 and fields is None:
                ab[kind].append(r["server_cpu_pct"])
            time.sleep(1.0)  # the server closes the last fleet's connections
        for _ in range(AB_ROUNDS):
            for kind in ("ws", "sio"):
                ab[kind].append(run_clients(port, server.pid, kind, 100, seconds, None)["server_cpu_pct"])
                time.sleep(1.0)
        rss_after, fds_after = rss_mb(server.pid), fd_count(server.pid)
    per_client = {kind: (min(cpus) - cpu_0) / 100 for kind, cpus in ab.items()}
    rows = []
    for r in results:
        if r["fields"]:
            continue
        d = r["delays_ms"]
        rows.append(("push delay at 10 samples/s, %d %s clients: p50 / p99 ms; share of samples received; "
                     "server CPU %%"
                     % (r["clients"], "`/ws`" if r["kind"] == "ws" else "Socket.IO"),
                     "%s / %s; %.0f%%; %.0f%%" % (_ms(d["p50"]), _ms(d["p99"]),
                                                  100.0 * r["frames"] / max(1, r["clients"] * r["samples"]),
                                                  r["server_cpu_pct"])))
    for r in results:
        if r["clients"] != 100:
            continue
        name = "`/ws?fields=%s`" % r["fields"] if r["fields"] else ("`/ws`" if r["kind"] == "ws" else "Socket.IO")
        per_push = r["bytes_per_frame"] or 0.0
        rows.append(("bytes per push, %s (on the wire); per client per second at 10 / 1 samples/s" % name,
                     "%.0f; %.0f / %.0f" % (per_push, r["bytes_per_client_per_s"], per_push)))
    rows.append(("server CPU per client at 10 samples/s, 100 clients, above the %.1f%% without clients "
                 "(best of %d runs each, taking turns): Socket.IO / `/ws` (goal <= 1.5x)" % (cpu_0, AB_ROUNDS + 1),
                 "%.3f%% / %.3f%% (%.2fx)" % (per_client["sio"], per_client["ws"],
                                              per_client["sio"] / per_client["ws"])))
    rows.append(("server RSS after start / after the push load (MB); open fds after start / after",
                 "%.1f / %.1f; %d / %d" % (rss_start, rss_after, fds_start, fds_after)))
    return {"push": {"runs": results, "cpu_pct_0_clients": cpu_0, "ab_cpu_pct_100": ab,
                     "per_client_cpu_pct": per_client, "rss_mb_start": rss_start, "rss_mb_after": rss_after,
                     "fds_start": fds_start, "fds_after": fds_after}}, rows


ORIGINAL_DIR = Path(__file__).resolve().parent / "original"
ORIGINAL_VENV = Path(__file__).resolve().parent / ".venv-original"
ORIGINAL_PACKAGES = ["flask", "flask-socketio", "simple-websocket"]
FAKE_TEGRASTATS = str(ROOT / "tests" / "fake_tegrastats.py")


def original_python() -> str:
    """The interpreter of bench/.venv-original (made with this Python, the original's
    libraries from PyPI installed) for the baseline server bench/original/app.py."""
    python = ORIGINAL_VENV / "bin" / "python"
    stamp = ORIGINAL_VENV / ".stamp"
    if not stamp.exists():
        print("making %s (%s)" % (ORIGINAL_VENV, ", ".join(ORIGINAL_PACKAGES)), file=sys.stderr, flush=True)
        base = getattr(sys, "_base_executable", None) or sys.executable
        subprocess.run([base, "-m", "venv", str(ORIGINAL_VENV)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "-q", *ORIGINAL_PACKAGES], check=True)
        stamp.write_text(" ".join(ORIGINAL_PACKAGES) + "\n", encoding="utf-8")
    return str(python)


def run_fleets(fleets: List[Tuple[int, int, str, int]], seconds: float) -> List[Dict[str, Any]]:
    """Several fleets of push clients at once, one child process each (on LOAD_CPU), one per
    ``(port, server_pid, kind, count)``; each server's CPU over the same window, which opens
    when every fleet is connected and measuring."""
    procs = []
    for port, _pid, kind, count in fleets:
        argv = [sys.executable, CLIENTS, "--port", str(port), "--kind", kind, "--count", str(count),
                "--seconds", str(seconds), "--cpu", str(LOAD_CPU)]
        procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE, text=True))
    for proc in procs:  # wait for every fleet to be up
        assert proc.stdout is not None
        for line in proc.stdout:
            if line.strip() == "measuring":
                break
    meters = [CpuMeter(pid, fine=True).start() for _port, pid, _kind, _count in fleets]
    time.sleep(max(0.5, seconds - 1.0))  # within every fleet's own window
    cpus = [meter.stop() for meter in meters]
    results = []
    for proc, cpu in zip(procs, cpus):
        out, _ = proc.communicate(timeout=seconds + 30)
        line = [row for row in out.splitlines() if row.startswith("{")]
        if proc.returncode != 0 or not line:
            raise RuntimeError("push clients failed: %r" % proc.args)
        result = json.loads(line[-1])
        result["server_cpu_pct"] = cpu
        results.append(result)
    return results


def section_idle(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    """The default setting, 1 sample/s: what the monitor costs a Jetson that is busy, side by
    side with bench/original/app.py (the original's architecture, Flask-SocketIO in threading
    mode) and with our code before this work (:data:`BEFORE_REV`, where a git checkout has it):
    the servers run at once, pinned to the same CPU, read the same lines from
    tests/fake_tegrastats.py at 1 s, and are measured over the same windows (0 clients, then
    10 Socket.IO clients each, then 10 ``/ws`` clients for ours)."""
    import contextlib

    seconds = 5.0 if quick else 30.0
    ours_port, orig_port = free_port(), free_port()
    ours_argv = tegrastats_api_argv(ours_port, "--tegrastats", FAKE_TEGRASTATS, "--log-level", "WARNING")
    orig_argv = [original_python(), str(ORIGINAL_DIR / "app.py"), "--port", str(orig_port),
                 "--tegrastats", FAKE_TEGRASTATS, "--interval", "1000"]
    with contextlib.ExitStack() as stack:
        servers = {"ours": (stack.enter_context(ServerProcess(ours_argv, ours_port, cpu=SERVER_CPU)), ours_port),
                   "original": (stack.enter_context(ServerProcess(orig_argv, orig_port, cpu=SERVER_CPU)), orig_port)}
        variants = code_variants()
        if "before" in variants:
            server, port = variant_server(variants["before"], "--tegrastats", FAKE_TEGRASTATS, "--log-level", "WARNING")
            servers["before"] = (stack.enter_context(server), port)
        time.sleep(2.0)
        rss_start = {name: rss_mb(server.pid) for name, (server, _port) in servers.items()}
        meters = {name: CpuMeter(server.pid, fine=True).start() for name, (server, _port) in servers.items()}
        time.sleep(seconds)
        idle0 = {name: meter.stop() for name, meter in meters.items()}
        fleets = [(port, server.pid, "sio", 10) for server, port in servers.values()]
        sio10 = {name: r["server_cpu_pct"] for name, r in zip(servers, run_fleets(fleets, seconds + 1.0))}
        ours, _ = servers["ours"]
        ws10 = run_fleets([(ours_port, ours.pid, "ws", 10)], seconds + 1.0)[0]["server_cpu_pct"]
        rss_after = rss_mb(ours.pid)
    before = "before" in idle0
    rows = [
        ("server RSS after start at 1 sample/s (MB, target <= %.0f); the original's%s"
         % (TARGETS["rss_mb"], "; before (%s)" % BEFORE_REV if before else ""),
         "; ".join("%.1f" % rss_start[name] for name in servers)),
        ("server CPU at 1 sample/s over %.0f s, 0 clients: ours / the original's, side by side (goal <= half)%s"
         % (seconds, "; before (%s)" % BEFORE_REV if before else ""),
         "%.3f%% / %.3f%% (%.3fx)%s" % (idle0["ours"], idle0["original"], _ratio(idle0),
                                         "; %.3f%%" % idle0["before"] if before else "")),
        ("server CPU at 1 sample/s over %.0f s, 10 Socket.IO clients: ours / the original's, side by side "
         "(goal <= half)%s" % (seconds - 1.0, "; before (%s)" % BEFORE_REV if before else ""),
         "%.3f%% / %.3f%% (%.3fx)%s" % (sio10["ours"], sio10["original"], _ratio(sio10),
                                         "; %.3f%%" % sio10["before"] if before else "")),
        ("server CPU at 1 sample/s over %.0f s, 10 `/ws` clients (target <= %.0f%%)"
         % (seconds - 1.0, TARGETS["idle_cpu_pct_10"]), "%.3f%%" % ws10),
    ]
    return {"idle": {"seconds": seconds, "rss_mb_start": rss_start["ours"], "rss_mb_after_10_clients": rss_after,
                     "rss_mb_start_all": rss_start, "cpu_pct_0_clients_all": idle0, "cpu_pct_10_sio_clients_all": sio10,
                     "cpu_pct_0_clients": idle0["ours"], "cpu_pct_10_sio_clients": sio10["ours"],
                     "cpu_pct_10_clients": ws10}}, rows


def _ratio(pair: Dict[str, float]) -> float:
    return pair["ours"] / pair["original"] if pair["original"] else float("nan")


BEFORE_REV = "533c73a"  # the commit before the idle-cost work (docs/PERFORMANCE.md)


def before_tree() -> Optional[Path]:
    """The package as of :data:`BEFORE_REV`, unpacked once into bench/.before-REV (``git
    archive``), to run side by side with today's; None outside a git checkout."""
    tree = Path(__file__).resolve().parent / (".before-" + BEFORE_REV)
    if not (tree / "tegrastats_api" / "__init__.py").exists():
        tree.mkdir(exist_ok=True)
        try:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", BEFORE_REV, "tegrastats_api"],
                                     capture_output=True, check=True).stdout
        except (OSError, subprocess.CalledProcessError):
            return None
        subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    return tree


def code_variants() -> Dict[str, Dict[str, str]]:
    """``{"today": env, "before": env}``: the environment that runs each package with
    ``python -S -m tegrastats_api`` (see :func:`section_startup`); no "before" outside git."""
    import sysconfig

    site = sysconfig.get_paths()["purelib"]
    variants = {"today": {"PYTHONPATH": os.pathsep.join([str(ROOT), site])}}
    before = before_tree()
    if before is not None:
        variants["before"] = {"PYTHONPATH": os.pathsep.join([str(before), site])}
    return variants


def variant_server(env: Dict[str, str], *settings: str) -> Tuple[ServerProcess, int]:
    """A server of one :func:`code_variants` variant, pinned to SERVER_CPU, and its port."""
    port = free_port()
    argv = [sys.executable, "-S", "-m", "tegrastats_api", "--config", os.devnull, "run", "--host", "127.0.0.1",
            "--port", str(port), *settings]
    # cwd: not the checkout, whose package `-m` would find first
    return ServerProcess(argv, port, cpu=SERVER_CPU, env=env, cwd=str(RESULTS.parent)), port


def section_fanout(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    """Socket.IO fan-out, today's code against :data:`BEFORE_REV`'s (two servers at once, 10
    samples/s each, 100 Socket.IO clients against one then the other, taking turns), and
    ``/ws`` on today's: server CPU per client above each server's CPU without clients."""
    seconds, rounds = (3.0, 1) if quick else (8.0, 3)
    settings = ("--simulate", "agx-orin", "--update-interval", "0.1", "--max-connections", "500",
                "--log-level", "WARNING")
    servers = {name: variant_server(env, *settings) for name, env in code_variants().items()}
    try:
        time.sleep(1.0)
        base = {}
        meters = {name: CpuMeter(server.pid, fine=True).start() for name, (server, _port) in servers.items()}
        time.sleep(seconds)
        base = {name: meter.stop() for name, meter in meters.items()}
        runs: Dict[str, List[float]] = {}
        for _ in range(rounds):
            for name, kind in [(name, "sio") for name in servers] + [("today", "ws")]:
                server, port = servers[name]
                cpu = run_clients(port, server.pid, kind, 100, seconds, None)["server_cpu_pct"]
                runs.setdefault("%s %s" % (name, kind), []).append(cpu)
                time.sleep(1.0)
    finally:
        for server, _port in servers.values():
            server.stop()
    per_client = {key: (min(cpus) - base[key.split()[0]]) / 100 for key, cpus in runs.items()}
    rows = [("Socket.IO fan-out at 10 samples/s, 100 clients: server CPU per client above the CPU without clients, "
             "best of %d runs each, taking turns: %s" % (rounds, " / ".join(sorted(per_client))),
             " / ".join("%.3f%%" % per_client[key] for key in sorted(per_client)))]
    if "today ws" in per_client:
        rows.append(("Socket.IO / `/ws` per client, today (goal <= 1.5x)%s" % (
            "; before" if "before sio" in per_client else ""),
            "%.2fx%s" % (per_client["today sio"] / per_client["today ws"],
                         "; %.2fx" % (per_client["before sio"] / per_client["today ws"])
                         if "before sio" in per_client else "")))
    return {"fanout": {"cpu_pct_0_clients": base, "runs": runs, "per_client_cpu_pct": per_client}}, rows


STARTUP_ROUNDS = 11  # a start takes ~0.2 s, give or take 30 ms from round to round: 5 rounds' medians swapped places


def section_startup(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    """Start-up time and RSS after start, today's code and :data:`BEFORE_REV`'s taking turns
    (same interpreter and libraries; ``python -S`` so that the editable install's finder does
    not choose the package: each variant's tree, then site-packages, on ``PYTHONPATH``)."""
    import sysconfig

    before = before_tree()
    site = sysconfig.get_paths()["purelib"]
    variants: Dict[str, Dict[str, str]] = {"today": {"PYTHONPATH": os.pathsep.join([str(ROOT), site])}}
    if before is not None:
        variants["before"] = {"PYTHONPATH": os.pathsep.join([str(before), site])}
    times: Dict[str, List[float]] = {name: [] for name in variants}
    rss: Dict[str, List[float]] = {name: [] for name in variants}
    for _ in range(3 if quick else STARTUP_ROUNDS):
        for name, env in variants.items():
            port = free_port()
            argv = [sys.executable, "-S", "-m", "tegrastats_api", "--config", os.devnull, "run", "--host", "127.0.0.1",
                    "--port", str(port), "--simulate", "agx-orin", "--log-level", "WARNING"]
            # cwd: not the checkout, whose package `-m` would find first
            with ServerProcess(argv, port, cpu=SERVER_CPU, env=env, cwd=str(RESULTS.parent)) as server:
                times[name].append(server.ready_s)
                time.sleep(1.0)
                rss[name].append(rss_mb(server.pid))
    rows = []
    for name in variants:
        t = sorted(times[name])
        rows.append(("`python -S -m tegrastats_api run` to the first 200 on `/api/status`, %s: median / max of %d "
                     "(s, target <= %.0f); RSS 1 s after (MB, median)"
                     % ("today" if name == "today" else "before (%s)" % BEFORE_REV, len(t), TARGETS["startup_s"]),
                     "%.3f / %.3f; %.1f" % (t[len(t) // 2], t[-1], sorted(rss[name])[len(t) // 2])))
    return {"startup_s": times["today"], "startup": {"times_s": times, "rss_mb": rss}}, rows


def section_abuse(quick: bool) -> Tuple[Dict[str, Any], List[Row]]:
    """Every attacker of tests/test_mixed_abuse.py at once (token-less handshakes, distinct
    ``fields=`` lists, abandoned polling sessions, malformed packets, slow readers) against a
    server with a token, for 60 s (15 with --quick): what well-behaved clients still get."""
    import tempfile

    sys.path.insert(0, str(ROOT / "tests"))
    import fault_tools
    import test_mixed_abuse as mixed

    seconds = 15.0 if quick else mixed.ATTACK_S
    with tempfile.TemporaryDirectory() as tmp:
        server = fault_tools.ServerProcess(Path(tmp), *mixed.SERVER_SETTINGS)
        try:
            figures = mixed.mixed_abuse(server, seconds)
        finally:
            server.stop()
    p99 = mixed.percentile(figures["latencies"], 0.99) * 1000
    received = ", ".join("%s %d/%d" % (name, c["window"] - len(c["missing"]), c["window"])
                         for name, c in sorted(figures["clients"].items()))
    rows = [
        ("mixed abuse for %.0f s: peak RSS / idle RSS (MB, goal < 2x)" % seconds,
         "%.1f / %.1f (%.2fx)" % (figures["peak_rss"], figures["idle_rss"], figures["peak_rss"] / figures["idle_rss"])),
        ("mixed abuse: `/api/health` p99 for a client not attacking (ms, goal < 100)", "%.1f" % p99),
        ("mixed abuse: samples received by the well-behaved push clients (goal: all)", received),
        ("mixed abuse: fds before / max during / after", "%d / %d / %d" % (
            figures["fds_before"], figures["fds_max"], figures["fds_after"])),
        ("mixed abuse: server CPU (% of a core) and log lines", "%.0f%%, %d lines" % (
            figures["server_cpu"] * 100, figures["log_lines"])),
    ]
    data = {key: figures[key] for key in ("seconds", "idle_rss", "peak_rss", "fds_before", "fds_max", "fds_after",
                                          "server_cpu", "log_lines", "log_tracebacks")}
    data.update(health_p99_ms=p99, received=received)
    return {"abuse": data}, rows


SECTIONS: Dict[str, Callable[[bool], Tuple[Dict[str, Any], List[Row]]]] = {
    "parse": section_parse,
    "http": section_http,
    "push": section_push,
    "idle": section_idle,
    "startup": section_startup,
    "fanout": section_fanout,
    "abuse": section_abuse,
}


def _ms(value: Optional[float]) -> str:
    return "-" if value is None else "%.1f" % value


def describe_machine() -> Dict[str, Any]:
    model = "cpu"
    try:
        with open("/proc/cpuinfo") as handle:
            model = next(line.split(":", 1)[1].strip() for line in handle if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import socketio
    import tornado

    return {
        "cpu": model, "cores": os.cpu_count(), "kernel": platform.release(),
        "python": platform.python_version(), "tornado": tornado.version,
        "python-socketio": getattr(socketio, "__version__", None) or _dist_version("python-socketio"),
        "load_average_at_start": os.getloadavg(), "load_tool": http_load.tool(),
    }


def _dist_version(name: str) -> Optional[str]:
    try:
        from importlib.metadata import version
    except ImportError:  # pragma: no cover - Python 3.7
        return None
    return version(name)


def main(argv: Optional[List[str]] = None) -> int:
    parser = argparse.ArgumentParser(description="Measure tegrastats-api on this machine.")
    parser.add_argument("--quick", action="store_true", help="short windows, for a try-out")
    parser.add_argument("--only", action="append", choices=sorted(SECTIONS), help="run only these sections")
    args = parser.parse_args(argv)
    if len(os.sched_getaffinity(0)) < 2:
        print("note: fewer than 2 CPUs; server and load share one", file=sys.stderr)
    machine = describe_machine()
    started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    report: Dict[str, Any] = {"version": __version__, "machine": machine, "started": started, "quick": args.quick}
    rows: List[Row] = []
    for name in args.only or list(SECTIONS):
        print("== %s" % name, file=sys.stderr, flush=True)
        data, section_rows = SECTIONS[name](args.quick)
        report.update(data)
        rows += section_rows
    print("tegrastats-api %s, %s UTC, on %s (%d cores), Linux %s, Python %s, tornado %s, python-socketio %s; "
          "load average at start %.2f\n" % (
              __version__, started.replace("T", " ").rstrip("Z"), machine["cpu"], machine["cores"],
              machine["kernel"], machine["python"], machine["tornado"], machine["python-socketio"],
              machine["load_average_at_start"][0]))
    print("| measure | value |\n|---|---|")
    for label, value in rows:
        print("| %s | %s |" % (label, value))
    RESULTS.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report, indent=2) + "\n"
    (RESULTS / "latest.json").write_text(text, encoding="utf-8")
    (RESULTS / ("bench-%s.json" % started.replace(":", ""))).write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
