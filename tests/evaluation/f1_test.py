import keras
import numpy as np
import pytest
from sklearn import metrics

from tfcompress import evaluation
from tfcompress.cli.digits import load_digits

from .fakes import FakeLiteRT, InterpreterModel


@pytest.fixture(scope="module")
def digits():
    x_train, y_train, x_test, y_test = load_digits(0)
    return x_train.reshape(len(x_train), -1), y_train, x_test.reshape(len(x_test), -1), y_test


@pytest.fixture(scope="module")
def classifier(digits):
    """A small digits MLP trained one epoch, so it still confuses some classes."""
    x_train, y_train, _, _ = digits
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((64,)), keras.layers.Dense(16, activation="relu"), keras.layers.Dense(10)]
    )
    model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x_train, y_train, epochs=1, batch_size=32, verbose=0)
    return model


def _sklearn(y, scores, **kwargs):
    return metrics.f1_score(y, np.argmax(scores, axis=-1), **kwargs)


def test_macro_micro_and_per_class_equal_sklearn(digits, classifier):
    _, _, x_test, y_test = digits
    scores = classifier.predict(x_test, verbose=0)
    macro = evaluation.f1(classifier, x_test, y_test)
    assert 0.2 < macro < 0.95  # a half-trained model: the numbers mean something
    assert macro == pytest.approx(_sklearn(y_test, scores, average="macro"), abs=1e-12)
    micro = evaluation.f1(classifier, x_test, y_test, average="micro")
    assert micro == pytest.approx(_sklearn(y_test, scores, average="micro"), abs=1e-12)
    assert micro == pytest.approx(evaluation.accuracy(classifier, x_test, y_test))
    per_class = evaluation.f1(classifier, x_test, y_test, average=None)
    np.testing.assert_allclose(
        per_class, _sklearn(y_test, scores, average=None, labels=range(10)), atol=1e-12
    )


def test_litert_file_and_callable_match_the_keras_model(digits, classifier):
    import tensorflow as tf

    _, _, x_test, y_test = digits
    flatbuffer = tf.lite.TFLiteConverter.from_keras_model(classifier).convert()
    litert = InterpreterModel(flatbuffer)
    expected = _sklearn(y_test, litert.run(x_test), average="macro")
    assert evaluation.f1(litert, x_test, y_test) == pytest.approx(expected, abs=1e-12)
    assert evaluation.f1(lambda x: classifier.predict_on_batch(x), x_test, y_test) == pytest.approx(
        evaluation.f1(classifier, x_test, y_test)
    )
    fixed = FakeLiteRT(lambda x: classifier.predict_on_batch(x), fixed_batch=7, feature_shape=(64,))
    assert evaluation.f1(fixed, x_test, y_test) == pytest.approx(
        evaluation.f1(classifier, x_test, y_test)
    )


def test_a_class_the_model_never_predicts_drags_macro_down_not_accuracy():
    # 96 of 100 samples are intent 0; the model never says intent 2 (4 samples).
    y = np.array([0] * 96 + [2] * 4)
    scores = np.eye(3)[np.zeros(100, int)]
    assert evaluation.accuracy(lambda x: x, scores, y) == pytest.approx(0.96)
    macro = evaluation.f1(lambda x: x, scores, y)
    assert macro == pytest.approx(
        metrics.f1_score(y, np.zeros(100, int), average="macro", zero_division=0)
    )
    assert macro == pytest.approx(
        0.4897959, abs=1e-6
    )  # class 1 is neither true nor predicted: not averaged
    np.testing.assert_allclose(
        evaluation.f1(lambda x: x, scores, y, average=None), [192 / 196, 0, 0], atol=1e-12
    )


def test_one_hot_labels_equal_integer_labels(digits, classifier):
    _, _, x_test, y_test = digits
    one_hot = np.eye(10)[y_test]
    assert evaluation.f1(classifier, x_test, one_hot) == evaluation.f1(classifier, x_test, y_test)


def test_multi_label_equals_sklearn(digits):
    """Three yes/no tags per digit (even, above 4, prime) from sigmoid outputs."""
    x_train, y_train, x_test, y_test = digits

    def tags(y):
        return np.stack([y % 2 == 0, y > 4, np.isin(y, [2, 3, 5, 7])], axis=-1).astype("float32")

    keras.utils.set_random_seed(0)
    tagger = keras.Sequential([keras.Input((64,)), keras.layers.Dense(3, activation="sigmoid")])
    tagger.compile("adam", "binary_crossentropy")
    tagger.fit(x_train, tags(y_train), epochs=2, batch_size=32, verbose=0)
    truth = tags(y_test).astype(int)
    predicted = (tagger.predict(x_test, verbose=0) > 0.5).astype(int)
    for average in ("micro", "macro", None):
        ours = evaluation.f1(tagger, x_test, truth, average=average, multi_label=True)
        np.testing.assert_allclose(
            ours, metrics.f1_score(truth, predicted, average=average), atol=1e-12
        )
    assert 0.3 < evaluation.f1(tagger, x_test, truth, average="micro", multi_label=True) < 1.0

    # Logits with threshold 0 decide the same as probabilities with 0.5.
    def logits(x):
        p = tagger.predict_on_batch(x)
        return np.log(p) - np.log1p(-p)

    assert evaluation.f1(
        logits, x_test, truth, average="micro", multi_label=True, threshold=0.0
    ) == pytest.approx(evaluation.f1(tagger, x_test, truth, average="micro", multi_label=True))


def test_errors(digits, classifier):
    _, _, x_test, y_test = digits
    with pytest.raises(
        ValueError,
        match=r"`average` must be 'macro', 'micro' or None .*Received: average='weighted'",
    ):
        evaluation.f1(classifier, x_test, y_test, average="weighted")
    with pytest.raises(ValueError, match="same number of samples"):
        evaluation.f1(classifier, x_test, y_test[:10])
    with pytest.raises(ValueError, match=r"labels in \[0, 10\)"):
        evaluation.f1(classifier, x_test, y_test + 1)
    with pytest.raises(
        ValueError,
        match=r"`multi_label=True`, `y` must be a 0/1 matrix shaped like the model's output",
    ):
        evaluation.f1(classifier, x_test, y_test, multi_label=True)
    with pytest.raises(ValueError, match="must hold only 0 and 1"):
        evaluation.f1(classifier, x_test, np.full((len(y_test), 10), 2), multi_label=True)
    with pytest.raises(ValueError, match="one score per class"):
        evaluation.f1(lambda x: x[:, :1], x_test, y_test)
    with pytest.raises(TypeError, match="tfcompress.runtime.load"):
        evaluation.f1("model.tflite", x_test, y_test)
