"""The stack matrix itself (tests/stacks/, ``make test-stacks``): what it promises holds.

The lower bounds that setup.py and the .deb state are the lowest versions a stack runs the
whole suite on (nothing lower, nothing untested), and the runner skips a stack whose Python
is missing loudly, as a failure under ``CI=true``.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Dict, Tuple

ROOT = Path(__file__).resolve().parent.parent
RUNNER = ROOT / "tests" / "stacks" / "run.py"
DEBIAN_NAMES = {"tornado": "python3-tornado", "python-socketio": "python3-socketio",
                "python-engineio": "python3-engineio", "configargparse": "python3-configargparse",
                "prometheus-client": "python3-prometheus-client"}


def _version(text: str) -> Tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", text))


def lowest_pins() -> Dict[str, str]:
    """Each library's lowest pinned version over all stacks (lowercase name -> version)."""
    lowest: Dict[str, str] = {}
    for path in sorted((ROOT / "tests" / "stacks").glob("*.txt")):
        for name, version in re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)\s*$", path.read_text(encoding="utf-8"), re.M):
            name = name.lower()
            if name not in lowest or _version(version) < _version(lowest[name]):
                lowest[name] = version
    return lowest


def test_every_stack_names_its_python():
    for path in sorted((ROOT / "tests" / "stacks").glob("*.txt")):
        assert re.search(r"^# python: 3\.\d+$", path.read_text(encoding="utf-8"), re.M), path.name


def test_install_requires_are_the_lowest_tested_versions():
    setup_py = (ROOT / "setup.py").read_text(encoding="utf-8")
    block = re.search(r"install_requires=\[(.*?)\]", setup_py, re.S).group(1)
    requires = dict(re.findall(r'"([A-Za-z0-9_.-]+)>=([0-9.]+)"', block))
    lowest = lowest_pins()
    assert set(requires) == set(DEBIAN_NAMES)
    for name, minimum in requires.items():
        assert _version(minimum) == _version(lowest[name.lower()]), (name, minimum, lowest[name.lower()])


def test_deb_depends_are_the_lowest_tested_versions():
    control = (ROOT / "packaging" / "debian" / "control").read_text(encoding="utf-8")
    depends = control.split("\nDepends:", 1)[1].split("\nDescription:", 1)[0]
    lowest = lowest_pins()
    for name, debian in DEBIAN_NAMES.items():
        found = re.search(re.escape(debian) + r" \(>= ([0-9.]+)\)", depends)
        assert found, "%s has no lower bound in Depends" % debian
        assert _version(found.group(1)) == _version(lowest[name]), (debian, found.group(1), lowest[name])


def _runner(tmp_path: Path, ci: str) -> subprocess.CompletedProcess:
    (tmp_path / "no-python.txt").write_text("# a stack whose Python no machine has\n# python: 3.99\n",
                                            encoding="utf-8")
    env = dict(os.environ, CI=ci, HOME=str(tmp_path), STACKS_DIR=str(tmp_path))
    return subprocess.run([sys.executable, str(RUNNER), "no-python"], capture_output=True, text=True,
                          timeout=60, env=env)


def test_a_missing_python_is_a_loud_skip_and_a_failure_under_ci(tmp_path):
    relaxed = _runner(tmp_path, ci="")
    assert relaxed.returncode == 0, relaxed.stdout + relaxed.stderr
    assert "SKIPPED" in relaxed.stdout and "no Python 3.99" in relaxed.stdout
    assert relaxed.stdout.splitlines()[-1] == "stacks: 0 passed, 0 failed, 1 skipped"
    strict = _runner(tmp_path, ci="true")
    assert strict.returncode == 1 and "a failure with CI=true" in strict.stdout
    assert strict.stdout.splitlines()[-1] == "stacks: 0 passed, 1 failed"


def test_an_unknown_stack_is_refused():
    result = subprocess.run([sys.executable, str(RUNNER), "no-such-stack"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 2 and "no such stack: no-such-stack" in result.stderr
