"""Quantization-aware training with TFMOT's API, for Keras 3 models."""

from tfcompress.quantization.default_quantize_config import DefaultQuantizeConfig
from tfcompress.quantization.fold_batch_norm_wrapper import FoldBatchNormQuantizeWrapper
from tfcompress.quantization.layer_override import LayerOverride
from tfcompress.quantization.outlier_channels import find_outlier_channels
from tfcompress.quantization.quantize_annotate import (
    QuantizeAnnotate,
    quantize_annotate_layer,
    quantize_annotate_model,
)
from tfcompress.quantization.quantize_apply import quantize_apply
from tfcompress.quantization.quantize_config import QuantizeConfig
from tfcompress.quantization.quantize_model import quantize_model
from tfcompress.quantization.quantize_scheme import QuantizeScheme
from tfcompress.quantization.quantize_wrapper import QuantizeWrapper
from tfcompress.quantization.quantizers import (
    AllValuesQuantizer,
    LastValueQuantizer,
    MovingAverageQuantizer,
    Quantizer,
)

__all__ = [
    "AllValuesQuantizer",
    "DefaultQuantizeConfig",
    "FoldBatchNormQuantizeWrapper",
    "LastValueQuantizer",
    "LayerOverride",
    "MovingAverageQuantizer",
    "QuantizeAnnotate",
    "QuantizeConfig",
    "QuantizeScheme",
    "QuantizeWrapper",
    "Quantizer",
    "find_outlier_channels",
    "quantize_annotate_layer",
    "quantize_annotate_model",
    "quantize_apply",
    "quantize_model",
]
