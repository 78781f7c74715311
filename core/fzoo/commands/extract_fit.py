"""``fzoo extract`` with a learned extractor: fitted on a labelled folder, or from a saved state.

A learned extractor (``requires_fit``) cannot extract before it is fitted. ``--fit-on DIR`` fits
it on the images under ``DIR``'s sub-folders, labelled by the sub-folder names as the ``folder``
dataset reads them (``--fit-target camera``: the sub-folders are cameras and every image is a
``pristine`` photo of its camera, as with ``folders: camera``); only the labels of the
extractor's ``fit_on`` are used. ``--save-state DIR`` keeps the fitted state, which ``--state
DIR`` loads later (so does the ``extractors/<j>`` folder of a saved pipeline). Without either
the command stops before reading any image, and says so.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fzoo.components import FeatureExtractor


class FitUsageError(ValueError):
    """A learned extractor without the means to fit it, or fit flags that do not apply."""


def check_fit_args(args: argparse.Namespace, ext: FeatureExtractor) -> None:
    """Refuse, before any image is read, fit flags that do not fit the extractor."""
    flags = {
        "--fit-on": args.fit_on,
        "--fit-target": args.fit_target,
        "--state": args.state,
        "--save-state": args.save_state,
    }
    name = repr(ext.name)
    if not ext.requires_fit:
        given = [flag for flag, value in flags.items() if value]
        if given:
            raise FitUsageError(
                f"{name} is not a learned extractor (it needs no fitting): "
                f"{', '.join(given)} {'does' if len(given) == 1 else 'do'} not apply"
            )
        return
    if args.fit_on and args.state:
        raise FitUsageError("give --fit-on DIR (fit now) or --state DIR (a fitted state), not both")
    if not args.fit_on and not args.state:
        raise FitUsageError(
            f"{name} is a learned extractor (requires_fit): it must be fitted before it "
            "extracts. Give --fit-on DIR to fit it on a labelled folder (one sub-folder per "
            "label; --fit-target label|camera; --save-state DIR keeps the state), or --state DIR "
            "to load a state saved by --save-state (or a saved pipeline's extractors/<j> "
            "folder). No image was read"
        )
    if args.save_state and not args.fit_on:
        raise FitUsageError("--save-state needs --fit-on (a state loaded with --state is saved)")
    if args.fit_target and args.fit_target != ext.fit_target:
        raise FitUsageError(
            f"{name} learns {ext.fit_target!r} (its fit_target); --fit-target {args.fit_target} "
            "does not apply"
        )
    folder = Path(args.fit_on or args.state)
    if not folder.is_dir():
        flag = "--fit-on" if args.fit_on else "--state"
        raise FitUsageError(f"{flag} {folder}: not a folder")
    if args.save_state:
        save = Path(args.save_state)
        if save.exists() and (not save.is_dir() or any(save.iterdir())):
            raise FitUsageError(f"--save-state {save}: exists and is not an empty folder")
        parent = save.parent if str(save.parent) else Path(".")
        if parent.exists() and not os.access(parent, os.W_OK | os.X_OK):
            raise FitUsageError(f"--save-state {save}: folder {parent} is not writable")


def prepare(args: argparse.Namespace, ext: FeatureExtractor) -> dict[str, Any]:
    """Fit ``ext`` or load its state (after :func:`check_fit_args`); what the ``.npz`` and the
    summary record about it (where the state comes from, its sha256)."""
    if args.state:
        state = Path(args.state)
        _check_complete(state, ext)
        ext.load_state(state)
        return {"state": str(state), "state_sha256": state_sha256(state)}
    n, labels = fit_on_folder(ext, Path(args.fit_on), quiet=bool(getattr(args, "json", False)))
    info: dict[str, Any] = {"fitted_on": str(args.fit_on), "fit_target": ext.fit_target}
    info |= {"n_fit": n, "fit_labels": sorted(set(labels))}
    if args.save_state:
        from fzoo.fitting import save_fitted

        save = Path(args.save_state)
        if save.is_dir():
            save.rmdir()  # empty (checked): save_fitted renames its own folder into place
        save_fitted(ext, save)
        info |= {"state": str(save), "state_sha256": state_sha256(save)}
    return info


def _check_complete(state: Path, ext: FeatureExtractor) -> None:
    """A state written by fzoo carries the extractor's fingerprint (``COMPLETE``): refuse one
    written with other parameters or by another extractor."""
    marker = state / "COMPLETE"
    if not marker.is_file():
        return  # written by hand or by the plugin alone: its load_state checks it
    saved = marker.read_text(encoding="utf-8", errors="replace").strip()
    if saved and saved != ext.fingerprint():
        raise FitUsageError(
            f"--state {state}: saved by an extractor with other parameters or another version "
            f"(fingerprint {saved[:12]}, this one {ext.fingerprint()[:12]}); give the --param "
            "values it was fitted with"
        )


def labelled_images(root: Path, target: str) -> list[tuple[Path, str, str | None]]:
    """``(path, label, camera)`` of every image under ``root``'s sub-folders, sorted: the
    sub-folder is the label (``target`` label) or the camera of a ``pristine`` photo."""
    from fzoo.commands._common import skip_line
    from fzoo.images import folder_error, list_images

    def report(folder: Path, exc: OSError) -> None:
        skip_line(folder, folder_error(folder, exc))

    out: list[tuple[Path, str, str | None]] = []
    try:
        subs = sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError as exc:
        raise FitUsageError(f"--fit-on {root}: {exc.strerror or exc}") from None
    for sub in subs:
        for path in list_images(sub, report):
            if target == "camera":
                out.append((path, "pristine", sub.name))
            else:
                out.append((path, sub.name, None))
    return out


def fit_on_folder(ext: FeatureExtractor, root: Path, quiet: bool = False) -> tuple[int, list[str]]:
    """Fit ``ext`` on the labelled images under ``root`` (its ``fit_on`` labels only), in one
    pass; returns the number of images and their labels (camera names for ``camera``)."""
    from fzoo.images import ImageError, load_image, to_tensor
    from fzoo.progress import track

    target, fit_on = ext.fit_target, ext.fit_on
    found = labelled_images(root, target)
    chosen = [(p, lab, cam) for p, lab, cam in found if fit_on is None or lab in fit_on]
    if not chosen:
        labels = sorted({lab for _, lab, _ in found})
        raise FitUsageError(
            f"--fit-on {root}: no training image for {ext.name!r}: found labels "
            f"{labels or '(no image in any sub-folder)'}"
            + (f", and it trains only on fit_on {fit_on} (--param fit_on=...)" if fit_on else "")
        )
    labels = [str(cam if target == "camera" else lab) for _, lab, cam in chosen]

    def images() -> Any:
        for path, _, _ in chosen:
            try:
                yield to_tensor(load_image(path).pixels)
            except ImageError as exc:  # the labels are fixed: a missing image would shift them
                raise FitUsageError(
                    f"--fit-on: cannot read training image {path}: {exc.reason}; remove it"
                ) from None

    if not quiet:
        print(f"fitting {ext.name} on {len(chosen)} images of {root} ({target})", file=sys.stderr)
    ext.fit(track(images(), f"fit {ext.name}", len(chosen), "img"), labels)
    return len(chosen), labels


def state_sha256(folder: Path) -> str:
    """sha256 of a state folder: every file's relative path and content hash (``COMPLETE``
    aside)."""
    from fzoo.weights import sha256_file

    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file() and p.name != "COMPLETE"):
        digest.update(f"{path.relative_to(folder)}\0{sha256_file(path)}\n".encode())
    return digest.hexdigest()
