"""`GeneratorExport`: what `to_tflite_generator` returns."""

import dataclasses


@dataclasses.dataclass
class GeneratorExport:
    """An exported generator.

    Attributes:
        content: the `.tflite` flatbuffer bytes.
        path: where they were written, or None.
        metadata: the `tfcompress_generator` metadata dict stored in the file.
        checks: verification results by name (`builtin_ops`, `weights_present`,
            `logits_match`), each with `passed` and `detail`; empty when
            `verify=False`.
    """

    content: bytes
    path: object
    metadata: dict
    checks: dict

    @property
    def size_bytes(self):
        return len(self.content)
