"""`GeneratorGraph`: a `tf.Module` whose `decode` and `prefill_{T}` functions run
a decoder over per-layer K/V caches updated in place with dynamic_update_slice."""

import keras
import numpy as np
import tensorflow as tf

# LiteRT-LM's mask value: finite, so a fully masked row cannot turn into NaN.
MASK_VALUE = -0.7 * float(np.finfo(np.float32).max)
# One matmul per shared input: q/k/v read the attention norm's output and
# gate/up the FFN norm's, so each input is quantized (and outlier-split) once.
LINEAR_KINDS = ("qkv", "o", "gate_up", "down")


def cache_names(num_layers):
    """The cache input/output names in signature order: k_0, v_0, k_1, ..."""
    return [f"kv_cache_{kind}_{i}" for i in range(num_layers) for kind in ("k", "v")]


def _tied_table(weights):
    """(table stored once, gain folded into it or None).

    The converter folds the final norm's gain into the LM-head matrix, which
    would store a second copy of a tied embedding. Storing E * gain once, and
    dividing looked-up rows by the gain, keeps one table for both uses.
    """
    gain = weights.final_norm["gamma"]
    if weights.head is not None or np.any(np.abs(gain) < 1e-6):
        return weights.embedding, None
    return weights.embedding * gain[None, :], gain


def _columns(x, widths):
    """`x` [T, sum(widths)] cut into column blocks by slicing: XNNPack runs
    STRIDED_SLICE, while the SPLIT_V that tf.split makes of unequal widths
    would leave its partition."""
    starts = np.cumsum([0] + list(widths))
    return [x[:, int(a) : int(b)] for a, b in zip(starts[:-1], starts[1:])]


class GeneratorGraph(tf.Module):
    """The decoder of `weights` (a `DecoderWeights`) as TensorFlow functions.

    Args:
        weights: the `DecoderWeights` to run.
        cache_length: S, the static number of cache slots per layer.
        int8_embedding: look tokens up in an int8 copy of the table (for the
            int8 targets, whose LM head the converter quantizes).
    """

    def __init__(self, weights, cache_length, int8_embedding=False):
        super().__init__(name="generator")
        self._record = None
        self._split = {}
        self.w = weights
        self.cache_length = cache_length
        table, folded_gain = _tied_table(weights)
        self._folded_gain = folded_gain
        self.table = tf.Variable(table, trainable=False, name="embedding")
        self._int8_embedding = int8_embedding
        if int8_embedding:
            # Looked up from int8 rows and a per-row scale, the converter's own
            # per-channel quantization of the LM head (see weight_rewrites),
            # so both uses can read one int8 table.
            scale = np.maximum(np.abs(table).max(axis=1, keepdims=True), 1e-12) / 127.0
            self.table_int8 = tf.Variable(
                np.clip(np.round(table / scale), -127, 127).astype(np.int8),
                trainable=False,
                name="embedding_int8",
            )
            self.table_scale = tf.Variable(
                scale.astype(np.float32), trainable=False, name="embedding_scale"
            )
        self.head = (
            None
            if weights.head is None
            else tf.Variable(weights.head.T, trainable=False, name="head")
        )
        self.layer_vars = [
            self._layer_variables(i, layer) for i, layer in enumerate(weights.layers)
        ]
        self.final_norm = self._norm_variables("final_norm", weights.final_norm)
        if folded_gain is not None:
            self.inverse_gain = tf.Variable(1.0 / folded_gain, trainable=False, name="inverse_gain")
            beta = weights.final_norm["beta"]
            self.shift = (
                None
                if beta is None
                else tf.Variable(beta / folded_gain, trainable=False, name="shift")
            )
        if weights.positions is not None:
            self.positions = tf.Variable(
                weights.positions[:cache_length], trainable=False, name="positions"
            )
        else:
            self.rope_cos = tf.Variable(
                weights.rope_cos[:cache_length], trainable=False, name="rope_cos"
            )
            self.rope_sin = tf.Variable(
                weights.rope_sin[:cache_length], trainable=False, name="rope_sin"
            )

    def lookup_tables(self):
        """The float tables the graph gathers rows from (besides the embedding)."""
        names = ("table_scale", "positions", "rope_cos", "rope_sin")
        return [getattr(self, n).numpy() for n in names if hasattr(self, n)]

    def _variable(self, name, value):
        return None if value is None else tf.Variable(value, trainable=False, name=name)

    def _norm_variables(self, name, norm):
        return {
            "gamma": self._variable(name + "_gamma", norm["gamma"]),
            "beta": self._variable(name + "_beta", norm["beta"]),
            "epsilon": norm["epsilon"],
            "rms": norm["rms"],
        }

    def _layer_variables(self, i, layer):
        out = {}
        for key in ("attention_norm", "ffn_norm"):
            out[key] = self._norm_variables(f"layer_{i}_{key}", layer[key])
        for key in ("activation", "num_query_heads", "num_kv_heads", "head_dim"):
            out[key] = layer[key]
        # The softmax scale folded into the query columns: a multiply on the
        # [heads, S] scores per layer saved (exact for power-of-two head dims).
        scale = 1.0 / float(np.sqrt(layer["head_dim"]))
        parts = [("q", scale), ("k", 1.0), ("v", 1.0)]
        fused = {"qkv": parts, "o": [("o", 1.0)], "down": [("down", 1.0)]}
        fused["gate_up"] = [("up", 1.0)] if layer["gate"] is None else [("gate", 1.0), ("up", 1.0)]
        for kind, members in fused.items():
            kernel = np.concatenate([layer[m] * f for m, f in members], axis=1)
            biases = [layer[m + "_bias"] for m, _ in members]
            bias = None
            if any(b is not None for b in biases):
                bias = np.concatenate(
                    [
                        np.zeros(layer[m].shape[1], np.float32) if b is None else b * f
                        for (m, f), b in zip(members, biases)
                    ]
                )
            out[kind] = self._variable(f"layer_{i}_{kind}", kernel.astype(np.float32))
            out[kind + "_bias"] = self._variable(f"layer_{i}_{kind}_bias", bias)
            out[kind + "_widths"] = [layer[m].shape[1] for m, _ in members]
        return out

    @staticmethod
    def _normalize(x, norm, gain=True):
        epsilon = norm["epsilon"]
        if norm["rms"]:
            y = x * tf.math.rsqrt(tf.reduce_mean(tf.square(x), -1, keepdims=True) + epsilon)
        else:
            mean = tf.reduce_mean(x, -1, keepdims=True)
            centered = x - mean
            variance = tf.reduce_mean(tf.square(centered), -1, keepdims=True)
            y = centered * tf.math.rsqrt(variance + epsilon)
        if not gain:
            return y
        y = y * norm["gamma"]
        return y if norm["beta"] is None else y + norm["beta"]

    def _linear(self, x, kernel, bias, key, transpose=False):
        if self._record is not None:
            self._record(key, x.numpy())
        split = self._split.get(key)
        if split is None:
            y = tf.matmul(x, kernel, transpose_b=transpose)
        else:
            # Outlier input channels through a small float matmul; the rest,
            # zeroed there, through the hybrid int8 one, whose per-row
            # activation scale they would otherwise set. The channels are
            # picked and put back by one-hot matmuls (one nonzero term each),
            # so that x - back(picked) is (near) zero there, and every op
            # stays in XNNPack (a GATHER and a SELECT_V2 would not). Not a
            # multiply by a 0/1 mask: the converter folds a constant multiply
            # into the kernel, which leaves the activation unmasked (and would
            # zero columns of the tied table).
            picked = tf.matmul(x, split["select"])
            inliers = x - tf.matmul(picked, split["select"], transpose_b=True)
            y = tf.matmul(inliers, kernel, transpose_b=transpose) + tf.matmul(picked, split["rows"])
        return y if bias is None else y + bias

    def split_outlier_channels(self, channels):
        """Routes input `channels[key]` of each linear `key` through a float matmul.

        The main kernel keeps those rows as zeros, so they set neither its
        per-channel weight scales nor its activation scale. The tied LM head
        keeps its rows (the lookup reads the same table) and zeroes the
        channels in its input only.

        Args:
            channels: {linear key: input channel indices}, keys as `kernels()`
                names them.
        """
        kernels = self.kernels()
        for key, indices in channels.items():
            kernel = kernels[key].numpy()
            tied_head = key == "head" and self.head is None
            if tied_head:
                kernel = kernel.T
            indices = np.asarray(sorted(int(i) for i in indices), np.int32)
            inliers = np.ones(kernel.shape[0], bool)
            inliers[indices] = False
            select = np.zeros((kernel.shape[0], len(indices)), np.float32)
            select[indices, np.arange(len(indices))] = 1.0
            self._split[key] = {
                "select": tf.Variable(select, trainable=False, name=f"{key}_select"),
                "rows": tf.Variable(kernel[indices], trainable=False, name=f"{key}_outlier_rows"),
            }
            if not tied_head:
                kernels[key].assign(np.where(inliers[:, None], kernel, 0.0).astype(np.float32))

    def kernels(self):
        """{linear key: kernel variable}: "layer_{i}_{qkv,o,gate_up,down}" and "head"."""
        out = {
            f"layer_{i}_{kind}": layer[kind]
            for i, layer in enumerate(self.layer_vars)
            for kind in LINEAR_KINDS
            if layer[kind] is not None
        }
        out["head"] = self.table if self.head is None else self.head
        return out

    def split_kernels(self):
        """The float [in, out] matmul weights of the split linears' side paths.

        Each one-hot selection is listed both ways: it is read as [in, k] to
        pick the channels and as its transpose to put them back.
        """
        kernels = []
        for split in self._split.values():
            select = split["select"].numpy()
            kernels += [split["rows"].numpy(), select, select.T]
        return kernels

    def record_linear_inputs(self, token_ids):
        """{linear key: [T, in] float input} of running `token_ids` from position 0."""
        tokens = tf.constant(np.asarray(token_ids, np.int32).reshape(1, -1))
        caches = {name: tf.zeros(shape) for name, shape in self.cache_shapes().items()}
        recorded = {}
        # A function, not a dict: tf.Module would track a dict attribute.
        self._record = lambda key, values: recorded.setdefault(key, []).append(values)
        try:
            self.step(tokens, tf.range(tokens.shape[1], dtype=tf.int32), caches, logits=True)
        finally:
            self._record = None
        return {key: np.concatenate(values) for key, values in recorded.items()}

    def _rotate(self, x, cos, sin):
        x1, x2 = tf.split(x, 2, axis=-1)
        return x * cos + tf.concat([-x2, x1], axis=-1) * sin

    def _attention(self, x, layer, positions, bias, k_cache, v_cache, index):
        steps = x.shape[0]
        query_heads, kv_heads, head_dim = (
            layer["num_query_heads"],
            layer["num_kv_heads"],
            layer["head_dim"],
        )
        groups = query_heads // kv_heads
        qkv = self._linear(x, layer["qkv"], layer["qkv_bias"], f"layer_{index}_qkv")
        # Queries and keys are adjacent columns: one reshape, one rotation.
        qk, v = _columns(qkv, [(query_heads + kv_heads) * head_dim, kv_heads * head_dim])
        qk = tf.reshape(qk, [steps, query_heads + kv_heads, head_dim])
        v = tf.reshape(v, [steps, kv_heads, head_dim])
        if self.w.positions is None:
            cos = tf.expand_dims(tf.gather(self.rope_cos, positions), 1)
            sin = tf.expand_dims(tf.gather(self.rope_sin, positions), 1)
            qk = self._rotate(qk, cos, sin)
        q, k = qk[:, :query_heads], qk[:, query_heads:]
        start = [0, positions[0], 0, 0]
        k_cache = keras.ops.slice_update(k_cache, start, tf.expand_dims(k, 0))
        v_cache = keras.ops.slice_update(v_cache, start, tf.expand_dims(v, 0))
        slots = self.cache_length
        # Query head h reads key/value head h // groups, as keras-hub's repeat does.
        q = tf.reshape(q, [steps, kv_heads, groups, head_dim])
        q = tf.reshape(tf.transpose(q, [1, 0, 2, 3]), [kv_heads, steps * groups, head_dim])
        keys = tf.transpose(tf.reshape(k_cache, [slots, kv_heads, head_dim]), [1, 0, 2])
        values = tf.transpose(tf.reshape(v_cache, [slots, kv_heads, head_dim]), [1, 0, 2])
        scores = tf.reshape(tf.matmul(q, keys, transpose_b=True), [kv_heads, steps, groups, slots])
        scores = scores + bias
        probs = tf.reshape(tf.nn.softmax(scores, axis=-1), [kv_heads, steps * groups, slots])
        out = tf.reshape(tf.matmul(probs, values), [kv_heads, steps, groups, head_dim])
        out = tf.reshape(tf.transpose(out, [1, 0, 2, 3]), [steps, query_heads * head_dim])
        return (
            self._linear(out, layer["o"], layer["o_bias"], f"layer_{index}_o"),
            k_cache,
            v_cache,
        )

    def _mlp(self, x, layer, index):
        both = self._linear(x, layer["gate_up"], layer["gate_up_bias"], f"layer_{index}_gate_up")
        if len(layer["gate_up_widths"]) == 1:
            hidden = layer["activation"](both)
        else:
            gate, up = _columns(both, layer["gate_up_widths"])
            hidden = layer["activation"](gate) * up
        return self._linear(hidden, layer["down"], layer["down_bias"], f"layer_{index}_down")

    def _embed(self, tokens, positions):
        ids = tf.reshape(tokens, [-1])
        if self._int8_embedding:
            x = tf.cast(tf.gather(self.table_int8, ids), tf.float32) * tf.gather(
                self.table_scale, ids
            )
        else:
            x = tf.gather(self.table, ids)
        if self._folded_gain is not None:
            x = x * self.inverse_gain
        if self.w.positions is not None:
            x = x + tf.gather(self.positions, positions)
        return x

    def _logits(self, x):
        if self._folded_gain is None:
            x = self._normalize(x, self.final_norm)
        else:
            x = self._normalize(x, self.final_norm, gain=False)
            if self.shift is not None:
                x = x + self.shift
        if self.head is not None:
            return self._linear(x, self.head, None, "head")
        return self._linear(x, self.table, None, "head", transpose=True)

    def step(self, tokens, positions, caches, logits):
        """Runs `tokens` [1, T] at `positions` [T]; returns the output dict."""
        x = self._embed(tokens, positions)
        names = cache_names(self.w.num_layers)
        # A query at position p reads slots <= p only: padded prefill slots
        # beyond the prompt are never read before decode overwrites them. An
        # additive mask [1, T, 1, S], built once for every layer: an ADD stays
        # in XNNPack where a per-layer SELECT_V2 would not.
        visible = tf.expand_dims(tf.range(self.cache_length, dtype=tf.int32), 0) <= tf.expand_dims(
            positions, 1
        )
        bias = tf.reshape(
            tf.where(visible, 0.0, MASK_VALUE), [1, tokens.shape[1], 1, self.cache_length]
        )
        outputs = {}
        for i, layer in enumerate(self.layer_vars):
            k_name, v_name = names[2 * i], names[2 * i + 1]
            attended, k_cache, v_cache = self._attention(
                self._normalize(x, layer["attention_norm"]),
                layer,
                positions,
                bias,
                caches[k_name],
                caches[v_name],
                i,
            )
            outputs[k_name], outputs[v_name] = k_cache, v_cache
            x = x + attended
            x = x + self._mlp(self._normalize(x, layer["ffn_norm"]), layer, i)
        if logits:
            # Calibration records the LM head's input at every position, like
            # every other linear's; the exported steps need the last one only.
            head_input = x if self._record is not None else x[-1:]
            outputs["logits"] = tf.reshape(
                self._logits(head_input)[-1:], [1, 1, self.w.vocabulary_size]
            )
        return outputs

    def cache_shapes(self):
        """{cache name: [1, S, kv_heads, head_dim]} in signature order, per layer."""
        layers = [layer for layer in self.w.layers for _ in ("k", "v")]
        return {
            name: [1, self.cache_length, layer["num_kv_heads"], layer["head_dim"]]
            for name, layer in zip(cache_names(self.w.num_layers), layers)
        }

    def signature(self, length, logits):
        """A concrete function for `length` tokens: decode (1, logits) or prefill."""
        shapes = self.cache_shapes()
        specs = [
            tf.TensorSpec([1, length], tf.int32, name="tokens"),
            tf.TensorSpec([length], tf.int32, name="input_pos"),
        ] + [tf.TensorSpec(shape, tf.float32, name=name) for name, shape in shapes.items()]
        names = list(shapes)

        def run(tokens, input_pos, *caches):
            return self.step(tokens, input_pos, dict(zip(names, caches)), logits)

        return tf.function(run, input_signature=specs, autograph=False).get_concrete_function()
