"""The ``gp`` sampler: Optuna's Gaussian-process sampler on fifteen continuous coordinates.

On the 37 integer embedding positions and the device (38 mixed dimensions), Optuna's
``GPSampler`` takes about 37 s a proposal, most of it optimising the acquisition over the
categorical-heavy space. Here it is asked in the ``compact`` encoding instead
(:data:`edgetran.search.encoding.COMPACT_FEATURES`: log FLOPs per operation kind, depth,
widths, heads and size, each scaled to [0, 1]) next to the device, and its proposal is
projected to the nearest unevaluated candidate in those coordinates, as every Optuna
sampler's is (:class:`edgetran.search.proposers.OptunaProposer`).
"""

from __future__ import annotations

import optuna


class FeatureGPSampler(optuna.samplers.GPSampler):
    """Optuna's ``GPSampler``; :class:`~edgetran.search.proposers.OptunaProposer` asks it in
    the trial parameters named by :attr:`coordinates` (``f0``…``f14`` in [0, 1] and
    ``device``)."""

    coordinates = "compact"
