"""Built-in ``virtual-cameras`` dataset: bundled photos rendered through simulated cameras.

The camera models are in :mod:`fzoo_builtins.virtual_cameras.cameras`, the imaging pipeline in
:mod:`fzoo_builtins.virtual_cameras.pipeline`; see ``docs/virtual-cameras.md``.
"""

from __future__ import annotations

from typing import Any

from fzoo import hookimpl
from fzoo_builtins.virtual_cameras.cameras import CAMERAS, Camera, get_camera
from fzoo_builtins.virtual_cameras.dataset import VirtualCameras

__all__ = ["CAMERAS", "Camera", "VirtualCameras", "fzoo_register_datasets", "get_camera"]


@hookimpl
def fzoo_register_datasets(register: Any) -> None:
    register(VirtualCameras)
