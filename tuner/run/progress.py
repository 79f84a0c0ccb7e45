"""Progress of long work: a tqdm bar in terminals and notebooks, plain lines in logs.

Three displays, chosen once per bar:

* ``quiet``: nothing.
* a terminal (stderr is a TTY) or a Jupyter kernel: a ``tqdm.auto`` bar (a widget in
  Jupyter when ipywidgets is installed) showing done/total, best so far, rate and ETA.
* anything else (stderr redirected to a file, a batch job's log): plain lines
  ``[  done/total] best ... rate ... ETA ...``, one per tenth of the budget and at least
  every ``every`` seconds, so logs stay short and greppable.

Rate and ETA are measured from the first finished item, not from the start: start-up time
(process spawning, imports, the first surrogate fit) would otherwise inflate the first
estimates (an ETA of minutes for a run of seconds).
"""
from __future__ import annotations

import math
import sys
import time
from typing import IO

__all__ = ["Progress", "in_notebook"]


def in_notebook() -> bool:
    """True inside a Jupyter (IPython kernel) session."""
    shell = sys.modules.get("IPython")
    if shell is None or "ipykernel" not in sys.modules:
        return False
    try:
        ip = shell.get_ipython()  # type: ignore[attr-defined]
    except AttributeError:
        return False
    return ip is not None and "IPKernelApp" in getattr(ip, "config", {})


def _clock(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m:02d}:{s:02d}"


class Progress:
    """Progress of ``total`` items (evaluations, fits, runs), some of which may be done.

    Call it as ``progress(told, best)`` with the number finished in this session and the best
    objective so far (the libEnsemble generator does), or ``progress.advance(n, note)`` for
    other work; ``close()`` ends the display. Usable as a context manager.

    Args:
        total: items in the whole job, including those already done.
        done: items finished before this session (a resumed run); the bar starts there.
        quiet: show nothing.
        desc: label in front of the bar and of each plain line (e.g. ``"fit"``).
        unit: what an item is (``"eval"``, ``"law"``), used in the rate.
        stream: where to write (default ``sys.stderr``).
        every: in plain-line mode, at most this many seconds between lines.
        mode: ``"auto"`` (default: bar on a TTY or in Jupyter, lines otherwise), ``"bar"``,
            ``"lines"`` or ``"none"``.
    """

    def __init__(self, total: int, done: int = 0, quiet: bool = False, *, desc: str = "fit",
                 unit: str = "eval", stream: IO[str] | None = None, every: float = 30.0,
                 mode: str = "auto"):
        if mode not in ("auto", "bar", "lines", "none"):
            raise ValueError(f"unknown progress mode {mode!r}; choose auto, bar, lines or none")
        self.total, self.start_done, self.desc, self.unit = int(total), int(done), desc, unit
        self.stream = stream if stream is not None else sys.stderr
        self.every = every
        if quiet:
            mode = "none"
        elif mode == "auto":
            tty = getattr(self.stream, "isatty", lambda: False)()
            mode = "bar" if tty or in_notebook() else "lines"
        self.mode = mode
        self.done = self.start_done
        self.best = math.inf
        self._t_first: float | None = None
        self._n_first = 0
        self._t_line = 0.0
        self._next_tenth = 0
        self._printed: int | None = None
        self._bar = None
        self._closed = False

    # -- measurements ------------------------------------------------------------------------

    def rate(self, now: float | None = None) -> float:
        """Items per second since the first one finished (NaN until two updates apart)."""
        now = time.monotonic() if now is None else now
        if self._t_first is None or now <= self._t_first or self.done <= self._n_first:
            return math.nan
        return (self.done - self._n_first) / (now - self._t_first)

    def eta(self, now: float | None = None) -> float:
        """Seconds left at the current rate (NaN while the rate is unknown)."""
        r = self.rate(now)
        return max(self.total - self.done, 0) / r if r > 0 else math.nan

    def _status(self) -> str:
        parts = []
        if math.isfinite(self.best):
            parts.append(f"best {self.best:.6g}")
        r = self.rate()
        parts.append(f"{r:.3g} {self.unit}/s" if math.isfinite(r) else f"? {self.unit}/s")
        parts.append(f"ETA {_clock(self.eta())}")
        return ", ".join(parts)

    # -- updates -----------------------------------------------------------------------------

    def __call__(self, told: int, best: float | None = None) -> None:
        """``told`` items finished in this session so far; ``best`` objective so far."""
        self._update(self.start_done + int(told), best)

    def advance(self, n: int = 1, best: float | None = None) -> None:
        """``n`` more items finished."""
        self._update(self.done + int(n), best)

    def _update(self, done: int, best: float | None, final: bool = False) -> None:
        if self.mode == "none" or self._closed:
            self.done = done
            return
        now = time.monotonic()
        if self._t_first is None:
            self._t_first, self._n_first = now, done
        self.done = done
        if best is not None and best < self.best:
            self.best = float(best)
        if self.mode == "bar":
            self._draw_bar()
        else:
            self._line(now, final)

    def _draw_bar(self) -> None:
        if self._bar is None:
            from tqdm.auto import tqdm
            self._bar = tqdm(total=self.total, initial=self.start_done, desc=self.desc,
                             unit=self.unit, file=self.stream, dynamic_ncols=True,
                             leave=True, bar_format="{desc}: {percentage:3.0f}%|{bar}| "
                             "{n_fmt}/{total_fmt} [{elapsed}{postfix}]")
        self._bar.set_postfix_str(self._status(), refresh=False)
        self._bar.update(self.done - self._bar.n)

    def _line(self, now: float, final: bool = False) -> None:
        tenth = self.done * 10 // max(self.total, 1)
        last = self.done >= self.total or final
        if self._printed == self.done or not (
                last or tenth >= self._next_tenth or now - self._t_line >= self.every):
            return
        self._printed = self.done
        self._next_tenth = tenth + 1
        self._t_line = now
        width = len(str(self.total))
        print(f"{self.desc}: [{self.done:>{width}}/{self.total}] {self._status()}",
              file=self.stream, flush=True)

    def close(self, done: int | None = None, best: float | None = None) -> None:
        """End the display at ``done`` items (default: the last update) and ``best``; the bar
        stays on screen, and a log gets a final line unless its last line said the same."""
        if self._closed:
            return
        if done is not None:
            self._update(int(done), best, final=True)
        self._closed = True
        if self._bar is not None:
            self._bar.set_postfix_str(self._status(), refresh=False)
            self._bar.close()

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class BatchProgress:
    """A bar for a batch of fits whose size the first report tells: call it as
    ``progress(done, total)`` (what ``rank``, ``sweep`` and the batch runner report)."""

    def __init__(self, quiet: bool = False, *, desc: str = "fits", unit: str = "fit"):
        self.quiet, self.desc, self.unit = quiet, desc, unit
        self._bar: Progress | None = None

    def __call__(self, done: int, total: int) -> None:
        if self._bar is None:
            self._bar = Progress(total, quiet=self.quiet, desc=self.desc, unit=self.unit)
        self._bar(done)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
