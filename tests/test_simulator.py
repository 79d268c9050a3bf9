"""``--simulate``: every board's simulated lines are real tegrastats text, smooth and in range.

The generator is checked without waiting: 60 samples at a 1 s interval are 60 s of a
board. Every line goes through the real parser. The ranges are computed here, from the
recorded lines parsed by the real parser, with the widening rule the simulator documents
(restated, not imported). The same checks applied to the old replay of the recorded
lines fail (the square wave of the issue), so they can fail. Then the real server:
``tegrastats-api run --simulate BOARD`` read back through ``/api/history``.
"""
from __future__ import annotations

import asyncio
import math
import random
import re
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple

import pytest

from fault_tools import deadline_after
from tegrastats_api.console import format_snapshot
from tegrastats_api.parser import parse_line
from tegrastats_api.plan import list_boards, load_board
from tegrastats_api.replay import ReplaySource
from tegrastats_api.simulator import SimulatedBoard
from tegrastats_api.summary import input_power_mw

Doc = Dict[str, Any]
BOARDS = list_boards()
SEEDS = (1, 2, 3, 4, 5)
SAMPLES = 60  # 60 s at the default 1 s interval
SAMPLES_TSV = Path(__file__).resolve().parent / "fixtures" / "tegrastats" / "samples.tsv"
FIXED_SENSORS = ("pmic",)


def documents(lines: Sequence[str]) -> List[Doc]:
    return [parse_line(line, 0.0, source="simulator").to_dict() for line in lines]


def simulate(board_lines: Sequence[str], seed: int, samples: int = SAMPLES, interval_s: float = 1.0) -> List[str]:
    board = SimulatedBoard(board_lines, random.Random(seed), interval_s=interval_s)
    return [next(board) for _ in range(samples)]


def shape(node: Any) -> Any:
    """The keys of a document (lists by their length), without the values."""
    if isinstance(node, dict):
        return {key: shape(value) for key, value in node.items()}
    if isinstance(node, list):
        return [shape(value) for value in node]
    return None


# ------------------------------------------------------------------ the documented ranges


def widen(values: Sequence[float], min_span: float, floor: float = -math.inf,
          ceiling: float = math.inf) -> Tuple[float, float]:
    """The recorded range, widened to ``min_span`` around its middle, kept in floor..ceiling."""
    lo, hi = min(values), max(values)
    if hi - lo >= min_span:
        return lo, hi
    lo, hi = (lo + hi) / 2 - min_span / 2, (lo + hi) / 2 + min_span / 2
    if lo < floor:
        return floor, floor + min_span
    if hi > ceiling:
        return ceiling - min_span, ceiling
    return lo, hi


def load_range(values: Sequence[float]) -> Tuple[float, float]:
    return widen(values, 20.0, 0.0, 100.0)


def recorded_ranges(recorded: Sequence[Doc]) -> Dict[str, Tuple[float, float]]:
    """``path -> (lo, hi)`` for every number the simulator may move, from the recorded lines."""
    template = recorded[0]
    same_cores = [d for d in recorded if len(d["cpu"]["cores"]) == len(template["cpu"]["cores"])]
    cores = [c for d in same_cores for c in d["cpu"]["cores"] if c["online"]]
    ranges = {"core.usage": load_range([c["usage"] for c in cores])}
    if any(c["freq"] is not None for c in cores):
        ranges["core.freq"] = widen([c["freq"] for c in cores if c["freq"] is not None], 0)
    for name, value in template["temperature"].items():
        if value is not None:
            ranges["temperature." + name] = widen(
                [d["temperature"][name] for d in recorded if d["temperature"].get(name) is not None], 4.0)
    for name in template["power"]:
        values = [v for d in recorded if name in d["power"] for k, v in d["power"][name].items()
                  if k in ("current", "average", "max")]
        mid = (min(values) + max(values)) / 2
        ranges["power." + name] = widen(values, max(0.2 * mid, 50.0), 0.0) if any(values) else (0, 0)
    gpu = template["gpu"]
    if gpu["usage"] is not None:
        ranges["gpu.usage"] = load_range([d["gpu"]["usage"] for d in recorded if d["gpu"]["usage"] is not None])
    for i, _ in enumerate(gpu["freq"]):
        ranges["gpu.freq.%d" % i] = widen([d["gpu"]["freq"][i] for d in recorded
                                           if len(d["gpu"]["freq"]) == len(gpu["freq"])], 0)
    if template["emc"]:
        for key, rule in (("usage", load_range), ("freq", lambda v: widen(v, 0))):
            values = [d["emc"][key] for d in recorded if d["emc"] and d["emc"][key] is not None]
            if values:
                ranges["emc." + key] = rule(values)
    for name in template["engines"]:
        for key, rule in (("usage", load_range), ("freq", lambda v: widen(v, 0))):
            values = [d["engines"][name][key] for d in recorded
                      if name in d["engines"] and d["engines"][name][key] is not None]
            if values:
                ranges["engines.%s.%s" % (name, key)] = rule(values)
    if template.get("mts"):
        for key in ("fg", "bg"):
            ranges["mts." + key] = load_range([d["mts"][key] for d in recorded if d.get("mts")])
    for part in ("ram", "swap"):
        if template["memory"][part]:
            total = template["memory"][part]["total"]
            used = [d["memory"][part]["used"] for d in recorded if d["memory"][part]]
            ranges[part] = widen(used, 0.02 * total, 0.0, total) if any(used) else (0, 0)
    return ranges


def values_of(doc: Doc) -> Iterator[Tuple[str, float]]:
    """``(range name, value)`` of every number of a document that has a range."""
    for core in doc["cpu"]["cores"]:
        if core["online"]:
            yield "core.usage", core["usage"]
            if core["freq"] is not None:
                yield "core.freq", core["freq"]
    for name, value in doc["temperature"].items():
        yield "temperature." + name, value
    for name, rail in doc["power"].items():
        for key in ("current", "average", "max"):
            if key in rail:
                yield "power." + name, rail[key]
    if doc["gpu"]["usage"] is not None:
        yield "gpu.usage", doc["gpu"]["usage"]
    for i, freq in enumerate(doc["gpu"]["freq"]):
        yield "gpu.freq.%d" % i, freq
    for key, value in (doc["emc"] or {}).items():
        yield "emc." + key, value
    for name, engine in doc["engines"].items():
        for key in ("usage", "freq"):
            if engine[key] is not None:
                yield "engines.%s.%s" % (name, key), engine[key]
    for key, value in (doc.get("mts") or {}).items():
        yield "mts." + key, value
    for part in ("ram", "swap"):
        if doc["memory"][part]:
            yield part, doc["memory"][part]["used"]


# ------------------------------------------------------------------ the checks


def autocorrelation(values: Sequence[float]) -> float:
    mean = sum(values) / len(values)
    dev = [v - mean for v in values]
    var = sum(d * d for d in dev)
    return sum(a * b for a, b in zip(dev, dev[1:])) / var if var else 1.0


def correlation(xs: Sequence[float], ys: Sequence[float]) -> float:
    mx, my = sum(xs) / len(xs), sum(ys) / len(ys)
    cov = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sx = math.sqrt(sum((x - mx) ** 2 for x in xs))
    sy = math.sqrt(sum((y - my) ** 2 for y in ys))
    return cov / (sx * sy) if sx and sy else 0.0


def no_square_wave(values: Sequence[float]) -> Optional[str]:
    """Why a series looks like a square wave, or None: it must take many values and move
    on from one sample to the next (positive lag-1 autocorrelation), not flip."""
    if len(set(values)) < 5:
        return "only %d distinct values: %s" % (len(set(values)), sorted(set(values)))
    if autocorrelation(values) <= 0:
        return "flips from sample to sample (autocorrelation %.2f)" % autocorrelation(values)
    return None


def cpu_usage(doc: Doc) -> float:
    return doc["cpu"]["usage"]


def board_power(doc: Doc) -> float:
    return input_power_mw(doc["power"])


def gpu_usage(doc: Doc) -> float:
    return doc["gpu"]["usage"]


def gpu_varies(recorded: Sequence[Doc]) -> bool:
    """A GPU that prints its load and is not power-gated (clocks all 0) in the recordings."""
    gpu = recorded[0]["gpu"]
    return gpu["usage"] is not None and not all(f == 0 for d in recorded for f in d["gpu"]["freq"])


def series_problems(docs: Sequence[Doc], recorded: Sequence[Doc]) -> List[str]:
    series: Dict[str, Callable[[Doc], float]] = {"cpu load": cpu_usage, "board power": board_power}
    if gpu_varies(recorded):
        series["gpu load"] = gpu_usage
    problems = []
    for what, pick in series.items():
        why = no_square_wave([pick(d) for d in docs])
        if why:
            problems.append("%s %s" % (what, why))
    return problems


def temperature_problems(docs: Sequence[Doc], recorded: Sequence[Doc]) -> List[str]:
    problems = []
    for name, value in recorded[0]["temperature"].items():
        series = [d["temperature"][name] for d in docs]
        if name in FIXED_SENSORS or value is None:
            if set(series) != {value}:
                problems.append("%s is fixed at %s but moved: %s" % (name, value, sorted(set(series))))
            continue
        steps = [abs(b - a) for a, b in zip(series, series[1:])]
        if max(steps) > 1.0 + 1e-9:
            problems.append("%s jumps %.3f C in one sample" % (name, max(steps)))
    return problems


def junction_problems(docs: Sequence[Doc]) -> List[str]:
    """``tj`` (the junction) is the hottest sensor, as in the recorded lines (within 0.1 C)."""
    problems = []
    for doc in docs:
        temps = doc["temperature"]
        others = [v for k, v in temps.items() if k != "tj" and k not in FIXED_SENSORS and v is not None]
        if "tj" in temps and others and temps["tj"] < max(others) - 0.1:
            problems.append("tj %s below the hottest sensor %s" % (temps["tj"], max(others)))
    return problems


def range_problems(docs: Sequence[Doc], recorded: Sequence[Doc]) -> List[str]:
    ranges = recorded_ranges(recorded)
    template = recorded[0]
    problems = []
    for doc in docs:
        for name, value in values_of(doc):
            lo, hi = ranges[name]
            slack = 0.001 if name.startswith("temperature.") else 0  # printed in whole millidegrees
            if not lo - slack <= value <= hi:
                problems.append("%s = %s outside %s..%s" % (name, value, lo, hi))
        for part in ("ram", "swap", "iram"):
            if (doc["memory"][part] or {}).get("total") != (template["memory"][part] or {}).get("total"):
                problems.append("%s total changed" % part)
    return sorted(set(problems))[:10]


# ------------------------------------------------------------------ 60 s of every board


@pytest.mark.parametrize("board", BOARDS)
def test_sixty_seconds_of_every_board_are_real_tegrastats_lines_of_its_format(board):
    recorded_lines = load_board(board)
    template = documents(recorded_lines[:1])[0]
    for seed in SEEDS:
        lines = simulate(recorded_lines, seed)
        docs = documents(lines)
        assert len(set(lines)) == len(lines), "every line is new"
        for line, doc in zip(lines, docs):
            assert doc["extra"] == {}, line
            assert shape(doc) == shape(template), line
            assert (doc["source_time"] is None) == (template["source_time"] is None), line
            assert [c["online"] for c in doc["cpu"]["cores"]] == [c["online"] for c in template["cpu"]["cores"]]
            assert {n: e["online"] for n, e in doc["engines"].items()} == {
                n: e["online"] for n, e in template["engines"].items()}
            assert doc["memory"]["iram"] == template["memory"]["iram"]
        # the exact token forms of the board: the same words, in the same order
        assert all(words(line) == words(recorded_lines[0]) for line in lines), (lines[0], recorded_lines[0])


def words(line: str) -> List[str]:
    """A line with every number replaced by ``#``: its format."""
    text = re.sub(r"^\d\d-\d\d-\d{4} \d\d:\d\d:\d\d ", "", line)
    return re.sub(r"-?\d+(?:\.\d+)?", "#", text).split()


@pytest.mark.parametrize("board", BOARDS)
def test_every_board_moves_smoothly_within_its_recorded_ranges(board):
    recorded = documents(load_board(board))
    for seed in SEEDS:
        docs = documents(simulate(load_board(board), seed))
        assert temperature_problems(docs, recorded) == [], "seed %d" % seed
        assert range_problems(docs, recorded) == [], "seed %d" % seed
        assert series_problems(docs, recorded) == [], "seed %d" % seed
        assert junction_problems(docs) == [] and junction_problems(recorded) == [], "seed %d" % seed


def test_the_checks_catch_the_square_wave_of_replaying_the_recorded_lines():
    """What ``--simulate`` used to send (the recorded lines in turn) fails the checks above
    on every board with two different recorded lines, e.g. Nano 35<->65 C, Orin Nano 3<->12.5 W."""
    caught = {}
    for board in BOARDS:
        recorded_lines = load_board(board)
        if len(set(recorded_lines)) < 2:
            continue
        recorded = documents(recorded_lines)
        replayed = [recorded[i % len(recorded)] for i in range(SAMPLES)]
        caught[board] = series_problems(replayed, recorded) + temperature_problems(replayed, recorded)
    assert caught and all(caught.values()), caught
    assert any("jumps" in p for p in caught["nano"]), caught["nano"]
    assert any("board power" in p for p in caught["orin-nano"]), caught["orin-nano"]
    assert any("gpu load" in p for p in caught["orin-nano"]), caught["orin-nano"]


def test_clocks_follow_the_load_where_the_board_changes_its_clocks():
    checked = {"cpu": [], "gpu": []}
    for board in BOARDS:
        recorded = documents(load_board(board))
        ranges = recorded_ranges(recorded)
        for seed in SEEDS:
            docs = documents(simulate(load_board(board), seed))
            online = [[c for c in d["cpu"]["cores"] if c["online"]] for d in docs]
            lo, hi = ranges.get("core.freq", (0, 0))
            if hi > lo:
                r = correlation([sum(c["usage"] for c in cores) for cores in online],
                                [sum(c["freq"] for c in cores) for cores in online])
                assert r > 0.5, (board, seed, r)
                checked["cpu"].append(board)
            else:  # a clock that never changed in the recordings stays put
                assert {c["freq"] for cores in online for c in cores} <= {lo}, board
            lo, hi = ranges.get("gpu.freq.0", (0, 0))
            if hi > lo and gpu_varies(recorded):
                r = correlation([gpu_usage(d) for d in docs], [d["gpu"]["freq"][0] for d in docs])
                assert r > 0.5, (board, seed, r)
                checked["gpu"].append(board)
    assert {"nano", "agx-orin", "thor", "tx2"} <= set(checked["cpu"]), checked
    assert {"orin-nano", "xavier-nx", "agx-xavier"} <= set(checked["gpu"]), checked


@pytest.mark.parametrize("board", ["nano", "orin-nano", "xavier-nx", "agx-xavier"])
def test_temperatures_follow_the_power_with_a_lag(board):
    """Ten minutes: the temperature goes with the power of the last minute or so, and
    more closely than with the power of the same second (it lags)."""
    for seed in SEEDS[:3]:
        docs = documents(simulate(load_board(board), seed, samples=600))
        names = [n for n, v in docs[0]["temperature"].items() if n not in FIXED_SENSORS and v is not None]
        temps = [sum(d["temperature"][n] for n in names) / len(names) for d in docs]
        power = [board_power(d) for d in docs]
        lagged = [sum(power[max(0, i - 40):i + 1]) / len(power[max(0, i - 40):i + 1]) for i in range(len(power))]
        assert correlation(temps[60:], lagged[60:]) > 0.6, (board, seed)
        assert correlation(temps[60:], lagged[60:]) > correlation(temps[60:], power[60:]), (board, seed)


def test_loads_burst_and_power_follows_them():
    """Over ten minutes the CPU load bursts (jumps of several points within a few seconds)
    and the board's power goes with the load."""
    for board in ("nano", "orin-nano", "agx-orin"):
        docs = documents(simulate(load_board(board), 7, samples=600))
        cpu = [cpu_usage(d) for d in docs]
        jumps = [b - a for a, b in zip(cpu, cpu[3:])]
        span = max(cpu) - min(cpu)
        assert max(jumps) > 0.25 * span, board
        assert correlation(cpu, [board_power(d) for d in docs]) > 0.3, board


def test_offline_cores_stay_offline_and_none_go_offline_elsewhere():
    for board in BOARDS:
        recorded = documents(load_board(board))
        always_off = [all(not d["cpu"]["cores"][i]["online"] for d in recorded)
                      for i, _ in enumerate(recorded[0]["cpu"]["cores"])]
        for doc in documents(simulate(load_board(board), 1, samples=300)):
            assert [not c["online"] for c in doc["cpu"]["cores"]] == always_off, board
    assert documents(load_board("orin-nx"))[0]["cpu"]["cores"][4]["online"] is False  # the case exists


def sample_line(sample_id: str) -> str:
    for row in SAMPLES_TSV.read_text(encoding="utf-8").splitlines():
        if row.split("\t")[0] == sample_id:
            return row.split("\t")[-1]
    raise AssertionError("no sample %s" % sample_id)


def test_cores_go_offline_and_back_where_the_recordings_show_both():
    """A TX2 recorded with every core online (samples.tsv #43) and with five of six off
    (#6): cores 1-5 come and go with the load, core 0 stays; every line still parses."""
    lines = [sample_line("43"), sample_line("6")]
    docs = documents(simulate(lines, 3, samples=900))
    online = [[c["online"] for c in d["cpu"]["cores"]] for d in docs]
    assert all(row[0] for row in online)
    for core in range(1, 6):
        states = [row[core] for row in online]
        assert True in states and False in states, core
        changes = sum(1 for a, b in zip(states, states[1:]) if a != b)
        assert changes < len(states) // 10, "core %d flaps: %d changes" % (core, changes)
    busy = [cpu_usage(d) for d, row in zip(docs, online) if all(row)]
    idle = [cpu_usage(d) for d, row in zip(docs, online) if not any(row[1:])]
    assert busy and idle and sum(busy) / len(busy) > sum(idle) / len(idle)
    assert all(d["extra"] == {} for d in docs)


def test_a_seed_replays_the_same_lines_and_another_seed_does_not():
    lines = load_board("orin-nano")
    assert simulate(lines, 11, samples=20) == simulate(lines, 11, samples=20)
    assert simulate(lines, 11, samples=20) != simulate(lines, 12, samples=20)


def test_timestamps_advance_by_the_interval():
    lines = simulate(load_board("orin-nano"), 1, samples=3, interval_s=2.0)
    stamps = [time.mktime(time.strptime(line[:19], "%m-%d-%Y %H:%M:%S")) for line in lines]
    assert [b - a for a, b in zip(stamps, stamps[1:])] == [2.0, 2.0]
    assert not re.match(r"\d\d-", simulate(load_board("nano"), 1, samples=1)[0])  # none recorded: none


def test_the_interval_changes_the_timestamps_only():
    """One line is one second of the board whatever the interval: a server at 0.05 s shows
    the same curves as one at 1 s (faster), so a short interval is no excuse for jumps."""
    fast = simulate(load_board("thor"), 2, samples=SAMPLES, interval_s=0.05)
    slow = simulate(load_board("thor"), 2, samples=SAMPLES, interval_s=1.0)
    assert [line[20:] for line in fast] == [line[20:] for line in slow]
    assert fast[0][:19] != slow[-1][:19]


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError):
        SimulatedBoard([], random.Random(1))
    with pytest.raises(ValueError):
        SimulatedBoard(load_board("nano"), random.Random(1), interval_s=0)


# ------------------------------------------------------------------ the source and the labels


def test_replay_source_takes_an_endless_iterator_with_live_timestamps():
    sent: List[str] = []
    board = SimulatedBoard(load_board("orin-nano"), random.Random(5), interval_s=0.01)

    async def scenario() -> None:
        source = ReplaySource(board, sent.append, lambda state: None, interval_s=0.01, live_timestamps=True)
        source.start()
        deadline = deadline_after(10)
        while len(sent) < 5 and time.monotonic() < deadline:
            await asyncio.sleep(0.01)
        await source.stop()

    asyncio.run(scenario())
    assert len(sent) >= 5 and len(set(sent)) == len(sent)
    for line in sent:
        stamp = time.mktime(time.strptime(line[:19], "%m-%d-%Y %H:%M:%S"))
        assert abs(stamp - time.time()) < 60  # the local time, not the recorded 2024 one
        assert parse_line(line).extra == {}


def test_the_monitor_screen_says_simulated():
    doc = documents(simulate(load_board("nano"), 1, samples=1))[0]
    assert "SIMULATED DATA" in format_snapshot(doc, 40).splitlines()[0]
    doc["source"] = "replay"
    assert "REPLAYED DATA" in format_snapshot(doc, 80).splitlines()[0]
    doc["source"] = "tegrastats"
    assert "DATA" not in format_snapshot(doc, 80).splitlines()[0]


# ------------------------------------------------------------------ the real server


def history(process: Any, count: int) -> List[Doc]:
    """The newest ``count`` samples of ``/api/history`` once the server has them."""
    deadline = deadline_after(60)
    while True:
        samples = process.get("/api/history").json()["samples"]
        if len(samples) >= count:
            return samples[-count:]
        assert time.monotonic() < deadline, "only %d samples" % len(samples)
        time.sleep(0.1)


@pytest.mark.parametrize("board", ["nano", "orin-nano", None])
def test_the_server_serves_a_smooth_simulated_board_labelled_simulated(server_process, board):
    """``tegrastats-api run --simulate [BOARD]`` as a newcomer starts it (no board: agx-orin),
    at a short interval: 60 samples from /api/history, smooth and in range, and every
    place says SIMULATED (log, documents, /metrics)."""
    flags = ["--simulate"] + ([board] if board else []) + ["--update-interval", "0.05", "--history-size", "100"]
    process = server_process(*flags, healthy=True)
    name = board or "agx-orin"
    recorded = documents(load_board(name))
    docs = history(process, SAMPLES)
    assert all(d["source"] == "simulator" and d["extra"] == {} for d in docs)
    assert all(shape(d) == shape(docs[0]) for d in docs)
    assert shape(docs[0]["temperature"]) == shape(recorded[0]["temperature"])
    assert temperature_problems(docs, recorded) == []
    assert range_problems(docs, recorded) == []
    assert series_problems(docs, recorded) == []
    assert junction_problems(docs) == []
    stamps = [d["timestamp"] for d in docs]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)
    assert re.search(r"serving on \S+ \(source: simulator: SIMULATED %s" % name, process.log())
    assert 'source="simulator"' in process.get("/metrics").text
    assert process.health()["source"] == "simulator"


def test_replay_of_a_file_still_sends_the_recorded_lines_verbatim(server_process, tmp_path):
    """Replay is not simulation: a board file given to --replay comes back line for line."""
    lines = load_board("nano")
    replay = tmp_path / "nano.txt"
    replay.write_text("\n".join(lines) + "\n", encoding="utf-8")
    process = server_process("--replay", str(replay), "--update-interval", "0.05", healthy=True)
    docs = history(process, 10)
    expected = documents(lines)
    first = next(i for i, e in enumerate(expected) if strip(e) == strip(docs[0]))
    assert [strip(d) for d in docs] == [strip(expected[(first + i) % len(expected)]) for i in range(len(docs))]
    assert all(d["source"] == "replay" for d in docs)


def strip(doc: Doc) -> Doc:
    return {k: v for k, v in doc.items() if k not in ("timestamp", "source")}


def test_the_simulator_is_imported_only_for_a_simulated_source():
    """A server reading tegrastats never loads the simulator's modules (about 0.7 MB of RSS);
    one that simulates does, when it makes its source."""
    import subprocess
    import sys

    script = (
        "import sys\n"
        "import tegrastats_api.app as app\n"
        "from tegrastats_api.config import Config\n"
        "from tegrastats_api.hub import SnapshotHub\n"
        "from tegrastats_api.plan import plan_source\n"
        "seen = ['tegrastats_api.simulator' in sys.modules]\n"
        "plan = plan_source(tegrastats='tegrastats', interval_ms=1000, simulate='agx-orin', replay=None)\n"
        "source = app.make_source(plan, SnapshotHub(plan.kind), Config())\n"
        "seen += [plan.kind, 'tegrastats_api.simulator' in sys.modules, type(source).__name__]\n"
        "print(repr(seen))\n"
    )
    answer = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60, check=True)
    assert answer.stdout.strip().splitlines()[-1] == repr([False, "simulator", True, "ReplaySource"])
