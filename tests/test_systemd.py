"""The .deb under a real systemd: a Debian root made with debootstrap, the package
installed with ``dpkg -i``, the root booted with ``systemd-nspawn --boot``.

What it proves, on each suite (Debian 12 bookworm, Debian 13 trixie), with the unit as
shipped (no drop-in: RestartSec=10 is really waited for):

(a) the service is enabled by the package and started at boot: it answers
    ``GET /api/health`` on 127.0.0.1 (the container shares the host's network), and with
    no tegrastats and no Jetson it serves the simulator with the loud warning;
(b) ``kill -9`` of its MainPID: systemd restarts it after RestartSec (NRestarts=1) and
    it serves again;
(c) a bad setting in /etc/default/tegrastats-api (TEGRASTATS_API_PORT=abc) and
    ``systemctl restart``: the server exits with status 2, which RestartPreventExitStatus
    turns into ``failed`` at once, with no restart scheduled;
(d) ``systemctl stop``: a clean exit (status 0, Result=success) well within
    TimeoutStopSec, MainPID 0, no process of the unit left and the port closed;
(e) the journal has the server's start-up line (``serving on ... (source: ...)``), the
    argument error of (c) and the SIGTERM of (d);
(f) ``systemd-analyze security`` of the installed unit: the score is printed (run with
    ``-s``) and must not get worse than SECURITY_MAX; docs/SYSTEMD.md explains it.

How: ``make deb`` (the ``deb`` fixture of tests/test_deb.py). debootstrap
``--variant=minbase`` with systemd, dbus and the package's Depends, so the container
needs no apt; the root is cached as a tarball in ~/.cache/tegrastats-api/ (keyed by the
suite, the mirror and the package list; rebuilt after CACHE_DAYS) and every run unpacks
a fresh copy into a temporary folder, installs the .deb there with
``systemd-nspawn --pipe dpkg -i`` and boots it with ``--register=no --keep-unit`` (no
systemd needed on the host). Commands run in the booted container through ``nsenter``
into the namespaces of its PID 1. Every wait has a deadline; the container is powered
off (then killed, if it must be) and the copy removed, also when the test fails.

Needs root, debootstrap and systemd-nspawn (``apt-get install debootstrap
systemd-container``) and the Debian mirror; skipped loudly without them or where
systemd-nspawn cannot boot a container (failed when CI=true, like a missing tool). The
first run on a machine takes about a minute more per suite (debootstrap).
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Dict, Iterator, List, Optional

import pytest
import test_deb
from conftest import require_tool
from test_deb import SYSTEM_PATH, run
from test_packaging import UNIT, free_port, http_get, parse_unit

pytestmark = [pytest.mark.slow, pytest.mark.systemd, pytest.mark.timeout(900)]

deb = test_deb.deb  # the `make deb` fixture (module scope), shared with tests/test_deb.py

NAME = "tegrastats-api"
SERVICE = NAME + ".service"
MIRROR = os.environ.get("TEGRASTATS_API_DEBIAN_MIRROR", "http://deb.debian.org/debian")
SUITES = ["bookworm", "trixie"]
# systemd in the container, and the package's runtime Depends (packaging/debian/control),
# so that the root needs no apt and no network once made.
PACKAGES = ["systemd", "systemd-sysv", "dbus", "python3", "python3-tornado", "python3-socketio",
            "python3-engineio", "python3-configargparse", "python3-prometheus-client"]
CACHE = Path(os.environ.get("XDG_CACHE_HOME", str(Path.home() / ".cache"))) / NAME / "debootstrap"
CACHE_DAYS = 30
# Removed from the cached root: apt's downloads and lists (the container has no apt use),
# documentation and translations.
PRUNE = ["var/cache/apt/archives/*.deb", "var/cache/apt/*.bin", "var/lib/apt/lists/*_Packages",
         "var/lib/apt/lists/*Release*", "usr/share/doc/*", "usr/share/man/*", "usr/share/locale/*"]
DEFAULTS_FILE = "etc/default/" + NAME
# `systemd-analyze security` exposure (0 best, 10 worst): the shipped unit scores 5.1
# ("MEDIUM") on systemd 252 (bookworm) and 257 (trixie); more means a hardening option
# went missing. docs/SYSTEMD.md explains the score.
SECURITY_MAX = 5.1

SHIPPED = parse_unit(UNIT.read_text(encoding="utf-8"))["Service"]
RESTART_SEC = float(SHIPPED["RestartSec"][0])
TIMEOUT_STOP_SEC = float(SHIPPED["TimeoutStopSec"][0])


def cannot_run(reason: str) -> None:
    """Skip loudly, or fail with CI=true, as conftest.require_tool does for a missing tool."""
    message = "CANNOT RUN: %s; the .deb under systemd was not tested" % reason
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + " (CI=true makes this a failure)")
    pytest.skip(message)


def wait_for(what: str, check, timeout: float, interval: float = 0.2, detail=None):
    """Poll ``check()`` until it returns something true; fail with ``what`` (and
    ``detail()``, if given) at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() >= deadline:
            pytest.fail("%s: not within %.0f s%s" % (what, timeout, "\n" + detail() if detail else ""))
        time.sleep(interval)


# --- the Debian root ---------------------------------------------------------------


def pristine_root(suite: str) -> Path:
    """The cached tarball of a fresh debootstrap of ``suite``; made when missing or old."""
    key = hashlib.sha256(json.dumps([suite, MIRROR, "minbase", sorted(PACKAGES), PRUNE]).encode()).hexdigest()[:12]
    tarball = CACHE / ("%s-%s.tar" % (suite, key))
    CACHE.mkdir(parents=True, exist_ok=True)
    with open(str(tarball) + ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another run making the same root: wait for it
        if tarball.is_file() and time.time() - tarball.stat().st_mtime < CACHE_DAYS * 86400:
            return tarball
        work = Path(tempfile.mkdtemp(prefix="make-%s-" % suite, dir=str(CACHE)))
        try:
            started = time.monotonic()
            made = run(["debootstrap", "--variant=minbase", "--include=" + ",".join(PACKAGES), suite,
                        str(work / "root"), MIRROR], timeout=600, env={"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"})
            assert made.returncode == 0, "debootstrap %s failed:\n%s" % (suite, (made.stdout + made.stderr)[-5000:])
            for path in PRUNE:  # half the root, never read by the service: faster copies
                for found in (work / "root").glob(path):
                    if found.is_dir() and not found.is_symlink():
                        shutil.rmtree(str(found))
                    else:
                        found.unlink()
            packed = run(["tar", "--numeric-owner", "--xattrs", "-C", str(work / "root"), "-cf",
                          str(work / "root.tar"), "."], timeout=300)
            assert packed.returncode == 0, packed.stderr
            os.replace(str(work / "root.tar"), str(tarball))
            print("\n[systemd] debootstrap %s: %.0f s, cached as %s" % (suite, time.monotonic() - started, tarball))
        finally:
            remove(work)
    return tarball


def remove(folder: Path) -> None:
    """``rm -rf`` a work folder, unmounting first whatever an interrupted debootstrap left
    mounted below it (/proc, /sys, devices): never delete through a mount."""
    below = str(folder) + "/"
    with open("/proc/self/mountinfo") as mountinfo:
        points = [line.split()[4].encode().decode("unicode_escape") for line in mountinfo]
    for point in sorted((p for p in points if p.startswith(below)), key=len, reverse=True):
        subprocess.run(["umount", "--lazy", point], timeout=30, check=False)
    shutil.rmtree(str(folder), ignore_errors=True)
    if folder.exists():
        print("[systemd] could not remove %s" % folder)


def nspawn_env() -> Dict[str, str]:
    env = {"PATH": SYSTEM_PATH, "LANG": "C.UTF-8"}
    # Give the container a pure cgroup v2 tree, as Debian 12 and 13 hosts have, even where
    # the host mounts the hybrid layout (cgroup2 only at /sys/fs/cgroup/unified).
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers") or os.path.isdir("/sys/fs/cgroup/unified"):
        env["SYSTEMD_NSPAWN_UNIFIED_HIERARCHY"] = "1"
    return env


NSPAWN = ["systemd-nspawn", "--register=no", "--keep-unit", "--link-journal=no", "--quiet"]
NSPAWN_TROUBLE = [
    (r"[Oo]peration not permitted|[Pp]ermission denied", "it lacks the privileges for namespaces and mounts "
     "(an unprivileged container? systemd-nspawn needs real root with CAP_SYS_ADMIN)"),
    (r"cgroup", "the cgroup file system here does not suit it"),
    (r"[Nn]ot a directory|[Nn]o such file", "the root is incomplete"),
]


def nspawn_failed(log: str) -> None:
    """Skip (or fail with CI=true) naming why systemd-nspawn could not run here."""
    why = next((reason for pattern, reason in NSPAWN_TROUBLE if re.search(pattern, log)), "see its output")
    cannot_run("systemd-nspawn cannot run a container here: %s. Its output:\n%s" % (why, log[-2000:]))


def install_deb(root: Path, deb_file: Path) -> None:
    """``dpkg -i`` the .deb in the root (systemd-nspawn without --boot: nothing is started)."""
    probe = run(NSPAWN + ["-D", str(root), "--pipe", "/bin/true"], timeout=120, env=nspawn_env())
    if probe.returncode != 0:
        nspawn_failed(probe.stdout + probe.stderr)
    copy = root / "var/tmp" / deb_file.name  # not /tmp: systemd-nspawn mounts a tmpfs there
    shutil.copy(str(deb_file), str(copy))
    result = run(NSPAWN + ["-D", str(root), "--pipe", "-E", "DEBIAN_FRONTEND=noninteractive",
                           "dpkg", "-i", "/var/tmp/" + deb_file.name], timeout=300, env=nspawn_env())
    output = result.stdout + result.stderr
    assert result.returncode == 0, "dpkg -i in the container failed:\n" + output[-4000:]
    copy.unlink()
    enabled = root / "etc/systemd/system/multi-user.target.wants" / SERVICE
    assert enabled.is_symlink(), "the package did not enable %s" % SERVICE


def set_defaults(root: Path, **variables: str) -> None:
    """/etc/default/tegrastats-api as shipped, plus ``TEGRASTATS_API_<NAME>=value`` lines."""
    path = root / DEFAULTS_FILE
    shipped = path.read_text(encoding="utf-8").split("\n# --- set by tests/test_systemd.py")[0]
    lines = ["TEGRASTATS_API_%s=%s" % (k.upper(), v) for k, v in variables.items()]
    path.write_text(shipped + "\n# --- set by tests/test_systemd.py\n" + "\n".join(lines) + "\n", encoding="utf-8")


# --- the booted container ------------------------------------------------------------


class Container:
    """A root booted with ``systemd-nspawn --boot``; :meth:`run` runs a command inside."""

    def __init__(self, root: Path, log: Path, name: str) -> None:
        self.root, self.log, self.name = root, log, name
        self.nspawn: Optional[subprocess.Popen] = None
        self.init_pid = 0  # the container's PID 1, as the host sees it

    def boot(self, timeout: float = 120) -> None:
        with open(str(self.log), "wb") as out:
            self.nspawn = subprocess.Popen(
                NSPAWN + ["--boot", "--console=read-only", "--machine=" + self.name, "-D", str(self.root)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=nspawn_env())
        deadline = time.monotonic() + timeout
        while not self.init_pid:
            if self.nspawn.poll() is not None:
                nspawn_failed(self.log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                nspawn_failed("no container init after %.0f s\n%s" % (timeout, self.log.read_text(errors="replace")))
            self.init_pid = self._find_init()
            time.sleep(0.05)
        state = ""
        while state not in ("running", "degraded"):
            if self.nspawn.poll() is not None:
                nspawn_failed(self.log.read_text(errors="replace"))
            if time.monotonic() > deadline:
                nspawn_failed("the boot did not finish in %.0f s (state %r)\n%s"
                              % (timeout, state, self.log.read_text(errors="replace")))
            left = max(1.0, deadline - time.monotonic())
            try:  # fails at once while PID 1 is not yet systemd or its bus not up
                state = self.run("systemctl", "is-system-running", "--wait", timeout=left).stdout.strip()
            except subprocess.TimeoutExpired:
                state = "timed out"
            time.sleep(0.1)
        if state == "degraded":
            print("[systemd] booted degraded:\n" + self.run("systemctl", "--failed", "--no-pager").stdout)

    def _find_init(self) -> int:
        """The child of systemd-nspawn that is PID 1 of its own namespace and has left nspawn."""
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                status = Path("/proc", entry, "status").read_text()
                exe = os.readlink("/proc/%s/exe" % entry)
            except OSError:
                continue
            ppid = re.search(r"^PPid:\s*(\d+)", status, re.M)
            nspid = re.search(r"^NSpid:\s*(.*)$", status, re.M)
            if (ppid and int(ppid.group(1)) == self.nspawn.pid and nspid and nspid.group(1).split()[-1] == "1"
                    and not exe.endswith("systemd-nspawn")):
                return int(entry)
        return 0

    def run(self, *argv: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """``argv`` in the container (all its namespaces, its root, a clean environment)."""
        return run(["nsenter", "--target", str(self.init_pid), "--all", "--root", "--wd",
                    "env", "-i", "PATH=" + SYSTEM_PATH, "LANG=C.UTF-8", "SYSTEMD_COLORS=0", *argv], timeout=timeout)

    def show(self, *properties: str) -> Dict[str, str]:
        argv = ["systemctl", "show", SERVICE] + ["--property=" + p for p in properties]
        shown = self.run(*argv).stdout
        return dict(line.split("=", 1) for line in shown.splitlines() if "=" in line)

    def journal(self) -> str:
        return self.run("journalctl", "--no-pager", "-o", "cat", "-u", SERVICE).stdout

    def poweroff(self, timeout: float = 60) -> None:
        """SIGRTMIN+4 to its PID 1 (``systemctl poweroff``); SIGKILL at the deadline."""
        if self.nspawn is None or self.nspawn.poll() is not None:
            return
        try:
            if self.init_pid:
                os.kill(self.init_pid, signal.SIGRTMIN + 4)
            else:
                self.nspawn.terminate()  # nspawn asks the container to shut down
            self.nspawn.wait(timeout)
        except (OSError, subprocess.TimeoutExpired):
            print("[systemd] the container did not power off in %.0f s: killing it" % timeout)
            if self.init_pid and self._find_init() == self.init_pid:  # still ours, not a reused PID
                os.kill(self.init_pid, signal.SIGKILL)  # ends every process of its PID namespace
            self.nspawn.kill()
            self.nspawn.wait(30)


@contextmanager
def booted(root: Path, name: str) -> Iterator[Container]:
    container = Container(root, root.parent / "console.log", name)
    try:
        container.boot()
        yield container
    except BaseException:
        if container.log.exists():
            print("[systemd] console, last lines:\n" + container.log.read_text(errors="replace")[-3000:])
        raise
    finally:
        container.poweroff()


# --- the steps -------------------------------------------------------------------------


def health(port: int) -> Optional[dict]:
    try:
        code, _type, body = http_get("http://127.0.0.1:%d/api/health" % port, timeout=2)
        document = json.loads(body)
    except (OSError, ValueError):
        return None
    return document if code == 200 and document.get("status") == "healthy" else None


def refused(port: int) -> bool:
    try:
        http_get("http://127.0.0.1:%d/api/health" % port, timeout=2)
    except OSError:
        return True
    return False


def check_started_at_boot(box: Container, port: int) -> None:
    """(a) and (e): enabled, active since the boot, serving the simulator, logged."""
    assert box.run("systemctl", "is-enabled", SERVICE).stdout.strip() == "enabled"
    shown = box.show("ActiveState", "SubState", "NRestarts", "ExecMainStartTimestampMonotonic", "ExecStart")
    assert (shown["ActiveState"], shown["SubState"]) == ("active", "running"), shown
    assert shown["NRestarts"] == "0" and int(shown["ExecMainStartTimestampMonotonic"]) > 0, shown
    assert "/usr/bin/tegrastats-api" in shown["ExecStart"], shown
    document = wait_for("GET /api/health answers 200 healthy", lambda: health(port), 30, detail=box.journal)
    assert document["service"] == NAME and document["source"] == "simulator", document
    # app.Server.start logs this once it listens and its source runs.
    startup = re.compile(r"serving on http://127\.0\.0\.1:%d \(source: simulator\b" % port)
    wait_for("the start-up line in the journal", lambda: startup.search(box.journal()), 15, detail=box.journal)
    journal = box.journal()
    assert "tegrastats not found" in journal and "SIMULATED" in journal, journal  # the loud warning


def check_restart_after_kill(box: Container, port: int) -> None:
    """(b): kill -9 of MainPID, restarted after RestartSec, serving again."""
    old = box.show("MainPID")["MainPID"]
    assert int(old) > 0
    killed_at = time.monotonic()
    assert box.run("sh", "-c", "kill -9 " + old).returncode == 0
    seen = set()

    def restarted():
        shown = box.show("NRestarts", "MainPID", "ActiveState", "SubState")
        seen.add(shown["SubState"])
        return shown if shown["NRestarts"] == "1" and shown["SubState"] == "running" else None

    shown = wait_for("restart after kill -9", restarted, RESTART_SEC + 30, interval=0.5)
    waited = time.monotonic() - killed_at
    assert shown["MainPID"] not in ("0", old), shown
    assert "auto-restart" in seen, seen  # waited RestartSec in auto-restart...
    assert waited >= RESTART_SEC - 1, waited  # ...and really that long
    wait_for("GET /api/health after the restart", lambda: health(port), 30)
    print("[systemd] kill -9: restarted in %.1f s (RestartSec=%g)" % (waited, RESTART_SEC))


def check_bad_setting_fails_once(box: Container, port: int) -> None:
    """(c): exit status 2 on a bad setting; RestartPreventExitStatus: failed, no restart."""
    before = int(box.show("NRestarts")["NRestarts"])
    set_defaults(box.root, host="127.0.0.1", port="abc")
    box.run("systemctl", "restart", SERVICE, timeout=TIMEOUT_STOP_SEC + 30)
    wait_for("the unit to fail", lambda: box.show("ActiveState")["ActiveState"] in ("failed", "inactive"), 30)
    shown = box.show("ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus", "NRestarts")
    # A restart would be scheduled right at the exit (SubState auto-restart for RestartSec);
    # "failed" here means systemd decided not to restart.
    assert (shown["ActiveState"], shown["SubState"], shown["Result"]) == ("failed", "failed", "exit-code"), shown
    assert (shown["ExecMainCode"], shown["ExecMainStatus"]) == ("1", "2"), shown  # CLD_EXITED, status 2
    assert int(shown["NRestarts"]) <= before, shown
    assert "TEGRASTATS_API_PORT: 'abc' is not a whole number" in box.journal()  # named as /etc/default sets it
    assert refused(port)
    # Back to a good setting; reset-failed also clears StartLimitBurst's count.
    set_defaults(box.root, host="127.0.0.1", port=str(port))
    box.run("systemctl", "reset-failed", SERVICE)
    assert box.run("systemctl", "start", SERVICE).returncode == 0
    wait_for("GET /api/health after fixing the setting", lambda: health(port), 30)


def unit_processes(box: Container, cgroup: str) -> List[str]:
    """The PIDs in the unit's cgroup (v2, or v1's name=systemd tree); [] once removed."""
    for base in ("/sys/fs/cgroup", "/sys/fs/cgroup/systemd"):
        listed = box.run("cat", base + cgroup + "/cgroup.procs")
        if listed.returncode == 0:
            return listed.stdout.split()
    return []


def check_clean_stop(box: Container, port: int) -> None:
    """(d): systemctl stop: exit 0, success, in time, nothing left."""
    before = box.show("MainPID", "ControlGroup")
    pids = unit_processes(box, before["ControlGroup"])
    assert before["MainPID"] in pids, (before, pids)
    started = time.monotonic()
    stopped = box.run("systemctl", "stop", SERVICE, timeout=TIMEOUT_STOP_SEC + 30)
    took = time.monotonic() - started
    assert stopped.returncode == 0, stopped.stderr
    shown = box.show("ActiveState", "SubState", "Result", "ExecMainCode", "ExecMainStatus", "MainPID", "ControlGroup")
    assert (shown["ActiveState"], shown["SubState"], shown["Result"]) == ("inactive", "dead", "success"), shown
    assert (shown["ExecMainCode"], shown["ExecMainStatus"], shown["MainPID"]) == ("1", "0", "0"), shown
    assert took < TIMEOUT_STOP_SEC, "stop took %.1f s (TimeoutStopSec=%g): SIGKILL" % (took, TIMEOUT_STOP_SEC)

    def left() -> List[str]:
        alive = [pid for pid in pids if box.run("test", "-e", "/proc/" + pid).returncode == 0]
        return unit_processes(box, before["ControlGroup"]) + alive

    # The kernel may list an exiting task (as PID 0) for some ms after systemd saw the
    # unit stop; a process that is really left stays.
    wait_for("no process of the unit left after stop", lambda: not left(), 5, interval=0.1,
             detail=lambda: "left: %s" % left())
    assert refused(port)
    journal = box.journal()
    assert "SIGTERM received: stopping" in journal and re.search(r"(?m)stopped$", journal), journal[-2000:]
    print("[systemd] systemctl stop: %.2f s, exit status 0, %d process(es) gone" % (took, len(pids)))


def security_score(box: Container) -> float:
    """(f): ``systemd-analyze security``'s overall exposure, with what limits it printed."""
    result = box.run("systemd-analyze", "security", "--no-pager", SERVICE)
    text = result.stdout + result.stderr
    match = re.search(r"Overall exposure level for %s: (\d+(?:\.\d+)?) (\w+)" % re.escape(SERVICE), text)
    assert match, text
    # The lines that cost something: "✗ Name=  description  exposure".
    costs = [re.sub(r"\s{2,}", "  ", line.strip()) for line in text.splitlines()
             if line.lstrip().startswith("\u2717") and re.search(r"\s(\d\.\d)$", line)]
    costs.sort(key=lambda line: -float(line.split()[-1]))
    version = box.run("systemctl", "--version").stdout.split("\n")[0]
    print("[systemd] systemd-analyze security (%s): %s %s; the biggest costs:\n  %s"
          % (version, match.group(1), match.group(2), "\n  ".join(costs[:12])))
    return float(match.group(1))


# --- the test --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tools() -> None:
    if os.geteuid() != 0:
        cannot_run("NOT ROOT: debootstrap and systemd-nspawn need root")
    uid_map = Path("/proc/self/uid_map").read_text().split()
    if uid_map[:3] != ["0", "0", "4294967295"]:
        cannot_run("root of a user namespace only (uid_map %s): debootstrap and systemd-nspawn need the "
                   "real root, with every uid" % " ".join(uid_map))
    cap_eff = re.search(r"^CapEff:\s*([0-9a-f]+)", Path("/proc/self/status").read_text(), re.M)
    if cap_eff and not int(cap_eff.group(1), 16) & (1 << 21):
        cannot_run("no CAP_SYS_ADMIN (an unprivileged container?): systemd-nspawn cannot mount or make namespaces")
    require_tool(shutil.which("debootstrap"), "debootstrap (apt-get install debootstrap)")
    require_tool(shutil.which("systemd-nspawn"), "systemd-nspawn (apt-get install systemd-container)")
    require_tool(shutil.which("nsenter"), "nsenter (apt-get install util-linux)")


@pytest.mark.parametrize("suite", SUITES)
def test_deb_under_systemd(tools, deb, suite):
    timings = {}
    started = time.monotonic()
    tarball = pristine_root(suite)
    timings["root"] = time.monotonic() - started
    work = Path(tempfile.mkdtemp(prefix="tegrastats-api-systemd-%s-" % suite))
    try:
        root = work / "root"
        root.mkdir()
        unpacked = run(["tar", "--numeric-owner", "--xattrs", "-C", str(root), "-xf", str(tarball)], timeout=300)
        assert unpacked.returncode == 0, unpacked.stderr
        install_deb(root, deb)
        port = free_port()
        set_defaults(root, host="127.0.0.1", port=str(port))
        timings["copy+install"] = time.monotonic() - started - timings["root"]
        with booted(root, "tsapi-" + suite) as box:
            timings["boot"] = time.monotonic() - started - sum(timings.values())
            check_started_at_boot(box, port)
            check_restart_after_kill(box, port)
            check_bad_setting_fails_once(box, port)
            score = security_score(box)
            check_clean_stop(box, port)
            timings["checks"] = time.monotonic() - started - sum(timings.values())
        timings["poweroff"] = time.monotonic() - started - sum(timings.values())
        assert box.nspawn is not None and box.nspawn.returncode == 0, box.log.read_text(errors="replace")[-2000:]
        assert score <= SECURITY_MAX, "systemd-analyze security: %.1f, was at most %.1f" % (score, SECURITY_MAX)
    finally:
        remove(work)
    print("[systemd] %s: %s; total %.0f s" % (suite, ", ".join("%s %.1f s" % kv for kv in timings.items()),
                                               time.monotonic() - started))
