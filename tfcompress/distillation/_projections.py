"""Learned projections from student widths to teacher widths, per feature pair."""

import keras


class Projections(keras.layers.Layer):
    """Holds one Dense per feature pair whose widths differ.

    Keras locks a model's state once it is built, but projections appear
    when the first batch reveals the widths, when the Distiller is
    re-compiled with new pairs, and on load (build before compile). This
    holder is never built through `build`, so its state stays open.
    `widths` records every pair seen, projected or not, for the build config.
    """

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.layers_by_key = {}
        self.widths = {}
        self.built = True  # no pairs yet

    def build(self, input_shape=None):
        pass

    def add(self, key, student_width, teacher_width):
        self.widths[key] = (int(student_width), int(teacher_width))
        if student_width != teacher_width and key not in self.layers_by_key:
            projection = keras.layers.Dense(
                int(teacher_width), name=f"projection_{len(self.layers_by_key)}"
            )
            projection.build((None, int(student_width)))
            self.layers_by_key[key] = projection

    def rename(self, renames):
        """Moves widths and projections recorded under old pair keys to new ones."""
        for mapping in (self.widths, self.layers_by_key):
            items = list(mapping.items())
            # dict's own methods: the layers stay tracked, in their order.
            dict.clear(mapping)
            dict.update(mapping, {renames.get(key, key): value for key, value in items})

    def use(self, keys):
        """Trains the projections of `keys` only; True if all widths are known."""
        for key, projection in self.layers_by_key.items():
            # A pair dropped by a re-compile keeps its layer (Keras state
            # cannot shrink) but stops training.
            projection.trainable = key in keys
        self.built = all(key in self.widths for key in keys)
        return self.built

    def project(self, key, features):
        projection = self.layers_by_key.get(key)
        return features if projection is None else projection(features)
