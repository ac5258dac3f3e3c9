"""Offline English text for the chatbot pipeline, tokenized and split contiguously."""

import glob
import hashlib
import os
import site
import sysconfig

import numpy as np

_LICENCE_DIRS = ("/usr/share/common-licenses",)
_LICENCE_PATTERNS = ("*.dist-info/LICENSE*", "*.dist-info/licenses/*", "*.dist-info/COPYING*")


def pydoc_documents():
    from pydoc_data import topics

    return [topics.topics[key] for key in sorted(topics.topics)]


def _site_packages():
    paths = set(site.getsitepackages()) | {sysconfig.get_paths()["purelib"]}
    return sorted(p for p in paths if os.path.isdir(p))


def licence_documents():
    """Licence texts found on this machine, each distinct text once, in path order."""
    paths = []
    for directory in _LICENCE_DIRS:
        paths += glob.glob(os.path.join(directory, "*"))
    for directory in _site_packages():
        for pattern in _LICENCE_PATTERNS:
            paths += glob.glob(os.path.join(directory, pattern))
    seen, documents = set(), []
    for path in sorted(set(paths)):
        if not os.path.isfile(path):
            continue
        with open(path, "rb") as f:
            raw = f.read()
        try:
            text = raw.decode("utf-8").strip()
        except UnicodeDecodeError:
            continue
        digest = hashlib.sha256(" ".join(text.split()).encode()).hexdigest()
        if len(text) < 200 or digest in seen:
            continue
        seen.add(digest)
        documents.append(text)
    return documents


def _tokenize(tokenizer, documents, separator_id):
    ids = []
    for start in range(0, len(documents), 64):
        for row in tokenizer(documents[start : start + 64]):
            ids.extend(np.asarray(row).tolist())
            ids.append(separator_id)
    return np.asarray(ids, np.int32)


def token_splits(tokenizer, separator_id, held_out_fraction):
    """`(train, held_out, sources)`: each source's last `held_out_fraction` of tokens is held out.

    Both sources (pydoc topics and licence texts) give one contiguous
    held-out block, their ends, so no held-out text sits between training
    text and the held-out set covers both kinds of English.
    """
    train, held_out, sources = [], [], {}
    for name, documents in (("pydoc", pydoc_documents()), ("licences", licence_documents())):
        if not documents:
            continue
        ids = _tokenize(tokenizer, documents, separator_id)
        cut = int(round(len(ids) * (1.0 - held_out_fraction)))
        train.append(ids[:cut])
        held_out.append(ids[cut:])
        sources[name] = {"documents": len(documents), "tokens": int(len(ids))}
    return np.concatenate(train), np.concatenate(held_out), sources


def training_windows(tokens, count, length, seed):
    """`count` windows of `length + 1` tokens at random offsets of `tokens`."""
    rng = np.random.default_rng(seed)
    starts = rng.integers(0, len(tokens) - length - 1, count)
    return np.stack([tokens[s : s + length + 1] for s in starts])


def held_out_windows(tokens, count, length):
    """`count` non-overlapping windows of `length` tokens, evenly spread over `tokens`.

    Spread rather than consecutive, so both sources' held-out ends are scored.
    """
    slots = len(tokens) // length
    if count > slots:
        raise ValueError(
            f"The held-out text has room for {slots} windows of {length} tokens; "
            f"asked for {count}. Lower --eval_sequences or --eval_length."
        )
    chosen = np.linspace(0, slots - 1, count).round().astype(int)
    return np.stack([tokens[i * length : (i + 1) * length] for i in chosen])
