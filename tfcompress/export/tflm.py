"""Running a `.tflite` model in TensorFlow Lite Micro (PyPI `tflite-micro`)."""

import contextlib
import dataclasses
import os
import re
import subprocess
import sys
import tempfile

import numpy as np

from tfcompress import runtime
from tfcompress.export import flatbuffer
from tfcompress.export.tflm_error import describe_failure
from tfcompress.runtime.tensors import dequantize, prepare_inputs

INSTALL_HINT = "pip install tfcompress[micro]"
# Added to TFLM's recorded total: the board build may differ from the 64-bit
# host one this measures (TFLM version, arena start alignment).
MARGIN_FRACTION = 0.10
# Verification rows when no sample is given: a seeded draw over the int8 range.
_RANDOM_ROWS = 16
_ALLOCATION = re.compile(
    r"\[RecordingMicroAllocator\] Arena allocation (total|head|tail) (\d+) bytes"
)
_RECORD = re.compile(
    r"\[RecordingMicroAllocator\] '([^']+)' used (\d+) bytes with alignment "
    r"overhead \(requested (\d+) bytes for (\d+)"
)


@dataclasses.dataclass
class TFLMCheck:
    """What TFLite Micro measured and computed for a model.

    Attributes:
        arena_total, arena_head, arena_tail: bytes TFLM's recording allocator
            used (head: planned activations and scratch; tail: persistent
            structures and kernel data), on this 64-bit host build.
        arena_minimum: the smallest arena (in 16-byte steps) TFLM loads the
            model in; it can exceed `arena_total`, as kernels allocate
            temporary tensors while they prepare.
        arena_bytes: the larger of `arena_total` and `arena_minimum`, plus
            `MARGIN_FRACTION`, rounded up to 16 bytes: the size to give
            `kTensorArenaSize`.
        allocations: `{record: bytes}` of the tail, as TFLM names them.
        rows: verification inputs run (batch of 1 each).
        random_inputs: True when no sample was given and `rows` seeded random
            inputs were run.
        max_lsb_difference: largest difference between TFLM's and LiteRT's
            integer outputs, in steps of the output's quantization (None for
            float outputs; see `max_abs_difference`).
        max_abs_difference: largest absolute difference of the dequantized
            outputs.
        argmax_agreement: fraction of rows whose argmax over the last axis is
            the same in TFLM and LiteRT (None without a last axis above 1).
        reference_argmax_agreement: the same against `reference` (e.g. the
            Keras outputs), or None.
    """

    arena_total: int
    arena_head: int
    arena_tail: int
    arena_minimum: int
    arena_bytes: int
    allocations: dict
    rows: int
    random_inputs: bool
    max_lsb_difference: int | None
    max_abs_difference: float
    argmax_agreement: float | None
    reference_argmax_agreement: float | None = None


def available():
    """True when the `tflite-micro` package imports."""
    try:
        from tflite_micro.python.tflite_micro import runtime as _  # noqa: F401
    except ImportError:
        return False
    return True


@contextlib.contextmanager
def _captured_output():
    """Collects what C++ writes to file descriptors 1 and 2 (TFLM's MicroPrintf)."""
    log = {"text": ""}
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield log
        finally:
            sys.stdout.flush()
            sys.stderr.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            sink.seek(0)
            log["text"] = sink.read().decode(errors="replace")


def _interpreter(content, model):
    from tflite_micro.python.tflite_micro import runtime as micro

    with _captured_output() as log:
        try:
            # The default arena is 10x the model size; small models need more
            # than that for their activations.
            interpreter = micro.Interpreter.from_bytes(
                content, arena_size=max(10 * len(content), 4 * 2**20)
            )
        except RuntimeError:
            interpreter = None
    if interpreter is None:
        raise describe_failure(model, log["text"], "prepare")
    return interpreter


# Run in a child process: TFLM's Python interpreter can crash (not raise) in
# an arena too small for it. argv: model path, lowest failing and smallest
# loading size in bytes (-1: unknown yet). Prints "try N" before each attempt
# and "ok N" / "fail N" after.
_SEARCH = """
import sys
from tflite_micro.python.tflite_micro import runtime
content = open(sys.argv[1], "rb").read()
low, high = int(sys.argv[2]), int(sys.argv[3])
def loads(size):
    print("try", size, flush=True)
    try:
        runtime.Interpreter.from_bytes(content, arena_size=size)
    except RuntimeError:
        print("fail", size, flush=True)
        return False
    print("ok", size, flush=True)
    return True
step = 16
while high < 0:
    if loads(low + step):
        high = low + step
    else:
        low, step = low + step, 2 * step
while high - low > 16:
    middle = low + (high - low) // 32 * 16
    if loads(middle):
        high = middle
    else:
        low = middle
"""


def _smallest_arena(content, total):
    """The smallest arena, in 16-byte steps from `total` up, TFLM loads the model in.

    It can exceed the recorded total: kernels' Prepare allocates temporary
    tensors above the planned head, which the final record no longer shows.
    """
    low, high = 16 * (-(-total // 16)) - 16, -1
    with tempfile.TemporaryDirectory() as directory:
        path = os.path.join(directory, "model.tflite")
        with open(path, "wb") as file:
            file.write(content)
        while high < 0 or high - low > 16:
            run = subprocess.run(
                [sys.executable, "-c", _SEARCH, path, str(low), str(high)],
                capture_output=True,
                text=True,
                check=False,
            )
            tried = None
            for line in run.stdout.splitlines():
                word, size = line.split()
                if word == "try":
                    tried = int(size)
                elif word == "ok":
                    high, tried = int(size), None
                else:
                    low, tried = int(size), None
            if tried is not None:
                low = tried
            elif run.returncode != 0 and (high < 0 or high - low > 16):
                raise RuntimeError(f"Searching TFLM's smallest arena failed: {run.stderr[-2000:]}")
    return high


def _allocations(interpreter):
    with _captured_output() as log:
        interpreter.print_allocations()
    text = log["text"]
    totals = {kind: int(size) for kind, size in _ALLOCATION.findall(text)}
    if set(totals) != {"total", "head", "tail"}:
        raise RuntimeError(
            "Could not read TFLM's arena report (print_allocations printed "
            f"{text!r}). This tflite-micro version may print another format."
        )
    records = {name: int(used) for name, used, _, _ in _RECORD.findall(text)}
    return totals, records


def _rows(details, sample):
    """`[[array of the model's dtype, batch 1] per input]` per row of `sample`."""
    if sample is None:
        rng = np.random.default_rng(0)
        sample = []
        for detail in details.values():
            dtype = np.dtype(detail["dtype"])
            shape = (_RANDOM_ROWS,) + tuple(int(d) for d in detail["shape"][1:])
            if dtype.kind in "iu":
                info = np.iinfo(dtype)
                sample.append(rng.integers(info.min, info.max + 1, shape).astype(dtype))
            else:
                sample.append(rng.random(shape, dtype=np.float32).astype(dtype))
        sample = sample if len(sample) > 1 else sample[0]
    feed = prepare_inputs(sample, details, raw=False)
    for name, detail in details.items():
        expected = tuple(int(d) for d in detail["shape"][1:])
        if feed[name].ndim < 1 or tuple(feed[name].shape[1:]) != expected:
            raise ValueError(
                f"`sample` must hold rows of shape {expected} for input {name!r} "
                f"(a batch of them). Received: shape {feed[name].shape}."
            )
    count = len(next(iter(feed.values())))
    return [[feed[name][i : i + 1] for name in details] for i in range(count)]


def _litert_outputs(lite, row):
    """LiteRT outputs of one row in the model's output order, as stored."""
    # The plain interpreter, not `run`: its dict keys follow the signature,
    # while TFLM numbers outputs in the model's order.
    interpreter = lite.interpreter
    interpreter.allocate_tensors()
    for detail, value in zip(lite.input_details, row):
        interpreter.set_tensor(detail["index"], value)
    interpreter.invoke()
    return [interpreter.get_tensor(detail["index"]) for detail in lite.output_details]


def _argmax_agreement(left, right):
    if left.ndim < 2 or left.shape[-1] < 2:
        return None
    return float(np.mean(np.argmax(left, -1) == np.argmax(right, -1)))


def check_in_tflm(tflite, sample=None, reference=None):
    """Runs a model in TensorFlow Lite Micro and compares it with LiteRT.

    Loads the flatbuffer in TFLM's Python interpreter (TFLM's reference
    kernels, every builtin op registered), reads the arena its recording
    allocator used, and runs each row of `sample` in TFLM and in LiteRT.

    Args:
        tflite: flatbuffer bytes or a `.tflite` path.
        sample: inputs as for `tfcompress.runtime.Interpreter.run` (float data
            is quantized for int8 inputs), one row per inference; None runs 16
            seeded random inputs spanning the input type's range.
        reference: optional outputs to also compare argmax with (e.g. the Keras
            model's on `sample`), single-output models only.

    Returns:
        A `TFLMCheck`.

    Raises:
        ImportError: `tflite-micro` is not installed.
        TFLMError: TFLM cannot prepare or run an op (named in the message,
            with what to change).
        ValueError: `sample` rows do not match the model's inputs.

    Example:

    ```python
    check = tfcompress.export.check_in_tflm("model_int8.tflite", sample=x_test[:32])
    print(check.arena_bytes, check.max_lsb_difference, check.argmax_agreement)
    ```
    """
    if not available():
        raise ImportError(
            f"Running a model in TensorFlow Lite Micro needs the `tflite-micro` "
            f"package: `{INSTALL_HINT}`."
        )
    content = flatbuffer.read_bytes(tflite)
    model = flatbuffer.read_model(content)
    micro = _interpreter(content, model)
    totals, records = _allocations(micro)
    lite = runtime.load(content)
    rows = _rows({d["name"]: d for d in lite.input_details}, sample)
    out_details = lite.output_details
    tflm_out, lite_out = [], []
    for row in rows:
        with _captured_output() as log:
            try:
                for index, value in enumerate(row):
                    micro.set_input(value, index)
                micro.invoke()
                failed = False
            except RuntimeError:
                failed = True
        if failed:
            raise describe_failure(model, log["text"], "invoke")
        tflm_out.append([micro.get_output(i) for i in range(len(out_details))])
        lite_out.append(_litert_outputs(lite, row))
    max_lsb, max_abs, agreement, ref_agreement = 0, 0.0, None, None
    for index, detail in enumerate(out_details):
        ours = np.concatenate([outputs[index] for outputs in tflm_out])
        theirs = np.concatenate([outputs[index] for outputs in lite_out])
        if np.dtype(detail["dtype"]).kind in "iu":
            max_lsb = max(max_lsb, int(np.max(np.abs(ours.astype(np.int64) - theirs))))
        else:
            max_lsb = None
        ours_f = dequantize(ours, detail, raw=False)
        theirs_f = dequantize(theirs, detail, raw=False)
        max_abs = max(max_abs, float(np.max(np.abs(ours_f - theirs_f))))
        found = _argmax_agreement(ours_f, theirs_f)
        if found is not None:
            agreement = found if agreement is None else min(agreement, found)
        if reference is not None and len(out_details) == 1:
            ref_agreement = _argmax_agreement(ours_f, np.asarray(reference)[: len(ours_f)])
    total = totals["total"]
    minimum = _smallest_arena(content, total)
    arena = -(-int(np.ceil(max(total, minimum) * (1 + MARGIN_FRACTION))) // 16) * 16
    return TFLMCheck(
        arena_total=total,
        arena_head=totals["head"],
        arena_tail=totals["tail"],
        arena_minimum=minimum,
        arena_bytes=arena,
        allocations=records,
        rows=len(rows),
        random_inputs=sample is None,
        max_lsb_difference=max_lsb,
        max_abs_difference=max_abs,
        argmax_agreement=agreement,
        reference_argmax_agreement=ref_agreement,
    )
