"""`tfcompress export`: a `.keras` model to a verified TFLite file (and C array)."""

import os

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model", None, "Path of the .keras model to convert (tfcompress.saving.load_model reads it)."
)
flags.DEFINE_enum(
    "target",
    "float32",
    ["float32", "float16", "dynamic_int8", "int8", "int16x8"],
    "What the weights and activations become.",
)
flags.DEFINE_string(
    "output", None, "Path of the .tflite file to write (default: the model path with .tflite)."
)
flags.DEFINE_string(
    "representative",
    None,
    "A .npy (or .npz, every array one input) file of calibration inputs, for int8 / int16x8 of float models.",
)
flags.DEFINE_bool(
    "int8_io", False, "int8 (int16 for int16x8) model inputs and outputs, as microcontrollers want."
)
flags.DEFINE_bool(
    "allow_flex", False, "Allow TensorFlow (Flex) ops; the file then needs the Flex delegate."
)
flags.DEFINE_integer(
    "batch_size",
    None,
    "Fix the batch dimension (e.g. 1 for on-device inference): static shapes let XNNPack take the whole graph.",
    lower_bound=1,
)
flags.DEFINE_integer(
    "sequence_length",
    None,
    "Fix the token axis a keras-hub backbone leaves unknown (with --batch_size=1 every shape is static).",
    lower_bound=1,
)
flags.DEFINE_string(
    "c_array", None, "Also write <name>.h / <name>.cc C arrays for TFLite Micro next to the output."
)


_KINDS = {
    "model": "a .keras model (saved with `model.save`)",
    "representative": "a .npy or .npz file",
}


def _load_representative(path):
    import numpy as np

    data = np.load(path)
    if hasattr(data, "files"):
        return {name: data[name] for name in data.files}
    return data


def main(argv):
    if len(argv) > 1:
        raise SystemExit(f"tfcompress export takes only flags; unexpected arguments: {argv[1:]}")
    if not FLAGS.model:
        raise SystemExit("tfcompress export: --model is required (a .keras file).")
    # Checked before TensorFlow's import, so a typo fails at once.
    for flag in ("model", "representative"):
        path = getattr(FLAGS, flag)
        if path and not os.path.isfile(path):
            raise FileNotFoundError(
                f"--{flag}={path} is not an existing file. Pass the path of {_KINDS[flag]}."
            )
    from tfcompress import export, saving

    model = saving.load_model(FLAGS.model, compile=False)
    output = FLAGS.output or os.path.splitext(FLAGS.model)[0] + f"_{FLAGS.target}.tflite"
    representative = _load_representative(FLAGS.representative) if FLAGS.representative else None
    result = export.to_tflite(
        model,
        FLAGS.target,
        representative_data=representative,
        int8_io=FLAGS.int8_io,
        path=output,
        allow_flex=FLAGS.allow_flex,
        batch_size=FLAGS.batch_size,
        sequence_length=FLAGS.sequence_length,
    )
    print(f"wrote {result.path} ({result.size_bytes:,} bytes, target {result.target})")
    changed = {name: count for name, count in result.rewrites.items() if count}
    if changed:
        print(f"  graph rewrites (ops changed): {changed}")
    for check, outcome in result.checks.items():
        print(f"  check {check}: {outcome}")
    if FLAGS.c_array:
        arrays = export.to_c_array(
            result.path, name=FLAGS.c_array, path=os.path.dirname(os.path.abspath(output))
        )
        print(f"wrote {arrays.header_path} and {arrays.source_path}")
        print("\n".join(f"  {line}" for line in arrays.report_lines()))
        print(arrays.resolver_code)
