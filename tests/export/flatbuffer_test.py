import keras
import numpy as np
import pytest

from tfcompress import runtime
from tfcompress.export import converter, flatbuffer, wrap


@pytest.fixture
def content(dense_model):
    return converter.convert(wrap.functional_wrapper(dense_model)[0], "float32")


def _buffer_offsets(packed):
    """Byte offsets of non-empty buffer data inside a packed flatbuffer."""
    root = flatbuffer.schema.Model.GetRootAs(packed, 0)
    offsets = []
    for i in range(root.BuffersLength()):
        buffer = root.Buffers(i)
        if buffer.DataLength():
            offsets.append(buffer._tab.Vector(buffer._tab.Offset(4)))
    return offsets


def test_pack_round_trip_keeps_the_model_and_aligns_buffers(dense_model, content):
    packed = flatbuffer.pack(flatbuffer.read_model(content))
    assert packed[4:8] == b"TFL3"
    offsets = _buffer_offsets(packed)
    assert offsets and all(offset % 16 == 0 for offset in offsets)
    x = np.random.default_rng(0).random((3, 32), dtype=np.float32)
    np.testing.assert_array_equal(runtime.load(packed).run(x), runtime.load(content).run(x))


def test_op_names_constants_and_sizes(content):
    model = flatbuffer.read_model(content)
    assert flatbuffer.op_names(model) == ["FULLY_CONNECTED", "FULLY_CONNECTED"]
    subgraph = model.subgraphs[0]
    constants = [t for t in subgraph.tensors if flatbuffer.has_data(model, t)]
    # The two kernels; the converter drops the all-zero (untrained) biases.
    assert sorted(flatbuffer.tensor_bytes(t) for t in constants) == [
        64 * 10 * 4,
        32 * 64 * 4,
    ]
    first_input = subgraph.tensors[subgraph.inputs[0]]
    assert flatbuffer.tensor_bytes(first_input) == 32 * 4  # dynamic batch counts as 1


def test_opcode_index_reuses_or_adds(content):
    model = flatbuffer.read_model(content)
    count = len(model.operatorCodes)
    fully_connected = flatbuffer.schema.BuiltinOperator.FULLY_CONNECTED
    assert flatbuffer.builtin_code(model, model.subgraphs[0].operators[0]) == fully_connected
    assert flatbuffer.opcode_index(model, fully_connected) < count
    assert flatbuffer.opcode_index(model, flatbuffer.schema.BuiltinOperator.QUANTIZE) == count
    assert len(model.operatorCodes) == count + 1


def test_read_bytes_errors(tmp_path):
    with pytest.raises(ValueError, match="existing .tflite file"):
        flatbuffer.read_bytes(tmp_path / "nothing.tflite")
    with pytest.raises(ValueError, match="no 'TFL3' identifier"):
        flatbuffer.read_bytes(b"1234567890")
    with pytest.raises(TypeError, match="`model_file` must be TFLite flatbuffer bytes"):
        flatbuffer.read_bytes(keras.Input((2,)), "model_file")
