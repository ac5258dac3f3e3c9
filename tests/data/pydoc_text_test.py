"""`tfcompress.data.pydoc_text`: Python's documentation topics as one string."""

from pydoc_data import topics

from tfcompress.data import pydoc_text


def test_text_is_every_topic_in_key_order_joined_by_blank_lines():
    text = pydoc_text()
    keys = sorted(topics.topics)
    assert text.startswith(topics.topics[keys[0]])
    assert text.endswith(topics.topics[keys[-1]])
    assert len(text) == sum(len(topics.topics[k]) for k in keys) + 2 * (len(keys) - 1)
    assert pydoc_text() == text
