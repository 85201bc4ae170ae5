"""Terminal output: the progress line, durations, a bar."""

from __future__ import annotations

import math
import shutil
import sys
import textwrap
import time
from typing import TextIO

__all__ = ["Progress", "bar", "fmt_duration", "wrap"]


def fmt_duration(seconds: float) -> str:
    """``"85 ms"``, ``"4.2 s"``, ``"42 s"``, ``"5m 03s"``, ``"16h 40m"``, or ``"?"``."""
    if not math.isfinite(seconds) or seconds < 0:
        return "?"
    if seconds < 1:
        return f"{seconds * 1000:.0f} ms"
    if seconds < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{seconds:.0f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {secs:02d}s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours}h {minutes:02d}m"
    days, hours = divmod(hours, 24)
    return f"{days}d {hours:02d}h"


class Progress:
    """A status line on stderr: redrawn in place (``\\r``) on a terminal, printed as
    plain lines every ``interval`` seconds otherwise (logs, captured output), never
    with ``quiet``."""

    def __init__(self, quiet: bool = False, interval: float = 2.0, stream: TextIO | None = None):
        self.stream = stream if stream is not None else sys.stderr
        self.quiet = quiet
        self.tty = self.stream.isatty()
        self.interval = 0.0 if self.tty else interval
        self._last = -math.inf
        self._width = 0

    def update(self, line: str, force: bool = False) -> None:
        """Show ``line`` now (terminal) or if ``interval`` passed since the last one."""
        if self.quiet:
            return
        now = time.monotonic()
        if not force and now - self._last < self.interval:
            return
        self._last = now
        if self.tty:
            # A line longer than the terminal wraps, and \r then redraws only its tail.
            line = line[: max(20, shutil.get_terminal_size().columns - 1)]
            pad = " " * max(0, self._width - len(line))
            self._width = len(line)
            self.stream.write("\r" + line + pad)
        else:
            self.stream.write(line + "\n")
        self.stream.flush()

    def done(self) -> None:
        """End the status line (a newline on a terminal) before other output."""
        if self.tty and self._width and not self.quiet:
            self.stream.write("\n")
            self.stream.flush()
        self._width = 0

    def message(self, line: str) -> None:
        """Print a line of its own (warnings, notes) without breaking the status line."""
        if self.tty and self._width:
            self.stream.write("\r" + " " * self._width + "\r")
            self._width = 0
        self.stream.write(line + "\n")
        self.stream.flush()


def bar(fraction: float, width: int = 24) -> str:
    """``[#########...............]``."""
    filled = max(0, min(width, int(fraction * width)))
    return "[" + "#" * filled + "." * (width - filled) + "]"


def wrap(text: str, first: str = "", rest: str = "") -> str:
    """``text`` filled to 84 columns (help descriptions keep their own line breaks, so
    text interpolated into them is wrapped here)."""
    return textwrap.fill(text, 84, initial_indent=first, subsequent_indent=rest)
