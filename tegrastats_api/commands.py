"""The subcommands: their names, one-line help and examples, and finding the one in argv.

What it does: :data:`COMMANDS` and their help texts (the overview and each ``--help``),
:func:`split_command`, which takes the subcommand out of argv wherever it stands among
the flags, and the messages for a mistyped command or option, which name the closest
one (:func:`unknown_command`, :func:`unknown_arguments`).

What it does not: know the settings (``config`` passes their flags in) or parse values.
"""
from __future__ import annotations

import difflib
from typing import Collection, List, Sequence, Tuple

from tegrastats_api.settings import ConfigError

COMMANDS = ("run", "test", "monitor", "config")
COMMAND_HELP = {
    "run": "serve until SIGINT/SIGTERM",
    "test": "probe every endpoint of a running server, print a table",
    "monitor": "live terminal view of the pushes (JSON lines when not a terminal)",
    "config": "print every effective setting and where it came from",
}
COMMAND_EXAMPLES = {
    "run": ["tegrastats-api run", "tegrastats-api run --port 8080 --simulate orin-nano",
            "TEGRASTATS_API_PORT=8080 tegrastats-api run"],
    "test": ["tegrastats-api test", "tegrastats-api test --host 192.168.1.20 --port 58090 --auth-token T"],
    "monitor": ["tegrastats-api monitor", "tegrastats-api monitor --duration 10 > samples.jsonl"],
    "config": ["tegrastats-api config", "tegrastats-api --config ./my.conf config"],
}


def unknown_command(strays: Sequence[str]) -> ConfigError:
    """No command in argv: name the first stray word, with the closest command if one is close."""
    choices = ", ".join(COMMANDS)
    if not strays:
        return ConfigError("no command given: choose one of %s" % choices)
    for word in strays:
        close = difflib.get_close_matches(word, COMMANDS, n=1)
        if close:
            return ConfigError("unknown command %r: did you mean %r? (commands: %s)" % (word, close[0], choices))
    return ConfigError("unknown command %r: choose one of %s" % (strays[0], choices))


def split_command(argv: Sequence[str], valued: Collection[str], optional: Collection[str]) -> Tuple[str, List[str]]:
    """Take the subcommand out of ``argv``, wherever it stands among the flags.

    ``valued`` are the flags that take a value (skipped with it), ``optional`` those whose
    value may be left out (``--simulate [BOARD]``). Raises :class:`ConfigError` when there
    is no command (:func:`unknown_command`).
    """
    rest = list(argv)
    strays = []
    i = 0
    while i < len(rest):
        token = rest[i]
        if token in COMMANDS:
            return token, rest[:i] + rest[i + 1:]
        if token in valued:
            i += 1  # skip the flag's value
        elif token in optional and i + 1 < len(rest) and rest[i + 1] not in COMMANDS \
                and not rest[i + 1].startswith("-") and not difflib.get_close_matches(rest[i + 1], COMMANDS, n=1):
            i += 1  # `--simulate thor`: the board, not a command (`--simulate runn` is a typo)
        elif token == "--" or not token.startswith("-"):
            strays.append(token)
        i += 1
    raise unknown_command(strays)


def unknown_arguments(extras: Sequence[str], options: Sequence[str]) -> ConfigError:
    """What the parser did not take: an unknown option (with the closest of ``options``) or word."""
    for word in extras:
        if word.startswith("--"):
            name = word.split("=", 1)[0]
            close = difflib.get_close_matches(name, options, n=1)
            return ConfigError("unknown option %s%s" % (name, ": did you mean %s?" % close[0] if close else ""))
    return ConfigError("unexpected argument %r" % extras[0])
