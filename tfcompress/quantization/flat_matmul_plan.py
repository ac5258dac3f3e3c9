"""`QuantizeWrapper`'s plan for a Dense/EinsumDense on inputs of rank > 2.

`FlatMatmul` runs the layer as one 2-D matmul the converter makes an int8
FULLY_CONNECTED (see `flat_matmul`), or with per-channel weights an int8 1x1
CONV_2D. Two optional parts compute channel groups in matmuls of their own,
added in float: `OutputSplit` (outlier output channels) and `InputSplit`
(outlier input channels). `input_scale` and `output_scale` are per-channel
factors on the same matmul (see `scale_math`).
"""

from typing import NamedTuple, Optional

from keras import ops

from tfcompress.core.constants import ISOLATE_FACTOR
from tfcompress.quantization import scale_math
from tfcompress.quantization.default_quantize_config import DefaultQuantizeConfig
from tfcompress.quantization.flat_matmul import (
    activation_input_floor,
    flat_inputs,
    fused_activation,
    gather_channels,
    linear,
    outlier_split,
    scatter_channels,
    splittable,
)
from tfcompress.quantization.layer_call_plans import LayerCall, Quantized, factors_repr, refuse


class KernelParts(NamedTuple):
    """The flat kernel as the matmuls read it."""

    main: object  # 2-D, the input-outlier rows zeroed
    rows: Optional[object]  # the input-outlier rows, with an `InputSplit`
    split: Optional[object]  # `SplitWeights` of `main`, with an `OutputSplit`


class OutputSplit(NamedTuple):
    """Outlier output channels computed apart, with their own kernel and
    output ranges, and padded back in place."""

    channels: tuple
    kernel: Quantized
    output: Quantized


class InputSplit(NamedTuple):
    """Outlier input channels quantized with their own range and multiplied
    by their kernel rows in a matmul of their own; the other channels are
    quantized with a range that excludes them."""

    channels: tuple
    rest: Quantized  # the ordinary input channels
    outliers: Quantized  # the outlier input channels
    rows: Quantized  # their kernel rows
    partial: Quantized  # their matmul's output


class FlatMatmul(LayerCall):
    """The layer as `reshape(x) @ reshape(fake_quant(kernel)) + bias`.

    With an activation TFLite does not fuse (GELU in BERT's FFN), the matmul
    output gets its own `pre_activation` quantizer, so the FULLY_CONNECTED is
    int8 and the activation runs on int8 too (in float when the output is
    left unquantized for a consumer's input split).

    Args:
        wrapper: the `QuantizeWrapper` being built.
        spec: the layer's `FlatSpec`.
    """

    def __init__(self, wrapper, spec):
        super().__init__(wrapper)
        self.spec = spec

    def build(self):
        """Creates the plan's variables, refusing options that do not fit."""
        wrapper, layer = self.wrapper, self.wrapper.layer
        self.kernel = wrapper.kernel_weight()
        self.per_channel = self.kernel.quantizer.per_axis
        self.pre_activation = None
        self.activation_floor = None
        if not fused_activation(layer):
            # Even with a float output (a consumer quantizes it with its
            # input outlier split), the FULLY_CONNECTED itself stays int8.
            quantizers = wrapper.quantize_config.get_output_quantizers(layer)
            quantizer = (
                quantizers[0] if quantizers else DefaultQuantizeConfig().activation_quantizer()
            )
            self.pre_activation = wrapper.build_quantizer(
                quantizer, "pre_activation", wrapper.output_shape
            )
            if not quantizer.symmetric and not quantizer.per_axis:
                self.activation_floor = activation_input_floor(layer)
        self.output_split = self._build_output_split() if wrapper.outlier_channels else None
        self.input_split = self._build_input_split() if wrapper.input_outlier_channels else None
        self.input_scale = self._factor_weight(
            "input_scale", wrapper.input_scale_values, self._input_scale_problem()
        )
        self.output_scale = self._factor_weight(
            "output_scale", wrapper.output_scale_values, self._output_scale_problem()
        )

    def matmul_output(self):
        """The `Quantized` of the matmul's output (the pre-activation one
        when the activation is a separate op), or None."""
        if self.pre_activation is not None:
            return self.pre_activation
        return self.wrapper.quantized_outputs[0] if self.wrapper.quantized_outputs else None

    def _check_split(self, name, channels, size):
        wrapper, layer = self.wrapper, self.wrapper.layer
        problem = None
        if not splittable(layer):
            problem = "the layer has an activation TFLite fuses into the matmul (ReLU); it cannot be split"
        elif name == "input_outlier_channels" and not linear(layer):
            problem = "the layer has an activation; only linear layers can split their input"
        elif len(wrapper.quantized_weights) != 1 or (
            len(wrapper.quantized_outputs) != 1 and self.pre_activation is None
        ):
            problem = "the layer's quantize config must quantize its kernel and its output"
        elif channels[-1] >= size:
            kind = "output" if name == "outlier_channels" else "input"
            problem = f"the layer has only {size} {kind} channels"
        elif name == "input_outlier_channels" and wrapper.input_quantizer is not None:
            problem = "it replaces `input_quantizer`; pass one or the other"
        if problem:
            refuse(name, layer, problem, channels)

    def _build_output_split(self):
        channels = self.wrapper.outlier_channels
        self._check_split("outlier_channels", channels, self.spec.out_size)
        build = self.wrapper.build_quantizer
        output = self.matmul_output().quantizer
        return OutputSplit(
            channels,
            build(self.kernel.quantizer, "kernel_outliers", (self.spec.in_size, len(channels))),
            build(output, "output_outliers", ()),
        )

    def _build_input_split(self):
        channels = self.wrapper.input_outlier_channels
        self._check_split("input_outlier_channels", channels, self.spec.in_size)
        build = self.wrapper.build_quantizer
        output = self.matmul_output().quantizer
        return InputSplit(
            channels,
            build(output, "input", ()),
            build(output, "input_outliers", ()),
            build(
                self.kernel.quantizer, "kernel_input_outliers", (len(channels), self.spec.out_size)
            ),
            build(output, "output_input_outliers", ()),
        )

    def _input_scale_problem(self):
        if self.wrapper.input_outlier_channels:
            return "it replaces `input_outlier_channels`; pass one or the other"
        if self.wrapper.input_quantizer is None:
            return "the layer's input is not quantized by this wrapper (no `input_quantizer`)"
        return None

    def _output_scale_problem(self):
        if self.wrapper.outlier_channels:
            return "it replaces `outlier_channels`; pass one or the other"
        if self.matmul_output() is None:
            return "the layer's matmul output is not quantized by this wrapper"
        if not self.per_channel:
            return "it needs per-channel weights (the scaled kernel columns keep their own scales)"
        return None

    def _factor_weight(self, name, values, problem):
        """The non-trainable per-channel factors `name` (None without
        `values`), after refusing with `problem` or a wrong size."""
        if values is None:
            return None
        size, side = (
            (self.spec.in_size, "input")
            if name == "input_scale"
            else (self.spec.out_size, "output")
        )
        if problem is None and values is not True and values.shape[0] != size:
            problem = f"the layer has {size} {side} channels, not {values.shape[0]}"
        if problem:
            refuse(name, self.wrapper.layer, problem, factors_repr(values))
        weight = self.wrapper.add_weight(
            name=name, shape=(size,), initializer="ones", trainable=False
        )
        if values is not True:
            weight.assign(values)
        return weight

    def own_weights(self):
        return (self.kernel,)

    def weight_tensor(self, variable):
        """With `input_scale`, the kernel rows carry the factors the input was
        divided by; with `output_scale`, the columns are divided by it."""
        if variable is self.wrapper.layer.kernel:
            _, in_shape, out_shape = self.spec
            return scale_math.scale_kernel(
                variable, in_shape, out_shape, self.input_scale, self.output_scale
            )
        return super().weight_tensor(variable)

    def kernel_parts(self):
        kernel = self.kernel.masked(self.weight_tensor(self.kernel.variable))
        kernel = ops.reshape(kernel, (self.spec.in_size, self.spec.out_size))
        rows = None
        if self.input_split is not None:
            rows = ops.take(kernel, list(self.input_split.channels), axis=0)
            kernel = (
                kernel
                * scale_math.channel_keep(self.spec.in_size, self.input_split.channels)[:, None]
            )
        split = None
        if self.output_split is not None:
            split = outlier_split(
                self.spec, kernel, self.wrapper.layer.bias, self.output_split.channels
            )
        return KernelParts(kernel, rows, split)

    def calibrate(self):
        super().calibrate()
        parts = self.kernel_parts()
        kernel = parts.main
        if parts.split is not None:
            kernel = parts.split.rest_kernel
            self.output_split.kernel.update_range(parts.split.outlier_kernel)
        self.kernel.quantizer.update_range(kernel, self.kernel.variables)
        if parts.rows is not None:
            self.input_split.rows.update_range(parts.rows)

    def _matmul(self, x, kernel, quantized, training, bias=None):
        """`x (n, in) @ fake-quantized kernel (in, out) [+ bias]`.

        With per-channel weights, a 1x1 convolution: TFLite's CONV_2D takes
        int8 weights per output channel, while its FULLY_CONNECTED does not
        take them from the converter ("'tfl.transpose' op has mismatched
        quantized axes"). The fake quantizer sees the 4-D kernel the
        converter keeps; a RESHAPE after it would break the same way.
        Training runs the same quantized kernel as a matmul: TensorFlow's
        1x1 convolution gradient is 4x slower than the matmul's on CPU.
        """
        quantizer, variables = quantized
        if self.per_channel and not training:
            size_in, size_out = kernel.shape
            kernel = quantizer(ops.reshape(kernel, (1, 1, size_in, size_out)), training, variables)
            y = ops.reshape(ops.conv(ops.reshape(x, (-1, 1, 1, size_in)), kernel), (-1, size_out))
        else:
            y = ops.matmul(x, quantizer(kernel, training, variables))
        return y if bias is None else ops.add(y, bias)

    def _quantize_matmul_output(self, outputs, training):
        if self.pre_activation is None:
            return self.wrapper.quantized_outputs[0](outputs, training)
        if self.activation_floor is None:
            return self.pre_activation(outputs, training)
        quantizer, variables = self.pre_activation
        if training:  # no int8 levels where the activation is flat
            quantizer.update_range(ops.stop_gradient(outputs), variables)
            variables["min_var"].assign(ops.maximum(variables["min_var"], self.activation_floor))
        return quantizer(outputs, False, variables)

    def _unscaled(self, outputs):
        if self.output_scale is None:
            return outputs
        return scale_math.unscale_output(outputs, self.output_scale, self.spec.out_shape)

    def call(self, inputs, args, kwargs, training):
        if self.output_split is not None or self.input_split is not None:
            return self._call_split(inputs, training)
        layer = self.wrapper.layer
        values = {id(variable): tensor for variable, tensor in self.substitutions(training)}
        bias = None if layer.bias is None else values.get(id(layer.bias), layer.bias)
        bias = scale_math.scale_flat_bias(bias, self.spec.out_shape, self.output_scale)
        x, lead = flat_inputs(layer, self.spec, inputs)
        outputs = self._matmul(x, self.kernel_parts().main, self.kernel.quantized, training, bias)
        outputs = ops.reshape(outputs, lead + tuple(self.spec.out_shape))
        if self.pre_activation is not None:
            outputs = self._unscaled(self._quantize_matmul_output(outputs, training))
        if layer.activation is not None:
            outputs = layer.activation(outputs)
        outputs = self.wrapper.quantize_outputs(outputs, training)
        return outputs if self.pre_activation is not None else self._unscaled(outputs)

    def _input_split_call(self, x, rows, training):
        """`(x quantized with the ordinary range, the outliers' partial output)`."""
        split = self.input_split
        # Each path gets its own MUL (see `isolate_input`): the producer
        # (GELU) and the slices stay float in TFLite, and the converter
        # cannot merge the two QUANTIZE ops of one float tensor into one
        # (it did, keeping the outlier scale for both).
        outliers = ops.multiply(gather_channels(x, split.channels), ISOLATE_FACTOR)
        outliers = split.outliers(outliers, training)
        x = ops.multiply(x, ISOLATE_FACTOR)
        if training:  # the range of the ordinary channels only
            split.rest.update_range(
                ops.stop_gradient(x * scale_math.channel_keep(self.spec.in_size, split.channels))
            )
        partial = split.partial(self._matmul(outliers, rows, split.rows, training), training)
        return split.rest(x, False), partial  # clips the outliers; their kernel rows are zero

    def _call_split(self, inputs, training):
        """The layer as int8 matmuls on channel groups, added in float.

        Input outlier channels: `x_rest @ kernel[rest rows]` plus
        `x[outliers] @ kernel[outlier rows]`, each input with its own range.
        Output outlier channels: the main matmul's outlier columns computed
        apart, with their own kernel and output ranges, and padded back in place.
        """
        layer = self.wrapper.layer
        parts = self.kernel_parts()
        x, lead = flat_inputs(layer, self.spec, inputs)
        partial = None
        if self.input_split is not None:
            x, partial = self._input_split_call(x, parts.rows, training)
        kernel = self.kernel.quantized
        if parts.split is None:
            bias = scale_math.scale_flat_bias(layer.bias, self.spec.out_shape, self.output_scale)
            outputs = self._quantize_matmul_output(
                self._matmul(x, parts.main, kernel, training, bias), training
            )
        else:
            split, weights = self.output_split, parts.split
            rest = self._matmul(x, weights.rest_kernel, kernel, training, weights.rest_bias)
            rest = self._quantize_matmul_output(rest, training)
            outlier = self._matmul(
                x, weights.outlier_kernel, split.kernel, training, weights.outlier_bias
            )
            outlier = split.output(outlier, training)
            outputs = rest + scatter_channels(outlier, split.channels, self.spec.out_size)
        if partial is not None:
            outputs = outputs + partial
        outputs = self._unscaled(ops.reshape(outputs, lead + tuple(self.spec.out_shape)))
        if self.pre_activation is not None:  # GELU on the float sum, then its own output range
            outputs = self.wrapper.quantize_outputs(layer.activation(outputs), training)
        return outputs
