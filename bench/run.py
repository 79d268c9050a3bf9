"""``make bench``: measure tegrastats-api on this machine and print a markdown table.

So far: the parser's rate over every real sample line. Results also go to
``bench/results/latest.json``. Timings are printed, never asserted.
"""
from __future__ import annotations

import csv
import json
import platform
import time
from pathlib import Path
from typing import Dict, List

from tegrastats_api import __version__, parse_line

ROOT = Path(__file__).resolve().parent.parent
SAMPLES = ROOT / "tests" / "fixtures" / "tegrastats" / "samples.tsv"
RESULTS = ROOT / "bench" / "results"


def load_lines() -> List[str]:
    with SAMPLES.open(encoding="utf-8", newline="") as f:
        return [row["line"] for row in csv.DictReader(f, delimiter="\t")]


def bench_parse(lines: List[str], seconds: float = 2.0) -> Dict[str, float]:
    """Lines per second for parse_line alone and for parse_line + to_dict + json.dumps."""
    out = {}
    for name, work in (
        ("parse_line", lambda line: parse_line(line, 1.0, source="bench")),
        ("parse+to_dict+json", lambda line: json.dumps(parse_line(line, 1.0, source="bench").to_dict())),
    ):
        done, start = 0, time.perf_counter()
        while time.perf_counter() - start < seconds:
            for line in lines:
                work(line)
            done += len(lines)
        out[name] = done / (time.perf_counter() - start)
    return out


def main() -> int:
    lines = load_lines()
    rates = bench_parse(lines)
    machine = "%s, %s, Python %s" % (platform.machine(), platform.processor() or "cpu", platform.python_version())
    rows = [("parse rate, %s (lines/s)" % name, "%.0f" % rate) for name, rate in rates.items()]
    print("tegrastats-api %s on %s; %d real sample lines\n" % (__version__, machine, len(lines)))
    print("| measure | value |\n|---|---|")
    for label, value in rows:
        print("| %s | %s |" % (label, value))
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "latest.json").write_text(
        json.dumps({"version": __version__, "machine": machine, "parse_rate": rates}, indent=2) + "\n",
        encoding="utf-8",
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
