"""A keyword-spotting model for a microcontroller, checked in TensorFlow Lite Micro.

Generates one-second synthetic "utterances" (no download): 10 keywords, each a
fixed sequence of formant-like tone pairs with random timing, pitch and
loudness, plus "silence" (noise only) and "unknown" (random tone sequences),
all over background noise. Turns each clip into MFCC-like features as MLPerf
Tiny's keyword-spotting benchmark does (30 ms frames every 20 ms: 49 frames,
40 mel bands, 10 coefficients), trains a DS-CNN (a strided convolution, then
depthwise-separable blocks, the MLPerf Tiny KWS reference architecture) in
float, prunes it by magnitude, fine-tunes it with quantization-aware training
keeping the sparsity, exports int8 TFLite with int8 input and output, and
writes it as a C array. With `tflite-micro` installed
(`pip install tfcompress[micro]`) the model runs in TensorFlow Lite Micro: its
flash and measured arena are printed against MLPerf Tiny's and the TFLM
micro_speech example's budgets, and its outputs are compared with LiteRT's.

Every stage's model is saved as `.keras` in `--output_dir`; a rerun with the
same directory reuses the stages already saved (delete them to retrain).

Usage:

    python examples/micro_speech_like.py
    python examples/micro_speech_like.py --flagfile=examples/micro_speech_like.flags
"""

import math
import os

import numpy as np
from absl import app, flags

KEYWORDS = ("yes", "no", "up", "down", "left", "right", "on", "off", "stop", "go")
LABELS = ("_silence_", "_unknown_") + KEYWORDS
SAMPLE_RATE = 16000
FRAME, STRIDE, FFT = 480, 320, 512  # 30 ms frames every 20 ms
MEL_BANDS, COEFFICIENTS = 40, 10
FRAMES = 1 + (SAMPLE_RATE - FRAME) // STRIDE  # 49
# Budgets: MLPerf Tiny v0.5 models stay under 512 KB, its KWS reference
# DS-CNN is about 53 KB int8; the TFLM micro_speech example runs a ~20 KB
# model in ~10 KB of RAM.
MLPERF_TINY_MAX_MODEL = 512 * 1024
MLPERF_KWS_MODEL = 53 * 1024
MICRO_SPEECH_MODEL = 20 * 1024
MICRO_SPEECH_RAM = 10 * 1024

_CLIPS = flags.DEFINE_integer(
    "clips_per_label", 150, "Synthetic clips per label (12 labels).", lower_bound=4
)
_FILTERS = flags.DEFINE_integer(
    "filters", 64, "Channels of every convolution (MLPerf Tiny's DS-CNN: 64).", lower_bound=1
)
_BLOCKS = flags.DEFINE_integer(
    "blocks", 4, "Depthwise-separable blocks (MLPerf Tiny's DS-CNN: 4).", lower_bound=0
)
_FLOAT_EPOCHS = flags.DEFINE_integer("float_epochs", 15, "Float training epochs.", lower_bound=1)
_PRUNE_EPOCHS = flags.DEFINE_integer(
    "prune_epochs", 4, "Pruning epochs (the sparsity ramps over them).", lower_bound=1
)
_QAT_EPOCHS = flags.DEFINE_integer(
    "qat_epochs", 3, "Quantization-aware training epochs.", lower_bound=1
)
_TARGET_SPARSITY = flags.DEFINE_float(
    "target_sparsity", 0.5, "Final fraction of zero weights, in [0, 1)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Training batch size.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the audio, the split and the training.")
_VERBOSE = flags.DEFINE_integer(
    "verbose", 0, "Keras fit verbosity: 0 silent, 1 progress bars, 2 a line per epoch."
)
_OUTPUT_DIR = flags.DEFINE_string(
    "output_dir",
    os.path.join(".", "tfcompress_out", "micro_speech_like"),
    "Directory for the stage models, the .tflite file and the C array.",
)


def _tone_pairs(rng, syllables):
    """`[(first formant Hz, second formant Hz, seconds)]` for one word."""
    return [
        (rng.uniform(250, 900), rng.uniform(1000, 3200), rng.uniform(0.08, 0.22))
        for _ in range(syllables)
    ]


def _clip(rng, word):
    """One second of audio: `word` (tone pairs, or None for silence) over noise."""
    audio = rng.normal(0.0, rng.uniform(0.005, 0.05), SAMPLE_RATE)
    if word is None:
        return audio.astype(np.float32)
    pitch = rng.uniform(0.92, 1.08)
    start = rng.uniform(0.05, 0.45)
    loudness = rng.uniform(0.3, 1.0)
    for low, high, seconds in word:
        seconds *= rng.uniform(0.85, 1.15)
        count = int(seconds * SAMPLE_RATE)
        first = int(start * SAMPLE_RATE)
        if first + count > SAMPLE_RATE:
            break
        t = np.arange(count) / SAMPLE_RATE
        envelope = np.sin(np.pi * np.arange(count) / count) ** 2
        tone = np.sin(2 * np.pi * low * pitch * t) + 0.6 * np.sin(2 * np.pi * high * pitch * t)
        audio[first : first + count] += loudness * envelope * tone
        start += seconds + rng.uniform(0.01, 0.05)
    return audio.astype(np.float32)


def _mel_filters():
    """`(FFT // 2 + 1, MEL_BANDS)` triangular filters from 20 Hz to 4 kHz."""

    def mel(hz):
        return 2595.0 * np.log10(1.0 + hz / 700.0)

    edges = 700.0 * (10 ** (np.linspace(mel(20.0), mel(4000.0), MEL_BANDS + 2) / 2595.0) - 1.0)
    bins = np.fft.rfftfreq(FFT, 1.0 / SAMPLE_RATE)
    filters = np.zeros((len(bins), MEL_BANDS), np.float32)
    for band in range(MEL_BANDS):
        low, center, high = edges[band : band + 3]
        rising = (bins - low) / (center - low)
        falling = (high - bins) / (high - center)
        filters[:, band] = np.clip(np.minimum(rising, falling), 0.0, None)
    return filters


def _dct_matrix():
    """`(MEL_BANDS, COEFFICIENTS)` orthonormal DCT-II."""
    n = np.arange(MEL_BANDS)[:, None]
    k = np.arange(COEFFICIENTS)[None, :]
    matrix = np.cos(np.pi / MEL_BANDS * (n + 0.5) * k) * math.sqrt(2.0 / MEL_BANDS)
    matrix[:, 0] /= math.sqrt(2.0)
    return matrix.astype(np.float32)


def mfcc(audio, filters, dct):
    """`(FRAMES, COEFFICIENTS)` log-mel cepstral coefficients of one clip."""
    starts = np.arange(FRAMES) * STRIDE
    frames = audio[starts[:, None] + np.arange(FRAME)[None, :]] * np.hanning(FRAME)
    power = np.abs(np.fft.rfft(frames, FFT)) ** 2 / FFT
    return np.log(power @ filters + 1e-6) @ dct


def make_dataset(clips_per_label, seed):
    """`(x_train, y_train, x_test, y_test)`: standardized MFCCs `(n, 49, 10, 1)`, labels."""
    rng = np.random.default_rng(seed)
    words = [
        _tone_pairs(np.random.default_rng(seed * 1000 + i), 2 + i % 3) for i in range(len(KEYWORDS))
    ]
    filters, dct = _mel_filters(), _dct_matrix()
    features, labels = [], []
    for label in range(len(LABELS)):
        for _ in range(clips_per_label):
            if label == 0:
                word = None
            elif label == 1:
                word = _tone_pairs(rng, int(rng.integers(2, 5)))
            else:
                word = words[label - 2]
            features.append(mfcc(_clip(rng, word), filters, dct))
            labels.append(label)
    x = np.stack(features).astype(np.float32)[..., None]
    y = np.asarray(labels, np.int32)
    order = rng.permutation(len(x))
    x, y = x[order], y[order]
    split = int(0.8 * len(x))
    mean, std = x[:split].mean(axis=(0, 1, 3)), x[:split].std(axis=(0, 1, 3)) + 1e-6
    x = (x - mean[None, None, :, None]) / std[None, None, :, None]
    return x[:split], y[:split], x[split:], y[split:]


def build_ds_cnn(filters, blocks):
    """MLPerf Tiny's KWS DS-CNN shape: a 10x4 stride-2 conv, then DS blocks."""
    import keras

    layers = keras.layers
    model_layers = [
        keras.Input((FRAMES, COEFFICIENTS, 1), name="mfcc"),
        layers.Conv2D(filters, (10, 4), strides=2, padding="same", use_bias=False, name="conv"),
        layers.BatchNormalization(name="conv_bn"),
        layers.ReLU(name="conv_relu"),
    ]
    for block in range(blocks):
        model_layers += [
            layers.DepthwiseConv2D(3, padding="same", use_bias=False, name=f"dw{block}"),
            layers.BatchNormalization(name=f"dw{block}_bn"),
            layers.ReLU(name=f"dw{block}_relu"),
            layers.Conv2D(filters, 1, use_bias=False, name=f"pw{block}"),
            layers.BatchNormalization(name=f"pw{block}_bn"),
            layers.ReLU(name=f"pw{block}_relu"),
        ]
    model_layers += [
        layers.GlobalAveragePooling2D(name="pool"),
        layers.Dense(len(LABELS), name="logits"),
    ]
    return keras.Sequential(model_layers, name="ds_cnn")


def _compile(model):
    import keras

    model.compile(
        optimizer=keras.optimizers.Adam(1e-3),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        metrics=["accuracy"],
    )
    return model


def _stage(path, train):
    """The model saved at `path`, or `train()`'s model, saved there."""
    from tfcompress import saving

    if os.path.exists(path):
        print(f"    reusing {path}", flush=True)
        return _compile(saving.load_model(path))
    model = train()
    model.save(path)
    return model


def _budget(value, budget, what):
    verdict = "within" if value <= budget else "OVER"
    return (
        f"{value / 1024:7.1f} KB vs {what} {budget / 1024:.0f} KB: {verdict} ({value / budget:.0%})"
    )


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"Unexpected arguments: {argv[1:]}")
    if not 0.0 <= _TARGET_SPARSITY.value < 1.0:
        raise app.UsageError(
            f"--target_sparsity must be in [0, 1). Received: --target_sparsity={_TARGET_SPARSITY.value}"
        )
    import keras

    from tfcompress import export, quantization, sparsity

    keras.utils.set_random_seed(_SEED.value)
    out = _OUTPUT_DIR.value
    os.makedirs(out, exist_ok=True)
    fit = dict(batch_size=_BATCH_SIZE.value, verbose=_VERBOSE.value)

    x_train, y_train, x_test, y_test = make_dataset(_CLIPS.value, _SEED.value)
    print(
        f"[data] {len(x_train)} training / {len(x_test)} test synthetic clips, "
        f"{len(LABELS)} labels, MFCC features {x_train.shape[1:3]}",
        flush=True,
    )

    def train_float():
        model = _compile(build_ds_cnn(_FILTERS.value, _BLOCKS.value))
        model.fit(x_train, y_train, epochs=_FLOAT_EPOCHS.value, **fit)
        return model

    print(
        f"[float] DS-CNN, {_FILTERS.value} filters, {_BLOCKS.value} blocks, {_FLOAT_EPOCHS.value} epochs",
        flush=True,
    )
    float_model = _stage(os.path.join(out, "float.keras"), train_float)
    float_accuracy = float_model.evaluate(x_test, y_test, verbose=0)[1]
    print(
        f"[float] {float_model.count_params():,} parameters, test accuracy {float_accuracy:.3f}",
        flush=True,
    )

    def train_pruned():
        steps = _PRUNE_EPOCHS.value * math.ceil(len(x_train) / _BATCH_SIZE.value)
        schedule = sparsity.PolynomialDecay(
            0.0,
            _TARGET_SPARSITY.value,
            begin_step=0,
            end_step=max(steps - 1, 1),
            frequency=max(1, steps // 20),
        )
        pruned = _compile(sparsity.prune_low_magnitude(float_model, schedule))
        pruned.fit(
            x_train,
            y_train,
            epochs=_PRUNE_EPOCHS.value,
            callbacks=[sparsity.UpdatePruningStep()],
            **fit,
        )
        return _compile(sparsity.strip_pruning(pruned))

    print(
        f"[prune] to {_TARGET_SPARSITY.value:.0%} sparsity, {_PRUNE_EPOCHS.value} epochs",
        flush=True,
    )
    pruned = _stage(os.path.join(out, "pruned.keras"), train_pruned)
    report = sparsity.sparsity_report(pruned)
    print(
        f"[prune] overall sparsity {report.overall_sparsity:.3f}, test accuracy "
        f"{pruned.evaluate(x_test, y_test, verbose=0)[1]:.3f}",
        flush=True,
    )

    def train_qat():
        qat = _compile(quantization.quantize_model(pruned, preserve_sparsity=True))
        qat.fit(x_train, y_train, epochs=_QAT_EPOCHS.value, **fit)
        return qat

    print(
        f"[qat] quantization-aware training, sparsity kept, {_QAT_EPOCHS.value} epochs", flush=True
    )
    qat = _stage(os.path.join(out, "qat.keras"), train_qat)
    qat_accuracy = qat.evaluate(x_test, y_test, verbose=0)[1]
    print(f"[qat] test accuracy {qat_accuracy:.3f}", flush=True)

    tflite_path = os.path.join(out, "kws_int8.tflite")
    exported = export.to_tflite(qat, "int8", int8_io=True, path=tflite_path, sample=x_test[:32])
    print(
        f"[tflite] {tflite_path}: {exported.size_bytes:,} bytes, ops {sorted(set(exported.ops))}",
        flush=True,
    )

    arrays = export.to_c_array(
        tflite_path,
        name="kws_model",
        path=out,
        sample=x_test,
        reference=qat.predict(x_test, verbose=0),
    )
    print(f"[c_array] {arrays.header_path}, {arrays.source_path}")
    for line in arrays.report_lines():
        print(f"[c_array] {line}")

    measured = "measured in TFLM" if arrays.tflm is not None else "estimated"
    print(
        f"[budget] flash {_budget(arrays.flash_bytes, MLPERF_TINY_MAX_MODEL, 'MLPerf Tiny model limit')}"
    )
    print(
        f"[budget] flash {_budget(arrays.flash_bytes, MLPERF_KWS_MODEL, 'MLPerf Tiny KWS DS-CNN')}"
    )
    print(
        f"[budget] flash {_budget(arrays.flash_bytes, MICRO_SPEECH_MODEL, 'TFLM micro_speech model')}"
    )
    print(
        f"[budget] arena ({measured}) {_budget(arrays.arena_bytes, MICRO_SPEECH_RAM, 'TFLM micro_speech RAM')}"
    )
    print(
        f"[done] test accuracy float {float_accuracy:.3f}, int8 QAT {qat_accuracy:.3f}; "
        f"flash {arrays.flash_bytes:,} bytes, arena {arrays.arena_bytes:,} bytes ({measured})"
    )


if __name__ == "__main__":
    app.run(main)
