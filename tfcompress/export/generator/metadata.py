"""The `tfcompress_generator` metadata entry: writing it into a .tflite file and reading it back.

Reading needs only `flatbuffers` and LiteRT's schema module, not TensorFlow,
so a chat runtime can read the tokenizer and settings from the file alone.
"""

import json
import mmap
import os
import pathlib

import numpy as np

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:
    from tensorflow.lite.python import schema_py_generated as schema

METADATA_NAME = "tfcompress_generator"
FORMAT_VERSION = 1


def _view(path):
    if not isinstance(path, (str, os.PathLike)) or not pathlib.Path(path).is_file():
        raise ValueError(
            f"`path` must be an existing .tflite file written by "
            f"tfcompress.export.to_tflite_generator. Received: path={path!r}"
        )
    with open(path, "rb") as f:
        return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)


def read_generator_metadata(path):
    """The generator settings stored in a file written by `to_tflite_generator`.

    Imports no TensorFlow: only `flatbuffers` and LiteRT's schema module.

    Args:
        path: the `.tflite` file.

    Returns:
        The metadata dict: `format_version`, `architecture`, `num_layers`,
        `num_kv_heads` (the largest), `kv_heads_per_layer` (each layer's
        cache heads), `head_dim`, `cache_length`, `prefill_lengths`,
        `vocabulary_size`, `target`, `tokenizer` (`type`, `vocabulary`,
        `merges`, `special_tokens`, `pre_tokenizer`), `start_token_id`,
        `end_token_ids`, `pad_token_id`, `add_start_token`, `chat_template`,
        `sampling` (`temperature`, `top_k`, `top_p`).

    Raises:
        ValueError: the file is missing, not a TFLite flatbuffer, has no
            `tfcompress_generator` metadata, or a newer `format_version`.

    Example:
        ```python
        meta = tfcompress.export.read_generator_metadata("chat.tflite")
        print(meta["cache_length"], meta["prefill_lengths"])
        ```
    """
    view = _view(path)
    try:
        if len(view) < 8 or view[4:8] != b"TFL3":
            raise ValueError(f"{str(path)!r} is not a TFLite flatbuffer (no 'TFL3' identifier).")
        model = schema.Model.GetRootAs(view, 0)
        for i in range(model.MetadataLength()):
            entry = model.Metadata(i)
            if entry.Name() is not None and entry.Name().decode() == METADATA_NAME:
                buffer = model.Buffers(entry.Buffer())
                if buffer.Offset() > 1:
                    data = bytes(view[buffer.Offset() : buffer.Offset() + buffer.Size()])
                else:
                    data = buffer.DataAsNumpy().tobytes()
                break
        else:
            raise ValueError(
                f"{str(path)!r} has no {METADATA_NAME!r} metadata: it was not written by "
                "tfcompress.export.to_tflite_generator. Export the model with it."
            )
    finally:
        view.close()
    meta = json.loads(data.decode("utf-8"))
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise ValueError(
            f"{str(path)!r} has generator format_version {meta['format_version']}; this "
            f"tfcompress reads up to {FORMAT_VERSION}. Upgrade tfcompress."
        )
    return meta


def add_generator_metadata(model, meta):
    """Stores `meta` (a JSON-able dict) as the metadata entry of `model` (a `schema.ModelT`)."""
    buffer = schema.BufferT()
    buffer.data = np.frombuffer(json.dumps(meta, ensure_ascii=False).encode("utf-8"), np.uint8)
    model.buffers.append(buffer)
    entry = schema.MetadataT()
    entry.name = METADATA_NAME
    entry.buffer = len(model.buffers) - 1
    model.metadata = [
        m for m in (model.metadata or []) if m.name not in (METADATA_NAME, METADATA_NAME.encode())
    ]
    model.metadata.append(entry)
