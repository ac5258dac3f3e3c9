import json

import keras
import keras_hub
import numpy as np

import tfcompress

import testing


def test_loading_a_pruned_keras_hub_model_imports_only_what_its_config_names(tmp_path):
    keras.utils.set_random_seed(0)
    backbone = keras_hub.models.BertBackbone(
        vocabulary_size=64,
        num_layers=1,
        num_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
        max_sequence_length=8,
    )
    pruned = tfcompress.sparsity.prune_low_magnitude(
        backbone, pruning_schedule=tfcompress.sparsity.ConstantSparsity(0.5, 0)
    )
    assert isinstance(pruned, tfcompress.core.recipe.CompressedModel)
    x = {
        "token_ids": np.arange(16, dtype="int32").reshape(2, 8) % 64,
        "segment_ids": np.zeros((2, 8), "int32"),
        "padding_mask": np.ones((2, 8), "int32"),
    }
    path = tmp_path / "pruned.keras"
    pruned.save(path)
    np.save(tmp_path / "expected.npy", np.asarray(pruned(x)["sequence_output"]))
    out = testing.run_python(f"""
import json, sys
import keras, numpy as np
import tfcompress.sparsity
model = keras.saving.load_model({str(path)!r})
x = {{"token_ids": np.arange(16, dtype="int32").reshape(2, 8) % 64,
      "segment_ids": np.zeros((2, 8), "int32"), "padding_mask": np.ones((2, 8), "int32")}}
expected = np.load({str(tmp_path / "expected.npy")!r})
print(json.dumps({{
    "loaded": sorted(m for m in sys.modules if m.startswith("tfcompress.") and m.count(".") == 1),
    "wrapped": sum(isinstance(r.layer, tfcompress.sparsity.PruneLowMagnitude)
                   for r in tfcompress.core.walk_layers(model)),
    "equal": bool(np.array_equal(model(x)["sequence_output"], expected)),
}}))
""")
    found = json.loads(out.strip().splitlines()[-1])
    assert found["equal"] and found["wrapped"] > 0
    assert not {"tfcompress.quantization", "tfcompress.low_rank", "tfcompress.distillation"} & set(
        found["loaded"]
    ), found["loaded"]
