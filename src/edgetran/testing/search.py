"""The contract checks of evaluators and search samplers, and the small table they run on."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import numpy as np

from edgetran.plugins import SAMPLERS
from edgetran.search.evaluators import Accuracy, Evaluation, Evaluator
from edgetran.search.objectives import METRIC_KEYS
from edgetran.search.table import Pair
from edgetran.space import REFERENCE_SPACE, sample
from edgetran.testing._contract import Clauses, is_number

#: Evaluations of the tiny search a sampler is checked with.
SAMPLER_BUDGET = 6


def synthetic_table(path: str | Path, n_archs: int = 12, seed: int = 0) -> Path:
    """Write a replay table of ``n_archs`` reference-space architectures on two devices:
    accuracy grows with depth, the ``edge`` device is cheap and slow, ``gpu`` fast and hungry."""
    archs = sample(n_archs, method="random", seed=seed, space=REFERENCE_SPACE)
    lines = []
    for arch in archs:
        accuracy = 0.5 + 0.03 * arch.num_layers
        for device, latency, power in (("edge", 2.0, 5.0), ("gpu", 0.01, 250.0)):
            metrics = {
                "accuracy": accuracy,
                "latency_s": latency * arch.num_layers,
                "energy_j": latency * power,
                "peak_power_w": power,
            }
            row = {"arch": arch.to_model_dict(), "device": device, "metrics": metrics}
            lines.append(json.dumps(row))
    path = Path(path)
    path.write_text("\n".join(lines) + "\n")
    return path


def check_evaluator(evaluator: Evaluator, *, n: int = 4, seed: int = 0) -> None:
    """Assert that ``evaluator`` keeps the :class:`~edgetran.search.evaluators.Evaluator`
    contract: fixed devices, distinct candidates on those devices that avoid ``exclude``, and
    one deterministic evaluation (every metric, predicted ones within their interval).

    Raises:
        ContractError: naming the clause that failed.
    """
    c = Clauses("Evaluator", type(evaluator).__name__)
    c.require(isinstance(evaluator, Evaluator), "an evaluator subclasses Evaluator")
    devices = evaluator.devices
    c.require(
        isinstance(devices, tuple)
        and bool(devices)
        and all(isinstance(d, str) and d for d in devices)
        and len(set(devices)) == len(devices),
        "devices is a non-empty tuple of distinct device names",
        repr(devices),
    )
    pool = evaluator.candidates(n, np.random.default_rng(seed), set())
    _check_candidates(pool, n, devices, set(), c)
    c.require(bool(pool), "candidates offers pairs while any remain")
    exclude = {pool[0].key}
    _check_candidates(
        evaluator.candidates(n, np.random.default_rng(seed), exclude), n, devices, exclude, c
    )
    c.require(evaluator.devices == devices, "devices is fixed", repr(evaluator.devices))
    c.require(all(evaluator.offers(p) for p in pool), "offers() accepts every candidate")
    first = evaluator.evaluate(pool[0])
    _check_evaluation(first, c)
    again = evaluator.evaluate(pool[0])
    c.require(
        isinstance(again, Evaluation) and again.metrics == first.metrics,
        "evaluate is deterministic for a pair",
        f"{first.metrics} then {getattr(again, 'metrics', again)}",
    )
    if first.accuracy_std is not None:
        c.require(
            is_number(first.accuracy_std) and first.accuracy_std >= 0,
            "accuracy_std is a finite number ≥ 0 (or None)",
            repr(first.accuracy_std),
        )
    rerun = evaluator.reevaluate(pool[0], 1)
    c.require(
        rerun is None or (isinstance(rerun, Accuracy) and is_number(rerun.value)),
        "reevaluate returns None or an Accuracy of a finite value",
        repr(rerun),
    )


def _check_candidates(
    pool: list[Pair], n: int, devices: tuple[str, ...], exclude: set[str], c: Clauses
) -> None:
    c.require(
        isinstance(pool, list) and all(isinstance(p, Pair) for p in pool),
        "candidates returns a list of Pairs",
        repr(pool)[:200],
    )
    keys = [p.key for p in pool]
    c.require(len(pool) <= n, f"candidates(n={n}) returns at most n pairs", str(len(pool)))
    c.require(len(set(keys)) == len(keys), "candidates are distinct", repr(keys))
    c.require(
        not set(keys) & exclude, "candidates avoid the excluded keys", repr(set(keys) & exclude)
    )
    c.require(
        all(p.device in devices for p in pool),
        "candidates lie on the evaluator's devices",
        repr(sorted({p.device for p in pool} - set(devices))),
    )


def _check_evaluation(evaluation: Evaluation, c: Clauses) -> None:
    c.require(isinstance(evaluation, Evaluation), "evaluate returns an Evaluation")
    metrics = evaluation.metrics
    c.require(
        all(is_number(metrics.get(k)) for k in METRIC_KEYS),
        f"metrics hold {', '.join(METRIC_KEYS)} as finite numbers",
        repr(metrics),
    )
    c.require(0 <= metrics["accuracy"] <= 1, "accuracy is a fraction", repr(metrics["accuracy"]))
    c.require(
        all(metrics[k] > 0 for k in METRIC_KEYS[1:]),
        "latency_s, energy_j and peak_power_w are positive",
        repr(metrics),
    )
    for metric in evaluation.predicted:
        c.require(metric in metrics, "predicted names metrics of the evaluation", metric)
        low, high = evaluation.lower.get(metric), evaluation.upper.get(metric)
        c.require(
            is_number(low) and is_number(high) and low <= metrics[metric] <= high,
            "a predicted metric has lower ≤ value ≤ upper",
            f"{metric}: {low}, {metrics[metric]}, {high}",
        )


def check_sampler(name: str, *, budget: int = SAMPLER_BUDGET, seed: int = 0) -> None:
    """Assert that the registered sampler ``name`` builds an Optuna sampler from a seed and,
    in a tiny replay search, evaluates ``budget`` distinct recorded pairs, the same ones for
    the same seed.

    Raises:
        ContractError: naming the clause that failed.
    """
    import optuna

    from edgetran.search.boshcode import BoshcodeSettings
    from edgetran.search.evaluators import ReplayEvaluator
    from edgetran.search.study import SearchSettings, run_search

    c = Clauses("Sampler", repr(name))
    made = SAMPLERS.create(name, seed=seed)
    c.require(
        isinstance(made, optuna.samplers.BaseSampler),
        "the factory returns an optuna.samplers.BaseSampler for seed=SEED",
        type(made).__name__,
    )
    # Few epochs: the check is about the search's plumbing, not about the surrogate's fit.
    fast = BoshcodeSettings(
        epochs=5, warm_epochs=2, starts=2, gobi_steps=3, mc_samples=3, n_initial=budget - 2
    )
    settings = SearchSettings(sampler=name, budget=budget, seed=seed, boshcode=fast)
    with tempfile.TemporaryDirectory(prefix="edgetran-check-") as tmp:
        evaluator = ReplayEvaluator(synthetic_table(Path(tmp) / "table.jsonl", n_archs=6))
    runs = [[r.pair.key for r in run_search(evaluator, settings).records] for _ in range(2)]
    keys = runs[0]
    c.require(len(keys) == budget, f"a search evaluates budget={budget} pairs", str(len(keys)))
    c.require(len(set(keys)) == len(keys), "no pair is evaluated twice", repr(keys))
    c.require(
        set(keys) <= set(evaluator.table), "every evaluated pair is a candidate of the space"
    )
    c.require(runs[1] == keys, "the same seed gives the same search", f"{keys} then {runs[1]}")
