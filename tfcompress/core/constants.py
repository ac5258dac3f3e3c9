"""Numbers that two parts of tfcompress must agree on exactly."""

# 1 + 2^-22, exact in float32. Quantization-aware layers multiply a float
# tensor by it before quantizing, so that the TFLite converter does not carry
# the quantization range back into the op that made the tensor (a MUL by a
# constant that is not 1 cannot be folded away); the export then removes the
# MULs by exactly this value. A value moves by 2.4e-7 of itself, far inside
# one int8 or int16 step.
ISOLATE_FACTOR = 1.0 + 2.0**-22
