"""BUILD lists every module and test file."""

import pathlib
import re
import runpy

ROOT = pathlib.Path(__file__).resolve().parent.parent


def _listed_files():
    return set(re.findall(r'"([\w/]+\.py)"', (ROOT / "BUILD").read_text()))


def test_every_module_is_in_build():
    tool = runpy.run_path(str(ROOT / "tools" / "update_build.py"))
    missing = set(tool["library_sources"]()) - _listed_files()
    assert not missing, (
        f"BUILD is missing modules {sorted(missing)}; run `python tools/update_build.py`."
    )


def test_every_test_is_in_build():
    tool = runpy.run_path(str(ROOT / "tools" / "update_build.py"))
    missing = set(tool["test_sources"]()) - _listed_files()
    assert not missing, (
        f"BUILD is missing tests {sorted(missing)}; run `python tools/update_build.py`."
    )


def test_build_lists_no_deleted_file():
    stale = [f for f in _listed_files() if not (ROOT / f).exists()]
    assert not stale, (
        f"BUILD lists files that do not exist: {stale}; run `python tools/update_build.py`."
    )
