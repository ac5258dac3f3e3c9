"""GeneratorGraph: fused projections, calibration records and the one-pack export."""

import numpy as np

from tests import _tiny_causal_lm
from tfcompress.export import flatbuffer, to_tflite_generator
from tfcompress.export.generator.decoder_weights import read_decoder_weights
from tfcompress.export.generator.graph import GeneratorGraph


def test_calibration_records_every_linear_at_every_token_the_lm_head_included():
    causal_lm = _tiny_causal_lm.tiny_llama3(seed=1)
    graph = GeneratorGraph(read_decoder_weights(causal_lm, 32), 32)
    recorded = graph.record_linear_inputs(list(range(3, 23)))
    assert set(recorded) == set(graph.kernels())
    # 20 tokens for the LM head too, not only the last position's row.
    assert {key: values.shape[0] for key, values in recorded.items()} == {
        key: 20 for key in recorded
    }
    assert recorded["head"].shape == (20, 64)


def test_projections_sharing_an_input_are_one_kernel():
    causal_lm = _tiny_causal_lm.tiny_llama3(seed=1)
    weights = read_decoder_weights(causal_lm, 32)
    graph = GeneratorGraph(weights, 32)
    layer, kernels = weights.layers[0], graph.kernels()
    assert sorted(kernels) == sorted(
        [f"layer_{i}_{kind}" for i in (0, 1) for kind in ("qkv", "o", "gate_up", "down")] + ["head"]
    )
    qkv = kernels["layer_0_qkv"].numpy()
    # The softmax's 1/sqrt(head_dim) rides on the query columns.
    scale = 1.0 / np.sqrt(layer["head_dim"])
    np.testing.assert_allclose(qkv, np.concatenate([layer["q"] * scale, layer["k"], layer["v"]], 1))
    np.testing.assert_array_equal(
        kernels["layer_0_gate_up"].numpy(), np.concatenate([layer["gate"], layer["up"]], 1)
    )


def test_the_export_packs_the_flatbuffer_once(monkeypatch):
    calls = []
    pack = flatbuffer.pack
    monkeypatch.setattr(flatbuffer, "pack", lambda model: calls.append(1) or pack(model))
    to_tflite_generator(
        _tiny_causal_lm.tiny_llama3(seed=1),
        target="mixed_int8",
        cache_length=32,
        prefill_lengths=(8,),
        verify=False,
    )
    assert len(calls) == 1
