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

    def render(self, fraction: float, status: str, estimated_seconds: float | None = None) -> str:
        """The bar's text for ``fraction`` in [0, 1] (clamped) and a status word, with the
        service's estimate of the whole run (``~45 s est.``) where it gave one."""
        fraction = min(1.0, max(0.0, fraction))
        filled = round(fraction * self.width)
        bar = "#" * filled + "." * (self.width - filled)
        text = f"[{bar}] {fraction * 100:3.0f}%  {status:<9}  {self.label}"
        if estimated_seconds is not None:
            text += f"  ~{_duration(estimated_seconds)} est."
        return text

    def update(self, fraction: float, status: str, estimated_seconds: float | None = None) -> None:
        """Show ``fraction`` done with ``status``; skips redraws that would change nothing."""
        tenth = int(min(1.0, max(0.0, fraction)) * 10)
        key = (status, round(fraction * 1000) if self._tty else tenth)
        if key == self._last:
            return
        self._last = key
        text = self.render(fraction, status, estimated_seconds)
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


def _duration(seconds: float) -> str:
    """``0.4 s``, ``45 s``, ``12 min``, ``3.5 h``."""
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 600:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
