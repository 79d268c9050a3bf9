"""tegrastats_api.source against real child processes (tests/fake_tegrastats.py).

Each test runs its own event loop (``asyncio.run``) with a hard timeout; the fake prints
every 20 ms, and restart backoffs are 50 ms, so the whole file takes a few seconds.
"""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import stat
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Awaitable, Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st
from tornado.iostream import PipeIOStream

from tegrastats_api.plan import (
    BOARDS_DIR,
    DEFAULT_BOARD,
    SourcePlan,
    UnknownBoardError,
    is_jetson,
    list_boards,
    load_board,
    load_replay,
    plan_source,
)
from tegrastats_api.hub import SnapshotHub
from tegrastats_api.lines import READ_CHUNK, READ_PIECE, STDERR_BURST, LineReader, LineSplitter
from tegrastats_api.replay import ReplaySource
from tegrastats_api import source as source_module
from tegrastats_api.source import TegrastatsNotFoundError, TegrastatsProcess

# samples.tsv ids 17-20: TX1, old home-directory ~/tegrastats (hordiales/jetson-tx1-dev).
TX1_LINES = [
    ("RAM 3691/3983MB (lfb 3x2MB) SWAP 2780/8192MB (cached 284MB) cpu [0%,0%,0%,0%]@1734 "
     "EMC 0%@1600 APE 25 GR3D 0%@998"),
    ("RAM 3691/3983MB (lfb 3x2MB) SWAP 2780/8192MB (cached 284MB) cpu [1%,0%,4%,0%]@1734 "
     "EMC 0%@1600 APE 25 GR3D 0%@998"),
    ("RAM 3468/3983MB (lfb 48x4MB) SWAP 873/8192MB (cached 295MB) cpu [17%,13%,29%,5%]@408 "
     "EMC 1%@408 APE 25 GR3D 3%@76"),
]
STAMPED = "10-26-2025 05:10:54 RAM 6879/62841MB (lfb 3x4MB) CPU [5%@729]"
BOARDS = ["agx-orin", "agx-xavier", "nano", "orin-nano", "orin-nx", "thor", "tx1", "tx2",
          "xavier-nx"]
FAST = {"backoff_initial": 0.05, "backoff_max": 0.2, "stop_timeout": 0.5}


def run(coro: Awaitable[Any], timeout: float = 10.0) -> Any:
    """Run one test coroutine on a fresh event loop, failing after ``timeout`` seconds."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def wait_until(check: Callable[[], bool], timeout: float = 3.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for " + (what or repr(check)))
        await asyncio.sleep(0.005)


def open_fds() -> int:
    """How many fds this process holds, after garbage from earlier tests (an unreferenced
    loop or socket) is collected: a collection between two counts must not move them."""
    gc.collect()
    return len(os.listdir("/proc/self/fd"))


def pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def alive(pid: int) -> bool:
    """True while ``pid`` runs; a zombie counts as dead (an orphan's zombie may stay where
    init does not reap, as in some containers)."""
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


class Recorder:
    """Collects what a source reports."""

    def __init__(self) -> None:
        self.lines: list[str] = []
        self.states: list[str] = []
        self.discards: list[str] = []

    def process(self, argv: list[str], **options: Any) -> TegrastatsProcess:
        return TegrastatsProcess(argv, self.lines.append, self.states.append,
                                 self.discards.append, **options)

    def replay(self, lines: list[str], **options: Any) -> ReplaySource:
        return ReplaySource(lines, self.lines.append, self.states.append,
                            self.discards.append, **options)


@pytest.fixture
def lines_file(tmp_path: Any) -> str:
    path = tmp_path / "tx1.txt"
    path.write_text("# samples.tsv ids 17-19\n\n" + "\n".join(TX1_LINES) + "\n", encoding="utf-8")
    return str(path)


@pytest.fixture(params=["pidfd", "poll"])
def exit_watch(request: Any, monkeypatch: Any) -> str:
    """Each way the child's exit is noticed: a pidfd the loop watches (Python 3.9+, Linux
    5.3+) and, where there is none, a check every POLL_S."""
    if request.param == "pidfd":
        if not hasattr(os, "pidfd_open"):
            pytest.skip("no os.pidfd_open on this Python")
    else:
        monkeypatch.setattr(source_module, "_exit_future", lambda popen: None)
    return str(request.param)


# --- TegrastatsProcess -------------------------------------------------------------------


def test_the_exit_future_is_done_when_the_child_exits_and_not_before(tmp_path: Any) -> None:
    """The pidfd watch: done once the child exits (unreaped: its pid stays reserved), not
    while it runs; its fd is closed afterwards."""
    if not hasattr(os, "pidfd_open"):
        pytest.skip("no os.pidfd_open on this Python")
    import subprocess

    async def scenario() -> None:
        fds = open_fds()
        child = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
        try:
            exited = source_module._exit_future(child)
            assert exited is not None
            await asyncio.sleep(0.3)
            assert not exited.done()
            assert child.stdin is not None
            child.stdin.close()  # the child ends
            await asyncio.wait_for(exited, 5)
            assert pid_exists(child.pid)  # not reaped by the watch
        finally:
            child.wait(5)
        await asyncio.sleep(0)
        assert open_fds() == fds

    run(scenario())


def test_lines_arrive_in_order(fake_tegrastats_argv: Any, lines_file: str) -> None:
    rec = Recorder()

    async def scenario() -> None:
        # 50 ms apart: a read holding over MAX_LINES_PER_READ lines (a stall of 0.8 s on a
        # busy machine) would keep only its newest line
        proc = rec.process(fake_tegrastats_argv("--lines", lines_file, interval_ms=50))
        proc.start()
        assert proc.pid is not None
        await wait_until(lambda: len(rec.lines) >= 7, what="7 lines")
        await proc.stop()
        assert proc.pid is None

    run(scenario())
    assert rec.lines[:7] == (TX1_LINES * 3)[:7]
    assert rec.states == ["running", "stopped"]
    assert rec.discards == []


def test_stderr_is_logged_not_passed_on(fake_tegrastats_argv: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="tegrastats_api.lines")
    rec = Recorder()

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv("--stderr-noise"))
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 3, what="3 lines")
        await wait_until(lambda: "stderr noise after sample 2" in caplog.text, what="stderr log")
        await proc.stop()

    run(scenario())
    assert all(line.startswith(("10-26-2025", "11-04-2025")) for line in rec.lines)
    noise = [r for r in caplog.records if "stderr noise" in r.getMessage()]
    assert noise and all(r.levelno == logging.WARNING for r in noise)
    assert len({r.getMessage() for r in noise}) == len(noise)  # one record per line


def test_garbage_lines_are_passed_through(fake_tegrastats_argv: Any, lines_file: str) -> None:
    rec = Recorder()

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv("--garbage", "--lines", lines_file, interval_ms=50))
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 4, what="4 lines")
        await proc.stop()

    run(scenario())
    assert rec.lines[:4] == [TX1_LINES[0], "garbage: not a tegrastats line 1",
                             TX1_LINES[1], "garbage: not a tegrastats line 2"]


def test_exit_leads_to_restart(fake_tegrastats_argv: Any, lines_file: str, exit_watch: str) -> None:
    rec = Recorder()
    pids = set()

    async def scenario() -> TegrastatsProcess:
        argv = fake_tegrastats_argv("--exit-after", "2", "--exit-code", "3", "--lines", lines_file)
        proc = rec.process(argv, **FAST)
        proc.start()
        while proc.restarts < 2 or len(rec.lines) < 6:
            pids.add(proc.pid)
            await asyncio.sleep(0.005)
        await proc.stop()
        return proc

    fds = open_fds()
    proc = run(scenario())
    assert open_fds() == fds  # every child's pipes were closed
    assert proc.restarts >= 2
    assert rec.lines[:6] == [TX1_LINES[0], TX1_LINES[1]] * 3  # each child starts afresh
    assert rec.states[:5] == ["running", "restarting", "running", "restarting", "running"]
    assert rec.states[-1] == "stopped"
    assert len(pids - {None}) >= 3


def test_kill_9_of_the_child_is_healed(fake_tegrastats_argv: Any, tmp_path: Any, exit_watch: str) -> None:
    rec = Recorder()
    pidfile = tmp_path / "fake.pid"
    pids: list[int] = []

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv("--pidfile", str(pidfile)), **FAST)
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 1 and pidfile.exists())
        first = proc.pid
        pids.append(first)
        os.kill(first, signal.SIGKILL)
        await wait_until(lambda: proc.restarts == 1, what="a restart")
        seen = len(rec.lines)
        await wait_until(lambda: len(rec.lines) >= seen + 2, what="lines after the restart")
        assert proc.pid not in (None, first)
        assert not pid_exists(first)  # reaped, not a zombie
        pids.append(proc.pid)
        await proc.stop()

    run(scenario())
    assert int(pidfile.read_text()) == pids[-1]  # the fake's own idea of its pid agrees
    assert rec.states == ["running", "restarting", "running", "stopped"]


def test_stop_kills_a_hanging_child(fake_tegrastats_argv: Any, exit_watch: str) -> None:
    rec = Recorder()

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv("--hang", "--exit-after", "1"), stop_timeout=0.5)
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 1)
        pid = proc.pid
        started = time.monotonic()
        await proc.stop()
        assert time.monotonic() - started < 0.5 + 1.0
        assert not pid_exists(pid)
        await proc.stop()  # idempotent
        assert proc.restarts == 0

    run(scenario())
    assert rec.states == ["running", "stopped"]


def test_concurrent_stops_finish_together(fake_tegrastats_argv: Any, exit_watch: str) -> None:
    rec = Recorder()

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv())
        proc.start()
        await asyncio.gather(proc.stop(), proc.stop())

    run(scenario())
    assert rec.states == ["running", "stopped"]


def test_missing_binary_raises_at_start(tmp_path: Any) -> None:
    not_executable = tmp_path / "tegrastats"
    not_executable.write_text("#!/bin/sh\n")
    not_a_program = tmp_path / "not-a-program"  # executable bit, but execve says ENOEXEC
    not_a_program.write_bytes(b"\x00\x01\x02 not an ELF file\n")
    not_a_program.chmod(stat.S_IRWXU)
    fds = open_fds()
    for argv0 in ("/nonexistent/tegrastats", "no-such-tegrastats-anywhere", str(not_executable),
                  str(not_a_program)):
        rec = Recorder()

        async def scenario(rec: Recorder = rec, argv0: str = argv0) -> None:
            rec.process([argv0, "--interval", "20"]).start()

        with pytest.raises(TegrastatsNotFoundError) as info:
            run(scenario())
        assert info.value.path == argv0
        assert argv0 in str(info.value)
        assert rec.states == []
    assert open_fds() == fds


def test_a_failed_spawn_does_not_close_other_fds_later(tmp_path: Any) -> None:
    not_a_program = tmp_path / "not-a-program"  # passes the pre-check, then ENOEXEC
    not_a_program.write_bytes(b"\x00\x01\x02 not an ELF file\n")
    not_a_program.chmod(stat.S_IRWXU)

    async def scenario() -> None:
        with pytest.raises(TegrastatsNotFoundError) as info:
            Recorder().process([str(not_a_program)]).start()
        read_fd, write_fd = os.pipe()  # likely the fd numbers the failed spawn freed
        try:
            del info  # the traceback held tornado's half-built pipe streams
            gc.collect()
            os.fstat(read_fd)  # EBADF if a collected stream closed it
            os.fstat(write_fd)
        finally:
            os.close(read_fd)
            os.close(write_fd)

    run(scenario())


def test_start_needs_a_running_loop(fake_tegrastats_argv: Any) -> None:
    with pytest.raises(RuntimeError):
        Recorder().process(fake_tegrastats_argv()).start()


def test_binary_that_disappears_is_reported_missing(tmp_path: Any, lines_file: str) -> None:
    wrapper = tmp_path / "tegrastats"
    fake = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_tegrastats.py")
    script = f'#!/bin/sh\nexec "{sys.executable}" "{fake}" "$@"\n'
    rec = Recorder()

    def install() -> None:
        wrapper.write_text(script)
        wrapper.chmod(stat.S_IRWXU)

    async def scenario() -> TegrastatsProcess:
        install()
        argv = [str(wrapper), "--interval", "20", "--exit-after", "1", "--lines", lines_file]
        proc = rec.process(argv, **FAST)
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 1)
        wrapper.unlink()
        await wait_until(lambda: "missing" in rec.states, what="state missing")
        install()
        await wait_until(lambda: rec.states[-1] == "running" and proc.restarts >= 1)
        await wait_until(lambda: len(rec.lines) >= 2)
        await proc.stop()
        return proc

    run(scenario())
    assert rec.states[:4] == ["running", "restarting", "missing", "running"]


def test_bad_lines_are_discarded_from_the_same_child(fake_tegrastats_argv: Any) -> None:
    rec = Recorder()

    async def scenario() -> None:
        argv = fake_tegrastats_argv("--long-line", "200000", "--invalid-utf8", interval_ms=50)
        proc = rec.process(argv, max_line_bytes=65536)
        proc.start()
        pid = proc.pid
        await wait_until(lambda: len(rec.lines) >= 3, what="good lines after the bad ones")
        assert proc.pid == pid
        assert proc.restarts == 0
        await proc.stop()

    run(scenario())
    assert rec.discards == ["line too long", "invalid utf-8"]
    assert all(line.startswith(("10-26-2025", "11-04-2025")) for line in rec.lines)
    assert rec.states == ["running", "stopped"]


@pytest.mark.parametrize("size, passed", [(100, True), (100 + 1, False)])
def test_line_length_limit_is_exact(fake_tegrastats_argv: Any, tmp_path: Any, size: int,
                                   passed: bool) -> None:
    short = tmp_path / "short.txt"
    short.write_text("RAM 1/2MB\n")
    rec = Recorder()

    async def scenario() -> None:
        argv = fake_tegrastats_argv("--long-line", str(size), "--lines", str(short), interval_ms=50)
        proc = rec.process(argv, max_line_bytes=100)
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 2)
        await proc.stop()

    run(scenario())
    assert (rec.lines[0] == "X" * size) is passed
    assert rec.discards == ([] if passed else ["line too long"])


def test_a_failing_callback_is_supervised(fake_tegrastats_argv: Any, caplog: Any) -> None:
    lines: list[str] = []
    states: list[str] = []

    def on_line(line: str) -> None:
        lines.append(line)
        if len(lines) == 1:
            raise KeyError("subscriber bug")

    async def scenario() -> TegrastatsProcess:
        proc = TegrastatsProcess(fake_tegrastats_argv(), on_line, states.append, lambda r: None,
                                 **FAST)
        proc.start()
        await wait_until(lambda: len(lines) >= 3, what="lines after the failure")
        await proc.stop()
        return proc

    proc = run(scenario())
    assert proc.restarts == 1
    assert states == ["running", "restarting", "running", "stopped"]
    assert any(r.exc_info and "subscriber bug" in str(r.exc_info[1]) for r in caplog.records)


def test_runs_on_a_background_thread_with_its_own_loop(fake_tegrastats_argv: Any) -> None:
    rec = Recorder()
    got_lines = threading.Event()
    sigchld_before = signal.getsignal(signal.SIGCHLD)

    def on_line(line: str) -> None:
        rec.lines.append(line)
        if len(rec.lines) >= 3:
            got_lines.set()

    proc = TegrastatsProcess(fake_tegrastats_argv(), on_line, rec.states.append,
                             rec.discards.append)

    async def serve() -> None:
        proc.start()
        while not got_lines.is_set():
            await asyncio.sleep(0.01)
        await proc.stop()

    with ThreadPoolExecutor(max_workers=1) as pool:  # result() re-raises the thread's error
        pool.submit(run, serve()).result(timeout=15)
    assert got_lines.is_set()
    assert rec.states == ["running", "stopped"]
    assert proc.pid is None
    assert signal.getsignal(signal.SIGCHLD) == sigchld_before  # no SIGCHLD handler installed


def test_the_child_leads_a_process_group_and_session_of_its_own(fake_tegrastats_argv: Any) -> None:
    rec = Recorder()

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv())
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 1)
        assert proc.pid is not None
        assert os.getpgid(proc.pid) == os.getsid(proc.pid) == proc.pid != os.getpgid(0)
        await proc.stop()

    run(scenario())


def test_a_flood_neither_starves_the_loop_nor_delays_the_stop(fake_tegrastats_argv: Any, caplog: Any) -> None:
    """A child writing without pause: the loop keeps turning, the newest lines still come."""
    rec = Recorder()
    gaps: list[float] = []

    async def tick(done: asyncio.Event) -> None:
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.01)
            gaps.append(time.monotonic() - last)
            last = time.monotonic()

    async def scenario() -> tuple[TegrastatsProcess, int, float]:
        proc = rec.process(fake_tegrastats_argv("--flood"))
        done = asyncio.Event()
        ticker = asyncio.ensure_future(tick(done))
        proc.start()
        await wait_until(lambda: proc.skipped > 1000, what="a backlog")
        used_at_backlog = len(rec.lines)
        await wait_until(lambda: len(rec.lines) > used_at_backlog + 10, what="lines used during the flood")
        await asyncio.sleep(0.5)
        pid = proc.pid
        assert pid is not None
        started = time.monotonic()
        await proc.stop()
        done.set()
        await ticker
        return proc, pid, time.monotonic() - started

    proc, pid, stop_s = run(scenario())
    assert max(gaps) < 1.0, "the loop stalled for %.2f s" % max(gaps)
    assert stop_s < 3.0
    assert not alive(pid)
    # How many of each read's lines are skipped depends on how fast this machine reads
    # (few per read on a fast one); what holds is that some were, and the newest still came.
    assert proc.skipped > 1000 and len(rec.lines) > 10
    assert all(line.startswith(("10-26-2025", "11-04-2025")) for line in rec.lines)  # whole lines
    assert "lines skipped" in caplog.text


def test_every_line_of_a_burst_is_handed_on_or_counted_as_skipped(fake_tegrastats_argv: Any) -> None:
    rec = Recorder()

    async def scenario() -> tuple[TegrastatsProcess, int]:
        proc = rec.process(fake_tegrastats_argv("--flood", "--exit-after", "3000"), backoff_initial=30.0)
        proc.start()
        await wait_until(lambda: "restarting" in rec.states, timeout=10, what="the child's exit")
        accounted = len(rec.lines) + proc.skipped
        await proc.stop()
        return proc, accounted

    proc, accounted = run(scenario(), timeout=20)
    assert accounted == 3000
    assert proc.skipped > 0 and rec.discards == []


def test_a_stderr_flood_is_logged_with_a_limit(fake_tegrastats_argv: Any, caplog: Any) -> None:
    caplog.set_level(logging.WARNING, logger="tegrastats_api.lines")
    rec = Recorder()

    async def scenario() -> None:
        proc = rec.process(fake_tegrastats_argv("--stderr-flood", interval_ms=50))
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 5, timeout=10, what="lines during the flood")
        await proc.stop()

    run(scenario(), timeout=20)
    messages = [r.getMessage() for r in caplog.records]
    logged = [m for m in messages if m.startswith("tegrastats stderr: ")]
    suppressed = [int(m.split()[0]) for m in messages if "tegrastats stderr lines suppressed" in m]
    assert 0 < len(logged) <= 2 * STDERR_BURST  # the test takes less than two windows
    assert suppressed and sum(suppressed) > 1000


def test_a_grandchild_holding_stdout_does_not_hide_the_exit(fake_tegrastats_argv: Any, tmp_path: Any,
                                                            exit_watch: str) -> None:
    """The child exits, its grandchild keeps stdout open: the exit is still noticed, and the
    grandchild is killed with the child's process group."""
    rec = Recorder()
    record = tmp_path / "grandchildren"

    def grandchildren() -> list[int]:
        return [int(pid) for pid in record.read_text().split()] if record.exists() else []

    async def scenario() -> float:
        argv = fake_tegrastats_argv("--exit-after", "2", "--fork-grandchild", str(record))
        proc = rec.process(argv, **FAST)
        proc.start()
        first = proc.pid
        await wait_until(lambda: proc.restarts >= 1, timeout=10, what="a restart")
        assert first is not None and not pid_exists(first)  # reaped
        await wait_until(lambda: len(grandchildren()) >= 1 and not alive(grandchildren()[0]),
                         what="the grandchild killed")
        started = time.monotonic()
        await proc.stop()
        stop_s = time.monotonic() - started
        # SIGKILL was sent to the group; dying takes a moment
        await wait_until(lambda: not [pid for pid in grandchildren() if alive(pid)], what="no grandchild left")
        return stop_s

    try:
        stop_s = run(scenario(), timeout=20)
    finally:
        for pid in grandchildren():
            if alive(pid):
                os.kill(pid, signal.SIGKILL)
    assert stop_s < 3.0
    assert rec.states[:3] == ["running", "restarting", "running"] and rec.states[-1] == "stopped"


def test_a_child_that_crashes_at_once_makes_health_degraded(fake_tegrastats_argv: Any) -> None:
    hub = SnapshotHub("tegrastats", interval_s=0.02)

    async def scenario() -> TegrastatsProcess:
        proc = TegrastatsProcess(fake_tegrastats_argv("--crash-at-once"), hub.feed_line, hub.set_state,
                                 hub.discard, **FAST)
        assert hub.health_status() == "starting"
        proc.start()
        await wait_until(lambda: proc.restarts >= 3, timeout=10, what="restarts")
        assert hub.health_status() == "degraded"
        await proc.stop()
        return proc

    run(scenario(), timeout=20)
    assert hub.samples == 0 and hub.restarts >= 3
    assert hub.health_status() == "degraded"


def test_hurry_cuts_a_waiting_stop_short(fake_tegrastats_argv: Any, exit_watch: str) -> None:
    rec = Recorder()

    async def scenario() -> tuple[int, float]:
        proc = rec.process(fake_tegrastats_argv("--hang"), stop_timeout=30.0)  # ignores SIGTERM
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 1)
        pid = proc.pid
        assert pid is not None
        stopping = asyncio.ensure_future(proc.stop())
        await asyncio.sleep(0.3)
        assert not stopping.done()  # waiting for SIGTERM to work
        proc.hurry()
        started = time.monotonic()
        await stopping
        return pid, time.monotonic() - started

    pid, hurried_s = run(scenario(), timeout=40)
    assert hurried_s < 5.0  # instead of 30
    assert not alive(pid)
    assert rec.states == ["running", "stopped"]


# --- the line splitter ----------------------------------------------------------------------


@given(st.lists(st.binary(max_size=40)), st.lists(st.integers(1, 45), min_size=1))
def test_splitter_is_independent_of_chunking(pieces: list[bytes], sizes: list[int]) -> None:
    stream = b"\n".join(pieces) + b"\n"
    splitter = LineSplitter(limit=20)
    out = []
    offset = index = 0
    while offset < len(stream):
        size = sizes[index % len(sizes)]
        out.extend(splitter.feed(stream[offset:offset + size]))
        offset += size
        index += 1
    expected = [(p[:20], len(p) > 20) for p in stream.split(b"\n")[:-1]]
    assert out == expected
    assert not splitter.pending


def test_splitter_takes_a_chunk_of_one_whole_line_as_it_is() -> None:
    """The usual read (one line, its newline last, nothing held) at the length limit's edges,
    and after a held piece or an over-long line (the other path)."""
    splitter = LineSplitter(limit=20)
    assert splitter.feed(b"\n") == [(b"", False)]
    assert splitter.feed(b"x" * 19 + b"\n") == [(b"x" * 19, False)]
    assert splitter.feed(b"x" * 20 + b"\n") == [(b"x" * 20, False)]
    assert splitter.feed(b"x" * 21 + b"\n") == [(b"x" * 20, True)]
    assert splitter.feed(b"ab") == [] and splitter.pending
    assert splitter.feed(b"c\n") == [(b"abc", False)] and not splitter.pending
    assert splitter.feed(b"y" * 25) == [] and splitter.pending
    assert splitter.feed(b"\n") == [(b"y" * 20, True)]
    assert splitter.feed(b"a\nb\n") == [(b"a", False), (b"b", False)]
    assert not splitter.pending


def _read_pipe(prefill: bytes, then: Callable[[int, list[Any]], Awaitable[None]]) -> tuple[list[Any], bool]:
    """A LineReader on a real pipe holding ``prefill`` before reading starts; ``then(w, calls)``
    may write more, then the pipe is closed (EOF). Returns handle's calls and the result."""
    calls: list[Any] = []

    async def scenario() -> bool:
        before = open_fds()
        r, w = os.pipe()
        os.write(w, prefill)
        reader = LineReader(PipeIOStream(r), 4096, calls.append).start()
        try:
            await then(w, calls)
        finally:
            os.close(w)
        partial = await reader
        assert open_fds() == before  # the reader closed the pipe (and its duplicate) at EOF
        return partial

    return calls, run(scenario())


BACKLOG = [b"%05d " % i + b"x" * 500 for i in range(40)]  # 20 kB: five of tornado's reads


def test_a_backlog_is_handed_on_as_one_read_though_tornado_reads_it_in_pieces() -> None:
    """Lines waiting in the pipe (a stall, a burst) reach the handler in one call, as one
    64 kB read gave them, so that only the newest is used (TegrastatsProcess._take); the next
    line, written later, comes alone; EOF ends the reader."""
    async def then(w: int, calls: list[Any]) -> None:
        await wait_until(lambda: sum(map(len, calls)) == 40, what="the backlog")
        os.write(w, b"next\n")
        await wait_until(lambda: sum(map(len, calls)) == 41, what="the next line")

    calls, partial = _read_pipe(b"".join(line + b"\n" for line in BACKLOG), then)
    assert [len(call) for call in calls] == [40, 1]
    assert [line for call in calls for line, _ in call] == BACKLOG + [b"next"]
    assert partial is False
    assert READ_PIECE < len(b"\n".join(BACKLOG)) <= READ_CHUNK  # (the case this is about)


def test_eof_within_a_backlog_hands_on_all_of_it() -> None:
    async def then(w: int, calls: list[Any]) -> None:
        pass  # EOF right behind the backlog and an unterminated line

    calls, partial = _read_pipe(b"".join(line + b"\n" for line in BACKLOG) + b"cut sh", then)
    assert [line for call in calls for line, _ in call] == BACKLOG
    assert len(calls) == 1 and partial is True


def test_a_backlog_of_whole_pieces_then_lines_as_they_come() -> None:
    """A backlog of exactly two of tornado's reads: reading on finds the pipe empty, so that
    read waits on the stream's own watch; the backlog is handed on first, the line that ends
    that wait next, and later lines through the reader's own watch again, in order."""
    backlog = [b"%03d " % i + b"y" * 507 for i in range(16)]  # 16 x 512 bytes: 2 x READ_PIECE
    assert len(b"".join(line + b"\n" for line in backlog)) == 2 * READ_PIECE

    async def then(w: int, calls: list[Any]) -> None:
        await wait_until(lambda: len(calls) == 1, what="the backlog")
        for number, line in enumerate([b"first", b"second", b"third"], 2):
            os.write(w, line + b"\n")
            await wait_until(lambda n=number: len(calls) == n, what=line.decode())

    calls, partial = _read_pipe(b"".join(line + b"\n" for line in backlog), then)
    assert [[line for line, _ in call] for call in calls] == [backlog, [b"first"], [b"second"], [b"third"]]
    assert partial is False


def test_a_wake_up_that_finds_nothing_waits_for_the_next_line(caplog: Any) -> None:
    """The loop reports the pipe readable but the data went elsewhere (another reader of
    the pipe took it): the reader's read waits on the stream's own watch; lines after it
    arrive in order, through that wait and then through the reader's watch again."""
    async def scenario() -> tuple[list[Any], bool]:
        r, w = os.pipe()
        calls: list[Any] = []
        reader = LineReader(PipeIOStream(r), 4096, calls.append)
        done = reader.start()
        os.write(w, b"taken\n")
        assert os.read(r, 100) == b"taken\n"  # ... by another reader of the same pipe
        reader._readable()  # the wake-up for it (the loop reported the pipe readable)
        for count, line in enumerate([b"one", b"two", b"three"], 1):
            os.write(w, line + b"\n")
            await wait_until(lambda n=count: len(calls) == n, what=line.decode())
        os.close(w)
        return calls, await done

    with caplog.at_level(logging.DEBUG):
        calls, partial = run(scenario())
    assert [[line for line, _ in call] for call in calls] == [[b"one"], [b"two"], [b"three"]]
    assert partial is False
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]  # ("Already reading")


@pytest.mark.parametrize("held", [b"", b"half a li"])
def test_close_ends_the_reader_while_the_writer_holds_the_pipe_open(held: bytes) -> None:
    """A grandchild may hold stdout open for ever: close() ends the reader at once, the
    Future says whether a partial line was left, and no descriptor of the pipe is left
    open by the reader (the writer sees the pipe closed)."""
    async def scenario() -> tuple[list[Any], bool, int]:
        before = open_fds()
        r, w = os.pipe()
        calls: list[Any] = []
        reader = LineReader(PipeIOStream(r), 4096, calls.append)
        done = reader.start()
        os.write(w, b"whole\n" + held)
        await wait_until(lambda: len(calls) == 1, what="the line")
        reader.close()
        partial = await asyncio.wait_for(done, 1)
        with pytest.raises(BrokenPipeError):  # no reader left: the pipe's read end is closed
            os.write(w, b"more\n")
        os.close(w)
        return calls, partial, open_fds() - before

    calls, partial, left = run(scenario())
    assert [line for call in calls for line, _ in call] == [b"whole"]
    assert partial is bool(held)
    assert left == 0


def test_what_the_handler_raises_ends_the_reader_with_it() -> None:
    """The reader stops at the handler's failure and its Future raises it (the source's
    supervisor logs it and restarts the child); lines after it are not handed on."""
    async def scenario() -> tuple[list[Any], BaseException | None]:
        r, w = os.pipe()
        calls: list[Any] = []

        def handle(lines: Any) -> None:
            calls.append(lines)
            raise KeyError("subscriber bug")

        reader = LineReader(PipeIOStream(r), 4096, handle)
        done = reader.start()
        os.write(w, b"one\n")
        await asyncio.wait([done], timeout=2)
        os.write(w, b"two\n")
        await asyncio.sleep(0.05)
        reader.close()
        os.close(w)
        return calls, done.exception()

    calls, error = run(scenario())
    assert [line for call in calls for line, _ in call] == [b"one"]
    assert isinstance(error, KeyError)


def test_splitter_strips_cr_and_skips_empty_lines(fake_tegrastats_argv: Any,
                                                  tmp_path: Any) -> None:
    path = tmp_path / "crlf.txt"
    path.write_bytes(b"RAM 1/2MB\r\n")
    rec = Recorder()

    async def scenario() -> None:
        # the fake writes "\n" itself; "--long-line 0" writes an empty line first
        proc = rec.process(fake_tegrastats_argv("--long-line", "0", "--lines", str(path)))
        proc.start()
        await wait_until(lambda: len(rec.lines) >= 2)
        await proc.stop()

    run(scenario())
    assert rec.lines[:2] == ["RAM 1/2MB", "RAM 1/2MB"]
    assert rec.discards == []


# --- ReplaySource -----------------------------------------------------------------------------


def test_replay_loops_at_the_interval() -> None:
    rec = Recorder()
    stamps: list[float] = []

    def on_line(line: str) -> None:
        stamps.append(time.monotonic())
        rec.lines.append(line)

    async def scenario() -> ReplaySource:
        source = ReplaySource(["a", "b", "c"], on_line, rec.states.append, interval_s=0.03)
        started = time.monotonic()
        source.start()
        assert rec.lines == ["a"]  # the first line at once
        assert stamps[0] - started < 0.02
        await wait_until(lambda: len(rec.lines) >= 7)
        await source.stop()
        await source.stop()
        return source

    source = run(scenario())
    assert rec.lines[:7] == ["a", "b", "c", "a", "b", "c", "a"]
    assert 6 * 0.03 * 0.8 <= stamps[6] - stamps[0] <= 6 * 0.03 + 0.15
    assert rec.states == ["running", "stopped"]
    assert source.restarts == 0 and source.pid is None


def test_replay_sends_lines_verbatim() -> None:
    rec = Recorder()

    async def scenario() -> None:
        source = rec.replay([STAMPED], interval_s=0.01)
        source.start()
        await source.stop()

    run(scenario())
    assert rec.lines == [STAMPED]


def test_simulator_rewrites_timestamps_to_now() -> None:
    clock = time.mktime((2030, 1, 2, 3, 4, 5, 0, 0, -1))
    source = ReplaySource([STAMPED, TX1_LINES[0]], print, print, live_timestamps=True,
                          clock=lambda: clock)
    assert source.render(STAMPED) == "01-02-2030 03:04:05" + STAMPED[len("10-26-2025 05:10:54"):]
    assert source.render(TX1_LINES[0]) == TX1_LINES[0]  # no timestamp: untouched
    live = ReplaySource([STAMPED], print, print, live_timestamps=True).render(STAMPED)
    assert abs(time.mktime(time.strptime(live[:19], "%m-%d-%Y %H:%M:%S")) - time.time()) < 5
    assert live[19:] == STAMPED[19:]


def test_replay_logs_the_error_that_ends_it(caplog: Any) -> None:
    calls: list[str] = []

    def on_line(line: str) -> None:
        calls.append(line)
        if len(calls) == 2:
            raise KeyError("hub bug")

    async def scenario() -> None:
        source = ReplaySource(["a", "b"], on_line, lambda state: None, interval_s=0.01)
        source.start()
        await wait_until(lambda: "hub bug" in caplog.text, what="the error in the log")
        await source.stop()

    run(scenario())
    assert calls == ["a", "b"]


def test_replay_rejects_nothing_to_replay() -> None:
    with pytest.raises(ValueError):
        ReplaySource([], print, print)
    with pytest.raises(ValueError):
        ReplaySource(["a"], print, print, interval_s=0)


# --- boards and replay files ---------------------------------------------------------------


def test_every_board_loads_and_cites_its_samples() -> None:
    assert list_boards() == BOARDS
    samples = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "tegrastats", "samples.tsv")
    with open(samples, encoding="utf-8") as handle:
        rows = [row.rstrip("\n").split("\t") for row in handle][1:]
    real = {int(row[0]): row for row in rows if len(row) == 5}
    for board in BOARDS:
        lines = load_board(board)
        assert lines, board
        with open(os.path.join(BOARDS_DIR, board + ".txt"), encoding="utf-8") as handle:
            comments = [row for row in handle.read().split("\n") if row.startswith("#")]
        assert "samples.tsv" in " ".join(comments[:3]), board
        cited = [int(row.split()[2]) for row in comments if row.startswith("# id ")]
        assert [real[i][4] for i in cited] == lines, board  # each line is the cited row
        for i in cited:  # model and source are quoted as in the TSV
            assert f"# id {i} | {real[i][1]} | {real[i][2]} | {real[i][3]}" in comments


def test_board_names_are_forgiving_and_unknown_ones_named() -> None:
    assert load_board("AGX_Orin") == load_board("agx-orin")
    with pytest.raises(UnknownBoardError) as info:
        load_board("jetson-pi")
    assert info.value.board == "jetson-pi"
    assert "agx-orin" in str(info.value) and "thor" in str(info.value)
    assert isinstance(info.value, ValueError)


def test_load_replay(tmp_path: Any, lines_file: str) -> None:
    assert load_replay(lines_file) == TX1_LINES
    empty = tmp_path / "empty.txt"
    empty.write_text("# nothing\n\n")
    with pytest.raises(ValueError, match="no tegrastats lines"):
        load_replay(str(empty))
    with pytest.raises(FileNotFoundError):
        load_replay(str(tmp_path / "absent.txt"))


# --- plan_source -------------------------------------------------------------------------------


def no_tegrastats(name: str) -> None:
    return None


def not_a_jetson() -> bool:
    return False


def a_jetson() -> bool:
    return True


def test_plan_replay_wins(lines_file: str) -> None:
    plan = plan_source(replay=lines_file, simulate=None, which=no_tegrastats, is_jetson=a_jetson)
    assert plan == SourcePlan(kind="replay", lines=TX1_LINES)
    both = plan_source(replay=lines_file, simulate="nano", is_jetson=a_jetson)
    assert both.kind == "replay" and both.warning and "--simulate nano" in both.warning


@pytest.mark.parametrize("value", ["1", "true", "yes", "", "TRUE"])
def test_plan_simulate_default_board(value: str) -> None:
    plan = plan_source(simulate=value, which=lambda name: "/usr/bin/tegrastats")
    assert plan.kind == "simulator" and plan.board == DEFAULT_BOARD == "agx-orin"
    assert plan.lines == load_board("agx-orin") and plan.warning is None


def test_plan_simulate_named_board_and_off() -> None:
    assert plan_source(simulate="thor", which=no_tegrastats).lines == load_board("thor")
    with pytest.raises(UnknownBoardError):
        plan_source(simulate="raspberry", which=no_tegrastats)
    found = plan_source(simulate="0", which=lambda name: "/usr/bin/tegrastats")
    assert found.kind == "tegrastats"


def test_plan_tegrastats_found() -> None:
    plan = plan_source(tegrastats="tegrastats", interval_ms=500,
                       which=lambda name: "/usr/bin/" + name, is_jetson=a_jetson)
    assert plan == SourcePlan(kind="tegrastats",
                              argv=["/usr/bin/tegrastats", "--interval", "500"])


def test_plan_tegrastats_as_an_executable_path(tmp_path: Any) -> None:
    exe = tmp_path / "my-tegrastats"
    exe.write_text("#!/bin/sh\n")
    exe.chmod(stat.S_IRWXU)
    plan = plan_source(tegrastats=str(exe), which=no_tegrastats, is_jetson=a_jetson)
    assert plan.argv == [str(exe), "--interval", "1000"]


def test_plan_falls_back_to_the_simulator_off_a_jetson() -> None:
    plan = plan_source(tegrastats="tegrastats", which=no_tegrastats, is_jetson=not_a_jetson)
    assert plan.kind == "simulator" and plan.board == "agx-orin"
    assert plan.warning and "SIMULATED" in plan.warning and "tegrastats" in plan.warning


def test_plan_refuses_a_jetson_without_tegrastats() -> None:
    with pytest.raises(TegrastatsNotFoundError) as info:
        plan_source(tegrastats="/opt/tegrastats", which=no_tegrastats, is_jetson=a_jetson)
    assert info.value.path == "/opt/tegrastats"


def test_plan_rejects_a_bad_interval() -> None:
    with pytest.raises(ValueError):
        plan_source(interval_ms=0, which=lambda name: "/usr/bin/tegrastats")


def test_is_jetson(tmp_path: Any) -> None:
    release = tmp_path / "nv_tegra_release"
    assert is_jetson(str(release)) is False
    release.write_text("# R36 (release), REVISION: 4.4\n")
    assert is_jetson(str(release)) is True
