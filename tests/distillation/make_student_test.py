import keras
import keras_hub
import numpy as np
import pytest

from tfcompress.distillation import make_student

import testing


def _llama3(num_layers=4):
    return keras_hub.models.Llama3Backbone(
        vocabulary_size=testing.VOCAB,
        num_layers=num_layers,
        num_query_heads=4,
        num_key_value_heads=2,
        hidden_dim=8,
        intermediate_dim=16,
    )


_BACKBONES = [testing.bert_backbone, testing.gpt2_backbone, _llama3]


def _gpt2_causal_lm(num_layers=4):
    vocabulary = {"<|endoftext|>": 0, "a": 1, "b": 2, "c": 3, "Ġ": 4, "ab": 5, "Ġa": 6}
    vocabulary.update({f"x{i}": i for i in range(len(vocabulary), testing.VOCAB)})
    tokenizer = keras_hub.models.GPT2Tokenizer(vocabulary=vocabulary, merges=["a b", "Ġ a"])
    preprocessor = keras_hub.models.GPT2CausalLMPreprocessor(tokenizer, sequence_length=testing.SEQ)
    return keras_hub.models.GPT2CausalLM(
        testing.gpt2_backbone(num_layers), preprocessor=preprocessor
    )


def _numpy(variables):
    return [keras.ops.convert_to_numpy(v) for v in variables]


def _assert_arrays_equal(left, right):
    assert len(left) == len(right)
    for x, y in zip(left, right):
        np.testing.assert_array_equal(x, y)


def _assert_cut(teacher, student, chosen):
    """The student's blocks are the chosen teacher blocks; the rest is equal."""
    assert len(student.transformer_layers) == len(chosen)
    assert student.get_config()["num_layers"] == len(chosen)
    for j, index in enumerate(chosen):
        block = student.transformer_layers[j]
        assert block.name == f"transformer_layer_{j}"
        _assert_arrays_equal(
            _numpy(block.weights), _numpy(teacher.transformer_layers[index].weights)
        )
    teacher_blocks = {id(v) for b in teacher.transformer_layers for v in b.weights}
    student_blocks = {id(v) for b in student.transformer_layers for v in b.weights}
    teacher_rest = [v for v in teacher.weights if id(v) not in teacher_blocks]
    student_rest = [v for v in student.weights if id(v) not in student_blocks]
    assert [v.path for v in student_rest] == [v.path for v in teacher_rest]
    _assert_arrays_equal(_numpy(student_rest), _numpy(teacher_rest))


def _randomize(model, seed=0):
    """Distinct values everywhere (fresh LayerNorms are all ones and zeros)."""
    rng = np.random.default_rng(seed)
    for v in model.weights:
        v.assign(rng.normal(size=v.shape).astype(v.dtype))


@pytest.mark.parametrize("factory", _BACKBONES, ids=["bert", "gpt2", "llama3"])
def test_backbone_keeps_class_and_copies_chosen_blocks(factory):
    teacher = factory(num_layers=4)
    _randomize(teacher)
    before = _numpy(teacher.weights)
    student = make_student(teacher, layers=[0, 3])
    assert type(student) is type(teacher)
    _assert_cut(teacher, student, [0, 3])
    # Copies, not shared variables: training the student leaves the teacher alone.
    for v in student.weights:
        v.assign(v + 1.0)
    _assert_arrays_equal(_numpy(teacher.weights), before)


@pytest.mark.parametrize("factory", _BACKBONES, ids=["bert", "gpt2", "llama3"])
def test_all_blocks_give_the_teacher_outputs(factory):
    teacher = factory(num_layers=3)
    _randomize(teacher, seed=1)
    student = make_student(teacher, layers=[0, 1, 2])
    inputs = testing.token_inputs(segments=isinstance(teacher, keras_hub.models.BertBackbone))
    testing.assert_outputs_close(student(inputs), teacher(inputs), atol=0)


def test_half_depth_student_computes_embeddings_chosen_blocks_and_norm():
    teacher = testing.gpt2_backbone(num_layers=4)
    _randomize(teacher, seed=2)
    student = make_student(teacher, layers=[1, 2])
    inputs = testing.token_inputs(segments=False)
    inputs["padding_mask"][:, -2:] = 0
    x = teacher.embeddings_add(
        (
            teacher.token_embedding(inputs["token_ids"]),
            teacher.position_embedding(teacher.token_embedding(inputs["token_ids"])),
        )
    )
    for index in (1, 2):
        x = teacher.transformer_layers[index](x, decoder_padding_mask=inputs["padding_mask"])
    expected = keras.ops.convert_to_numpy(teacher.layer_norm(x))
    np.testing.assert_allclose(keras.ops.convert_to_numpy(student(inputs)), expected, atol=1e-6)


@pytest.mark.parametrize(
    "total, count, expected",
    [
        (6, 3, [1, 3, 5]),
        (12, 6, [1, 3, 5, 7, 9, 11]),
        (12, 4, [2, 5, 8, 11]),
        (4, 1, [3]),
        (4, 4, [0, 1, 2, 3]),
        (5, 2, [1, 4]),
    ],
)
def test_num_layers_picks_evenly_spaced_blocks_ending_at_the_last(total, count, expected):
    teacher = testing.bert_backbone(num_layers=total)
    _randomize(teacher, seed=3)
    student = make_student(teacher, num_layers=count)
    _assert_cut(teacher, student, expected)


def test_causal_lm_keeps_class_preprocessor_and_tied_head():
    teacher = _gpt2_causal_lm(num_layers=4)
    _randomize(teacher.backbone, seed=4)
    student = make_student(teacher, num_layers=2)
    assert type(student) is keras_hub.models.GPT2CausalLM
    assert type(student.backbone) is keras_hub.models.GPT2Backbone
    assert student.preprocessor is teacher.preprocessor
    assert student.preprocessor.tokenizer is teacher.preprocessor.tokenizer
    _assert_cut(teacher.backbone, student.backbone, [1, 3])
    # The LM head is tied to the copied token embedding: same logits for a
    # student that keeps every block.
    full = make_student(teacher, num_layers=4)
    x, _, _ = teacher.preprocessor(["ab a", "c ab"])
    testing.assert_outputs_close(full(x), teacher(x), atol=0)
    assert full.generate(["ab"], max_length=6) == teacher.generate(["ab"], max_length=6)


def test_llama3_causal_lm_keeps_its_class_and_head():
    teacher = keras_hub.models.Llama3CausalLM(_llama3(num_layers=4), preprocessor=None)
    _randomize(teacher, seed=7)
    student = make_student(teacher, layers=[0, 2])
    assert type(student) is keras_hub.models.Llama3CausalLM
    assert student.preprocessor is None
    _assert_cut(teacher.backbone, student.backbone, [0, 2])
    full = make_student(teacher, layers=[0, 1, 2, 3])
    inputs = testing.token_inputs(segments=False)
    testing.assert_outputs_close(full(inputs), teacher(inputs), atol=0)


def test_student_of_a_frozen_teacher_is_trainable():
    teacher = _gpt2_causal_lm(num_layers=4)
    teacher.trainable = False
    student = make_student(teacher, num_layers=2)
    assert student.trainable and student.backbone.trainable
    assert len(student.trainable_weights) == len(student.weights) > 0
    assert not teacher.backbone.trainable


def test_classifier_head_is_copied():
    teacher = keras_hub.models.BertTextClassifier(
        testing.bert_backbone(num_layers=4), num_classes=3, preprocessor=None, dropout=0.0
    )
    _randomize(teacher, seed=5)
    student = make_student(teacher, layers=[0, 2])
    assert type(student) is keras_hub.models.BertTextClassifier
    assert student.get_config()["num_classes"] == 3
    _assert_cut(teacher.backbone, student.backbone, [0, 2])
    _assert_arrays_equal(_numpy(student.output_dense.weights), _numpy(teacher.output_dense.weights))


def test_student_saves_and_reloads_as_its_class(tmp_path):
    teacher = testing.gpt2_backbone(num_layers=4)
    _randomize(teacher, seed=6)
    student = make_student(teacher, num_layers=2)
    restored = testing.run_model_saving_test(
        student, testing.token_inputs(segments=False), tmp_path
    )
    assert type(restored) is keras_hub.models.GPT2Backbone


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({}, ValueError, r"exactly one of `layers`.*layers=None, num_layers=None"),
        ({"layers": [0], "num_layers": 1}, ValueError, "exactly one of"),
        ({"num_layers": 0}, ValueError, r"num_layers.*\[1, 4\].*num_layers=0"),
        ({"num_layers": 5}, ValueError, r"\[1, 4\].*4 transformer blocks"),
        ({"num_layers": 2.0}, ValueError, r"integer in \[1, 4\]"),
        ({"layers": []}, ValueError, "non-empty list"),
        ({"layers": 2}, TypeError, r"list of teacher block indices.*layers=2"),
        ({"layers": [0, 4]}, ValueError, r"\[0, 3\].*layers=\[0, 4\]"),
        ({"layers": [-1, 2]}, ValueError, r"\[0, 3\].*layers=\[-1, 2\]"),
        ({"layers": [2, 0]}, ValueError, r"strictly increasing.*pass \[0, 2\]"),
        ({"layers": [1, 1]}, ValueError, r"strictly increasing.*pass \[1\]"),
    ],
)
def test_bad_layer_choice_is_rejected(kwargs, error, match):
    with pytest.raises(error, match=match):
        make_student(testing.gpt2_backbone(num_layers=4), **kwargs)


def test_unsupported_models_are_rejected_with_what_is_supported():
    with pytest.raises(TypeError, match=r"supports keras-hub backbones.*type Sequential"):
        make_student(testing.sequential_cnn(), num_layers=1)
    with pytest.raises(TypeError, match=r"supports keras-hub backbones.*type Subclassed"):
        make_student(testing.subclassed(), num_layers=1)


def test_backbone_without_transformer_blocks_is_rejected():
    image = keras_hub.models.ResNetBackbone(
        input_conv_filters=[64],
        input_conv_kernel_sizes=[3],
        stackwise_num_filters=[64],
        stackwise_num_blocks=[1],
        stackwise_num_strides=[1],
        block_type="basic_block",
        image_shape=(16, 16, 3),
    )
    with pytest.raises(TypeError, match=r"ResNetBackbone with num_layers=None"):
        make_student(image, num_layers=1)
