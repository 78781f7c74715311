"""Hostile inputs that need real file-system objects: FIFOs, devices, sparse files, PNG headers
declaring huge images, file names that are not UTF-8 or hold a newline.

Helpers to make them, a guard that turns a hang into a test failure (:func:`deadline`), and
:func:`child` to run Python in a subprocess under a memory limit and measure its peak memory.
"""

from __future__ import annotations

import contextlib
import json
import os
import resource
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

#: the bytes b"\xff" in a name, as Python gives them back (a surrogate escape)
NON_UTF8 = os.fsdecode(b"\xff")
#: a name that would forge a ``skipped ...`` line if written as it is
FORGING = "evil\nskipped forged.png"


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def png_bytes(width: int, height: int, depth: int, colour: int, idat: bytes) -> bytes:
    """A PNG with the given IHDR and one IDAT chunk of ``idat``."""
    ihdr = struct.pack(">IIBBBBB", width, height, depth, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", idat) + _chunk(b"IEND", b"")
    )


def png16_rgba_header_only(width: int = 9999, height: int = 9999) -> bytes:
    """IHDR of a 16-bit RGBA image and a tiny IDAT: only the header can be judged."""
    return png_bytes(width, height, 16, 6, zlib.compress(b"\x00" * 64))


def png16_rgba_zeros(width: int = 9999, height: int = 9999) -> bytes:
    """A complete, valid 16-bit RGBA PNG of zeros (9999 x 9999: about 777 KB, 800 MB decoded)."""
    comp = zlib.compressobj(9)
    row = b"\x00" * (1 + width * 8)  # filter byte + 4 samples x 2 bytes per pixel
    idat = b"".join(comp.compress(row) for _ in range(height)) + comp.flush()
    return png_bytes(width, height, 16, 6, idat)


def sparse_file(path: Path, size: int = 10**10) -> Path:
    """A file of ``size`` bytes that takes no disk space (a hole)."""
    with open(path, "wb") as fh:
        fh.truncate(size)
    return path


@contextlib.contextmanager
def deadline(seconds: int) -> Iterator[None]:
    """Fail with ``TimeoutError`` instead of hanging (SIGALRM interrupts a blocking ``open``)."""

    def expired(signum: int, frame: object) -> None:
        raise TimeoutError(f"still running after {seconds} s: it blocks")

    old = signal.signal(signal.SIGALRM, expired)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@dataclass
class ChildResult:
    code: int
    out: dict
    stderr: str
    wall_s: float


CHILD = """
import json, resource, sys, time
from fzoo.images import ImageError, load_image
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
t0 = time.perf_counter()
out = {}
try:
    img = load_image(sys.argv[1])
    out["shape"] = list(img.shape)
except ImageError as exc:
    out["error"] = exc.reason
out["load_s"] = round(time.perf_counter() - t0, 4)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out["maxrss_mb"] = round(peak / 1024, 1)
out["extra_rss_mb"] = round((peak - base) / 1024, 1)  # over the peak after the imports
print(json.dumps(out))
"""


def child_load(path: Path, *, address_space: int | None = 1 << 30, env: dict | None = None,
               timeout: float = 60) -> ChildResult:  # fmt: skip
    """``fzoo.load_image(path)`` in a fresh Python, under ``RLIMIT_AS = address_space``.

    Returns the decoded shape or the error, the time ``load_image`` took (imports excluded), the
    peak resident memory of the process and how much ``load_image`` added to the peak.
    """

    def limit() -> None:
        if address_space is not None:
            resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))

    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", CHILD, os.fsdecode(path)],
        capture_output=True,
        text=True,
        timeout=timeout,
        preexec_fn=limit,
        env={**os.environ, **(env or {})},
    )
    wall = time.perf_counter() - start
    lines = done.stdout.strip().splitlines()
    out = json.loads(lines[-1]) if lines else {}
    return ChildResult(done.returncode, out, done.stderr, wall)


def report(case: str, **figures: object) -> None:
    """One ``FIGURE`` line for the reliability table (``pytest -s`` shows them)."""
    print(f"FIGURE {case}: " + ", ".join(f"{k}={v}" for k, v in figures.items()))
