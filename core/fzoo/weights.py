"""One resolver for model weights: a hub id, a local folder, or a single checkpoint file.

A hub reference is ``org/name``, optionally ``org/name@revision`` and/or ``org/name#subfolder``
(``stabilityai/sdxl-vae``, ``stabilityai/stable-diffusion-3-medium-diffusers#vae``). The local
Hugging Face cache is tried first; a download happens only when the machine is online. Offline, the
resolver fails at once (no retries) with the exact ``hf download`` command to run and the YAML line
to change. Bundled weights are checked against their sha256.
"""

from __future__ import annotations

import hashlib
import os
import re
import socket
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from urllib.parse import urlparse

HUB_ID = re.compile(
    r"^(?P<repo>[A-Za-z0-9][\w.\-]*/[\w.\-]+)(?:@(?P<revision>[\w.\-/]+?))?(?:#(?P<subfolder>[\w.\-/]+))?$"
)
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt", ".ckpt", ".json")


class WeightsError(Exception):
    """Weights could not be found or trusted; the message says what to do."""


class WeightsNotFoundError(WeightsError):
    """Weights are neither local nor in the cache, and cannot be downloaded now."""


class WeightsIntegrityError(WeightsError):
    """A weight file's sha256 does not match the expected one."""


@dataclass(frozen=True)
class HubRef:
    """A parsed ``org/name[@revision][#subfolder]`` reference."""

    repo_id: str
    revision: str | None = None
    subfolder: str | None = None

    def download_command(self) -> str:
        cmd = f"hf download {self.repo_id}"
        if self.revision:
            cmd += f" --revision {self.revision}"
        if self.subfolder:
            cmd += f" --include '{self.subfolder}/*'"
        return cmd


@dataclass(frozen=True)
class ResolvedWeights:
    """Where weights are on disk. ``path`` is a folder (diffusers layout) or a single file."""

    path: Path
    source: str  # "local", "hub-cache" or "download"
    ref: HubRef | None = None

    @property
    def is_file(self) -> bool:
        return self.path.is_file()


def parse_hub_ref(text: str) -> HubRef | None:
    """``org/name[@rev][#subfolder]`` -> :class:`HubRef`; None if ``text`` is not of that form."""
    m = HUB_ID.match(text.strip())
    if not m:
        return None
    return HubRef(m["repo"], m["revision"], m["subfolder"])


def is_offline() -> bool:
    """True when ``HF_HUB_OFFLINE`` is set or the hub endpoint cannot be reached within 1 s."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return True
    return not _endpoint_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))


@lru_cache(maxsize=4)
def _endpoint_reachable(endpoint: str) -> bool:
    url = urlparse(endpoint)
    host, port = url.hostname or "huggingface.co", url.port or (443 if url.scheme != "http" else 80)
    try:
        with socket.create_connection((host, port), timeout=1.0):
            return True
    except OSError:
        return False


def _not_found(ref: HubRef, reason: str, param: str) -> WeightsNotFoundError:
    sub = f"/{ref.subfolder}" if ref.subfolder else ""
    return WeightsNotFoundError(
        f"weights {ref.repo_id!r} are not in the local Hugging Face cache and {reason}.\n"
        f"  Fetch them on a machine with network access:\n"
        f"    {ref.download_command()} --local-dir ./weights/{ref.repo_id.split('/')[-1]}\n"
        f"  then point the YAML at the folder: params: {{{param}: "
        f"./weights/{ref.repo_id.split('/')[-1]}{sub}}}\n"
        f"  (or copy the Hugging Face cache to this machine and keep the hub id)."
    )


def resolve(reference: str | os.PathLike[str], param: str = "weights") -> ResolvedWeights:
    """Find weights on disk: a local folder or file, the hub cache, or (online) a download.

    ``param`` names the YAML parameter, so the error message can say which line to change.
    """
    text = str(reference)
    local = Path(text).expanduser()
    if local.exists():
        return ResolvedWeights(local.resolve(), "local")
    ref = parse_hub_ref(text)
    if ref is None or text.startswith((".", "/", "~")):
        raise WeightsNotFoundError(
            f"weights {text!r}: no such file or folder, and not a hub id of the form "
            "org/name[@revision][#subfolder]"
        )
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    patterns = [f"{ref.subfolder}/*"] if ref.subfolder else None
    try:
        folder = snapshot_download(
            ref.repo_id, revision=ref.revision, allow_patterns=patterns, local_files_only=True
        )
        path = Path(folder) / (ref.subfolder or "")
        if path.exists() and any(path.iterdir()):
            return ResolvedWeights(path, "hub-cache", ref)
    except (LocalEntryNotFoundError, FileNotFoundError, OSError, ValueError):
        pass
    if is_offline():
        raise _not_found(ref, "this machine is offline (HF_HUB_OFFLINE or no route to the hub)",
                         param)  # fmt: skip
    try:
        folder = snapshot_download(ref.repo_id, revision=ref.revision, allow_patterns=patterns)
    except Exception as exc:  # network errors, gated repos, missing revisions
        raise _not_found(ref, f"the download failed ({type(exc).__name__}: {exc})", param) from None
    return ResolvedWeights(Path(folder) / (ref.subfolder or ""), "download", ref)


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, streamed."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


HASH_CACHE = "weight-sha256"
"""Folder of the fzoo cache dir holding one small file per hashed weight file."""

_HEX64 = re.compile(r"^[0-9a-f]{64}$")


def _hash_cache_file(path: str, size: int, mtime_ns: int) -> Path | None:
    """Where the sha256 of ``path`` at (size, mtime) is kept; None when no cache dir is usable."""
    from fzoo.cache import default_cache_dir

    try:
        root = default_cache_dir() / HASH_CACHE
    except (RuntimeError, OSError):  # no home folder
        return None
    key = hashlib.sha256(f"{path}\0{size}\0{mtime_ns}".encode("utf-8", "surrogateescape"))
    return root / f"{key.hexdigest()[:40]}.txt"


@lru_cache(maxsize=1024)
def _cached_sha(path: str, size: int, mtime_ns: int) -> str:
    cached = _hash_cache_file(path, size, mtime_ns)
    if cached is not None:
        try:
            text = cached.read_text().strip()
            if _HEX64.match(text):
                return text
        except OSError:
            pass
    digest = sha256_file(path)
    if cached is not None:
        try:  # best effort: a read-only cache only costs a re-hash next time
            from fzoo.fsutil import atomic_write_bytes

            atomic_write_bytes(cached, (digest + "\n").encode())
        except OSError:
            pass
    return digest


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's content, hashed once per (resolved path, size, mtime_ns).

    The digest is memoised in memory and in the fzoo cache dir (``$FZOO_CACHE_DIR/weight-sha256``),
    so a multi-gigabyte checkpoint is read once, not at every fingerprint or every run. A changed
    file (new size or mtime) is hashed again; the path is resolved, so a symlink, ``./`` or a
    trailing slash name the same entry.
    """
    real = Path(path).resolve()
    st = real.stat()
    return _cached_sha(str(real), st.st_size, st.st_mtime_ns)


def weight_hashes(path: str | os.PathLike[str]) -> dict[str, str]:
    """sha256 of every weight/config file under ``path`` (or of ``path`` itself), by relative name.

    Names are relative to ``path`` (a single file: its name), so the same files reached through
    another spelling of the path or a symlink give the same dict. Hashes come from
    :func:`file_sha256` (content, cached by resolved path, size and mtime).
    """
    p = Path(path)
    files = [p] if p.is_file() else sorted(q for q in p.rglob("*") if q.is_file())
    out: dict[str, str] = {}
    for f in files:
        if f.suffix not in WEIGHT_SUFFIXES:
            continue
        name = f.name if p.is_file() else f.relative_to(p).as_posix()
        out[name] = file_sha256(f)
    return out


def verify_sha256(path: str | os.PathLike[str], expected: str) -> None:
    """Raise :class:`WeightsIntegrityError` unless ``path`` has the expected sha256."""
    got = sha256_file(path)
    if got != expected.lower():
        raise WeightsIntegrityError(
            f"{path}: sha256 {got} does not match the expected {expected}; the file is corrupt "
            "or was replaced. Reinstall the package (bundled weights) or re-download them."
        )


def verify_sums(folder: str | os.PathLike[str], sums_file: str = "SHA256SUMS") -> None:
    """Check every file listed in ``folder/SHA256SUMS`` (``<sha256>  <name>`` lines)."""
    root = Path(folder)
    listing = root / sums_file
    if not listing.exists():
        raise WeightsIntegrityError(f"{listing} is missing; cannot verify bundled weights")
    for line in listing.read_text().splitlines():
        if not line.strip():
            continue
        digest, name = line.split(maxsplit=1)
        verify_sha256(root / name.strip().lstrip("*"), digest)
