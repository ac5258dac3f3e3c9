import keras
import numpy as np
import pytest

from tfcompress import evaluation

from .fakes import FakeLiteRT

# Row i's scores; labels chosen so rows 0-6 are right at top-1.
SCORES = np.array(
    [
        [0.9, 0.1, 0.0, 0.0],
        [0.1, 0.8, 0.1, 0.0],
        [0.0, 0.1, 0.7, 0.2],
        [0.0, 0.0, 0.2, 0.8],
        [0.6, 0.2, 0.1, 0.1],
        [0.2, 0.5, 0.2, 0.1],
        [0.1, 0.1, 0.5, 0.3],
        [0.5, 0.3, 0.15, 0.05],  # label 1: rank 2
        [0.4, 0.1, 0.3, 0.2],  # label 3: rank 3
        [0.1, 0.2, 0.3, 0.4],  # label 0: rank 4
    ],
    dtype=np.float32,
)
LABELS = np.array([0, 1, 2, 3, 0, 1, 2, 1, 3, 0])


def _identity_model():
    return keras.Sequential([keras.Input((4,)), keras.layers.Identity()])


@pytest.mark.parametrize(
    "make_model",
    [
        _identity_model,
        lambda: lambda x: x,
        lambda: FakeLiteRT(lambda x: x),
        lambda: FakeLiteRT(lambda x: x, wrap="list"),
        lambda: FakeLiteRT(lambda x: x, wrap="dict"),
    ],
    ids=["keras", "callable", "litert", "litert_list", "litert_dict"],
)
def test_accuracy_of_known_predictions(make_model):
    model = make_model()
    assert evaluation.accuracy(model, SCORES, LABELS, batch_size=3) == pytest.approx(0.7)


@pytest.mark.parametrize("top_k, expected", [(1, 0.7), (2, 0.8), (3, 0.9), (4, 1.0)])
def test_top_k(top_k, expected):
    result = evaluation.accuracy(_identity_model(), SCORES, LABELS, top_k=top_k)
    assert result == pytest.approx(expected)


def test_one_hot_labels_equal_integer_labels():
    one_hot = np.eye(4)[LABELS]
    assert evaluation.accuracy(lambda x: x, SCORES, one_hot) == pytest.approx(0.7)


def test_ties_resolve_like_argmax():
    scores = np.zeros((4, 3), dtype=np.float32)
    labels = np.array([0, 1, 2, 0])
    assert evaluation.accuracy(lambda x: x, scores, labels) == pytest.approx(0.5)
    assert evaluation.accuracy(lambda x: x, scores, labels, top_k=2) == pytest.approx(0.75)


def test_fixed_batch_litert_model_is_fed_padded_batches():
    model = FakeLiteRT(lambda x: x, fixed_batch=4)
    assert evaluation.accuracy(model, SCORES, LABELS) == pytest.approx(0.7)
    assert model.batch_sizes == [4, 4, 4]


def test_dict_inputs_for_a_multi_input_model():
    a = keras.Input((4,), name="a")
    b = keras.Input((4,), name="b")
    model = keras.Model({"a": a, "b": b}, keras.layers.Add()([a, b]))
    x = {"a": SCORES, "b": np.zeros_like(SCORES)}
    assert evaluation.accuracy(model, x, LABELS) == pytest.approx(0.7)


def test_errors():
    with pytest.raises(ValueError, match="same number of samples"):
        evaluation.accuracy(lambda x: x, SCORES, LABELS[:5])
    with pytest.raises(ValueError, match=r"`top_k` must be an int in \[1, 4\]"):
        evaluation.accuracy(lambda x: x, SCORES, LABELS, top_k=5)
    with pytest.raises(ValueError, match="labels in"):
        evaluation.accuracy(lambda x: x, SCORES, LABELS + 1)
    with pytest.raises(ValueError, match="single sigmoid output"):
        evaluation.accuracy(lambda x: x[:, :1], SCORES, LABELS)
    with pytest.raises(ValueError, match="returned 2 outputs"):
        evaluation.accuracy(lambda x: [x, x], SCORES, LABELS)
    with pytest.raises(TypeError, match="tfcompress.runtime.load"):
        evaluation.accuracy("model.tflite", SCORES, LABELS)
    with pytest.raises(ValueError, match="batch_size"):
        evaluation.accuracy(lambda x: x, SCORES, LABELS, batch_size=0)
