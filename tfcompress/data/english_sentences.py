"""English sentences of any text."""

from tfcompress.data._split import split_sentences


def english_sentences(text, min_chars=40, max_chars=300):
    """The sentences of `text` that read as English prose, in order, no repeats.

    The filter of `docstring_sentences`: whitespace runs become one space, a
    sentence ends at `.`, `!` or `?` followed by whitespace, and a sentence is
    kept when it is `min_chars..max_chars` characters long, starts with a
    capital letter and has three lowercase letters in a row.

    Args:
        text: a `str`.
        min_chars: the shortest sentence kept, in characters.
        max_chars: the longest sentence kept, in characters.

    Returns:
        A list of `str`, each sentence once, in the order of first appearance.

    Raises:
        TypeError: if `text` is not a `str`.
        ValueError: if the lengths do not make a range.

    Example:

    ```python
    import tfcompress

    tfcompress.data.english_sentences(
        "Short. This sentence is long enough to be kept by the filter. 1 + 2 = 3."
    )
    # ['This sentence is long enough to be kept by the filter.']
    ```
    """
    if not isinstance(text, str):
        raise TypeError(
            f"`text` must be a `str`. Received: text of type {type(text).__name__}. "
            "Decode bytes first, e.g. `data.decode('utf-8')`."
        )
    if not 1 <= min_chars <= max_chars:
        raise ValueError(
            "`min_chars` and `max_chars` must satisfy 1 <= min_chars <= max_chars. "
            f"Received: min_chars={min_chars}, max_chars={max_chars}"
        )
    return list(dict.fromkeys(split_sentences(text, min_chars, max_chars, require_word=True)))
