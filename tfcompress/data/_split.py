"""The sentence splitter and filter that every offline text source shares."""

import re

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
_WHITESPACE = re.compile(r"\s+")
_WORD = re.compile("[a-z]{3}")


def split_sentences(text, min_chars, max_chars, require_word):
    """The sentences of `text` that start with a capital, `min_chars..max_chars` long.

    Whitespace runs become one space, a sentence ends at `.`, `!` or `?`
    followed by whitespace. With `require_word`, a sentence also needs three
    lowercase letters in a row (drops tables, signatures and formulas).
    Repeats are kept: callers deduplicate over all their texts at once.
    """
    return [
        s
        for s in _SENTENCE_END.split(_WHITESPACE.sub(" ", text))
        if min_chars <= len(s) <= max_chars
        and s[0].isupper()
        and (not require_word or _WORD.search(s))
    ]
