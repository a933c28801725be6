"""Co-search: objectives, replay tables, every sampler, determinism, resume, bad tables."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

from edgetran.plugins import list_samplers
from edgetran.search import (
    Accuracy,
    Boshcode,
    BoshcodeSettings,
    Constraints,
    PaperObjective,
    ReplayEvaluator,
    SearchError,
    SearchSettings,
    pareto_mask,
    read_table,
    run_search,
)
from edgetran.search.encoding import ArchitectureEncoder
from edgetran.search.forests import MetricForests, feasible_ucb
from edgetran.search.objectives import METRIC_KEYS
from edgetran.search.settings import BOSHCODE_SURROGATES
from edgetran.space import NAMED_ARCHITECTURES, REFERENCE_SPACE, Architecture
from edgetran.surrogate.nn import combined_spread
from edgetran.testing import synthetic_table as write_table
from tests.conftest import search_resumed_after

FAST = BoshcodeSettings(epochs=20, warm_epochs=5, starts=3, gobi_steps=5, n_initial=4)
#: The reference's networks and GOBI, trained briefly (``FAST`` searches with the forests).
NETWORKS = replace(FAST, surrogate="networks")


@pytest.fixture
def table(tmp_path: Path) -> Path:
    return write_table(tmp_path / "table.jsonl")


def test_paper_objective_matches_the_reference_formula():
    m = {"accuracy": 0.8, "latency_s": 100.0, "energy_j": 200.0, "peak_power_w": 30.0}
    expected = 0.5 * 0.8 + 0.2 * 0.9 + 0.2 * 0.9 + 0.1 * 0.9
    assert PaperObjective().value(m) == pytest.approx(expected)


def test_constraints_use_the_pessimistic_end_of_predictions():
    c = Constraints(max_latency_ms=10, min_accuracy=0.7)
    m = {"accuracy": 0.75, "latency_s": 0.008, "energy_j": 1.0, "peak_power_w": 5.0}
    assert c.violations(m) == []
    upper = {**m, "latency_s": 0.012}
    lower = {**m, "accuracy": 0.65}
    assert c.violations(m, upper, lower) == ["max_latency_ms", "min_accuracy"]


def test_pareto_mask():
    points = [[0.8, 1, 1, 1], [0.7, 2, 2, 2], [0.9, 3, 1, 1], [0.8, 1, 1, 1]]
    assert pareto_mask(points).tolist() == [True, False, True, True]


@pytest.mark.parametrize("sampler", list_samplers())
def test_every_sampler_searches_recorded_pairs_only(table, sampler):
    evaluator = ReplayEvaluator(table)
    settings = SearchSettings(sampler=sampler, budget=10, seed=1, boshcode=FAST)
    out = run_search(evaluator, settings).to_dict()
    assert out["evaluations"] == 10 == len(out["history"])
    keys = {f"{r.pair.arch.hash}@{r.pair.device}" for r in run_search(evaluator, settings).records}
    assert len(keys) == 10 and keys <= set(evaluator.table)
    best = out["best"]
    assert best["objective"] == max(out["history"])
    assert out["history"][out["evaluations_to_best"] - 1] == best["objective"]
    assert set(best["arch"]) == {"l", "o", "h", "f"}


@pytest.mark.parametrize("boshcode", [FAST, NETWORKS], ids=BOSHCODE_SURROGATES)
def test_a_search_is_deterministic_for_a_seed(table, boshcode):
    evaluator = ReplayEvaluator(table)
    settings = SearchSettings(sampler="boshcode", budget=9, seed=3, boshcode=boshcode)
    first = run_search(evaluator, settings).to_dict()["history"]
    assert run_search(evaluator, settings).to_dict()["history"] == first
    other = run_search(evaluator, replace(settings, seed=4)).to_dict()["history"]
    assert other != first


@pytest.mark.parametrize("surrogate", BOSHCODE_SURROGATES)
def test_boshcode_finds_the_best_pair_of_a_small_table(tmp_path, surrogate):
    evaluator = ReplayEvaluator(write_table(tmp_path / "t.jsonl", n_archs=30, seed=2))
    best = max(PaperObjective().value(m) for _, m in evaluator.table.values())
    boshcode = BoshcodeSettings(epochs=60, warm_epochs=20, surrogate=surrogate)
    settings = SearchSettings(sampler="boshcode", budget=30, seed=0, boshcode=boshcode)
    assert max(run_search(evaluator, settings).to_dict()["history"]) == pytest.approx(best)


def test_forests_learn_accuracy_from_the_architecture_alone():
    rng = np.random.default_rng(0)
    xa, xd = rng.random((40, 3)), np.eye(2)[rng.integers(0, 2, 40)]
    metrics = np.column_stack([
        0.6 + 0.3 * xa[:, 0], 1e-3 * (1 + 9 * xd[:, 1]), 0.1 * (1 + xa[:, 1]), 5 + 20 * xd[:, 1]
    ])  # fmt: skip
    forests = MetricForests(n_trees=20, seed=1).fit(xa, xd, metrics, step=2)
    probe = rng.random((5, 3))
    on_edge = forests.draws(probe, np.tile([1.0, 0.0], (5, 1)))
    on_gpu = forests.draws(probe, np.tile([0.0, 1.0], (5, 1)))
    assert all(d.shape == (20, 5) for d in on_edge.values())
    assert np.array_equal(on_edge["accuracy"], on_gpu["accuracy"])  # same on every device
    assert (on_gpu["latency_s"].mean(axis=0) > 3 * on_edge["latency_s"].mean(axis=0)).all()
    assert all((d > 0).all() for k, d in on_edge.items() if k != "accuracy")
    again = MetricForests(n_trees=20, seed=1).fit(xa, xd, metrics, step=2)
    on_both = probe[:, :2]
    assert np.array_equal(again.draws(probe, on_both)["latency_s"],
                          forests.draws(probe, on_both)["latency_s"])  # fmt: skip


def _linear_accuracy(n: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    xa = rng.random((n, 3)) * [0.5, 1, 1]  # models seen: the first input below 0.5
    xd = np.eye(2)[rng.integers(0, 2, n)]
    metrics = np.column_stack([0.6 + 0.2 * xa[:, 0], np.full(n, 1e-3), np.full(n, 0.1),
                               5 + 20 * xd[:, 1]])  # fmt: skip
    return xa, xd, metrics


def test_the_accuracy_gp_extrapolates_where_trees_cannot():
    xa, xd, metrics = _linear_accuracy(30)
    forests = MetricForests(n_trees=20, seed=0).fit(xa, xd, metrics, gp_inputs=xa)
    beyond = np.array([[1.0, 0.5, 0.5]])
    accuracy = forests.draws(beyond, xd[:1], gp_inputs=beyond)["accuracy"]
    assert accuracy.shape == (40, 1)
    trees, gp = accuracy[:20], accuracy[20:]
    assert trees.max() <= metrics[:, 0].max() < np.median(gp)
    with pytest.raises(ValueError, match="gp_inputs"):
        forests.draws(beyond, xd[:1])


def test_the_gp_refit_schedule_depends_on_the_pairs_alone():
    """A model refitted step by step (as a search does) and a fresh one (as a resumed search
    has) make the same draws: the kernel is tuned on the first 10·⌊n/10⌋ pairs."""
    xa, xd, metrics = _linear_accuracy(14)
    stepwise = MetricForests(n_trees=5, seed=3)
    for n in range(8, 15):
        stepwise.fit(xa[:n], xd[:n], metrics[:n], step=n, gp_inputs=xa[:n])
    fresh = MetricForests(n_trees=5, seed=3).fit(xa, xd, metrics, step=14, gp_inputs=xa)
    probe = np.random.default_rng(1).random((6, 3))
    a = stepwise.draws(probe, xd[:6], gp_inputs=probe)["accuracy"]
    b = fresh.draws(probe, xd[:6], gp_inputs=probe)["accuracy"]
    assert stepwise.kernel_for_ == fresh.kernel_for_ == 10 and np.array_equal(a, b)


def test_forests_are_sklearns_extra_trees_tree_for_tree():
    from sklearn.ensemble import ExtraTreesRegressor

    from edgetran.search.forests import _extra_trees, _per_tree

    rng = np.random.default_rng(2)
    x, y, probe = rng.random((30, 4)), rng.random((30, 3)), rng.random((7, 4))
    for target in (y[:, 0], y):
        reference = ExtraTreesRegressor(n_estimators=6, random_state=11).fit(x, target)
        expected = np.stack([tree.predict(probe) for tree in reference.estimators_])
        assert np.array_equal(_per_tree(_extra_trees(x, target, 6, 11), probe), expected)


def _undersampled_device(n: int = 60):
    """Log latency = log FLOPs (the first input) + the device's offset; device 1 was measured
    twice, both on large models."""
    rng = np.random.default_rng(4)
    xa = rng.random((n, 3))
    device = np.zeros(n, dtype=int)
    device[:2] = 1
    xa[:2, 0] = [0.9, 0.95]
    xd = np.eye(2)[device]
    latency = np.exp(4 * xa[:, 0] + 3 * device) * 1e-3
    metrics = np.column_stack([0.6 + 0.2 * xa[:, 1], latency, latency * 10, np.full(n, 5.0)])
    return xa, xd, metrics


def test_a_linear_trend_carries_what_one_device_teaches_to_another():
    """Trees cannot say how a device measured twice behaves on models unlike those two (they
    either leave it with the other devices or give it its two measurements everywhere); a
    ridge trend under the trees carries the FLOPs slope and the device's offset over."""
    xa, xd, metrics = _undersampled_device()
    small = np.array([[0.1, 0.5, 0.5]])
    truth = np.exp(0.4 + 3) * 1e-3
    on_device_1 = np.array([[0.0, 1.0]])
    plain = MetricForests(n_trees=20, seed=0, cost_trend=False).fit(xa, xd, metrics)
    trend = MetricForests(n_trees=20, seed=0).fit(xa, xd, metrics)
    guess = {name: np.median(model.draws(small, on_device_1)["latency_s"])
             for name, model in (("plain", plain), ("trend", trend))}  # fmt: skip
    assert abs(np.log(guess["plain"] / truth)) > np.log(5)
    assert abs(np.log(guess["trend"] / truth)) < np.log(2)
    seen = trend.draws(xa[:5], xd[:5])["latency_s"]
    np.testing.assert_allclose(np.median(seen, axis=0), metrics[:5, 1], rtol=1e-6)
    half = MetricForests(n_trees=20, seed=0, cost_trend=0.5).fit(xa, xd, metrics)
    both = half.draws(small, on_device_1)["latency_s"][:, 0]  # trend's trees, then plain ones
    assert abs(np.log(np.median(both[:10]) / truth)) < np.log(2)
    assert abs(np.log(np.median(both[10:]) / truth)) > np.log(5)
    with pytest.raises(SearchError, match="cost_trend"):
        BoshcodeSettings(cost_trend=1.5)


def test_feasible_ucb_ranks_unlikely_feasible_candidates_last():
    values = np.array([[0.9, 0.5, 0.8, 0.7], [0.9, 0.6, 0.8, 0.9]])  # (draws, candidates)
    feasible = np.array([[False, True, True, False], [False, True, False, True]])
    scores = feasible_ucb(values, feasible, ucb_k=0.5)
    # Candidate 0 (never feasible) ranks last despite the highest mean; 2 and 3 (half of the
    # draws) count as likely feasible, by UCB.
    assert np.argsort(-scores).tolist() == [3, 2, 1, 0]
    none_likely = feasible_ucb(values, np.array([[True, False, False, False]] * 2) & False, 0.5)
    assert np.argmax(none_likely) == 0  # by UCB among equally unlikely ones


def test_constraints_within_agrees_with_violations():
    c = Constraints(max_latency_ms=10, max_peak_power_w=20, min_accuracy=0.7)
    rng = np.random.default_rng(3)
    draws = {
        "accuracy": rng.uniform(0.6, 0.8, (4, 6)),
        "latency_s": rng.uniform(0, 0.02, (4, 6)),
        "energy_j": rng.uniform(0, 1, (4, 6)),
        "peak_power_w": rng.uniform(10, 30, (4, 6)),
    }
    within = c.within(draws)
    for i, j in np.ndindex(4, 6):
        assert within[i, j] == (not c.violations({k: v[i, j] for k, v in draws.items()}))
    assert Constraints().within(draws).all()


def test_pareto_scalarisation_of_draws_matches_the_targets(table):
    from edgetran.search.proposers import _objective_function, _targets

    settings = SearchSettings(objective="pareto", constraints=Constraints(max_latency_ms=3))
    records = run_search(ReplayEvaluator(table), replace(settings, sampler="random", budget=8))
    records = records.records
    targets = _targets(records, settings, np.random.default_rng(4))
    scalarise = _objective_function(records, settings, np.random.default_rng(4))
    metrics = {k: np.array([[r.evaluation.metrics[k] for r in records]]) for k in METRIC_KEYS}
    penalty = np.array([0.0 if r.feasible else 1.0 for r in records])
    assert np.allclose(scalarise(metrics)[0] - penalty, targets)


def test_forests_lie_about_pairs_in_flight(table):
    from edgetran.search.proposers import _metric_fantasies

    records = run_search(ReplayEvaluator(table), SearchSettings(sampler="random", budget=5))
    pending = [p for p, _ in ReplayEvaluator(table).table.values()][:2]
    pairs, metrics = _metric_fantasies(records.records, pending)
    seen = np.array([[r.evaluation.metrics[k] for k in METRIC_KEYS] for r in records.records])
    assert pairs[-2:] == pending and np.array_equal(metrics[:5], seen)
    worst = [seen[:, 0].min(), *seen[:, 1:].max(axis=0)]
    assert metrics[5:].tolist() == [worst, worst]


def test_thompson_sampling_takes_one_draw_a_step(table):
    boshcode = replace(FAST, acquisition="thompson")
    settings = SearchSettings(sampler="boshcode", budget=9, seed=1, boshcode=boshcode)
    first = run_search(ReplayEvaluator(table), settings).records
    assert [r.how for r in first][4:] == ["thompson"] * 5
    again = run_search(ReplayEvaluator(table), settings).records
    assert [r.pair.key for r in again] == [r.pair.key for r in first]
    with pytest.raises(SearchError, match="allowed: ucb, thompson"):
        BoshcodeSettings(acquisition="ei")


def test_a_stalled_search_explores_with_its_own_k(table):
    from edgetran.search.evaluators import device_matrix
    from edgetran.search.proposers import ForestsProposer, Setup

    evaluator = ReplayEvaluator(table)
    records = run_search(evaluator, SearchSettings(sampler="random", budget=12, seed=0)).records
    boshcode = replace(FAST, stalled_ucb_k=2.0, stalled_every=1, patience=3)
    settings = SearchSettings(sampler="boshcode", boshcode=boshcode)
    proposer = ForestsProposer(Setup(settings, device_matrix(evaluator.devices), evaluator))
    alternate = ForestsProposer(Setup(replace(settings, boshcode=replace(
        boshcode, stalled_every=2)), device_matrix(evaluator.devices), evaluator))  # fmt: skip
    best = np.maximum.accumulate([r.value for r in records])
    for n in range(4, len(records) + 1):  # stalled: no better value in the last 3
        k = 2.0 if best[n - 1] <= best[n - 4] else FAST.ucb_k
        assert proposer.ucb_ks(records[:n], n) == [k]
        # every second step explores; a batch's steps are n, n + 1, …
        assert alternate.ucb_ks(records[:n], n, 3) == [
            k if step % 2 == 0 else FAST.ucb_k for step in range(n, n + 3)
        ]
    assert {proposer.ucb_ks(records[:n], n)[0] for n in range(4, 13)} == {2.0, FAST.ucb_k}
    # Unset, it is not in the resume signature: studies stored before it resume.
    assert proposer.signature()["boshcode"]["stalled_ucb_k"] == 2.0
    plain = ForestsProposer(Setup(SearchSettings(boshcode=FAST), device_matrix(
        evaluator.devices), evaluator))  # fmt: skip
    assert "stalled_ucb_k" not in plain.signature()["boshcode"]
    with pytest.raises(SearchError, match="stalled_ucb_k=-1"):
        BoshcodeSettings(stalled_ucb_k=-1)
    with pytest.raises(SearchError, match="stalled_every=0"):
        BoshcodeSettings(stalled_every=0)


def test_forests_keep_to_a_latency_cap(tmp_path):
    evaluator = ReplayEvaluator(write_table(tmp_path / "t.jsonl", n_archs=30, seed=2))
    latencies = sorted(m["latency_s"] for _, m in evaluator.table.values())
    cap_ms = 1e3 * latencies[len(latencies) // 3]
    constraints = Constraints(max_latency_ms=cap_ms)
    settings = SearchSettings(sampler="boshcode", budget=25, seed=0, constraints=constraints,
                              boshcode=replace(FAST, n_initial=6))  # fmt: skip
    records = run_search(evaluator, settings).records
    proposed = [r for r in records if r.how == "ucb"]
    assert proposed and sum(r.feasible for r in proposed) > len(proposed) / 2
    feasible = [m for _, m in evaluator.table.values() if not constraints.violations(m)]
    best = max(PaperObjective().value(m) for m in feasible)
    assert max(r.value for r in records if r.feasible) == pytest.approx(best)


def test_feature_encoding_lies_in_the_unit_box_and_is_stable(table):
    pairs = [pair for pair, _ in ReplayEvaluator(table).table.values()]
    encoder = ArchitectureEncoder("features").fit(pairs[:10])
    x = encoder(pairs)
    assert x.shape[0] == len(pairs) and x.shape[1] > REFERENCE_SPACE.embedding_length
    assert x.min() >= 0 and x.max() <= 1
    assert np.array_equal(encoder(pairs[::-1])[::-1], x)
    assert ArchitectureEncoder("embedding")(pairs).shape[1] == REFERENCE_SPACE.embedding_length
    with pytest.raises(SearchError, match="allowed: embedding, features"):
        ArchitectureEncoder("onehot")


def test_second_order_ascent_finds_a_maximum_inside_the_box():
    import torch

    from edgetran.search.boshcode import _adahessian_ascent

    x = torch.full((4, 2), 0.9, requires_grad=True)
    target = torch.tensor([0.3, 2.0])  # the second coordinate's maximum lies outside [0, 1]
    _adahessian_ascent(lambda v: -((v - target) ** 2).sum(dim=1), [x], steps=200, seed=0)
    assert torch.allclose(x[:, 0], torch.tensor(0.3), atol=0.05)
    assert torch.all(x[:, 1] == 1.0)


def test_second_order_search_is_deterministic(table):
    gobi_only = replace(NETWORKS, second_order=True, alpha=0, beta=0)
    settings = SearchSettings(sampler="boshcode", budget=7, seed=2, boshcode=gobi_only)
    first = run_search(ReplayEvaluator(table), settings).records
    assert [r.how for r in first][-3:] == ["gobi"] * 3
    again = run_search(ReplayEvaluator(table), settings).records
    assert [r.pair.key for r in again] == [r.pair.key for r in first]


def _boshcode_data(seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.random((12, 6)), np.eye(2)[rng.integers(0, 2, 12)], rng.normal(size=12)


def test_boshcode_fit_is_seeded_and_leaves_the_global_rng_alone():
    xa, xd, y = _boshcode_data()
    before = torch.get_rng_state()
    fits = [Boshcode(FAST, seed).fit(xa, xd, y, step=3).predict(xa, xd) for seed in (1, 1, 2)]
    assert torch.equal(torch.get_rng_state(), before)
    assert all(np.array_equal(a, b) for a, b in zip(fits[0], fits[1], strict=True))
    assert not np.array_equal(fits[0][0], fits[2][0])


def test_boshcode_ucb_adds_the_combined_spread():
    """Once stalled, the UCB widens by σ_e + σ_a, the formula HeteroscedasticNN uses too."""
    xa, xd, y = _boshcode_data()
    model = Boshcode(FAST, 0).fit(xa, xd, y)
    mean, epistemic, aleatoric = model.predict(xa, xd)
    with torch.no_grad():
        ucb = model.acquisition(torch.tensor(xa, dtype=torch.float32),
                                torch.tensor(xd, dtype=torch.float32), aleatoric=True)  # fmt: skip
    expected = mean + FAST.ucb_k * combined_spread(epistemic, aleatoric)
    assert expected == pytest.approx(mean + FAST.ucb_k * (epistemic + aleatoric))
    assert ucb.numpy() == pytest.approx(expected, rel=1e-5)


def test_boshcode_initial_design_visits_every_device(table):
    settings = SearchSettings(sampler="boshcode", budget=4, seed=5, boshcode=FAST)
    records = run_search(ReplayEvaluator(table), settings).records
    assert [r.how for r in records] == ["initial"] * 4
    assert sorted(r.pair.device for r in records) == ["edge", "edge", "gpu", "gpu"]


def test_boshcode_searches_on_the_reference_embedding(table):
    settings = SearchSettings(sampler="boshcode", budget=8, seed=0,
                              boshcode=replace(FAST, encoding="embedding"))  # fmt: skip
    assert run_search(ReplayEvaluator(table), settings).to_dict()["evaluations"] == 8


@pytest.mark.parametrize("boshcode", [FAST, NETWORKS], ids=BOSHCODE_SURROGATES)
def test_pareto_objective_returns_a_front(table, boshcode):
    settings = SearchSettings(sampler="boshcode", budget=10, objective="pareto",
                              boshcode=boshcode,
                              constraints=Constraints(max_peak_power_w=100))  # fmt: skip
    out = run_search(ReplayEvaluator(table), settings).to_dict()
    assert out["pareto_front"] and all(p["device"] == "edge" for p in out["pareto_front"])
    assert out["best"]["metrics"]["peak_power_w"] <= 100


def test_resume_after_an_interruption_neither_loses_nor_repeats(table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = ReplayEvaluator(table)
    settings = SearchSettings(sampler="tpe", budget=12, seed=0)

    def crash(n: int, _record) -> None:
        if n == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(evaluator, settings, storage=storage, study_name="s", on_evaluation=crash)
    with pytest.raises(SearchError, match="--resume"):
        run_search(evaluator, settings, storage=storage, study_name="s")
    result = run_search(evaluator, settings, storage=storage, study_name="s", resume=True)
    keys = [r.pair.key for r in result.records]
    assert len(keys) == 12 == len(set(keys))


@pytest.mark.parametrize("accuracy_gp", [False, True])
def test_a_resumed_boshcode_search_proposes_what_an_uninterrupted_one_does(
    table, tmp_path, accuracy_gp
):
    """The forests and the accuracy GP's refit schedule depend on the evaluated pairs alone,
    so a search killed after its 13th evaluation and resumed matches one never stopped."""
    evaluator = ReplayEvaluator(table)
    boshcode = replace(FAST, n_initial=4, accuracy_gp=accuracy_gp)
    settings = SearchSettings(sampler="boshcode", budget=16, seed=2, boshcode=boshcode)
    whole = [r.pair.key for r in run_search(evaluator, settings).records]
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    resumed = search_resumed_after(evaluator, settings, storage, crash_at=13)
    assert [r.pair.key for r in resumed.records] == whole


def test_resume_refuses_other_boshcode_settings(table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = ReplayEvaluator(table)
    first = SearchSettings(sampler="boshcode", budget=3, seed=0, boshcode=FAST)
    run_search(evaluator, first, storage=storage, study_name="s")
    other = replace(first, budget=4, boshcode=replace(FAST, alpha=0.2))
    with pytest.raises(SearchError, match="other settings"):
        run_search(evaluator, other, storage=storage, study_name="s", resume=True)
    resumed = run_search(evaluator, replace(first, budget=4), storage=storage, study_name="s",
                         resume=True)  # fmt: skip
    assert len(resumed.records) == 4


class _Flaky(ReplayEvaluator):
    """Every third distinct pair runs out of memory."""

    def evaluate(self, pair):
        if sorted(self.table).index(pair.key) % 3 == 0:
            raise MemoryError("out of memory (simulated)")
        return super().evaluate(pair)


def test_failed_candidates_are_recorded_and_never_retried(table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = _Flaky(table)
    settings = SearchSettings(sampler="random", budget=9, seed=0)
    seen = []
    first = run_search(evaluator, settings, storage=storage, study_name="s",
                       on_failure=lambda n, f: seen.append(f.reason))  # fmt: skip
    assert first.failures and seen == [f.reason for f in first.failures]
    assert seen[0] == "MemoryError: out of memory (simulated)"
    assert len(first.records) + len(first.failures) == 9
    out = first.to_dict()
    assert out["failed"][0]["reason"] == seen[0] and out["evaluations"] == len(first.records)
    more = run_search(evaluator, replace(settings, budget=12), storage=storage, study_name="s",
                      resume=True)  # fmt: skip
    keys = [r.pair.key for r in more.records] + [f.pair.key for f in more.failures]
    assert len(keys) == 12 == len(set(keys))
    assert [f.pair.key for f in more.failures][: len(seen)] == [f.pair.key for f in first.failures]


class _Broken(ReplayEvaluator):
    """Every evaluation fails, as when the setup is wrong (a missing package, say)."""

    def evaluate(self, pair):
        raise RuntimeError("no such package (simulated)")


def test_a_search_whose_evaluations_all_failed_tries_them_again_on_resume(table, tmp_path):
    """Nothing succeeded, so nothing is finished: resumed with the cause fixed, the search
    evaluates its budget (the failures count towards none of it), and a second resume holds
    those evaluations and adds none."""
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    settings = SearchSettings(sampler="random", budget=3, seed=0)
    broken = run_search(_Broken(table), settings, storage=storage, study_name="s")
    assert not broken.records and len(broken.failures) == 3
    fixed = run_search(ReplayEvaluator(table), settings, storage=storage, study_name="s",
                       resume=True)  # fmt: skip
    keys = [r.pair.key for r in fixed.records]
    assert len(keys) == 3 == len(set(keys)) and not fixed.failures
    again = run_search(ReplayEvaluator(table), settings, storage=storage, study_name="s",
                       resume=True)  # fmt: skip
    assert [r.pair.key for r in again.records] == keys and not again.failures


def test_a_search_with_a_success_keeps_its_failures_on_resume(table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    settings = SearchSettings(sampler="random", budget=6, seed=0)
    first = run_search(_Flaky(table), settings, storage=storage, study_name="s")
    assert first.records and first.failures
    resumed = run_search(ReplayEvaluator(table), settings, storage=storage, study_name="s",
                         resume=True)  # fmt: skip
    assert [f.pair.key for f in resumed.failures] == [f.pair.key for f in first.failures]


def test_a_resumed_search_replays_what_it_holds_in_trial_order(table, tmp_path):
    """``on_stored`` sees the stored records and failures numbered as they were first seen,
    before any new evaluation; a fresh search replays nothing."""
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    settings = SearchSettings(sampler="random", budget=5, seed=0)
    seen, replayed = [], []
    run_search(
        _Flaky(table), settings, storage=storage, study_name="s",
        on_evaluation=lambda n, r: seen.append((n, r.pair.key, "record")),
        on_failure=lambda n, f: seen.append((n, f.pair.key, "failure")),
        on_stored=lambda n, item: replayed.append(item),
    )  # fmt: skip
    assert not replayed and {kind for _, _, kind in seen} == {"record", "failure"}

    def stored(n, item):
        kind = "failure" if hasattr(item, "reason") else "record"
        replayed.append((n, item.pair.key, kind))

    def fresh(n, record):
        replayed.append((n, record.pair.key, "fresh"))

    run_search(_Flaky(table), replace(settings, budget=7), storage=storage, study_name="s",
               resume=True, on_stored=stored, on_evaluation=fresh)  # fmt: skip
    assert replayed[:5] == seen and replayed[5:] and {k for *_, k in replayed[5:]} <= {"fresh"}


class _Noisy(ReplayEvaluator):
    """The table's accuracy with a standard deviation of 0.05 (wide: near-best pairs tie), and
    re-evaluations that land 0.01·run above it."""

    def __init__(self, path, failing_runs=()):
        super().__init__(path)
        self.failing_runs = failing_runs
        self.calls: list[tuple[str, int]] = []

    def evaluate(self, pair):
        evaluation = super().evaluate(pair)
        evaluation.accuracy_runs.clear()
        evaluation.add_accuracy_run(Accuracy(evaluation.metrics["accuracy"], 0.05))
        return evaluation

    def reevaluate(self, pair, run):
        self.calls.append((pair.key, run))
        if run in self.failing_runs:
            raise MemoryError("out of memory (simulated)")
        return Accuracy(self.table[pair.key][1]["accuracy"] + 0.01 * run, 0.05)


def test_noisy_near_ties_are_trained_again_within_the_budget(table, tmp_path):
    settings = SearchSettings(sampler="random", budget=14, seed=0)
    evaluator = _Noisy(table)
    result = run_search(evaluator, settings)
    assert result.reevaluations == len(evaluator.calls) > 0
    assert len(result.records) + result.reevaluations == 14
    assert len(set(evaluator.calls)) == len(evaluator.calls)  # no run twice
    for record in result.records:
        runs = record.evaluation.accuracy_runs
        assert 1 <= len(runs) <= 3
        assert record.evaluation.metrics["accuracy"] == pytest.approx(np.mean(runs))
        between = np.var(runs, ddof=1) if len(runs) > 1 else 0.0
        assert record.evaluation.accuracy_std == pytest.approx(
            np.sqrt(0.05**2 + between / len(runs))
        )
        assert record.value == pytest.approx(PaperObjective().value(record.evaluation.metrics))
    out = result.to_dict()
    assert out["reevaluations"] == result.reevaluations
    assert out["best"]["accuracy_runs"] >= 1 and out["best"]["accuracy_std"] > 0
    # a table without standard deviations is never re-evaluated
    assert run_search(ReplayEvaluator(table), settings).to_dict()["reevaluations"] == 0


def test_a_resumed_noisy_search_applies_its_reevaluations_and_repeats_none(table, tmp_path):
    settings = SearchSettings(sampler="random", budget=14, seed=0)
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = _Noisy(table)

    def crash(n: int, record) -> None:
        if record.how.startswith("reevaluation"):
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(evaluator, settings, storage=storage, study_name="s", on_evaluation=crash)
    before = list(evaluator.calls)
    resumed = run_search(evaluator, settings, storage=storage, study_name="s", resume=True)
    assert len(set(evaluator.calls)) == len(evaluator.calls)  # none repeated
    runs = {r.pair.key: r.evaluation.accuracy_runs for r in resumed.records}
    for key, run in before:  # stored before the crash, applied after it
        assert len(runs[key]) > run
    assert resumed.reevaluations == len(evaluator.calls)
    assert len(resumed.records) + resumed.reevaluations == 14


def test_a_failed_reevaluation_settles_the_pair(table):
    evaluator = _Noisy(table, failing_runs=(1,))
    result = run_search(evaluator, SearchSettings(sampler="random", budget=14, seed=0))
    assert evaluator.calls and all(run == 1 for _, run in evaluator.calls)
    assert all(len(r.evaluation.accuracy_runs) == 1 for r in result.records)
    assert len(result.records) + result.reevaluations == 14


@pytest.mark.parametrize(
    ("change", "named"),
    [
        ({"paper": PaperObjective(accuracy_weight=0.9)}, "paper"),
        ({"constraints": Constraints(max_peak_power_w=100)}, "constraints"),
        ({"device_features": {"edge": (5.0,), "gpu": (250.0,)}}, "device_features"),
    ],
)
def test_resume_refuses_a_changed_objective(table, tmp_path, change, named):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = ReplayEvaluator(table)
    first = SearchSettings(sampler="random", budget=2, seed=0)
    run_search(evaluator, first, storage=storage, study_name="s")
    with pytest.raises(SearchError, match=f"other settings \\({named} differ"):
        run_search(evaluator, replace(first, budget=3, **change), storage=storage,
                   study_name="s", resume=True)  # fmt: skip
    assert len(run_search(evaluator, replace(first, budget=3), storage=storage,
                          study_name="s", resume=True).records) == 3  # fmt: skip


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{oops", "line 2 is not valid JSON"),
        ('{"arch": {}, "device": "x"}', "line 2 has no 'metrics'"),
        ('{"device": "x", "metrics": {}}', "line 2 has no 'arch'"),
    ],
)
def test_bad_benchmark_files(table, tmp_path, line, message):
    good = table.read_text().splitlines()[0]
    bad = tmp_path / "bad.jsonl"
    bad.write_text(good + "\n" + line + "\n")
    with pytest.raises(SearchError, match=message):
        read_table(bad)


def test_bad_metric_values(table, tmp_path):
    row = json.loads(table.read_text().splitlines()[0])
    row["metrics"]["energy_j"] = "lots"
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(SearchError, match=r"line 1: energy_j='lots' is invalid"):
        read_table(bad)


def test_search_cli(run_cli, table, tmp_path):
    db = tmp_path / "cli.db"
    args = ["search", "--benchmark", table, "--sampler", "random", "--budget", 6, "--db", db]
    code, out, err = run_cli(*args, "--json")
    assert code == 0, err
    result = json.loads(out)
    for key in ("best", "evaluations", "evaluations_to_best", "history"):
        assert key in result
    assert result["evaluations"] == 6
    code, _, err = run_cli(*args)
    assert code == 2 and "--resume" in err
    code, out, err = run_cli(*args[:-4], "--budget", 8, "--db", db, "--resume", "--json")
    assert code == 0, err
    assert json.loads(out)["history"][:6] == result["history"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sampler", "cmaes"], "--sampler 'cmaes' is invalid"),
        (["--objective", "fast"], "--objective 'fast' is invalid"),
        (["--arch-encoding", "hash"], "--arch-encoding 'hash' is invalid"),
        (["--surrogate", "gp"], "--surrogate 'gp' is invalid"),
        (["--alpha", "0.7", "--beta", "0.5"], "alpha=0.7, beta=0.5; expected"),
        ([], None),
    ],
)
def test_search_cli_bad_input(run_cli, tmp_path, args, message):
    bad = tmp_path / "bad.jsonl"
    bad.write_text("{not json}\n")
    if message is None:
        code, _, err = run_cli("search", "--benchmark", bad, "--db", tmp_path / "x.db")
        assert code == 2 and "line 1 is not valid JSON" in err
        return
    code, _, err = run_cli("search", "--benchmark", bad, *args)
    assert code == 2 and message in err and "Traceback" not in err


def test_device_features_replace_one_hot(table):
    features = {"edge": [5.0, 0.0], "gpu": [250.0, 1.0]}
    settings = SearchSettings(sampler="boshcode", budget=6, boshcode=FAST,
                              device_features=features)  # fmt: skip
    assert run_search(ReplayEvaluator(table), settings).to_dict()["evaluations"] == 6
    assert np.isfinite(run_search(ReplayEvaluator(table), settings).to_dict()["history"]).all()


def test_live_evaluator_measured_then_predicted():
    from edgetran.search import LiveEvaluator, Pair
    from edgetran.surrogate import DeviceSurrogate
    from tests.conftest import fake_device

    items = fake_device(30, "board", seed=4)
    surrogate = DeviceSurrogate(model_options={"n_models": 2, "n_estimators": 50}).fit(items)
    first = items[0]
    measured = {(first.hash, "board"): {"latency_s": 1.0, "energy_j": 2.0, "peak_power_w": 3.0}}
    evaluator = LiveEvaluator(lambda arch: 0.5, measured, {"board": surrogate})
    arch = Architecture.from_dict(first.model_dict)
    stored = evaluator.evaluate(Pair(arch, "board"))
    assert stored.metrics == {"accuracy": 0.5, **measured[(first.hash, "board")]}
    assert stored.predicted == []
    other = Architecture.from_dict(items[1].model_dict)
    guessed = evaluator.evaluate(Pair(other, "board"))
    assert guessed.predicted == ["latency_s", "energy_j", "peak_power_w"]
    assert guessed.lower["latency_s"] <= guessed.metrics["latency_s"] <= guessed.upper["latency_s"]
    pairs = evaluator.candidates(5, np.random.default_rng(0), exclude=set())
    assert 1 <= len(pairs) <= 5 and all(p.device == "board" for p in pairs)


def test_live_evaluator_predicts_per_sequence_at_batch_size_4():
    """Measured metrics are per sequence; a surrogate fitted on batches of 4 predicts per
    batch, so latency and energy are divided by 4 (peak power is not)."""
    from edgetran.search import LiveEvaluator, Pair
    from edgetran.surrogate import DeviceSurrogate
    from tests.conftest import fake_device

    items = [replace(m, batch_size=4) for m in fake_device(30, "board", seed=4)]
    surrogate = DeviceSurrogate(model_options={"n_models": 2, "n_estimators": 50}).fit(items)
    arch = Architecture.from_dict(items[1].model_dict)
    batch = surrogate.predict([arch], level=0.9)
    got = LiveEvaluator(lambda arch: 0.5, {}, {"board": surrogate}).evaluate(Pair(arch, "board"))
    for metric, predicted, per in (
        ("latency_s", "latency", 4), ("energy_j", "energy", 4), ("peak_power_w", "peak_power", 1)
    ):  # fmt: skip
        assert got.metrics[metric] == pytest.approx(batch[predicted].mean[0] / per)
        assert got.lower[metric] == pytest.approx(batch[predicted].lower[0] / per)
        assert got.upper[metric] == pytest.approx(batch[predicted].upper[0] / per)


def test_live_search_cli(run_cli, tmp_path, monkeypatch):
    from edgetran.store import Store
    from tests.conftest import fake_device
    from tests.test_codesign import _tiny
    from tests.test_train import write_task

    _tiny(monkeypatch)  # the quick budget shrunk: this test is about the command, not training
    monkeypatch.chdir(tmp_path)
    with Store(tmp_path / "live.db") as store:
        store.add_many(fake_device(12, "board", seed=5))
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"layers": [1], "hidden_sizes": [16], "head_counts": [2],
                                 "ff_depths": [1], "ff_widths": [32]}))  # fmt: skip
    task = write_task(tmp_path / "task.csv", n=60)
    code, out, err = run_cli(
        "search", "--task", task, "--devices", "board", "--space", space, "--sampler", "random",
        "--budget", 2, "--db", tmp_path / "live.db", "--json",
    )  # fmt: skip
    assert code == 0, err
    best = json.loads(out)["best"]
    assert best["device"] == "board"
    assert best["predicted"] == ["latency_s", "energy_j", "peak_power_w"]
    code, _, err = run_cli("search", "--task", task, "--devices", "nowhere", "--db",
                           tmp_path / "live.db")  # fmt: skip
    assert code == 2 and "no measurements of device 'nowhere'" in err


# -- start pairs and the re-evaluation share ------------------------------------------------------
def _start(table: Path, n: int) -> tuple:
    pairs = [pair for pair, _ in read_table(table).values()]
    return tuple(pairs[-n:])  # pairs a sampler would rarely pick first


@pytest.mark.parametrize("sampler", ["boshcode", "tpe", "random"])
def test_start_pairs_are_evaluated_first_and_count_towards_the_budget(table, sampler):
    start = _start(table, 2)
    settings = SearchSettings(sampler=sampler, budget=6, seed=0, boshcode=FAST, start=start)
    result = run_search(ReplayEvaluator(table), settings)
    assert [r.pair.key for r in result.records[:2]] == [p.key for p in start]
    assert [r.how for r in result.records[:2]] == ["start", "start"]
    keys = [r.pair.key for r in result.records]
    assert len(keys) == 6 == len(set(keys))
    assert result.records[2].how != "start"


def test_a_resumed_search_repeats_no_start_pair_and_refuses_other_ones(table, tmp_path):
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    evaluator = ReplayEvaluator(table)
    start = _start(table, 2)
    settings = SearchSettings(sampler="random", budget=3, seed=0, start=start)
    run_search(evaluator, settings, storage=storage, study_name="s")
    with pytest.raises(SearchError, match="other settings \\(start differ"):
        run_search(evaluator, replace(settings, budget=4, start=start[:1]), storage=storage,
                   study_name="s", resume=True)  # fmt: skip
    resumed = run_search(evaluator, replace(settings, budget=5), storage=storage,
                         study_name="s", resume=True)  # fmt: skip
    keys = [r.pair.key for r in resumed.records]
    assert len(keys) == 5 == len(set(keys))
    assert sum(r.how == "start" for r in resumed.records) == 2


def test_start_pairs_are_checked(table):
    pair = _start(table, 1)[0]
    with pytest.raises(SearchError, match="given twice"):
        SearchSettings(budget=4, start=(pair, pair))
    with pytest.raises(SearchError, match="at most the budget"):
        SearchSettings(budget=1, start=_start(table, 2))
    elsewhere = replace(pair, device="phone")
    with pytest.raises(SearchError, match="on device 'phone'; allowed: "):
        run_search(ReplayEvaluator(table), SearchSettings(budget=2, start=(elsewhere,)))
    absent = replace(pair, arch=NAMED_ARCHITECTURES["bert-tiny"])  # not in the table
    with pytest.raises(SearchError, match="is not a candidate of this search"):
        run_search(ReplayEvaluator(table), SearchSettings(budget=2, start=(absent,)))


@pytest.mark.parametrize(("budget", "cap"), [(4, 0), (9, 1), (14, 2)])
def test_at_most_a_fifth_of_the_budget_goes_to_reevaluations(table, budget, cap):
    # two initial pairs: ties (std 0.05) are open from the third evaluation on
    settings = SearchSettings(sampler="random", budget=budget, seed=0,
                              boshcode=BoshcodeSettings(n_initial=2))  # fmt: skip
    result = run_search(_Noisy(table), settings)
    assert result.reevaluations == cap and len(result.records) == budget - cap


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_the_initial_design_covers_the_devices_the_start_pairs_left(table, seed):
    start = tuple(p for p in _start(table, 6) if p.device == "edge")[:1]
    for sampler in ("boshcode", "trees"):  # the samplers with BOSHCODE's initial design
        settings = SearchSettings(sampler=sampler, budget=2, seed=seed, start=start,
                                  boshcode=replace(FAST, n_initial=2))  # fmt: skip
        result = run_search(ReplayEvaluator(table), settings)
        assert [r.pair.device for r in result.records] == ["edge", "gpu"]
