"""The layer wrapper that runs a layer with fake-quantized weights and output."""

import math

import keras
import numpy as np
from keras import ops

from tfcompress.core.constants import ISOLATE_FACTOR
from tfcompress.core.wrapper import CompressionWrapper
from tfcompress.quantization.flat_matmul import (
    activation_input_floor,
    flat_bias,
    flat_inputs,
    flat_matmul_spec,
    fused_activation,
    gather_channels,
    linear,
    outlier_split,
    scatter_channels,
    splittable,
)
from tfcompress.quantization.default_quantize_config import DefaultQuantizeConfig
from tfcompress.quantization.quantize_config import QuantizeConfig, deserialize, serialize
from tfcompress.quantization.quantizers import Quantizer


def _check_channels(channels, layer, name="outlier_channels"):
    if channels is None:
        return ()
    if not isinstance(channels, (list, tuple)) or not all(
        isinstance(c, int) and not isinstance(c, bool) and c >= 0 for c in channels
    ):
        raise ValueError(
            f"`{name}` of layer {layer.name!r} must be a list of non-negative "
            f"channel indices, e.g. [99, 223]. Received: {name}={channels!r}"
        )
    return tuple(sorted(set(channels)))


def _check_factors(factors, layer, name="input_scale", side="input"):
    """None, True (values restored with the weights) or a 1-D positive vector."""
    if factors is None or factors is False:
        return None
    if factors is True:
        return True
    values = np.asarray(factors, dtype="float32")
    if values.ndim != 1 or not values.size or not np.all(np.isfinite(values)) or not np.all(values > 0):
        raise ValueError(
            f"`{name}` of layer {layer.name!r} must be a 1-D vector of positive "
            f"finite factors, one per flat {side} channel (see `find_outlier_channels`). "
            f"Received: {name} with shape {values.shape}"
        )
    return values


def _refuse(name, layer, problem, received):
    raise ValueError(
        f"`{name}` cannot be used on layer {layer.name!r}: {problem}. "
        f"Received: {name}={received!r}. Leave it out for this layer."
    )


def _short_name(variable):
    return variable.path.rsplit("/", 1)[-1].replace(":", "_")


@keras.saving.register_keras_serializable(package="tfcompress")
class QuantizeWrapper(CompressionWrapper):
    """Quantization-aware training of one layer (TFMOT's `QuantizeWrapper`).

    While the wrapped layer runs, each weight named by the config reads as its
    fake-quantized value (straight-through gradient to the float variable);
    the output is then fake-quantized by the config's output/activation
    quantizers, and the input too when `input_quantizer` is given (the first
    layer after a model input). Range variables live on the wrapper.

    A Dense/EinsumDense on inputs of rank > 2 runs as one 2-D matmul the
    converter makes an int8 FULLY_CONNECTED (see `flat_matmul`), or, with
    per-channel weights (the default scheme's choice there), an int8 1x1
    CONV_2D with one weight scale per output channel.

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
        self.quantize_config = quantize_config
        self.input_quantizer = input_quantizer
        self.preserve_sparsity = bool(preserve_sparsity)
        self.outlier_channels = _check_channels(outlier_channels, layer)
        self.isolate_input = bool(isolate_input)
        self.input_outlier_channels = _check_channels(input_outlier_channels, layer, "input_outlier_channels")
        self._input_scale_values = _check_factors(input_scale, layer)
        self.embedding_channel_scales = bool(embedding_channel_scales)
        self._output_scale_values = _check_factors(output_scale, layer, "output_scale", "output")

    def build(self, input_shape=None):
        self._input_shape_for_build = input_shape
        super().build(input_shape)

    def build_wrapper(self):
        config = self.quantize_config
        spec = None
        if self._flatten_matmul:
            spec = flat_matmul_spec(self.layer, self._input_shape_for_build)
        self._weights = []
        for variable, quantizer in config.get_weights_and_quantizers(self.layer):
            name = _short_name(variable)
            shape = variable.shape
            if spec is not None and variable is getattr(self.layer, "kernel", None):
                shape = (math.prod(spec[1]), math.prod(spec[2]))  # ranges per flat output channel
            qvars = quantizer.build(shape, name, self)
            mask = None
            if self.preserve_sparsity:
                mask = self.add_weight(name=f"{name}_mask", shape=variable.shape, initializer="ones", trainable=False)
                mask.assign(ops.cast(ops.not_equal(variable, 0.0), mask.dtype))
            self._weights.append((variable, quantizer, qvars, mask))
        quantizers = [q for _, q in config.get_activations_and_quantizers(self.layer)]
        quantizers += list(config.get_output_quantizers(self.layer))
        shape = self._output_shape()
        self._outputs = [(q, q.build(shape, f"output_{i}", self)) for i, q in enumerate(quantizers)]
        self._input_vars = None
        if self.input_quantizer is not None:
            self._input_vars = self.input_quantizer.build(self._input_shape_for_build, "input", self)
        self._build_flat_matmul(quantizers)
        self._build_outlier_split()
        self._build_input_scale()
        self._build_output_scale()
        self._check_embedding_channel_scales()
        self.calibrate_weights()

    # Subclasses that change the kernel/bias computation (BatchNorm folding)
    # keep the wrapped layer's own call.
    _flatten_matmul = True

    def _build_flat_matmul(self, output_quantizers):
        """Runs >2-D Dense/EinsumDense as a 2-D matmul (see `flat_matmul`).

        With an activation TFLite does not fuse (GELU in BERT's FFN), the
        matmul output gets its own quantizer, so the FULLY_CONNECTED is int8
        and the activation runs on int8 too (in float when the output is left
        unquantized for a consumer's input split).
        """
        self._flat = None
        self._per_channel = False
        self._pre_activation = None
        self._pre_activation_floor = None
        if not self._flatten_matmul or self._kernel_entry() is None:
            return
        self._flat = flat_matmul_spec(self.layer, self._input_shape_for_build)
        if self._flat is None:
            return
        self._per_channel = self._kernel_entry()[1].per_axis
        if not fused_activation(self.layer):
            # Even with a float output (a consumer quantizes it with its
            # input outlier split), the FULLY_CONNECTED itself stays int8.
            quantizers = self.quantize_config.get_output_quantizers(self.layer)
            quantizer = quantizers[0] if quantizers else DefaultQuantizeConfig().activation_quantizer()
            self._pre_activation = (quantizer, quantizer.build(self._output_shape(), "pre_activation", self))
            if not quantizer.symmetric and not quantizer.per_axis:
                self._pre_activation_floor = activation_input_floor(self.layer)

    def _check_split(self, name, channels, size_index):
        problem = None
        if self._flat is None:
            problem = "it only applies to a Dense/EinsumDense run on inputs of rank > 2"
        elif not splittable(self.layer):
            problem = "the layer has an activation TFLite fuses into the matmul (ReLU); it cannot be split"
        elif name == "input_outlier_channels" and not linear(self.layer):
            problem = "the layer has an activation; only linear layers can split their input"
        elif len(self._weights) != 1 or (len(self._outputs) != 1 and self._pre_activation is None):
            problem = "the layer's quantize config must quantize its kernel and its output"
        elif channels[-1] >= math.prod(self._flat[size_index]):
            kind = "output" if size_index == 2 else "input"
            problem = f"the layer has only {math.prod(self._flat[size_index])} {kind} channels"
        elif name == "input_outlier_channels" and self.input_quantizer is not None:
            problem = "it replaces `input_quantizer`; pass one or the other"
        if problem:
            _refuse(name, self.layer, problem, channels)

    def _build_outlier_split(self):
        """Ranges of the outlier parts: their kernels, inputs and outputs."""
        self._split = self._in_split = None
        kernel_quantizer = (self._kernel_entry() or (None, None))[1]
        output_quantizer = self._matmul_output()[0]
        if self.outlier_channels:
            self._check_split("outlier_channels", self.outlier_channels, 2)
            kernel_shape = (math.prod(self._flat[1]), len(self.outlier_channels))
            self._split = (
                (kernel_quantizer, kernel_quantizer.build(kernel_shape, "kernel_outliers", self)),
                (output_quantizer, output_quantizer.build((), "output_outliers", self)),
            )
        if self.input_outlier_channels:
            self._check_split("input_outlier_channels", self.input_outlier_channels, 1)
            rows_shape = (len(self.input_outlier_channels), math.prod(self._flat[2]))
            self._in_split = tuple(
                (quantizer, quantizer.build(shape, name, self))
                for quantizer, shape, name in (
                    (output_quantizer, (), "input"),
                    (output_quantizer, (), "input_outliers"),
                    (kernel_quantizer, rows_shape, "kernel_input_outliers"),
                    (output_quantizer, (), "output_input_outliers"),
                )
            )

    def _build_input_scale(self):
        self.input_scale = None
        values = self._input_scale_values
        if values is None:
            return
        problem = None
        if self._flat is None:
            problem = "it only applies to a Dense/EinsumDense run on inputs of rank > 2"
        elif self.input_outlier_channels:
            problem = "it replaces `input_outlier_channels`; pass one or the other"
        elif self.input_quantizer is None:
            problem = "the layer's input is not quantized by this wrapper (no `input_quantizer`)"
        self.input_scale = self._factor_weight("input_scale", values, 1, problem)

    def _build_output_scale(self):
        self.output_scale = None
        values = self._output_scale_values
        if values is None:
            return
        problem = None
        if self._flat is None:
            problem = "it only applies to a Dense/EinsumDense run on inputs of rank > 2"
        elif self.outlier_channels:
            problem = "it replaces `outlier_channels`; pass one or the other"
        elif self._matmul_output()[0] is None:
            problem = "the layer's matmul output is not quantized by this wrapper"
        elif not self._per_channel:
            problem = "it needs per-channel weights (the scaled kernel columns keep their own scales)"
        self.output_scale = self._factor_weight("output_scale", values, 2, problem)

    def _factor_weight(self, name, values, side, problem):
        """The non-trainable per-channel factors `name` (`side` 1: flat input
        channels, 2: output), after refusing with `problem` or a wrong size."""
        if problem is None:
            size = math.prod(self._flat[side])
            if values is not True and values.shape[0] != size:
                problem = f"the layer has {size} {'input' if side == 1 else 'output'} channels, not {values.shape[0]}"
        if problem:
            received = "True" if values is True else f"<{values.shape[0]} factors>"
            _refuse(name, self.layer, problem, received)
        weight = self.add_weight(name=name, shape=(size,), initializer="ones", trainable=False)
        if values is not True:
            weight.assign(values)
        return weight

    def _flat_bias(self, bias):
        """`bias` (or None) for the 2-D matmul, divided by `output_scale` as
        the kernel columns are."""
        if bias is None:
            return None
        if self.output_scale is not None:
            bias = bias / ops.reshape(self.output_scale, ops.shape(bias))
        return flat_bias(bias, self._flat[2])

    def _unscaled_output(self, outputs):
        """The quantized matmul output times `output_scale` (one float MUL)."""
        return ops.multiply(outputs, ops.reshape(self.output_scale, self._flat[2]))

    def _check_embedding_channel_scales(self):
        if not self.embedding_channel_scales:
            return
        problem = None
        if not isinstance(self.layer, keras.layers.Embedding):
            problem = "it only applies to an Embedding"
        elif not any(variable is self.layer.embeddings for variable, *_ in self._weights):
            problem = "the layer's quantize config does not quantize its `embeddings`"
        elif self._outputs:
            problem = "the gathered rows are scaled in float, so the layer's output cannot be quantized"
        if problem:
            _refuse("embedding_channel_scales", self.layer, problem, True)

    def _channel_scales(self):
        """Per embedding dimension: its largest |value| over the table's."""
        table = ops.convert_to_tensor(self.layer.embeddings)
        span = ops.max(ops.abs(table), axis=0)
        peak = ops.max(span)
        return ops.stop_gradient(ops.maximum(span, peak * 1e-6 + 1e-30) / (peak + 1e-30))

    def _scaled_input(self, inputs):
        _, in_shape, _ = self._flat
        # A multiplication by the reciprocal: one MUL in TFLite, not a DIV.
        factors = ops.reshape(ops.reciprocal(self.input_scale), in_shape)
        return ops.multiply(ops.cast(inputs, self.layer.compute_dtype), factors)

    def _matmul_output(self):
        """`(quantizer, range variables)` of the matmul's output: the
        pre-activation one when the activation is a separate op."""
        if self._pre_activation is not None:
            return self._pre_activation
        return self._outputs[0] if self._outputs else (None, None)

    def _quantize_matmul_output(self, outputs, training):
        quantizer, qvars = self._pre_activation
        if self._pre_activation_floor is None:
            return quantizer(outputs, training, qvars)
        if training:  # no int8 levels where the activation is flat
            quantizer.update_range(ops.stop_gradient(outputs), qvars)
            qvars["min_var"].assign(ops.maximum(qvars["min_var"], self._pre_activation_floor))
        return quantizer(outputs, False, qvars)

    def _kernel_entry(self):
        """`(variable, quantizer, range variables, mask)` of the kernel, or None."""
        kernel = getattr(self.layer, "kernel", None)
        return next((entry for entry in self._weights if entry[0] is kernel), None)

    def _matmul(self, x, kernel, quantizer, qvars, training, bias=None):
        """`x (n, in) @ fake-quantized kernel (in, out) [+ bias]`.

        With per-channel weights, a 1x1 convolution: TFLite's CONV_2D takes
        int8 weights per output channel, while its FULLY_CONNECTED does not
        take them from the converter ("'tfl.transpose' op has mismatched
        quantized axes"). The fake quantizer sees the 4-D kernel the
        converter keeps; a RESHAPE after it would break the same way.
        Training runs the same quantized kernel as a matmul: TensorFlow's
        1x1 convolution gradient is 4x slower than the matmul's on CPU.
        """
        if self._per_channel and not training:
            size_in, size_out = kernel.shape
            kernel = quantizer(ops.reshape(kernel, (1, 1, size_in, size_out)), training, qvars)
            y = ops.reshape(ops.conv(ops.reshape(x, (-1, 1, 1, size_in)), kernel), (-1, size_out))
        else:
            y = ops.matmul(x, quantizer(kernel, training, qvars))
        return y if bias is None else ops.add(y, bias)

    def _kernel_parts(self):
        """`(main kernel 2-D, input-outlier rows or None, output split or None)`.

        The main kernel has the input-outlier rows zeroed; the output split
        (`outlier_split`) is taken from it.
        """
        variable, _, _, mask = self._kernel_entry()
        kernel = self.weight_tensor(variable)
        kernel = kernel if mask is None else kernel * mask
        _, in_shape, out_shape = self._flat
        kernel = ops.reshape(kernel, (math.prod(in_shape), math.prod(out_shape)))
        rows = None
        if self._in_split is not None:
            channels = list(self.input_outlier_channels)
            rows = ops.take(kernel, channels, axis=0)
            kernel = kernel * self._input_keep()[:, None]
        bias = self.layer.bias
        split = None
        if self._split is not None:
            split = outlier_split(self._flat, kernel, bias, self.outlier_channels)
        return kernel, rows, split

    def _input_keep(self):
        keep = np.ones((math.prod(self._flat[1]),), "float32")
        keep[list(self.input_outlier_channels)] = 0.0
        return keep

    def _output_shape(self):
        try:
            return self.layer.compute_output_shape(self._input_shape_for_build)
        except Exception:  # per-tensor quantizers do not need it
            return None

    def weight_tensor(self, variable):
        """The float tensor that gets fake-quantized in place of `variable`.

        With `input_scale`, the kernel rows carry the factors the input was
        divided by.
        """
        if self._flat is not None and variable is self.layer.kernel:
            _, in_shape, out_shape = self._flat
            value = ops.convert_to_tensor(variable)
            if self.input_scale is not None:
                value = value * ops.reshape(self.input_scale, tuple(in_shape) + (1,) * len(out_shape))
            if self.output_scale is not None:
                value = value / ops.reshape(self.output_scale, (1,) * len(in_shape) + tuple(out_shape))
            return value
        if self.embedding_channel_scales and variable is self.layer.embeddings:
            return variable / self._channel_scales()
        return ops.convert_to_tensor(variable)

    def calibrate_weights(self):
        """Sets the weight ranges from the current weights (done at build)."""
        flat_kernel = self._kernel_entry() if self._flat is not None else None
        for entry in self._weights:
            variable, quantizer, qvars, mask = entry
            if entry is not flat_kernel:
                value = self.weight_tensor(variable)
                quantizer.update_range(value if mask is None else value * mask, qvars)
        if flat_kernel is None:
            return
        kernel, rows, split = self._kernel_parts()
        if split is not None:
            kernel = split[0]
            quantizer, qvars = self._split[0]
            quantizer.update_range(split[2], qvars)
        flat_kernel[1].update_range(kernel, flat_kernel[2])
        if rows is not None:
            quantizer, qvars = self._in_split[2]
            quantizer.update_range(rows, qvars)

    def substitutions(self, training):
        flat_kernel = self._kernel_entry() if self._flat is not None else None
        pairs = []
        for variable, quantizer, qvars, mask in self._weights:
            if flat_kernel is not None and variable is flat_kernel[0]:
                continue  # the flat path quantizes its 2-D kernel itself
            value = self.weight_tensor(variable)
            if mask is not None:
                value = value * mask
            pairs.append((variable, quantizer(value, training, qvars)))
        return pairs

    def postprocess(self, outputs, training):
        """Hook between the inner call and the output quantizers."""
        return outputs

    def call(self, inputs, *args, training=None, mask=None, **kwargs):
        if self.input_quantizer is not None:
            if self.input_scale is not None:
                inputs = self._scaled_input(inputs)  # its MUL isolates too
            elif self.isolate_input:
                inputs = ops.multiply(inputs, ISOLATE_FACTOR)
            inputs = self.input_quantizer(inputs, training, self._input_vars)
        if self._split is not None or self._in_split is not None:
            return self._call_split(inputs, training)
        if self._flat is not None:
            outputs = self._call_flat(inputs, training)
        elif self.embedding_channel_scales:
            outputs = self._call_channel_scaled(inputs, *args, training=training, mask=mask, **kwargs)
        else:
            outputs = super().call(inputs, *args, training=training, mask=mask, **kwargs)
        outputs = self.postprocess(outputs, training)
        for quantizer, qvars in self._outputs:
            outputs = quantizer(outputs, training, qvars)
        if self.output_scale is not None and self._pre_activation is None:
            outputs = self._unscaled_output(outputs)
        return outputs

    def _call_flat(self, inputs, training):
        layer = self.layer
        values = {id(variable): tensor for variable, tensor in self.substitutions(training)}
        bias = self._flat_bias(None if layer.bias is None else values.get(id(layer.bias), layer.bias))
        kernel, _, _ = self._kernel_parts()
        _, quantizer, qvars, _ = self._kernel_entry()
        x, lead = flat_inputs(layer, self._flat, inputs)
        outputs = ops.reshape(self._matmul(x, kernel, quantizer, qvars, training, bias), lead + tuple(self._flat[2]))
        if self._pre_activation is not None:
            outputs = self._quantize_matmul_output(outputs, training)
            if self.output_scale is not None:
                outputs = self._unscaled_output(outputs)
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        return outputs

    def _call_channel_scaled(self, inputs, *args, **kwargs):
        """The table is quantized with each dimension divided by its scale:
        gathered rows are multiplied back (one float MUL in TFLite); a
        `ReversibleEmbedding`'s reverse matmul multiplies its input instead."""
        scales = self._channel_scales()
        if kwargs.get("reverse"):
            return super().call(ops.multiply(inputs, scales), *args, **kwargs)
        return ops.multiply(super().call(inputs, *args, **kwargs), scales)

    def _call_split(self, inputs, training):
        """The layer as int8 matmuls on channel groups, added in float.

        Input outlier channels: `x_rest @ kernel[rest rows]` plus
        `x[outliers] @ kernel[outlier rows]`, each input with its own range.
        Output outlier channels: the main matmul's outlier columns computed
        apart, with their own kernel and output ranges, and padded back in place.
        """
        kernel, rows, split = self._kernel_parts()
        x, lead = flat_inputs(self.layer, self._flat, inputs)
        extra = None
        if self._in_split is not None:
            (rest_q, rest_vars), (out_q, out_vars), (rows_q, rows_vars), (part_q, part_vars) = self._in_split
            # Each path gets its own MUL (see `isolate_input`): the producer
            # (GELU) and the slices stay float in TFLite, and the converter
            # cannot merge the two QUANTIZE ops of one float tensor into one
            # (it did, keeping the outlier scale for both).
            outliers = ops.multiply(gather_channels(x, self.input_outlier_channels), ISOLATE_FACTOR)
            outliers = out_q(outliers, training, out_vars)
            x = ops.multiply(x, ISOLATE_FACTOR)
            if training:  # the range of the ordinary channels only
                rest_q.update_range(ops.stop_gradient(x * self._input_keep()), rest_vars)
            extra = part_q(self._matmul(outliers, rows, rows_q, rows_vars, training), training, part_vars)
            x = rest_q(x, False, rest_vars)  # clips the outliers; their kernel rows are zero
        kernel_q, kernel_vars = self._kernel_entry()[1:3]
        if self._pre_activation is not None:
            quantize = self._quantize_matmul_output
        else:
            output_q, output_vars = self._outputs[0]

            def quantize(values, training):
                return output_q(values, training, output_vars)

        if split is None:
            bias = self._flat_bias(self.layer.bias)
            outputs = quantize(self._matmul(x, kernel, kernel_q, kernel_vars, training, bias), training)
        else:
            rest_kernel, rest_bias, outlier_kernel, outlier_bias = split
            (outlier_kq, outlier_kvars), (outlier_q, outlier_vars) = self._split
            rest = quantize(self._matmul(x, rest_kernel, kernel_q, kernel_vars, training, rest_bias), training)
            outlier = self._matmul(x, outlier_kernel, outlier_kq, outlier_kvars, training, outlier_bias)
            outlier = outlier_q(outlier, training, outlier_vars)
            outputs = rest + scatter_channels(outlier, self.outlier_channels, math.prod(self._flat[2]))
        if extra is not None:
            outputs = outputs + extra
        outputs = ops.reshape(outputs, lead + tuple(self._flat[2]))
        if self.output_scale is not None:
            outputs = self._unscaled_output(outputs)
        if self._pre_activation is not None:  # GELU on the float sum, then its own output range
            outputs = self.layer.activation(outputs)
            for quantizer, qvars in self._outputs:
                outputs = quantizer(outputs, training, qvars)
        return outputs

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
            input_scale=True if self._input_scale_values is not None else None,
            embedding_channel_scales=self.embedding_channel_scales,
            output_scale=True if self._output_scale_values is not None else None,
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        config["layer"] = keras.saving.deserialize_keras_object(config["layer"], custom_objects=custom_objects)
        config["quantize_config"] = deserialize(config["quantize_config"])
        config["input_quantizer"] = deserialize(config.get("input_quantizer"))
        return cls(**config)
