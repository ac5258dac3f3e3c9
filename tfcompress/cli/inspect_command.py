"""`tfcompress inspect model.tflite`: ops, tensors, quantization, sparsity."""

import collections

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("top", 20, "How many of the largest tensors to list.")
flags.DEFINE_bool("delegation", True, "Also load the model and report which ops XNNPack runs.")


def inspect_tflite(tflite):
    """Summarises a TFLite flatbuffer without running it.

    Args:
        tflite: path or bytes.

    Returns:
        A dict: `size_bytes`, `ops` (name -> count, main subgraph),
        `signatures`, `inputs` / `outputs` (name, shape, dtype, scale,
        zero_point), `dtypes` (dtype -> tensor count), and `weights` (one entry
        per constant tensor: name, shape, dtype, bytes, sparsity, scale count),
        largest first.

    Raises:
        ValueError: for a file that is not a readable TFLite flatbuffer.
    """
    import numpy as np

    from tfcompress.export import flatbuffer

    content = flatbuffer.read_bytes(tflite)
    try:
        model = flatbuffer.read_model(content)
        graph = model.subgraphs[0]
        ops = collections.Counter(flatbuffer.op_names(model))
        tensors = graph.tensors
    except Exception as error:  # a corrupt flatbuffer fails in many ways
        raise ValueError(
            f"{tflite if isinstance(tflite, str) else 'The flatbuffer'} has a TFLite "
            f"header but its contents are corrupt ({type(error).__name__}: {error}). "
            "Re-export the model."
        ) from error

    def describe(index):
        tensor = tensors[index]
        quant = tensor.quantization
        scale = list(quant.scale) if quant is not None and quant.scale is not None else []
        zero = list(quant.zeroPoint) if quant is not None and quant.zeroPoint is not None else []
        return {
            "name": tensor.name.decode() if isinstance(tensor.name, bytes) else str(tensor.name),
            "shape": [int(d) for d in (tensor.shape if tensor.shape is not None else [])],
            "dtype": flatbuffer.type_name(tensor).lower(),
            "scale": scale[0] if len(scale) == 1 else (scale or None),
            "zero_point": zero[0] if len(zero) == 1 else (zero or None),
            "scales": len(scale),
        }

    weights, dtypes = [], collections.Counter()
    for index, tensor in enumerate(tensors):
        dtypes[flatbuffer.type_name(tensor).lower()] += 1
        if not flatbuffer.has_data(model, tensor):
            continue
        info = describe(index)
        raw = model.buffers[tensor.buffer].data
        data = np.asarray(raw if raw is not None else [], dtype=np.uint8)
        try:
            dtype = np.dtype(info["dtype"])  # TFLite type names are numpy's
        except TypeError:
            dtype = None  # e.g. int4, string
        values = data.view(dtype) if dtype is not None and data.size % dtype.itemsize == 0 else None
        zero = info["zero_point"] if isinstance(info["zero_point"], int) else 0
        info["bytes"] = int(data.size)
        info["sparsity"] = (
            float(np.mean(values == zero)) if values is not None and values.size else None
        )
        weights.append(info)
    weights.sort(key=lambda w: -w["bytes"])
    return {
        "size_bytes": len(content),
        "ops": dict(ops),
        "signatures": [
            s.signatureKey.decode() if isinstance(s.signatureKey, bytes) else str(s.signatureKey)
            for s in (model.signatureDefs or [])
        ],
        "inputs": [describe(i) for i in graph.inputs],
        "outputs": [describe(i) for i in graph.outputs],
        "dtypes": dict(dtypes),
        "weights": weights,
    }


def format_inspection(summary, top=20):
    """The `inspect_tflite` summary as readable text."""
    lines = [
        f"size: {summary['size_bytes']:,} bytes; signatures: {summary['signatures'] or ['(none)']}"
    ]
    lines.append("ops: " + ", ".join(f"{name} x{count}" for name, count in summary["ops"].items()))
    lines.append("tensor dtypes: " + ", ".join(f"{k} x{v}" for k, v in summary["dtypes"].items()))
    for kind in ("inputs", "outputs"):
        for t in summary[kind]:
            lines.append(
                f"{kind[:-1]}: {t['name']} {t['shape']} {t['dtype']} scale={t['scale']} zero_point={t['zero_point']}"
            )
    weight_bytes = sum(w["bytes"] for w in summary["weights"])
    lines.append(
        f"weights: {len(summary['weights'])} constant tensors, {weight_bytes:,} bytes (largest {min(top, len(summary['weights']))}):"
    )
    lines.append(
        f"  {'bytes':>10}  {'dtype':<8} {'sparsity':>8}  {'scales':>6}  {'shape':<18} name"
    )
    for w in summary["weights"][:top]:
        sparsity = f"{w['sparsity']:.1%}" if w["sparsity"] is not None else "-"
        lines.append(
            f"  {w['bytes']:>10,}  {w['dtype']:<8} {sparsity:>8}  {w['scales']:>6}  {str(w['shape']):<18} {w['name']}"
        )
    return "\n".join(lines)


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: tfcompress inspect MODEL.tflite [--top N] [--nodelegation]")
    print(format_inspection(inspect_tflite(argv[1]), FLAGS.top))
    if FLAGS.delegation:
        from tfcompress.runtime import xnnpack_delegation

        try:
            print(xnnpack_delegation(argv[1]).summary())
        except (ValueError, ImportError) as error:
            print(f"XNNPack: not reported ({error})")
