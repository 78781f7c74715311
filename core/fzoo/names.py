"""File names as text that is safe in every output: no encoding crash, no forged line.

POSIX file names are bytes. Python gives a name that is not valid UTF-8 back as a ``str`` with
surrogate escapes (``b"\\xff"`` -> ``"\\udcff"``), which cannot be encoded as UTF-8, and a name
may hold a newline, which would forge a line in any line-oriented output (``skipped PATH:
REASON`` on stderr, a Markdown table, a CSV read line by line).

:func:`escape` writes such a name in one unambiguous printable line: a byte that is not UTF-8 as
``\\xNN`` (always 80 to ff), control characters as ``\\n``, ``\\r``, ``\\t``, ``\\xNN`` (below 80)
or ``\\uNNNN``, and a
backslash as ``\\\\``; everything else (non-ASCII letters included) stays as it is.
:func:`unescape` gives the original ``str`` back, so ``os.fsencode(unescape(escape(name)))`` is
the name's bytes. Files meant to be read back by fzoo (``launder``'s ``manifest.csv``) keep the
original bytes instead (UTF-8 with ``surrogateescape``).
"""

from __future__ import annotations

import re
import unicodedata

_NAMED = {"\\": "\\\\", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
_UNSAFE_CATEGORIES = frozenset({"Cc", "Cs", "Zl", "Zp"})


def _escape_char(c: str) -> str:
    if c in _NAMED:
        return _NAMED[c]
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that is not UTF-8 (surrogateescape)
        return f"\\x{code - 0xDC00:02x}"
    if unicodedata.category(c) in _UNSAFE_CATEGORIES:
        return f"\\x{code:02x}" if code < 0x80 else f"\\u{code:04x}"
    return c


def needs_escape(text: str) -> bool:
    """True when :func:`escape` changes ``text``."""
    return any(c in _NAMED or unicodedata.category(c) in _UNSAFE_CATEGORIES for c in text)


def escape(text: str) -> str:
    """``text`` as one printable, UTF-8-encodable line (see the module docstring)."""
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_escape_char(c) for c in text)


_ESCAPE = re.compile(r"\\(\\|n|r|t|x[0-9a-f]{2}|u[0-9a-f]{4})")


def _unescape_match(m: re.Match[str]) -> str:
    code = m.group(1)
    if code in ("\\", "n", "r", "t"):
        return {"\\": "\\", "n": "\n", "r": "\r", "t": "\t"}[code]
    value = int(code[1:], 16)
    if code[0] == "x" and value >= 0x80:
        return chr(0xDC00 + value)  # a byte that is not UTF-8
    return chr(value)


def unescape(text: str) -> str:
    """The inverse of :func:`escape`."""
    return _ESCAPE.sub(_unescape_match, text)
