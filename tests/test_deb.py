"""The Debian package, for real: ``make deb``, lintian, then (as root) ``apt-get install``
of the .deb, the installed command served by the system Python with Debian's libraries,
``systemd-analyze verify`` on the installed unit, and ``apt-get purge`` leaving nothing.

Select these with ``-m deb``. Building needs dpkg-buildpackage and the Build-Depends of
packaging/debian/control (.ci/run installs them); installing needs root and skips
loudly without it. The package is purged in a ``finally``, so a failing test does not
leave it installed.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import time
from pathlib import Path
from typing import Dict, List

import pytest
from conftest import require_tool
from test_packaging import UNIT, clean_env, free_port, serve_and_check

from tegrastats_api import __version__

pytestmark = [pytest.mark.deb, pytest.mark.slow]

REPO = Path(__file__).resolve().parent.parent
NAME = "tegrastats-api"
DEB = REPO / "dist" / ("%s_%s_all.deb" % (NAME, __version__))
SYSTEM_PATH = "/usr/sbin:/usr/bin:/sbin:/bin"
APT_ENV = {"DEBIAN_FRONTEND": "noninteractive", "PATH": SYSTEM_PATH}
# Another apt-get on the machine (unattended upgrades, a second test run) holds the lock
# for a while; wait for it instead of failing.
APT = ["apt-get", "-y", "-q", "-o", "DPkg::Lock::Timeout=300"]


def run(argv: List[str], timeout: float = 600, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kwargs)


@pytest.fixture(scope="module")
def deb() -> Path:
    """``make deb``, once: dist/tegrastats-api_<version>_all.deb, freshly built."""
    require_tool(shutil.which("dpkg-buildpackage"), "dpkg-buildpackage (apt-get install dpkg-dev)")
    require_tool(shutil.which("dh"), "debhelper (apt-get install debhelper)")
    require_tool(shutil.which("dh_python3"), "dh-python (apt-get install dh-python)")
    unmet = run(["dpkg-checkbuilddeps", str(REPO / "packaging" / "debian" / "control")])
    require_tool(unmet.returncode == 0, "the Build-Depends of packaging/debian/control (%s)"
                 % (unmet.stderr.strip() or unmet.stdout.strip()))
    started = time.time()
    result = run(["make", "deb"], cwd=str(REPO), env=clean_env())
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    assert DEB.is_file() and DEB.stat().st_mtime >= started - 1, "make deb did not write %s" % DEB
    return DEB


def deb_field(deb: Path, field: str) -> str:
    return run(["dpkg-deb", "--field", str(deb), field], check=True).stdout.strip()


def test_lintian_reports_no_errors_or_warnings(deb):
    require_tool(shutil.which("lintian"), "lintian (apt-get install lintian)")
    result = run(["lintian", "--fail-on", "error,warning", "--display-info", str(deb)])
    tags = [line for line in result.stdout.splitlines() if re.match(r"[EW]: ", line)]
    assert tags == [] and result.returncode == 0, result.stdout + result.stderr


def test_deb_contents(deb, tmp_path):
    depends = deb_field(deb, "Depends")
    for dep in ["python3-tornado (>= 6.1)", "python3-socketio (>= 5.0.3)", "python3-engineio (>= 4.0.0)",
                "python3-configargparse (>= 1.5.3)", "python3-prometheus-client (>= 0.9.0)"]:
        assert dep in depends
    assert deb_field(deb, "Architecture") == "all" and deb_field(deb, "Version") == __version__

    tree = tmp_path / "tree"
    run(["dpkg-deb", "--extract", str(deb), str(tree)], check=True)
    files = {p.relative_to(tree).as_posix() for p in tree.rglob("*") if p.is_file()}
    for path in ["usr/bin/tegrastats-api", "usr/share/tegrastats-api/static/index.html",
                 "usr/lib/python3/dist-packages/tegrastats_api/data/boards/agx-orin.txt",
                 "etc/tegrastats-api/tegrastats-api.conf", "etc/default/tegrastats-api",
                 "usr/share/man/man1/tegrastats-api.1.gz", "usr/share/doc/tegrastats-api/copyright",
                 "usr/share/doc/tegrastats-api/API.md.gz"]:
        assert path in files, path
    (unit,) = [p for p in files if p.endswith("systemd/system/tegrastats-api.service")]
    assert (tree / unit).read_bytes() == UNIT.read_bytes()
    # The dashboard lives in /usr/share only; no copy inside the Python package.
    assert not [p for p in files if "/tegrastats_api/static/" in p]
    # pip's templates (setup.py data_files) are not shipped next to the real files.
    assert not [p for p in files if p.startswith("usr/share/tegrastats-api/") and "/static/" not in p]
    shebang = (tree / "usr/bin/tegrastats-api").read_text(encoding="utf-8").splitlines()[0]
    assert shebang.replace(" ", "") == "#!/usr/bin/python3", shebang  # the system Python

    control = tmp_path / "control"
    run(["dpkg-deb", "--control", str(deb), str(control)], check=True)
    assert sorted((control / "conffiles").read_text(encoding="utf-8").split()) == [
        "/etc/default/tegrastats-api", "/etc/tegrastats-api/tegrastats-api.conf"]
    postinst = (control / "postinst").read_text(encoding="utf-8")
    assert "deb-systemd-helper" in postinst and "enable" in postinst  # enabled on install
    assert "deb-systemd-invoke" in postinst and "start" in postinst   # started where systemd runs


def _installed() -> bool:
    status = run(["dpkg-query", "-W", "-f", "${Status}", NAME])
    return status.returncode == 0 and "ok installed" in status.stdout


def _purge() -> subprocess.CompletedProcess:
    return run(APT + ["purge", NAME], env=APT_ENV)


def _leftovers(paths: List[str]) -> List[str]:
    return [p for p in paths if os.path.lexists(p)]


def test_apt_install_serve_verify_and_purge(deb, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("NOT ROOT: installing the .deb with apt-get needs root; this test did not run")
    require_tool(shutil.which("apt-get"), "apt-get")
    if _installed():  # a leftover of an interrupted run
        assert _purge().returncode == 0
    files: List[str] = []
    enabled = "/etc/systemd/system/multi-user.target.wants/%s.service" % NAME
    try:
        result = run(APT + ["install", "./dist/%s" % deb.name], cwd=str(REPO), env=APT_ENV)
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert _installed()
        listed = run(["dpkg", "-L", NAME], check=True).stdout.split("\n")
        # The package's files, and its own directories (not /usr/bin, nor /lib -> usr/lib).
        files = [p for p in listed if p and (not os.path.isdir(p) or NAME in p or "tegrastats_api" in p)]
        assert "/usr/bin/tegrastats-api" in files
        assert os.path.islink(enabled), "dh_installsystemd did not enable the unit"

        # The installed command, the system Python and Debian's own libraries.
        system_env: Dict[str, str] = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8", "PYTHONNOUSERSITE": "1"}
        where = run(["/usr/bin/python3", "-c", "import tegrastats_api, tornado, socketio, tegrastats_api.app as a;"
                     "print(tegrastats_api.__file__, tornado.__file__, socketio.__file__, a.default_static_dir())"],
                    env=system_env, cwd=str(tmp_path), check=True).stdout.split()
        assert all(p.startswith("/usr/lib/python3/dist-packages/") for p in where[:3]), where
        assert where[3] == "/usr/share/tegrastats-api/static"
        serve_and_check(["/usr/bin/tegrastats-api"], system_env, tmp_path, free_port())

        shown = run(["/usr/bin/tegrastats-api", "config"], env=system_env, cwd=str(tmp_path), check=True).stdout
        assert "config = /etc/tegrastats-api/tegrastats-api.conf  (default)" in shown

        require_tool(shutil.which("systemd-analyze"), "systemd-analyze (apt-get install systemd)")
        unit_path = "/lib/systemd/system/%s.service" % NAME
        verify = run(["systemd-analyze", "verify", unit_path], cwd="/")
        assert (verify.stdout + verify.stderr).strip() == "", verify.stdout + verify.stderr
        assert verify.returncode == 0
    finally:
        purged = _purge()
    assert purged.returncode == 0, purged.stdout[-4000:] + purged.stderr[-4000:]
    assert not _installed()
    assert _leftovers(files) == []
    assert _leftovers(["/etc/tegrastats-api", "/etc/default/tegrastats-api", enabled,
                       "/var/lib/systemd/deb-systemd-helper-enabled/%s.service.dsh-also" % NAME,
                       "/usr/share/tegrastats-api", "/usr/lib/python3/dist-packages/tegrastats_api"]) == []
