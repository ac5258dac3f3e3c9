"""One row of a comparison: a model variant's size, latency and quality metrics."""

import dataclasses
import numbers

_FIELD_HELP = (
    "Known fields: name, raw_bytes, gzip_bytes, latency_ms (or p50_ms), size (a "
    "`model_size` dict), latency (a `latency` result), metrics (a dict); any "
    "other key must be a numeric metric such as accuracy or perplexity."
)


def _number(value, what):
    if isinstance(value, bool) or value is None:
        raise ValueError(f"{what} must be a number. Received: {value!r}.")
    if isinstance(value, numbers.Real):
        return float(value)
    if hasattr(value, "__float__") and not isinstance(value, (str, bytes)):
        return float(value)
    raise ValueError(f"{what} must be a number. Received: {value!r}. {_FIELD_HELP}")


def _optional(value, what, cast):
    if value is None:
        return None
    number = _number(value, what)
    if number < 0:
        raise ValueError(f"{what} must be >= 0. Received: {value!r}.")
    return cast(number)


def _latency_ms(value, name):
    if value is None or isinstance(value, numbers.Real):
        return value
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict) and "p50_ms" in value:
        return value["p50_ms"]
    raise ValueError(
        f"Entry {name!r}: `latency` must be a number of ms, a dict with "
        "`p50_ms`, or a result of `tfcompress.evaluation.latency` / "
        f"`tfcompress.runtime.benchmark`. Received: {value!r}."
    )


@dataclasses.dataclass
class Candidate:
    """A model variant to compare: what it costs and how well it does.

    Attributes:
        name: a unique label, e.g. `"int8 (QAT)"`.
        raw_bytes: serialized size in bytes (None if not measured).
        gzip_bytes: size after gzip -9 in bytes (None if not measured).
        latency_ms: median (p50) latency in milliseconds (None if not measured).
        metrics: quality metrics by name, e.g. `{"accuracy": 0.91}`; direction
            is known for accuracy/agreement/cosine/similarity (higher is better)
            and perplexity/loss/error/nll (lower is better).
    """

    name: str
    raw_bytes: int | None = None
    gzip_bytes: int | None = None
    latency_ms: float | None = None
    metrics: dict = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(
                f"Every entry needs a non-empty string `name`. Received: name={self.name!r}."
            )
        label = f"Entry {self.name!r}:"
        self.raw_bytes = _optional(self.raw_bytes, f"{label} `raw_bytes`", int)
        self.gzip_bytes = _optional(self.gzip_bytes, f"{label} `gzip_bytes`", int)
        self.latency_ms = _optional(self.latency_ms, f"{label} `latency_ms`", float)
        if not isinstance(self.metrics, dict):
            raise TypeError(f"{label} `metrics` must be a dict. Received: {self.metrics!r}.")
        self.metrics = {
            str(key): _number(value, f"{label} metric {key!r}")
            for key, value in self.metrics.items()
        }

    @classmethod
    def from_dict(cls, entry):
        """Builds a `Candidate` from a dict.

        Besides the attribute names, the dict may hold `size` (the dict
        `model_size` returns; `float32_bytes` of a Keras model counts as its
        raw size), `latency` (a `latency` or `runtime.benchmark` result, or a
        dict with `p50_ms`), `p50_ms` for `latency_ms`, and metrics either in
        `metrics` or as top-level numeric keys
        (`{"name": "int8", "accuracy": 0.9}`).

        Raises:
            TypeError: when `entry` is not a dict.
            ValueError: without a `name`, or with a non-numeric unknown key.
        """
        if not isinstance(entry, dict):
            raise TypeError(
                "An entry must be a dict or a `tfcompress.evaluation.Candidate`. "
                f"Received: {entry!r} of type {type(entry).__name__}."
            )
        entry = dict(entry)
        if "name" not in entry:
            raise ValueError(
                f"Every entry needs a `name`. Received an entry with keys "
                f"{sorted(entry)}; add e.g. name='int8'."
            )
        name = entry.pop("name")
        size = entry.pop("size", None) or {}
        if not isinstance(size, dict):
            raise TypeError(
                f"Entry {name!r}: `size` must be a dict from "
                f"`tfcompress.evaluation.model_size`. Received: {size!r}."
            )
        raw = entry.pop("raw_bytes", size.get("raw_bytes", size.get("float32_bytes")))
        gzip = entry.pop("gzip_bytes", size.get("gzip_bytes"))
        latency = _latency_ms(entry.pop("latency", None), name)
        latency = entry.pop("latency_ms", entry.pop("p50_ms", latency))
        metrics = entry.pop("metrics", None) or {}
        if not isinstance(metrics, dict):
            raise TypeError(f"Entry {name!r}: `metrics` must be a dict. Received: {metrics!r}.")
        metrics = dict(metrics)
        metrics.update(entry)
        return cls(name, raw, gzip, latency, metrics)

    def to_dict(self):
        """A JSON-ready dict that `from_dict` turns back into an equal `Candidate`."""
        return {
            "name": self.name,
            "raw_bytes": self.raw_bytes,
            "gzip_bytes": self.gzip_bytes,
            "latency_ms": self.latency_ms,
            "metrics": dict(self.metrics),
        }
