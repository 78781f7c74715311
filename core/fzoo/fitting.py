"""Fitting learned feature extractors on the training split, with the fitted state cached.

A fitted state is kept in the cache (``fitted/<fingerprint>/``, the fingerprint of the extractor
and of the training images it saw), so a re-run loads it instead of training again.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from fzoo.components import FeatureExtractor, stable_hash
from fzoo.engines.local import tensor_batches
from fzoo.engines.timeout import call_with_timeout, failure_reason

if TYPE_CHECKING:
    from fzoo.cache import ArrayCache
    from fzoo.data import Item, Materializer


def fit_extractors(
    extractors: dict[str, FeatureExtractor],
    train: list[Item],
    mat: Materializer,
    failed: dict[str, str],
    *,
    cache: ArrayCache,
    states: dict[str, Path],
    log: Callable[[str], None],
    timeouts: dict[str, float | None] | None = None,
) -> dict[str, FeatureExtractor]:
    """Fit learned extractors on the training split; their cache identity includes it.

    Returns fingerprint -> extractor, with the fitted fingerprint for a fitted one (whose saved
    state is added to ``states``). ``timeouts`` bounds each ``fit`` call (by fingerprint); an
    extractor whose fit fails is recorded in ``failed`` and left out.
    """
    out: dict[str, FeatureExtractor] = {}
    for fp, ext in extractors.items():
        if not ext.requires_fit:
            out[fp] = ext
            continue
        target, fit_on = ext.fit_target, ext.fit_on
        chosen = [
            it
            for it in train
            if (fit_on is None or it.label in fit_on)
            and (it.camera if target == "camera" else it.label) is not None
        ]
        train_id = stable_hash(
            [target, sorted(f"{it.id}:{it.base_hash}:{it.chain}" for it in chosen)]
        )
        fitted_fp = stable_hash([fp, train_id])
        state = cache.root / "fitted" / fitted_fp
        try:
            if (state / "COMPLETE").exists():
                ext.load_state(state)
            else:
                labels = [str(it.camera if target == "camera" else it.label) for it in chosen]
                log(f"fitting {ext.name} on {len(chosen)} training images ({target})")
                from fzoo.progress import track

                # making derived training images (laundering, generation) can take minutes
                images = (mat.image(it) for it in chosen)
                stage = f"training images for {ext.name}"
                batches = tensor_batches(track(images, stage, len(chosen), "img"))
                limit = (timeouts or {}).get(fp)
                call_with_timeout(partial(ext.fit, batches, labels), limit, f"{ext.name}.fit")
                save_fitted(ext, state)
        except Exception as exc:  # a plugin that raises in fit fails its own pipelines
            failed[fp] = f"{ext.name}: fit failed: {failure_reason(exc)}"
            log(f"error: {failed[fp]}")
            continue
        states[fitted_fp] = state
        out[fitted_fp] = ext
    return out


def save_fitted(ext: FeatureExtractor, state: Path) -> None:
    """Write the state into a folder of this process's own, then rename it into place.

    Two runs fitting the same extractor at once each write their own ``.tmp-*`` folder;
    the first rename wins and the other run keeps the winner's (equal) state.
    """
    state.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=state.parent, prefix=f".tmp-{state.name}-"))
    try:
        ext.save_state(tmp)
        (tmp / "COMPLETE").write_text(ext.fingerprint())
        rename_dir(tmp, state)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def rename_dir(tmp: Path, dest: Path) -> None:
    """Rename folder ``tmp`` to ``dest``; when another process has put a complete ``dest`` in
    place first, keep that one (``tmp`` is left for the caller to remove)."""
    try:
        os.rename(tmp, dest)
        return
    except OSError:
        if (dest / "COMPLETE").exists():
            return
    shutil.rmtree(dest, ignore_errors=True)  # an incomplete leftover of an older fzoo
    try:
        os.rename(tmp, dest)
    except OSError:
        if not (dest / "COMPLETE").exists():
            raise
