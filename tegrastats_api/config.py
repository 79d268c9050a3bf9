"""Settings: the frozen :class:`Config`, and the one configargparse parser that fills it.

What it does: declares every setting of CONTRACT.md section 1 once (:data:`SETTINGS`),
reads them with precedence flag > environment variable > config file > default, with
flags accepted on both sides of the subcommand, validates them with one clear message
per bad value (:class:`ConfigError`), and records where each value came from.

What it does not: print, configure logging or start anything (that is ``cli``), and it
never passes the argparse namespace on: callers get a :class:`Config`.

Why the subcommand is taken out of argv before parsing: configargparse with subparsers
has a history of env/config values landing after the subcommand (bw2/ConfigArgParse#57,
#350), and 1.5 and 1.9 differ. Parsing one flat argument list with one parser avoids
all of it, on every version.
"""
from __future__ import annotations

import argparse
import io
import ipaddress
import os
import re
import socket
import stat
from dataclasses import dataclass, fields
from typing import IO, Any, Dict, List, Mapping, NamedTuple, Optional, Sequence, Tuple

import configargparse

from tegrastats_api.broker import BrokerURL, check_topic, parse_broker_url

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 58090
DEFAULT_BOARD = "agx-orin"
DEFAULT_CONFIG_FILE = "/etc/tegrastats-api/tegrastats-api.conf"
CONFIG_FILE_LIMIT = 1024 * 1024  # bytes: a settings file holds a few hundred
REPLAY_FILE_LIMIT = 64 * 1024 * 1024  # bytes: two days of tegrastats lines at 1 s
ENV_PREFIX = "TEGRASTATS_API_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
COMMANDS = ("run", "test", "monitor", "config")
_SIMULATE_DEFAULT = ("", "1", "true", "yes", "on")
_SIMULATE_OFF = ("0", "false", "no", "off", "none")
# --update-interval bounds, in seconds. tegrastats computes CPU loads from /proc/stat, which
# counts in USER_HZ ticks (100 a second): below 10 ms a sample cannot measure a load at all.
MIN_UPDATE_INTERVAL_S = 0.01
MAX_UPDATE_INTERVAL_S = 3600.0


class ConfigError(ValueError):
    """A bad setting; ``str()`` is one line naming the setting and what is wrong."""


class Setting(NamedTuple):
    """One row of the settings table: the flag is ``--name-with-dashes``."""

    name: str
    metavar: Optional[str]
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    @property
    def env(self) -> str:
        return ENV_PREFIX + self.name.upper()


SETTINGS = (
    Setting("host", "H", "address to listen on (`0.0.0.0` = every interface)"),
    Setting("port", "P", "TCP port (0 picks a free one)"),
    Setting("debug", None, "DEBUG logging (never Tornado's autoreload)"),
    Setting("log_level", "LEVEL", "log level: " + ", ".join(LOG_LEVELS)),
    Setting("max_connections", "N", "push clients allowed at once (Socket.IO and /ws together)"),
    Setting("update_interval", "S", "seconds between samples, passed to tegrastats as --interval ms"),
    Setting("tegrastats", "PATH", "the tegrastats executable (name on PATH or a path)"),
    Setting("simulate", "BOARD", "replay recorded lines of BOARD instead of running tegrastats"),
    Setting("replay", "FILE", "replay the lines of FILE in a loop at the interval"),
    Setting("cors_origins", "ORIGINS", "comma-separated allowed origins, `*` for any"),
    Setting("auth_token", "TOKEN", "require `Authorization: Bearer TOKEN` or `?token=TOKEN`"),
    Setting("history_size", "N", "samples kept for /api/history"),
    # MQTT (tegrastats_api.mqtt): see _check_mqtt below
    Setting("mqtt", "URL", "publish to an MQTT broker: mqtt://[user:password@]host[:port] or mqtts://... (off)"),
    Setting("mqtt_ca", "FILE", "CA certificates (PEM) to verify an mqtts:// broker (default: the system's)"),
    Setting("mqtt_prefix", "TOPIC", "topic prefix of the state and availability messages (tegrastats/<hostname>)"),
    Setting("mqtt_interval", "S", "seconds between state messages, at least the sample interval"),
    Setting("mqtt_discovery_prefix", "TOPIC", "Home Assistant discovery prefix; `none` turns discovery off"),
    Setting("config", "FILE", "config file of `key = value` lines (default %s if present)" % DEFAULT_CONFIG_FILE),
)
SETTING_BY_NAME = {s.name: s for s in SETTINGS}


def _parse_origins(value: Any) -> Tuple[str, ...]:
    if isinstance(value, str):
        value = value.split(",")
    origins = tuple(o.strip().rstrip("/") for o in value if o.strip())
    return origins or ("*",)


def _parse_simulate(value: Optional[str]) -> Optional[str]:
    if value is None:
        return None
    text = str(value).strip().lower()
    if text in _SIMULATE_DEFAULT:
        return DEFAULT_BOARD
    if text in _SIMULATE_OFF:
        return None
    return text


@dataclass(frozen=True)
class Config:
    """Every setting of the server, with the contract's defaults.

    Keyword names are the long flags with ``_`` for ``-``. ``update_interval`` is in
    seconds; ``simulate`` a board name (``"1"``/``"true"`` mean ``agx-orin``) or None;
    ``cors_origins`` a tuple (a comma-separated string is accepted). Raises
    :class:`ConfigError` for a bad value.
    """

    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    debug: bool = False
    log_level: str = "INFO"
    max_connections: int = 10
    update_interval: float = 1.0
    tegrastats: str = "tegrastats"
    simulate: Optional[str] = None
    replay: Optional[str] = None
    cors_origins: Tuple[str, ...] = ("*",)
    auth_token: Optional[str] = None
    history_size: int = 300
    mqtt: Optional[BrokerURL] = None
    mqtt_ca: Optional[str] = None
    mqtt_prefix: Optional[str] = None  # None: tegrastats/<hostname>
    mqtt_interval: float = 10.0
    mqtt_discovery_prefix: Optional[str] = "homeassistant"
    config: Optional[str] = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        set_(self, "cors_origins", _parse_origins(self.cors_origins))
        set_(self, "simulate", _parse_simulate(self.simulate))
        set_(self, "log_level", str(self.log_level).upper())
        set_(self, "auth_token", self.auth_token or None)
        set_(self, "replay", self.replay or None)
        _validate(self)
        _check_mqtt(self)

    @property
    def interval_ms(self) -> int:
        """The sample interval in whole milliseconds, as tegrastats' ``--interval`` takes it."""
        return max(1, int(round(self.update_interval * 1000)))

    @classmethod
    def from_env(cls, environ: Optional[Mapping[str, str]] = None, **overrides: Any) -> Config:
        """A Config from the ``TEGRASTATS_API_*`` variables (and the config file they name)."""
        loaded = load(["run"], os.environ if environ is None else environ)
        values = {f.name: getattr(loaded.config, f.name) for f in fields(cls)}
        values.update(overrides)
        return cls(**values)


def _validate(config: Config) -> None:
    if not isinstance(config.port, int) or not 0 <= config.port <= 65535:
        raise ConfigError("--port: %r is not a TCP port (0-65535)" % (config.port,))
    if not MIN_UPDATE_INTERVAL_S <= config.update_interval <= MAX_UPDATE_INTERVAL_S:
        raise ConfigError("--update-interval: %r must be between %g and %g seconds (below 10 ms tegrastats cannot "
                          "measure CPU load: /proc/stat counts in 10 ms ticks)"
                          % (config.update_interval, MIN_UPDATE_INTERVAL_S, MAX_UPDATE_INTERVAL_S))
    if config.log_level not in LOG_LEVELS:
        raise ConfigError("--log-level: %r is not one of %s" % (config.log_level, ", ".join(LOG_LEVELS)))
    if config.max_connections < 1:
        raise ConfigError("--max-connections: %r must be at least 1" % (config.max_connections,))
    if config.history_size < 1:
        raise ConfigError("--history-size: %r must be at least 1" % (config.history_size,))
    if not config.host:
        raise ConfigError("--host: must not be empty")
    if not host_valid(config.host):
        raise ConfigError("--host: %r is not an IP address or host name" % (config.host,))
    if config.simulate is not None and config.replay is not None:
        raise ConfigError("--simulate and --replay: choose one source")
    if config.auth_token is not None:
        try:
            str(config.auth_token).encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in argv or the environment
            raise ConfigError("--auth-token: not UTF-8 text (clients send the token as UTF-8)") from None


# --- MQTT settings (tegrastats_api.mqtt publishes; tegrastats_api.broker parses) -------


def _check_mqtt(config: Config) -> None:
    """Normalise and check the ``mqtt*`` settings (the relation to the sample interval only
    when MQTT is on). The password never appears in a message."""
    set_ = object.__setattr__
    try:
        set_(config, "mqtt", parse_broker_url(config.mqtt))
    except ValueError as err:
        raise ConfigError("--mqtt: %s" % err) from None
    if config.mqtt is not None and not host_valid(config.mqtt.host):
        raise ConfigError("--mqtt: %r is not an IP address or host name" % (config.mqtt.host,))
    try:
        set_(config, "mqtt_interval", float(config.mqtt_interval))
    except (TypeError, ValueError):
        raise ConfigError("--mqtt-interval: %r is not a number of seconds" % (config.mqtt_interval,)) from None
    if not 0 < config.mqtt_interval <= MAX_UPDATE_INTERVAL_S:
        raise ConfigError("--mqtt-interval: %r must be above 0 and at most %g seconds"
                          % (config.mqtt_interval, MAX_UPDATE_INTERVAL_S))
    if config.mqtt is not None and config.mqtt_interval < config.update_interval:
        raise ConfigError("--mqtt-interval: %g s is shorter than the sample interval (--update-interval %g s): "
                          "state messages follow the samples" % (config.mqtt_interval, config.update_interval))
    set_(config, "mqtt_ca", config.mqtt_ca or None)
    if config.mqtt_ca is not None and config.mqtt is not None and not config.mqtt.tls:
        raise ConfigError("--mqtt-ca: only an mqtts:// broker uses a CA (--mqtt is %s)" % config.mqtt)
    prefix = config.mqtt_prefix or "tegrastats/" + (socket.gethostname().split(".")[0] or "jetson")
    discovery = config.mqtt_discovery_prefix
    if discovery is not None and str(discovery).strip().lower() in ("", "none", "off"):
        discovery = None
    try:
        set_(config, "mqtt_prefix", check_topic(prefix, "topic prefix"))
    except ValueError as err:
        raise ConfigError("--mqtt-prefix: %s" % err) from None
    try:
        set_(config, "mqtt_discovery_prefix", None if discovery is None else check_topic(discovery, "topic prefix"))
    except ValueError as err:
        raise ConfigError("--mqtt-discovery-prefix: %s" % err) from None


def check_files(config: Config) -> None:
    """The checks that read the disk: the replay file and the simulated board exist."""
    from tegrastats_api.plan import UnknownBoardError, load_board, load_replay

    if config.replay is not None:
        try:
            load_replay(config.replay)
        except (OSError, ValueError) as err:
            raise ConfigError("--replay: cannot use %s: %s" % (config.replay, _reason(err))) from None
    if config.simulate is not None:
        try:
            load_board(config.simulate)
        except UnknownBoardError as err:
            raise ConfigError("--simulate: %s" % err) from None


def _reason(err: BaseException) -> str:
    return err.strerror if isinstance(err, OSError) and err.strerror else str(err)


# --- files named by the user -----------------------------------------------------------


_FILE_KINDS = ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISCHR, "a character device"),
               (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))
_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)


def _size_text(size: int) -> str:
    return "%d MiB" % (size >> 20) if size and size % (1 << 20) == 0 else "%d bytes" % size


_HOST_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)\Z")


def host_valid(host: str) -> bool:
    """True for an IPv4/IPv6 address or a host name of RFC 1123 labels (``999.1.1.1``,
    ``bad..host`` and non-ASCII names are not: they would fail only when the server binds)."""
    try:
        ipaddress.ip_address(host.split("%", 1)[0])  # an IPv6 scope (fe80::1%eth0) is allowed
        return True
    except ValueError:
        pass
    labels = host[:-1].split(".") if host.endswith(".") else host.split(".")
    if len(host) > 253 or labels[-1].isdigit():  # all-digit last label: a mistyped IPv4 address
        return False
    return all(_HOST_LABEL_RE.match(label) for label in labels)


def _check_regular(mode: int, size: int, limit: int) -> None:
    if not stat.S_ISREG(mode):
        kind = next((name for test, name in _FILE_KINDS if test(mode)), "a special file")
        raise ValueError("%s, not a regular file" % kind)
    if size > limit:
        raise ValueError("%s, more than the limit of %s" % (_size_text(size), _size_text(limit)))


def _is_devnull(st: os.stat_result) -> bool:
    if not stat.S_ISCHR(st.st_mode):
        return False
    try:
        return st.st_rdev == os.stat(os.devnull).st_rdev
    except OSError:
        return False


def read_text_file(path: str, limit: int) -> str:
    """The UTF-8 text of the regular file ``path``, of at most ``limit`` bytes (``/dev/null``:
    empty).

    Never blocks and never reads more than ``limit`` bytes and one: a directory, FIFO,
    device or socket is refused before it is opened (and again, by its descriptor, after a
    non-blocking open), a bigger file by its size, one that grows meanwhile as it is read.
    Raises OSError when it cannot be opened or read, and ValueError (one line: what is
    wrong) when it is not a regular file, too big or not UTF-8.
    """
    st = os.stat(path)
    if _is_devnull(st):  # ``--config /dev/null``: no config file (not even the default)
        return ""
    _check_regular(st.st_mode, st.st_size, limit)
    fd = os.open(path, _OPEN_FLAGS)
    try:
        st = os.fstat(fd)
        _check_regular(st.st_mode, st.st_size, limit)
        chunks: List[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    finally:
        os.close(fd)
    if size > limit:
        raise ValueError("more than the limit of %s" % _size_text(limit))
    data = b"".join(chunks)
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        raise ValueError("not UTF-8 text (byte 0x%02x at offset %d)" % (data[err.start], err.start)) from None


# --- the command line -------------------------------------------------------------


class _Parser(configargparse.ArgumentParser):
    """Raises ConfigError instead of printing usage and exiting, so errors are one line."""

    def error(self, message: str) -> Any:  # type: ignore[override]
        raise ConfigError(message)


class _KeyNormalisingConfigFile(configargparse.DefaultConfigFileParser):
    """``key = value`` lines; ``max_connections`` and ``max-connections`` are the same key."""

    def parse(self, stream: IO[str]) -> Dict[str, Any]:
        items = super().parse(stream)
        return type(items)((k.strip().lower().replace("_", "-"), v) for k, v in items.items())


def _add_settings(parser: argparse.ArgumentParser) -> None:
    d = Config.__dataclass_fields__  # the defaults live in one place: Config
    for s in SETTINGS:
        kw: Dict[str, Any] = {"help": s.help, "env_var": s.env, "dest": s.name}
        if s.name == "debug":
            parser.add_argument(s.flag, action="store_true", default=False, **kw)
            continue
        kw["metavar"] = s.metavar
        if s.name == "simulate":
            kw.update(nargs="?", const=DEFAULT_BOARD)
        elif s.name in ("port", "max_connections", "history_size"):
            kw["type"] = int
        elif s.name == "update_interval":
            kw["type"] = float
        default = d[s.name].default if s.name in d else None
        parser.add_argument(s.flag, default=default, **kw)


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


def build_parser(command: str, config_files: Sequence[str] = ()) -> configargparse.ArgumentParser:
    """The parser of one subcommand: every setting, plus that command's own options."""
    examples = "\n".join("  " + e for e in COMMAND_EXAMPLES[command])
    parser = _Parser(
        prog="tegrastats-api %s" % command,
        description=COMMAND_HELP[command] + ". Settings: flag > env var > config file > default.",
        epilog="examples:\n" + examples,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        default_config_files=list(config_files),
        config_file_parser_class=_KeyNormalisingConfigFile,
        args_for_setting_config_path=[],
        ignore_unknown_config_file_keys=False,
    )
    _add_settings(parser)
    if command == "monitor":
        parser.add_argument("--duration", type=float, metavar="S", help="stop after S seconds")
    return parser


class Loaded(NamedTuple):
    """What :func:`load` returns: the command, its Config, sources and extra options."""

    command: Optional[str]
    config: Config
    sources: Dict[str, str]
    options: Dict[str, Any]


def split_command(argv: Sequence[str]) -> Tuple[Optional[str], List[str]]:
    """Take the subcommand out of ``argv``, wherever it stands among the flags."""
    valued = {s.flag for s in SETTINGS if s.name not in ("debug", "simulate")} | {"--duration"}
    rest = list(argv)
    i = 0
    while i < len(rest):
        token = rest[i]
        if token in COMMANDS:
            return token, rest[:i] + rest[i + 1:]
        if token in valued:
            i += 1  # skip the flag's value
        i += 1
    return None, rest


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
    path, source = _flag_value(argv, "--config"), "flag"
    if path is None and environ.get(SETTING_BY_NAME["config"].env):
        path, source = environ[SETTING_BY_NAME["config"].env], "env " + SETTING_BY_NAME["config"].env
    if path is None:
        if not os.path.exists(DEFAULT_CONFIG_FILE):
            return None, "default", ""
        path, source = DEFAULT_CONFIG_FILE, "default"
    try:
        text = read_text_file(path, CONFIG_FILE_LIMIT)
    except (OSError, ValueError) as err:
        raise ConfigError("--config: cannot read %s: %s" % (path, _reason(err))) from None
    return path, source, text


def _file_keys(path: str, text: str) -> Dict[str, Any]:
    try:
        items = _KeyNormalisingConfigFile().parse(io.StringIO(text))
    except configargparse.ConfigFileParserException as err:
        raise ConfigError("--config: %s: %s" % (path, err)) from None
    known = {s.name.replace("_", "-") for s in SETTINGS if s.name != "config"}
    for key in items:
        if key not in known:
            raise ConfigError("--config: %s: unknown setting %r (known: %s)" % (path, key, ", ".join(sorted(known))))
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


def load(argv: Sequence[str], environ: Mapping[str, str]) -> Loaded:
    """Parse ``argv`` (without the program name) and ``environ`` into a :class:`Loaded`.

    Raises :class:`ConfigError` (one line) for a bad setting or usage; ``--help`` raises
    SystemExit(0) after argparse printed the help.
    """
    command, rest = split_command(argv)
    if command is None:
        raise ConfigError("no command given: choose one of %s" % ", ".join(COMMANDS))
    path, path_source, text = _config_file(rest, environ)
    file_keys = _file_keys(path, text) if path else {}
    parser = build_parser(command, [path] if path else [])
    # the text read above, so that configargparse never opens the file (a second read of
    # a FIFO or a file grown meanwhile) and checks what _file_keys checked
    namespace = parser.parse_args(rest, env_vars=dict(environ), config_file_contents=text)
    values = vars(namespace)
    options = {"duration": values.pop("duration", None)}
    values["config"] = path
    try:
        config = Config(**values)
    except TypeError as err:  # pragma: no cover - SETTINGS and Config disagree
        raise ConfigError(str(err)) from None
    if options["duration"] is not None and options["duration"] <= 0:
        raise ConfigError("--duration: %r must be above 0 seconds" % (options["duration"],))
    return Loaded(command, config, _sources(rest, environ, path, path_source, file_keys), options)


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
