"""The monitor's full-screen terminal, through curses (the standard library's).

What it does: :func:`terminal_caps` asks terminfo whether a terminal can address the
cursor and show colours; :class:`CursesScreen` takes the terminal (alternate screen,
cbreak, hidden cursor), draws lines of :class:`tegrastats_api.console.Span` with one
attribute per style name, follows a new size (:meth:`CursesScreen.resize`, called on
SIGWINCH) and gives the terminal back as it found it (:meth:`CursesScreen.close`).

What it does not: read keys (``monitor`` reads stdin itself, so that the end of input is
seen), handle signals, or decide what to show.
"""
from __future__ import annotations

import os
from typing import Any, Dict, List, NamedTuple, Optional

from tegrastats_api.console import Line, Span

try:
    import curses
except ImportError:  # a Python built without _curses: plain text screens only
    curses = None  # type: ignore[assignment]

# style -> (curses colour name, extra attribute names)
STYLE_LOOK = {
    "title": (None, ("A_BOLD",)),
    "ok": (None, ()),
    "warn": ("COLOR_YELLOW", ()),
    "hot": ("COLOR_RED", ("A_BOLD",)),
    "dim": (None, ("A_DIM",)),
    "good": ("COLOR_GREEN", ()),
    "note": ("COLOR_MAGENTA", ()),
}


class Caps(NamedTuple):
    """What the terminal can do: move the cursor (a full screen) and show colours."""

    addressable: bool
    colours: bool


def terminal_caps(fd: int, term: Optional[str]) -> Caps:
    """The terminfo entry of ``term`` (none, unknown or ``dumb``: nothing at all)."""
    if curses is None or not term or term == "dumb":
        return Caps(False, False)
    try:
        curses.setupterm(term, fd)
        addressable = bool(curses.tigetstr("cup")) and bool(curses.tigetstr("clear"))
        return Caps(addressable, curses.tigetnum("colors") >= 8)
    except curses.error:
        return Caps(False, False)


class CursesScreen:
    """The whole terminal while the monitor runs; ``colour`` False draws no attributes."""

    def __init__(self, colour: bool, fd: int = 1) -> None:
        self.colour = colour
        self.fd = fd  # the terminal curses draws on (initscr's stdout)
        self.window: Any = None
        self.attrs: Dict[str, int] = {}

    def open(self) -> None:
        self.window = curses.initscr()
        curses.noecho()
        curses.cbreak()
        try:
            curses.curs_set(0)
        except curses.error:  # a terminal that cannot hide the cursor
            pass
        if self.colour and curses.has_colors():
            self.attrs = self._colour_attrs()

    def _colour_attrs(self) -> Dict[str, int]:
        curses.start_color()
        try:
            curses.use_default_colors()
            background = -1
        except curses.error:
            background = curses.COLOR_BLACK
        attrs = {}
        for pair, (style, (colour, extra)) in enumerate(STYLE_LOOK.items(), start=1):
            attr = 0
            for name in extra:
                attr |= getattr(curses, name)
            if colour is not None:
                curses.init_pair(pair, getattr(curses, colour), background)
                attr |= curses.color_pair(pair)
            attrs[style] = attr
        return attrs

    def close(self) -> None:
        """Give the terminal back (also after it hung up, when that cannot succeed)."""
        if self.window is None:
            return
        self.window = None
        try:
            curses.curs_set(1)
        except curses.error:
            pass
        try:
            curses.endwin()
        except curses.error:
            pass

    def width(self) -> int:
        return self.window.getmaxyx()[1]

    def resize(self) -> None:
        """Take the terminal's new size (after SIGWINCH)."""
        try:
            size = os.get_terminal_size(self.fd)
        except OSError:
            return
        curses.resizeterm(size.lines, size.columns)

    def draw(self, lines: List[Line]) -> None:
        """Replace the screen with ``lines`` (those below its last row are left out)."""
        if self.window is None:
            return
        rows, cols = self.window.getmaxyx()
        if len(lines) > rows:
            more = len(lines) - rows + 1
            lines = lines[:rows - 1] + [[Span("\u2026 %d more line%s below" % (more, "s" if more > 1 else ""), "dim")]]
        self.window.erase()
        self.window.touchwin()  # repaint every cell: a stray write to the terminal is overwritten
        for y, line in enumerate(lines[:rows]):
            x = 0
            for span in line:
                if x >= cols or not span.text:
                    continue
                try:
                    self.window.addnstr(y, x, span.text, cols - x, self.attrs.get(span.style, 0))
                except curses.error:  # writing the bottom-right cell moves the cursor off screen
                    pass
                x += len(span.text)
        try:
            self.window.refresh()
        except curses.error:  # the terminal went away; SIGHUP or the end of input follows
            pass
