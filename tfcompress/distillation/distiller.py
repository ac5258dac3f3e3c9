"""`Distiller`: train a student to match a frozen teacher in an ordinary `fit`."""

import copy
import threading

import keras
from keras import ops, tree

from tfcompress.core import _keras_internals as internals
from tfcompress.core.layer_tree import find_layer, layers_of
from tfcompress.distillation import _teacher_cache
from tfcompress.distillation._checks import (
    check_compile_args,
    check_models,
    check_something_trains,
    mask_from,
)
from tfcompress.distillation._feature_pairs import pair_locations, relocate, resolve_pairs
from tfcompress.distillation._masking import masked_mean
from tfcompress.distillation._output_loss import (
    output_loss,
    per_position,
    resolve_distillation_loss,
    single_output,
)
from tfcompress.distillation._projections import Projections
from tfcompress.distillation.capture_outputs import capture_outputs
from tfcompress.distillation.feature_loss import feature_loss
from tfcompress.distillation.kd_loss import check_same_classes, check_temperature


def _without_compile(config):
    # The frozen teacher's own optimizer would be rebuilt with no trainable
    # variables on load, and Keras warns that the saved slots do not fit.
    config.pop("compile_config", None)
    return config


def _freeze(model):
    # `model.trainable = False` is skipped on the TensorFlow backend when
    # `model.trainable` is already False (its `__setattr__` short-circuits
    # an unchanged value), and a subclassed model rebuilt from a config with
    # `trainable: False`, like the teacher of a loaded Distiller, has False
    # there but trainable sublayers and variables: the property's own setter
    # reaches them.
    for layer in layers_of(model):
        keras.layers.Layer.trainable.fset(layer, False)


@keras.saving.register_keras_serializable(package="tfcompress")
class Distiller(keras.Model):
    """Trains `student` to match a frozen `teacher` with `fit`.

    The loss for a batch is

        alpha · hard + (1 − alpha) · T² · KL(softmax(t/T) ‖ softmax(s/T))
        + Σ weight_i · feature_loss_i

    where `hard = student_loss_fn(y, student(x))`. alpha splits the output
    loss between the labels and the teacher, as in the keras-io example; it
    does not weigh the feature losses, which have their own weights. With
    one of the two output terms missing alpha does not apply: without a hard
    loss (no `student_loss_fn`, or batches without `y`: pure distillation,
    the usual case for language models) the loss is the KL term plus the
    feature losses, and with `distill_outputs=False` it is the hard loss
    (at weight 1) plus the feature losses. Every term is averaged over real positions:
    the mask is `sample_weight` (the third element a keras-hub preprocessor
    yields), else `x["padding_mask"]`.

    The teacher is frozen (`teacher.trainable = False`), runs with
    `training=False` (no dropout, no BatchNorm updates) and gets no
    gradients. The student runs once per step, feature losses included: the
    activations are recorded while it computes its outputs. `predict` and
    `__call__` return the student's outputs. After training use
    `distiller.student`: it saves alone as an ordinary model, without the
    teacher or the projections. For a fixed dataset, `cache_teacher` runs
    the teacher once and later epochs skip it.

    Args:
        student: the Keras 3 model to train.
        teacher: the trained Keras 3 model to learn from; not the same object.
        **kwargs: `keras.Model` arguments such as `name`.

    Raises:
        TypeError: when either model is not a Keras 3 `keras.Model`.
        ValueError: when the teacher is the student, shares weights with
            it, or is not built.

    Example:

    ```python
    distiller = tfcompress.distillation.Distiller(student=student, teacher=teacher)
    distiller.compile(
        optimizer=keras.optimizers.Adam(),
        metrics=[keras.metrics.SparseCategoricalAccuracy()],
        student_loss_fn=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        alpha=0.1,
        temperature=3.0,
    )
    distiller.fit(x_train, y_train, epochs=3)
    distiller.student.save("student.keras")
    ```
    """

    def __init__(self, student, teacher, **kwargs):
        check_models(student, teacher)
        super().__init__(**kwargs)
        _freeze(teacher)
        self.student = student
        self.teacher = teacher
        self._projections = Projections(name="projections")
        self.student_loss_tracker = keras.metrics.Mean(name="student_loss")
        self.distillation_loss_tracker = keras.metrics.Mean(name="distillation_loss")
        self._pairs = []
        # Plain attributes, out of Keras tracking: recompiling swaps them
        # after the model is built (`metrics` lists the trackers), and the
        # pair layers already belong to the two models.
        object.__setattr__(self, "_feature_trackers", [])
        object.__setattr__(self, "_pair_layers", ([], []))
        object.__setattr__(self, "_last_forward", threading.local())

    def compile(
        self,
        optimizer="adam",
        metrics=None,
        student_loss_fn=None,
        distillation_loss_fn=None,
        alpha=0.1,
        temperature=3.0,
        feature_losses=None,
        reverse_kl=False,
        distill_outputs=True,
        **kwargs,
    ):
        """Configures the losses; the names follow the keras-io distillation example.

        Args:
            optimizer: optimizer for the student (and projections).
            metrics: metrics of the student's outputs against `y`.
            student_loss_fn: hard loss `fn(y, student_outputs)`, e.g.
                `SparseCategoricalCrossentropy(from_logits=True)`; None for
                pure distillation.
            distillation_loss_fn: None, "kl_divergence" or a
                `keras.losses.KLDivergence()` for the T²-scaled KL on logits
                (computed stably, from logits); "mse" or "cosine" to compare
                raw outputs (embedding models); any other callable is called
                as in the keras-io example, on
                `(softmax(t/T), softmax(s/T))`, and scaled by T².
            alpha: weight of the hard loss in [0, 1]; the KL term gets
                1 − alpha. Ignored unless both terms are present (no hard
                loss, or `distill_outputs=False`: the other term has
                weight 1).
            temperature: softening temperature T > 0.
            feature_losses: list of `(teacher_layer, student_layer)` or
                `(teacher_layer, student_layer, loss, weight)`; layers as
                `tfcompress.core.walk_layers` paths or their unique ends
                (e.g. "transformer_layer_1", which also finds
                "gpt2_backbone_1/transformer_layer_1"), attribute paths of
                subclassed models ("blocks.1" for `self.blocks[1]`) or
                layer objects;
                weight default 1. loss: "mse" (default) or "cosine", where a
                learned Dense projection maps the student's width to the
                teacher's when they differ; "relation" (`relation_loss`, any
                widths); "attention_relation" on two attention layers (or
                blocks holding one, e.g. "transformer_layer_5"): MiniLMv2's
                query-query, key-key and value-value relation KLs, three
                pairs (and metrics) of that weight; or a callable
                `fn(teacher_features, student_features, mask) -> scalar`
                (see `feature_loss`), given the raw activations, e.g.
                `functools.partial(relation_loss, num_heads=16)`; saving the
                Distiller (checkpoints) needs a function registered with
                `keras.saving.register_keras_serializable`, not a partial.
            reverse_kl: use KL(student ‖ teacher) instead (mode-seeking).
            distill_outputs: False drops the output term (hidden-state
                distillation only, e.g. a backbone returning a dict).
            **kwargs: other `keras.Model.compile` arguments
                (`jit_compile`, `steps_per_execution`, ...), not `loss`.

        Raises:
            ValueError: for alpha outside [0, 1], a bad temperature, an
                unknown layer path, a `loss` argument, output loss with
                different class / vocabulary sizes, or no loss at all.
        """
        alpha = check_compile_args(kwargs, alpha)
        temperature = check_temperature(temperature)
        mode = resolve_distillation_loss(distillation_loss_fn)
        if student_loss_fn is not None and not callable(student_loss_fn):
            student_loss_fn = keras.losses.get(student_loss_fn)
        pairs = resolve_pairs(feature_losses, self.teacher, self.student)
        check_something_trains(distill_outputs, pairs, student_loss_fn)
        if distill_outputs:
            self._check_outputs(mode)
        super().compile(optimizer=optimizer, loss=None, metrics=metrics, **kwargs)
        self._distill_config = {
            "student_loss_fn": student_loss_fn,
            "distillation_loss_fn": distillation_loss_fn,
            "alpha": alpha,
            "temperature": temperature,
            "feature_losses": [pair.to_config() for pair in pairs],
            "feature_layer_locations": pair_locations(pairs, self.teacher, self.student),
            "reverse_kl": bool(reverse_kl),
            "distill_outputs": bool(distill_outputs),
        }
        self._student_loss_fn = student_loss_fn
        self._output_mode = mode if distill_outputs else None
        self._alpha, self._temperature, self._reverse_kl = alpha, temperature, bool(reverse_kl)
        self._set_pairs(pairs)

    def _check_outputs(self, mode):
        outputs = []
        for role, model in (("teacher", self.teacher), ("student", self.student)):
            if internals.outputs_struct(model) is None:
                return
            outputs.append(single_output(model.outputs, role))
        if not callable(mode):
            check_same_classes(outputs[0].shape, outputs[1].shape)

    def _set_pairs(self, pairs):
        self._pairs = pairs
        self._projections.use({pair.key for pair in pairs})
        trackers = [
            keras.metrics.Mean(name="feature_loss" if len(pairs) == 1 else f"feature_loss_{i}")
            for i in range(len(pairs))
        ]
        object.__setattr__(self, "_feature_trackers", trackers)
        # Resolved once: walking a keras-hub model per step costs in eager mode.
        teacher_layers = [find_layer(self.teacher, pair.teacher_path).layer for pair in pairs]
        student_layers = [find_layer(self.student, pair.student_path).layer for pair in pairs]
        object.__setattr__(self, "_pair_layers", (teacher_layers, student_layers))

    @property
    def metrics(self):
        return super().metrics + list(self._feature_trackers)

    def _student_forward(self, inputs, training):
        layers = self._pair_layers[1]
        if not layers:
            return self.student(inputs, training=training), []
        with capture_outputs(layers) as captured:
            outputs = self.student(inputs, training=training)
        return outputs, [captured[layer] for layer in layers]

    def _teacher_forward(self, inputs):
        layers = self._pair_layers[0]
        with capture_outputs(layers) as captured:
            outputs = self.teacher(inputs, training=False)
        features = [captured[layer] for layer in layers]
        return tree.map_structure(ops.stop_gradient, outputs), [
            ops.stop_gradient(f) for f in features
        ]

    def call(self, inputs, training=None):
        cached_features = None
        if _teacher_cache.is_cached(inputs):
            inputs, _, _, cached_features = _teacher_cache.split(inputs)
        outputs, features = self._student_forward(inputs, training)
        if not self._projections.built:
            self._add_projections(inputs, features, cached_features)
        # compute_loss reads the activations of this very forward pass, so the
        # student runs once per step.
        self._last_forward.value = (tree.flatten(outputs)[0], features)
        return outputs

    def _add_projections(self, inputs, student_features, cached_features=None):
        if cached_features and all(p.teacher_path in cached_features for p in self._pairs):
            teacher_features = [cached_features[pair.teacher_path] for pair in self._pairs]
        else:
            _, teacher_features = self._teacher_forward(inputs)
        for pair, teacher, student in zip(self._pairs, teacher_features, student_features):
            # Relation and custom losses take the widths as they are: their
            # record says so (equal widths build no projection on load).
            target = teacher.shape[-1] if pair.projects else student.shape[-1]
            self._projections.add(pair.key, student.shape[-1], target)
        self._projections.built = True

    def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
        cached = _teacher_cache.is_cached(x)
        if cached:
            parts = _teacher_cache.split(x)
            _teacher_cache.check_use(
                self._pairs, self._output_mode, self._distill_config["distillation_loss_fn"], parts
            )
            x, teacher_outputs, teacher_indices, features = parts
            teacher_features = [features[pair.teacher_path] for pair in self._pairs]
        mask = mask_from(x, sample_weight)
        last = getattr(self._last_forward, "value", None)
        if y_pred is None or last is None or last[0] is not tree.flatten(y_pred)[0]:
            y_pred, student_features = self._student_forward(x, training)
        else:
            student_features = last[1]
        self._last_forward.value = None
        if not cached:
            teacher_outputs, teacher_features = self._teacher_forward(x)
            teacher_indices = None

        total = ops.sum(self.student.losses) if self.student.losses else 0.0
        total = total + self._output_terms(teacher_outputs, teacher_indices, y, y_pred, mask)
        for pair, tracker, teacher, student in zip(
            self._pairs, self._feature_trackers, teacher_features, student_features
        ):
            student = self._projections.project(pair.key, student)
            value = feature_loss(teacher, student, pair.loss, mask)
            tracker.update_state(value)
            total = total + pair.weight * value
        # Replica losses are summed by tf.distribute, as Keras's own losses
        # expect: scale like them so gradients don't grow with the replicas.
        replicas = getattr(getattr(self, "distribute_strategy", None), "num_replicas_in_sync", 1)
        return total / replicas if replicas > 1 else total

    def _output_terms(self, teacher_outputs, teacher_indices, y, y_pred, mask):
        """alpha · hard + (1 − alpha) · soft; either term alone at weight 1."""
        soft = None
        if self._output_mode is not None:
            soft = output_loss(
                self._output_mode,
                single_output(teacher_outputs, "teacher"),
                single_output(y_pred, "student"),
                mask,
                self._temperature,
                self._reverse_kl,
                teacher_indices,
            )
            self.distillation_loss_tracker.update_state(soft)
        hard = None
        if self._student_loss_fn is not None and y is not None:
            hard = masked_mean(per_position(self._student_loss_fn, y, y_pred), mask)
            self.student_loss_tracker.update_state(hard)
        # alpha splits the output's weight between the labels and the
        # teacher, as in the keras-io example; with one of them missing the
        # other is the whole output loss, not a fraction of it.
        if soft is None:
            return 0.0 if hard is None else hard
        if hard is None:
            return soft
        return self._alpha * hard + (1.0 - self._alpha) * soft

    def cache_teacher(self, dataset, top_k=None):
        """Runs the teacher once over a fixed dataset, for cheaper epochs.

        Fitting on the result skips the teacher's forward pass: a step then
        costs about as much as training the student alone. Call it after
        `compile`: the teacher's outputs and the hidden states of the
        compiled `feature_losses` are cached (outputs are left out with
        `distill_outputs=False`), so each epoch's loss equals the live one.
        The batches stay as they are (fit with `shuffle=True` reorders
        them); everything is held in memory, hidden states included. Keras
        fixes a `PyDataset`'s shapes from its first batches: when batch
        lengths vary, feed `fit` a generator over the batches with open
        dimensions instead.

        Args:
            dataset: batches of x, (x, y) or (x, y, sample_weight): a
                `tf.data.Dataset`, a `keras.utils.PyDataset` or a list.
            top_k: None keeps the full logits; an int keeps the k largest
                per position and their indices (for large vocabularies),
                and the KL then uses the teacher renormalized over those k.

        Returns:
            A `keras.utils.PyDataset` of the same batches, held in memory,
            to pass to `fit` / `evaluate` in place of `dataset`.

        Raises:
            ValueError: for a bad `top_k`, or a teacher with several outputs
                (unless outputs are not distilled).

        Example:

        ```python
        cached = distiller.cache_teacher(train_ds, top_k=32)
        distiller.fit(cached, epochs=10)
        ```
        """
        pairs = self._pairs
        layers = dict(zip((pair.teacher_path for pair in pairs), self._pair_layers[0]))
        return _teacher_cache.cache_teacher_outputs(
            self.teacher,
            dataset,
            top_k,
            feature_layers=layers,
            outputs=getattr(self, "_output_mode", "kl") is not None,
        )

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "student": keras.saving.serialize_keras_object(self.student),
            "teacher": _without_compile(keras.saving.serialize_keras_object(self.teacher)),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        # Keras's deserializers consume the nested dicts they are given.
        config = copy.deepcopy(config)
        student = keras.saving.deserialize_keras_object(
            config.pop("student"), custom_objects=custom_objects
        )
        teacher = keras.saving.deserialize_keras_object(
            config.pop("teacher"), custom_objects=custom_objects
        )
        return cls(student=student, teacher=teacher, **config)

    def get_build_config(self):
        if not self.built:
            return None
        return {"widths": [[key, *widths] for key, widths in self._projections.widths.items()]}

    def build_from_config(self, config):
        # Projections are rebuilt from their recorded widths: running the
        # models on placeholders would need input dtypes Keras doesn't save.
        for key, student_width, teacher_width in config.get("widths", []):
            self._projections.add(key, student_width, teacher_width)
        self.built = True

    def get_compile_config(self):
        if not self.compiled:
            return {}
        config = dict(self._compile_config.config)
        config.pop("loss", None)
        config.pop("loss_weights", None)
        config.update(self._distill_config)
        return keras.saving.serialize_keras_object(config)

    def compile_from_config(self, config):
        config = keras.saving.deserialize_keras_object(config)
        # Feature pairs are found again by position, not by generated name.
        config["feature_losses"], renames = relocate(
            config.get("feature_losses") or [],
            config.pop("feature_layer_locations", None),
            self.teacher,
            self.student,
        )
        self._projections.rename(renames)
        self.compile(**config)
        if self.built:
            self.optimizer.build(self.trainable_variables)
