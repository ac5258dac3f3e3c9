"""`tfcompress.data.pydoc_sentences`: fixed order, no repeats, the filter."""

import re

import tfcompress
from tfcompress.data import pydoc_sentences, pydoc_text


def test_sentences_are_many_distinct_and_in_a_fixed_order():
    sentences = pydoc_sentences()
    # 1,834 on Python 3.11; the topics change a little between Python versions.
    assert 1000 < len(sentences) < 5000
    assert len(set(sentences)) == len(sentences)
    assert pydoc_sentences() == sentences


def test_every_sentence_obeys_the_filter():
    for sentence in pydoc_sentences():
        assert 40 <= len(sentence) <= 300
        assert sentence[0].isupper()
        assert not re.search(r"\s\s|\n", sentence)


def test_sentences_come_from_the_pydoc_text_in_its_order():
    sentences = pydoc_sentences()
    text = re.sub(r"\s+", " ", pydoc_text())
    assert all(s in text for s in sentences[:50])
    positions = [text.index(s) for s in sentences[:50]]
    assert positions == sorted(positions)


def test_public_path():
    assert tfcompress.data.pydoc_sentences is pydoc_sentences
