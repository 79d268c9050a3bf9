"""``tegrastats-api monitor`` against a real server (a child process), in real terminals:
tmux panes (a private socket per test, ``capture-pane -e`` for the colours), pipes that
close early, a server restarted on the same port.

Without tmux the terminal tests are skipped loudly (a failure with ``CI=true``).
"""
from __future__ import annotations

import asyncio
import itertools
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest

from conftest import require_tool
from fault_tools import ROOT_DIR, WAIT_S, wait_until

TMUX = shutil.which("tmux") or "/usr/bin/tmux"
# An Orin Nano line with a hot (88.3, 86.5), warm (72.5, 70.0) and a cool sensor, the
# fixed PMIC reading, and VDD_IN printed last: the monitor shows it first.
HOT_LINE = ("11-15-2024 08:38:09 RAM 6185/7620MB (lfb 8x2MB) SWAP 851/3810MB (cached 1MB) "
            "CPU [15%@729,11%@729,14%@729,13%@729,11%@729,8%@729] EMC_FREQ 43%@2133 GR3D_FREQ 63%@[621] "
            "NVDEC off NVJPG off VIC off OFA off APE 200 cpu@88.3C soc2@72.5C soc0@44C gpu@53.343C "
            "tj@86.5C soc1@70C PMIC@100C VDD_CPU_GPU_CV 4667mW/4667mW VDD_SOC 812mW/812mW VDD_IN 12479mW/12479mW")
# what the screen must show of HOT_LINE, each whole on one line
VALUES = ("88.3 \u00b0C", "72.5 \u00b0C", "44.0 \u00b0C", "53.3 \u00b0C", "86.5 \u00b0C", "70.0 \u00b0C",
          "100.0 \u00b0C (fixed)", "input 12.5 W (vdd_in)", "4.67 W", "812 mW", "6.0 GB of 7.4 GB",
          "0:15%@729", "5:8%@729", "43% 2133 MHz", "63% 621 MHz", "APE 200 MHz")
RED, YELLOW, GREEN, MAGENTA = 31, 33, 32, 35
_sockets = itertools.count()


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_") and k != "NO_COLOR"}
    env.update(PYTHONPATH=ROOT_DIR, **extra)
    return env


def _monitor_argv(port, *flags):
    return [sys.executable, "-m", "tegrastats_api", "--config", os.devnull, "monitor", "--host", "127.0.0.1",
            "--port", str(port), *flags]


@pytest.fixture
def hot_server(server_process, tmp_path):
    replay = tmp_path / "hot.log"
    replay.write_text(HOT_LINE + "\n")
    return server_process("--replay", str(replay), "--update-interval", "0.2", healthy=True)


# --- JSON lines: a closed stdout -------------------------------------------------------------


@pytest.mark.parametrize("shell", [
    "{monitor} | head -n 2",        # the case: head has read enough
    "{monitor} | true",             # the reader is gone before the first line
    "{monitor} | (read -r first)",  # gone after one line, without reading it all
    "exec 1>&-; {monitor}",         # no stdout at all
    "{monitor} 2>&- | head -n 1",   # no stderr either
])
def test_a_closed_stdout_ends_the_json_lines_quietly(hot_server, shell):
    monitor = " ".join(_monitor_argv(hot_server.port))
    command = "set -o pipefail; " + shell.format(monitor=monitor) + "; echo rc=$? >&2"  # bash: pipefail
    result = subprocess.run(["bash", "-c", command], env=_env(), capture_output=True, text=True, timeout=30)
    assert result.stderr == "rc=0\n", result.stderr
    head = re.search(r"head -n (\d)", shell)
    if head:
        assert [line[:11] for line in result.stdout.splitlines()] == ['{"schema":1'] * int(head.group(1))


def test_json_lines_reconnect_after_a_server_restart(hot_server, tmp_path):
    out, err = tmp_path / "out.jsonl", tmp_path / "err.txt"
    with open(out, "wb") as stdout, open(err, "wb") as stderr:
        proc = subprocess.Popen(_monitor_argv(hot_server.port), stdout=stdout, stderr=stderr, env=_env())
    try:
        wait_until(lambda: out.read_text().count("\n") >= 3, what="JSON lines")
        hot_server.stop()
        wait_until(lambda: "connection lost" in err.read_text(), what="a note of the loss")
        lines_before = out.read_text().count("\n")
        restarted = time.time()
        hot_server.start()
        wait_until(lambda: "reconnected" in err.read_text(), what="a note of the reconnection")
        wait_until(lambda: out.read_text().count("\n") >= lines_before + 3, what="documents after the restart")
        assert proc.poll() is None
        proc.send_signal(signal.SIGINT)
        assert proc.wait(WAIT_S) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(WAIT_S)
    import json

    documents = [json.loads(line) for line in out.read_text().splitlines()]
    stamps = [d["timestamp"] for d in documents]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)  # the repeat on reconnect skipped
    assert documents[-1]["timestamp"] > time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(restarted))
    notes = err.read_text().splitlines()
    assert notes[0].startswith("tegrastats-api: connection lost (") and notes[-1] == "tegrastats-api: reconnected"
    assert "Traceback" not in err.read_text()


# --- the terminal ----------------------------------------------------------------------------


class Pane:
    """One tmux session on a private server, running the monitor in a small shell that
    prints a marker first and, after the monitor, its exit status and whether the
    terminal's modes (``stty -g``) came back; the monitor's stderr goes to a file."""

    def __init__(self, tmp_path, port, width=100, height=40, env=None, flags=(), stdin=None):
        require_tool(os.access(TMUX, os.X_OK), "tmux (apt-get install tmux)")
        self.socket = "tsa-mon-%d-%d" % (os.getpid(), next(_sockets))
        self.stderr = tmp_path / ("monitor-%s.err" % self.socket)
        self.pidfile = tmp_path / ("monitor-%s.pid" % self.socket)
        script = tmp_path / ("run-%s.sh" % self.socket)
        script.write_text(
            'echo BEFORE-MONITOR\nbefore=$(stty -g)\n'
            '(echo $BASHPID > %s; exec "$@" 2> %s %s)\nrc=$?\n'
            'if [ "$(stty -g)" = "$before" ]; then modes=same; else modes=changed; fi\n'
            'echo "MONITOR-EXIT=$rc MODES=$modes"\nexec sleep 600\n'
            % (self.pidfile, self.stderr, "< %s" % stdin if stdin else ""))
        settings = ["%s=%s" % kv for kv in (env or {}).items()]
        command = ["env", "-u", "NO_COLOR", *settings, "bash", str(script), *_monitor_argv(port, *flags)]
        self.tmux("new-session", "-d", "-s", "mon", "-x", str(width), "-y", str(height),
                  " ".join("'%s'" % part.replace("'", "'\\''") for part in command))

    def tmux(self, *args):
        return subprocess.run([TMUX, "-L", self.socket, "-f", os.devnull, *args], env=_env(), capture_output=True,
                              text=True, timeout=WAIT_S, check=True).stdout

    def screen(self, escapes=False):
        return self.tmux("capture-pane", "-p", *(["-e"] if escapes else []), "-t", "mon")

    def wait_for(self, pattern, what=None, escapes=False):
        return wait_until(lambda: re.search(pattern, self.screen(escapes)) and self.screen(escapes),
                          what="%s on the screen" % (what or pattern))

    def pane(self, name):
        return self.tmux("display-message", "-p", "-t", "mon", "#{%s}" % name).strip()

    def pid(self):
        return int(wait_until(lambda: self.pidfile.exists() and self.pidfile.read_text().strip(), what="pid"))

    def close(self):
        subprocess.run([TMUX, "-L", self.socket, "kill-server"], capture_output=True, timeout=WAIT_S)
        path = os.path.join(os.environ.get("TMUX_TMPDIR") or "/tmp", "tmux-%d" % os.getuid(), self.socket)
        if os.path.exists(path):  # kill-server leaves the socket file
            os.unlink(path)


@pytest.fixture
def panes(tmp_path):
    opened = []

    def open_pane(port, **options):
        pane = Pane(tmp_path, port, **options)
        opened.append(pane)
        return pane

    yield open_pane
    for pane in opened:
        pane.close()


def _sgr_runs(screen):
    """[(text, foreground colour or None, bold, dim)] of a ``capture-pane -e`` screen."""
    runs, fg, bold, dim = [], None, False, False
    for part in re.split(r"(\x1b\[[0-9;]*m)", screen):
        if not part.startswith("\x1b["):
            if part:
                runs.append((part, fg, bold, dim))
            continue
        codes = [int(c) if c else 0 for c in part[2:-1].split(";")]
        while codes:
            code = codes.pop(0)
            if code == 0:
                fg, bold, dim = None, False, False
            elif code in (38, 48):  # extended colours: 5;n or 2;r;g;b
                values = codes[:2] if codes[:1] == [5] else codes[:4]
                del codes[:len(values)]
                if code == 38:
                    fg = ("256", values[-1])
            elif 30 <= code <= 37 or 90 <= code <= 97:
                fg = code if code < 90 else code - 60
            elif code == 39:
                fg = None
            elif code == 1:
                bold = True
            elif code == 2:
                dim = True
            elif code == 22:
                bold = dim = False
    return runs


def _look(screen, text):
    """(colour, bold, dim) where ``text`` starts on the screen."""
    joined, at = "", []
    for run_text, fg, bold, dim in _sgr_runs(screen):
        at.extend([(fg, bold, dim)] * len(run_text))
        joined += run_text
    index = joined.find(text)
    assert index >= 0, "%r not on the screen:\n%s" % (text, joined)
    return at[index]


def _lines(screen):
    return [line.rstrip() for line in screen.splitlines()]


def test_colours_follow_the_dashboards_thresholds(hot_server, panes):
    pane = panes(hot_server.port)
    screen = pane.wait_for(r"TEMP.*88\.3", "the temperatures", escapes=True)
    assert _look(screen, "88.3 \u00b0C")[0] == RED and _look(screen, "86.5 \u00b0C")[0] == RED
    assert _look(screen, "72.5 \u00b0C")[0] == YELLOW and _look(screen, "70.0 \u00b0C")[0] == YELLOW
    assert _look(screen, "44.0 \u00b0C")[0] is None and _look(screen, "53.3 \u00b0C")[0] is None
    assert _look(screen, "pmic 100.0 \u00b0C (fixed)")[2]  # greyed
    assert _look(screen, "live")[0] == GREEN and _look(screen, "replay")[0] == MAGENTA
    assert _look(screen, "|||")[0] == GREEN  # load bars
    assert "(hot)" not in screen and "(warm)" not in screen  # the colour says it


@pytest.mark.parametrize("env", [{"NO_COLOR": "1"}, {"NO_COLOR": "anything"}, {"TERM": "dumb"},
                                 {"TERM": "dumb", "NO_COLOR": "1"}], ids=["NO_COLOR=1", "NO_COLOR=x", "dumb", "both"])
def test_no_colour_codes_without_a_colour_terminal(hot_server, panes, env):
    pane = panes(hot_server.port, env=env)
    screen = pane.wait_for(r"TEMP.*88\.3", "the temperatures", escapes=True)
    assert "\x1b[" not in screen, repr(screen)
    text = pane.screen()
    assert "88.3 \u00b0C (hot)" in text and "72.5 \u00b0C (warm)" in text and "pmic 100.0 \u00b0C (fixed)" in text


def test_an_empty_no_color_still_has_colours(hot_server, panes):
    pane = panes(hot_server.port, env={"NO_COLOR": ""})  # no-color.org: empty means unset
    screen = pane.wait_for(r"TEMP.*88\.3", "the temperatures", escapes=True)
    assert _look(screen, "88.3 \u00b0C")[0] == RED


def _fits(screen, width):
    """The screen's lines if none is wider than ``width`` and every value of :data:`VALUES`
    is on it whole (no number split, nothing cut off), else None."""
    lines = _lines(screen)
    text = "\n".join(lines)
    if all(len(line) <= width for line in lines) and all(value in text for value in VALUES):
        return lines
    return None


def _redrawn(screen, width):
    lines = _fits(screen, width)
    return lines if lines and max(map(len, lines)) > width - 20 else None  # the monitor uses the width


def test_the_screen_takes_the_terminals_width_and_redraws_on_resize(hot_server, panes):
    pane = panes(hot_server.port, width=60, height=50)
    narrow = wait_until(lambda: _fits(pane.screen(), 60), what="every value whole within 60 columns")
    assert max(map(len, narrow)) > 50  # uses the width it has
    for width in (140, 44, 97):
        pane.tmux("resize-window", "-t", "mon", "-x", str(width), "-y", "50")
        # (tmux clips the old screen to a narrower window, leaves it as it was in a wider one)
        lines = wait_until(lambda w=width: _redrawn(pane.screen(), w), what="the screen redrawn in %d columns" % width)
        rows, narrow_rows = (len([line for line in screen if line]) for screen in (lines, narrow))
        assert (rows < narrow_rows) if width > 60 else (rows > narrow_rows)


def test_a_short_terminal_says_what_is_below(hot_server, panes):
    pane = panes(hot_server.port, width=80, height=8)
    screen = pane.wait_for(r"more lines? below", "the hint")
    assert len(_lines(screen)) == 8 and _lines(screen)[0].startswith("REPLAYED DATA  tegrastats-api")


@pytest.mark.parametrize("key", ["q", "Q", "C-c"])
def test_q_quits_with_0_and_gives_the_terminal_back(hot_server, panes, key):
    pane = panes(hot_server.port)
    screen = pane.wait_for(r"TEMP", "the monitor")
    assert "q quits" in screen and "BEFORE-MONITOR" not in screen  # the alternate screen
    assert pane.pane("alternate_on") == "1" and pane.pane("cursor_flag") == "0"
    pane.tmux("send-keys", "-t", "mon", key)
    screen = pane.wait_for(r"MONITOR-EXIT=\d+", "the exit status")
    assert "MONITOR-EXIT=0 MODES=same" in screen
    assert "BEFORE-MONITOR" in screen and "TEMP" not in screen  # the screen as it was
    assert pane.pane("alternate_on") == "0" and pane.pane("cursor_flag") == "1"
    assert pane.stderr.read_text() == ""


def test_q_quits_a_plain_terminal_too(hot_server, panes):
    pane = panes(hot_server.port, env={"TERM": "dumb"})
    assert "q Enter quits" in pane.wait_for(r"TEMP", "the monitor")
    pane.tmux("send-keys", "-t", "mon", "q", "Enter")
    assert "MONITOR-EXIT=0 MODES=same" in pane.wait_for(r"MONITOR-EXIT=\d+", "the exit status")


def test_without_a_keyboard_the_screen_is_plain_and_ctrl_c_quits(hot_server, panes):
    pane = panes(hot_server.port, stdin=os.devnull)
    screen = pane.wait_for(r"TEMP(?:.*\n)+(?:.*\n)*.*Ctrl-C quits", "a second screen")
    assert "BEFORE-MONITOR" in screen and "88.3 \u00b0C (hot)" in screen  # plain text, scrolling
    assert "\x1b[" not in pane.screen(escapes=True)
    pane.tmux("send-keys", "-t", "mon", "C-c")
    assert "MONITOR-EXIT=0 MODES=same" in pane.wait_for(r"MONITOR-EXIT=\d+", "the exit status")


@pytest.mark.parametrize("env", [{}, {"TERM": "dumb"}], ids=["full-screen", "plain"])
def test_a_terminal_that_goes_away_ends_the_monitor_quietly(hot_server, panes, env):
    pane = panes(hot_server.port, env=env)
    pane.wait_for(r"TEMP", "the monitor")
    pid = pane.pid()
    pane.tmux("kill-pane", "-t", "mon")  # the terminal hangs up
    wait_until(lambda: not os.path.exists("/proc/%d" % pid) or _zombie(pid), what="the monitor's exit")
    assert "Traceback" not in pane.stderr.read_text()


def _zombie(pid):
    try:
        with open("/proc/%d/stat" % pid) as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] == "Z"
    except FileNotFoundError:
        return True


def _header_time(screen):
    match = re.search(r"(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d)", screen)
    assert match, screen
    return match.group(1)


def test_the_screen_shows_reconnecting_then_data_again_after_a_server_restart(hot_server, panes):
    pane = panes(hot_server.port)
    pane.wait_for(r"live", "live data")
    hot_server.stop()
    screen = pane.wait_for(r"reconnecting\u2026", "reconnecting")
    assert "q quits" in screen and "88.3 \u00b0C" in screen  # the last figures stay, greyed
    escapes = pane.screen(escapes=True)
    assert _look(escapes, "reconnecting")[0] == YELLOW and _look(escapes, "88.3 \u00b0C")[2]
    pane.wait_for(r"retry in \d s", "the countdown")
    restarted = time.strftime("%Y-%m-%d %H:%M:%S")
    hot_server.start()
    screen = pane.wait_for(r"(?m)(^|  )live  ", "live data again")
    assert _header_time(screen) >= restarted and "reconnecting" not in screen
    assert _look(pane.screen(escapes=True), "88.3 \u00b0C")[0] == RED  # not greyed any more
    pane.tmux("send-keys", "-t", "mon", "q")
    assert "MONITOR-EXIT=0 MODES=same" in pane.wait_for(r"MONITOR-EXIT=\d+", "the exit status")


def test_the_screen_waits_for_a_server_that_is_not_up_yet(server_process, panes, tmp_path):
    replay = tmp_path / "hot.log"
    replay.write_text(HOT_LINE + "\n")
    server = server_process("--replay", str(replay), "--update-interval", "0.2", healthy=True)
    port = server.port
    server.stop()
    pane = panes(port)
    screen = pane.wait_for(r"connecting\u2026 \(connection refused", "connecting")
    assert "reconnecting" not in screen
    server.start()
    pane.wait_for(r"(?m)(^|  )live  .*\n(?:.*\n)*TEMP", "live data")


def test_a_refused_connection_says_why(server_process, panes):
    server = server_process("--simulate", "orin-nano", "--auth-token", "s3cret", healthy=True)
    pane = panes(server.port, flags=("--auth-token", "wrong"))
    screen = pane.wait_for(r"refused: HTTP 401", "the refusal")
    assert "missing or invalid token" in screen and "retry in" in screen
    assert _look(pane.screen(escapes=True), "refused")[0] == RED


# --- the board and the staleness rule come from the server ------------------------------------


def test_the_header_names_the_board_from_the_server(server_process, panes, tmp_path):
    """``/api/board`` in the header: model, JetPack and L4T, power mode and fan (a fake
    JetPack 6 Orin Nano root under TEGRASTATS_API_SYSROOT, replayed lines)."""
    replay = tmp_path / "hot.log"
    replay.write_text(HOT_LINE + "\n")
    root = os.path.join(ROOT_DIR, "tests", "fixtures", "sysroots", "jp6-orin-nano")
    server = server_process("--replay", str(replay), "--update-interval", "0.2", healthy=True,
                            env={"TEGRASTATS_API_SYSROOT": root})
    board = server.get("/api/board").json()
    pane = panes(server.port, width=200)
    screen = pane.wait_for(r"JetPack", "the board line")
    assert board["model"] in screen
    assert "JetPack %s (L4T %s)" % (board["jetpack"], board["l4t"]) in screen
    assert "power mode %s" % board["power_mode"]["name"] in screen
    assert "fan %g%%" % board["fans"][0]["speed"] in screen


def test_the_monitor_takes_the_servers_staleness_rule(server_process):
    """The one rule (``/api/health``'s ``stale_after``), not one of its own."""
    from tegrastats_api.config import Config
    from tegrastats_api.feed import Facts, Samples

    server = server_process("--simulate", "--update-interval", "0.3", healthy=True)
    facts = Facts(Config(host="127.0.0.1", port=server.port))
    asyncio.run(facts.ask())
    health = server.health()
    assert facts.stale_after == health["stale_after"] == pytest.approx(5 * 0.3)
    samples = Samples()
    assert samples.stale_after(facts) == health["stale_after"]
    assert "simulated" in facts.board  # the simulator's recorded identity
