"""The tokenizer and generation settings of a keras-hub causal LM, as JSON-able metadata."""

_SAMPLERS = {
    "GreedySampler": lambda s: {"temperature": 0.0, "top_k": 1, "top_p": 1.0},
    "TopKSampler": lambda s: {"temperature": float(s.temperature), "top_k": int(s.k), "top_p": 1.0},
    "TopPSampler": lambda s: {
        "temperature": float(s.temperature),
        "top_k": int(s.k or 0),
        "top_p": float(s.p),
    },
}
SAMPLING_KEYS = ("temperature", "top_k", "top_p")


def _sampling(causal_lm, sampling):
    if sampling is not None:
        if not isinstance(sampling, dict) or set(sampling) - set(SAMPLING_KEYS):
            raise ValueError(
                f"`sampling` must be a dict with keys among {SAMPLING_KEYS}. "
                f"Received: sampling={sampling!r}"
            )
    sampler = getattr(causal_lm, "sampler", None)
    reader = _SAMPLERS.get(type(sampler).__name__)
    defaults = reader(sampler) if reader else {"temperature": 0.0, "top_k": 1, "top_p": 1.0}
    return {**defaults, **(sampling or {})}


def _pre_tokenizer(tokenizer):
    """The split before byte-level BPE that this tokenizer applies in eager calls.

    A tokenizer that names its own (`tfcompress.models.Llama3Tokenizer`
    from `from_gguf`, e.g. "smollm") records that name. Otherwise, with the
    `tokenizers` package installed, keras-hub's BytePairTokenizer splits with
    Llama 3's regular expression (`SPLIT_PATTERN_TOKENIZERS`, HF
    `Split(behavior="isolated")`); without it, with GPT-2's ("gpt2").
    """
    named = getattr(tokenizer, "pre_tokenizer", None)
    if isinstance(named, str):
        return named
    if getattr(tokenizer, "_tokenizer", None) is not None:
        from keras_hub.src.tokenizers.byte_pair_tokenizer import SPLIT_PATTERN_TOKENIZERS

        return SPLIT_PATTERN_TOKENIZERS
    return "gpt2"


def tokenizer_metadata(causal_lm, chat_template=None, sampling=None):
    """The `tokenizer`, special ids, chat template and `sampling` entries.

    Raises:
        ValueError: the model has no byte-level BPE tokenizer (the only kind
            the chat runtime decodes), or `sampling` / `chat_template` are bad.
    """
    preprocessor = getattr(causal_lm, "preprocessor", None)
    tokenizer = getattr(preprocessor, "tokenizer", None)
    vocabulary = getattr(tokenizer, "vocabulary", None)
    merges = getattr(tokenizer, "merges", None)
    if not isinstance(vocabulary, dict) or merges is None:
        raise ValueError(
            "`causal_lm` must have a preprocessor with a byte-level BPE tokenizer "
            "(vocabulary and merges, as GPT2Tokenizer and Llama3Tokenizer have), so the "
            f"file can be chatted with. Received tokenizer: {type(tokenizer).__name__}"
        )
    if chat_template is None:
        chat_template = getattr(tokenizer, "chat_template", None)
    if chat_template is not None and not isinstance(chat_template, str):
        raise TypeError(
            f"`chat_template` must be a str or None. Received: {type(chat_template).__name__}"
        )
    special = {str(token): int(tokenizer.token_to_id(token)) for token in tokenizer.special_tokens}
    special.update(
        {str(t): int(vocabulary[t]) for t in getattr(tokenizer, "unsplittable_tokens", None) or []}
    )
    end_ids = sorted(
        {
            int(i)
            for i in (
                [getattr(tokenizer, "end_token_id", None)]
                + list(getattr(tokenizer, "end_token_ids", None) or [])
            )
            if i is not None
        }
    )
    start_id = getattr(tokenizer, "start_token_id", None)
    return {
        "tokenizer": {
            "type": "byte_level_bpe",
            "vocabulary": {str(k): int(v) for k, v in vocabulary.items()},
            "merges": [str(m) for m in merges],
            "special_tokens": special,
            "pre_tokenizer": _pre_tokenizer(tokenizer),
        },
        "start_token_id": None if start_id is None else int(start_id),
        "end_token_ids": end_ids,
        "pad_token_id": int(getattr(tokenizer, "pad_token_id", 0) or 0),
        "add_start_token": bool(getattr(preprocessor, "add_start_token", False)),
        "chat_template": chat_template,
        "sampling": _sampling(causal_lm, sampling),
    }
