"""A one-line text progress bar for waiting on jobs (stderr by default, no dependencies).

On a terminal the line is redrawn in place (``\\r``); elsewhere (a log file, CI) a line is
written only when the status changes or progress moves by a tenth, so logs stay short.
"""

from __future__ import annotations

import sys
from typing import TextIO

__all__ = ["ProgressBar"]


class ProgressBar:
    """``[##########..........]  50%  running  job_x`` — call :meth:`update`, then :meth:`close`."""

    def __init__(self, label: str, *, stream: TextIO | None = None, width: int = 30) -> None:
        self.label = label
        self.stream = stream if stream is not None else sys.stderr
        self.width = width
        self._tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._last: tuple[str, int] | None = None
        self._drawn = False

    def render(self, fraction: float, status: str) -> str:
        """The bar's text for ``fraction`` in [0, 1] (clamped) and a status word."""
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        return f"[{bar}] {fraction * 100:3.0f}%  {status:<9}  {self.label}"

    def update(self, fraction: float, status: str) -> None:
        """Show ``fraction`` done with ``status``; skips redraws that would change nothing."""
        tenth = int(min(1.0, max(0.0, fraction)) * 10)
        key = (status, round(fraction * 1000) if self._tty else tenth)
        if key == self._last:
            return
        self._last = key
        text = self.render(fraction, status)
        if self._tty:
            self.stream.write("\r" + text)
        else:
            self.stream.write(text + "\n")
        self._drawn = True
        self.stream.flush()

    def close(self) -> None:
        """End the line (on a terminal)."""
        if self._tty and self._drawn:
            self.stream.write("\n")
            self.stream.flush()
