"""Multi-fidelity evaluations: the rungs at which a training reports, and a pruned evaluation.

A search with a pruner (``--pruner median|sha|hyperband``: Optuna's ``MedianPruner``,
``SuccessiveHalvingPruner``, ``HyperbandPruner``) hands the evaluator a :data:`Reporter`. At
each rung of the pair's training the evaluator builds the :class:`Evaluation` so far (the
pair's costs, the accuracy at that rung) and calls ``report(rung, fidelity, evaluation)``; the
search scores it, tells the study's trial (``trial.report(value, rung)``) and, when the pruner
says so, raises :class:`PrunedEvaluation` through the evaluator. A pruned pair is stored as a
PRUNED trial with its last rung's accuracy and the fidelity it reached: information for the
proposers, never a search's best pair.
"""

from __future__ import annotations

from collections.abc import Callable

from edgetran.search.evaluators import Evaluation

#: ``--pruner`` choices: none, or Optuna's ``MedianPruner``, ``SuccessiveHalvingPruner``,
#: ``HyperbandPruner``.
PRUNERS: tuple[str, ...] = ("none", "median", "sha", "hyperband")

#: The fractions of a budget's training steps at which a training reports its dev accuracy:
#: geometric, the last one the full budget.
RUNG_FRACTIONS: tuple[float, ...] = (0.125, 0.25, 0.5, 1.0)

#: ``report(rung, fidelity, evaluation)``: rung index (0, 1, …), the fraction of the budget's
#: training done, and the evaluation so far; raises :class:`PrunedEvaluation` to stop it.
Reporter = Callable[[int, float, Evaluation], None]


def optuna_pruner(name: str):
    """Optuna's pruner for ``--pruner name``, set for :data:`RUNG_FRACTIONS`' four rungs
    reported at steps 0…3 (the rung index); ``none`` is ``NopPruner``.

    ``median`` prunes a training whose value at a rung is below the median of the earlier
    trials' at that rung, once five trials reported; ``sha`` keeps the best half at steps 1
    and 2 (a quarter and half of the training); ``hyperband`` runs two such brackets, one of
    them pruning nothing, so it hedges against an early rung that misleads."""
    import optuna

    if name not in PRUNERS:
        from edgetran.errors import SearchError

        raise SearchError(f"pruner {name!r} is unknown; allowed: {', '.join(PRUNERS)}")
    last = len(RUNG_FRACTIONS) - 1
    if name == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=5, n_warmup_steps=0)
    if name == "sha":
        return optuna.pruners.SuccessiveHalvingPruner(min_resource=1, reduction_factor=2)
    if name == "hyperband":
        return optuna.pruners.HyperbandPruner(
            min_resource=1, max_resource=last, reduction_factor=2
        )
    return optuna.pruners.NopPruner()


class PrunedEvaluation(Exception):  # a control-flow signal, like optuna.TrialPruned
    """The pruner stopped this evaluation: ``evaluation`` holds the metrics at the last rung
    reported, ``fidelity`` the fraction of the budget's training it reached (0 < f < 1)."""

    def __init__(self, evaluation: Evaluation, fidelity: float, rung: int) -> None:
        super().__init__(f"pruned at rung {rung} (fidelity {fidelity:g})")
        self.evaluation, self.fidelity, self.rung = evaluation, fidelity, rung
