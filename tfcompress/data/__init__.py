"""Offline English text for training, calibration and evaluation: nothing is downloaded.

Sentences of Python's own documentation topics and of the docstrings of the
standard library or installed packages, parsed from their sources.
"""

from tfcompress.data.docstring_sentences import docstring_sentences
from tfcompress.data.english_sentences import english_sentences
from tfcompress.data.pydoc_sentences import pydoc_sentences
from tfcompress.data.pydoc_text import pydoc_text

__all__ = [
    "docstring_sentences",
    "english_sentences",
    "pydoc_sentences",
    "pydoc_text",
]
