"""The immutable, validated architecture of a heterogeneous FlexiBERT encoder.

An :class:`Architecture` is a tuple of :class:`Layer` s. Each layer has its own hidden size,
a multiset of head operations sharing one per-head dimension ``head_dim`` (``n·d`` need not
equal ``hidden``), and a feed-forward stack. Heads are kept in canonical order (see
:func:`~edgetran.space.ops.op_sort_key`), so two architectures that differ only in the order of
their heads are equal and hash alike.

Two JSON forms are read and written:

- the project's own: ``{"layers": [{"hidden": 256, "heads": ["sa_sdp", ...], "head_dim": 64,
  "ff": [1024]}, ...]}``;
- the reference ``model_dict``: ``{"l": 4, "o": [["sa_sdp_64", ...], ...], "h": [256, ...],
  "f": [[1024], ...]}``.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from edgetran.errors import ArchitectureError, parse_json
from edgetran.space.ops import ALLOWED_OPS_TEXT, is_valid_op, op_sort_key, parse_head_string

#: Tensor sizes are int64; larger sizes mean nothing and only overflow later arithmetic.
MAX_SIZE = 2**63 - 1
_POSITIVE = "a positive integer below 2**63"


def _positive_int(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= MAX_SIZE:
        raise ArchitectureError(name, value, _POSITIVE)
    return value


def _non_empty(name: str, value: Any, allowed: str) -> tuple[Any, ...]:
    """The items of a list-like ``value``; a string, a mapping, a non-iterable or an empty
    ``value`` is an :class:`ArchitectureError` on ``name``."""
    if isinstance(value, str | Mapping) or not isinstance(value, Iterable):
        raise ArchitectureError(name, value, allowed)
    items = tuple(value)
    if not items:
        raise ArchitectureError(name, [], allowed)
    return items


@dataclass(frozen=True)
class Layer:
    """One encoder layer.

    Attributes:
        hidden: width ``h`` of the residual stream in this layer.
        ops: head operations, in canonical order (sorted on construction).
        head_dim: per-head dimension ``d`` shared by all heads of the layer.
        ff: widths of the feed-forward Linear layers, e.g. ``(3072,)`` or ``(1024, 256)``.
    """

    hidden: int
    ops: tuple[str, ...]
    head_dim: int
    ff: tuple[int, ...]

    def __post_init__(self) -> None:
        _positive_int("hidden", self.hidden)
        _positive_int("head_dim", self.head_dim)
        ops = _non_empty("heads", self.ops, "a non-empty list of head operations")
        for op in ops:
            if not isinstance(op, str) or not is_valid_op(op):
                raise ArchitectureError("heads", op, ALLOWED_OPS_TEXT)
        ff = _non_empty("ff", self.ff, "a non-empty list of positive integers")
        for width in ff:
            _positive_int("ff", width)
        object.__setattr__(self, "ops", tuple(sorted(ops, key=op_sort_key)))
        object.__setattr__(self, "ff", ff)

    @property
    def num_heads(self) -> int:
        """The number of attention heads."""
        return len(self.ops)

    @property
    def attention_width(self) -> int:
        """``n·d``: the width of the concatenated head outputs."""
        return len(self.ops) * self.head_dim

    def to_dict(self) -> dict[str, Any]:
        """The layer as a JSON-ready dict."""
        return {
            "hidden": self.hidden,
            "heads": list(self.ops),
            "head_dim": self.head_dim,
            "ff": list(self.ff),
        }

    def replace(self, **changes: Any) -> Layer:
        """A copy with ``changes`` applied (and validated)."""
        values = {"hidden": self.hidden, "ops": self.ops, "head_dim": self.head_dim, "ff": self.ff}
        values.update(changes)
        return Layer(**values)


@dataclass(frozen=True)
class Architecture:
    """A heterogeneous encoder: an ordered, non-empty tuple of :class:`Layer` s."""

    layers: tuple[Layer, ...]
    _hash: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        layers = tuple(self.layers)
        if not layers:
            raise ArchitectureError("layers", 0, "at least one layer")
        for i, layer in enumerate(layers):
            if not isinstance(layer, Layer):
                raise ArchitectureError("layer", layer, "a Layer", layer=i)
        object.__setattr__(self, "layers", layers)
        canonical = json.dumps(self.to_dict(), sort_keys=True, separators=(",", ":"))
        object.__setattr__(self, "_hash", hashlib.sha256(canonical.encode()).hexdigest()[:32])

    # -- basic views -------------------------------------------------------------------------
    @property
    def num_layers(self) -> int:
        """The number of encoder layers."""
        return len(self.layers)

    @property
    def hash(self) -> str:
        """Stable content hash (32 hex digits) of the canonical JSON form."""
        return self._hash

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        """Each layer's hidden size."""
        return tuple(layer.hidden for layer in self.layers)

    def __str__(self) -> str:
        return (
            f"Architecture({self.num_layers} layers, h={list(self.hidden_sizes)}, {self.hash[:8]})"
        )

    # -- the project's JSON form --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The architecture as a JSON-ready dict."""
        return {"layers": [layer.to_dict() for layer in self.layers]}

    def to_json(self, **kwargs: Any) -> str:
        """The architecture as JSON text (``kwargs`` go to :func:`json.dumps`)."""
        return json.dumps(self.to_dict(), **kwargs)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Architecture:
        """Build from the project's form or from a reference ``model_dict`` (detected by keys)."""
        if not isinstance(data, Mapping):
            raise ArchitectureError("architecture", type(data).__name__, "a JSON object")
        if "layers" in data:
            return cls._from_own_dict(data)
        if {"l", "o", "h", "f"} <= set(data):
            return cls.from_model_dict(data)
        raise ArchitectureError(
            "architecture",
            sorted(data),
            "an object with 'layers', or a model_dict with l, o, h, f",
        )

    @classmethod
    def from_json(cls, text: str) -> Architecture:
        """The architecture that :meth:`to_json` wrote."""
        return cls.from_dict(parse_json(text))

    @classmethod
    def _from_own_dict(cls, data: Mapping[str, Any]) -> Architecture:
        raw_layers = data["layers"]
        if not isinstance(raw_layers, Sequence) or isinstance(raw_layers, str) or not raw_layers:
            raise ArchitectureError("layers", raw_layers, "a non-empty list of layer objects")
        layers = []
        for i, raw in enumerate(raw_layers):
            if not isinstance(raw, Mapping):
                raise ArchitectureError("layer", raw, "an object", layer=i)
            missing = {"hidden", "heads", "ff"} - set(raw)
            if missing:
                raise ArchitectureError(sorted(missing)[0], None, "a value (field missing)", i)
            head_dim = raw.get("head_dim")
            if head_dim is None:
                heads = raw["heads"]
                n = len(heads) if isinstance(heads, Sequence) and heads else 1
                head_dim = raw["hidden"] // n if isinstance(raw["hidden"], int) else None
            layers.append(_layer_at(i, raw["hidden"], raw["heads"], head_dim, raw["ff"]))
        return cls(tuple(layers))

    # -- the reference model_dict ---------------------------------------------------------------
    def to_model_dict(self) -> dict[str, Any]:
        """The reference ``model_dict`` (heads as ``TYPE_PARAM_D``)."""
        return {
            "l": self.num_layers,
            "o": [[f"{op}_{layer.head_dim}" for op in layer.ops] for layer in self.layers],
            "h": list(self.hidden_sizes),
            "f": [list(layer.ff) for layer in self.layers],
        }

    @classmethod
    def from_model_dict(cls, model_dict: Mapping[str, Any]) -> Architecture:
        """Parse a reference ``model_dict``; heads of one layer must share ``d``."""
        missing = [key for key in ("l", "o", "h", "f") if key not in model_dict]
        if missing:
            raise ArchitectureError(missing[0], None, "a value (model_dict field missing)")
        num_layers = model_dict["l"]
        _positive_int("l", num_layers)
        for key in ("o", "h", "f"):
            value = model_dict[key]
            if not isinstance(value, Sequence) or isinstance(value, str):
                raise ArchitectureError(key, value, f"a list of {num_layers} entries")
            if len(value) != num_layers:
                raise ArchitectureError(
                    key, f"{len(value)} entries", f"exactly l={num_layers} entries"
                )
        layers = []
        for i in range(num_layers):
            heads = model_dict["o"][i]
            if not isinstance(heads, Sequence) or isinstance(heads, str) or not heads:
                raise ArchitectureError("o", heads, "a non-empty list of head strings", i)
            ops, dims = [], set()
            for text in heads:
                parsed = parse_head_string(text) if isinstance(text, str) else None
                if parsed is None:
                    raise ArchitectureError(
                        "o", text, f"TYPE_PARAM_D with TYPE_PARAM in {ALLOWED_OPS_TEXT}", i
                    )
                ops.append(parsed[0])
                dims.add(parsed[1])
            if len(dims) != 1:
                raise ArchitectureError("o", sorted(dims), "one head dimension d per layer", i)
            layers.append(_layer_at(i, model_dict["h"][i], ops, dims.pop(), model_dict["f"][i]))
        return cls(tuple(layers))


def _layer_at(index: int, hidden: Any, ops: Any, head_dim: Any, ff: Any) -> Layer:
    """Build a layer, locating any validation error in layer ``index``."""
    try:
        return Layer(hidden=hidden, ops=ops, head_dim=head_dim, ff=ff)
    except ArchitectureError as err:
        raise err.in_layer(index) from None


def homogeneous(
    num_layers: int, hidden: int, num_heads: int, ff: int, op: str = "sa_sdp"
) -> Architecture:
    """A standard BERT-like architecture: every layer alike, ``d = hidden // num_heads``."""
    layer = Layer(hidden=hidden, ops=(op,) * num_heads, head_dim=hidden // num_heads, ff=(ff,))
    return Architecture((layer,) * num_layers)
