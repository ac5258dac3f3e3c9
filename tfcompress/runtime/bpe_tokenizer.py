"""`BytePairTokenizer`: byte-level BPE in pure Python, for chat without TensorFlow."""

import functools

import regex

# Llama 3's split, the pattern keras-hub's BytePairTokenizer names for its
# Python path.
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| "
    r"?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
# OpenAI's GPT-2 encoder.py split (keras-hub's TensorFlow path emulates it).
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
# A pre-tokenizer is a sequence of patterns, each splitting the pieces of the
# one before (matches and the text between them both become pieces), as
# llama.cpp's `unicode_regex_split` and Hugging Face's `pre_tokenizers.Sequence`
# do. One combined pattern is not the same: in "\n   0" the lookahead of
# `\s+(?!\S)` sees the digit and leaves a space behind, while after the digit
# split the whitespace ends its piece and stays one token.
PRE_TOKENIZERS = {
    "gpt2": (GPT2_PATTERN,),
    "llama3": (LLAMA3_PATTERN,),
    # llama.cpp's "smollm" (SmolLM2's tokenizer.ggml.pre): each digit alone,
    # then GPT-2's split (Hugging Face: Digits(individual_digits=True), ByteLevel).
    "smollm": (r"\p{N}", GPT2_PATTERN),
}


@functools.lru_cache(maxsize=1)
def byte_to_unicode():
    """GPT-2's map of the 256 byte values to printable characters."""
    printable = (
        list(range(ord("!"), ord("~") + 1))
        + list(range(ord("¡"), ord("¬") + 1))
        + list(range(ord("®"), ord("ÿ") + 1))
    )
    chars = {}
    extra = 0
    for byte in range(256):
        if byte in printable:
            chars[byte] = chr(byte)
        else:
            chars[byte] = chr(256 + extra)
            extra += 1
    return chars


def _split_keeping_gaps(pattern, text):
    parts, end = [], 0
    for match in pattern.finditer(text):
        if match.start() > end:
            parts.append(text[end : match.start()])
        if match.end() > match.start():
            parts.append(match.group())
        end = max(end, match.end())
    if end < len(text):
        parts.append(text[end:])
    return parts


class BytePairTokenizer:
    """Byte-level BPE (GPT-2, Llama 3, SmolLM2) in pure Python and `regex`.

    Special tokens are split out first and kept whole, the rest is split by
    the pre-tokenizer pattern, each piece's UTF-8 bytes are mapped to GPT-2's
    printable characters and merged by rank. Bytes the vocabulary lacks are
    dropped, as keras-hub's tokenizer without an unknown token does.

    On ordinary text (words, punctuation, single spaces, digits, non-ASCII)
    the ids equal keras-hub's `BytePairTokenizer` / `GPT2Tokenizer` /
    `Llama3Tokenizer`. On runs of several spaces keras-hub disagrees with
    itself: its eager path hands its split pattern to `tokenizers.Split` as a
    literal string, so it never splits and "  a" merges across the spaces,
    while its `tf.function` path emulates GPT-2's split. This class follows
    the pattern it is given, as the models' own tokenizers (llama.cpp,
    Hugging Face) do.

    Args:
        vocabulary: dict of token string to id.
        merges: list of "a b" merge rules, highest priority first.
        special_tokens: dict of special token string to id (e.g. "<|im_end|>").
            They are matched whole in text, longest first.
        pre_tokenizer: "gpt2" (the default), "llama3", "smollm" (digits one
            by one, then GPT-2's split within the rest: SmolLM2), a regular
            expression (`regex` module syntax) or a list of them, each
            splitting the pieces of the one before.

    Raises:
        ValueError: a merge is not two tokens of the vocabulary, a special
            token has no id, or an unknown pre-tokenizer name.

    Example:

    ```python
    tokenizer = tfcompress.runtime.BytePairTokenizer(vocabulary, merges)
    ids = tokenizer.encode("Hello world")
    assert tokenizer.decode(ids) == "Hello world"
    ```
    """

    def __init__(self, vocabulary, merges, special_tokens=None, pre_tokenizer="gpt2"):
        if not isinstance(vocabulary, dict) or not vocabulary:
            raise ValueError(
                "`vocabulary` must be a non-empty dict of token to id. Received: "
                f"{type(vocabulary).__name__} of length {len(vocabulary or ())}."
            )
        self.vocabulary = dict(vocabulary)
        self.special_tokens = dict(special_tokens or {})
        for token, token_id in self.special_tokens.items():
            if not isinstance(token_id, int):
                raise ValueError(
                    f"`special_tokens` maps tokens to int ids. Received: {token!r}: {token_id!r}."
                )
            self.vocabulary.setdefault(token, token_id)
        self.id_to_token = {token_id: token for token, token_id in self.vocabulary.items()}
        self.merges = list(merges)
        self._ranks = {}
        for rank, merge in enumerate(self.merges):
            if merge.lstrip().startswith("#version:"):
                continue
            parts = merge.split(" ")
            if (
                len(parts) != 2
                or parts[0] not in self.vocabulary
                or parts[1] not in self.vocabulary
            ):
                raise ValueError(
                    f"Merge rule {merge!r} must be two vocabulary tokens separated by one space."
                )
            self._ranks.setdefault((parts[0], parts[1]), rank)
        if isinstance(pre_tokenizer, str) and pre_tokenizer in PRE_TOKENIZERS:
            patterns = PRE_TOKENIZERS[pre_tokenizer]
        elif isinstance(pre_tokenizer, str) and pre_tokenizer:
            patterns = (pre_tokenizer,)
        elif (
            isinstance(pre_tokenizer, (list, tuple))
            and pre_tokenizer
            and all(isinstance(p, str) and p for p in pre_tokenizer)
        ):
            patterns = tuple(pre_tokenizer)
        else:
            raise ValueError(
                f"`pre_tokenizer` must be one of {sorted(PRE_TOKENIZERS)}, a regular "
                f"expression or a list of them. Received: pre_tokenizer={pre_tokenizer!r}"
            )
        try:
            self._splits = [regex.compile(pattern) for pattern in patterns]
        except regex.error as e:
            raise ValueError(
                f"`pre_tokenizer` is not a valid regular expression ({e}). "
                f"Received: pre_tokenizer={pre_tokenizer!r}"
            ) from e
        self.pre_tokenizer = pre_tokenizer
        self._special_split = None
        if self.special_tokens:
            ordered = sorted(self.special_tokens, key=len, reverse=True)
            self._special_split = regex.compile(
                "(" + "|".join(regex.escape(token) for token in ordered) + ")"
            )
        self._byte_chars = byte_to_unicode()
        self._char_bytes = {char: byte for byte, char in self._byte_chars.items()}
        self._cache = {}

    @property
    def vocabulary_size(self):
        """The number of ids (one more than the largest id)."""
        return max(self.id_to_token) + 1

    def encode(self, text):
        """Returns the token ids of `text` (a str) as a list of ints."""
        if not isinstance(text, str):
            raise TypeError(f"`text` must be a str. Received: {type(text).__name__}.")
        ids = []
        pieces = self._special_split.split(text) if self._special_split else [text]
        for index, piece in enumerate(pieces):
            if index % 2 == 1:
                ids.append(self.special_tokens[piece])
            elif piece:
                for word in self.pre_tokenize(piece):
                    ids.extend(self._encode_word(word))
        return ids

    def pre_tokenize(self, text):
        """The pieces of `text` (no special tokens) that BPE merges within, in order."""
        pieces = [text]
        for split in self._splits:
            pieces = [part for piece in pieces for part in _split_keeping_gaps(split, piece)]
        return pieces

    def _encode_word(self, word):
        if word in self._cache:
            return self._cache[word]
        symbols = [self._byte_chars[b] for b in word.encode("utf-8")]
        while len(symbols) > 1:
            best, best_rank = None, None
            for i in range(len(symbols) - 1):
                rank = self._ranks.get((symbols[i], symbols[i + 1]))
                if rank is not None and (best_rank is None or rank < best_rank):
                    best, best_rank = i, rank
            if best is None:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        ids = [self.vocabulary[s] for s in symbols if s in self.vocabulary]
        self._cache[word] = ids
        return ids

    def token_bytes(self, token_id):
        """The bytes token `token_id` stands for (a special token's UTF-8 text).

        Raises:
            ValueError: an id outside the vocabulary.
        """
        token = self.id_to_token.get(int(token_id))
        if token is None:
            raise ValueError(
                f"Token id {token_id} is not in the vocabulary (ids 0..{self.vocabulary_size - 1})."
            )
        if token in self.special_tokens:
            return token.encode("utf-8")
        return b"".join(
            bytes([self._char_bytes[c]]) if c in self._char_bytes else c.encode("utf-8")
            for c in token
        )

    def decode(self, ids):
        """Returns the text of `ids`; bytes that are not valid UTF-8 become U+FFFD."""
        return b"".join(self.token_bytes(i) for i in ids).decode("utf-8", errors="replace")
