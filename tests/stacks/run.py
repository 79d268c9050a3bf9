"""Run the whole test suite on each stack in tests/stacks/: one Python, one set of pins.

Usage: ``python tests/stacks/run.py [STACK ...] [-- PYTEST_ARGS]`` (``make test-stacks``,
``make test-oldest``). Each ``tests/stacks/NAME.txt`` is a pip constraints file whose
``# python: X.Y`` line names the interpreter. For each stack this script finds that
interpreter (pyenv's ``~/.pyenv/versions/X.Y.*``, else ``pythonX.Y`` on PATH), builds
``.venv-stacks/NAME`` with the package and its test tools under those constraints
(again only when the constraints, setup.py or pyproject.toml changed), checks that every
pin really is what got installed, and runs pytest there. The server under test and its
libraries are the stack's; the tests that build and install the .deb use the system's
Python, not the stack's, and run once in ``make test`` instead.

A missing interpreter is a loud skip; with ``CI=true`` it is a failure. The last line is
``stacks: N passed, N failed`` (and ``, N skipped``); the exit status is 1 if any failed.
"""
from __future__ import annotations

import glob
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Dict, List, Optional, Tuple

ROOT = Path(__file__).resolve().parent.parent.parent
STACKS = Path(os.environ.get("STACKS_DIR") or ROOT / "tests" / "stacks")  # another folder: for tests
VENVS = ROOT / ".venv-stacks"
# Built and installed with the system Python: the same on every stack, so run once.
NOT_PER_STACK = "not deb and not systemd"
SHOWN = ("tornado", "python-socketio", "python-engineio", "configargparse", "prometheus-client", "bidict",
         "paho-mqtt")


def stack_names() -> List[str]:
    return sorted(path.stem for path in STACKS.glob("*.txt"))


def read_stack(name: str) -> Tuple[str, Dict[str, str]]:
    """The stack's Python version (``"3.10"``) and its pins (lowercase name -> version)."""
    text = (STACKS / (name + ".txt")).read_text(encoding="utf-8")
    found = re.search(r"^# python: (\d+\.\d+)\s*$", text, re.M)
    if found is None:
        raise SystemExit("tests/stacks/%s.txt: no '# python: X.Y' line" % name)
    pins = dict(re.findall(r"^([A-Za-z0-9_.-]+)==(\S+)\s*$", text, re.M))
    return found.group(1), {_canonical(k): v for k, v in pins.items()}


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def find_python(version: str) -> Optional[str]:
    """An interpreter of ``version`` (``"3.10"``): pyenv's newest patch release, else PATH."""
    home = os.path.expanduser("~/.pyenv/versions")
    candidates = sorted(glob.glob(os.path.join(home, version + ".*", "bin", "python" + version)),
                        key=lambda p: [int(x) for x in re.findall(r"\d+", p.split("/versions/")[1].split("/")[0])])
    candidates = candidates[::-1] + [shutil.which("python" + version) or ""]
    for path in candidates:
        if path and os.access(path, os.X_OK):
            return path
    return None


def _fingerprint(name: str, python: str) -> str:
    digest = hashlib.sha256(python.encode())
    for path in (STACKS / (name + ".txt"), ROOT / "setup.py", ROOT / "pyproject.toml"):
        digest.update(path.read_bytes())
    return digest.hexdigest()


def build_venv(name: str, python: str) -> Path:
    """``.venv-stacks/NAME`` with the package (editable) and its test tools; rebuilt on change."""
    venv = VENVS / name
    stamp = venv / ".stamp"
    fingerprint = _fingerprint(name, python)
    if stamp.is_file() and stamp.read_text() == fingerprint:
        return venv
    shutil.rmtree(str(venv), ignore_errors=True)
    _run([python, "-m", "venv", str(venv)])
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    _run(pip + ["--upgrade", "pip"])
    _run(pip + ["-c", str(STACKS / (name + ".txt")), "-e", ".[test]"])
    stamp.write_text(fingerprint)
    return venv


def _run(argv: List[str]) -> None:
    print("+ " + " ".join(argv), flush=True)
    subprocess.run(argv, cwd=str(ROOT), check=True)


def installed(venv: Path) -> Dict[str, str]:
    out = subprocess.run([str(venv / "bin" / "python"), "-m", "pip", "list", "--format=json",
                          "--disable-pip-version-check"], capture_output=True, text=True, check=True).stdout
    return {_canonical(p["name"]): p["version"] for p in json.loads(out)}


def run_stack(name: str, pytest_args: List[str]) -> Tuple[str, str, float]:
    """``(result, detail, seconds)`` for one stack; result is passed, failed or skipped."""
    version, pins = read_stack(name)
    python = find_python(version)
    if python is None:
        return "skipped", "no Python %s (pyenv install %s, or apt-get install python%s)" % (
            version, version, version), 0.0
    started = time.monotonic()
    print("\n==== stack %s: Python %s (%s)" % (name, version, python), flush=True)
    try:
        venv = build_venv(name, python)
    except subprocess.CalledProcessError as err:
        return "failed", "could not build the venv: %s" % err, time.monotonic() - started
    have = installed(venv)
    wrong = ["%s==%s (installed %s)" % (k, v, have.get(k)) for k, v in pins.items() if have.get(k) != v]
    if wrong:
        return "failed", "pins not honoured: " + ", ".join(wrong), time.monotonic() - started
    shown = ", ".join("%s %s" % (k, have[k]) for k in SHOWN if k in have)
    print("==== stack %s: %s" % (name, shown), flush=True)
    env = dict(os.environ, PATH=str(venv / "bin") + os.pathsep + os.environ.get("PATH", ""))
    env.pop("PYTHONPATH", None)
    argv = [str(venv / "bin" / "python"), "-m", "pytest", "-p", "no:cacheprovider",
            "-m", NOT_PER_STACK] + pytest_args
    code = subprocess.run(argv, cwd=str(ROOT), env=env).returncode
    result = "passed" if code == 0 else "failed"
    return result, shown + ("" if code == 0 else "; pytest exit %d" % code), time.monotonic() - started


def main(argv: List[str]) -> int:
    names, pytest_args = argv, []
    if "--" in argv:
        cut = argv.index("--")
        names, pytest_args = argv[:cut], argv[cut + 1:]
    unknown = sorted(set(names) - set(stack_names()))
    if unknown:
        print("run.py: no such stack: %s (have: %s)" % (", ".join(unknown), ", ".join(stack_names())),
              file=sys.stderr)
        return 2
    results = [(name,) + run_stack(name, pytest_args) for name in (names or stack_names())]
    strict = os.environ.get("CI", "").lower() == "true"
    print("\n%-14s %-8s %8s  %s" % ("stack", "result", "time", "detail"))
    for name, result, detail, seconds in results:
        loud = "  <-- SKIPPED%s" % (" (a failure with CI=true)" if strict else "") if result == "skipped" else ""
        print("%-14s %-8s %7.0fs  %s%s" % (name, result, seconds, detail, loud))
    counts = {r: sum(1 for _, result, _, _ in results if result == r) for r in ("passed", "failed", "skipped")}
    failed = counts["failed"] + (counts["skipped"] if strict else 0)
    line = "stacks: %d passed, %d failed" % (counts["passed"], failed)
    print(line + (", %d skipped" % counts["skipped"] if counts["skipped"] and not strict else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
