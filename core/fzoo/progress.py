"""Progress of long work, readable on a terminal and in a log file.

On a terminal (stderr is a TTY) a stage is a tqdm bar. Otherwise (CI, ``nohup``, a notebook
capturing output) it is one plain line at most every ``FZOO_PROGRESS_INTERVAL`` seconds (default
10), with the stage, the counts, the rate and the ETA, plus the latest values a stage reports
(a training loss)::

    [fzoo] launder: 120/500 img (24%), 3.20 img/s, elapsed 37s, ETA 1m59s
    [fzoo] fit camera-id-cnn: 96/320 step (30%), 1.6 step/s, elapsed 1m02s, ETA 2m20s, loss 0.41

A stage that printed a line prints a last one when it ends, so a log shows that it finished.
``FZOO_PROGRESS=0`` turns all of it off (as ``--quiet`` does), ``FZOO_PROGRESS=lines`` forces
lines on a terminal too.
"""

from __future__ import annotations

import math
import os
import sys
import threading
import time
from collections.abc import Iterable, Iterator
from types import TracebackType
from typing import IO, Any, TypeVar

T = TypeVar("T")

DEFAULT_INTERVAL_S = 10.0


def interval_s() -> float:
    """Seconds between two lines when output is redirected (``$FZOO_PROGRESS_INTERVAL``)."""
    try:
        value = float(os.environ.get("FZOO_PROGRESS_INTERVAL", DEFAULT_INTERVAL_S))
    except ValueError:
        return DEFAULT_INTERVAL_S
    return value if math.isfinite(value) and value >= 0 else DEFAULT_INTERVAL_S


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"


def _value(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


class Progress:
    """One stage's progress: :meth:`update` after each unit of work, :meth:`close` at the end.

    ``enabled``: None shows progress (a bar on a terminal, lines otherwise) unless
    ``FZOO_PROGRESS=0``; False shows nothing. Safe to update from several threads.
    """

    def __init__(
        self,
        stage: str,
        total: int | None = None,
        unit: str = "it",
        *,
        initial: int = 0,
        enabled: bool | None = None,
        stream: IO[str] | None = None,
    ) -> None:
        self.stage, self.total, self.unit = stage, total, unit
        self.n = initial
        self._initial = initial
        self._stream = stream if stream is not None else sys.stderr
        self._info: dict[str, Any] = {}
        self._lock = threading.Lock()
        self._start = self._last = time.monotonic()
        self._printed = False
        self._printed_n = -1
        self._closed = False
        self._bar: Any = None
        mode = os.environ.get("FZOO_PROGRESS", "").strip().lower()
        self._on = enabled is not False and mode not in ("0", "off", "no", "false")
        if self._on and mode != "lines" and _isatty(self._stream):
            from tqdm.auto import tqdm

            self._bar = tqdm(
                total=total, initial=initial, desc=stage, unit=unit, leave=False, file=self._stream
            )

    # ------------------------------------------------------------------ reporting
    def update(self, n: int = 1, **info: Any) -> None:
        """``n`` more units done; ``info`` (e.g. ``loss=0.41``) is shown with the next line."""
        if not self._on:
            return
        with self._lock:
            self.n += n
            self._info.update(info)
            if self._bar is not None:
                self._bar.update(n)
                if info:
                    self._bar.set_postfix({k: _value(v) for k, v in self._info.items()})
                return
            now = time.monotonic()
            if now - self._last >= interval_s():
                self._emit(now)

    def set_info(self, **info: Any) -> None:
        """Values shown with the next line or on the bar (no count change)."""
        self.update(0, **info)

    def line(self, now: float | None = None) -> str:
        """The current progress as one line (what redirected output gets)."""
        now = time.monotonic() if now is None else now
        elapsed = max(now - self._start, 1e-9)
        done = self.n - self._initial
        rate = done / elapsed
        parts = [f"{self.n}/{self.total}" if self.total is not None else f"{self.n}"]
        parts[0] += f" {self.unit}"
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        parts.append(f"{rate:.3g} {self.unit}/s" if done else f"0 {self.unit}/s")
        parts.append(f"elapsed {_duration(elapsed)}")
        if self.total is not None and self.n < self.total:
            parts.append(f"ETA {_duration((self.total - self.n) / rate)}" if done else "ETA ?")
        elif self.total is not None:
            parts.append("done")
        parts += [f"{k} {_value(v)}" for k, v in self._info.items()]
        return f"[fzoo] {self.stage}: " + ", ".join(parts)

    def _emit(self, now: float) -> None:
        self._last = now
        self._printed = True
        self._printed_n = self.n
        try:
            print(self.line(now), file=self._stream, flush=True)
        except (OSError, ValueError):  # a closed or broken stream never stops the work
            self._on = False

    def close(self) -> None:
        """End the stage: close the bar, or print a last line if any line was printed."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._bar is not None:
                self._bar.close()
            elif self._on and self._printed and self._printed_n != self.n:
                self._emit(time.monotonic())

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _isatty(stream: IO[str]) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def track(
    iterable: Iterable[T],
    stage: str,
    total: int | None = None,
    unit: str = "it",
    *,
    enabled: bool | None = None,
) -> Iterator[T]:
    """Iterate over ``iterable`` with a :class:`Progress` of ``stage`` (``total``: its length,
    taken from ``len()`` when None and the iterable has one)."""
    if total is None and hasattr(iterable, "__len__"):
        total = len(iterable)  # type: ignore[arg-type]
    with Progress(stage, total, unit, enabled=enabled) as bar:
        for item in iterable:
            yield item
            bar.update(1)
