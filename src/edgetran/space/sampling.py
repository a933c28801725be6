"""Seeded sampling of architectures and single-mutation neighbours.

Sampling works on the integer embedding, as the reference does: ``random`` draws every
position uniformly within its bounds; ``lhs`` draws a Latin hypercube in two halves — "narrow"
(head counts below the median allowed count, 2 and 4 in the reference space) and "wide" (the
rest) — so that both kinds of models are represented. Positions past the sampled depth are
zeroed (the reference's "nearest valid embedding").
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Literal

import numpy as np

from edgetran.errors import DesignSpaceError
from edgetran.space.architecture import Architecture, Layer
from edgetran.space.design_space import REFERENCE_SPACE, DesignSpace

SamplingMethod = Literal["random", "lhs"]


def sample(
    n: int,
    *,
    method: SamplingMethod = "lhs",
    seed: int = 0,
    space: DesignSpace = REFERENCE_SPACE,
) -> list[Architecture]:
    """Draw ``n`` architectures from ``space``; the same seed gives the same list."""
    if n < 0:
        raise DesignSpaceError(f"n={n} is invalid; allowed: a non-negative integer")
    if method == "random":
        unit = np.random.default_rng(seed).random((n, space.embedding_length))
        return [_decode_unit(space, u, _attention_range(space, None)) for u in unit]
    if method == "lhs":
        return _sample_lhs(n, seed, space)
    raise DesignSpaceError(f"method={method!r} is invalid; allowed: random, lhs")


def _sample_lhs(n: int, seed: int, space: DesignSpace) -> list[Architecture]:
    """Half the draws from the narrow half, half from the wide one (as the reference)."""
    from scipy.stats import qmc  # scipy.stats takes ~1 s to import; only LHS needs it

    narrow = n // 2
    halves = [("narrow", narrow), ("wide", n - narrow)] if narrow else [(None, n)]
    archs: list[Architecture] = []
    for half, count in halves:
        if count:
            engine = qmc.LatinHypercube(d=space.embedding_length, rng=np.random.default_rng(seed))
            attention = _attention_range(space, half)
            archs += [_decode_unit(space, u, attention) for u in engine.random(count)]
    return archs


def _attention_range(space: DesignSpace, half: str | None) -> tuple[int, int]:
    """Inclusive range of attention indices for the ``narrow``/``wide`` half (or all)."""
    total = space.num_attention_choices
    counts = space.head_counts
    if half is None or len(counts) < 2:
        return 0, total - 1
    median = counts[len(counts) // 2]
    narrow_size = sum(len(_multisets(space, c)) for c in counts if c < median)
    return (0, narrow_size - 1) if half == "narrow" else (narrow_size, total - 1)


def _multisets(space: DesignSpace, heads: int) -> list[tuple[str, ...]]:
    return [ops for ops in space.attention_choices if len(ops) == heads]


def _decode_unit(space: DesignSpace, unit: np.ndarray, attention: tuple[int, int]) -> Architecture:
    """Map a point of the unit cube to an embedding, zero past the depth, and decode it."""
    bounds = space.embedding_bounds()
    embedding = []
    for position, (u, (low, high)) in enumerate(zip(unit, bounds, strict=True)):
        if position > 0 and position % 3 == 0:
            low, high = attention
        embedding.append(low + min(int(u * (high - low + 1)), high - low))
    depth = space.layers[embedding[0]]
    embedding[3 * depth + 1 :] = [0] * (len(embedding) - 3 * depth - 1)
    return space.decode(embedding)


# -- neighbours ------------------------------------------------------------------------------


def neighbours(
    arch: Architecture, space: DesignSpace | None = REFERENCE_SPACE
) -> list[Architecture]:
    """Every architecture one mutation away from ``arch``, without duplicates.

    Mutations: change one head's operation; add or remove a head; change a hidden size; change
    a feed-forward width; add or remove a feed-forward layer; add or remove an encoder layer.

    With a ``space`` the neighbours stay on its grid: head counts, depths and sizes move to the
    adjacent allowed value (so "add a head" may add several heads of one operation) and
    ``d = h // n``. With ``space=None`` the moves are the free ones of grow-and-prune: exactly
    one head is added or removed and ``d`` is kept, widths may take any value of ``arch``'s own.
    """
    seen = {arch.hash}
    result = []
    for candidate in _mutations(arch, space or REFERENCE_SPACE, on_grid=space is not None):
        if candidate.hash not in seen and (space is None or space.contains(candidate)):
            seen.add(candidate.hash)
            result.append(candidate)
    return result


def random_neighbour(
    arch: Architecture, rng: np.random.Generator, space: DesignSpace | None = REFERENCE_SPACE
) -> Architecture:
    """One neighbour drawn uniformly from :func:`neighbours`."""
    options = neighbours(arch, space)
    if not options:
        raise DesignSpaceError(f"{arch} has no neighbour in the space")
    return options[int(rng.integers(len(options)))]


def _adjacent(value: int, choices: tuple[int, ...]) -> list[int]:
    ordered = sorted(set(choices) | {value})
    i = ordered.index(value)
    return [ordered[j] for j in (i - 1, i + 1) if 0 <= j < len(ordered) and ordered[j] != value]


def _with_layer(arch: Architecture, i: int, layer: Layer) -> Architecture:
    return Architecture((*arch.layers[:i], layer, *arch.layers[i + 1 :]))


def _grid_layer(layer: Layer, on_grid: bool, **changes) -> Layer:
    new = layer.replace(**changes)
    if on_grid:
        new = new.replace(head_dim=max(1, new.hidden // new.num_heads))
    return new


def _mutations(arch: Architecture, space: DesignSpace, on_grid: bool) -> Iterator[Architecture]:
    for i, layer in enumerate(arch.layers):
        for layer_variant in _layer_mutations(layer, space, on_grid):
            yield _with_layer(arch, i, layer_variant)
    depths = _adjacent(arch.num_layers, space.layers) if on_grid else [arch.num_layers - 1]
    depths += [] if on_grid else [arch.num_layers + 1]
    for depth in depths:
        if 1 <= depth < arch.num_layers:
            yield Architecture(arch.layers[:depth])
        elif depth > arch.num_layers:
            extra = depth - arch.num_layers
            yield Architecture(arch.layers + (arch.layers[-1],) * extra)


def _layer_mutations(layer: Layer, space: DesignSpace, on_grid: bool) -> Iterator[Layer]:
    ops = list(layer.ops)
    for j, old in enumerate(ops):
        for op in space.operations:
            if op != old:
                yield layer.replace(ops=(*ops[:j], op, *ops[j + 1 :]))
    counts = _adjacent(layer.num_heads, space.head_counts) if on_grid else []
    counts = counts or [layer.num_heads - 1, layer.num_heads + 1]
    for count in counts:
        if count > layer.num_heads:
            for op in space.operations:
                extra = (op,) * (count - layer.num_heads)
                yield _grid_layer(layer, on_grid, ops=(*ops, *extra))
        elif count >= 1:
            for op in dict.fromkeys(ops):
                kept = list(ops)
                for _ in range(layer.num_heads - count):
                    if op in kept:
                        kept.remove(op)
                if len(kept) == count:
                    yield _grid_layer(layer, on_grid, ops=tuple(kept))
    for hidden in _adjacent(layer.hidden, space.hidden_sizes):
        yield _grid_layer(layer, on_grid, hidden=hidden)
    for f, width in enumerate(layer.ff):
        for new in space.ff_widths:
            if new != width:
                yield layer.replace(ff=(*layer.ff[:f], new, *layer.ff[f + 1 :]))
    if len(layer.ff) > 1:
        yield layer.replace(ff=layer.ff[:-1])
    yield layer.replace(ff=(*layer.ff, layer.ff[-1]))
