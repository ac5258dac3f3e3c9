"""`tfcompress bench model.tflite`: LiteRT latency percentiles."""

from absl import flags

FLAGS = flags.FLAGS
flags.DEFINE_integer("threads", None, "Interpreter threads (default: LiteRT's choice).")
flags.DEFINE_integer("warmup", 10, "Untimed runs first.")
flags.DEFINE_integer("runs", 100, "Timed runs.")
flags.DEFINE_integer("batch", 1, "Batch size of the random inputs.")
flags.DEFINE_integer("seed", 0, "Seed of the random inputs.")


def random_inputs(model, batch, seed):
    """Random inputs matching a `TFLiteModel`'s input details (float range [0, 1))."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = {}
    for detail in model.input_details:
        shape = [batch] + [max(int(d), 1) for d in detail["shape"][1:]]
        dtype = np.dtype(detail["dtype"])
        if np.issubdtype(dtype, np.integer) and not detail.get("quantization", (0, 0))[0]:
            inputs[detail["name"]] = rng.integers(0, 100, size=shape).astype(dtype)
        else:
            inputs[detail["name"]] = rng.random(shape, dtype=np.float32)
    return inputs if len(inputs) > 1 else next(iter(inputs.values()))


def main(argv):
    if len(argv) != 2:
        raise SystemExit("usage: tfcompress bench MODEL.tflite [--threads N] [--runs N]")
    from tfcompress import runtime

    model = runtime.load(argv[1], num_threads=FLAGS.threads)
    result = runtime.benchmark(
        model,
        random_inputs(model, FLAGS.batch, FLAGS.seed),
        num_threads=FLAGS.threads,
        warmup=FLAGS.warmup,
        runs=FLAGS.runs,
    )
    print(f"{argv[1]}: backend {result.backend}, threads {result.num_threads}, {result.runs} runs")
    print(f"  p50 {result.p50_ms:.3f} ms  p90 {result.p90_ms:.3f} ms  mean {result.mean_ms:.3f} ms")
