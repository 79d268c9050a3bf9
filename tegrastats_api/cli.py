"""The ``tegrastats-api`` command: ``run``, ``test``, ``monitor`` and ``config``.

What it does: turns argv and the environment into a :class:`~tegrastats_api.settings.Config`
(via :func:`tegrastats_api.config.load`), configures logging, dispatches to the
command and maps every failure it can name to an exit status with one clear line.
This is the only module that prints or configures logging.

What it does not: serve, probe or render by itself; ``app``, ``probe`` and ``console``
do that.
"""
from __future__ import annotations

import logging
import os
import sys
from enum import IntEnum
from typing import IO, Callable, Dict, List, Mapping, Optional

from tegrastats_api import __version__
from tegrastats_api.commands import COMMAND_HELP, COMMANDS
from tegrastats_api.config import Loaded, describe, load
from tegrastats_api.settings import DEFAULT_TEGRASTATS, ConfigError, check_files

log = logging.getLogger(__name__)


class ExitStatus(IntEnum):
    """Exit codes of every command (docs/API.md section 6.2)."""

    OK = 0
    FAILURE = 1
    USAGE = 2
    NO_TEGRASTATS = 3


OVERVIEW = """usage: tegrastats-api [--version] COMMAND [settings]

Serve NVIDIA Jetson tegrastats over REST, WebSocket, Socket.IO and a dashboard.

commands:
%s

Settings (--host, --port, --simulate, ...) go before or after the command; every one
also reads a TEGRASTATS_API_* environment variable and the config file.
`tegrastats-api COMMAND --help` lists them.

examples:
  tegrastats-api run                      # serve on port 58090
  tegrastats-api run --simulate thor      # no Jetson? replay a recorded AGX Thor
  tegrastats-api test --port 58090        # probe a running server
  tegrastats-api config                   # where does each setting come from?
""" % "\n".join("  %-8s %s" % (name, COMMAND_HELP[name]) for name in COMMANDS)


class Console:
    """Where the commands write: ``out`` for results, ``err`` for one-line errors."""

    def __init__(self, out: IO[str], err: IO[str]) -> None:
        self.out = out
        self.err = err

    def print(self, text: str = "") -> None:
        self.out.write(text + "\n")
        self.out.flush()

    def error(self, text: str) -> None:
        self.err.write("tegrastats-api: error: %s\n" % text)
        self.err.flush()


def configure_logging(level: str, stream: IO[str]) -> None:
    """Plain text on stderr (journald adds its own timestamps under systemd)."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    # Tornado's access log at INFO would log every request; keep it for DEBUG.
    logging.getLogger("tornado.access").setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)
    for noisy in ("engineio", "socketio"):
        logging.getLogger(noisy).setLevel(logging.DEBUG if level == "DEBUG" else logging.WARNING)


def cmd_run(loaded: Loaded, console: Console) -> int:
    config = loaded.config
    check_files(config)  # every setting is checked before anything is logged or bound
    from tegrastats_api.app import ListenError, run
    from tegrastats_api.source import TegrastatsNotFoundError

    configure_logging("DEBUG" if config.debug else config.log_level, console.err)
    try:
        return int(run(config))
    except TegrastatsNotFoundError as err:
        named = loaded.label("tegrastats") + ": " if config.tegrastats != DEFAULT_TEGRASTATS else ""
        console.error("%s%s (install tegrastats, set --tegrastats PATH, or use --simulate)" % (named, err))
        return ExitStatus.NO_TEGRASTATS
    except ListenError as err:
        # A runtime failure, not a bad setting: a port in use may be free again soon, an
        # address may not be up yet at boot (systemd restarts after 1, not after 2).
        console.error("%s: %s" % (loaded.label(err.setting), err))
        return ExitStatus.FAILURE


def cmd_config(loaded: Loaded, console: Console) -> int:
    check_files(loaded.config)  # what `run` would refuse, `config` refuses too
    for line in describe(loaded):
        console.print(line)
    return ExitStatus.OK


def cmd_test(loaded: Loaded, console: Console) -> int:
    from tegrastats_api.probe import format_table, probe_all

    results = probe_all(loaded.config)
    for line in format_table(results):
        console.print(line)
    return ExitStatus.OK if all(r.ok for r in results) else ExitStatus.FAILURE


def cmd_monitor(loaded: Loaded, console: Console) -> int:
    from tegrastats_api.monitor import MonitorError, monitor

    try:
        monitor(loaded.config, console.out, console.err, duration=loaded.options["duration"])
    except MonitorError as err:
        console.error(str(err))
        return ExitStatus.FAILURE
    except KeyboardInterrupt:
        pass
    return ExitStatus.OK


DISPATCH: Dict[str, Callable[[Loaded, Console], int]] = {
    "run": cmd_run,
    "test": cmd_test,
    "monitor": cmd_monitor,
    "config": cmd_config,
}


def main(
    argv: Optional[List[str]] = None,
    environ: Optional[Mapping[str, str]] = None,
    stdout: Optional[IO[str]] = None,
    stderr: Optional[IO[str]] = None,
) -> int:
    """Run the command line; returns the process exit status (never raises SystemExit)."""
    args = sys.argv[1:] if argv is None else list(argv)
    console = Console(stdout or sys.stdout, stderr or sys.stderr)
    if "--version" in args:
        console.print("tegrastats-api %s" % __version__)
        return ExitStatus.OK
    if not args or args[0] in ("-h", "--help", "help"):
        (console.print if args else console.err.write)(OVERVIEW)
        return ExitStatus.OK if args else ExitStatus.USAGE
    try:
        loaded = load(args, os.environ if environ is None else environ)
    except ConfigError as err:  # already names each setting by where its value came from
        console.error(str(err))
        return ExitStatus.USAGE
    except SystemExit as exit_:  # argparse after --help
        return int(exit_.code or 0)
    try:
        return int(DISPATCH[str(loaded.command)](loaded, console))
    except ConfigError as err:
        console.error(loaded.explain(err))
        return ExitStatus.USAGE
