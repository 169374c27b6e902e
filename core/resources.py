"""Where the lab's files that are not code live: the Streamlit pages and the shipped checkpoints.

Installed from a wheel they are package data inside the packages: `lab/pages/` and `core/assets/`
(pyproject.toml maps the clone's top-level `pages/` and `assets/` to the packages `lab.pages` and
`core.assets`). In a source tree (a clone on PYTHONPATH, or an editable install) they are the clone's
top-level folders beside the package. Both are found from the package that is actually imported, via
importlib.resources, so a clone always runs its own pages and models, even when another copy of the
lab is installed in the same environment.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path


def package_folder(package: str, name: str) -> Path:
    """The folder `name` that belongs to the imported `package`: `<package>/<name>` in an installed
    wheel, else `<name>` beside the package in a source tree. Streamlit and `from_pretrained` need real
    folders, so this is a filesystem path (wheels install unzipped)."""
    root = Path(str(files(package)))
    inside = root / name          # installed: site-packages/lab/pages, site-packages/core/assets
    beside = root.parent / name   # source tree: <clone>/pages, <clone>/assets
    if inside.is_dir() or not beside.is_dir():
        return inside
    return beside


def pages_dir() -> Path:
    """The Streamlit pages (pages/<n>_<Name>.py)."""
    return package_folder("lab", "pages")


def assets_dir() -> Path:
    """The shipped checkpoints (assets/small, assets/weak, assets/reward) and their README."""
    return package_folder("core", "assets")
