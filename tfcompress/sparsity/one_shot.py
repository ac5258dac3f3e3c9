"""`prune_one_shot`: prune a trained model without retraining (Wanda, SparseGPT)."""

import logging
import numbers

import keras
from keras import ops

from tfcompress.core.batches import FORMS, iterate_batches
from tfcompress.core.checks import ensure_built, ensure_keras3_model
from tfcompress.core.copy_model import copy_model
from tfcompress.sparsity import _calibration
from tfcompress.sparsity._kernel_view import kernel_variable
from tfcompress.sparsity._sparsegpt import sparsegpt_prune
from tfcompress.sparsity._wanda import score_mask, wanda_scores
from tfcompress.sparsity.masks import m_by_n_mask, magnitude_mask

_LOG = logging.getLogger("tfcompress")
METHODS = ("magnitude", "wanda", "sparsegpt")


def _check_sparsity(sparsity, sparsity_m_by_n):
    if isinstance(sparsity, bool) or not isinstance(sparsity, numbers.Real):
        raise TypeError(f"`sparsity` must be a float in [0, 1). Received: sparsity={sparsity!r}.")
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(
            f"`sparsity` must be in [0, 1). Received: sparsity={sparsity}. Pass the "
            "fraction of each layer's weights to zero, e.g. 0.5."
        )
    if sparsity_m_by_n is None:
        return float(sparsity), None
    m_by_n = sparsity_m_by_n
    if (
        not isinstance(m_by_n, (tuple, list))
        or len(m_by_n) != 2
        or not all(isinstance(v, numbers.Integral) and not isinstance(v, bool) for v in m_by_n)
        or not 0 < m_by_n[0] < m_by_n[1]
    ):
        raise ValueError(
            "`sparsity_m_by_n` must be (m, n) with 0 < m < n: m zeros in every n "
            f"consecutive inputs, e.g. (2, 4). Received: sparsity_m_by_n={sparsity_m_by_n!r}."
        )
    m, n = int(m_by_n[0]), int(m_by_n[1])
    if sparsity not in (0.5, m / n):
        raise ValueError(
            f"`sparsity_m_by_n=({m}, {n})` prunes {m / n:g} of the weights, but "
            f"sparsity={sparsity} was passed too. Pass one of them (or "
            f"sparsity={m / n:g})."
        )
    return m / n, (m, n)


def _check_method(method):
    if method not in METHODS:
        raise ValueError(f"`method` must be one of {METHODS}. Received: method={method!r}.")


def _read_batches(representative_data, method):
    if representative_data is None:
        if method == "magnitude":
            return []
        raise ValueError(
            f"method={method!r} needs `representative_data`: a few hundred "
            f"sequences (or samples) of typical model inputs, as {FORMS}. "
            "method='magnitude' needs none."
        )
    batches = list(iterate_batches(representative_data))
    if not batches or (isinstance(representative_data, (list, tuple)) and not representative_data):
        raise ValueError(
            "`representative_data` yielded no batches. Pass at least one batch of model inputs."
        )
    return batches


def _check_m_by_n_fits(views, m_by_n):
    if m_by_n is None:
        return
    for view in views:
        if view.num_inputs % m_by_n[1]:
            raise ValueError(
                f"`sparsity_m_by_n={m_by_n}` groups {m_by_n[1]} consecutive inputs, "
                f"but layer {view.layer.path!r} has {view.num_inputs} inputs, which "
                f"{m_by_n[1]} does not divide. Use an n that divides every layer's "
                "input size, or unstructured `sparsity`."
            )


def _static_units(model):
    """Units without calibration data: the blocks, or the whole model."""
    roots = _calibration.transformer_blocks(model) or [model]
    units = [(root, list(_calibration.prunable_views(root).values()), True) for root in roots]
    return [unit for unit in units if unit[1]]


def _pruned_matrix(view, method, sparsity, m_by_n, stats, damping, block_size):
    matrix = view.to_matrix(kernel_variable(view.layer))
    if method == "magnitude":
        if m_by_n is not None:
            return matrix * m_by_n_mask(matrix, m_by_n[0], m_by_n[1], axis=0)
        return matrix * magnitude_mask(matrix, sparsity)
    statistic = stats[id(view.layer)]
    if method == "wanda":
        scores = wanda_scores(matrix, ops.sqrt(statistic))
        return matrix * score_mask(scores, sparsity, m_by_n)
    return sparsegpt_prune(matrix, statistic, sparsity, m_by_n, block_size, damping)


def _prune_unit(unit, views, stats, settings):
    for view in views:
        if settings["method"] != "magnitude" and id(view.layer) not in stats:
            _LOG.warning(
                "prune_one_shot: layer %r never ran on `representative_data`; it is left dense.",
                view.layer.path,
            )
            continue
        matrix = _pruned_matrix(
            view,
            settings["method"],
            settings["sparsity"],
            settings["m_by_n"],
            stats,
            settings["damping"],
            settings["block_size"],
        )
        variable = kernel_variable(view.layer)
        variable.assign(ops.cast(view.from_matrix(matrix), variable.dtype))


def _calibrate_and_prune(model, batches, units, settings, progress):
    full_gram = settings["method"] == "sparsegpt"
    carried = None
    blocks = _calibration.transformer_blocks(model)
    if blocks and [unit for unit, _, _ in units] == blocks:
        carried = _calibration.carried_inputs(model, batches, blocks)
    for index, (unit, views, once) in enumerate(units):
        if carried is not None:
            stats = _calibration.block_statistics(unit, carried, views, full_gram)
        else:
            stats = _calibration.statistics(model, batches, unit, views, once, full_gram)
        _prune_unit(unit, views, stats, settings)
        if carried is not None and index + 1 < len(units):
            carried = _calibration.block_outputs(unit, carried)
        if progress is not None:
            progress.update(index + 1)


def prune_one_shot(
    model,
    sparsity=0.5,
    method="wanda",
    representative_data=None,
    sparsity_m_by_n=None,
    inplace=False,
    damping=0.01,
    block_size=128,
    verbose=True,
):
    """Prunes a trained model in one pass over calibration data, no training.

    Every Dense and EinsumDense kernel (inside the transformer blocks for a
    keras-hub model; everywhere otherwise) loses `sparsity` of its weights:
    `round(sparsity * inputs)` of each output's weights, or `m` of every `n`
    consecutive inputs with `sparsity_m_by_n`. The input axes of an
    EinsumDense kernel are read from its equation.

    Methods:

    | method      | weight score                                   | kept      |
    |-------------|------------------------------------------------|-----------|
    | "magnitude" | abs(w), ranked over the whole layer (baseline) | unchanged |
    | "wanda"     | abs(w) * L2 norm of its input, per output      | unchanged |
    | "sparsegpt" | OBS: w^2 / [H^-1]_jj^2, H = X^T X (damped)     | updated   |

    Calibration runs block by block: the statistics of a transformer block
    (or, outside keras-hub backbones, of each layer in call order) are taken
    with every earlier block already pruned, so each block compensates for
    the error of the ones before it. The model is re-run from its inputs up
    to the block being calibrated; keras-hub blocks that reproduce their
    in-model outputs from their hidden states alone (checked on the first
    batch; the case for unpadded calibration windows) get the previous
    block's outputs directly, one block pass each. Every calibration token
    counts, padded positions too: pass unpadded windows. Embeddings, the tied
    LM head, poolers outside the blocks and normalization layers are not
    pruned.

    Args:
        model: a built Keras 3 model (Sequential, functional, subclassed,
            keras-hub backbone or task).
        sparsity: fraction of each layer's weights to zero, in [0, 1).
        method: "wanda", "sparsegpt" or "magnitude".
        representative_data: model inputs to calibrate on (needed by "wanda"
            and "sparsegpt"): an array, a dict of arrays (e.g. `token_ids`
            and `padding_mask`), a list of such batches, a `tf.data.Dataset`
            or a generator. Labels of `(x, y)` batches are ignored.
        sparsity_m_by_n: optional `(m, n)`, e.g. `(2, 4)`: m zeros in every n
            consecutive inputs of every output; `sparsity` is then m / n.
        inplace: prune `model` itself instead of a copy.
        damping: SparseGPT's Hessian damping, a fraction of its mean diagonal.
        block_size: inputs SparseGPT processes together.
        verbose: show a progress bar over the calibration units.

    Returns:
        The pruned model, of the model's class: zeros in the kernels, no
        wrappers. `strip_pruning`, `quantize_model` (which keeps the zeros)
        and `tfcompress.export.to_tflite` take it as any model.

    Raises:
        TypeError: for a non-Keras-3 model or a non-numeric `sparsity`.
        ValueError: for `sparsity` outside [0, 1), an unknown `method`, a bad
            `sparsity_m_by_n` or one whose n does not divide a layer's input
            size, missing or empty `representative_data` for "wanda" and
            "sparsegpt", and a model with no Dense or EinsumDense layer to
            prune (or none that runs on the data); all before any work.

    Example:

    ```python
    pruned = tfcompress.sparsity.prune_one_shot(
        causal_lm, sparsity=0.5, method="sparsegpt",
        representative_data={"token_ids": ids, "padding_mask": mask})
    ```
    """
    ensure_keras3_model(model)
    ensure_built(model)
    sparsity, m_by_n = _check_sparsity(sparsity, sparsity_m_by_n)
    _check_method(method)
    if not isinstance(damping, numbers.Real) or not damping > 0:
        raise ValueError(f"`damping` must be a positive float. Received: damping={damping!r}.")
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, numbers.Integral)
        or block_size < 1
    ):
        raise ValueError(
            f"`block_size` must be a positive integer. Received: block_size={block_size!r}."
        )
    batches = _read_batches(representative_data, method)
    targets = _static_units(model)
    if not targets:
        raise ValueError(
            f"`model` ({model.name!r}) has no Dense or EinsumDense layer with a "
            "float kernel, so prune_one_shot has nothing to prune. For "
            "convolutions use `tfcompress.sparsity.prune_low_magnitude`."
        )
    _check_m_by_n_fits([view for _, views, _ in targets for view in views], m_by_n)
    if not inplace:
        model = copy_model(model)
    if method == "magnitude":
        units = _static_units(model)
    else:
        units = _calibration.units(model, batches)
        if not units:
            raise ValueError(
                f"None of the Dense or EinsumDense layers of `model` "
                f"({model.name!r}) ran on `representative_data`, so there is "
                "nothing to calibrate. Pass inputs the model's layers use."
            )
    settings = {
        "method": method,
        "sparsity": sparsity,
        "m_by_n": m_by_n,
        "damping": float(damping),
        "block_size": int(block_size),
    }
    progress = keras.utils.Progbar(len(units), unit_name="unit") if verbose else None
    if method == "magnitude":
        for index, (unit, views, _) in enumerate(units):
            _prune_unit(unit, views, {}, settings)
            if progress is not None:
                progress.update(index + 1)
    else:
        _calibrate_and_prune(model, batches, units, settings, progress)
    _LOG.info(
        "prune_one_shot(%s): %d layers in %d units pruned to %s.",
        method,
        sum(len(v) for _, v, _ in units),
        len(units),
        f"{m_by_n[0]}:{m_by_n[1]}" if m_by_n else f"{sparsity:g}",
    )
    return model
