"""What a new user meets in the first minutes, as real ``python -m tegrastats_api`` children.

A mistyped command is named with the closest one; a bad setting is one line naming it
the way the user gave it (flag, environment variable, or key of the config file), exit
status 2, before any warning or bind; ``config`` refuses what ``run`` refuses; a
tegrastats named explicitly is never replaced by the simulator; ``test`` and ``monitor``
list only what they use; ``test`` probes every endpoint; the start-up line names the
addresses a user can open. ``TEGRASTATS_API_SYSROOT`` makes this machine a Jetson or not.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from typing import List

import pytest

from conftest import require_tool
from fault_tools import terminate

CLI = [sys.executable, "-m", "tegrastats_api"]
WAIT_S = 20.0
NOT_LOCAL = "203.0.113.1"  # TEST-NET-3: an address this machine does not have (checked below)


def _env(tmp_path, jetson: bool = False, **extra: str) -> dict:
    """A clean environment: no TEGRASTATS_API_* of the caller's, no tegrastats on PATH, and
    a system root under ``tmp_path`` with or without /etc/nv_tegra_release."""
    root = tmp_path / ("jetson-root" if jetson else "plain-root")
    (root / "etc").mkdir(parents=True, exist_ok=True)
    if jetson:
        (root / "etc" / "nv_tegra_release").write_text("# R36 (release), REVISION: 4.3\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
    env.update(PATH=str(root), TEGRASTATS_API_SYSROOT=str(root))
    env.update(extra)
    return env


def _cli(tmp_path, *args: str, jetson: bool = False, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + ["--config", os.devnull] * ("TEGRASTATS_API_CONFIG" not in env) + list(args),
                          env=_env(tmp_path, jetson, **env), capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


def _one_error(result: subprocess.CompletedProcess, status: int = 2) -> str:
    """The single stderr line of a refused start (nothing else printed), without its prefix."""
    lines = result.stderr.splitlines()
    assert result.returncode == status and len(lines) == 1, (result.returncode, result.stderr)
    assert lines[0].startswith("tegrastats-api: error: ") and not result.stdout, result.stderr + result.stdout
    return lines[0][len("tegrastats-api: error: "):]


# --- commands ------------------------------------------------------------------------------


@pytest.mark.parametrize("argv, typed, meant", [
    (["runn"], "runn", "run"),
    (["tset"], "tset", "test"),
    (["monitr", "--duration", "1"], "monitr", "monitor"),
    (["--port", "8080", "conifg"], "conifg", "config"),
    (["--simulate", "runn"], "runn", "run"),  # not taken for a board name
])
def test_a_mistyped_command_is_named_with_the_closest_one(tmp_path, argv, typed, meant):
    error = _one_error(_cli(tmp_path, *argv))
    assert error.startswith("unknown command %r: did you mean %r?" % (typed, meant)), error


def test_an_unknown_command_lists_them_and_no_command_says_so(tmp_path):
    error = _one_error(_cli(tmp_path, "frobnicate"))
    assert error == "unknown command 'frobnicate': choose one of run, test, monitor, config"
    error = _one_error(_cli(tmp_path, "--port", "8080", "--simulate", "thor"))
    assert error == "no command given: choose one of run, test, monitor, config"


@pytest.mark.parametrize("argv, named", [
    (["config", "--prot", "8080"], "unknown option --prot: did you mean --port?"),
    (["config", "--po", "8080"], "unknown option --po: did you mean --port?"),  # no silent abbreviations
    (["config", "--max-conections=3"], "unknown option --max-conections: did you mean --max-connections?"),
    (["config", "extra"], "unexpected argument 'extra'"),
])
def test_an_unknown_option_is_named_with_the_closest_one(tmp_path, argv, named):
    assert _one_error(_cli(tmp_path, *argv)) == named


# --- every bad setting: one line naming it where it was given, exit 2, nothing started ------

# (setting, bad value, what the message says after the name)
BAD_VALUES = [
    ("port", "abc", "'abc' is not a whole number"),
    ("port", "99999", "99999 is not a TCP port (0-65535)"),
    ("max_connections", "ten", "'ten' is not a whole number"),
    ("max_connections", "0", "0 must be at least 1"),
    ("update_interval", "fast", "'fast' is not a number"),
    ("update_interval", "0", "0.0 must be between 0.01 and 3600 seconds"),
    ("history_size", "-5", "-5 must be at least 1"),
    ("log_level", "chatty", "'CHATTY' is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL"),
    ("debug", "maybe", "'maybe' is not true or false"),
    ("host", "999.1.1.1", "'999.1.1.1' is not an IP address or host name"),
    ("simulate", "orin-nanoo", "unknown board 'orin-nanoo' (did you mean 'orin-nano'?)"),
    ("replay", "/nonexistent/lines.txt", "cannot use /nonexistent/lines.txt: No such file or directory"),
    ("tegrastats", "/nonexistent/tegrastats", "/nonexistent/tegrastats does not exist"),
]


FILE_SETTINGS = ["simulate", "replay", "tegrastats"]  # checked on disk: what `config` used to let through


def _given(tmp_path, where: str, name: str, value: str):
    """``(argv, env, label)``: ``name = value`` given as a flag, an env var or a file key."""
    flag, env = "--" + name.replace("_", "-"), "TEGRASTATS_API_" + name.upper()
    if where == "flag":
        return [flag + "=" + value], {}, flag
    if where == "env":
        return [], {env: value}, env
    conf = tmp_path / "settings.conf"
    base = "" if name == "port" else "port = 0\n"
    conf.write_text("[tegrastats-api]\n%s%s = %s\n" % (base, name, value))
    return [], {"TEGRASTATS_API_CONFIG": str(conf)}, "%s in config file %s" % (name, conf)


@pytest.mark.parametrize("where", ["flag", "env", "file"])
@pytest.mark.parametrize("name, value, problem", BAD_VALUES, ids=["%s=%s" % (n, v) for n, v, _ in BAD_VALUES])
def test_run_names_a_bad_setting_where_it_was_given(tmp_path, where, name, value, problem):
    argv, env, label = _given(tmp_path, where, name, value)
    others = [] if name in ("host", "port") else ["--host", "127.0.0.1", "--port", "0"]
    error = _one_error(_cli(tmp_path, "run", *others, *argv, **env))
    assert error.startswith("%s: %s" % (label, problem)), error


@pytest.mark.parametrize("where", ["env", "file"])
@pytest.mark.parametrize("command", ["test", "monitor"])
def test_client_commands_name_a_bad_setting_where_it_was_given(tmp_path, command, where):
    argv, env, label = _given(tmp_path, where, "port", "abc")
    assert _one_error(_cli(tmp_path, command, *argv, **env)) == "%s: 'abc' is not a whole number" % label


@pytest.mark.parametrize("where", ["flag", "env", "file"])
@pytest.mark.parametrize("name, value, problem", [b for b in BAD_VALUES if b[0] in FILE_SETTINGS], ids=FILE_SETTINGS)
def test_config_refuses_what_run_refuses(tmp_path, where, name, value, problem):
    argv, env, label = _given(tmp_path, where, name, value)
    error = _one_error(_cli(tmp_path, "config", *argv, **env))
    assert error.startswith("%s: %s" % (label, problem)), error


def test_config_still_prints_good_settings(tmp_path):
    result = _cli(tmp_path, "config", "--simulate", "orin-nano", TEGRASTATS_API_PORT="8080")
    assert result.returncode == 0, result.stderr
    assert "simulate = orin-nano  (flag)" in result.stdout and "port = 8080  (env TEGRASTATS_API_PORT)" in result.stdout


def test_an_empty_debug_variable_is_unset(tmp_path):
    result = _cli(tmp_path, "config", TEGRASTATS_API_DEBUG="")
    assert result.returncode == 0 and "debug = false  (default)" in result.stdout, result.stderr


def _not_local(address: str) -> str:
    try:
        with socket.socket() as probe:
            probe.bind((address, 0))
    except OSError:
        return address
    pytest.skip("%s is an address of this machine" % address)


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_host_this_machine_lacks_is_named_before_any_warning(tmp_path, where):
    """No tegrastats and no Jetson: a good start would warn of simulated data. A host that
    cannot be bound must end the start first: one line naming it (not --port). Exit 1, like a
    port in use: the address may come up later (an interface late at boot; systemd retries)."""
    host = _not_local(NOT_LOCAL)
    argv, env, label = _given(tmp_path, where, "host", host)
    error = _one_error(_cli(tmp_path, "run", "--port", "0", *argv, **env), status=1)
    assert error.startswith("%s: cannot listen on %s:0: " % (label, host)), error


@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_port_in_use_is_named_before_any_warning(tmp_path, where):
    """A busy port is a runtime failure (exit 1: it may be free again soon), named as given."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        argv, env, label = _given(tmp_path, where, "port", str(port))
        error = _one_error(_cli(tmp_path, "run", "--host", "127.0.0.1", *argv, **env), status=1)
    assert error.startswith("%s: cannot listen on 127.0.0.1:%d: " % (label, port)), error


# --- a tegrastats named explicitly ----------------------------------------------------------


def _tegrastats_paths(tmp_path):
    not_executable = tmp_path / "not-executable"
    not_executable.write_text("#!/bin/sh\n")
    not_executable.chmod(0o644)
    return [("/nonexistent/tegrastats", "/nonexistent/tegrastats does not exist"),
            (str(tmp_path), "%s is a directory" % tmp_path),
            (str(not_executable), "%s is not executable" % not_executable),
            ("tegrastats-nope", "'tegrastats-nope' is not on PATH")]


@pytest.mark.parametrize("where", ["flag", "env", "file"])
def test_a_missing_tegrastats_named_off_a_jetson_is_a_bad_setting(tmp_path, where):
    for path, problem in _tegrastats_paths(tmp_path):
        argv, env, label = _given(tmp_path, where, "tegrastats", path)
        error = _one_error(_cli(tmp_path, "run", "--host", "127.0.0.1", "--port", "0", *argv, **env))
        assert error.startswith("%s: %s (" % (label, problem)), error
        assert "simulated" in error  # says how to get simulated data on purpose


@pytest.mark.parametrize("named", [True, False])
def test_a_missing_tegrastats_on_a_jetson_exits_3(tmp_path, named):
    argv = ["--tegrastats", "/nonexistent/tegrastats"] if named else []
    error = _one_error(_cli(tmp_path, "run", "--host", "127.0.0.1", "--port", "0", *argv, jetson=True), status=3)
    assert "tegrastats not found" in error and error.startswith("--tegrastats: ") is named, error


# --- help -----------------------------------------------------------------------------------

SERVER_ONLY = ["--debug", "--log-level", "--max-connections", "--tegrastats", "--simulate", "--replay",
               "--cors-origins", "--history-size"]


@pytest.mark.parametrize("command, uses", [
    ("test", ["--host", "--port", "--auth-token", "--update-interval", "--config"]),
    ("monitor", ["--host", "--port", "--auth-token", "--config", "--duration"]),
])
def test_client_commands_list_only_what_they_use(tmp_path, command, uses):
    result = _cli(tmp_path, command, "--help")
    assert result.returncode == 0, result.stderr
    text = result.stdout
    assert all(re.search(r"^\s+%s\b" % flag, text, re.M) for flag in uses), text
    assert not [flag for flag in SERVER_ONLY if flag in text], text
    options = re.split(r"^(?:options|optional arguments):$", text, flags=re.M)[1]  # Python 3.10 renamed it
    assert "listen" not in options and "the server's address" in options
    # server settings stay accepted: one config file or environment serves every command
    assert _cli(tmp_path, command, "--simulate", "thor", "--port", "1", "--help").returncode == 0


@pytest.mark.parametrize("command", ["run", "test", "monitor", "config"])
def test_help_states_the_precedence_once_and_right(tmp_path, command):
    text = _cli(tmp_path, command, "--help").stdout
    assert "flag > env var > config file > default" in text
    assert "In general" not in text and "override" not in text  # configargparse's own line left out
    if command in ("run", "config"):
        assert not [flag for flag in SERVER_ONLY if flag not in text]
        assert "address to listen on" in text and "TEGRASTATS_API_MAX_CONNECTIONS" in text


# --- `test` probes every endpoint -----------------------------------------------------------

ENDPOINTS = ["/api/health", "/api/status", "/api/cpu", "/api/memory", "/api/temperature", "/api/power",
             "/api/summary", "/api/history", "/api/board", "/metrics", "/api/openapi.json", "/"]


class _Paths(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.paths: List[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        # tokens.log_request: "%d %s %s (%s) %.2fms" % (status, method, uri, ...)
        self.paths.append(str(record.args[2]).split("?")[0])  # type: ignore[index]


def test_the_test_command_requests_every_endpoint(tmp_path):
    from tegrastats_api import Config, TegrastatsServer

    access = logging.getLogger("tornado.access")
    seen, level = _Paths(), access.level
    access.addHandler(seen)
    access.setLevel(logging.INFO)
    try:
        with TegrastatsServer(Config(host="127.0.0.1", port=0, simulate="nano", update_interval=0.05)) as server:
            result = _cli(tmp_path, "test", "--host", "127.0.0.1", "--port", str(server.port))
    finally:
        access.removeHandler(seen)
        access.setLevel(level)
    assert result.returncode == 0, result.stdout + result.stderr
    assert not [path for path in ENDPOINTS if path not in seen.paths], seen.paths
    rows = {row.split()[0]: row for row in result.stdout.splitlines()[1:-1]}
    for name in ("summary", "history", "board", "metrics", "openapi", "dashboard"):
        assert " PASS " in rows[name], result.stdout
    assert result.stdout.splitlines()[-1] == "14 passed, 0 failed"


# --- the start-up line ----------------------------------------------------------------------

SERVING_RE = re.compile(r"serving on (.+?) \(source: (\w+)[^;]*; listening on (.+)\)$")


def _serving_line(argv: List[str], env: dict, prefix: List[str] = ()) -> re.Match:
    """Start ``run`` (under ``prefix``, e.g. ``unshare -n``), return its parsed start-up
    line and stop it with SIGTERM (exit status 0)."""
    proc = subprocess.Popen(list(prefix) + CLI + ["--config", os.devnull, "run", "--port", "0", "--simulate"] + argv,
                            env=env, stderr=subprocess.PIPE, text=True, stdin=subprocess.DEVNULL)
    lines: List[str] = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    deadline = time.monotonic() + WAIT_S
    match = None
    try:
        while match is None and time.monotonic() < deadline and proc.poll() is None:
            match = next(filter(None, (SERVING_RE.search(line.strip()) for line in list(lines))), None)
            time.sleep(0.05)
    finally:
        terminate(proc, WAIT_S)
        reader.join(WAIT_S)
    assert match is not None, "no start-up line: " + "".join(lines)
    assert proc.returncode == 0, "".join(lines)
    return match


def _urls(match: re.Match) -> List[str]:
    port = match.group(3).split(":")[-1]
    urls = match.group(1).split(" and ")
    assert all(url.startswith("http://") and url.endswith(":" + port) for url in urls), urls
    return [url[len("http://"):-len(":" + port)] for url in urls]


def _machine_ipv4() -> List[str]:
    require_tool(shutil.which("ip"), "ip (iproute2)")
    out = subprocess.run(["ip", "-4", "-o", "addr", "show"], capture_output=True, text=True, timeout=10).stdout
    found = re.findall(r"\binet (\d+\.\d+\.\d+\.\d+)/", out)
    return [a for a in found if not ipaddress.ip_address(a).is_loopback]


def test_listening_on_one_address_prints_only_it(tmp_path):
    assert _urls(_serving_line(["--host", "127.0.0.1"], _env(tmp_path))) == ["127.0.0.1"]


def test_listening_on_every_address_prints_this_machines_addresses(tmp_path):
    hosts = _urls(_serving_line(["--host", "0.0.0.0"], _env(tmp_path)))
    assert hosts[0] == "127.0.0.1"
    assert sorted(hosts[1:]) == sorted(set(_machine_ipv4())), hosts


NETNS_SETUP = ("$IP link set lo up && $IP addr add 198.51.100.7/24 dev lo && "
               "$IP addr add 203.0.113.9/24 dev lo label lo:9 && $IP -6 addr add 2001:db8::7/64 dev lo nodad && "
               'exec "$@"')


@pytest.mark.parametrize("host, expected", [
    ("0.0.0.0", ["127.0.0.1", "198.51.100.7", "203.0.113.9"]),
    ("::", ["[::1]", "127.0.0.1", "198.51.100.7", "203.0.113.9", "[2001:db8::7]"]),
])
def test_every_interface_address_is_printed_in_a_network_namespace(tmp_path, host, expected):
    """A private network namespace of known addresses (a second one on the same interface
    too): nothing is sent to them, the line is only read."""
    unshare, ip, sh = shutil.which("unshare"), shutil.which("ip"), shutil.which("sh")
    require_tool(unshare and ip and sh, "unshare and ip (util-linux, iproute2)")
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        pytest.skip("cannot make a network namespace here: %s" % probe.stderr.decode(errors="replace").strip())
    prefix = [unshare, "-n", sh, "-c", NETNS_SETUP, "sh"]
    assert _urls(_serving_line(["--host", host], _env(tmp_path, IP=ip), prefix)) == expected
