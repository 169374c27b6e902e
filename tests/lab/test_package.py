"""The wheel carries everything the app and the engine read at run time (pages, shipped checkpoints),
and the code finds them through the package, not through the clone's layout."""

import importlib
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from core.resources import package_folder

ROOT = Path(__file__).resolve().parents[2]
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv*", "runs", "build", "dist", "*.egg-info", "__pycache__",
                                    ".pytest_cache", ".peer", ".notes", "tmp")


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> zipfile.ZipFile:
    # Build from a copy: setuptools writes build/ and *.egg-info into the tree it builds.
    src = tmp_path_factory.mktemp("src") / "rlhf-lab"
    shutil.copytree(ROOT, src, ignore=NOT_SOURCE)
    out = src / "dist"
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q",
                    "--disable-pip-version-check", str(src), "-w", str(out)], check=True, cwd=src)
    (whl,) = out.glob("rlhf_lab-*.whl")
    return zipfile.ZipFile(whl)


@pytest.mark.slow  # a pip subprocess building the wheel: 3-9 s on a loaded 2-core machine
def test_wheel_holds_every_page_and_every_shipped_model_file(wheel):
    names = set(wheel.namelist())
    pages = sorted(p.name for p in (ROOT / "pages").glob("*.py"))
    assert pages and {f"lab/pages/{p}" for p in pages} <= names
    shipped = [p.relative_to(ROOT / "assets").as_posix() for p in (ROOT / "assets").rglob("*")
               if p.is_file() and "__pycache__" not in p.parts]
    assert any(s.endswith("model.safetensors") for s in shipped)
    missing = [s for s in shipped if f"core/assets/{s}" not in names]
    assert not missing, f"shipped files left out of the wheel: {missing}"
    # every module of the engine and the app shell (a new subpackage must be listed in pyproject.toml),
    # the console script, and nothing of the clone that is not run time
    modules = {p.relative_to(ROOT).as_posix() for pkg in ("core", "lab") for p in (ROOT / pkg).rglob("*.py")
               if "__pycache__" not in p.parts}
    assert {"core/model.py", "core/config/base.py", "lab/app.py", "lab/cli/__init__.py", "lab/cli/set.py", "lab/views/ppo.py"} <= modules
    assert not modules - names, f"modules left out of the wheel: {sorted(modules - names)}"
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "rlhf-lab = lab.cli:main" in wheel.read(entry_points).decode()
    assert not [n for n in names if n.startswith(("tests/", "benchmarks/", "scripts/", "pages/", "assets/"))]
    assert sum(i.file_size for i in wheel.infolist()) < 20e6  # the shipped models are ~7.5 MB


def _package(tmp_path, layout: str) -> str:
    """A throwaway package `pkg_<layout>` with a `pages` folder laid out as installed or as in a clone."""
    name = f"pkg_{layout}"
    (tmp_path / name).mkdir()
    (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / name / "pages" if layout == "installed" else tmp_path / "pages").mkdir()
    sys.path.insert(0, str(tmp_path))
    importlib.invalidate_caches()
    return name


@pytest.mark.parametrize("layout", ["installed", "clone"])
def test_package_folder_is_found_from_the_imported_package(tmp_path, layout):
    name = _package(tmp_path, layout)
    try:
        expected = tmp_path / name / "pages" if layout == "installed" else tmp_path / "pages"
        assert package_folder(name, "pages") == expected
    finally:
        sys.path.remove(str(tmp_path))
        sys.modules.pop(name, None)
