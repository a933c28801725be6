"""The live evaluator's rungs (issue 42): the pair's costs first, then the training reports the
evaluation so far at each rung; a pruner's exception stops it."""

from __future__ import annotations

import numpy as np
import pytest

from edgetran.errors import SearchError
from edgetran.search.evaluators import Accuracy, LiveEvaluator
from edgetran.search.fidelity import RUNG_FRACTIONS, PrunedEvaluation
from edgetran.search.live import oracle_accuracy
from edgetran.search.table import Pair
from edgetran.store import Store
from edgetran.surrogate import DeviceSurrogate
from tests.conftest import fake_device
from tests.test_train import tiny_arch, tiny_budgets, write_task  # noqa: F401 (fixture)


@pytest.fixture(scope="module")
def surrogate():
    items = fake_device(20, "board", seed=4)
    return DeviceSurrogate(model_options={"n_models": 2, "n_estimators": 40}).fit(items)


def _curve(arch, run=0, on_rung=None):
    """An oracle that reports two rungs and ends at 0.72 ± 0.01."""
    for rung, (fidelity, accuracy) in enumerate(((0.5, 0.6), (1.0, 0.7))):
        if on_rung is not None:
            on_rung(rung, fidelity, accuracy)
    return Accuracy(0.72, 0.01)


def test_a_report_sees_the_costs_and_each_rungs_accuracy_and_the_result_is_unchanged(
    surrogate,
):
    evaluator = LiveEvaluator(_curve, {}, {"board": surrogate})
    assert evaluator.reports_rungs and evaluator.takes_run
    pair = evaluator.candidates(1, np.random.default_rng(0), set())[0]
    seen = []
    reported = evaluator.evaluate(pair, report=lambda *args: seen.append(args))
    plain = evaluator.evaluate(pair)
    assert reported == plain and plain.metrics["accuracy"] == 0.72 and plain.accuracy_std == 0.01
    assert [(r, f, e.metrics["accuracy"]) for r, f, e in seen] == [(0, 0.5, 0.6), (1, 1.0, 0.7)]
    for _, _, so_far in seen:
        assert so_far.accuracy_std is None and so_far.predicted == plain.predicted
        costs = {k: v for k, v in plain.metrics.items() if k != "accuracy"}
        assert {k: so_far.metrics[k] for k in costs} == costs and so_far.lower == plain.lower
    assert next(iter(plain.metrics)) == "accuracy"  # listed first, as always


def test_a_pruners_exception_propagates_and_a_plain_oracle_reports_no_rungs(surrogate):
    evaluator = LiveEvaluator(_curve, {}, {"board": surrogate})
    pair = evaluator.candidates(1, np.random.default_rng(0), set())[0]

    def prune(rung, fidelity, evaluation):
        raise PrunedEvaluation(evaluation, fidelity, rung)

    with pytest.raises(PrunedEvaluation) as pruned:
        evaluator.evaluate(pair, report=prune)
    assert pruned.value.rung == 0 and pruned.value.evaluation.metrics["accuracy"] == 0.6
    plain = LiveEvaluator(lambda arch: 0.5, {}, {"board": surrogate})
    assert not plain.reports_rungs
    with pytest.raises(SearchError, match="does not report rungs"):
        plain.evaluate(pair, report=prune)


@pytest.mark.usefixtures("tiny_budgets")
def test_the_oracle_reports_the_rungs_locally_and_takes_none_on_a_cluster(tmp_path):
    task = str(write_task(tmp_path / "task.csv"))
    with Store(tmp_path / "ws.db") as store:
        accuracy = oracle_accuracy(task, store, workspace=tmp_path / "ws")
        seen = []
        result = accuracy(tiny_arch(), on_rung=lambda *args: seen.append(args))
        assert [(r, f) for r, f, _ in seen] == list(enumerate(RUNG_FRACTIONS))
        assert 0 <= result.value <= 1 and result.std is not None
        on_cluster = oracle_accuracy(task, store, workspace=tmp_path / "ws", cluster=object())
        assert not LiveEvaluator(on_cluster, {}, {}).reports_rungs
        assert LiveEvaluator(on_cluster, {}, {}).takes_run
        evaluator = LiveEvaluator(accuracy, {(tiny_arch().hash, "board"): {"latency_s": 1.0}}, {})
        assert evaluator.evaluate(Pair(tiny_arch(), "board")).metrics["accuracy"] == result.value
