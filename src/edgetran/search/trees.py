"""The ``trees`` proposer: an extra-trees ensemble with UCB over the candidate pool.

A strong, cheap baseline for BOSHCODE (issue 14): after the same initial design (devices in
turn, ``BoshcodeSettings.n_initial`` pairs), each proposal fits extra-trees on the evaluated
pairs (the architecture encoding of ``BoshcodeSettings.encoding`` next to the device vector;
targets standardised, pairs in flight at the worst target observed) and picks the
unevaluated pool candidate with the highest ``mean + k·σ`` over the trees. No gradient and
no projection: the pool is scored whole.
"""

from __future__ import annotations

import numpy as np

from edgetran.search.proposers import Proposal, Setup, SurrogateProposer, _with_fantasies


class TreesProposer(SurrogateProposer):
    """Extra-trees UCB over the pool, after BOSHCODE's initial design.

    Args:
        setup: the search's setup (its seed seeds each fit, with the step).
        n_trees: trees in the ensemble.
        ucb_k: weight of the spread across trees in ``mean + k·σ``.
    """

    def __init__(self, setup: Setup, n_trees: int = 100, ucb_k: float = 0.5) -> None:
        super().__init__(setup)
        self.n_trees, self.ucb_k = n_trees, ucb_k

    def choose(self, records, pending, pool, step, rng) -> Proposal:
        """The pool candidate of highest UCB over the trees."""
        pairs, y = _with_fantasies(records, pending, self.setup.settings, rng)
        index = self.pick(self.inputs(pairs), y, self.inputs(pool), step)
        return Proposal(pool[index], "trees")

    def pick(self, x: np.ndarray, y: np.ndarray, pool: np.ndarray, step: int) -> int:
        """Index into ``pool (m, d)`` of the highest UCB after fitting on ``x (n, d)``, ``y (n,)``
        (to maximise); each fit is seeded by the seed and ``step``."""
        from sklearn.ensemble import ExtraTreesRegressor

        z = (y - np.mean(y)) / (np.std(y) or 1.0)
        model = ExtraTreesRegressor(
            n_estimators=self.n_trees, random_state=self.setup.seed * 100_003 + step, n_jobs=1
        ).fit(x, z)
        per_tree = np.stack([tree.predict(pool) for tree in model.estimators_])
        return int(np.argmax(per_tree.mean(axis=0) + self.ucb_k * per_tree.std(axis=0)))
