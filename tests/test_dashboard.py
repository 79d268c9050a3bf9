"""The dashboard (static/) in a real headless Chromium, against real servers on 127.0.0.1.

Chromium is Debian's ``/usr/bin/chromium`` (installed by ``.ci/run``), driven through
playwright-core by ``tests/node/dashboard_driver.js`` (one JSON command per line; it never
downloads a browser). Every element of the page with ``data-field="a.b.c"`` keeps the raw
value it shows in ``data-value``, so the numbers can be compared exactly with the document
the server pushed. Screenshots land in ``tests/artifacts/`` (gitignored).
"""
from __future__ import annotations

import contextlib
import itertools
import json
from pathlib import Path
import os
import queue
import re
import signal
import subprocess
import threading
import time
import urllib.error
import urllib.request
from typing import Any, Dict, Iterator, List, Optional, Tuple
from urllib.parse import urlsplit

import pytest
from conftest import require_tool

from tegrastats_api import Config, TegrastatsServer, parse_line
from tegrastats_api.summary import hottest, input_power_mw

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
NODE_DIR = os.path.join(TESTS_DIR, "node")
DRIVER = os.path.join(NODE_DIR, "dashboard_driver.js")
ARTIFACTS = os.path.join(TESTS_DIR, "artifacts")
CHROMIUM = "/usr/bin/chromium"
INTERVAL_S = 0.2
TOKEN = "dash-t0ken"
BOARDS = ["agx-orin", "orin-nano", "orin-nx", "xavier-nx", "agx-xavier", "nano", "tx2", "tx1", "thor"]


# ------------------------------------------------------------------ the browser


class Browser:
    """The node driver: ``call(cmd, **args)`` sends one command and returns its answer."""

    def __init__(self) -> None:
        os.makedirs(ARTIFACTS, exist_ok=True)
        self._log = open(os.path.join(ARTIFACTS, "dashboard_driver.log"), "w")
        self.proc = subprocess.Popen(
            ["node", DRIVER, "--chromium", CHROMIUM], cwd=NODE_DIR, stdin=subprocess.PIPE,
            stdout=subprocess.PIPE, stderr=self._log, text=True, bufsize=1,
        )
        self._lines: queue.Queue = queue.Queue()
        threading.Thread(target=self._pump, daemon=True).start()
        self._ids = itertools.count(1)
        ready = self._next(30)
        assert ready.get("ready"), ready
        self.version = ready["version"]

    def _pump(self) -> None:
        for line in self.proc.stdout:  # type: ignore[union-attr]
            self._lines.put(line)
        self._lines.put(None)

    def _next(self, timeout: float) -> Dict[str, Any]:
        try:
            line = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the browser driver did not answer within %.0f s" % timeout) from None
        if line is None:
            self._log.flush()
            with open(self._log.name) as handle:
                raise AssertionError("the browser driver exited:\n" + handle.read()[-3000:])
        return json.loads(line)

    def call_all(self, commands: List[Tuple[str, Dict[str, Any]]]) -> List[Dict[str, Any]]:
        """Send every ``(cmd, args)`` at once (the driver runs them concurrently); the answers
        in the same order. ``args["timeout"]`` (ms, default 8000) bounds each command."""
        ids = []
        for cmd, args in commands:
            message = dict({"timeout": 8000}, **args, cmd=cmd, id=next(self._ids))
            ids.append(message["id"])
            self.proc.stdin.write(json.dumps(message) + "\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        longest = max(args.get("timeout", 8000) for _, args in commands) / 1000.0
        answers: Dict[int, Dict[str, Any]] = {}
        deadline = time.monotonic() + longest + 10
        while len(answers) < len(ids):
            reply = self._next(max(0.1, deadline - time.monotonic()))
            answers[reply["id"]] = reply
        return [answers[i] for i in ids]

    def call(self, cmd: str, **args: Any) -> Dict[str, Any]:
        return self.call_all([(cmd, args)])[0]

    def ok(self, cmd: str, **args: Any) -> Dict[str, Any]:
        reply = self.call(cmd, **args)
        assert reply["ok"], "%s %s: %s" % (cmd, args, reply.get("error"))
        return reply

    def ok_all(self, cmd: str, pages: List[str], **args: Any) -> List[Dict[str, Any]]:
        """The same command on several pages at once; every one must succeed."""
        replies = self.call_all([(cmd, dict(args, page=page)) for page in pages])
        for page, reply in zip(pages, replies):
            assert reply["ok"], "%s on %s: %s" % (cmd, page, reply.get("error"))
        return replies

    def open(self, page: str, url: str, **args: Any) -> Dict[str, Any]:
        return self.ok("open", page=page, url=url, **args)

    def quit(self) -> None:
        try:
            self.proc.stdin.write(json.dumps({"cmd": "quit"}) + "\n")  # type: ignore[union-attr]
            self.proc.stdin.close()  # type: ignore[union-attr]
            self.proc.wait(10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait(5)
        self._log.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    require_tool(os.access(CHROMIUM, os.X_OK), "chromium (apt-get install chromium)")
    require_tool(os.path.isdir(os.path.join(NODE_DIR, "node_modules", "playwright-core")),
                 "playwright-core for tests/node (make node)")
    driver = Browser()
    yield driver
    driver.quit()


# ------------------------------------------------------------------ servers


def http_get(url: str, headers: Optional[Dict[str, str]] = None) -> Tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, response.read()
    except urllib.error.HTTPError as err:
        return err.code, err.read()


def wait_healthy(base: str, timeout_s: float = 10.0) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if http_get(base + "/api/health")[0] == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("%s did not become healthy in %.0f s" % (base, timeout_s))


@contextlib.contextmanager
def serving(sysroot: Optional[str] = None, **fields: Any) -> Iterator[TegrastatsServer]:
    """A simulator server in a background thread, healthy (it has a sample) when entered;
    ``sysroot``: where it reads the board's files (default: the environment's, else ``/``)."""
    config = Config(**dict({"host": "127.0.0.1", "port": 0, "simulate": "agx-orin",
                            "update_interval": INTERVAL_S}, **fields))
    with TegrastatsServer(config, sysroot=sysroot) as server:
        wait_healthy(server.url)
        yield server


@pytest.fixture(scope="module")
def server() -> Iterator[TegrastatsServer]:
    with serving() as running:
        yield running


# ------------------------------------------------------------------ reading the page


def expected_value(doc: Dict[str, Any], path: str) -> Any:
    """What ``data-field=path`` must hold for ``doc`` (None for null or absent)."""
    if path == "power.total":
        return input_power_mw(doc["power"])
    node: Any = doc
    for key in path.split("."):
        if isinstance(node, list):
            node = node[int(key)] if int(key) < len(node) else None
        elif isinstance(node, dict):
            node = node.get(key)
        else:
            return None
    return node


UNSET = "<unset>"  # a data-field the page never filled (no document yet)


def fields_of(page: Dict[str, Any]) -> List[Tuple[str, Any, str, str]]:
    return [(path, json.loads(raw) if raw is not None else UNSET, text, unit)
            for path, raw, text, unit in page["fields"]]


def page_timestamp(page: Dict[str, Any]) -> Optional[str]:
    values = [value for path, value, _, _ in fields_of(page) if path == "timestamp"]
    return values[0] if values else None


def required_paths(doc: Dict[str, Any]) -> List[str]:
    """Every figure of ``doc`` the dashboard must show, whatever the board."""
    paths = ["timestamp", "source", "cpu.usage", "gpu.usage", "memory.ram.used", "memory.ram.total",
             "power.total"]
    for index, _ in enumerate(doc["cpu"]["cores"]):
        paths += ["cpu.cores.%d.usage" % index, "cpu.cores.%d.freq" % index]
    paths += ["gpu.freq.%d" % index for index, _ in enumerate(doc["gpu"]["freq"])]
    paths += ["temperature." + name for name in doc["temperature"]]
    paths += ["power.%s.current" % name for name in doc["power"]]
    paths += ["power.%s.average" % name for name in doc["power"]]
    for name in doc["engines"]:
        paths += ["engines.%s.online" % name, "engines.%s.usage" % name, "engines.%s.freq" % name]
    if doc["memory"]["swap"]:
        paths += ["memory.swap.used", "memory.swap.total"]
    if doc["memory"]["iram"]:
        paths += ["memory.iram.used", "memory.iram.total"]
    if doc["emc"]:
        paths += ["emc.usage", "emc.freq"]
    return paths


def assert_page_shows(page: Dict[str, Any], doc: Dict[str, Any]) -> None:
    """Every data-field of the page holds the document's value; every figure is there."""
    shown = fields_of(page)
    assert page_timestamp(page) == doc["timestamp"]
    for path, value, text, unit in shown:
        assert value == expected_value(doc, path), "%s shows %r, the document says %r" % (
            path, value, expected_value(doc, path))
        if value is None:
            assert text in ("\u2014", "off", "", " "), (path, text)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and unit == "MHz":
            assert text == "%d MHz" % value, (path, text)
        elif isinstance(value, (int, float)) and not isinstance(value, bool) and unit == "C":
            number, degrees = text.split(" ")  # one decimal, however the half is rounded
            assert degrees == "\u00b0C" and abs(float(number) - value) <= 0.05 + 1e-9, (path, text)
    missing = set(required_paths(doc)) - {path for path, _, _, _ in shown}
    assert not missing, "not on the page: %s" % sorted(missing)
    temp = hottest(doc["temperature"])[0]
    assert (json.loads(page["tempMax"]) if page["tempMax"] else None) == temp


def read_matching(browser: Browser, name: str, base: str, token: Optional[str] = None,
                  tries: int = 25) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """(page, document) of the same sample: the page, then the server's document with the
    page's timestamp (from /api/status, or from /api/history where the server has it)."""
    headers = {"Authorization": "Bearer " + token} if token else {}
    for _ in range(tries):
        page = browser.ok("read", page=name)
        shown = page_timestamp(page)
        status, body = http_get(base + "/api/status", headers)
        assert status == 200, body
        candidates = [json.loads(body)]
        status, body = http_get(base + "/api/history?seconds=30", headers)
        if status == 200:
            candidates += json.loads(body)["samples"]
        for doc in candidates:
            if doc["timestamp"] == shown:
                return page, doc
    raise AssertionError("the page never showed a sample the server served")


def changed_figures(before: Dict[str, Any], after: Dict[str, Any]) -> List[str]:
    old = {path: value for path, value, _, _ in fields_of(before)}
    return [path for path, value, _, _ in fields_of(after)
            if path not in ("timestamp", "source_time") and old.get(path) != value]


def wait_live(browser: Browser, name: str, **args: Any) -> Dict[str, Any]:
    """The page once it is live and has rendered a document (the badge says "live" as soon
    as a push arrives; the figures follow on the next animation frame)."""
    browser.ok("wait_state", page=name, state="live", **args)
    return browser.ok("wait_change", page=name, **{"from": json.dumps(None)})


def history_is_served(base: str) -> bool:
    """Until /api/history exists, the page's backfill request gets a 404 (and Chromium logs it)."""
    return http_get(base + "/api/history?seconds=1")[0] != 404


def assert_clean_log(browser: Browser, name: str, base: str) -> Dict[str, Any]:
    log = browser.ok("log", page=name)
    assert log["errors"] == [], log["errors"]
    allowed = () if history_is_served(base) else ("/api/history?",)
    errors = [m for m in log["console"] if m["type"] in ("error", "warning")
              and not any(part in m["url"] for part in allowed)]
    assert errors == [], errors
    return log


# ------------------------------------------------------------------ tests


def test_page_loads_live_with_only_local_requests_and_no_console_errors(browser, server):
    assert browser.open("main", server.url + "/")["status"] == 200
    page = wait_live(browser, "main")
    assert page["badge"] == {"hidden": False, "text": "SIMULATED DATA"}
    assert page["charts"] == 4, "one uPlot canvas per chart"
    browser.ok("wait_change", page="main", **{"from": json.dumps(page_timestamp(page))})
    log = assert_clean_log(browser, "main", server.url)
    requests = log["requests"]
    assert any("/socket.io/" in url for url in requests), requests
    assert any(url.endswith("/vendor/uPlot.iife.min.js") for url in requests), requests
    foreign = [url for url in requests
               if not url.startswith("data:") and urlsplit(url).hostname != "127.0.0.1"]
    assert foreign == [], "requests leaving 127.0.0.1: %s" % foreign


@pytest.fixture
def three_line_server(tmp_path) -> Iterator[TegrastatsServer]:
    """A replay of three different AGX Orin lines (samples.tsv ids 8, 9, 10) every 0.5 s:
    consecutive samples always differ, and so do samples two apart, so a page that misses
    one push on a loaded machine still shows a change (a two-line loop would not)."""
    rows = (Path(__file__).resolve().parent / "fixtures" / "tegrastats" / "samples.tsv").read_text(
        encoding="utf-8").splitlines()
    lines = [row.split("\t")[-1] for row in rows if row.split("\t")[0] in ("8", "9", "10")]
    replay = tmp_path / "three.txt"
    replay.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with serving(simulate=None, replay=str(replay), update_interval=0.5) as running:
        yield running


def test_numbers_match_the_pushed_document_and_change_with_the_next_push(browser, three_line_server):
    server = three_line_server
    browser.open("numbers", server.url + "/")
    wait_live(browser, "numbers")
    first, doc = read_matching(browser, "numbers", server.url)
    assert first["badge"] == {"hidden": False, "text": "REPLAYED DATA"}
    assert_page_shows(first, doc)
    after = browser.ok("wait_change", page="numbers", **{"from": json.dumps(doc["timestamp"])})
    assert page_timestamp(after) > doc["timestamp"]
    second, next_doc = read_matching(browser, "numbers", server.url)
    assert_page_shows(second, next_doc)
    assert changed_figures(first, second), "no figure changed between two samples"


def test_every_board_is_rendered_from_its_own_document(browser):
    """Every simulated board in turn: every figure it prints is on the page with the
    document's value (TX1 and Nano with IRAM, TX1 without swap, Thor without GPU load,
    offline cores on Orin NX, rails without a VDD_ prefix on AGX Xavier, MTS on TX2...)."""
    with contextlib.ExitStack() as stack:
        servers = {board: stack.enter_context(serving(simulate=board, update_interval=0.5))
                   for board in BOARDS}
        for board in BOARDS:
            browser.open("board", servers[board].url + "/", reuse=True)
            wait_live(browser, "board")
            page, doc = read_matching(browser, "board", servers[board].url)
            assert_page_shows(page, doc)
            assert_clean_log(browser, "board", servers[board].url)
        browser.ok("close", page="board")


# The health body rounds last_sample_age to 1 ms; the page's age carries its clock error.
AGE_ROUNDING_S = 0.0005


def _health(base: str) -> Dict[str, Any]:
    return json.loads(http_get(base + "/api/health")[1])


def test_stale_is_the_rule_of_api_health(browser, server_process, tmp_path):
    """One rule: the page shows "stale data (age N s)" exactly when /api/health is degraded
    for stale data, with the number /api/health answers (stale_after = 5 intervals, not a
    number of its own), the age counted on the server's clock even when the browser's clock
    is an hour off; a page opened while the data is stale says so; live again with data."""
    pause = tmp_path / "pause"
    process = server_process("--update-interval", "0.4", fake=("--pause-file", str(pause)), healthy=True)
    health = _health(process.url)
    assert (health["interval"], health["stale_after"]) == (0.4, 2.0)
    browser.open("stale", process.url + "/", clockSkewMs=-3600 * 1000)
    page = wait_live(browser, "stale")
    page = browser.ok("wait_change", page="stale", **{"from": json.dumps(page_timestamp(page))})
    assert page["staleAfter"] == health["stale_after"]
    pause.touch()  # tegrastats keeps running but prints nothing
    observations = []
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        page = browser.ok("read", page="stale")
        after = _health(process.url)
        observations.append((page, after))
        if page["state"] == "stale":
            break
        time.sleep(0.05)
    assert page["state"] == "stale", "the page never said stale: %r, health %r" % (
        {key: page[key] for key in ("state", "text", "age", "staleAfter", "clockError")}, after)
    assert page["text"] == "stale data (age %d s)" % round(page["age"]), page["text"]
    for page, after in observations:
        assert page["staleAfter"] == after["stale_after"] == 2.0
        assert page["state"] == ("stale" if page["age"] > page["staleAfter"] else "live"), page
        # The page judged before this health answer was made, on the server's clock.
        slack = page["clockError"] / 1000.0 + AGE_ROUNDING_S
        assert page["age"] <= after["last_sample_age"] + slack, (page, after)
        if page["state"] == "stale" and page["age"] > page["staleAfter"] + slack:
            assert (after["status"], after["last_sample_age"] > after["stale_after"]) == ("degraded", True)
        if abs(after["last_sample_age"] - after["stale_after"]) > AGE_ROUNDING_S:
            assert after["status"] == ("degraded" if after["last_sample_age"] > after["stale_after"] else "healthy")
    # A page opened now, with the data already stale, says so as soon as it knows the rule.
    browser.open("late", process.url + "/")
    late = browser.ok("wait_change", page="late", **{"from": json.dumps(None)})
    while late["staleAfter"] is None and time.monotonic() < deadline:
        late = browser.ok("read", page="late")
    assert late["staleAfter"] == 2.0 and late["state"] == "stale", late
    assert _health(process.url)["status"] == "degraded"
    pause.unlink()
    for name in ("stale", "late"):
        page = browser.ok("wait_state", page=name, state="live", timeout=10000)
        assert page["age"] <= page["staleAfter"], page
    assert_clean_log(browser, "stale", process.url)
    browser.ok_all("close", ["stale", "late"])


def test_readings_below_zero_are_shown_as_printed(browser, server_process, tmp_path):
    """Rails (and sensors) below zero, from a real tegrastats child: the figures as printed
    ("-0.40 W", a board input below zero), empty bars marked below zero (never NaN), and a
    power chart whose y range reaches below zero (tests/test_negative_readings.py has the
    lines; every other consumer is checked there)."""
    from test_negative_readings import CASES, FAKE_LINES

    lines = tmp_path / "negative.txt"
    lines.write_text("\n".join(FAKE_LINES) + "\n", encoding="utf-8")
    process = server_process("--update-interval", "0.3", fake=("--lines", str(lines)), healthy=True)
    browser.open("below", process.url + "/")
    wait_live(browser, "below")
    seen = {}
    deadline = time.monotonic() + 30
    while set(seen) != set(CASES) and time.monotonic() < deadline:
        page, doc = read_matching(browser, "below", process.url)
        name = next(n for n, case in CASES.items() if doc["power"] == parse_line(case[0]).to_dict()["power"])
        if name not in seen:
            assert_page_shows(page, doc)
            seen[name] = page
    assert set(seen) == set(CASES), sorted(seen)
    for name, page in seen.items():
        text = {path: shown for path, _, shown, _ in fields_of(page)}
        below = {rail for rail, power in parse_line(CASES[name][0]).to_dict()["power"].items() if power["current"] < 0}
        assert {rail for rail, marked, _ in page["rails"] if marked} == below, name
        for rail, _, width in page["rails"]:
            assert re.fullmatch(r"\d+(\.\d+)?%", width), (name, rail, width)
            if rail in below:
                assert width == "0%", (name, rail, width)
        assert all(re.fullmatch(r"(\d+(\.\d+)?%)?", bar) for bar in page["bars"]), (name, page["bars"])
        assert "NaN" not in json.dumps(page)
        if name == "orin":
            assert text["power.vdd_cpu_cv.current"] == "-0.40 W"
            assert text["power.total"] == "5.45 W"
        if name == "nano_in":
            assert text["power.total"] == "-0.02 W" and text["temperature.pll"] == "-40.0 \u00b0C"
    page = browser.ok("read", page="below")
    low, high = page["yRanges"]["chart-power"]
    assert low <= -0.398 and high >= 15.472, page["yRanges"]  # vdd_cpu_cv, Thor's input (sum)
    assert_clean_log(browser, "below", process.url)
    browser.ok("close", page="below")


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_server_restart_reconnecting_then_live_again(browser, server_process, signum):
    process = server_process("--simulate", "agx-orin", "--update-interval", str(INTERVAL_S), healthy=True)
    try:
        browser.open("restart", process.url + "/")
        page = wait_live(browser, "restart")
        before = page_timestamp(page)
        process.stop(signum)
        page = browser.ok("wait_state", page="restart", state="reconnecting", timeout=5000)
        assert page["text"].startswith("reconnecting"), page["text"]
        process.start()
        page = browser.ok("wait_state", page="restart", state="live", timeout=12000)
        page = browser.ok("wait_change", page="restart", **{"from": json.dumps(page_timestamp(page))})
        assert page_timestamp(page) > before
        page, doc = read_matching(browser, "restart", process.url)
        assert_page_shows(page, doc)
    finally:
        browser.call("close", page="restart")
        process.stop()


def test_auth_token_from_the_page_url(browser):
    with serving(auth_token=TOKEN) as server:
        browser.open("token", server.url + "/?token=" + TOKEN)
        wait_live(browser, "token")
        page, doc = read_matching(browser, "token", server.url, token=TOKEN)
        assert_page_shows(page, doc)
        # Without the token the page itself loads, but the push connection is refused.
        assert browser.open("no-token", server.url + "/")["status"] == 200
        page = browser.ok("wait_state", page="no-token", state="refused")
        assert "missing or invalid token" in page["text"], page["text"]  # the server's reason
        assert page_timestamp(page) == UNSET, "no document may reach a page without the token"
        for name in ("token", "no-token"):
            browser.ok("close", page=name)


VIEWS = {"desktop": (1280, 800), "phone": (390, 844)}  # CSS pixels


def test_layout_without_horizontal_scroll_in_light_and_dark_and_screenshots(browser, server):
    """Desktop 1280x800 and a phone's 390x844 (touch), in the light scheme and then, switched
    live, in the dark one: nothing sticks out sideways, the dark scheme is dark, and a
    full-page screenshot of each of the four is kept."""
    names = list(VIEWS)
    replies = browser.call_all([("open", {"page": name, "url": server.url + "/", "width": width,
                                          "height": height, "mobile": name == "phone"})
                                for name, (width, height) in VIEWS.items()])
    assert all(reply["ok"] for reply in replies), replies
    pages = [wait_live(browser, name) for name in names]
    for scheme in ("light", "dark"):
        browser.ok_all("media", names, colorScheme=scheme)
        for _ in range(2):  # a few samples in the charts, drawn in this scheme
            pages = [browser.ok("wait_change", page=name, **{"from": json.dumps(page_timestamp(page))})
                     for name, page in zip(names, pages)]
        for name, layout in zip(names, browser.ok_all("layout", names)):
            assert layout["scrollWidth"] <= layout["clientWidth"] == VIEWS[name][0], (name, layout)
            assert layout["overflowing"] == [], (name, layout["overflowing"])
            red, green, blue = [int(c) for c in layout["background"].strip("rgba()").split(",")[:3]]
            assert (red + green + blue < 150) == (scheme == "dark"), (name, scheme, layout["background"])
        for name in names:
            path = os.path.join(ARTIFACTS, "dashboard-%s-%s.png" % (name, scheme))
            browser.ok("screenshot", page=name, path=path, timeout=15000)
            assert os.path.getsize(path) > 20000, path
    assert_clean_log(browser, "phone", server.url)
    browser.ok_all("close", names)


SYSROOTS = os.path.join(TESTS_DIR, "fixtures", "sysroots")


def wait_board(browser: Browser, page: str, timeout_s: float = 10.0) -> Dict[str, Any]:
    """The page once it has shown /api/board (its header line has a value)."""
    deadline = time.monotonic() + timeout_s
    while True:
        board = browser.ok("read", page=page)["board"]
        if board["value"] is not None or time.monotonic() > deadline:
            return board
        time.sleep(0.05)


def test_the_header_names_the_board_its_jetpack_power_mode_and_fan(browser, tmp_path):
    """A replayed Orin Nano with the fake JetPack 6 root, a simulated Thor and a board with
    none of the files: the header says what /api/board says, and no more."""
    from tegrastats_api.plan import load_board

    replay = tmp_path / "orin-nano.txt"
    replay.write_text("\n".join(load_board("orin-nano")) + "\n", encoding="utf-8")
    cases = [
        (dict(simulate=None, replay=str(replay), sysroot=os.path.join(SYSROOTS, "jp6-orin-nano")),
         "NVIDIA Jetson Orin Nano Engineering Reference Developer Kit Super",
         "JetPack 6.2 (L4T 36.4.3) \u00b7 power mode MAXN_SUPER \u00b7 fan 42 %, 2100 rpm"),
        (dict(simulate="thor", sysroot=os.path.join(SYSROOTS, "jp6-orin-nano")),
         "NVIDIA Jetson AGX Thor 128GB", "JetPack 7.1 (L4T 38.4.0)"),
        (dict(simulate=None, replay=str(replay), sysroot=str(tmp_path / "no-such-root")), "Jetson", None),
    ]
    for index, (fields, model, line) in enumerate(cases):
        with serving(**fields) as server:
            browser.open("board", server.url + "/", reuse=index > 0)
            wait_live(browser, "board")
            board = wait_board(browser, "board")
            assert board["value"] is not None, "the page never showed /api/board"
            assert (board["model"], board["line"]) == (model, line), board
            assert board["title"] == model + " \u00b7 tegrastats-api"
            if index == 0:
                browser.ok("screenshot", page="board", path=os.path.join(ARTIFACTS, "dashboard-board.png"),
                           fullPage=False)
            assert_clean_log(browser, "board", server.url)
    browser.ok("close", page="board")
