#!/usr/bin/env python3
"""A stand-in for NVIDIA's ``tegrastats``, for tests and for running the server anywhere.

It prints one tegrastats line per ``--interval`` milliseconds to stdout (flushed at once,
the first line immediately), looping over the lines of ``--lines FILE`` (one line a row,
``#`` comments and blank rows skipped) or, by default, three real AGX Orin JetPack 6 lines
(samples.tsv ids 8, 9, 10). The lines go out verbatim, timestamps included.

Fault flags, for the source's tests:

  --exit-after N    exit after N sample lines (garbage lines do not count)
  --exit-code K     the exit status used by --exit-after (default 0)
  --hang            ignore SIGTERM; with --exit-after, sleep forever instead of exiting,
                    so only SIGKILL stops it
  --stderr-noise    write one line to stderr per sample
  --garbage         write one non-tegrastats line after every sample
  --long-line B     first write one line of B bytes (plus the newline)
  --invalid-utf8    then write one line that is not valid UTF-8
  --pidfile FILE    write the process id to FILE at start
  --flood           write sample lines as fast as the pipe takes them, no interval
  --stderr-flood    between samples, write stderr lines as fast as the pipe takes them
  --fork-grandchild FILE
                    when exiting (--exit-after), first fork a grandchild that appends its
                    pid to FILE and sleeps with stdout still open
  --crash-at-once   exit at once, before any output (status --exit-code, else 1)
  --pause-file FILE while FILE exists, print nothing (a tegrastats that stalls but keeps
                    running, so the data goes stale); go on once FILE is removed

Like a C program it dies quietly of SIGPIPE when its reader goes away. Standard library
only; runs on Python 3.8+.
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
import time

# samples.tsv ids 8, 9 and 10: AGX Orin 64GB, JetPack 6.x, Abdel-E/tegrastats_parser
# (o.csv line 1; tegra_stats_log.txt lines 1 and 140).
DEFAULT_LINES = [
    ("11-04-2025 01:46:53 RAM 7822/62841MB (lfb 73x4MB) SWAP 0/31421MB (cached 0MB) "
    "CPU [25%@2201,20%@2201,40%@2201,0%@2201,33%@729,0%@1190,25%@1190,25%@1190,50%@1574,"
    "33%@729,25%@729,25%@729] EMC_FREQ 1%@2133 GR3D_FREQ 31%@[305,305] NVENC off NVDEC off "
    "NVJPG off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 "
    "cpu@50.281C tboard@38.5C soc2@46.375C tdiode@39.5C soc0@47.562C gpu@45.5C tj@50.281C "
    "soc1@46.843C VDD_GPU_SOC 3188mW/3188mW VDD_CPU_CV 2390mW/2390mW VIN_SYS_5V0 4614mW/4614mW "
    "VDDQ_VDD2_1V8AO 802mW/802mW"),
    ("10-26-2025 05:10:54 RAM 6879/62841MB (lfb 3x4MB) SWAP 0/31421MB (cached 0MB) "
    "CPU [5%@729,1%@729,0%@729,9%@729,1%@729,3%@729,5%@729,0%@729,3%@729,1%@729,1%@729,7%@729] "
    "EMC_FREQ 0%@2133 GR3D_FREQ 0%@[305,305] NVENC off NVDEC off NVJPG off NVJPG1 off VIC off "
    "OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 cpu@47.687C tboard@36.75C "
    "soc2@44.312C tdiode@37.5C soc0@45.718C gpu@43.218C tj@47.687C soc1@45.125C "
    "VDD_GPU_SOC 2801mW/2801mW VDD_CPU_CV 400mW/400mW VIN_SYS_5V0 4536mW/4536mW "
    "VDDQ_VDD2_1V8AO 604mW/604mW"),
    ("10-26-2025 05:12:07 RAM 7029/62841MB (lfb 1x4MB) SWAP 0/31421MB (cached 0MB) "
    "CPU [31%@1190,29%@1190,30%@1190,36%@1190,28%@1113,28%@1113,46%@1113,47%@1113,42%@806,"
    "33%@806,39%@806,32%@806] EMC_FREQ 6%@2133 GR3D_FREQ 87%@[305,305] NVENC off NVDEC off "
    "NVJPG off NVJPG1 off VIC off OFA off NVDLA0 off NVDLA1 off PVA0_FREQ off APE 174 "
    "cpu@49.062C tboard@37C soc2@44.843C tdiode@38C soc0@46.125C gpu@44.156C tj@48.937C "
    "soc1@45.531C VDD_GPU_SOC 3601mW/3261mW VDD_CPU_CV 2400mW/1837mW VIN_SYS_5V0 5644mW/5327mW "
    "VDDQ_VDD2_1V8AO 1310mW/1111mW"),
]

INVALID_UTF8_LINE = b"RAM 1000/7620MB \xff\xfe\xc3\x28 (lfb 8x2MB)"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fake_tegrastats", description=__doc__.split("\n")[0])
    parser.add_argument("--interval", type=int, default=1000, help="ms between lines")
    parser.add_argument("--lines", metavar="FILE", help="tegrastats lines to loop over")
    parser.add_argument("--exit-after", type=int, metavar="N", help="exit after N lines")
    parser.add_argument("--exit-code", type=int, default=0, metavar="K")
    parser.add_argument("--hang", action="store_true", help="ignore SIGTERM, never exit")
    parser.add_argument("--stderr-noise", action="store_true")
    parser.add_argument("--garbage", action="store_true")
    parser.add_argument("--long-line", type=int, metavar="BYTES")
    parser.add_argument("--invalid-utf8", action="store_true")
    parser.add_argument("--pidfile", metavar="FILE")
    parser.add_argument("--flood", action="store_true")
    parser.add_argument("--stderr-flood", action="store_true")
    parser.add_argument("--fork-grandchild", metavar="FILE")
    parser.add_argument("--crash-at-once", action="store_true")
    parser.add_argument("--pause-file", metavar="FILE")
    return parser


def read_lines(path: str | None) -> list[str]:
    if path is None:
        return list(DEFAULT_LINES)
    with open(path, encoding="utf-8") as handle:
        rows = [row.rstrip("\r\n") for row in handle]
    return [row for row in rows if row.strip() and not row.lstrip().startswith("#")]


def emit(data: bytes) -> None:
    out = sys.stdout.buffer
    out.write(data + b"\n")
    out.flush()


def stderr_flood(seconds: float) -> None:
    """Write stderr lines without pause for ``seconds``."""
    deadline = time.monotonic() + seconds
    count = 0
    while time.monotonic() < deadline:
        count += 1
        sys.stderr.write(f"fake_tegrastats: stderr flood line {count}\n")
        if count % 100 == 0:
            sys.stderr.flush()
    sys.stderr.flush()


def fork_grandchild(pidfile: str) -> None:
    """Leave a grandchild behind that holds stdout open (its parent, this process, exits)."""
    if os.fork() == 0:
        with open(pidfile, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        time.sleep(3600)
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.interval <= 0:
        sys.stderr.write("fake_tegrastats: --interval must be positive\n")
        return 2
    lines = read_lines(args.lines)
    if not lines:
        sys.stderr.write(f"fake_tegrastats: no lines in {args.lines}\n")
        return 2
    # Die of a closed pipe the way the real (C) tegrastats does, without a traceback.
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)
    if args.crash_at_once:
        sys.stderr.write("fake_tegrastats: crashing at once\n")
        return args.exit_code or 1
    if args.hang:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    if args.pidfile:
        with open(args.pidfile, "w") as handle:
            handle.write(f"{os.getpid()}\n")
    if args.long_line is not None:
        emit(b"X" * args.long_line)
    if args.invalid_utf8:
        emit(INVALID_UTF8_LINE)
    count = 0
    while args.exit_after is None or count < args.exit_after:
        while args.pause_file and os.path.exists(args.pause_file):
            time.sleep(0.01)
        emit(lines[count % len(lines)].encode("utf-8"))
        count += 1
        if args.stderr_noise:
            sys.stderr.write(f"fake_tegrastats: stderr noise after sample {count}\n")
            sys.stderr.flush()
        if args.garbage:
            emit(b"garbage: not a tegrastats line %d" % count)
        if args.exit_after is not None and count >= args.exit_after:
            break
        if args.stderr_flood:
            stderr_flood(args.interval / 1000.0)
        elif not args.flood:
            time.sleep(args.interval / 1000.0)
    if args.fork_grandchild:
        fork_grandchild(args.fork_grandchild)
    while args.hang:
        time.sleep(3600)
    return args.exit_code


if __name__ == "__main__":
    sys.exit(main())
