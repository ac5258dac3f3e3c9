import contextlib
import io

import keras
import numpy as np
import pytest
import tensorflow as tf

from tfcompress.export import additive_attention_masks
from tfcompress.runtime import xnnpack_delegation

import testing


def _bert_tflite():
    keras.utils.set_random_seed(0)
    backbone = testing.bert_backbone(num_layers=2)
    names = ("token_ids", "segment_ids", "padding_mask")
    inputs = [keras.Input((testing.SEQ,), dtype="int32", name=name) for name in names]
    model = keras.Model(inputs, backbone(dict(zip(names, inputs)))["sequence_output"])
    converter = tf.lite.TFLiteConverter.from_keras_model(model)
    with contextlib.redirect_stdout(io.StringIO()):
        return converter.convert()


def test_a_dense_model_is_one_partition(dense_tflite):
    report = xnnpack_delegation(dense_tflite)

    assert report.backend == "ai_edge_litert"
    assert report.partitions == 1
    assert report.delegated == report.ops > 0
    assert report.not_delegated == {}
    assert f"{report.ops} of {report.ops} ops delegated in 1 partition" in report.summary()


def test_attention_masks_are_what_xnnpack_leaves_out():
    stock = _bert_tflite()
    before = xnnpack_delegation(stock)
    after = xnnpack_delegation(additive_attention_masks(stock)[0])

    # Every block's mask ops run outside XNNPack in the stock file.
    assert before.not_delegated["LOGICAL_AND [bool,bool] -> [bool]"] == 2
    assert before.not_delegated["SELECT_V2 [bool,float32,float32] -> [float32]"] == 2
    assert not any(key.startswith("LOGICAL_AND") for key in after.not_delegated)
    assert after.not_delegated["SELECT_V2 [bool,float32,float32] -> [float32]"] == 1
    assert after.partitions < before.partitions
    assert after.ops - after.delegated < before.ops - before.delegated
    assert sum(before.not_delegated.values()) == before.ops - before.delegated


def test_bad_files_are_refused(tmp_path):
    with pytest.raises(ValueError, match="not a valid TFLite flatbuffer"):
        xnnpack_delegation(b"\x00" * 32)
    with pytest.raises(ValueError, match="not an existing file"):
        xnnpack_delegation(str(tmp_path / "missing.tflite"))
    with pytest.raises(TypeError, match="must be a path"):
        xnnpack_delegation(np.zeros(3))
