"""``tegrastats-api monitor``: follow a running server's ``/ws`` and show every sample.

What it does: :func:`monitor` picks the output from the terminal it writes to:

- stdout not a terminal: each document as one JSON line, as the server sent it;
- a terminal with cursor addressing and a keyboard on stdin: a full-screen view (curses,
  the alternate screen) of :func:`tegrastats_api.console.render` at the terminal's width,
  redrawn on resize (SIGWINCH), coloured unless ``NO_COLOR`` is set or the terminal has
  no colours; ``q`` (or Ctrl-C) quits and restores the terminal;
- any other terminal (``TERM=dumb``, no terminfo, stdin not a terminal): the same screen
  as plain text, one after the other (``q`` and Enter quits).

The connection (:mod:`tegrastats_api.feed`) is reopened like the dashboard's: the screen
says ``connecting…``, ``reconnecting…`` or ``refused: …`` meanwhile, and ``stale data``
when no sample came for three intervals. In JSON lines only the first connection must work
(else :class:`MonitorError`); a later loss is one line on stderr, and the repeat of the
last document a reconnection brings is skipped. A closed stdout (``| head``) or a
vanished terminal ends the monitor quietly, as do SIGINT, SIGTERM and SIGHUP.

What it does not: render (``console``), drive curses (``screen``), connect (``feed``),
parse arguments or choose exit codes (``cli``).
"""
from __future__ import annotations

import asyncio
import errno
import json
import os
import signal
from typing import IO, Any, Callable, Dict, List, Optional, Union

from tegrastats_api.config import Config
from tegrastats_api.console import Header, Line, render, text_of
from tegrastats_api.feed import Facts, Link, MonitorError, Samples
from tegrastats_api.probe import base_url
from tegrastats_api.screen import CursesScreen, terminal_caps

__all__ = ["MonitorError", "monitor"]

TICK_S = 0.5  # the screen's age and countdown refresh
ASCII = str.maketrans({"\u00b0": "", "\u2026": "...", "\u2014": "-"})
CLOSED_ERRNOS = (errno.EPIPE, errno.EIO, errno.EBADF)  # a pipe's reader left, a terminal hung up


class OutputClosed(Exception):
    """stdout went away (``| head`` has read enough, the terminal hung up)."""


def _closed(err: OSError) -> bool:
    return isinstance(err, BrokenPipeError) or err.errno in CLOSED_ERRNOS


class JsonLines:
    """Non-terminal stdout: each document as the server sent it, one per line."""

    def __init__(self, out: IO[str], err: Optional[IO[str]]) -> None:
        self.out, self.err = out, err
        self.last = ""
        self.lost = False
        self.link: Optional[Link] = None

    def frame(self, message: str) -> None:
        message = message.strip()
        if message == self.last:  # the server's latest again, sent on reconnecting
            return
        self.last = message
        try:
            self.out.write(message + "\n")
            self.out.flush()
        except OSError as err:
            if _closed(err):
                raise OutputClosed() from None
            raise

    def change(self) -> None:
        link = self.link
        if link is None or not link.ever_connected or link.connected == (not self.lost):
            return
        self.lost = not link.connected
        note = ("connection lost (%s); reconnecting" % link.reason) if self.lost else "reconnected"
        if self.err is None:  # 2>&-
            return
        try:
            self.err.write("tegrastats-api: %s\n" % note)
            self.err.flush()
        except OSError as err:
            if not _closed(err):
                raise


class Screens:
    """A terminal: the screen of :func:`render`, full-screen (curses) or as plain text
    (a whole screen per sample, the status line alone when the connection changes)."""

    def __init__(self, out: IO[str], target: str, curses_screen: Optional[CursesScreen], colour: bool,
                 hint: str) -> None:
        self.out = out
        self.target = target
        self.curses = curses_screen
        self.colour = colour
        self.hint = hint
        self.samples = Samples()
        self.link: Optional[Link] = None
        self.facts: Optional[Facts] = None
        self.ascii = not _encodes(getattr(out, "encoding", None) or "ascii")

    def frame(self, message: str) -> None:
        try:
            self.samples.add(_json(message))
        except ValueError:
            return
        self.draw()

    def change(self) -> None:
        self.draw(with_sample=self.curses is not None)

    def lines(self, width: int, with_sample: bool = True) -> List[Line]:
        link = self.link
        age, stale_after = self.samples.age(), self.samples.stale_after(self.facts)
        status, level = link.status(age, stale_after) if link is not None else ("", "")
        header = Header(self.target, status, level, self.hint, self.facts.board if self.facts else "")
        stale = not (link is not None and link.connected) or (age is not None and age > stale_after)
        doc = self.samples.doc if with_sample else None
        lines = render(doc, width, colour=self.colour, header=header, stale=stale)
        if self.ascii:
            lines = [[span._replace(text=span.text.translate(ASCII)) for span in line] for line in lines]
        return lines

    def draw(self, with_sample: bool = True) -> None:
        try:
            if self.curses is not None:
                self.curses.draw(self.lines(self.curses.width()))
            else:
                self.out.write(text_of(self.lines(_width(self.out), with_sample)) + "\n\n")
                self.out.flush()
        except OSError as err:
            if _closed(err):
                raise OutputClosed() from None
            raise


def _json(message: str) -> Dict[str, Any]:
    doc = json.loads(message)
    if not isinstance(doc, dict) or "cpu" not in doc or "memory" not in doc:
        raise ValueError("not a snapshot document")
    return doc


def _encodes(encoding: str) -> bool:
    try:
        "\u00b0\u2026\u2014".encode(encoding)
    except (UnicodeError, LookupError):
        return False
    return True


def _width(out: IO[str]) -> int:
    """The terminal's width; 80 where it says none (0 columns: a serial console, a new pty)."""
    try:
        return os.get_terminal_size(out.fileno()).columns or 80
    except (OSError, ValueError):
        return 80


def _discard(out: IO[str]) -> None:
    """Point stdout's descriptor at /dev/null, so the interpreter's last flush of what is
    still buffered cannot fail with a BrokenPipeError message."""
    try:
        fd = out.fileno()
    except (OSError, ValueError):  # io.UnsupportedOperation is both
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def _choose(out: IO[str], target: str, environ: Dict[str, str]) -> Optional[Screens]:
    """None for JSON lines, else a full screen or plain screens (see the module docstring)."""
    if not out.isatty():
        return None
    caps = terminal_caps(out.fileno(), environ.get("TERM"))
    colour = caps.colours and not environ.get("NO_COLOR")  # no-color.org: set and not empty
    keys = _isatty(0)
    full = caps.addressable and keys and out.fileno() == 1
    hint = ("q quits" if full else "q Enter quits") if keys else "Ctrl-C quits"
    return Screens(out, target, CursesScreen(colour) if full else None, colour and full, hint)


def _isatty(fd: int) -> bool:
    try:
        return os.isatty(fd)
    except OSError:
        return False


async def _follow(config: Config, out: IO[str], err: Optional[IO[str]], duration: Optional[float]) -> None:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    target = base_url(config).split("://", 1)[1]
    screens = _choose(out, target, dict(os.environ))
    view: Union[Screens, JsonLines] = screens if screens is not None else JsonLines(out, err)
    facts = Facts(config) if screens is not None else None
    link = Link(config, view.frame, view.change, facts)
    view.link = link
    if screens is not None:
        screens.facts = facts
    handled = [signal.SIGINT, signal.SIGTERM, signal.SIGHUP]
    for signum in handled:
        loop.add_signal_handler(signum, stop.set)
    follow = asyncio.ensure_future(link.run(give_up=screens is None))
    stopped = asyncio.ensure_future(stop.wait())
    cleanup: List[Callable[[], Any]] = []
    try:
        if screens is not None:
            cleanup = _attach(loop, screens, stop)
        done, _ = await asyncio.wait({follow, stopped}, timeout=duration, return_when=asyncio.FIRST_COMPLETED)
        if follow in done:
            follow.result()  # MonitorError or OutputClosed
    finally:
        for task in (follow, stopped):
            task.cancel()
        await asyncio.gather(follow, stopped, return_exceptions=True)
        for undo in reversed(cleanup):
            undo()
        for signum in handled:
            loop.remove_signal_handler(signum)
    if screens is not None and not link.ever_connected and not stop.is_set():  # --duration ran out
        raise MonitorError("cannot connect to %s: %s" % (link.url.split("?")[0], link.reason or "gave up"))


def _attach(loop: asyncio.AbstractEventLoop, screens: Screens, stop: asyncio.Event) -> List[Callable[[], Any]]:
    """Open the screen and wire the keyboard (``q``), SIGWINCH and the tick; the undo steps."""
    undo: List[Callable[[], Any]] = []
    if screens.curses is not None:
        screens.curses.open()
        undo.append(screens.curses.close)
        loop.add_signal_handler(signal.SIGWINCH, _on_resize, screens)
        undo.append(lambda: loop.remove_signal_handler(signal.SIGWINCH))
        tick = loop.create_task(_tick(screens))
        undo.append(tick.cancel)
    if _isatty(0):
        loop.add_reader(0, _on_keys, stop)
        undo.append(lambda: loop.remove_reader(0))
    screens.draw()
    return undo


def _on_keys(stop: asyncio.Event) -> None:
    try:
        data = os.read(0, 64)
    except OSError as err:
        if not _closed(err):
            raise
        data = b""
    if not data or b"q" in data.lower():  # end of input (the terminal is gone) or q
        stop.set()


def _on_resize(screens: Screens) -> None:
    if screens.curses is not None:
        screens.curses.resize()
        screens.draw()


async def _tick(screens: Screens) -> None:
    """Redraw the full screen now and then: the age of the data and the retry countdown."""
    while True:
        await asyncio.sleep(TICK_S)
        screens.draw()


def monitor(config: Config, out: Optional[IO[str]], err: Optional[IO[str]], *,
            duration: Optional[float] = None) -> None:
    """Follow ``/ws`` on ``config.host:config.port`` until ``q``, a signal or ``duration``
    seconds; returns quietly when ``out`` is closed (None: ``>&-``), raises
    :class:`MonitorError` when the server cannot be reached."""
    if out is None:
        return
    try:
        asyncio.run(_follow(config, out, err, duration))
    except OutputClosed:
        _discard(out)
