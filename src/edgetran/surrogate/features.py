"""Surrogate features of an architecture at an input shape.

Two groups, computed for any architecture, on-grid or not:

- the reference 37-integer embedding (of the nearest on-grid architecture), divided by each
  position's upper bound so that every value lies in [0, 1] — the reference fed raw integers up
  to 21804 to its networks;
- analytic features from the cost model: log FLOPs, parameters and bytes per operation kind,
  depth, widths, head counts and the batch × sequence size.

A surrogate fitted at several input shapes (issue 44) adds :data:`SHAPE_INPUTS`, the logs of
the batch size and the sequence length, to these (:func:`shaped_feature_matrix`): batch and
sequence scale the costs differently (attention grows with the square of the sequence).
A surrogate fitted at one shape leaves them out, so its features are exactly as before.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edgetran.space import REFERENCE_SPACE, Architecture
from edgetran.space.costs import estimate_costs

#: Operation kinds of the cost model, with every ``c_K`` folded into ``conv``.
COST_KINDS = (
    "embeddings",
    "qkv",
    "relative_position",
    "sa_sdp",
    "sa_wma",
    "l_dft",
    "l_dct",
    "conv",
    "attention_output",
    "feed_forward",
    "projection",
    "pooler",
)
SHAPE_FEATURES = (
    "log_batch_x_seq",
    "layers",
    "hidden_mean",
    "hidden_max",
    "hidden_min",
    "heads_total",
    "heads_max",
    "ff_layers_total",
    "ff_width_mean",
    "log_flops",
    "log_parameters",
    "log_bytes",
)
#: Inputs added at several input shapes (see the module docstring).
SHAPE_INPUTS = ("log_batch_size", "log_seq_len")


def feature_names() -> list[str]:
    """The names of the analytic features, in column order."""
    embedding = [f"embedding_{i}" for i in range(REFERENCE_SPACE.embedding_length)]
    costs = [f"log_{q}_{kind}" for kind in COST_KINDS for q in ("flops", "params", "bytes")]
    return [*embedding, *costs, *SHAPE_FEATURES]


def architecture_features(
    arch: Architecture, batch_size: int = 1, seq_len: int = 128
) -> np.ndarray:
    """One feature row (see :func:`feature_names`)."""
    embedding = np.array(REFERENCE_SPACE.encode_normalised(arch))
    report = estimate_costs(arch, batch_size=batch_size, seq_len=seq_len)
    kinds = {kind: [0, 0, 0] for kind in COST_KINDS}
    for kind, cost in report.by_kind().items():
        key = "conv" if kind.startswith("c_") else kind
        values = kinds[key]
        values[0] += cost.flops
        values[1] += cost.parameters
        values[2] += cost.bytes
    costs = [math.log1p(v) for kind in COST_KINDS for v in kinds[kind]]
    hidden = [layer.hidden for layer in arch.layers]
    heads = [layer.num_heads for layer in arch.layers]
    ff = [w for layer in arch.layers for w in layer.ff]
    shape = [
        math.log(batch_size * seq_len),
        arch.num_layers,
        float(np.mean(hidden)),
        max(hidden),
        min(hidden),
        sum(heads),
        max(heads),
        len(ff),
        float(np.mean(ff)),
        math.log1p(report.flops),
        math.log1p(report.parameters),
        math.log1p(report.bytes),
    ]
    return np.concatenate([embedding, costs, shape])


def feature_matrix(
    archs: Sequence[Architecture], batch_size: int = 1, seq_len: int = 128
) -> np.ndarray:
    """``(n, d)`` features of several architectures at one input shape."""
    return np.stack([architecture_features(a, batch_size, seq_len) for a in archs])


def embedding_only(archs: Sequence[Architecture]) -> np.ndarray:
    """The raw (unnormalised) 37-integer embeddings: the reference surrogates' input."""
    return np.array([REFERENCE_SPACE.encode(a) for a in archs], dtype=float)


def shaped_feature_names() -> list[str]:
    """The columns of :func:`shaped_feature_matrix`."""
    return [*feature_names(), *SHAPE_INPUTS]


def shaped_feature_matrix(
    archs: Sequence[Architecture], shapes: Sequence[tuple[int, int]]
) -> np.ndarray:
    """``(n, d + 2)`` features of each architecture at its own ``(batch_size, seq_len)``,
    the cost features computed at that shape, then :data:`SHAPE_INPUTS`."""
    rows = [
        np.r_[architecture_features(arch, batch, seq), math.log(batch), math.log(seq)]
        for arch, (batch, seq) in zip(archs, shapes, strict=True)
    ]
    return np.stack(rows)
