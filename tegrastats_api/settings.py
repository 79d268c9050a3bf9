"""The server's settings as one frozen value: :class:`Config`, and :class:`ConfigError`.

What it does: holds every setting of docs/API.md section 6.1 with its default, normalises
and validates them (one clear message per bad value, naming the setting), and checks the
files and executable they name (:func:`check_files`). This is what the server and the
library import.

What it does not: read flags, environment variables or the config file (that is
:mod:`tegrastats_api.config`, which only the command line and :meth:`Config.from_env`
need), print, or start anything.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
import socket
from dataclasses import dataclass, fields
from typing import Any, Callable, Mapping, Optional, Tuple

from tegrastats_api.broker import BrokerURL, check_topic, parse_broker_url

DEFAULT_HOST = "0.0.0.0"
DEFAULT_PORT = 58090
DEFAULT_BOARD = "agx-orin"
DEFAULT_TEGRASTATS = "tegrastats"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_SIMULATE_DEFAULT = ("", "1", "true", "yes", "on")
_SIMULATE_OFF = ("0", "false", "no", "off", "none")
# --update-interval bounds, in seconds. tegrastats computes CPU loads from /proc/stat, which
# counts in USER_HZ ticks (100 a second): below 10 ms a sample cannot measure a load at all.
MIN_UPDATE_INTERVAL_S = 0.01
MAX_UPDATE_INTERVAL_S = 3600.0


def flag_of(name: str) -> str:
    """The long flag of a setting: ``max_connections`` -> ``--max-connections``."""
    return "--" + name.replace("_", "-")


class ConfigError(ValueError):
    """A bad setting; ``str()`` is one line naming the setting and what is wrong.

    ``settings`` holds the names of the settings at fault (``("port",)``; empty for a usage
    error) and ``problem`` the text after the name. ``str()`` names each by its flag
    (``--port: 99999 is not a TCP port (0-65535)``); :meth:`naming` names them otherwise,
    e.g. by the environment variable their value came from.
    """

    def __init__(self, problem: str, *settings: str, label: Callable[[str], str] = flag_of) -> None:
        self.problem = problem
        self.settings = settings
        names = " and ".join(label(name) for name in settings)
        super().__init__("%s: %s" % (names, problem) if names else problem)

    def naming(self, label: Callable[[str], str]) -> ConfigError:
        """The same error with each setting named by ``label(name)``."""
        return ConfigError(self.problem, *self.settings, label=label)


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
    tegrastats: str = DEFAULT_TEGRASTATS
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
        import os

        from tegrastats_api.config import load  # the loader: only needed here and by the CLI

        loaded = load(["run"], os.environ if environ is None else environ)
        values = {f.name: getattr(loaded.config, f.name) for f in fields(cls)}
        values.update(overrides)
        return cls(**values)


def _validate(config: Config) -> None:
    if isinstance(config.port, bool) or not isinstance(config.port, int) or not 0 <= config.port <= 65535:
        raise ConfigError("%r is not a TCP port (0-65535)" % (config.port,), "port")
    if not MIN_UPDATE_INTERVAL_S <= config.update_interval <= MAX_UPDATE_INTERVAL_S:
        raise ConfigError("%r must be between %g and %g seconds (below 10 ms tegrastats cannot measure CPU "
                          "load: /proc/stat counts in 10 ms ticks)"
                          % (config.update_interval, MIN_UPDATE_INTERVAL_S, MAX_UPDATE_INTERVAL_S), "update_interval")
    if config.log_level not in LOG_LEVELS:
        raise ConfigError("%r is not one of %s" % (config.log_level, ", ".join(LOG_LEVELS)), "log_level")
    if config.max_connections < 1:
        raise ConfigError("%r must be at least 1" % (config.max_connections,), "max_connections")
    if config.history_size < 1:
        raise ConfigError("%r must be at least 1" % (config.history_size,), "history_size")
    if not config.host:
        raise ConfigError("must not be empty", "host")
    if not host_valid(config.host):
        raise ConfigError("%r is not an IP address or host name" % (config.host,), "host")
    if config.simulate is not None and config.replay is not None:
        raise ConfigError("choose one source", "simulate", "replay")
    if config.auth_token is not None:
        try:
            str(config.auth_token).encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8 in argv or the environment
            raise ConfigError("not UTF-8 text (clients send the token as UTF-8)", "auth_token") from None


# --- MQTT settings (tegrastats_api.mqtt publishes; tegrastats_api.broker parses) -------


def _check_mqtt(config: Config) -> None:
    """Normalise and check the ``mqtt*`` settings (the relation to the sample interval only
    when MQTT is on). The password never appears in a message."""
    set_ = object.__setattr__
    try:
        set_(config, "mqtt", parse_broker_url(config.mqtt))
    except ValueError as err:
        raise ConfigError(str(err), "mqtt") from None
    if config.mqtt is not None and not host_valid(config.mqtt.host):
        raise ConfigError("%r is not an IP address or host name" % (config.mqtt.host,), "mqtt")
    try:
        set_(config, "mqtt_interval", float(config.mqtt_interval))
    except (TypeError, ValueError):
        raise ConfigError("%r is not a number of seconds" % (config.mqtt_interval,), "mqtt_interval") from None
    if not 0 < config.mqtt_interval <= MAX_UPDATE_INTERVAL_S:
        raise ConfigError("%r must be above 0 and at most %g seconds" % (config.mqtt_interval, MAX_UPDATE_INTERVAL_S),
                          "mqtt_interval")
    if config.mqtt is not None and config.mqtt_interval < config.update_interval:
        raise ConfigError("%g s is shorter than the sample interval (--update-interval %g s): state messages "
                          "follow the samples" % (config.mqtt_interval, config.update_interval), "mqtt_interval")
    set_(config, "mqtt_ca", config.mqtt_ca or None)
    if config.mqtt_ca is not None and config.mqtt is not None and not config.mqtt.tls:
        raise ConfigError("only an mqtts:// broker uses a CA (--mqtt is %s)" % config.mqtt, "mqtt_ca")
    prefix = config.mqtt_prefix or "tegrastats/" + (socket.gethostname().split(".")[0] or "jetson")
    discovery = config.mqtt_discovery_prefix
    if discovery is not None and str(discovery).strip().lower() in ("", "none", "off"):
        discovery = None
    try:
        set_(config, "mqtt_prefix", check_topic(prefix, "topic prefix"))
    except ValueError as err:
        raise ConfigError(str(err), "mqtt_prefix") from None
    try:
        set_(config, "mqtt_discovery_prefix", None if discovery is None else check_topic(discovery, "topic prefix"))
    except ValueError as err:
        raise ConfigError(str(err), "mqtt_discovery_prefix") from None


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


def check_files(config: Config) -> None:
    """The checks that look at the disk, so that ``run`` and ``config`` refuse the same:
    the replay file is readable, the simulated board exists, and a tegrastats named
    explicitly exists (off a Jetson; on one, starting says tegrastats is missing).
    Raises :class:`ConfigError`."""
    from tegrastats_api.files import os_reason
    from tegrastats_api.plan import UnknownBoardError, find_tegrastats, load_board, load_replay
    from tegrastats_api.source import TegrastatsNotFoundError

    if config.replay is not None:
        try:
            load_replay(config.replay)
        except (OSError, ValueError) as err:
            raise ConfigError("cannot use %s: %s" % (config.replay, os_reason(err)), "replay") from None
    elif config.simulate is not None:
        try:
            load_board(config.simulate)
        except UnknownBoardError as err:
            close = difflib.get_close_matches(err.board, err.available, n=1)
            hint = " (did you mean %r?)" % close[0] if close else ""
            raise ConfigError("unknown board %r%s; boards: %s" % (err.board, hint, ", ".join(err.available)),
                              "simulate") from None
    else:
        try:
            find_tegrastats(config.tegrastats)
        except TegrastatsNotFoundError:  # on a Jetson: `run` ends with exit status 3
            pass
