"""A time limit on one call into plugin code, and plugin exits turned into errors.

Python cannot stop a running call from outside, so :func:`call_with_timeout` runs the call in a
daemon thread and stops *waiting* for it after the limit: the caller gets
:class:`ComponentTimeout` and goes on with the other pipelines, while the abandoned call keeps
running in the background (using CPU and memory) until it returns or the process exits; a daemon
thread never keeps the process alive. A subprocess could be killed instead, but it would have to
rebuild the component (load its weights again) and pickle every batch across, for every call.
Without a limit the call runs directly in the calling thread, as before.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class ComponentTimeout(Exception):
    """A call into a component ran longer than its time limit (and was abandoned)."""

    def __init__(self, what: str, seconds: float) -> None:
        super().__init__(f"timed out after {seconds:g} s in {what}")
        self.what = what
        self.seconds = seconds


class PluginExit(Exception):
    """Plugin code raised ``SystemExit`` (called ``sys.exit``); a plugin failure, not an exit."""

    def __init__(self, what: str, code: object) -> None:
        super().__init__(f"{what} called sys.exit({code!r})")
        self.what = what
        self.code = code


def call_with_timeout(fn: Callable[[], T], seconds: float | None, what: str) -> T:
    """``fn()``, waiting at most ``seconds`` (None: no limit) for it; ``what`` names the call
    in errors, e.g. ``"dct-spectrum.extract"``.

    Raises :class:`ComponentTimeout` when the limit passes, and :class:`PluginExit` instead of
    letting a ``SystemExit`` from ``fn`` end the process. ``KeyboardInterrupt`` in the caller
    still interrupts the wait.
    """
    if seconds is None:
        try:
            return fn()
        except SystemExit as exc:
            raise PluginExit(what, exc.code) from None
    box: dict[str, object] = {}

    def target() -> None:
        try:
            box["value"] = fn()
        except BaseException as exc:  # handed to the caller, SystemExit included
            box["error"] = exc

    worker = threading.Thread(target=target, name=f"fzoo {what}", daemon=True)
    worker.start()
    worker.join(seconds)
    if worker.is_alive():
        raise ComponentTimeout(what, seconds)
    error = box.get("error")
    if isinstance(error, SystemExit):
        raise PluginExit(what, error.code) from None
    if isinstance(error, BaseException):
        raise error
    return box["value"]  # type: ignore[return-value]


def failure_reason(exc: BaseException) -> str:
    """One line on why a component failed (a timeout and a plugin exit say it plainly)."""
    from fzoo.yaml_loader import short

    if isinstance(exc, ComponentTimeout | PluginExit):
        return str(exc)
    if isinstance(exc, SystemExit):
        return f"plugin code called sys.exit({exc.code!r})"
    text = str(exc)
    return f"{type(exc).__name__}: {short(text, 500)[1:-1] if len(text) > 500 else text}"
