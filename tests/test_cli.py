"""The command line, layered settings and the Python library, as a user meets them.

Settings are checked for every subcommand with the flag before and after it; commands
that talk to a server run as real processes against a real server on 127.0.0.1.
"""
from __future__ import annotations

import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tegrastats_api import Config, TegrastatsServer, __version__
from tegrastats_api.cli import main
from tegrastats_api.config import COMMANDS, SETTINGS, ConfigError, load

TESTS = Path(__file__).resolve().parent
FAKE = str(TESTS / "fake_tegrastats.py")
CLI = [sys.executable, "-m", "tegrastats_api"]


def _env(**extra: str) -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TEGRASTATS_API_")}
    env.update(extra)
    return env


def _cli(*args: str, env: dict = None, timeout: float = 30) -> subprocess.CompletedProcess:
    return subprocess.run(CLI + list(args), env=_env(**(env or {})), capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def conf_file(tmp_path):
    path = tmp_path / "tegrastats-api.conf"
    path.write_text("[tegrastats-api]\n# comment\nport = 7001\nmax_connections = 4\nlog-level = warning\n")
    return str(path)


# --- precedence: flag > env > file > default, with every subcommand, both sides --------


def _argv(command, flags, side):
    return list(flags) + [command] if side == "before" else [command] + list(flags)


@pytest.mark.parametrize("side", ["before", "after"])
@pytest.mark.parametrize("command", COMMANDS)
def test_default_when_nothing_set(command, side):
    loaded = load(_argv(command, [], side), {})
    assert loaded.command == command
    assert (loaded.config.port, loaded.config.host, loaded.config.max_connections) == (58090, "0.0.0.0", 10)
    assert loaded.sources["port"] == "default"


@pytest.mark.parametrize("side", ["before", "after"])
@pytest.mark.parametrize("command", COMMANDS)
def test_env_beats_default(command, side):
    loaded = load(_argv(command, [], side), {"TEGRASTATS_API_PORT": "9001", "TEGRASTATS_API_DEBUG": "true"})
    assert loaded.config.port == 9001 and loaded.config.debug is True
    assert loaded.sources["port"] == "env TEGRASTATS_API_PORT"


@pytest.mark.parametrize("side", ["before", "after"])
@pytest.mark.parametrize("command", COMMANDS)
def test_file_beats_default_and_env_beats_file(command, side, conf_file):
    loaded = load(_argv(command, ["--config", conf_file], side), {})
    assert (loaded.config.port, loaded.config.max_connections, loaded.config.log_level) == (7001, 4, "WARNING")
    assert loaded.sources["port"] == "file " + conf_file
    loaded = load(_argv(command, ["--config", conf_file], side), {"TEGRASTATS_API_PORT": "9002"})
    assert loaded.config.port == 9002 and loaded.config.max_connections == 4
    assert loaded.sources["port"] == "env TEGRASTATS_API_PORT"


@pytest.mark.parametrize("side", ["before", "after"])
@pytest.mark.parametrize("command", COMMANDS)
def test_flag_beats_env_and_file(command, side, conf_file):
    env = {"TEGRASTATS_API_PORT": "9003", "TEGRASTATS_API_CONFIG": conf_file}
    loaded = load(_argv(command, ["--port", "8080", "--max-connections=2"], side), env)
    assert (loaded.config.port, loaded.config.max_connections) == (8080, 2)
    assert loaded.sources["port"] == "flag" and loaded.sources["config"] == "env TEGRASTATS_API_CONFIG"


def test_config_file_from_env_var_and_flags_on_both_sides(conf_file):
    loaded = load(["--host", "127.0.0.1", "run", "--port", "8081"], {"TEGRASTATS_API_CONFIG": conf_file})
    assert (loaded.config.host, loaded.config.port, loaded.config.max_connections) == ("127.0.0.1", 8081, 4)


@pytest.mark.parametrize("value,board", [("1", "agx-orin"), ("true", "agx-orin"), ("nano", "nano"), ("0", None)])
def test_simulate_env_values(value, board):
    assert load(["run"], {"TEGRASTATS_API_SIMULATE": value}).config.simulate == board


def test_simulate_flag_without_board_before_the_command():
    assert load(["--simulate", "run"], {}).config.simulate == "agx-orin"
    assert load(["run", "--simulate", "thor"], {}).config.simulate == "thor"


# --- tegrastats-api config --------------------------------------------------------------


def test_config_command_names_every_setting_and_its_source(conf_file):
    out = io.StringIO()
    env = {"TEGRASTATS_API_AUTH_TOKEN": "s3cret", "TEGRASTATS_API_DEBUG": "yes", "TEGRASTATS_API_PORT": "9100"}
    assert main(["--config", conf_file, "config", "--host", "127.0.0.1"], env, out) == 0
    lines = out.getvalue().splitlines()
    assert [line.split(" = ")[0] for line in lines] == [s.name for s in SETTINGS]
    assert "host = 127.0.0.1  (flag)" in lines
    assert "port = 9100  (env TEGRASTATS_API_PORT)" in lines
    assert "max_connections = 4  (file %s)" % conf_file in lines
    assert "debug = true  (env TEGRASTATS_API_DEBUG)" in lines
    assert "auth_token = ***  (env TEGRASTATS_API_AUTH_TOKEN)" in lines
    assert "update_interval = 1.0  (default)" in lines
    assert "config = %s  (flag)" % conf_file in lines
    assert "s3cret" not in out.getvalue()


def test_config_command_as_a_process_on_both_sides():
    for args in (["--port", "8088", "config"], ["config", "--port", "8088"]):
        result = _cli(*args)
        assert result.returncode == 0, result.stderr
        assert "port = 8088  (flag)" in result.stdout.splitlines()


# --- bad settings: one line, exit 2, never a traceback ----------------------------------

BAD = [
    (["run", "--port", "99999"], {}, "--port"),
    (["run", "--port", "abc"], {}, "--port"),
    (["run", "--update-interval", "0"], {}, "--update-interval"),
    (["run", "--log-level", "chatty"], {}, "--log-level"),
    (["run", "--max-connections", "0"], {}, "--max-connections"),
    (["run", "--config", "/nonexistent/tegrastats-api.conf"], {}, "--config"),
    (["run", "--replay", "/nonexistent/lines.txt"], {}, "--replay"),
    (["run", "--simulate", "gameboy"], {}, "--simulate"),
    (["run"], {"TEGRASTATS_API_PORT": "-1"}, "TEGRASTATS_API_PORT: -1 is not a TCP port"),
    (["run"], {"TEGRASTATS_API_DEBUG": "perhaps"}, "TEGRASTATS_API_DEBUG"),
    (["run", "--no-such-flag"], {}, "--no-such-flag"),
    (["frobnicate"], {}, "command"),
]


@pytest.mark.parametrize("args,env,named", BAD, ids=[" ".join(a) + str(e) for a, e, _ in BAD])
def test_bad_setting_is_one_clear_line(args, env, named):
    result = _cli(*args, env=env)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("tegrastats-api: error: ") and named in lines[0]
    assert "Traceback" not in result.stderr


def test_unreadable_and_unknown_config_files(tmp_path):
    directory = tmp_path / "a-directory.conf"
    directory.mkdir()
    binary = tmp_path / "binary.conf"
    binary.write_bytes(b"port = \xff\xfe\n")
    unknown = tmp_path / "unknown.conf"
    unknown.write_text("prot = 8080\n")
    for path, words in ((directory, "cannot read"), (binary, "cannot read"), (unknown, "unknown setting 'prot'")):
        result = _cli("run", "--config", str(path))
        assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
        assert "--config" in result.stderr and words in result.stderr


def test_port_in_use_names_the_port():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        port = busy.getsockname()[1]
        result = _cli("run", "--host", "127.0.0.1", "--port", str(port), "--simulate")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if "error" in line]
    assert len(errors) == 1 and str(port) in errors[0] and "--port" in errors[0]
    assert "Traceback" not in result.stderr


def test_tegrastats_missing_on_a_jetson_exits_3(monkeypatch):
    import tegrastats_api.app as app
    from tegrastats_api.source import TegrastatsNotFoundError

    def no_tegrastats(**_kw):
        raise TegrastatsNotFoundError("/usr/bin/tegrastats")

    monkeypatch.setattr(app, "plan_source", no_tegrastats)
    err = io.StringIO()
    assert main(["run", "--host", "127.0.0.1", "--port", "0"], {}, io.StringIO(), err) == 3
    assert err.getvalue().count("\n") == 1 and "tegrastats" in err.getvalue()


def test_no_tegrastats_off_jetson_falls_back_to_the_simulator_loudly(tmp_path):
    """Only when --tegrastats is left alone: a tegrastats named explicitly is never replaced
    (test_cli_usage.py). The empty TEGRASTATS_API_SYSROOT makes this machine no Jetson."""
    port = _free_port()
    proc = subprocess.Popen(CLI + ["run", "--host", "127.0.0.1", "--port", str(port), "--update-interval", "0.05"],
                            env=_env(PATH=str(tmp_path), TEGRASTATS_API_SYSROOT=str(tmp_path)),
                            stderr=subprocess.PIPE, text=True)
    try:
        health = _wait_json("http://127.0.0.1:%d/api/health" % port)
        assert health["source"] == "simulator"
    finally:
        proc.send_signal(signal.SIGINT)
        _, stderr = proc.communicate(timeout=15)
    assert proc.returncode == 0
    assert "WARNING" in stderr and "simulat" in stderr.lower()


def _wait_json(url: str, timeout: float = 10.0, headers: dict = None) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=2) as r:
                return json.load(r)
        except OSError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# --- help and version ------------------------------------------------------------------


def test_version_and_help():
    assert _cli("--version").stdout.strip() == "tegrastats-api " + __version__
    overview = _cli("--help")
    assert overview.returncode == 0 and all(c in overview.stdout for c in COMMANDS)
    for command in COMMANDS:
        result = _cli(command, "--help")
        assert result.returncode == 0
        assert "examples:" in result.stdout and "TEGRASTATS_API_PORT" in result.stdout
    assert "--duration" in _cli("monitor", "--help").stdout
    bare = _cli()
    assert bare.returncode == 2 and "commands:" in bare.stderr


def test_console_script_is_the_same_as_python_m():
    script = Path(sys.executable).parent / "tegrastats-api"
    if not script.exists():
        pytest.skip("the console script is not installed in this environment")
    result = subprocess.run([str(script), "--port", "8089", "config"], env=_env(), capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0 and result.stdout == _cli("--port", "8089", "config").stdout


# --- test and monitor against a live server ----------------------------------------------


@pytest.fixture
def live_server():
    config = Config(host="127.0.0.1", port=0, simulate="orin-nano", update_interval=0.05, auth_token="tok3n")
    with TegrastatsServer(config) as server:
        _wait_json(server.url + "/api/status?token=tok3n")
        yield server


def test_test_command_passes_against_a_live_server(live_server):
    result = _cli("test", "--port", str(live_server.port), "--host", "127.0.0.1",
                  env={"TEGRASTATS_API_AUTH_TOKEN": "tok3n"})
    assert result.returncode == 0, result.stdout + result.stderr
    rows = result.stdout.splitlines()
    for check in ("health", "status", "cpu", "memory", "temperature", "power", "summary", "history", "board", "metrics",
                  "openapi", "dashboard", "websocket", "socket.io"):
        row = next(r for r in rows if r.startswith(check + " "))
        assert " PASS " in row and " ms " in row
    assert rows[-1] == "14 passed, 0 failed"


def test_test_command_reports_a_wrong_token(live_server):
    result = _cli("test", "--port", str(live_server.port), "--host", "127.0.0.1", "--auth-token", "wrong")
    assert result.returncode == 1
    rows = result.stdout.splitlines()
    assert next(r for r in rows if r.startswith("health ")).split()[1] == "PASS"  # health is open
    status = next(r for r in rows if r.startswith("status "))
    assert "FAIL" in status and "401" in status
    sio = next(r for r in rows if r.startswith("socket.io "))  # the server's reason, on every stack
    assert " FAIL " in sio and "missing or invalid token" in sio, sio


def test_test_command_reports_a_closed_port():
    result = _cli("test", "--host", "127.0.0.1", "--port", str(_free_port()))
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stdout.count("connection refused") == 14 and result.stdout.splitlines()[-1] == "0 passed, 14 failed"


def test_monitor_prints_json_lines_and_ends_after_duration(live_server):
    start = time.monotonic()
    result = _cli("monitor", "--host", "127.0.0.1", "--port", str(live_server.port), "--duration", "2",
                  env={"TEGRASTATS_API_AUTH_TOKEN": "tok3n"})
    assert result.returncode == 0, result.stderr
    assert 1.5 < time.monotonic() - start < 20
    documents = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(documents) >= 5
    assert all(d["schema"] == 1 and d["source"] == "simulator" for d in documents)
    stamps = [d["timestamp"] for d in documents]
    assert stamps == sorted(stamps) and len(set(stamps)) == len(stamps)


def test_monitor_against_a_closed_port_is_one_line():
    result = _cli("monitor", "--host", "127.0.0.1", "--port", str(_free_port()), "--duration", "1")
    assert result.returncode == 1 and result.stderr.count("\n") == 1 and "cannot connect" in result.stderr


def test_monitor_screen_fits_80_columns():
    from tegrastats_api import parse_line
    from tegrastats_api.console import format_snapshot

    rows = (TESTS / "fixtures" / "tegrastats" / "samples.tsv").read_text().splitlines()[1:]
    for row in rows:
        screen = format_snapshot(parse_line(row.split("\t")[-1], 0.0, source="tegrastats").to_dict(), 80)
        assert all(len(line) <= 80 for line in screen.splitlines())
        assert "CPU" in screen and "RAM" in screen


# --- the library -----------------------------------------------------------------------


def test_context_manager_serves_then_releases_its_port():
    config = Config(host="127.0.0.1", port=_free_port(), simulate="nano", update_interval=0.05)
    with TegrastatsServer(config) as server:
        assert server.url == "http://127.0.0.1:%d" % config.port
        assert _wait_json(server.url + "/api/status")["memory"]["ram"]["total"] in (3956, 3964, 3965)
    with socket.socket() as again:
        # SO_REUSEADDR tolerates TIME_WAIT connections, but Linux still refuses the bind
        # while another socket listens on the port: so this fails if the server held it.
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", config.port))


def test_two_servers_on_port_0_in_one_process_do_not_interfere():
    a = TegrastatsServer(Config(host="127.0.0.1", port=0, simulate="nano", update_interval=0.05)).start()
    b = TegrastatsServer(Config(host="127.0.0.1", port=0, simulate="thor", update_interval=0.05)).start()
    try:
        assert a.port != b.port and a.port and b.port
        assert _wait_json(a.url + "/api/status")["memory"]["ram"]["total"] in (3956, 3964, 3965)
        assert _wait_json(b.url + "/api/status")["memory"]["ram"]["total"] > 100000
        a.stop()
        assert _wait_json(b.url + "/api/health")["status"] == "healthy"
    finally:
        a.stop()
        b.stop()


def test_config_takes_every_setting_as_a_keyword_and_validates():
    names = [s.name for s in SETTINGS]
    config = Config(**{n: getattr(Config(), n) for n in names})
    assert config == Config()
    assert Config(cors_origins="http://a, http://b/").cors_origins == ("http://a", "http://b")
    assert Config(simulate="true").simulate == "agx-orin"
    assert Config(update_interval=0.25).interval_ms == 250
    for bad in ({"port": 70000}, {"update_interval": 0}, {"log_level": "LOUD"}, {"max_connections": 0}):
        with pytest.raises(ConfigError):
            Config(**bad)


def test_config_from_env():
    config = Config.from_env({"TEGRASTATS_API_PORT": "8123", "TEGRASTATS_API_SIMULATE": "thor",
                              "TEGRASTATS_API_CORS_ORIGINS": "http://x"})
    assert (config.port, config.simulate, config.cors_origins) == (8123, "thor", ("http://x",))


def test_library_start_failure_leaves_nothing_running():
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen(1)
        server = TegrastatsServer(Config(host="127.0.0.1", port=busy.getsockname()[1], simulate="nano"))
        with pytest.raises(OSError) as err:
            server.start()
        assert str(busy.getsockname()[1]) in str(err.value)
    assert server.port is None


def _children(pid: int) -> list:
    kids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            kids.append(int(stat.parent.name))
    return kids


def _alive(pid: int) -> bool:
    try:
        state = Path("/proc/%d/stat" % pid).read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_sigterm_stops_run_with_exit_0_and_no_child_left():
    port = _free_port()
    proc = subprocess.Popen(CLI + ["run", "--host", "127.0.0.1", "--port", str(port), "--update-interval", "0.05",
                                   "--tegrastats", FAKE], env=_env(), stderr=subprocess.PIPE, text=True)
    try:
        assert _wait_json("http://127.0.0.1:%d/api/status" % port)["source"] == "tegrastats"
        children = _children(proc.pid)
        assert children, "the server should have a tegrastats child"
    finally:
        proc.send_signal(signal.SIGTERM)
        _, stderr = proc.communicate(timeout=20)
    assert proc.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert not [pid for pid in children if _alive(pid)]


@pytest.mark.parametrize("host", ["999.1.1.1", "bad..host", "1.2.3.4.5", "exa mple", "é.local", "-x.local", "a" * 64])
@pytest.mark.parametrize("where", ["flag", "env"])
def test_a_bad_host_is_one_line_naming_it_and_exit_2(host, where):
    """Checked with the settings, before any warning or bind: never a traceback from the resolver."""
    if where == "flag":
        result = _cli("run", "--simulate", "--port", "0", "--host=" + host)
    else:
        result = _cli("run", "--simulate", "--port", "0", env={"TEGRASTATS_API_HOST": host})
    assert result.returncode == 2, result.stderr
    named = "--host" if where == "flag" else "TEGRASTATS_API_HOST"
    expected = "tegrastats-api: error: %s: %r is not an IP address or host name" % (named, host)
    assert result.stderr.splitlines() == [expected]


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1", "0.0.0.0", "jetson-01.local", "fe80::1%lo"])
def test_good_hosts_pass_the_check(host):
    result = _cli("config", "--host", host)
    assert result.returncode == 0, result.stderr
