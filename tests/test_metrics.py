"""One metrics type with units: ``Metrics``, and the older names still read where files hold
them (replay tables, stored studies, ``result.json``)."""

from __future__ import annotations

import json
import sqlite3
import warnings
from pathlib import Path

import pytest

from edgetran.errors import InvalidInputError, SearchError
from edgetran.metrics import LEGACY_KEYS, METRIC_KEYS, Metrics, with_unit_keys
from edgetran.search import PaperObjective, ReplayEvaluator, read_table, run_search
from edgetran.search.study import SearchSettings
from edgetran.search.table import LegacyMetricNamesWarning
from edgetran.testing import synthetic_table

UNITS = {"accuracy": 0.8, "latency_s": 0.002, "energy_j": 0.01, "peak_power_w": 9.5}
LEGACY = {"accuracy": 0.8, "latency": 0.002, "energy": 0.01, "peak_power": 9.5}


def test_metrics_round_trip_and_read_as_a_mapping():
    """Metrics read back what they were made from, as attributes and as a mapping."""
    metrics = Metrics.from_mapping({**UNITS, "other": 1})
    assert metrics.to_dict() == UNITS and list(metrics) == list(METRIC_KEYS)
    assert dict(metrics) == UNITS and metrics["latency_s"] == metrics.latency_s == 0.002
    assert PaperObjective().value(metrics) == PaperObjective().value(UNITS)
    assert Metrics.from_mapping(LEGACY, legacy=True) == metrics


@pytest.mark.parametrize(
    ("mapping", "legacy", "message"),
    [
        (LEGACY, False, "metrics have no latency_s, energy_j, peak_power_w"),
        ({**UNITS, "energy_j": "lots"}, False, "energy_j='lots' is invalid; allowed: a finite"),
        ({**UNITS, "accuracy": True}, False, "accuracy=True is invalid"),
        ({**UNITS, "peak_power_w": float("nan")}, False, "peak_power_w=nan is invalid"),
        ({**UNITS, "latency": 0.003}, True, "'latency' and 'latency_s'; expected one name"),
    ],
    ids=["old-names-not-asked-for", "text", "bool", "nan", "both-names"],
)
def test_metrics_refuse_what_is_not_four_finite_numbers(mapping, legacy, message):
    """Missing, non-finite, boolean or doubly named metrics are one typed error."""
    with pytest.raises(InvalidInputError, match=message):
        Metrics.from_mapping(mapping, legacy=legacy)
    with pytest.raises(SearchError, match=message):  # the caller's typed error
        Metrics.from_mapping(mapping, legacy=legacy, error=SearchError)


def _legacy_table(table: Path, out: Path) -> Path:
    """``table`` with its metrics under the older names."""
    rows = [json.loads(line) for line in table.read_text().splitlines()]
    back = {new: old for old, new in LEGACY_KEYS.items()}
    for row in rows:
        row["metrics"] = {back.get(k, k): v for k, v in row["metrics"].items()}
    out.write_text("".join(json.dumps(row) + "\n" for row in rows))
    return out


def test_a_replay_table_with_the_older_names_is_read_and_says_so(tmp_path):
    """A table with the older names reads as the one with units, with one warning."""
    table = synthetic_table(tmp_path / "units.jsonl")
    old = _legacy_table(table, tmp_path / "old.jsonl")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the table with units: no warning
        new_rows = read_table(table)
    with pytest.warns(LegacyMetricNamesWarning) as caught:
        old_rows = read_table(old)
    assert len(caught) == 1  # once per file, on one line
    message = str(caught[0].message)
    assert "\n" not in message and "old.jsonl" in message and "latency, energy" in message
    assert old_rows == new_rows
    # a search over either table evaluates the same pairs with the same metrics
    settings = SearchSettings(sampler="random", budget=4, seed=1)
    with pytest.warns(LegacyMetricNamesWarning):
        replayed = run_search(ReplayEvaluator(old), settings)
    expected = run_search(ReplayEvaluator(table), settings)
    assert [(r.pair.key, r.evaluation.metrics) for r in replayed.records] == [
        (r.pair.key, r.evaluation.metrics) for r in expected.records
    ]
    assert set(replayed.records[0].evaluation.metrics) == set(METRIC_KEYS)


def test_a_suite_landscape_table_from_an_older_table_has_the_names_with_units(tmp_path):
    """The suite rewrites an older table with the names with units."""
    from edgetran.search.suite import landscape_rows

    old = _legacy_table(synthetic_table(tmp_path / "units.jsonl"), tmp_path / "old.jsonl")
    rows = [json.loads(line) for line in old.read_text().splitlines()]
    assert all(set(r["metrics"]) == set(METRIC_KEYS) for r in landscape_rows(rows, "smooth"))


def test_a_study_stored_with_the_older_names_resumes_under_the_new_ones(tmp_path):
    """A study written before the units: its trials' metrics are renamed on reading, and the
    resumed search goes on to its budget without repeating a pair."""
    table = synthetic_table(tmp_path / "table.jsonl")
    database = tmp_path / "search.db"
    storage = f"sqlite:///{database}"
    evaluator = ReplayEvaluator(table)
    first = run_search(evaluator, SearchSettings(sampler="tpe", budget=4, seed=0),
                       storage=storage, study_name="old")  # fmt: skip
    _rename_stored_metrics(database, {new: old for old, new in LEGACY_KEYS.items()})
    resumed = run_search(evaluator, SearchSettings(sampler="tpe", budget=6, seed=0),
                         storage=storage, study_name="old", resume=True)  # fmt: skip
    keys = [r.pair.key for r in resumed.records]
    assert len(keys) == 6 == len(set(keys))
    assert [(r.pair.key, r.evaluation.metrics) for r in resumed.records[:4]] == [
        (r.pair.key, r.evaluation.metrics) for r in first.records
    ]
    for record in resumed.records:
        assert set(record.evaluation.metrics) == set(METRIC_KEYS)
    assert_unit_names(resumed.to_dict())


def _rename_stored_metrics(database: Path, names: dict[str, str]) -> None:
    """Rewrite the stored trials' metric names, as an older edgetran wrote them."""
    with sqlite3.connect(database) as db:
        rows = db.execute(
            "SELECT trial_user_attribute_id, key, value_json FROM trial_user_attributes "
            "WHERE key IN ('metrics', 'lower', 'upper', 'predicted')"
        ).fetchall()
        assert rows
        for row_id, key, value in rows:
            value = json.loads(value)
            if key == "predicted":
                value = [names.get(k, k) for k in value]
            else:
                value = {names.get(k, k): v for k, v in value.items()}
            db.execute(
                "UPDATE trial_user_attributes SET value_json = ? "
                "WHERE trial_user_attribute_id = ?",
                (json.dumps(value), row_id),
            )


def assert_unit_names(tree) -> None:
    """No metric in ``tree`` (a JSON document) is named without its unit: no key, and no
    name in a list of names (``predicted``, ``measured`` …)."""
    if isinstance(tree, dict):
        assert not set(tree) & set(LEGACY_KEYS), sorted(set(tree) & set(LEGACY_KEYS))
        for value in tree.values():
            assert_unit_names(value)
    elif isinstance(tree, list | tuple):
        assert not {v for v in tree if isinstance(v, str)} & set(LEGACY_KEYS), tree
        for value in tree:
            assert_unit_names(value)


@pytest.mark.parametrize("objective", ["paper", "pareto"])
def test_every_metric_the_search_hands_on_has_its_unit(tmp_path, objective):
    """search → codesign → report: what a search returns (records, best, front) names every
    metric with its unit, so no reader above it translates."""
    evaluator = ReplayEvaluator(synthetic_table(tmp_path / "table.jsonl"))
    result = run_search(evaluator, SearchSettings(sampler="random", budget=5, seed=0,
                                                  objective=objective))  # fmt: skip
    out = result.to_dict()
    assert_unit_names(out)
    assert set(out["best"]["metrics"]) == set(METRIC_KEYS)
    if objective == "pareto":
        assert all(set(m) == set(METRIC_KEYS) for m in out["history_metrics"])


def test_with_unit_keys_passes_other_keys_through():
    """Only the older names are renamed."""
    assert with_unit_keys({"latency": 1.0, "n": 3}) == {"latency_s": 1.0, "n": 3}
