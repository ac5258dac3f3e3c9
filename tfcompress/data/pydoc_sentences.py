"""English sentences of Python's documentation topics."""

from tfcompress.data._split import split_sentences


def pydoc_sentences():
    """The sentences of `pydoc_data.topics`, in a fixed order, no repeats.

    Each topic (in sorted key order) is split at `.`, `!` or `?` followed by
    whitespace, and a sentence is kept when it is 40..300 characters long and
    starts with a capital letter. 1,834 sentences on Python 3.11; the count
    and content depend on the Python version, not on the machine.

    Returns:
        A list of `str`.

    Example:

    ```python
    import tfcompress

    sentences = tfcompress.data.pydoc_sentences()
    held_out, train = sentences[:384], sentences[384:]
    ```
    """
    from pydoc_data import topics

    found = []
    for key in sorted(topics.topics):
        found += split_sentences(topics.topics[key], 40, 300, require_word=False)
    return list(dict.fromkeys(found))
