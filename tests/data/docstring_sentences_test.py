"""`tfcompress.data.docstring_sentences`: docstrings parsed from sources, never imported."""

import re
import sys

import pytest

from tfcompress.data import docstring_sentences


@pytest.fixture(scope="module")
def stdlib():
    # About 3 s: parsed once for the whole module.
    return docstring_sentences()


def test_standard_library_gives_many_distinct_sentences(stdlib):
    # 11,634 on Python 3.11.
    assert 5000 < len(stdlib) < 30000
    assert len(set(stdlib)) == len(stdlib)


def test_every_sentence_obeys_the_filter(stdlib):
    for sentence in stdlib:
        assert 40 <= len(sentence) <= 300
        assert sentence[0].isupper()
        assert re.search("[a-z]{3}", sentence)
        assert not re.search(r"\s\s|\n", sentence)


def test_a_standard_library_package_is_an_ordered_part_of_the_whole(stdlib):
    json_only = docstring_sentences(["json"])
    assert 20 < len(json_only) < 500
    assert docstring_sentences("json") == json_only
    assert set(json_only) <= set(stdlib)
    positions = [stdlib.index(s) for s in json_only]
    assert positions == sorted(positions)
    assert any("JSON" in s for s in json_only)


def _write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    """`fake_docs`: a package that fails on import, with files to read and to skip."""
    root = tmp_path / "fake_docs"
    _write(
        root / "__init__.py",
        '"""The package docstring is read first, as its file sorts first. Too short."""\n'
        'raise RuntimeError("importing fake_docs")\n',
    )
    _write(
        root / "beta.py",
        'class Thing:\n    """A class docstring is read from beta.py second of all."""\n\n'
        '    async def run(self):\n        """An async method docstring is kept too, third."""\n',
    )
    _write(root / "broken.py", '"""A file that does not parse is skipped entirely."""\ndef (:\n')
    (root / "latin1.py").write_bytes(
        '"""A file that is not UTF-8 is skipped, café."""'.encode("latin-1")
    )
    _write(root / "sub" / "gamma.py", '"""A subdirectory is read after the files beside it."""')
    for skipped in ("tests", "testing_tools", "site-packages", "__pycache__", "idlelib"):
        _write(root / skipped / "x.py", f'"""Nothing under {skipped} is read, ever, by this."""')
    _write(root / "sub" / "test_gamma.py", '"""A test file outside a test directory is read."""')
    monkeypatch.syspath_prepend(str(tmp_path))
    return "fake_docs"


def test_reads_sources_in_a_fixed_order_and_skips_tests_and_broken_files(fake_package):
    assert docstring_sentences(fake_package) == [
        "The package docstring is read first, as its file sorts first.",
        "A class docstring is read from beta.py second of all.",
        "An async method docstring is kept too, third.",
        "A subdirectory is read after the files beside it.",
        "A test file outside a test directory is read.",
    ]
    # Reading it never ran its `raise`.
    assert fake_package not in sys.modules


def test_several_packages_are_each_sentence_once_in_name_order():
    both = docstring_sentences(["json", "email"])
    assert len(set(both)) == len(both)
    json_only, email_only = docstring_sentences("json"), docstring_sentences("email")
    assert both == list(dict.fromkeys(json_only + email_only))
    assert docstring_sentences([]) == []


def test_a_package_that_is_not_installed_says_how_to_fix_it():
    with pytest.raises(
        ValueError,
        match=r"`packages` names 'no_such_package_xyz', which is not installed.*pip install "
        r"no_such_package_xyz.*packages=None.*Received: packages=\['json', 'no_such_package_xyz'\]",
    ):
        docstring_sentences(["json", "no_such_package_xyz"])


def test_a_single_module_or_dotted_name_is_refused():
    with pytest.raises(ValueError, match=r"'os', which is a single module, not a package"):
        docstring_sentences(["os"])
    with pytest.raises(ValueError, match=r"top-level packages.*'email.mime'"):
        docstring_sentences(["email.mime"])


def test_packages_of_the_wrong_type_are_refused():
    with pytest.raises(TypeError, match=r"`packages` must be None.*Received: packages=3"):
        docstring_sentences(3)
