"""Build hook: the wheel carries the top-level ``registry.yaml`` as ``fzoo/registry.yaml``.

Everything else about the build is in pyproject.toml. A source checkout (and an editable
install) reads ``registry.yaml`` at the repository root instead; see ``fzoo.catalogue``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py


class BuildPyWithCatalogue(build_py):
    """Copy ``registry.yaml`` into the built ``fzoo`` package."""

    def run(self) -> None:
        super().run()
        if not getattr(self, "editable_mode", False):
            target = Path(self.build_lib) / "fzoo" / "registry.yaml"
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(Path(__file__).parent / "registry.yaml", target)


setup(cmdclass={"build_py": BuildPyWithCatalogue})
