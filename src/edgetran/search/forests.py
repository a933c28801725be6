"""BOSHCODE's default surrogate: one extra-trees forest per metric, composed through the objective.

The co-search maximises a known function of four metrics (the paper objective, or a ParEGO
scalarisation), and the metrics depend on different things: accuracy on the architecture alone
(the same on every device), latency, energy and peak power on the architecture and the
device. A surrogate of the objective itself (the networks of :mod:`edgetran.search.boshcode`,
or the ``trees`` sampler) must learn that from the data; here it is built in:

- accuracy is learned from the architecture input only, so every evaluated pair informs it,
  whichever device it was measured on;
- each hardware metric is learned as its logarithm (costs span orders of magnitude across
  devices) from the architecture next to the device: a ridge regression first (the trend:
  each device's offset and slope in log FLOPs, and slopes in the model's size shared by every
  device), then a forest of what it leaves. Trees alone split on the device early and give a device
  measured on a few large models those measurements everywhere, so a search never learns that
  small models run fast there (on the suite's ``capped`` problem, the best pairs are small
  models on the M1 GPU, and a search without the trend measured two pairs on it in 150).

Uncertainty comes from the draws (epistemic): tree ``t`` of every forest gives one joint draw
of the four metrics per candidate (and, for accuracy, a Gaussian process beside the trees adds
as many posterior samples), so the objective and the constraints are evaluated on each
draw. Across draws, the objective's mean and spread form the UCB ``mean + k·σ``, and the share
of draws within the constraints is the candidate's probability of feasibility, which ranks
unlikely-feasible candidates below every likely one. (A surrogate of a penalised objective, as
the networks and ``trees`` are given, learns the constraint and the objective as one jump.)
"""

from __future__ import annotations

import numpy as np

from edgetran.search.objectives import METRIC_KEYS

#: Costs are learned as logs; a metric recorded as 0 enters as this.
SMALLEST_COST = 1e-12
#: Candidates feasible in fewer draws than this share rank below every likelier one.
LIKELY_FEASIBLE = 0.5
#: Keeps the seeds of the cost trees on no trend apart from the others' (any step's).
PLAIN_SEED_OFFSET = 50_000
#: Penalties the cost trend's ridge regression chooses among.
RIDGE_PENALTIES = np.logspace(-3, 3, 13)


class MetricForests:
    """Per-metric surrogates composed by draws: accuracy from the architecture alone, the logs
    of latency, energy and peak power together (one multi-output forest: the costs move
    together, and one forest costs a third of three) from the architecture next to the device.

    A share ``cost_trend`` of the cost trees fit the residuals of the log costs' trend
    (:class:`_Trend`, on ``size`` and ``xd``; their draws: the trend plus each tree), the rest
    the log costs themselves: where the two models disagree (a device measured on a few large
    models), the draws do too, and the spread explores there.

    Accuracy is learned by an extra-trees forest on ``xa (n, d_a)`` and, with ``gp_inputs``,
    also by a Gaussian process (Matérn 5/2 with a length scale per input, and a noise term) on
    those few continuous architecture features: trees cannot extrapolate, and a landscape's
    best model often lies beyond the models seen. The two are a mixture: the draws of
    accuracy are the forest's trees followed by as many samples of the GP's posterior
    (per candidate), each paired with one tree of the cost forest.

    The GP's kernel hyperparameters are fitted on the first ``gp_refit_every``·⌊n /
    ``gp_refit_every``⌋ pairs and reused until that count moves on (one optimisation every
    ``gp_refit_every`` evaluations, not every step), so a fit depends on the pairs alone and a
    resumed search proposes what an uninterrupted one would.

    Args:
        n_trees: trees per forest.
        seed: seeds each fit and the GP's draws (with the step).
        gp_refit_every: evaluations between two fits of the GP's hyperparameters.
        cost_trend: the share of cost trees that learn the residuals of a ridge trend (1: all,
            0: none).
    """

    def __init__(
        self, n_trees: int = 100, seed: int = 0, gp_refit_every: int = 10, cost_trend: float = 1.0
    ) -> None:
        self.n_trees = n_trees
        self.seed = seed
        self.gp_refit_every = gp_refit_every
        self.cost_trend = cost_trend

    def fit(
        self,
        xa: np.ndarray,
        xd: np.ndarray,
        metrics: np.ndarray,
        step: int = 0,
        gp_inputs: np.ndarray | None = None,
        size: np.ndarray | None = None,
    ) -> MetricForests:
        """Learn from ``metrics (n, 4)``, columns in :data:`METRIC_KEYS` order (accuracy
        first); ``gp_inputs (n, d_g)``: the GP's architecture inputs (None: forests only);
        ``size (n, d_s)``: what the cost trend sees of the architecture, log FLOPs first
        (None: all of ``xa``)."""
        self.step_ = step
        seed = self.seed * 100_003 + step * 2
        self.accuracy_ = _extra_trees(xa, metrics[:, 0], self.n_trees, seed)
        costs = np.log(np.maximum(metrics[:, 1:], SMALLEST_COST))
        inputs = np.hstack([xa, xd])
        on_trend = round(self.cost_trend * self.n_trees)
        self.costs_ = []  # (trend, its trees): the trend's trees first
        if on_trend:
            trend_size = xa if size is None else size
            trend = _Trend().fit(trend_size, xd, costs)
            residuals = costs - trend.predict(trend_size, xd)
            self.costs_.append((trend, _extra_trees(inputs, residuals, on_trend, seed + 1)))
        if on_trend < self.n_trees:
            plain_seed = seed + 1 if not on_trend else seed + 1 + 2 * PLAIN_SEED_OFFSET
            plain = _extra_trees(inputs, costs, self.n_trees - on_trend, plain_seed)
            self.costs_.append((_NoTrend(costs), plain))
        self.gp_ = None if gp_inputs is None else self._fit_gp(gp_inputs, metrics[:, 0])
        return self

    def draws(
        self,
        xa: np.ndarray,
        xd: np.ndarray,
        gp_inputs: np.ndarray | None = None,
        size: np.ndarray | None = None,
    ) -> dict[str, np.ndarray]:
        """``metric → (T, m)`` in the metrics' own units: draw ``t`` is tree ``t`` of each
        forest; with a GP, ``T = 2·n_trees``, the second half its posterior samples of
        accuracy paired with the cost trees again."""
        accuracy = _per_tree(self.accuracy_, xa)
        inputs = np.hstack([xa, xd])
        trend_inputs = (xa if size is None else size, xd)
        costs = np.exp(np.concatenate([
            _per_tree(trees, inputs) + trend.predict(*trend_inputs) for trend, trees in self.costs_
        ]))  # fmt: skip
        if self.gp_ is not None:
            if gp_inputs is None:
                raise ValueError("this fit has a GP: draws need its gp_inputs")
            mean, std = self.gp_.predict(gp_inputs, return_std=True)
            rng = np.random.default_rng([self.seed, self.step_])
            samples = mean + std * rng.standard_normal((self.n_trees, len(mean)))
            accuracy = np.concatenate([accuracy, samples])
            costs = np.concatenate([costs, costs])
        return {"accuracy": accuracy} | {
            key: costs[:, :, j] for j, key in enumerate(METRIC_KEYS[1:])
        }

    def _fit_gp(self, x: np.ndarray, y: np.ndarray):
        """The accuracy GP on ``x (n, d_g)``, with hyperparameters from the refit schedule."""
        import warnings

        from sklearn.exceptions import ConvergenceWarning
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        counted = max(len(y) // self.gp_refit_every * self.gp_refit_every, min(len(y), 2))
        with warnings.catch_warnings():
            # A length scale at its bound says that input does not matter: fine here.
            warnings.simplefilter("ignore", ConvergenceWarning)
            if getattr(self, "kernel_for_", None) != counted:
                prior = ConstantKernel(1.0, (1e-3, 1e3)) * Matern(
                    np.ones(x.shape[1]), (1e-2, 1e2), nu=2.5
                ) + WhiteKernel(1e-2, (1e-6, 1.0))
                tuned = GaussianProcessRegressor(prior, normalize_y=True)
                self.kernel_ = tuned.fit(x[:counted], y[:counted]).kernel_
                self.kernel_for_ = counted
            gp = GaussianProcessRegressor(self.kernel_, normalize_y=True, optimizer=None)
            return gp.fit(x, y)


def _extra_trees(x: np.ndarray, y: np.ndarray, n_trees: int, seed: int) -> list:
    """The trees of ``ExtraTreesRegressor(n_trees, random_state=seed)`` fitted to ``y (n[,
    outputs])`` at ``x (n, d)``, tree for tree (the same per-tree seeds), without the
    ensemble's per-tree cloning and checks of the same input, which took half a fit."""
    import sklearn
    from sklearn.tree import ExtraTreeRegressor

    seeds = np.random.RandomState(seed).randint(np.iinfo(np.int32).max, size=n_trees)
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    y64 = np.ascontiguousarray(y, dtype=np.float64)
    with sklearn.config_context(skip_parameter_validation=True):
        return [
            ExtraTreeRegressor(random_state=int(s)).fit(x32, y64, check_input=False) for s in seeds
        ]


def _per_tree(trees: list, x: np.ndarray) -> np.ndarray:
    """``(T, m[, outputs])``: each tree's prediction at ``x (m, d)``, straight from its
    ``tree_`` (what ``predict`` returns, without checking the same input once per tree)."""
    x32 = np.ascontiguousarray(x, dtype=np.float32)
    values = np.stack([tree.tree_.predict(x32) for tree in trees])
    return values[..., 0]  # (m, [outputs,] 1): one value per output for a regressor


class _NoTrend:
    """The trend of a forest fitted to the log costs themselves: zero."""

    def __init__(self, y: np.ndarray) -> None:
        self.outputs = y.shape[1:]

    def predict(self, size: np.ndarray, xd: np.ndarray) -> np.ndarray:
        return np.zeros((len(size), *self.outputs))


class _Trend:
    """Log cost ≈ the device's offset + its own slope in log FLOPs + slopes in ``size``
    shared by every device: a ridge regression on ``[size, xd, xd·size[:, 0]]``, each cost's
    penalty chosen by leave-one-out error from :data:`RIDGE_PENALTIES`. Shared slopes carry
    what large devices teach to a device measured on a few models; the penalised slopes per
    device let a device's cost stay flat where it is (peak power on a board barely moves
    with the model, on a GPU it grows)."""

    def fit(self, size: np.ndarray, xd: np.ndarray, y: np.ndarray) -> _Trend:
        from sklearn.linear_model import RidgeCV

        self.ridge_ = None
        if len(size) >= 3:  # leave-one-out needs a few pairs
            ridge = RidgeCV(alphas=RIDGE_PENALTIES, alpha_per_target=True)
            self.ridge_ = ridge.fit(self._design(size, xd), y)
        self.mean_ = y.mean(axis=0)
        return self

    def predict(self, size: np.ndarray, xd: np.ndarray) -> np.ndarray:
        if self.ridge_ is None:
            return np.tile(self.mean_, (len(size), 1))
        return self.ridge_.predict(self._design(size, xd))

    @staticmethod
    def _design(size: np.ndarray, xd: np.ndarray) -> np.ndarray:
        return np.hstack([size, xd, xd * size[:, :1]])


def feasible_ucb(values: np.ndarray, feasible: np.ndarray, ucb_k: float) -> np.ndarray:
    """``(m,)`` scores from draws ``(T, m)`` of the objective and of feasibility: the UCB
    ``mean + k·σ`` where at least :data:`LIKELY_FEASIBLE` of the draws are feasible; below
    that, ranked under every likely-feasible candidate by their probability of feasibility,
    then by UCB."""
    ucb = values.mean(axis=0) + ucb_k * values.std(axis=0)
    chance = feasible.mean(axis=0)
    # Chances are multiples of 1/T; a tie-break under 1/T keeps their order.
    tie_break = (ucb - ucb.min()) / (np.ptp(ucb) or 1.0) * 0.99 / len(values)
    unlikely = ucb.min() - 2.0 + chance + tie_break
    return np.where(chance >= LIKELY_FEASIBLE, ucb, unlikely)
