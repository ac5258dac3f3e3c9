"""Reading the `tfcompress_generator` metadata of a generator `.tflite` file, without TensorFlow."""

import json

try:
    from ai_edge_litert import schema_py_generated as schema
except ImportError:
    from tflite_runtime import schema_py_generated as schema

METADATA_NAME = "tfcompress_generator"
FORMAT_VERSION = 1
REQUIRED_KEYS = (
    "num_layers",
    "cache_length",
    "prefill_lengths",
    "vocabulary_size",
    "tokenizer",
    "end_token_ids",
    "pad_token_id",
)


def read_metadata(content, where):
    """The metadata dict of flatbuffer `content` (bytes or an mmap).

    Raises:
        ValueError: no such entry, unreadable JSON, a newer format or a
            missing key; `where` names the file in the message.
    """
    model = schema.Model.GetRootAs(content, 0)
    for i in range(model.MetadataLength()):
        entry = model.Metadata(i)
        if entry.Name() is None or entry.Name().decode() != METADATA_NAME:
            continue
        buffer = model.Buffers(entry.Buffer())
        if buffer.DataLength():
            data = buffer.DataAsNumpy().tobytes()
        else:
            # Files past 2 GB keep buffers after the flatbuffer, at an offset.
            data = bytes(content[buffer.Offset() : buffer.Offset() + buffer.Size()])
        try:
            meta = json.loads(data.decode("utf-8"))
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise ValueError(f"{where} has unreadable {METADATA_NAME!r} metadata ({e}).") from e
        break
    else:
        raise ValueError(
            f"{where} has no {METADATA_NAME!r} metadata: it is not a generator file. "
            "Write one with `tfcompress.export.to_tflite_generator(causal_lm, path=...)`."
        )
    version = meta.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{where} has generator format_version={version!r}; this tfcompress reads "
            f"{FORMAT_VERSION}. Upgrade tfcompress or re-export the model."
        )
    missing = [key for key in REQUIRED_KEYS if key not in meta]
    if missing:
        raise ValueError(f"{where} generator metadata lacks {missing}; re-export the model.")
    if meta["tokenizer"].get("type") != "byte_level_bpe":
        raise ValueError(
            f"{where} has a {meta['tokenizer'].get('type')!r} tokenizer; only "
            "'byte_level_bpe' is supported."
        )
    return meta
