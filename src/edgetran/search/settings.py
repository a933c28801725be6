"""Settings of the co-search that the CLI shows before any work: light on purpose.

This module imports neither torch nor optuna, so ``edgetran search --help`` can print the
defaults at once; the classes that use these settings live in :mod:`edgetran.search.boshcode`
and :mod:`edgetran.search.study`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from edgetran.errors import SearchError

if TYPE_CHECKING:
    from edgetran.surrogate.nn import NetworkTraining

#: How BOSHCODE's architecture input is built (see :mod:`edgetran.search.encoding`).
ENCODINGS = ("embedding", "features", "compact")

#: BOSHCODE's surrogate: extra-trees per metric composed through the objective (default), or
#: the reference's teacher / student / NPN networks with GOBI.
BOSHCODE_SURROGATES = ("forests", "networks")

#: How the forests score the pool: UCB over all draws, or Thompson sampling (one draw a step).
ACQUISITIONS = ("ucb", "thompson")

#: What the co-search optimises: the reference's weighted objective, a Pareto front, or
#: accuracy alone (the most accurate pair within the budgets).
OBJECTIVES = ("paper", "pareto", "accuracy")

#: The paper objective's cost normalisers: this run's scale (the largest reference's measured
#: costs on the slowest device), the reference code's constants (1000 s, 2000 J, 300 W: its
#: tables of Raspberry Pis and A100s), or three numbers ``LATENCY_S,ENERGY_J,PEAK_POWER_W``.
NORMS = ("run", "reference")


def parse_norms(text: str) -> str | tuple[float, float, float]:
    """``run``, ``reference`` or three positive numbers ``LATENCY_S,ENERGY_J,PEAK_POWER_W``.

    Raises:
        SearchError: anything else, naming the allowed forms.
    """
    if text in NORMS:
        return text
    allowed = "run, reference, or LATENCY_S,ENERGY_J,PEAK_POWER_W (three numbers > 0)"
    try:
        numbers = tuple(float(part) for part in text.split(","))
    except ValueError:
        raise SearchError(f"norms={text!r} is invalid; allowed: {allowed}") from None
    if len(numbers) != 3 or not all(0 < n < float("inf") for n in numbers):
        raise SearchError(f"norms={text!r} is invalid; allowed: {allowed}")
    return numbers


@dataclass(frozen=True)
class BoshcodeSettings:
    """Surrogate and acquisition settings.

    Departures from the reference drivers, each measured on the replay benchmark
    (BENCHMARKS.md): 300 epochs (100 on warm refits) instead of 200; the initial design visits
    every device (in :mod:`edgetran.search.study`); architectures enter with the surrogates'
    analytic features (``encoding="features"``); and no α/β exploration (the reference drivers
    use α = β = 0.1): once every device has been seen, UCB and the fresh random GOBI starts
    explore enough, and each random or most-uncertain pick was an evaluation lost.
    ``second_order`` switches GOBI to the reference's AdaHessian.

    ``surrogate="forests"`` (the default since the benchmark suite, issue 14) replaces the
    networks and GOBI with :class:`~edgetran.search.forests.MetricForests` (``trees`` trees per
    forest) scoring the whole candidate pool; ``accuracy_gp`` adds a Gaussian process on the
    ``compact`` features beside the accuracy forest (off: on the suite's ``smooth`` and
    ``rugged`` problems it found the best pair once in eight runs against never, too few to
    call); ``acquisition="thompson"`` takes the best candidate of one draw a step instead of
    the UCB over all draws (screened on seed 0 of five suite problems: size-blind's best pair
    found at 141 where UCB missed it, stand-in's at 38 against 17; not the default).
    ``cost_trend`` is the share of cost trees fitted to the residuals of a ridge trend of the
    log costs (each device's offset and slope in log FLOPs, size slopes shared by all
    devices) instead of to the log costs themselves: 1 by default (issue 14: without it, the
    forests never learned that small models run fast on a device first measured on large
    ones); 0 is the forests as first measured.
    ``portfolio`` is the share of proposals after the initial design that Optuna's TPE makes
    instead of the surrogate, evenly interleaved (0.25: every fourth step); TPE learns from
    every evaluation of the search, the surrogate's included. Off by default: on the suite's
    real-shaped problems (issue 43, 10 seeds) 0.25 found ``needle``'s best pair in 10 of 10
    runs (the default: 8) but came later on ``noisy-boards`` and doubled ``real-shaped``'s
    regret after 50 evaluations.
    ``stalled_ucb_k`` is the forests' UCB ``k`` while the search has stalled (no better
    value in ``patience`` evaluations), on every ``stalled_every``-th step (a batch's steps
    counted one by one), as the networks switch their aleatoric spread in then; ``None``, or
    ``ucb_k``'s value, keeps ``ucb_k`` throughout. Issue 43 (BENCHMARKS.md): 1.0 on every
    second step, the default, found ``needle``'s best pair in 30 runs of 30 where ``ucb_k``
    alone missed it in 7, and kept every real-shaped problem's tail at or below the best
    baseline's; on every stalled step it also found the needle but found ``size-blind``'s
    best pair in 2 runs of 10 (``ucb_k`` alone: 5) and, at ``--parallel 4``, 4 of 10 (7).
    ``ucb_k``, ``n_initial`` and ``encoding`` apply to both surrogates, the network and GOBI
    settings only to ``surrogate="networks"``, ``trees``, ``accuracy_gp``,
    ``acquisition``, ``cost_trend``, ``stalled_ucb_k`` and ``stalled_every`` only to the
    forests.
    """

    ucb_k: float = 0.5
    alpha: float = 0.0
    beta: float = 0.0
    starts: int = 10
    gobi_steps: int = 50
    gobi_lr: float = 0.05
    epochs: int = 300
    warm_epochs: int = 100
    batch_size: int = 32
    mc_samples: int = 10
    patience: int = 10
    n_initial: int = 10
    encoding: str = "features"
    second_order: bool = False
    surrogate: str = "forests"
    trees: int = 100
    accuracy_gp: bool = False
    acquisition: str = "ucb"
    cost_trend: float = 1.0
    portfolio: float = 0.0
    stalled_ucb_k: float | None = 1.0
    stalled_every: int = 2

    def __post_init__(self) -> None:
        if self.acquisition not in ACQUISITIONS:
            raise SearchError(
                f"acquisition={self.acquisition!r}; allowed: {', '.join(ACQUISITIONS)}"
            )
        if self.surrogate not in BOSHCODE_SURROGATES:
            raise SearchError(
                f"surrogate={self.surrogate!r}; allowed: {', '.join(BOSHCODE_SURROGATES)}"
            )
        if self.encoding not in ENCODINGS:
            raise SearchError(f"encoding={self.encoding!r}; allowed: {', '.join(ENCODINGS)}")
        if not (self.alpha >= 0 and self.beta >= 0 and self.alpha + self.beta <= 1):
            raise SearchError(
                f"alpha={self.alpha}, beta={self.beta}; expected α, β ≥ 0 with α + β ≤ 1"
            )
        if not 0.0 <= self.cost_trend <= 1.0:
            raise SearchError(f"cost_trend={self.cost_trend}; expected a share in [0, 1]")
        if not 0.0 <= self.portfolio < 1.0:
            raise SearchError(f"portfolio={self.portfolio}; expected a share in [0, 1)")
        if self.stalled_ucb_k is not None and not self.stalled_ucb_k >= 0:
            raise SearchError(f"stalled_ucb_k={self.stalled_ucb_k}; expected None or k ≥ 0")
        names = (
            "starts",
            "gobi_steps",
            "epochs",
            "batch_size",
            "n_initial",
            "trees",
            "stalled_every",
        )
        for name in names:
            if getattr(self, name) < 1:
                raise SearchError(f"{name}={getattr(self, name)}; expected an integer ≥ 1")
        if self.mc_samples < 2 or self.warm_epochs < 0:
            raise SearchError(
                f"mc_samples={self.mc_samples}, warm_epochs={self.warm_epochs}; expected "
                "mc_samples ≥ 2 (a spread needs two draws) and warm_epochs ≥ 0"
            )

    def training(self, warm: bool) -> NetworkTraining:
        """How a fit trains the networks (``warm_epochs`` when warm-started); the learning rates
        and AdamW's weight decay are the ones the replay benchmark was measured with."""
        from edgetran.surrogate.nn import NetworkTraining

        return NetworkTraining(
            epochs=self.warm_epochs if warm else self.epochs,
            batch_size=self.batch_size,
            learning_rate=2e-3,
            npn_learning_rate=3e-3,
            weight_decay=0.01,
            mc_samples=self.mc_samples,
        )
