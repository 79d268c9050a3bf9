"""Python 3.8 (JetPack 5) compatibility, checked statically; and older Pythons (JetPack 4's
3.6, 2.7, 3.7) get one line saying what to install instead of a SyntaxError traceback."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import require_tool

ROOT = Path(__file__).resolve().parent.parent


def test_package_and_tests_need_no_python_newer_than_3_8():
    vermin = shutil.which("vermin", path=str(Path(sys.executable).parent)) or shutil.which("vermin")
    require_tool(vermin, "vermin (pip install vermin)")
    result = subprocess.run(
        [vermin, "-t=3.8-", "--no-tips", "--violations", "--backport", "dataclasses",
         "tegrastats_api", "tests", "bench"],
        cwd=str(ROOT), capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_module_postpones_annotations():
    for path in sorted((ROOT / "tegrastats_api").glob("*.py")):
        text = path.read_text(encoding="utf-8")
        if path.name == "__main__.py" or "def " not in text:
            continue
        if path.name == "__init__.py":
            # Python 2.7, 3.6 and 3.7 must be able to parse it, so that its version check
            # can say "needs Python 3.8" in one line: the __future__ import is a
            # SyntaxError on 3.6 (test_old_python_gets_one_line_not_a_traceback).
            assert "\nfrom __future__ import annotations" not in text
            continue
        assert "from __future__ import annotations" in text, path.name


# --- Python older than 3.8: one line, not a traceback ------------------------------------

PYENV_VERSIONS = Path(os.environ.get("PYENV_ROOT", str(Path.home() / ".pyenv"))) / "versions"


def old_python(version: str) -> str:
    """pyenv's newest ``version``.x interpreter (``bin/python2.7``, ``bin/python3.6``, ...)."""
    found = sorted(PYENV_VERSIONS.glob("%s.*/bin/python%s" % (version, version)))
    require_tool(found, "Python %s (pyenv install %s; looked in %s)" % (version, version, PYENV_VERSIONS))
    return str(found[-1])


def run_from_checkout(*argv: str) -> subprocess.CompletedProcess:
    """Run ``argv`` in the checkout with only the checkout on the path, writing no bytecode."""
    drop = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PYTHONPATH=str(ROOT), PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run(list(argv), cwd=str(ROOT), env=env, capture_output=True, text=True, timeout=60,
                          stdin=subprocess.DEVNULL)


@pytest.mark.parametrize("how", [["-m", "tegrastats_api", "run"], ["-c", "import tegrastats_api"]],
                         ids=["python-m-run", "import"])
@pytest.mark.parametrize("version", ["2.7", "3.6", "3.7"])
def test_old_python_gets_one_line_not_a_traceback(version, how):
    python = old_python(version)
    result = run_from_checkout(python, *how)
    running = subprocess.run([python, "-c", "import sys; print('%d.%d.%d' % sys.version_info[:3])"],
                             capture_output=True, text=True, timeout=60, check=True).stdout.strip()
    assert result.returncode != 0
    assert "Traceback" not in result.stderr and "SyntaxError" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    assert "3.8" in lines[0] and "Python %s " % running in lines[0], lines[0]
    assert "apt install python3.8" in lines[0] and python in lines[0], lines[0]
    assert result.stdout == ""


def test_current_python_still_imports_the_package():
    result = run_from_checkout(sys.executable, "-c", "import tegrastats_api as t; c = t.Config(port=58123); "
                               "print(t.__version__, c.port, sorted(t.__all__))")
    assert result.returncode == 0, result.stderr
    assert result.stdout.split(" ", 2)[:2] == ["0.1.0", "58123"], result.stdout

    import tegrastats_api
    from tegrastats_api.config import Config

    assert tegrastats_api.Config is Config and tegrastats_api.Config(port=58124).port == 58124
    assert set(tegrastats_api.__all__) == {"__version__", "ParseError", "Snapshot", "parse_line", "Config",
                                           "TegrastatsServer"}
    with pytest.raises(AttributeError):
        tegrastats_api.NoSuchName  # noqa: B018
