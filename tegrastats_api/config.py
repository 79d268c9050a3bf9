"""The command line's settings loader: flags, ``TEGRASTATS_API_*`` variables and the config file.

What it does: declares every setting of docs/API.md section 6.1 once (:data:`SETTINGS`), reads
them with one configargparse parser with precedence flag > environment variable > config
file > default, with flags accepted on both sides of the subcommand, records where each
value came from, and turns them into a :class:`~tegrastats_api.settings.Config`. A bad
value is one :class:`~tegrastats_api.settings.ConfigError` naming the setting the way the
user gave it: the flag, the environment variable, or the key in the config file.

What it does not: hold or validate the settings' values (that is
:mod:`tegrastats_api.settings`, which the server imports without this module), print,
configure logging or start anything (that is ``cli``). It never passes the argparse
namespace on: callers get a :class:`Loaded`.

Why the subcommand is taken out of argv before parsing: configargparse with subparsers
has a history of env/config values landing after the subcommand (bw2/ConfigArgParse#57,
#350), and 1.5 and 1.9 differ. Parsing one flat argument list with one parser avoids
all of it, on every version. Values are parsed as text and converted here, not by
argparse, so that a bad one can be named by where it came from.
"""
from __future__ import annotations

import argparse
import io
import os
from typing import IO, Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import configargparse

from tegrastats_api.commands import COMMAND_EXAMPLES, COMMAND_HELP, COMMANDS, split_command, unknown_arguments
from tegrastats_api.files import CONFIG_FILE_LIMIT, REPLAY_FILE_LIMIT, os_reason, read_text_file
from tegrastats_api.settings import (
    DEFAULT_BOARD,
    DEFAULT_HOST,
    DEFAULT_PORT,
    LOG_LEVELS,
    MAX_UPDATE_INTERVAL_S,
    MIN_UPDATE_INTERVAL_S,
    Config,
    ConfigError,
    check_files,
    flag_of,
    host_valid,
)

# Names other modules and user code imported from here before settings.py existed.
__all__ = [
    "CONFIG_FILE_LIMIT", "COMMANDS", "Config", "ConfigError", "DEFAULT_BOARD", "DEFAULT_HOST", "DEFAULT_PORT",
    "LOG_LEVELS", "Loaded", "MAX_UPDATE_INTERVAL_S", "MIN_UPDATE_INTERVAL_S", "REPLAY_FILE_LIMIT", "SETTINGS",
    "build_parser", "check_files", "describe", "host_valid", "load", "read_text_file", "COMMAND_HELP",
]

DEFAULT_CONFIG_FILE = "/etc/tegrastats-api/tegrastats-api.conf"
ENV_PREFIX = "TEGRASTATS_API_"
_TRUE = ("true", "yes", "on", "1")
_FALSE = ("false", "no", "off", "0", "")


class Setting(NamedTuple):
    """One row of the settings table: the flag is ``--name-with-dashes``. ``client_help``
    describes it for ``test`` and ``monitor``, which talk to a server (None: the same)."""

    name: str
    metavar: Optional[str]
    help: str
    client_help: Optional[str] = None

    @property
    def flag(self) -> str:
        return flag_of(self.name)

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS = (
    Setting("host", "H", "address to listen on (`0.0.0.0` = every interface)",
            "the server's address (`0.0.0.0` or `::`, a server's wildcard, means this machine)"),
    Setting("port", "P", "TCP port (0 picks a free one)", "the server's TCP port"),
    Setting("debug", "BOOL", "DEBUG logging (never Tornado's autoreload)"),
    Setting("log_level", "LEVEL", "log level: " + ", ".join(LOG_LEVELS)),
    Setting("max_connections", "N", "push clients allowed at once (Socket.IO and /ws together)"),
    Setting("update_interval", "S", "seconds between samples, passed to tegrastats as --interval ms",
            "the server's seconds between samples: the push checks wait 3 of them (at least 5 s)"),
    Setting("tegrastats", "PATH", "the tegrastats executable (name on PATH or a path)"),
    Setting("simulate", "BOARD", "replay recorded lines of BOARD instead of running tegrastats"),
    Setting("replay", "FILE", "replay the lines of FILE in a loop at the interval"),
    Setting("cors_origins", "ORIGINS", "comma-separated allowed origins, `*` for any"),
    Setting("auth_token", "TOKEN", "require `Authorization: Bearer TOKEN` or `?token=TOKEN`",
            "the server's token, sent as `Authorization: Bearer TOKEN`"),
    Setting("history_size", "N", "samples kept for /api/history"),
    # MQTT (tegrastats_api.mqtt): checked by settings._check_mqtt
    Setting("mqtt", "URL", "publish to an MQTT broker: mqtt://[user:password@]host[:port] or mqtts://... (off)"),
    Setting("mqtt_ca", "FILE", "CA certificates (PEM) to verify an mqtts:// broker (default: the system's)"),
    Setting("mqtt_prefix", "TOPIC", "topic prefix of the state and availability messages (tegrastats/<hostname>)"),
    Setting("mqtt_interval", "S", "seconds between state messages, at least the sample interval"),
    Setting("mqtt_discovery_prefix", "TOPIC", "Home Assistant discovery prefix; `none` turns discovery off"),
    Setting("config", "FILE", "config file of `key = value` lines (default %s if present)" % DEFAULT_CONFIG_FILE),
)
SETTING_BY_NAME = {s.name: s for s in SETTINGS}
_ALL = tuple(s.name for s in SETTINGS)
# What each command uses; the others are accepted (one config file serves every command)
# and checked, but not listed in its --help.
COMMAND_SETTINGS = {
    "run": _ALL,
    "config": _ALL,
    "test": ("host", "port", "auth_token", "update_interval", "config"),
    "monitor": ("host", "port", "auth_token", "config"),
}
_NUMBERS = {"port": int, "max_connections": int, "history_size": int, "update_interval": float,
            "mqtt_interval": float}
_OPTIONAL_VALUE = ("--debug", "--simulate")  # flags whose value may be left out


class _Parser(configargparse.ArgumentParser):
    """Raises ConfigError instead of printing usage and exiting, so errors are one line."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ConfigError(message)


class _KeyNormalisingConfigFile(configargparse.DefaultConfigFileParser):
    """``key = value`` lines; ``max_connections`` and ``max-connections`` are the same key."""

    def parse(self, stream: IO[str]) -> Dict[str, Any]:
        items = super().parse(stream)
        return type(items)((k.strip().lower().replace("_", "-"), v) for k, v in items.items())


def _add_settings(parser: argparse.ArgumentParser, command: str) -> None:
    defaults = Config.__dataclass_fields__  # the defaults live in one place: Config
    client = command in ("test", "monitor")
    for s in SETTINGS:
        text = (s.client_help if client and s.client_help else s.help) + "  [env var: %s]" % s.env
        kw: Dict[str, Any] = {"env_var": s.env, "dest": s.name, "metavar": s.metavar,
                              "help": text if s.name in COMMAND_SETTINGS[command] else argparse.SUPPRESS}
        if s.name == "debug":  # `--debug`, `--debug=false`; the env var and file give a value
            kw.update(nargs="?", const="true")
        elif s.name == "simulate":
            kw.update(nargs="?", const=DEFAULT_BOARD)
        default = defaults[s.name].default if s.name in defaults else None
        parser.add_argument(s.flag, default=default, **kw)


def build_parser(command: str, config_files: Sequence[str] = ()) -> configargparse.ArgumentParser:
    """The parser of one subcommand: every setting, plus that command's own options."""
    examples = "\n".join("  " + e for e in COMMAND_EXAMPLES[command])
    description = COMMAND_HELP[command] + ".\n\nSettings: flag > env var > config file > default."
    if command in ("test", "monitor"):
        description += ("\nThe server's other settings are accepted (one config file serves every\n"
                        "command) and not listed: %s uses only these." % command)
    parser = _Parser(
        prog="tegrastats-api %s" % command,
        description=description,
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        default_config_files=list(config_files),
        config_file_parser_class=_KeyNormalisingConfigFile,
        args_for_setting_config_path=[],
        ignore_unknown_config_file_keys=False,
        add_config_file_help=False,  # its precedence sentence leaves out the config file
        add_env_var_help=False,  # _add_settings says which variable sets each one
        allow_abbrev=False,  # `--po 80` is a typo, not --port
    )
    _add_settings(parser, command)
    if command == "monitor":
        parser.add_argument("--duration", metavar="S", help="stop after S seconds (default: until Ctrl-C)")
    return parser


class Loaded(NamedTuple):
    """What :func:`load` returns: the command, its Config, sources and extra options."""

    command: Optional[str]
    config: Config
    sources: Dict[str, str]
    options: Dict[str, Any]

    def label(self, name: str) -> str:
        """How to name setting ``name`` in a message: by where its value came from."""
        return _label(self.sources, name)

    def explain(self, err: ConfigError) -> str:
        """``str(err)`` with each setting named by where its value came from."""
        return str(err.naming(self.label))


def _label(sources: Mapping[str, str], name: str) -> str:
    source = sources.get(name, "default")
    if source.startswith("env "):
        return source[len("env "):]
    if source.startswith("file "):
        return "%s in config file %s" % (name, source[len("file "):])
    return flag_of(name)


def _flag_value(argv: Sequence[str], flag: str) -> Optional[str]:
    for i, token in enumerate(argv):
        if token == flag and i + 1 < len(argv):
            return argv[i + 1]
        if token.startswith(flag + "="):
            return token[len(flag) + 1:]
    return None


def _config_file(argv: Sequence[str], environ: Mapping[str, str]) -> Tuple[Optional[str], str, str]:
    """The config file to read, where its name came from and its text (read once, here:
    a regular file of at most CONFIG_FILE_LIMIT bytes); raises ConfigError if it can't be read."""
    env = SETTING_BY_NAME["config"].env
    path, source = _flag_value(argv, "--config"), "flag"
    if path is None and environ.get(env):
        path, source = environ[env], "env " + env
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_FILE):
            return None, "default", ""
        path, source = DEFAULT_CONFIG_FILE, "default"
    try:
        text = read_text_file(path, CONFIG_FILE_LIMIT)
    except (OSError, ValueError) as err:
        problem = "cannot read %s: %s" % (path, os_reason(err))
        raise ConfigError(problem, "config", label=lambda name: _label({"config": source}, name)) from None
    return path, source, text


def _file_keys(path: str, text: str, source: str) -> Dict[str, Any]:
    def in_file(name: str) -> str:
        return _label({name: "file " + path}, name)

    try:
        items = _KeyNormalisingConfigFile().parse(io.StringIO(text))
    except configargparse.ConfigFileParserException as err:
        raise ConfigError("%s: %s" % (path, err), "config", label=lambda n: _label({n: source}, n)) from None
    known = {s.name.replace("_", "-") for s in SETTINGS if s.name != "config"}
    for key, value in items.items():
        if key not in known:
            raise ConfigError("%s: unknown setting %r (known: %s)" % (path, key, ", ".join(sorted(known))), "config",
                              label=lambda n: _label({n: source}, n))
        if isinstance(value, list):
            raise ConfigError("%r is a list; it takes one value" % (value,), key.replace("-", "_"), label=in_file)
    return items


def _sources(argv: Sequence[str], environ: Mapping[str, str], path: Optional[str],
             path_source: str, file_keys: Mapping[str, Any]) -> Dict[str, str]:
    out = {}
    for s in SETTINGS:
        if any(t == s.flag or t.startswith(s.flag + "=") for t in argv):
            out[s.name] = "flag"
        elif s.name == "config":
            out[s.name] = path_source
        elif environ.get(s.env) is not None and (s.name != "debug" or environ[s.env]):
            out[s.name] = "env " + s.env
        elif s.name.replace("_", "-") in file_keys:
            out[s.name] = "file " + str(path)
        else:
            out[s.name] = "default"
    return out


def _convert(values: Dict[str, Any]) -> None:
    """Numbers and booleans from their text, in place; raises ConfigError naming the setting."""
    for name, kind in _NUMBERS.items():
        if isinstance(values[name], str):
            try:
                values[name] = kind(values[name].strip())
            except ValueError:
                what = "a whole number" if kind is int else "a number"
                raise ConfigError("%r is not %s" % (values[name], what), name) from None
    debug = values["debug"]
    if isinstance(debug, str):
        if debug.strip().lower() not in _TRUE + _FALSE:
            raise ConfigError("%r is not true or false" % (debug,), "debug")
        values["debug"] = debug.strip().lower() in _TRUE


def _duration(text: Optional[str]) -> Optional[float]:
    if text is None:
        return None
    try:
        duration = float(text)
    except ValueError:
        raise ConfigError("%r is not a number of seconds" % (text,), "duration") from None
    if not duration > 0:
        raise ConfigError("%r must be above 0 seconds" % (duration,), "duration")
    return duration


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Loaded:
    """Parse ``argv`` (without the program name) and ``environ`` into a :class:`Loaded`.

    Raises :class:`ConfigError` (one line, naming the flag, variable or file key at fault)
    for a bad setting or usage; ``--help`` raises SystemExit(0) after argparse printed the help.
    """
    valued = [s.flag for s in SETTINGS if s.flag not in _OPTIONAL_VALUE] + ["--duration"]
    command, rest = split_command(argv, valued, _OPTIONAL_VALUE)
    path, path_source, text = _config_file(rest, environ)
    file_keys = _file_keys(path, text, path_source) if path else {}
    sources = _sources(rest, environ, path, path_source, file_keys)
    parser = build_parser(command, [path] if path else [])
    # the text read above, so that configargparse never opens the file (a second read of
    # a FIFO or a file grown meanwhile) and checks what _file_keys checked
    try:
        namespace, extras = parser.parse_known_args(rest, env_vars=dict(environ), config_file_contents=text)
        if extras:
            raise unknown_arguments(extras, [s.flag for s in SETTINGS] + ["--duration", "--help"])
        values = vars(namespace)
        options = {"duration": _duration(values.pop("duration", None))}
        values["config"] = path
        _convert(values)
        config = Config(**values)
    except ConfigError as err:
        raise err.naming(lambda name: _label(sources, name)) from None
    return Loaded(command, config, sources, options)


def describe(loaded: Loaded) -> List[str]:
    """``name = value  (source)`` lines for ``tegrastats-api config``; the token masked."""
    lines = []
    for s in SETTINGS:
        value = getattr(loaded.config, s.name)
        if s.name == "auth_token" and value:
            text = "***"
        elif isinstance(value, bool):
            text = "true" if value else "false"
        elif isinstance(value, tuple):
            text = ",".join(value)
        elif value is None:
            text = "none"
        else:
            text = str(value)
        lines.append("%s = %s  (%s)" % (s.name, text, loaded.sources[s.name]))
    return lines
