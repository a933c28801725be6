"""The ``trees`` sampler: an extra-trees ensemble with UCB over the candidate pool.

A strong, cheap baseline for BOSHCODE (issue 14): after the same initial design (devices in
turn, ``BoshcodeSettings.n_initial`` pairs), each proposal fits extra-trees on the evaluated
pairs (the architecture encoding of ``BoshcodeSettings.encoding`` next to the device vector;
targets standardised) and picks the unevaluated pool candidate with the highest
``mean + k·σ`` over the trees. No gradient and no projection: the pool is scored whole.

It is registered as an Optuna sampler so that it lives in the plug-in registry and a study can
hold its trials; :func:`edgetran.search.study.run_search` asks its :meth:`pick_from_pool` (any
registered sampler with that method proposes from the pool this way).
"""

from __future__ import annotations

import numpy as np
import optuna


class TreesSampler(optuna.samplers.RandomSampler):
    """Extra-trees UCB over a pool. As an Optuna sampler it only stores trials.

    Args:
        seed: seeds each fit (with the step).
        n_trees: trees in the ensemble.
        ucb_k: weight of the spread across trees in ``mean + k·σ``.
    """

    def __init__(self, seed: int | None = None, n_trees: int = 100, ucb_k: float = 0.5) -> None:
        super().__init__(seed=seed)
        self.seed = 0 if seed is None else seed
        self.n_trees = n_trees
        self.ucb_k = ucb_k

    def pick_from_pool(self, x: np.ndarray, y: np.ndarray, pool: np.ndarray, step: int) -> int:
        """Index into ``pool (m, d)`` of the highest UCB after fitting on ``x (n, d)``, ``y (n,)``
        (to maximise); each fit is seeded by the seed and ``step``."""
        from sklearn.ensemble import ExtraTreesRegressor

        z = (y - np.mean(y)) / (np.std(y) or 1.0)
        model = ExtraTreesRegressor(
            n_estimators=self.n_trees, random_state=self.seed * 100_003 + step, n_jobs=1
        ).fit(x, z)
        per_tree = np.stack([tree.predict(pool) for tree in model.estimators_])
        return int(np.argmax(per_tree.mean(axis=0) + self.ucb_k * per_tree.std(axis=0)))
