"""`tfcompress.data.english_sentences`: the docstring filter on any text."""

import pytest

from tfcompress.data import english_sentences

_TEXT = (
    "Short one. This sentence is long enough to be kept by the filter!\n\n"
    "lowercase starts are not sentences we keep, however long they are. "
    "ABC DEF GHI JKL MNO PQR STU VWX YZA BCD EFG HIJ KLM. "
    "This   sentence is long enough to be kept by the filter! "
    "Is a question that ends the text kept as well, without a space after it?"
)


def test_keeps_long_capitalised_prose_once_in_order():
    assert english_sentences(_TEXT) == [
        "This sentence is long enough to be kept by the filter!",
        "Is a question that ends the text kept as well, without a space after it?",
    ]


def test_length_bounds_are_inclusive():
    sentence = "Exactly this long, with words."
    assert english_sentences(sentence, min_chars=len(sentence), max_chars=len(sentence)) == [
        sentence
    ]
    assert english_sentences(sentence, min_chars=len(sentence) + 1, max_chars=300) == []
    assert english_sentences(sentence, min_chars=1, max_chars=len(sentence) - 1) == []


def test_bytes_are_refused_with_how_to_decode():
    with pytest.raises(TypeError, match=r"`text` must be a `str`.*bytes.*decode"):
        english_sentences(b"Some bytes, not text at all.")


def test_empty_length_range_is_refused():
    with pytest.raises(ValueError, match=r"min_chars=50, max_chars=40"):
        english_sentences("Anything.", min_chars=50, max_chars=40)
