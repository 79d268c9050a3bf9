"""Packaging: the unit, the shipped settings files, MANIFEST, the wheel and sdist, and
packaging/install.sh and uninstall.sh into a scratch root.

The static checks are cheap. The wheel is built once per module and installed into a
fresh virtual environment outside the checkout, where it must serve the dashboard and
``/api/status`` with ``--simulate``; install.sh reuses it. The .deb is tests/test_deb.py.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import time
import urllib.error
import urllib.request
import zipfile
from pathlib import Path
from typing import Dict, List, Optional, Tuple

import pytest
from conftest import require_tool

from tegrastats_api import __version__
from tegrastats_api.cli import ExitStatus
from tegrastats_api.config import SETTINGS, Config, load

REPO = Path(__file__).resolve().parent.parent
PACKAGING = REPO / "packaging"
UNIT = PACKAGING / "tegrastats-api.service"
CONF = PACKAGING / "tegrastats-api.conf"
DEFAULTS = PACKAGING / "tegrastats-api.default"
DEBIAN = PACKAGING / "debian"
SCRIPTS = [PACKAGING / "install.sh", PACKAGING / "uninstall.sh", PACKAGING / "build-deb.sh",
           DEBIAN / "manpage-help", DEBIAN / "postrm", DEBIAN / "rules"]
FILE_SETTINGS = [s for s in SETTINGS if s.name != "config"]  # `config` is not a file key
DEFAULTS_OF = {name: f.default for name, f in Config.__dataclass_fields__.items()}


def parse_unit(text: str) -> Dict[str, Dict[str, List[str]]]:
    """``{section: {key: [values]}}`` of a systemd unit (comments and blank lines skipped)."""
    sections: Dict[str, Dict[str, List[str]]] = {}
    current: Dict[str, List[str]] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def default_text(name: str) -> Optional[str]:
    """The default as ``tegrastats-api config`` prints it; None for an off-by-default setting."""
    value = DEFAULTS_OF[name]
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, tuple):
        return ",".join(value)
    return str(value)


@pytest.fixture(scope="module")
def unit() -> Dict[str, Dict[str, List[str]]]:
    return parse_unit(UNIT.read_text(encoding="utf-8"))


# --- the unit ----------------------------------------------------------------------


def test_unit_execstart_is_the_console_script(unit):
    setup_py = (REPO / "setup.py").read_text(encoding="utf-8")
    match = re.search(r'"console_scripts":\s*\[\s*"([\w-]+)\s*=\s*tegrastats_api\.cli:main"', setup_py)
    assert match, "setup.py declares no tegrastats-api console script"
    assert unit["Service"]["ExecStart"] == ["/usr/bin/%s run" % match.group(1)]


def test_unit_keeps_the_original_service_behaviour(unit):
    u, s = unit["Unit"], unit["Service"]
    assert u["After"] == ["network-online.target"] and u["Wants"] == ["network-online.target"]
    assert u["StartLimitIntervalSec"] == ["60"] and u["StartLimitBurst"] == ["3"]
    assert s["Restart"] == ["always"] and s["RestartSec"] == ["10"]
    assert s["TimeoutStopSec"] == ["30"]
    assert s["LimitNOFILE"] == ["65536"] and s["LimitNPROC"] == ["4096"]
    assert s["EnvironmentFile"] == ["-/etc/default/tegrastats-api"]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]


def test_unit_does_not_retry_bad_settings_or_a_missing_tegrastats(unit):
    codes = {int(c) for c in unit["Service"]["RestartPreventExitStatus"][0].split()}
    assert codes == {int(ExitStatus.USAGE), int(ExitStatus.NO_TEGRASTATS)} == {2, 3}


SANDBOX_ON = ["NoNewPrivileges", "ProtectHome", "PrivateTmp", "ProtectControlGroups",
              "ProtectKernelModules", "ProtectKernelLogs", "ProtectHostname", "RestrictNamespaces",
              "LockPersonality", "RestrictRealtime", "RestrictSUIDSGID", "MemoryDenyWriteExecute"]
# Left out on purpose; the unit's header and README "Deploy" say why.
SANDBOX_OFF = ["PrivateDevices", "DevicePolicy", "DeviceAllow", "ProtectClock", "ProtectKernelTunables",
               "User", "DynamicUser"]


def test_unit_sandbox(unit):
    s = unit["Service"]
    for key in SANDBOX_ON:
        assert s.get(key) == ["yes"], key
    assert s["ProtectSystem"] == ["strict"]
    assert s["RestrictAddressFamilies"] == ["AF_INET AF_INET6 AF_UNIX"]
    assert s["SystemCallArchitectures"] == ["native"]
    assert "@clock" in s["SystemCallFilter"][0] and s["SystemCallFilter"][0].startswith("~")
    assert s["CapabilityBoundingSet"] == ["~CAP_SYS_TIME CAP_WAKE_ALARM"]
    for key in SANDBOX_OFF:
        assert key not in s, key


def test_sandbox_choices_are_documented():
    header = UNIT.read_text(encoding="utf-8").split("[Unit]")[0]
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    deploy = readme.split("## Deploy", 1)[1].split("\n## ", 1)[0]
    for key in ["PrivateDevices", "ProtectClock", "ProtectKernelTunables", "MemoryDenyWriteExecute"]:
        assert key in header, key
    for key in SANDBOX_ON + ["ProtectSystem", "RestrictAddressFamilies"] + SANDBOX_OFF[:1] + SANDBOX_OFF[3:5]:
        assert key in deploy, key


def _console_script() -> str:
    found = Path(sys.executable).parent / "tegrastats-api"
    return str(found) if found.exists() else (shutil.which("tegrastats-api") or "")


def systemd_verify(unit_file: Path, *args: str) -> str:
    """``systemd-analyze verify``'s output (stdout and stderr) on ``unit_file``."""
    require_tool(shutil.which("systemd-analyze"), "systemd-analyze (apt-get install systemd)")
    result = subprocess.run(["systemd-analyze", "verify", *args, str(unit_file)], capture_output=True,
                            text=True, timeout=60, cwd=str(unit_file.parent))
    return (result.stdout + result.stderr).strip()


def test_systemd_analyze_verify_prints_nothing(tmp_path):
    # ExecStart must exist to verify, so it points at this environment's console script;
    # the man page (Documentation=) comes with the .deb, whose test verifies the
    # installed unit with the man page check on.
    script = _console_script()
    assert script, "no tegrastats-api console script in this environment"
    copy = tmp_path / "tegrastats-api.service"
    copy.write_text(UNIT.read_text(encoding="utf-8").replace("/usr/bin/tegrastats-api", script), encoding="utf-8")
    assert systemd_verify(copy, "--man=no") == ""


# --- the settings files ------------------------------------------------------------


def _blocks(text: str) -> Dict[str, str]:
    """``{key: the comment block above its '# key = value' line}`` of the conffile."""
    blocks, comment = {}, []
    for line in text.splitlines():
        match = re.match(r"# ([a-z_]+) = (.*)$", line)
        if match:
            blocks[match.group(1)] = "\n".join(comment) + "\n" + line
            comment = []
        elif line.startswith("#"):
            comment.append(line)
        else:
            comment = []
    return blocks


def test_conffile_lists_every_setting_with_its_default():
    text = CONF.read_text(encoding="utf-8")
    blocks = _blocks(text)
    assert sorted(blocks) == sorted(s.name for s in FILE_SETTINGS)
    for s in FILE_SETTINGS:
        default = default_text(s.name)
        if default is None:
            assert re.search(r"Default: (off|none)", blocks[s.name]), s.name
        else:
            assert "\n# %s = %s" % (s.name, default) in blocks[s.name], s.name
        assert "[flag %s, env %s]" % (s.flag, s.env) in blocks[s.name]
    assert not [line for line in text.splitlines() if re.match(r"\s*[a-z_-]+\s*=", line)], "a setting is not commented"


def test_conffile_loads_as_shipped_and_with_every_default_uncommented(tmp_path):
    shipped = load(["config", "--config", str(CONF)], {})
    assert all(source == "default" for name, source in shipped.sources.items() if name != "config")
    defaults = [s.name for s in FILE_SETTINGS if default_text(s.name) is not None]
    text = CONF.read_text(encoding="utf-8")
    for name in defaults:
        text = re.sub(r"(?m)^# (%s = )" % name, r"\1", text)
    uncommented = tmp_path / "all.conf"
    uncommented.write_text(text, encoding="utf-8")
    loaded = load(["config", "--config", str(uncommented)], {})
    for name in defaults:
        assert loaded.sources[name] == "file %s" % uncommented, name
        assert getattr(loaded.config, name) == DEFAULTS_OF[name], name


def test_environment_file_lists_every_variable_commented():
    text = DEFAULTS.read_text(encoding="utf-8")
    values = dict(re.findall(r"(?m)^#(TEGRASTATS_API_[A-Z_]+)=(.*)$", text))
    assert sorted(values) == sorted(s.env for s in SETTINGS)
    assert not re.search(r"(?m)^TEGRASTATS_API_", text), "a variable is set, not commented"
    environ = {s.env: values[s.env] for s in FILE_SETTINGS if default_text(s.name) is not None}
    loaded = load(["config"], environ)
    for s in FILE_SETTINGS:
        if default_text(s.name) is not None:
            assert values[s.env] == default_text(s.name), s.env
            assert getattr(loaded.config, s.name) == DEFAULTS_OF[s.name], s.env


# --- MANIFEST, debian/ --------------------------------------------------------------


def test_manifest_covers_static_packaging_docs_examples_and_fixtures():
    lines = (REPO / "MANIFEST.in").read_text(encoding="utf-8").splitlines()
    for folder in ["static", "packaging", "docs", "examples", "tests"]:
        assert "graft %s" % folder in lines, folder
    assert any(line.startswith("recursive-include tegrastats_api/data") for line in lines)
    assert not [line for line in lines if re.match(r"(prune|exclude) tests/fixtures", line)]


def _control_field(text: str, field: str) -> List[str]:
    match = re.search(r"(?ms)^%s:(.*?)(?=^\S)" % field, text + "\nEnd:")
    assert match, field
    return [item.strip() for item in match.group(1).replace("\n", " ").split(",") if item.strip()]


def test_debian_control_build_depends_are_installed_by_ci():
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    for dep in _control_field((DEBIAN / "control").read_text(encoding="utf-8"), "Build-Depends"):
        name = re.split(r"[\s(\[<]", dep)[0]
        if name == "debhelper-compat":
            name = "debhelper"
        assert re.search(r"(?<![\w.-])%s(?![\w.-])" % re.escape(name), ci), "%s missing from .ci/run" % name


def test_debian_control_depends_on_the_distribution_libraries():
    depends = _control_field((DEBIAN / "control").read_text(encoding="utf-8"), "Depends")
    for dep in ["python3-tornado (>= 6.1)", "python3-socketio (>= 5.0.3)", "python3-engineio (>= 4.0.0)",
                "python3-configargparse (>= 1.5.3)", "python3-prometheus-client (>= 0.9.0)"]:
        assert dep in depends
    assert "debhelper-compat (= 13)" in _control_field((DEBIAN / "control").read_text(encoding="utf-8"),
                                                        "Build-Depends")


def test_debian_depends_cover_every_install_requirement():
    """A dependency added to setup.py must reach the .deb (as Debian's python3-<name>)."""
    setup_py = (REPO / "setup.py").read_text(encoding="utf-8")
    block = re.search(r"install_requires=\[(.*?)\]", setup_py, re.S)
    assert block
    depends = {re.split(r"[\s(]", d)[0] for d in _control_field((DEBIAN / "control").read_text(encoding="utf-8"),
                                                                 "Depends")}
    for requirement in re.findall(r'"([^"]+)"', block.group(1)):
        name = re.split(r"[<>=!~;\[ ]", requirement)[0].lower().replace("_", "-")
        debian = "python3-" + re.sub(r"^python-", "", name)
        assert debian in depends, "%s (from setup.py %r) missing from Depends" % (debian, requirement)


def test_debian_changelog_version_is_the_package_version():
    first = (DEBIAN / "changelog").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("tegrastats-api (%s) " % __version__), (
        "add a packaging/debian/changelog entry for %s (dch -c packaging/debian/changelog -v %s)"
        % (__version__, __version__))


def test_debian_copyright_covers_every_bundled_library():
    text = (DEBIAN / "copyright").read_text(encoding="utf-8")
    assert text.startswith("Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/")
    stanzas = [block for block in text.split("\n\n") if block.startswith("Files:")]
    patterns: List[str] = []
    for block in stanzas:
        files = re.match(r"Files:((?:.*\n?)(?: .*\n?)*)", block).group(1)  # type: ignore[union-attr]
        patterns += [p for p in files.split() if p != "*"]
        assert re.search(r"(?m)^License: MIT$", block)
    assert any(p.startswith("static/vendor/socket.io") for p in patterns)
    assert any(p.lower().startswith("static/vendor/uplot") for p in patterns)
    import fnmatch

    vendor = REPO / "static" / "vendor"
    for path in sorted(vendor.rglob("*")) if vendor.is_dir() else []:
        if path.is_file() and not path.name.startswith("README"):  # the project's own note
            rel = path.relative_to(REPO).as_posix()
            assert any(fnmatch.fnmatch(rel, p) for p in patterns), "no debian/copyright stanza for %s" % rel


def test_lintian_overrides_are_justified():
    lines = (DEBIAN / "tegrastats-api.lintian-overrides").read_text(encoding="utf-8").splitlines()
    for i, line in enumerate(lines):
        if line.startswith("tegrastats-api:"):
            assert i > 0 and (lines[i - 1].startswith("#") or lines[i - 1].startswith("tegrastats-api:")), line
    assert lines[0].startswith("#")


def test_shell_scripts_are_shellcheck_clean():
    require_tool(shutil.which("shellcheck"), "shellcheck (apt-get install shellcheck)")
    shell = [str(p) for p in SCRIPTS if p.read_text(encoding="utf-8").startswith(("#!/bin/sh", "#!/usr/bin/env bash"))]
    result = subprocess.run(["shellcheck", *shell], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout
    for script in SCRIPTS:
        assert os.access(str(script), os.X_OK), "%s is not executable" % script


# --- the wheel, in a fresh virtual environment ---------------------------------------


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def http_get(url: str, timeout: float = 5) -> Tuple[int, str, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return answer.status, answer.headers.get("Content-Type", ""), answer.read()
    except urllib.error.HTTPError as err:
        return err.code, err.headers.get("Content-Type", ""), err.read()


def serve_and_check(argv: List[str], env: Dict[str, str], cwd: Path, port: int) -> None:
    """Start the server, GET ``/api/status`` (after the first sample) and ``/``, stop it with
    SIGTERM and expect exit status 0."""
    process = subprocess.Popen(argv + ["run", "--simulate", "--host", "127.0.0.1", "--port", str(port)],
                               env=env, cwd=str(cwd), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                               stdin=subprocess.DEVNULL)
    try:
        deadline, status = time.monotonic() + 30, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = http_get("http://127.0.0.1:%d/api/status" % port, timeout=2)
            except OSError:
                status = None
            if status and status[0] == 200:
                break
            time.sleep(0.2)
        assert status and status[0] == 200, "no /api/status: %r" % (status,)
        document = json.loads(status[2])
        assert document["schema"] == 1 and document["source"] == "simulator"
        code, content_type, body = http_get("http://127.0.0.1:%d/" % port)
        assert code == 200 and content_type.startswith("text/html"), (code, content_type)
        assert b"<html" in body.lower()
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        output = process.stdout.read().decode("utf-8", "replace") if process.stdout else ""
        if process.returncode != 0:
            print(output)


def clean_env(**extra: str) -> Dict[str, str]:
    """The environment without this checkout's Python settings and TEGRASTATS_API_*."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if k not in drop and not k.startswith("TEGRASTATS_API_")}
    env.update(extra)
    return env


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel of this checkout, built once with ``pip wheel --no-deps``."""
    out = tmp_path_factory.mktemp("wheel")
    result = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                            capture_output=True, text=True, timeout=300, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    (built,) = out.glob("tegrastats_api-%s-*.whl" % __version__)
    return built


def wheel_names(path: Path) -> List[str]:
    with zipfile.ZipFile(str(path)) as archive:
        return archive.namelist()


@pytest.mark.slow
def test_wheel_contains_dashboard_simulator_data_and_unit(wheel):
    names = wheel_names(wheel)
    assert "tegrastats_api/static/index.html" in names
    boards = sorted(n for n in names if re.match(r"tegrastats_api/data/boards/[\w-]+\.txt$", n))
    assert len(boards) == len(list((REPO / "tegrastats_api" / "data" / "boards").glob("*.txt"))) > 0
    data = "tegrastats_api-%s.data/data/share/tegrastats-api/" % __version__
    for name in ["tegrastats-api.service", "tegrastats-api.conf", "tegrastats-api.default"]:
        assert data + name in names
    with zipfile.ZipFile(str(wheel)) as archive:
        assert archive.read(data + "tegrastats-api.service") == UNIT.read_bytes()


@pytest.fixture(scope="module")
def wheel_venv(wheel, tmp_path_factory) -> Path:
    """A fresh virtual environment, outside the checkout, with the wheel and its deps."""
    venv = tmp_path_factory.mktemp("venv") / "env"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120, env=clean_env())
    result = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet",
                             "--disable-pip-version-check", str(wheel)],
                            capture_output=True, text=True, timeout=300, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    return venv


@pytest.mark.slow
def test_wheel_in_a_fresh_venv_serves_the_dashboard(wheel_venv, tmp_path):
    python = str(wheel_venv / "bin" / "python")
    where = subprocess.run([python, "-c", "import tegrastats_api, tegrastats_api.app as a;"
                            "print(tegrastats_api.__file__); print(a.default_static_dir())"],
                           capture_output=True, text=True, timeout=60, env=clean_env(), cwd=str(tmp_path))
    assert where.returncode == 0, "the installed wheel does not import (a dependency missing from " \
        "setup.py's install_requires?):\n" + where.stderr
    module, static = where.stdout.split()
    assert module.startswith(str(wheel_venv)) and static.startswith(str(wheel_venv)), where.stdout
    assert (wheel_venv / "share" / "tegrastats-api" / "tegrastats-api.service").is_file()
    serve_and_check([str(wheel_venv / "bin" / "tegrastats-api")], clean_env(), tmp_path, free_port())


@pytest.mark.slow
def test_sdist_contains_everything_to_build_and_test(tmp_path):
    import importlib.util

    spec = importlib.util.find_spec("build")  # not the checkout's build/ folder (a namespace package)
    if spec is None or spec.origin in (None, "namespace"):
        pytest.fail("the `build` module is missing: it is in the test extra (pip install -e '.[test]')")
    result = subprocess.run([sys.executable, "-m", "build", "--sdist", "--outdir", str(tmp_path), str(REPO)],
                            capture_output=True, text=True, timeout=300, env=clean_env())
    assert result.returncode == 0, result.stdout + result.stderr
    (sdist,) = tmp_path.glob("*.tar.gz")
    with tarfile.open(str(sdist)) as archive:
        names = {name.split("/", 1)[1] for name in archive.getnames() if "/" in name}
    for name in ["static/index.html", "tegrastats_api/data/boards/agx-orin.txt", "packaging/tegrastats-api.service",
                 "packaging/tegrastats-api.conf", "packaging/tegrastats-api.default", "packaging/install.sh",
                 "packaging/uninstall.sh", "packaging/debian/control", "packaging/debian/rules", "docs/API.md",
                 "tests/conftest.py", "tests/fixtures/transport_lines.tsv", "LICENSE", "Makefile"]:
        assert name in names, name
    assert not [n for n in names if "node_modules" in n or "__pycache__" in n]


# --- make run / make install: a venv with the runtime dependencies only ------------------


def _requirement_names(extra: Optional[str]) -> set:
    """Names of the package's requirements: the runtime ones (``extra`` None) or an extra's."""
    from importlib.metadata import requires

    names = set()
    for requirement in requires("tegrastats-api") or []:
        spec, _, marker = requirement.partition(";")
        in_extra = re.search(r"""extra\s*==\s*["']([^"']+)["']""", marker)
        if (in_extra.group(1) if in_extra else None) == extra:
            names.add(re.split(r"[\s<>=!~\[(]", spec.strip(), maxsplit=1)[0].lower().replace("_", "-"))
    return names


@pytest.mark.slow
def test_make_run_and_install_use_a_venv_without_the_test_and_dev_extras(tmp_path):
    """``make run`` serves from its own venv (RUN_VENV, default .venv-run) holding the package
    and its runtime dependencies only; ``make install`` self-tests that venv; ``make test``
    keeps .venv with the extras."""
    require_tool(shutil.which("make"), "GNU make")
    runtime, extras = _requirement_names(None), _requirement_names("test") | _requirement_names("dev")
    assert {"tornado", "python-socketio", "prometheus-client"} <= runtime and {"pytest", "ruff"} <= extras
    venv, port, log = tmp_path / "run-venv", free_port(), tmp_path / "make-run.log"
    make = ["make", "--no-print-directory", "PYTHON=" + sys.executable, "RUN_VENV=" + str(venv)]
    with open(log, "wb") as out:
        process = subprocess.Popen(make + ["run", "PORT=%d" % port], cwd=str(REPO), stdout=out,
                                   stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True,
                                   env=clean_env(TEGRASTATS_API_HOST="127.0.0.1", TEGRASTATS_API_SIMULATE="1"))
    try:
        deadline, status = time.monotonic() + 280, None
        while time.monotonic() < deadline and process.poll() is None:
            try:
                status = http_get("http://127.0.0.1:%d/api/health" % port, timeout=2)
            except OSError:
                status = None
            if status and status[0] == 200:
                break
            time.sleep(0.5)
        assert status and status[0] == 200, "make run did not serve: %s" % log.read_text(errors="replace")[-3000:]
        assert json.loads(status[2])["source"] == "simulator"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # make and the server it started: its own session
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
    listed = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json"],
                            capture_output=True, text=True, timeout=120, env=clean_env())
    installed = {p["name"].lower().replace("_", "-") for p in json.loads(listed.stdout)}
    assert runtime | {"tegrastats-api"} <= installed, installed
    assert not installed & extras, "test or development packages in the run venv: %s" % (installed & extras)
    assert len(installed - {"pip", "setuptools", "wheel"}) < 20, sorted(installed)
    selftest = subprocess.run(make + ["install", "SELFTEST_PORT=%d" % free_port()], cwd=str(REPO),
                              capture_output=True, text=True, timeout=280, env=clean_env(), stdin=subprocess.DEVNULL)
    assert selftest.returncode == 0 and "14 passed, 0 failed" in selftest.stdout, selftest.stdout + selftest.stderr
    assert "installed: %s/bin/tegrastats-api" % venv in selftest.stdout
    dry = subprocess.run(["make", "-n", "--no-print-directory", "VENV=" + str(tmp_path / "test-venv"), "venv"],
                         cwd=str(REPO), capture_output=True, text=True, timeout=60, env=clean_env())
    assert "-e '.[test,dev]'" in dry.stdout, dry.stdout


# --- install.sh / uninstall.sh into a scratch root ------------------------------------


def run_script(name: str, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """Run a packaging script with bash; ``env`` adds to (or replaces in) :func:`clean_env`."""
    return subprocess.run(["bash", str(PACKAGING / name), *args], capture_output=True, text=True,
                          timeout=timeout, env=clean_env(**env), stdin=subprocess.DEVNULL)


def files_under(root: Path) -> List[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if not p.is_dir() or p.is_symlink())


def test_install_refuses_a_bad_port_before_changing_anything(tmp_path):
    result = run_script("install.sh", "--root", str(tmp_path), "--port", "99999", timeout=60)
    assert result.returncode == 2 and "--port: 99999" in result.stderr
    assert files_under(tmp_path) == []


# install.sh picks its Python by itself: python3 when it is 3.8+ with venv, else the newest
# python3.N on PATH that is. These tests give it a PATH whose first folder holds links to
# pyenv's interpreters under the names it looks for, and a failing stub for every other
# python3.N, so that this machine's own python3 (3.11) and pyenv's shims are never found.

PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"
NO_ENSUREPIP = "raise ImportError('No module named ensurepip (Debian: apt install pythonX.Y-venv)')\n"


def pyenv_python(version: str) -> Path:
    """pyenv's newest ``version``.x interpreter; skips (fails with CI=true) when missing."""
    found = sorted(PYENV_VERSIONS.glob("%s.*/bin/python%s" % (version, version)))
    require_tool(found, "Python %s (pyenv install %s; looked in %s)" % (version, version, PYENV_VERSIONS))
    return found[-1]


def full_version(python: Path) -> str:
    return subprocess.run([str(python), "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                          capture_output=True, text=True, timeout=60, check=True).stdout.strip()


def fake_pythons(folder: Path, pythons: Dict[str, Path], no_venv: Tuple[str, ...] = ()) -> str:
    """Fill ``folder`` with ``{name: interpreter}`` links and return a PATH starting there.

    Every other ``python3`` and ``python3.N`` there is a stub that fails; a name in
    ``no_venv`` runs its interpreter with an ``ensurepip`` that cannot be imported, as
    Debian's python3.N without python3.N-venv.
    """
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "no-ensurepip").mkdir(exist_ok=True)
    (folder / "no-ensurepip" / "ensurepip.py").write_text(NO_ENSUREPIP, encoding="utf-8")
    for name in ["python3"] + ["python3.%d" % minor for minor in range(40)]:
        path = folder / name
        if name in no_venv:
            path.write_text('#!/bin/sh\nPYTHONPATH="%s" exec "%s" "$@"\n' % (folder / "no-ensurepip", pythons[name]),
                            encoding="utf-8")
            path.chmod(0o755)
        elif name in pythons:
            path.symlink_to(pythons[name])
        else:
            path.write_text("#!/bin/sh\necho \"$0: not here\" >&2\nexit 127\n", encoding="utf-8")
            path.chmod(0o755)
    return os.pathsep.join([str(folder), clean_env().get("PATH", os.defpath)])


def test_fake_pythons_hide_every_real_python3(tmp_path):
    """The premise of the tests below: on the fake PATH, python3.N is what they say."""
    path = fake_pythons(tmp_path / "bin", {"python3": pyenv_python("3.6")})
    for name in ["python3"] + ["python3.%d" % minor for minor in range(8, 40)]:
        assert shutil.which(name, path=path) == str(tmp_path / "bin" / name), name
    assert full_version(Path(shutil.which("python3", path=path) or "")).startswith("3.6.")


@pytest.mark.slow
def test_install_picks_python3_8_when_python3_is_3_6(tmp_path):
    python38, python36 = pyenv_python("3.8"), pyenv_python("3.6")
    # python3.9 lacks venv (so it is passed over), python3.8 is whole: python3.8 it is.
    path = fake_pythons(tmp_path / "bin", {"python3": python36, "python3.8": python38,
                                           "python3.9": pyenv_python("3.9")}, no_venv=("python3.9",))
    # A wheel that is not one: install.sh creates the venv, then pip fails at once, with no
    # package index involved (the whole install is test_install_sh_and_uninstall_sh_...).
    bogus = tmp_path / ("tegrastats_api-%s-py3-none-any.whl" % __version__)
    bogus.write_bytes(b"not a zip file")
    root = tmp_path / "root"
    result = run_script("install.sh", "--root", str(root), "--wheel", str(bogus), timeout=120, PATH=path)
    assert result.returncode != 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "== using python3.8 (Python %s): python3 is Python %s" % (
        full_version(python38), full_version(python36)), result.stdout + result.stderr
    assert lines[1].startswith("== virtual environment %s/opt/tegrastats-api (Python 3.8." % root), lines
    cfg = (root / "opt" / "tegrastats-api" / "pyvenv.cfg").read_text(encoding="utf-8")
    assert re.search(r"(?m)^version = %s$" % re.escape(full_version(python38)), cfg), cfg
    assert not (root / "etc").exists()


def test_install_without_python_3_8_says_what_to_install(tmp_path):
    path = fake_pythons(tmp_path / "bin", {"python3": pyenv_python("3.6")})
    root = tmp_path / "root"
    root.mkdir()
    result = run_script("install.sh", "--root", str(root), timeout=60, PATH=path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("install.sh: error: needs Python 3.8 or newer"), line
    assert "python3 here is Python %s" % full_version(pyenv_python("3.6")) in line, line
    assert "apt install python3.8 python3.8-venv" in line, line
    assert files_under(root) == []


def test_install_names_the_venv_package_when_only_that_is_missing(tmp_path):
    path = fake_pythons(tmp_path / "bin", {"python3": pyenv_python("3.6"), "python3.8": pyenv_python("3.8")},
                        no_venv=("python3.8",))
    root = tmp_path / "root"
    root.mkdir()
    result = run_script("install.sh", "--root", str(root), timeout=60, PATH=path)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "python3.8 (Python 3.8." in line and "no venv" in line, line
    assert line.endswith("sudo apt install python3.8-venv, then run this script again"), line
    assert files_under(root) == []


@pytest.mark.parametrize("version", ["3.7", "2.7"])
def test_install_refuses_an_explicit_python_older_than_3_8(tmp_path, version):
    old = pyenv_python(version)
    # A usable python3 on PATH changes nothing: --python is used as given.
    path = fake_pythons(tmp_path / "bin", {"python3": pyenv_python("3.8")})
    root = tmp_path / "root"
    root.mkdir()
    result = run_script("install.sh", "--root", str(root), "--python", str(old), timeout=60, PATH=path)
    assert result.returncode == 2, result.stdout + result.stderr
    assert result.stdout == ""
    (line,) = result.stderr.splitlines()
    assert line.startswith("install.sh: error: --python %s is Python %s;" % (old, full_version(old))), line
    assert "needs Python 3.8 or newer" in line and "apt install python3.8 python3.8-venv" in line, line
    assert files_under(root) == []


def test_install_refuses_an_explicit_python_without_venv(tmp_path):
    path = fake_pythons(tmp_path / "bin", {"python3.9": pyenv_python("3.9")}, no_venv=("python3.9",))
    root = tmp_path / "root"
    root.mkdir()
    result = run_script("install.sh", "--root", str(root), "--python", "python3.9", timeout=60, PATH=path)
    assert result.returncode == 2, result.stdout + result.stderr
    (line,) = result.stderr.splitlines()
    assert "--python python3.9 (Python 3.9." in line and "apt install python3.9-venv" in line, line
    result = run_script("install.sh", "--root", str(root), "--python", "python3.99", timeout=60, PATH=path)
    assert result.returncode == 2 and "--python python3.99: no such Python" in result.stderr, result.stderr
    assert files_under(root) == []


@pytest.mark.slow
def test_install_sh_and_uninstall_sh_in_a_scratch_root(wheel, tmp_path):
    root = tmp_path / "root"
    result = run_script("install.sh", "--root", str(root), "--wheel", str(wheel), "--python", sys.executable,
                        "--host", "127.0.0.1", "--port", "58111")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemctl not run" in result.stdout and "systemctl enable tegrastats-api" in result.stdout
    venv = root / "opt" / "tegrastats-api"
    assert (venv / "pyvenv.cfg").is_file() and (venv / "bin" / "tegrastats-api").is_file()

    unit_file = root / "etc" / "systemd" / "system" / "tegrastats-api.service"
    installed = parse_unit(unit_file.read_text(encoding="utf-8"))
    shipped = parse_unit(UNIT.read_text(encoding="utf-8"))
    assert installed["Service"].pop("ExecStart") == ["/opt/tegrastats-api/bin/tegrastats-api run"]
    shipped["Service"].pop("ExecStart")
    shipped["Unit"].pop("Documentation")  # the man page comes with the .deb only
    assert installed == shipped
    link = root / "usr" / "local" / "bin" / "tegrastats-api"
    assert os.readlink(str(link)) == "/opt/tegrastats-api/bin/tegrastats-api"

    # The settings install.sh wrote are the ones the installed program reads.
    defaults = (root / "etc" / "default" / "tegrastats-api").read_text(encoding="utf-8")
    environ = dict(re.findall(r"(?m)^(TEGRASTATS_API_[A-Z_]+)=(.*)$", defaults))
    assert environ == {"TEGRASTATS_API_HOST": "127.0.0.1", "TEGRASTATS_API_PORT": "58111"}
    conf = root / "etc" / "tegrastats-api" / "tegrastats-api.conf"
    assert conf.read_text(encoding="utf-8") == CONF.read_text(encoding="utf-8")
    shown = subprocess.run([str(venv / "bin" / "tegrastats-api"), "--config", str(conf), "config"],
                           capture_output=True, text=True, timeout=60, env=clean_env(**environ), check=True).stdout
    assert "host = 127.0.0.1  (env TEGRASTATS_API_HOST)" in shown and "port = 58111  (env TEGRASTATS_API_PORT)" in shown

    # systemd-analyze checks the installed unit, its ExecStart moved into the scratch root.
    copy = tmp_path / "tegrastats-api.service"
    copy.write_text(unit_file.read_text(encoding="utf-8").replace("=/opt/", "=%s/opt/" % root), encoding="utf-8")
    assert systemd_verify(copy, "--man=no") == ""

    result = run_script("uninstall.sh", "--root", str(root), "--host", "127.0.0.1", "--port", "58111")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "systemctl disable --now tegrastats-api" in result.stdout
    assert files_under(root) == []
