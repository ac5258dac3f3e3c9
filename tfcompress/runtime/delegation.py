"""Which ops of a `.tflite` model LiteRT's default XNNPack delegate runs."""

import collections
import dataclasses
import importlib

import numpy as np

from tfcompress.runtime._litert_internals import ops_details
from tfcompress.runtime.interpreter import _checked_content, _create, _interpreter_class


@dataclasses.dataclass
class DelegationReport:
    """How much of a model XNNPack takes.

    Attributes:
        backend: the interpreter that was asked (see `tfcompress.runtime.load`).
        ops: ops in the model's main subgraph.
        delegated: how many of them run inside XNNPack.
        partitions: XNNPack kernels the graph is cut into. Each boundary hands
            tensors between XNNPack and LiteRT's own kernels; a model whose
            ops are all delegated has 1.
        not_delegated: `{"OP [input dtypes] -> [output dtypes]": count}` of the
            ops LiteRT runs itself, the ones to rewrite or avoid.
    """

    backend: str
    ops: int
    delegated: int
    partitions: int
    not_delegated: dict

    def summary(self):
        """One line, e.g. for `tfcompress inspect`."""
        line = (
            f"XNNPack ({self.backend}): {self.delegated} of {self.ops} ops delegated "
            f"in {self.partitions} partition(s)"
        )
        if self.not_delegated:
            line += "; not delegated: " + ", ".join(
                f"{key} x{count}" for key, count in self.not_delegated.items()
            )
        return line


def xnnpack_delegation(model, backend=None):
    """Reports which ops of `model` the default XNNPack delegate runs.

    The model is loaded twice: without delegates, for its own ops, and as
    `tfcompress.runtime.load` loads it, where LiteRT appends one DELEGATE node
    per XNNPack partition. The ops between each DELEGATE node's inputs and
    outputs are the ones it replaced. An op whose output nobody reads cannot
    be traced that way and is listed as not delegated.

    Args:
        model: a `.tflite` path or the flatbuffer bytes.
        backend: as for `tfcompress.runtime.load`.

    Returns:
        A `DelegationReport`.

    Raises:
        ValueError: the file is missing or not a TFLite flatbuffer, or the
            interpreter cannot prepare it (e.g. Flex ops).
        TypeError: `model` is neither a path nor bytes.
    """
    content, _, where = _checked_content(model)
    name, interpreter_class = _interpreter_class(backend)
    resolver = importlib.import_module(interpreter_class.__module__).OpResolverType
    _, plain = _create(
        content,
        where,
        name,
        experimental_op_resolver_type=resolver.BUILTIN_WITHOUT_DEFAULT_DELEGATES,
    )
    _, delegated = _create(content, where, name, num_threads=1)
    try:
        plain.allocate_tensors()
        delegated.allocate_tensors()
    except (ValueError, RuntimeError) as e:
        raise ValueError(f"{where} cannot be prepared by the {name} interpreter ({e}).") from e
    count = len(ops_details(plain))
    ops = ops_details(delegated)
    dtypes = {t["index"]: np.dtype(t["dtype"]).name for t in delegated.get_tensor_details()}
    producer = {int(out): op["index"] for op in ops[:count] for out in op["outputs"]}
    taken = set()
    partitions = 0
    for node in ops[count:]:
        if node["op_name"] != "DELEGATE":
            continue
        partitions += 1
        boundary = {int(t) for t in node["inputs"]}
        stack = [int(t) for t in node["outputs"]]
        while stack:
            tensor = stack.pop()
            if tensor in boundary or tensor not in producer or producer[tensor] in taken:
                continue
            taken.add(producer[tensor])
            stack.extend(int(t) for t in ops[producer[tensor]]["inputs"] if t >= 0)
    left = collections.Counter()
    for op in ops[:count]:
        if op["index"] not in taken:
            ins = ",".join(dtypes.get(int(t), "?") for t in op["inputs"] if t >= 0)
            outs = ",".join(dtypes.get(int(t), "?") for t in op["outputs"])
            left[f"{op['op_name']} [{ins}] -> [{outs}]"] += 1
    return DelegationReport(
        backend=name,
        ops=count,
        delegated=len(taken),
        partitions=partitions,
        not_delegated=dict(left.most_common()),
    )
