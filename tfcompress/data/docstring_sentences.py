"""English sentences of docstrings, parsed from installed sources without importing them."""

import ast
import importlib.util
import os

from tfcompress.data._split import split_sentences

# Directories left out at every level, besides any whose name starts with "test":
# third-party code, IDLE's and turtledemo's UI text, lib2to3's fixers, caches.
_SKIPPED = {"site-packages", "idlelib", "lib2to3", "turtledemo", "__pycache__"}
_WITH_DOCSTRINGS = (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)


def docstring_sentences(packages=None):
    """English sentences of the docstrings of the standard library or installed packages.

    Every `.py` file under the package directories is parsed with `ast`:
    nothing is imported, run or downloaded. Files are read in sorted order,
    each directory's files before its subdirectories; directories whose name
    starts with `test`, and `site-packages`, `idlelib`, `lib2to3`,
    `turtledemo`, `__pycache__`, are left out, and so are files that are not
    UTF-8 Python. The module, class and function docstrings are split into
    sentences and kept by the filter of `english_sentences` (40..300
    characters, a capital first, three lowercase letters in a row).

    Parsing takes seconds: about 3 s for the standard library (11,600
    sentences on Python 3.11), tens of seconds for numpy, scipy and sklearn.

    Args:
        packages: `None` for the standard library, or the names of installed
            top-level packages (a list of `str`, or one `str`), e.g.
            `["numpy", "scipy"]`; a standard-library package such as `"json"`
            works too. Only the named packages are read, not the standard
            library with them.

    Returns:
        A list of `str`, each sentence once, in the order of first appearance.

    Raises:
        TypeError: if `packages` is not `None`, a `str` or a list of `str`.
        ValueError: if a name is not an installed top-level package.

    Example:

    ```python
    import tfcompress

    stdlib = tfcompress.data.docstring_sentences()
    json_only = tfcompress.data.docstring_sentences(["json"])
    ```
    """
    if packages is None:
        roots = [os.path.dirname(os.__file__)]
    else:
        if isinstance(packages, str):
            names = [packages]
        elif isinstance(packages, (list, tuple)):
            names = list(packages)
        else:
            raise TypeError(
                "`packages` must be None, a package name or a list of package names, e.g. "
                f"['numpy', 'scipy']. Received: packages={packages!r}"
            )
        roots = [root for name in names for root in _package_roots(name, packages)]
    found = []
    for root in roots:
        found += _sentences_under(root)
    return list(dict.fromkeys(found))


def _package_roots(name, packages):
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(
            "`packages` must name top-level packages, e.g. ['numpy', 'scipy'] (a dotted "
            f"name would import its parent). Received: packages={packages!r}, with {name!r}"
        )
    # For a top-level name, find_spec locates the package without importing it.
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        what = "not installed" if spec is None else "a single module, not a package"
        raise ValueError(
            f"`packages` names {name!r}, which is {what}. Pass installed packages (e.g. "
            f"`pip install {name}` first), or `packages=None` for the standard library. "
            f"Received: packages={packages!r}"
        )
    return list(spec.submodule_search_locations)


def _sentences_under(root):
    found = []
    for directory, subdirectories, files in os.walk(root):
        # Sorted in place so os.walk descends in a fixed order on every machine.
        subdirectories[:] = sorted(
            d for d in subdirectories if d not in _SKIPPED and not d.startswith("test")
        )
        for name in sorted(f for f in files if f.endswith(".py")):
            try:
                with open(os.path.join(directory, name), encoding="utf-8") as f:
                    tree = ast.parse(f.read())
            except (SyntaxError, UnicodeDecodeError, ValueError):
                continue
            for node in ast.walk(tree):
                if isinstance(node, _WITH_DOCSTRINGS):
                    docstring = ast.get_docstring(node) or ""
                    found += split_sentences(docstring, 40, 300, require_word=True)
    return found
