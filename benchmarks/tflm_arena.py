"""Arena estimate vs TensorFlow Lite Micro, and TFLM vs LiteRT, on small int8 models.

Trains four digits classifiers (the `tfcompress demo` CNN, a Dense model, a
depthwise-conv model and a Conv1D model) for a few epochs, exports each to
int8 with int8 I/O and prints, per model: flash bytes, the arena estimate
(what `to_c_array` reports without `tflite-micro`), TFLM's recorded total,
the smallest arena TFLM loads the model in, the reported arena (measured plus
margin), and TFLM vs LiteRT on the 360 test digits (max LSB difference,
argmax agreement). Target: estimate and reported arena between 1x and 1.25x
what TFLM needs; TFLM within 1 LSB of LiteRT.

Needs `pip install tfcompress[micro]`.

    python benchmarks/tflm_arena.py --epochs=3
"""

from absl import app, flags
from common import start_benchmark

_EPOCHS = flags.DEFINE_integer("epochs", 3, "Training epochs per model.", lower_bound=1)
_SEED = flags.DEFINE_integer("seed", 0, "Seed of the split and the weights.")


def _builders():
    import keras

    from tfcompress.cli import digits

    layers = keras.layers

    def dense():
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                layers.Flatten(),
                layers.Dense(64, activation="relu"),
                layers.Dense(10),
            ]
        )

    def depthwise():
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                layers.Conv2D(8, 3, padding="same", activation="relu"),
                layers.DepthwiseConv2D(3, padding="same", activation="relu"),
                layers.Conv2D(16, 1, activation="relu"),
                layers.GlobalAveragePooling2D(),
                layers.Dense(10),
            ]
        )

    def conv1d():
        return keras.Sequential(
            [
                keras.Input((8, 8, 1)),
                layers.Reshape((8, 8)),
                layers.Conv1D(16, 3, activation="relu"),
                layers.Conv1D(16, 3, activation="relu"),
                layers.Flatten(),
                layers.Dense(10),
            ]
        )

    return {
        "demo_cnn": digits.build_digits_cnn,
        "dense": dense,
        "depthwise": depthwise,
        "conv1d": conv1d,
    }


def main(argv):
    start_benchmark(argv)
    import keras

    from tfcompress import export
    from tfcompress.cli import digits

    x_train, y_train, x_test, _ = digits.load_digits(_SEED.value)
    header = (
        f"{'model':<10} {'flash':>7} {'estimate':>8} {'TFLM total':>10} {'TFLM min':>8} "
        f"{'reported':>8} {'est/need':>8} {'rep/need':>8} {'est/total':>9} {'max LSB':>7} {'argmax':>7}"
    )
    print(header)
    for name, build in _builders().items():
        keras.utils.set_random_seed(_SEED.value)
        model = build()
        model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x_train, y_train, batch_size=32, epochs=_EPOCHS.value, verbose=0)
        content = export.to_tflite(
            model, "int8", int8_io=True, representative_data=x_train[:200], sample=x_test[:32]
        ).tflite_bytes
        result = export.to_c_array(content, sample=x_test, tflm=True)
        check = result.tflm
        needed = max(check.arena_total, check.arena_minimum)
        print(
            f"{name:<10} {result.flash_bytes:>7,} {result.arena_bytes_estimate:>8,} "
            f"{check.arena_total:>10,} {check.arena_minimum:>8,} {result.arena_bytes:>8,} "
            f"{result.arena_bytes_estimate / needed:>8.3f} {result.arena_bytes / needed:>8.3f} "
            f"{result.arena_bytes_estimate / check.arena_total:>9.3f} "
            f"{check.max_lsb_difference:>7} {check.argmax_agreement:>7.1%}",
            flush=True,
        )


if __name__ == "__main__":
    app.run(main)
