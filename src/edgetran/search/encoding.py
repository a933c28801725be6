"""How an architecture enters BOSHCODE's architecture branch, GOBI and the projection.

- ``embedding``: the reference 37-integer embedding divided by each position's upper bound.
- ``features``: that embedding followed by the surrogates' analytic features
  (:mod:`edgetran.surrogate.features`: log FLOPs, parameters and bytes per operation kind, depth,
  widths, head counts), min–max scaled over a reference sample of candidates and clipped to
  [0, 1]. Every third embedding position is an index into 21,805 multisets of heads, which tells
  a smooth model next to nothing about the layer; the analytic features say how big the model
  is and what it costs.
- ``compact``: fifteen of those analytic features alone (:data:`COMPACT_FEATURES`: log FLOPs
  of each varying operation kind, depth, widths, heads, size), scaled the same way. Continuous
  and few, for a Gaussian process (Optuna's ``GPSampler`` takes 37 s a proposal on the
  38 mixed dimensions of the embedding and the device).

All three are deterministic functions of the architecture, cached because the pool is re-scored at
every step.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import numpy as np

from edgetran.search.objectives import SearchError
from edgetran.search.settings import ENCODINGS
from edgetran.search.table import Pair
from edgetran.space import REFERENCE_SPACE, Architecture
from edgetran.surrogate.features import architecture_features, feature_names

#: The ``compact`` encoding: what an architecture costs per operation kind, and its shape.
COMPACT_FEATURES = (
    "log_flops_sa_sdp",
    "log_flops_sa_wma",
    "log_flops_l_dft",
    "log_flops_l_dct",
    "log_flops_conv",
    "log_flops_relative_position",
    "log_flops_feed_forward",
    "layers",
    "hidden_mean",
    "hidden_max",
    "heads_total",
    "ff_layers_total",
    "ff_width_mean",
    "log_flops",
    "log_parameters",
)


#: What the forests' cost trend sees of an architecture (log FLOPs first).
SIZE_FEATURES = ("log_flops", "log_parameters", "log_bytes")


def size_columns(features: np.ndarray) -> np.ndarray:
    """The :data:`SIZE_FEATURES` columns of a ``features`` encoding ``(n, d)``."""
    names = feature_names()
    return features[:, [names.index(name) for name in SIZE_FEATURES]]


class ArchitectureEncoder:
    """``pairs → (n, d)`` architecture inputs in [0, 1]; :meth:`fit` sets the feature scale."""

    def __init__(self, kind: str = "embedding") -> None:
        if kind not in ENCODINGS:
            raise SearchError(f"encoding {kind!r} is unknown; allowed: {', '.join(ENCODINGS)}")
        self.kind = kind

    def fit(self, reference: Sequence[Pair]) -> ArchitectureEncoder:
        """Set the feature scale from ``reference`` pairs (nothing to set for the embedding)."""
        if self.kind != "embedding":
            raw = self._raw(reference)
            self.low_ = raw.min(axis=0)
            self.span_ = np.where(np.ptp(raw, axis=0) > 0, np.ptp(raw, axis=0), 1.0)
        return self

    def __call__(self, pairs: Sequence[Pair]) -> np.ndarray:
        """``(n, d)`` inputs in [0, 1]."""
        if self.kind == "embedding":
            return np.stack([_normalised(p.arch) for p in pairs])
        return np.clip((self._raw(pairs) - self.low_) / self.span_, 0.0, 1.0)

    def _raw(self, pairs: Sequence[Pair]) -> np.ndarray:
        raw = np.stack([_features(p.arch) for p in pairs])
        return raw[:, _compact_columns()] if self.kind == "compact" else raw


@functools.lru_cache(maxsize=65536)
def _normalised(arch: Architecture) -> tuple[float, ...]:
    return tuple(REFERENCE_SPACE.encode_normalised(arch))


@functools.lru_cache(maxsize=65536)
def _features(arch: Architecture) -> np.ndarray:
    return architecture_features(arch)


@functools.lru_cache(maxsize=1)
def _compact_columns() -> list[int]:
    names = feature_names()
    return [names.index(name) for name in COMPACT_FEATURES]


def arch_vector(pair: Pair) -> np.ndarray:
    """The pair's normalised architecture embedding (the Optuna samplers' coordinates)."""
    return np.asarray(_normalised(pair.arch))
