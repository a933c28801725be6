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


class PrunedEvaluation(Exception):  # a control-flow signal, like optuna.TrialPruned
    """The pruner stopped this evaluation: ``evaluation`` holds the metrics at the last rung
    reported, ``fidelity`` the fraction of the budget's training it reached (0 < f < 1)."""

    def __init__(self, evaluation: Evaluation, fidelity: float, rung: int) -> None:
        super().__init__(f"pruned at rung {rung} (fidelity {fidelity:g})")
        self.evaluation, self.fidelity, self.rung = evaluation, fidelity, rung
