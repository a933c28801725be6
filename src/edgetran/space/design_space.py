"""The FlexiBERT 2.0 design space, its size and its integer embedding.

The embedding follows the reference exactly (``flexibert-gptran.md`` §3): ``1 + 3·max(layers)``
integers — the index of the layer count, then per layer the index of its hidden size, of its
feed-forward width tuple (``itertools.product`` of the widths for each depth, concatenated) and
of its head-operation multiset (``combinations_with_replacement`` of the operations for each head
count, concatenated); unused layers are 0. For the reference space that is 37 integers.
"""

from __future__ import annotations

import itertools
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import yaml

from edgetran.errors import DesignSpaceError, parse_json, read_text_file
from edgetran.space.architecture import MAX_SIZE, Architecture, Layer
from edgetran.space.ops import REFERENCE_OPS, is_valid_op, op_sort_key

#: Bounds that keep everything derived from a space computable at once: the embedding's lookup
#: tables are built in memory, and the exact size is printed as a decimal integer.
MAX_DEPTH = 1000  # layers, heads per layer, feed-forward depth
MAX_CHOICES = 1_000_000  # head-operation multisets, feed-forward width tuples
MAX_LOG10_SIZE = 1000
MAX_YAML_VALUES = 100_000  # a design space holds a few dozen


def _parse_yaml(text: str, path: Path) -> Any:
    """Parse YAML; a malformed file is one line naming its line and column (no caret diagram)."""
    # libyaml, where installed, is fast and limits nesting itself (the Python scanner is
    # quadratic in the nesting depth).
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        problem = " ".join((err.problem or err.context or "malformed").split())
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise DesignSpaceError(f"{path}: not valid YAML ({problem}{where})") from None
    except yaml.YAMLError as err:  # a character YAML does not allow
        raise DesignSpaceError(f"{path}: not valid YAML ({str(err).splitlines()[0]})") from None
    except RecursionError:
        raise DesignSpaceError(f"{path}: not valid YAML (nested too deeply)") from None
    except ValueError as err:  # e.g. an integer beyond Python's digit limit
        raise DesignSpaceError(f"{path}: not valid YAML ({err})") from None


def _refuse_expansion(data: Any, path: Path) -> None:
    """Refuse YAML whose aliases make it stand for more than :data:`MAX_YAML_VALUES` values: a
    few aliased lines can repeat a list billions of times (a recursive alias, infinitely),
    and merely printing an error about such a value would never end."""
    pending, count = [data], 0
    while pending:
        node = pending.pop()
        count += 1
        if count > MAX_YAML_VALUES:
            raise DesignSpaceError(
                f"{path}: the YAML aliases expand to more than {MAX_YAML_VALUES} values"
            )
        if isinstance(node, dict):
            pending.extend(node.values())
        elif isinstance(node, list):
            pending.extend(node)


def _is_list(values: Any) -> bool:
    return isinstance(values, Sequence) and not isinstance(values, str)


def _nearest(value: int, choices: Sequence[int]) -> int:
    """The choice closest to ``value``; ties go to the smaller choice."""
    return min(choices, key=lambda c: (abs(c - value), c))


@dataclass(frozen=True)
class DesignSpace:
    """Every choice of the space. The default is the reference FlexiBERT 2.0 space.

    Attributes:
        layers: allowed encoder depths.
        hidden_sizes: allowed hidden size per layer.
        head_counts: allowed number of heads per layer.
        operations: allowed head operations (canonical order is imposed).
        ff_depths: allowed number of Linear layers in a feed-forward stack.
        ff_widths: allowed width of each feed-forward Linear layer.
    """

    layers: tuple[int, ...] = (2, 4, 6, 8, 10, 12)
    hidden_sizes: tuple[int, ...] = (128, 256, 512, 768)
    head_counts: tuple[int, ...] = (2, 4, 8, 12)
    operations: tuple[str, ...] = REFERENCE_OPS
    ff_depths: tuple[int, ...] = (1, 2, 3)
    ff_widths: tuple[int, ...] = (256, 512, 1024, 2048, 3072, 4096)

    def __post_init__(self) -> None:
        for name in ("layers", "hidden_sizes", "head_counts", "ff_depths", "ff_widths"):
            values = getattr(self, name)
            if not _is_list(values) or not values:
                raise DesignSpaceError(f"{name}: expected a non-empty list of positive integers")
            high = MAX_SIZE if name in ("hidden_sizes", "ff_widths") else MAX_DEPTH
            for v in values:
                if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                    raise DesignSpaceError(f"{name}: {v!r} is not a positive integer")
                if v > high:
                    raise DesignSpaceError(f"{name}: {v} is too large; allowed: at most {high}")
            if len(set(values)) != len(values):
                raise DesignSpaceError(f"{name}: duplicate values in {list(values)}")
            # The embedding depends on this order: keep the reference (ascending) order.
            object.__setattr__(self, name, tuple(sorted(values)))
        if not _is_list(self.operations) or not self.operations:
            raise DesignSpaceError("operations: expected a non-empty list of head operations")
        for op in self.operations:
            if not isinstance(op, str) or not is_valid_op(op):
                raise DesignSpaceError(
                    f"operations: {op!r} is unknown; allowed: sa_sdp, sa_wma, l_dft, l_dct, c_K"
                )
        if len(set(self.operations)) != len(self.operations):
            raise DesignSpaceError(f"operations: duplicate values in {list(self.operations)}")
        object.__setattr__(self, "operations", tuple(sorted(self.operations, key=op_sort_key)))
        self._check_computable()

    def _check_computable(self) -> None:
        """Refuse a space whose lookup tables or exact size could not be computed at once."""
        for what, count in (
            ("head-operation multisets", self.num_attention_choices),
            ("feed-forward width tuples", self.num_ff_choices),
        ):
            if count > MAX_CHOICES:
                raise DesignSpaceError(
                    f"design space: {count} {what}; at most {MAX_CHOICES} are supported "
                    "(fewer choices or shallower layers)"
                )
        per_layer = self.num_ff_choices * len(self.hidden_sizes) * self.num_attention_choices
        log10_bound = max(self.layers) * math.log10(per_layer) + math.log10(len(self.layers))
        if log10_bound > MAX_LOG10_SIZE:
            raise DesignSpaceError(
                f"design space: about 10^{log10_bound:.0f} architectures; at most "
                f"10^{MAX_LOG10_SIZE} are supported (fewer choices or fewer layers)"
            )

    # -- construction and serialisation --------------------------------------------------------
    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> DesignSpace:
        """A design space from its dict form; unknown keys are an error naming them."""
        if not isinstance(data, Mapping):
            raise DesignSpaceError("design space: expected a mapping of choices")
        known = set(cls.__dataclass_fields__)
        unknown = sorted((k for k in data if k not in known), key=str)
        if unknown:
            raise DesignSpaceError(
                f"design space: unknown field {unknown[0]!r}; allowed: {', '.join(sorted(known))}"
            )
        return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items()})

    @classmethod
    def from_file(cls, path: str | Path) -> DesignSpace:
        """Load a space from YAML or JSON; omitted fields keep the reference choices."""
        path = Path(path)
        text = read_text_file(path, DesignSpaceError)
        if path.suffix == ".json":
            data = parse_json(text, str(path), DesignSpaceError)
        else:
            data = _parse_yaml(text, path)
            _refuse_expansion(data, path)
        try:
            return cls.from_dict(data or {})
        except DesignSpaceError as err:
            raise DesignSpaceError(f"{path}: {err}") from None

    def to_dict(self) -> dict[str, list[Any]]:
        """The design space as a JSON-ready dict."""
        return {k: list(v) for k, v in asdict(self).items()}

    # -- choice tables (the embedding's lookup lists) --------------------------------------------
    @cached_property
    def ff_choices(self) -> tuple[tuple[int, ...], ...]:
        """Every feed-forward stack the space allows (the embedding's lookup list)."""
        return tuple(
            widths
            for depth in self.ff_depths
            for widths in itertools.product(self.ff_widths, repeat=depth)
        )

    @cached_property
    def attention_choices(self) -> tuple[tuple[str, ...], ...]:
        """Every multiset of head operations the space allows (the embedding's lookup list)."""
        return tuple(
            ops
            for n in self.head_counts
            for ops in itertools.combinations_with_replacement(self.operations, n)
        )

    @cached_property
    def _ff_index(self) -> dict[tuple[int, ...], int]:
        return {widths: i for i, widths in enumerate(self.ff_choices)}

    @cached_property
    def _attention_index(self) -> dict[tuple[str, ...], int]:
        return {ops: i for i, ops in enumerate(self.attention_choices)}

    @property
    def num_attention_choices(self) -> int:
        """How many attention choices a layer has."""
        k = len(self.operations)
        return sum(math.comb(k + n - 1, n) for n in self.head_counts)

    @property
    def num_ff_choices(self) -> int:
        """How many feed-forward choices a layer has."""
        return sum(len(self.ff_widths) ** depth for depth in self.ff_depths)

    # -- size ------------------------------------------------------------------------------
    @property
    def size(self) -> int:
        """Exact number of architectures: Σ_L (|FF|·|H|·|ATT|)^L."""
        per_layer = self.num_ff_choices * len(self.hidden_sizes) * self.num_attention_choices
        return sum(per_layer**depth for depth in self.layers)

    @property
    def log10_size(self) -> float:
        """The base-10 logarithm of :attr:`size`."""
        return math.log10(self.size)

    # -- membership ---------------------------------------------------------------------------
    @property
    def embedding_length(self) -> int:
        """The length of an architecture's embedding in this space."""
        return 1 + 3 * max(self.layers)

    def layer_on_grid(self, layer: Layer) -> bool:
        """Whether ``layer`` is one of the space's layers."""
        return (
            layer.hidden in self.hidden_sizes
            and layer.num_heads in self.head_counts
            and all(op in self.operations for op in layer.ops)
            and layer.head_dim == layer.hidden // layer.num_heads
            and len(layer.ff) in self.ff_depths
            and all(w in self.ff_widths for w in layer.ff)
        )

    def contains(self, arch: Architecture) -> bool:
        """Whether ``arch`` is on the grid (including ``d = h // n`` in every layer)."""
        return arch.num_layers in self.layers and all(self.layer_on_grid(x) for x in arch.layers)

    # -- embedding -------------------------------------------------------------------------------
    def encode_normalised(self, arch: Architecture) -> list[float]:
        """The embedding with every position divided by its upper bound (values in [0, 1]),
        so that distances and learned models do not weigh positions by their integer range."""
        return [
            value / max(high, 1)
            for value, (_, high) in zip(self.encode(arch), self.embedding_bounds(), strict=True)
        ]

    def encode(self, arch: Architecture) -> list[int]:
        """The integer embedding. Off-grid architectures are embedded through :meth:`snap`."""
        if not self.contains(arch):
            arch = self.snap(arch)
        vector = [0] * self.embedding_length
        vector[0] = self.layers.index(arch.num_layers)
        for i, layer in enumerate(arch.layers):
            vector[3 * i + 1] = self.hidden_sizes.index(layer.hidden)
            vector[3 * i + 2] = self._ff_index[layer.ff]
            vector[3 * i + 3] = self._attention_index[layer.ops]
        return vector

    def decode(self, embedding: Sequence[int]) -> Architecture:
        """The architecture of an embedding; ``d = h // n`` as in the reference."""
        if len(embedding) != self.embedding_length:
            raise DesignSpaceError(
                f"embedding: {len(embedding)} integers given; expected {self.embedding_length}"
            )
        bounds = self.embedding_bounds()
        for position, (value, (low, high)) in enumerate(zip(embedding, bounds, strict=True)):
            if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
                raise DesignSpaceError(
                    f"embedding[{position}]={value!r} is out of range; allowed: {low}..{high}"
                )
        layers = []
        for i in range(self.layers[embedding[0]]):
            hidden = self.hidden_sizes[embedding[3 * i + 1]]
            ops = self.attention_choices[embedding[3 * i + 3]]
            ff = self.ff_choices[embedding[3 * i + 2]]
            layers.append(Layer(hidden=hidden, ops=ops, head_dim=hidden // len(ops), ff=ff))
        return Architecture(tuple(layers))

    def embedding_bounds(self) -> list[tuple[int, int]]:
        """Inclusive ``(low, high)`` bounds of every embedding position."""
        per_layer = [
            (0, len(self.hidden_sizes) - 1),
            (0, self.num_ff_choices - 1),
            (0, self.num_attention_choices - 1),
        ]
        return [(0, len(self.layers) - 1), *per_layer * max(self.layers)]

    # -- projection onto the grid ---------------------------------------------------------------
    def snap(self, arch: Architecture) -> Architecture:
        """The nearest on-grid architecture, used to embed off-grid ones.

        Rules (ties always go to the smaller value):

        - depth: nearest allowed count; surplus layers are dropped, missing ones repeat the last;
        - hidden size and each feed-forward width: nearest allowed value; a feed-forward stack
          deeper than allowed keeps its first layers, a shallower one repeats its last width;
        - heads: operations outside the space become the nearest allowed operation of the same
          family (else the first allowed operation); the head count moves to the nearest allowed
          count by removing heads of the most frequent operation (ties: the last in canonical
          order) or adding heads of the most frequent one (ties: the first);
        - ``d`` becomes ``h // n``.
        """
        depth = _nearest(arch.num_layers, self.layers)
        source = list(arch.layers[:depth])
        source += [source[-1]] * (depth - len(source))
        return Architecture(tuple(self._snap_layer(layer) for layer in source))

    def _snap_layer(self, layer: Layer) -> Layer:
        hidden = _nearest(layer.hidden, self.hidden_sizes)
        ops = self._snap_ops(layer.ops)
        depth = _nearest(len(layer.ff), self.ff_depths)
        ff = [_nearest(w, self.ff_widths) for w in layer.ff[:depth]]
        ff += [ff[-1]] * (depth - len(ff))
        return Layer(hidden=hidden, ops=ops, head_dim=hidden // len(ops), ff=tuple(ff))

    def _snap_ops(self, ops: Sequence[str]) -> tuple[str, ...]:
        counts = Counter(self._snap_op(op) for op in ops)
        target = _nearest(len(ops), self.head_counts)
        order = sorted(counts, key=op_sort_key)
        while sum(counts.values()) > target:
            drop = max(reversed(order), key=lambda op: counts[op])
            counts[drop] -= 1
        while sum(counts.values()) < target:
            counts[max(order, key=lambda op: counts[op])] += 1
        return tuple(sorted(counts.elements(), key=op_sort_key))

    def _snap_op(self, op: str) -> str:
        if op in self.operations:
            return op
        family = [o for o in self.operations if o.split("_")[0] == op.split("_")[0]]
        if family and op.startswith("c_"):
            kernel = int(op[2:])
            return min(family, key=lambda o: (abs(int(o[2:]) - kernel), int(o[2:])))
        return family[0] if family else self.operations[0]


REFERENCE_SPACE = DesignSpace()
