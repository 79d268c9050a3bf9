"""Board facts: which Jetson this is, on which JetPack, in which power mode, fans running.

What it does: pure ``parse_*`` functions turn the contents of the board's own files into
facts (``None`` for anything missing or malformed, never an exception), and
:class:`BoardReader` reads those files under a root directory (``/``, or
``$TEGRASTATS_API_SYSROOT``, read once by :func:`sysroot_from_environ`) and answers
:meth:`BoardReader.facts`, the document of ``GET /api/board`` (docs/API.md, `GET /api/board`):

- ``model``: ``/proc/device-tree/model`` (``NVIDIA Jetson AGX Orin Developer Kit\\0``);
- ``l4t``: the first line of ``/etc/nv_tegra_release`` (``# R36 (release), REVISION: 4.3,
  GCID: ...`` is ``36.4.3``), ``jetpack`` from :data:`JETPACK_BY_L4T` (None if not listed);
- ``power_mode``: ``/var/lib/nvpmodel/status`` (``pmode:0002 fmode:quiet``), named by the
  ``< POWER_MODEL ID=2 NAME=MAXN_SUPER >`` line of ``/etc/nvpmodel.conf``;
- ``fans``: hwmon devices named ``pwmfan`` (``pwm1``, 0-255; ``rpm`` or ``fan1_input`` of
  their own, else the one ``pwm_tach`` device's ``rpm`` when there is one fan to give it
  to: JetPack 5 to 7), or JetPack 4's ``/sys/devices/pwm-fan/`` (``cur_pwm`` of
  ``pwm_cap``, ``rpm_measured``) when no hwmon fan is found;
- ``hostname``, ``kernel``, ``uptime``: ``/proc/sys/kernel/{hostname,osrelease}``, ``/proc/uptime``.

Model, release, the mode names, hostname and kernel are read once; power mode, fans and
uptime at most every :data:`REFRESH_S` seconds, lazily when someone asks (no timer). The
reads happen on the event loop: a few small procfs/sysfs files, well under a millisecond
every few seconds, cheaper than handing them to a thread. Every file is opened
non-blocking and must be a regular file, so a FIFO or device planted in a sysroot cannot
stall the loop. A simulated board (``source`` ``simulator``) carries the identity of the
board its lines were recorded on (:data:`SIMULATED_BOARDS`) and no power mode or fans;
hostname, kernel and uptime always describe the machine the server runs on.

What it does not: run programs (``nvpmodel``, ``jetson_release``), need root, write
anything, or serve HTTP (see :mod:`tegrastats_api.handlers`).
"""
from __future__ import annotations

import os
import re
import stat
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Mapping, NamedTuple, Optional, Tuple

SYSROOT_ENV = "TEGRASTATS_API_SYSROOT"
DEFAULT_SYSROOT = "/"
REFRESH_S = 2.0  # power mode, fans and uptime are read again after this long
READ_LIMIT_BYTES = 1024 * 1024  # nvpmodel.conf is about 30 kB; nothing read is bigger
HWMON_LIMIT = 64  # hwmon devices looked at (a Jetson has about ten)
PWM_FULL = 255  # hwmon pwm1 and JetPack 4's cur_pwm count 0..255 unless pwm_cap says otherwise
SOURCES = ("board", "simulator", "replay")

MODEL = "proc/device-tree/model"
RELEASE = "etc/nv_tegra_release"
NVPMODEL_STATUS = "var/lib/nvpmodel/status"
NVPMODEL_CONF = "etc/nvpmodel.conf"
HWMON = "sys/class/hwmon"
LEGACY_FAN = "sys/devices/pwm-fan"
HOSTNAME = "proc/sys/kernel/hostname"
OSRELEASE = "proc/sys/kernel/osrelease"
UPTIME = "proc/uptime"

# Exact L4T releases and the JetPack that ships them: NVIDIA's JetPack archive as listed by
# jtop (rbonghi/jetson_stats jtop/core/jetson_variables.py, NVIDIA_JETPACK), plus the later
# releases from NVIDIA's release notes. A release not listed gives jetpack null: a guess
# would be wrong (L4T 35.1 was JetPack 5.0.2 but 35.2.1 was 5.1). docs/API.md prints it.
JETPACK_BY_L4T = {
    "39.2.1": "7.2.1", "39.2.0": "7.2",
    "38.4.0": "7.1", "38.2.1": "7.0", "38.2.0": "7.0",
    "36.4.4": "6.2.1", "36.4.3": "6.2", "36.4.2": "6.1", "36.4.0": "6.1", "36.3.0": "6.0", "36.2.0": "6.0 DP",
    "35.6.1": "5.1.5", "35.6.0": "5.1.4", "35.5.0": "5.1.3", "35.4.1": "5.1.2", "35.3.1": "5.1.1",
    "35.2.1": "5.1", "35.1.0": "5.0.2", "34.1.1": "5.0.1 DP", "34.1.0": "5.0 DP",
    "32.7.6": "4.6.6", "32.7.5": "4.6.5", "32.7.4": "4.6.4", "32.7.3": "4.6.3", "32.7.2": "4.6.2",
    "32.7.1": "4.6.1", "32.6.1": "4.6", "32.5.2": "4.5.1", "32.5.1": "4.5.1", "32.5.0": "4.5",
    "32.4.4": "4.4.1", "32.4.3": "4.4", "32.3.1": "4.3", "32.2.1": "4.2.2", "32.2.0": "4.2.1",
    "32.1.0": "4.2", "31.1.0": "4.1.1", "28.4.0": "3.3.3", "28.2.0": "3.2", "28.1.0": "3.1",
}

_RELEASE_RE = re.compile(r"^#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?(?:[,\s]|$)")
_PMODE_RE = re.compile(r"^\s*pmode:\s*(\d{1,6})(?:\s|$)")
_MODE_RE = re.compile(r"^\s*<\s*POWER_MODEL\s+ID\s*=\s*(\d{1,6})\s+NAME\s*=\s*([^\s>]{1,64})\s*>", re.M)
_NUMBER_RE = re.compile(r"^\s*(\d{1,7})\s*$")
_HWMON_RE = re.compile(r"^hwmon(\d{1,6})$")


class Recorded(NamedTuple):
    """The identity of the board a simulator's lines were recorded on (data/boards/*.txt)."""

    model: str
    l4t: Optional[str]
    jetpack: Optional[str]


# Each ``--simulate`` board, from the header of its data/boards/*.txt: L4T and JetPack only
# where the recording says which exact release it was (elsewhere it names a major only).
SIMULATED_BOARDS = {
    "agx-orin": Recorded("NVIDIA Jetson AGX Orin 64GB", "36.4.4", "6.2.1"),
    "agx-xavier": Recorded("NVIDIA Jetson AGX Xavier 32GB", None, None),
    "nano": Recorded("NVIDIA Jetson Nano 4GB", None, None),
    "orin-nano": Recorded("NVIDIA Jetson Orin Nano 8GB", None, None),
    "orin-nx": Recorded("NVIDIA Jetson Orin NX 16GB", None, None),
    "thor": Recorded("NVIDIA Jetson AGX Thor 128GB", "38.4.0", "7.1"),
    "tx1": Recorded("NVIDIA Jetson TX1", None, None),
    "tx2": Recorded("NVIDIA Jetson TX2 8GB", None, None),
    "xavier-nx": Recorded("NVIDIA Jetson Xavier NX 8GB", None, None),
}


def sysroot_from_environ(environ: Mapping[str, str]) -> str:
    """The root every board file is read under: ``$TEGRASTATS_API_SYSROOT``, else ``/``."""
    return environ.get(SYSROOT_ENV, "").strip() or DEFAULT_SYSROOT


# --- pure parsers: file contents in, a fact or None out ----------------------------------


def _text(data: Optional[bytes]) -> Optional[str]:
    if data is None:
        return None
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return None


def parse_word(data: Optional[bytes]) -> Optional[str]:
    """A one-line printable value (device-tree strings end in NUL): the model, hostname,
    kernel release; None when empty, not UTF-8, over 200 characters or not printable."""
    text = _text(data.rstrip(b"\x00") if data is not None else None)
    if text is None:
        return None
    text = text.strip()
    if not text or len(text) > 200 or not text.isprintable():
        return None
    return text


def parse_l4t(data: Optional[bytes]) -> Optional[str]:
    """``# R36 (release), REVISION: 4.3, GCID: ...`` (first line) -> ``"36.4.3"``."""
    text = _text(data)
    match = _RELEASE_RE.match(text.split("\n", 1)[0]) if text else None
    if match is None:
        return None
    major, minor, patch = match.groups()
    return "%d.%d.%d" % (int(major), int(minor), int(patch or 0))


def jetpack_for(l4t: Optional[str]) -> Optional[str]:
    """The JetPack of an L4T release (:data:`JETPACK_BY_L4T`), None when not listed."""
    return JETPACK_BY_L4T.get(l4t) if l4t else None


def parse_pmode(data: Optional[bytes]) -> Optional[int]:
    """``pmode:0002`` (maybe followed by ``fmode:...``) -> 2."""
    text = _text(data)
    match = _PMODE_RE.match(text) if text else None
    return int(match.group(1)) if match else None


def parse_mode_names(data: Optional[bytes]) -> Dict[int, str]:
    """``{id: name}`` of every ``< POWER_MODEL ID=n NAME=name >`` line (the first one wins)."""
    names: Dict[int, str] = {}
    for match in _MODE_RE.finditer(_text(data) or ""):
        names.setdefault(int(match.group(1)), match.group(2))
    return names


def parse_count(data: Optional[bytes], limit: int = 10 ** 6) -> Optional[int]:
    """A whole number 0..limit alone in the file (``pwm1``, ``rpm``), else None."""
    text = _text(data)
    match = _NUMBER_RE.match(text) if text else None
    if match is None or int(match.group(1)) > limit:
        return None
    return int(match.group(1))


def pwm_percent(pwm: Optional[int], full: Optional[int] = PWM_FULL) -> Optional[float]:
    """PWM duty as percent of full scale, one decimal; None when unknown or out of range."""
    if pwm is None or not full or full < 1 or pwm > full:
        return None
    return round(pwm * 100.0 / full, 1)


def parse_uptime(data: Optional[bytes]) -> Optional[float]:
    """``/proc/uptime`` (``12345.67 45678.90``) -> 12345.67 seconds."""
    text = _text(data)
    try:
        value = float(text.split()[0]) if text and text.split() else None
    except ValueError:
        return None
    return value if value is not None and 0 <= value < 1e10 else None


# --- the facts ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Fan:
    """One fan: ``speed_pct`` of full PWM, ``rpm`` from a tachometer (None without one)."""

    name: str
    speed_pct: Optional[float]
    rpm: Optional[int]

    def to_dict(self) -> Dict[str, Any]:
        return {"name": self.name, "speed": self.speed_pct, "rpm": self.rpm}


@dataclass(frozen=True)
class BoardFacts:
    """The document of ``GET /api/board`` (without its timestamp); None means "not known"."""

    source: str
    model: Optional[str] = None
    l4t: Optional[str] = None
    jetpack: Optional[str] = None
    power_mode_id: Optional[int] = None
    power_mode_name: Optional[str] = None
    fans: Tuple[Fan, ...] = field(default_factory=tuple)
    hostname: Optional[str] = None
    kernel: Optional[str] = None
    uptime_s: Optional[float] = None

    def to_dict(self, timestamp: Optional[str]) -> Dict[str, Any]:
        mode = None if self.power_mode_id is None else {"id": self.power_mode_id, "name": self.power_mode_name}
        return {
            "model": self.model, "l4t": self.l4t, "jetpack": self.jetpack, "power_mode": mode,
            "fans": [fan.to_dict() for fan in self.fans], "hostname": self.hostname, "kernel": self.kernel,
            "uptime": self.uptime_s, "source": self.source, "timestamp": timestamp,
        }

    def describe(self) -> str:
        """One line for the start-up log (see :func:`describe`)."""
        return describe(self.to_dict(None))


def describe(document: Mapping[str, Any]) -> str:
    """A ``/api/board`` document in one line, for logs and terminals: ``NVIDIA Jetson AGX
    Orin, JetPack 6.2 (L4T 36.4.3), power mode MAXN, fan 42%``; ``unknown board`` when
    nothing is known, ``simulated ...`` for the simulator. Pure: takes the JSON as parsed."""
    simulated = "simulated " if document.get("source") == "simulator" else ""
    parts = [simulated + (document.get("model") or "unknown board")]
    if document.get("l4t"):
        parts.append("JetPack %s (L4T %s)" % (document.get("jetpack") or "?", document["l4t"]))
    mode = document.get("power_mode")
    if mode:
        parts.append("power mode %s" % (mode.get("name") or mode.get("id")))
    for fan in document.get("fans") or []:
        parts.append("fan %s%%" % ("?" if fan.get("speed") is None else "%g" % fan["speed"]))
    return ", ".join(parts)


class BoardReader:
    """Reads the board's files under ``sysroot`` (None: read nothing, every fact unknown).

    ``source`` is ``board``, ``simulator`` or ``replay``; ``recorded`` (the simulator)
    replaces model, L4T and JetPack and drops power mode and fans. ``clock`` gives
    monotonic seconds for the cache (tests pass a fake one).
    """

    def __init__(self, sysroot: Optional[str] = DEFAULT_SYSROOT, *, source: str = "board",
                 recorded: Optional[Recorded] = None, clock: Callable[[], float] = time.monotonic,
                 refresh_s: float = REFRESH_S) -> None:
        if source not in SOURCES:
            raise ValueError("source must be one of %s, not %r" % (", ".join(SOURCES), source))
        self.sysroot = sysroot
        self.source = source
        self.recorded = recorded
        self.clock = clock
        self.refresh_s = refresh_s
        self._static: Optional[Dict[str, Any]] = None
        self._dynamic: Dict[str, Any] = {}
        self._read_at: Optional[float] = None

    @classmethod
    def for_source(cls, kind: str, board: Optional[str], sysroot: Optional[str], **options: Any) -> BoardReader:
        """The reader for a source plan: ``tegrastats`` reads the board; ``replay`` too (its
        lines carry no identity, so the sysroot's files are what there is); ``simulator``
        the recorded identity of ``board``."""
        if kind == "simulator":
            recorded = SIMULATED_BOARDS.get(board or "")
            return cls(sysroot, source="simulator", recorded=recorded or Recorded("", None, None), **options)
        return cls(sysroot, source="replay" if kind == "replay" else "board", **options)

    def read(self, relative: str) -> Optional[bytes]:
        """The bytes of ``sysroot/relative``; None unless it is a readable regular file of at
        most :data:`READ_LIMIT_BYTES` (opened non-blocking: a FIFO never stalls the loop)."""
        if self.sysroot is None:
            return None
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
        try:
            fd = os.open(os.path.join(self.sysroot, relative), flags)
        except (OSError, ValueError):  # ValueError: a NUL in the path
            return None
        try:
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                return None
            chunks: List[bytes] = []
            size = 0
            while size <= READ_LIMIT_BYTES:
                chunk = os.read(fd, 65536)
                if not chunk:
                    return b"".join(chunks)
                chunks.append(chunk)
                size += len(chunk)
            return None
        except OSError:  # EIO from a driver, EAGAIN...
            return None
        finally:
            os.close(fd)

    @property
    def model(self) -> Optional[str]:
        """The model (static: read once), for ``/api/health``."""
        return self.static()["model"]

    def static(self) -> Dict[str, Any]:
        """Model, L4T, JetPack, mode names, hostname and kernel: read on the first call only."""
        if self._static is None:
            recorded = self.recorded
            l4t = parse_l4t(self.read(RELEASE))
            self._static = {
                "model": (recorded.model or None) if recorded else parse_word(self.read(MODEL)),
                "l4t": recorded.l4t if recorded else l4t,
                "jetpack": recorded.jetpack if recorded else jetpack_for(l4t),
                "modes": {} if recorded else parse_mode_names(self.read(NVPMODEL_CONF)),
                "hostname": parse_word(self.read(HOSTNAME)),
                "kernel": parse_word(self.read(OSRELEASE)),
            }
        return self._static

    def facts(self) -> BoardFacts:
        """Every fact; the dynamic ones are at most :attr:`refresh_s` old (uptime is exact:
        the last reading plus the time since)."""
        static = self.static()
        now = self.clock()
        if self._read_at is None or not 0 <= now - self._read_at < self.refresh_s:
            self._dynamic = self._read_dynamic()
            self._read_at = now
        mode = self._dynamic["mode"]
        uptime = self._dynamic["uptime"]
        return BoardFacts(
            source=self.source, model=static["model"], l4t=static["l4t"], jetpack=static["jetpack"],
            power_mode_id=mode, power_mode_name=None if mode is None else static["modes"].get(mode),
            fans=self._dynamic["fans"], hostname=static["hostname"], kernel=static["kernel"],
            uptime_s=None if uptime is None else round(uptime + (now - self._read_at), 2),
        )

    def _read_dynamic(self) -> Dict[str, Any]:
        simulated = self.recorded is not None
        return {
            "mode": None if simulated else parse_pmode(self.read(NVPMODEL_STATUS)),
            "fans": () if simulated else tuple(self._hwmon_fans() or self._legacy_fans()),
            "uptime": parse_uptime(self.read(UPTIME)),
        }

    def _hwmon_fans(self) -> List[Fan]:
        """``pwmfan`` devices (names made unique: ``pwmfan``, ``pwmfan_2``...), in hwmon order;
        a fan without an ``rpm`` of its own gets the ``pwm_tach`` reading when it is the only one."""
        fans: List[Fan] = []
        tachs: List[Optional[int]] = []
        for device in self._hwmon_devices():
            name = parse_word(self.read(device + "/name"))
            rpm = parse_count(self.read(device + "/rpm"))
            if rpm is None:
                rpm = parse_count(self.read(device + "/fan1_input"))
            if name == "pwmfan":
                pwm = self.read(device + "/pwm1")
                if pwm is None:
                    continue  # not a fan we can read (JetPack 4's pwmfan has no pwm1)
                count = sum(1 for fan in fans if fan.name.split("_")[0] == "pwmfan")
                fans.append(Fan("pwmfan" if not count else "pwmfan_%d" % (count + 1),
                                pwm_percent(parse_count(pwm)), rpm))
            elif name == "pwm_tach":
                tachs.append(rpm)
        without_rpm = [i for i, fan in enumerate(fans) if fan.rpm is None]
        if len(without_rpm) == 1 and len(tachs) == 1:
            fan = fans[without_rpm[0]]
            fans[without_rpm[0]] = Fan(fan.name, fan.speed_pct, tachs[0])
        return fans

    def _hwmon_devices(self) -> List[str]:
        if self.sysroot is None:
            return []
        try:
            entries = os.listdir(os.path.join(self.sysroot, HWMON))
        except (OSError, ValueError):
            return []
        numbered = sorted((int(m.group(1)), name) for name in entries for m in [_HWMON_RE.match(name)] if m)
        return [HWMON + "/" + name for _number, name in numbered[:HWMON_LIMIT]]

    def _legacy_fans(self) -> List[Fan]:
        """JetPack 4: ``/sys/devices/pwm-fan/cur_pwm`` (of ``pwm_cap``) and ``rpm_measured``."""
        pwm = parse_count(self.read(LEGACY_FAN + "/cur_pwm"))
        if pwm is None:
            return []
        cap = self.read(LEGACY_FAN + "/pwm_cap")
        full = parse_count(cap) if cap is not None else PWM_FULL
        return [Fan("pwm-fan", pwm_percent(pwm, full), parse_count(self.read(LEGACY_FAN + "/rpm_measured")))]
