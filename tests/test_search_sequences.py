"""Every built-in sampler proposes, proposal for proposal, the pairs it proposed when the
fixture ``tests/data/search_sequences.json`` was recorded (seeds 0–2, a tiny replay table).

A change that alters a sampler's proposals on purpose records the fixture again::

    .venv/bin/python tests/test_search_sequences.py --record
"""

from __future__ import annotations

import json
import sys
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

from edgetran.search import BoshcodeSettings, ReplayEvaluator, SearchSettings, run_search
from edgetran.testing import synthetic_table

FIXTURE = Path(__file__).parent / "data" / "search_sequences.json"
SEEDS = (0, 1, 2)
BUDGET = 10
#: Tiny surrogates: the sequence is what is compared, not how good it is.
TINY = BoshcodeSettings(
    epochs=5, warm_epochs=2, starts=2, gobi_steps=3, mc_samples=3, n_initial=4, trees=20
)
#: name → the settings of its search (``boshcode`` twice: forests and networks).
CASES = {
    "boshcode-forests": SearchSettings(sampler="boshcode", boshcode=TINY),
    "boshcode-networks": SearchSettings(
        sampler="boshcode", boshcode=replace(TINY, surrogate="networks")
    ),
    "boshcode-forests-pareto": SearchSettings(
        sampler="boshcode", boshcode=TINY, objective="pareto"
    ),
    "random": SearchSettings(sampler="random"),
    "tpe": SearchSettings(sampler="tpe"),
    "nsga2": SearchSettings(sampler="nsga2"),
    "gp": SearchSettings(sampler="gp"),
    "trees": SearchSettings(sampler="trees", boshcode=TINY),
    "trees-pareto": SearchSettings(sampler="trees", boshcode=TINY, objective="pareto"),
}


def sequence(case: str, seed: int, evaluator: ReplayEvaluator) -> list[str]:
    """The evaluated pairs of one search, in order: ``hash@device how``."""
    settings = replace(CASES[case], budget=BUDGET, seed=seed)
    return [f"{r.pair.key} {r.how}" for r in run_search(evaluator, settings).records]


def record() -> None:
    """Write the fixture from the code as it is."""
    with tempfile.TemporaryDirectory() as tmp:
        evaluator = ReplayEvaluator(synthetic_table(Path(tmp) / "table.jsonl"))
        recorded = {
            case: {str(seed): sequence(case, seed, evaluator) for seed in SEEDS} for case in CASES
        }
    FIXTURE.write_text(json.dumps(recorded, indent=1) + "\n")


@pytest.fixture(scope="module")
def evaluator(tmp_path_factory) -> ReplayEvaluator:
    return ReplayEvaluator(synthetic_table(tmp_path_factory.mktemp("seq") / "table.jsonl"))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("case", CASES)
def test_the_recorded_sequence_is_proposed_again(case, seed, evaluator):
    recorded = json.loads(FIXTURE.read_text())[case][str(seed)]
    assert sequence(case, seed, evaluator) == recorded


if __name__ == "__main__":
    if sys.argv[1:] != ["--record"]:
        sys.exit(f"usage: {sys.argv[0]} --record")
    record()
