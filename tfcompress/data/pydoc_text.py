"""The text of Python's own documentation topics, shipped with every Python."""


def pydoc_text():
    """The `pydoc_data.topics` texts (what `help("topic")` shows), one string.

    The topics in sorted key order, joined by blank lines: a fixed,
    offline English corpus (465,126 characters on Python 3.11) that needs no
    download. Its content depends on the Python version.

    Returns:
        A `str`.

    Example:

    ```python
    import tfcompress

    text = tfcompress.data.pydoc_text()
    train, held_out = text[: int(0.9 * len(text))], text[int(0.9 * len(text)) :]
    ```
    """
    from pydoc_data import topics

    return "\n\n".join(topics.topics[key] for key in sorted(topics.topics))
