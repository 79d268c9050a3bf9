"""Which source to run, and the recorded lines the simulator and ``--replay`` start from.

What it does: :func:`plan_source` applies docs/API.md section 6.3 (``--replay`` or
``--simulate`` if given; else ``tegrastats`` if found; else, off a Jetson, the simulator
with a loud warning, unless ``--tegrastats`` named one; on a Jetson without tegrastats,
:class:`TegrastatsNotFoundError`)
and returns a :class:`SourcePlan`. :func:`load_board` and :func:`load_replay` read the
simulator's boards (``data/boards/*.txt``, real lines with their citations, from which
:mod:`tegrastats_api.simulator` makes new lines) and replay files (sent verbatim).

What it does not: start anything (see :mod:`tegrastats_api.source`), parse lines, or
read anything but those files and ``/etc/nv_tegra_release``.
"""
from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from typing import Callable, Sequence

from tegrastats_api.files import REPLAY_FILE_LIMIT, read_text_file
from tegrastats_api.settings import DEFAULT_TEGRASTATS, ConfigError
from tegrastats_api.source import TegrastatsNotFoundError, find_executable

DEFAULT_BOARD = "agx-orin"
NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
SYSROOT_ENV = "TEGRASTATS_API_SYSROOT"
BOARDS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "data", "boards")
SIMULATE_DEFAULT = ("", "1", "true", "yes", "on")
SIMULATE_OFF = ("0", "false", "no", "off")


class UnknownBoardError(ValueError):
    """``--simulate`` named a board that has no recorded lines."""

    def __init__(self, board: str, available: Sequence[str]) -> None:
        names = ", ".join(available)
        super().__init__(f"unknown board {board!r} for --simulate; boards: {names}")
        self.board = board
        self.available = list(available)


def is_jetson(release_file: str | None = None) -> bool:
    """True on an NVIDIA Jetson (L4T writes ``/etc/nv_tegra_release``; looked for under
    ``$TEGRASTATS_API_SYSROOT``, default ``/``, as every board file is)."""
    if release_file is None:
        root = os.environ.get(SYSROOT_ENV) or "/"
        release_file = os.path.join(root, NV_TEGRA_RELEASE.lstrip("/"))
    return os.path.exists(release_file)


def _read_data_lines(path: str) -> list[str]:
    with open(path, encoding="utf-8") as handle:
        rows = [row.rstrip("\r\n") for row in handle]
    return [row for row in rows if row.strip() and not row.lstrip().startswith("#")]


def list_boards() -> list[str]:
    """The boards ``--simulate`` knows, sorted (``agx-orin``, ``nano``, ...)."""
    return sorted(name[:-4] for name in os.listdir(BOARDS_DIR) if name.endswith(".txt"))


def load_board(name: str) -> list[str]:
    """The recorded lines of a board; raises :class:`UnknownBoardError`."""
    board = name.strip().lower().replace("_", "-")
    boards = list_boards()
    if board not in boards:
        raise UnknownBoardError(name, boards)
    return _read_data_lines(os.path.join(BOARDS_DIR, board + ".txt"))


def load_replay(path: str) -> list[str]:
    """The lines of a replay file (``#`` comments and blank lines skipped).

    The file must be a regular file of at most ``REPLAY_FILE_LIMIT`` bytes (64 MiB): a
    FIFO, device or directory is refused without blocking or reading it. Raises
    FileNotFoundError (or another OSError) if it cannot be read and ValueError (one line)
    if it is not a regular file, is too big, is not UTF-8 or holds no lines.
    """
    text = read_text_file(path, REPLAY_FILE_LIMIT)
    rows = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    lines = [row for row in rows if row.strip() and not row.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"replay file {path} has no tegrastats lines")
    return lines


def _missing_text(tegrastats: str) -> str:
    if os.sep not in tegrastats:
        what = "%r is not on PATH" % tegrastats
    elif not os.path.exists(tegrastats):
        what = "%s does not exist" % tegrastats
    elif os.path.isdir(tegrastats):
        what = "%s is a directory" % tegrastats
    else:
        what = "%s is not executable" % tegrastats
    return what + " (a tegrastats named explicitly is never replaced by simulated data: use --simulate for that)"


def find_tegrastats(
    tegrastats: str = DEFAULT_TEGRASTATS,
    which: Callable[[str], str | None] = shutil.which,
    is_jetson: Callable[[], bool] = is_jetson,
) -> str | None:
    """The path of the tegrastats to run, or None: not found, not a Jetson, and not named
    explicitly (``--tegrastats`` left at its default), so the simulator stands in.

    Raises :class:`TegrastatsNotFoundError` on a Jetson without it, and
    :class:`~tegrastats_api.settings.ConfigError` (naming ``--tegrastats``) for one named
    explicitly that is missing elsewhere: a typo must not turn into simulated data.
    """
    path = find_executable(tegrastats, which)
    if path is not None:
        return path
    if is_jetson():
        raise TegrastatsNotFoundError(tegrastats)
    if tegrastats != DEFAULT_TEGRASTATS:
        raise ConfigError(_missing_text(tegrastats), "tegrastats")
    return None


@dataclass(frozen=True)
class SourcePlan:
    """Which source to run: ``kind`` is ``tegrastats``, ``simulator`` or ``replay``.

    ``argv`` is set for tegrastats, ``lines`` for the others (the recorded lines of the
    simulated board, or the replay file's), ``board`` for the simulator; ``warning`` is a
    text to log loudly, or None.
    """

    kind: str
    argv: list[str] = field(default_factory=list)
    lines: list[str] = field(default_factory=list)
    board: str | None = None
    warning: str | None = None


def _simulated_board(simulate: str | None) -> str | None:
    if simulate is None or simulate.strip().lower() in SIMULATE_OFF:
        return None
    if simulate.strip().lower() in SIMULATE_DEFAULT:
        return DEFAULT_BOARD
    return simulate.strip().lower().replace("_", "-")


def plan_source(
    *,
    tegrastats: str = DEFAULT_TEGRASTATS,
    interval_ms: int = 1000,
    simulate: str | None = None,
    replay: str | None = None,
    which: Callable[[str], str | None] = shutil.which,
    is_jetson: Callable[[], bool] = is_jetson,
) -> SourcePlan:
    """Choose the source by docs/API.md section 6.3; reads board or replay files only.

    ``--replay`` wins over ``--simulate`` (with a warning); then a found tegrastats; then,
    off a Jetson, the ``agx-orin`` simulator with a warning. Raises what
    :func:`find_tegrastats` raises, :class:`UnknownBoardError`, and load_replay's errors.
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be positive, got {interval_ms!r}")
    board = _simulated_board(simulate)
    if replay:
        warning = None if board is None else f"--simulate {simulate} ignored: --replay wins"
        return SourcePlan(kind="replay", lines=load_replay(replay), warning=warning)
    if board is not None:
        return SourcePlan(kind="simulator", lines=load_board(board), board=board)
    path = find_tegrastats(tegrastats, which, is_jetson)
    if path is not None:
        return SourcePlan(kind="tegrastats", argv=[path, "--interval", str(interval_ms)])
    warning = (
        f"tegrastats not found ({tegrastats!r}) and this is not a Jetson (no {NV_TEGRA_RELEASE}): serving SIMULATED "
        f"data (an {DEFAULT_BOARD} simulated from recorded lines); use --simulate BOARD to choose a board and "
        "silence this, or --tegrastats PATH"
    )
    return SourcePlan(kind="simulator", lines=load_board(DEFAULT_BOARD), board=DEFAULT_BOARD,
                      warning=warning)
