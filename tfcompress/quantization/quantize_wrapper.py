"""The layer wrapper that runs a layer with fake-quantized weights and output."""

import keras
from keras import ops

from tfcompress.core.constants import ISOLATE_FACTOR
from tfcompress.core.wrapper import CompressionWrapper
from tfcompress.quantization import scale_math
from tfcompress.quantization.flat_matmul import flat_matmul_spec
from tfcompress.quantization.flat_matmul_plan import FlatMatmul
from tfcompress.quantization.layer_call_plans import (
    ChannelScaledEmbedding,
    LayerCall,
    Quantized,
    QuantizedWeight,
    refuse,
)
from tfcompress.quantization.layer_override import check_channels, check_factors
from tfcompress.quantization.quantize_config import QuantizeConfig, deserialize, serialize
from tfcompress.quantization.quantizers import Quantizer


def _short_name(variable):
    return variable.path.rsplit("/", 1)[-1].replace(":", "_")


def _check_factors(factors, layer, name, side):
    """None, True (values restored with the weights) or a 1-D positive vector."""
    if factors is None or factors is False:
        return None
    if factors is True:
        return True
    return check_factors(factors, name, f" of layer {layer.name!r}", side)


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeWrapper(CompressionWrapper):
    """Quantization-aware training of one layer (TFMOT's `QuantizeWrapper`).

    While the wrapped layer runs, each weight named by the config reads as its
    fake-quantized value (straight-through gradient to the float variable);
    the output is then fake-quantized by the config's output/activation
    quantizers, and the input too when `input_quantizer` is given (the first
    layer after a model input). Range variables live on the wrapper.

    How the layer is computed is a plan chosen in `build`: the layer's own
    call (`LayerCall`), or for a Dense/EinsumDense on inputs of rank > 2 one
    2-D matmul the converter makes an int8 FULLY_CONNECTED (`FlatMatmul`, see
    `flat_matmul`), or, with per-channel weights (the default scheme's choice
    there), an int8 1x1 CONV_2D with one weight scale per output channel; the
    options below that split or scale channels are parts of that plan.

    Args:
        layer: the Keras 3 layer to wrap.
        quantize_config: a `QuantizeConfig` for this layer.
        input_quantizer: optional `Quantizer` applied to the (single) input.
        preserve_sparsity: keep the zeros the weights have now at zero
            through training (sparsity-preserving QAT after pruning).
        outlier_channels: flat output channels of a Dense/EinsumDense (no
            activation, input rank > 2) computed by a second int8
            FULLY_CONNECTED with its own weight and output scales, so that
            a few huge channels do not set the scale of all the others (see
            `find_outlier_channels`). The two int8 outputs are added in float.
        input_outlier_channels: flat input channels (of a linear
            Dense/EinsumDense reading a float tensor) quantized with their own
            range and multiplied by their kernel rows in a second int8
            FULLY_CONNECTED; the other channels are quantized with a range
            that excludes them. The partial outputs are added in float.
        input_scale: per-channel smoothing of the input (SmoothQuant): the
            input is divided by these factors (one per flat input channel)
            before `input_quantizer`, and the kernel rows multiplied by them,
            so the float function is unchanged while channels with a huge
            range stop setting the int8 scale of all the others. In TFLite
            that is one float MUL before the QUANTIZE. Needs
            `input_quantizer`; `find_outlier_channels` computes it for the
            matmuls reading a LayerNormalization. `True` makes a placeholder
            whose values are restored with the weights (used by loading).
        isolate_input: multiply the input by a constant a hair above 1
            before `input_quantizer`, so the converter keeps the op that
            produces it in float (a range does not propagate back through
            a MUL). Used on attention output projections: otherwise the
            probabilities x values matmul becomes an int8 BATCH_MATMUL that
            XNNPack does not run (1.1 ms per MiniLM block against 0.05 ms
            in float).
        output_scale: per flat output channel factors (>= 1 for the channels
            with an outlier range, 1 elsewhere) of a Dense/EinsumDense on
            inputs of rank > 2 with per-channel weights: the kernel columns
            and bias are divided by them, so one int8 output scale fits all
            channels, and the dequantized output is multiplied back (one float
            MUL in TFLite, where `outlier_channels` adds a second matmul, a
            PAD per channel and an ADD). Each scaled channel keeps its own
            weight scale. `find_outlier_channels` computes them. `True` makes
            a placeholder whose values are restored with the weights.
        embedding_channel_scales: for an Embedding whose gathered rows are
            read in float (a transformer's embeddings sum before its
            LayerNormalization), give each embedding dimension its own int8
            scale: the table is quantized with every column divided by its
            largest |value| over the table's, and the gathered rows are
            multiplied back, one float MUL after the int8 GATHER in TFLite
            (a `ReversibleEmbedding`'s reverse matmul multiplies its input
            instead). The table stays one int8 tensor. `quantize_model` sets
            it where the graph allows.
        **kwargs: base layer arguments (`name`...).

    Example:
        >>> layer = keras.layers.Dense(4)
        >>> layer.build((None, 8))
        >>> wrapper = tfcompress.quantization.QuantizeWrapper(
        ...     layer, tfcompress.quantization.DefaultQuantizeConfig(["kernel"]))
        >>> wrapper.build((None, 8))
    """

    # Its range variables are what the int8 export uses: stripping keeps them.
    carries_learned_ranges = True

    def __init__(
        self,
        layer,
        quantize_config,
        input_quantizer=None,
        preserve_sparsity=False,
        outlier_channels=None,
        isolate_input=False,
        input_outlier_channels=None,
        input_scale=None,
        embedding_channel_scales=False,
        output_scale=None,
        **kwargs,
    ):
        super().__init__(layer, **kwargs)
        if not isinstance(quantize_config, QuantizeConfig):
            raise TypeError(
                "`quantize_config` must be a `tfcompress.quantization.QuantizeConfig`. "
                f"Received: quantize_config={quantize_config!r}"
            )
        if input_quantizer is not None and not isinstance(input_quantizer, Quantizer):
            raise TypeError(
                "`input_quantizer` must be a `tfcompress.quantization` quantizer or None. "
                f"Received: input_quantizer={input_quantizer!r}"
            )
        where = f" of layer {layer.name!r}"
        self.quantize_config = quantize_config
        self.input_quantizer = input_quantizer
        self.preserve_sparsity = bool(preserve_sparsity)
        self.outlier_channels = tuple(
            check_channels(outlier_channels, "outlier_channels", where) or ()
        )
        self.isolate_input = bool(isolate_input)
        self.input_outlier_channels = tuple(
            check_channels(input_outlier_channels, "input_outlier_channels", where) or ()
        )
        self.input_scale_values = _check_factors(input_scale, layer, "input_scale", "input")
        self.embedding_channel_scales = bool(embedding_channel_scales)
        self.output_scale_values = _check_factors(output_scale, layer, "output_scale", "output")

    def build(self, input_shape=None):
        self._input_shape_for_build = input_shape
        super().build(input_shape)

    def choose_plan(self):
        """The plan for this layer: `FlatMatmul` when it runs flat, else the
        layer's own call (channel-scaled for an Embedding that asks)."""
        spec = flat_matmul_spec(self.layer, self._input_shape_for_build)
        kernel = getattr(self.layer, "kernel", None)
        if spec is not None and any(
            variable is kernel for variable, _ in self._weights_to_quantize()
        ):
            return FlatMatmul(self, spec)
        if self.embedding_channel_scales and isinstance(self.layer, keras.layers.Embedding):
            return ChannelScaledEmbedding(self)
        return LayerCall(self)

    def _weights_to_quantize(self):
        return self.quantize_config.get_weights_and_quantizers(self.layer)

    def build_wrapper(self):
        self.plan = self.choose_plan()
        spec = getattr(self.plan, "spec", None)
        self.quantized_weights = []
        for variable, quantizer in self._weights_to_quantize():
            name = _short_name(variable)
            shape = variable.shape
            if spec is not None and variable is self.layer.kernel:
                shape = (spec.in_size, spec.out_size)  # ranges per flat output channel
            mask = None
            variables = quantizer.build(shape, name, self)
            if self.preserve_sparsity:
                mask = self.add_weight(
                    name=f"{name}_mask", shape=variable.shape, initializer="ones", trainable=False
                )
                mask.assign(ops.cast(ops.not_equal(variable, 0.0), mask.dtype))
            self.quantized_weights.append(QuantizedWeight(variable, quantizer, variables, mask))
        quantizers = [q for _, q in self.quantize_config.get_activations_and_quantizers(self.layer)]
        quantizers += list(self.quantize_config.get_output_quantizers(self.layer))
        self.quantized_outputs = [
            self.build_quantizer(quantizer, f"output_{i}", self.output_shape)
            for i, quantizer in enumerate(quantizers)
        ]
        self.quantized_input = None
        if self.input_quantizer is not None:
            self.quantized_input = self.build_quantizer(
                self.input_quantizer, "input", self._input_shape_for_build
            )
        self.plan.build()
        self.input_scale = getattr(self.plan, "input_scale", None)
        self.output_scale = getattr(self.plan, "output_scale", None)
        self._check_embedding_channel_scales()
        self.calibrate_weights()

    def build_quantizer(self, quantizer, name, shape):
        """`Quantized(quantizer, its range variables on this wrapper)`.

        `shape` may be a function computing it, called only for a per-axis
        quantizer: per-tensor ones need no shape.
        """
        if callable(shape):
            shape = shape() if quantizer.per_axis else None
        return Quantized(quantizer, quantizer.build(shape, name, self))

    def output_shape(self):
        return self.layer.compute_output_shape(self._input_shape_for_build)

    def kernel_weight(self):
        """The `QuantizedWeight` of the layer's kernel, or None."""
        kernel = getattr(self.layer, "kernel", None)
        return next(
            (weight for weight in self.quantized_weights if weight.variable is kernel), None
        )

    def _check_embedding_channel_scales(self):
        if not self.embedding_channel_scales:
            return
        problem = None
        if not isinstance(self.layer, keras.layers.Embedding):
            problem = "it only applies to an Embedding"
        elif not any(weight.variable is self.layer.embeddings for weight in self.quantized_weights):
            problem = "the layer's quantize config does not quantize its `embeddings`"
        elif self.quantized_outputs:
            problem = (
                "the gathered rows are scaled in float, so the layer's output cannot be quantized"
            )
        if problem:
            refuse("embedding_channel_scales", self.layer, problem, True)

    def quantize_outputs(self, outputs, training):
        """`outputs` through the output quantizers, in order."""
        for quantized in self.quantized_outputs:
            outputs = quantized(outputs, training)
        return outputs

    def weight_tensor(self, variable):
        """The float tensor that gets fake-quantized in place of `variable`
        (with `input_scale`, the kernel rows carry the factors the input was
        divided by)."""
        return self.plan.weight_tensor(variable)

    def calibrate_weights(self):
        """Sets the weight ranges from the current weights (done at build)."""
        self.plan.calibrate()

    def substitutions(self, training):
        return self.plan.substitutions(training)

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if self.input_quantizer is not None:
            if self.input_scale is not None:  # its MUL isolates too
                inputs = ops.cast(inputs, self.layer.compute_dtype)
                inputs = scale_math.scale_input(inputs, self.input_scale, self.plan.spec.in_shape)
            elif self.isolate_input:
                inputs = ops.multiply(inputs, ISOLATE_FACTOR)
            inputs = self.quantized_input(inputs, training)
        return self.plan.call(inputs, args, dict(kwargs, mask=mask), training)

    def compute_output_shape(self, input_shape):
        return self.layer.compute_output_shape(input_shape)

    def get_config(self):
        config = super().get_config()
        config.update(
            quantize_config=serialize(self.quantize_config),
            input_quantizer=serialize(self.input_quantizer),
            preserve_sparsity=self.preserve_sparsity,
            outlier_channels=list(self.outlier_channels) or None,
            isolate_input=self.isolate_input,
            input_outlier_channels=list(self.input_outlier_channels) or None,
            input_scale=True if self.input_scale_values is not None else None,
            embedding_channel_scales=self.embedding_channel_scales,
            output_scale=True if self.output_scale_values is not None else None,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(
            config["layer"], custom_objects=custom_objects
        )
        config["quantize_config"] = deserialize(config["quantize_config"])
        config["input_quantizer"] = deserialize(config.get("input_quantizer"))
        return cls(**config)
