"""Surrogates: calibration, transfer, CLI and bad input (the estimator contract of every
surrogate model is checked in test_contracts.py)."""

import json
import pickle

import numpy as np
import pytest
import torch

from edgetran.profile import read_measurements
from edgetran.space import Architecture, sample
from edgetran.surrogate import (
    DeviceSurrogate,
    GBDTEnsemble,
    SurrogateError,
    conformal_quantile,
    cross_validate,
    feature_matrix,
    feature_names,
)
from edgetran.surrogate.active import ReplayDevice, active_learning
from edgetran.surrogate.nn import HeteroscedasticNN
from edgetran.testing import synthetic_regression as synthetic
from tests.conftest import fake_device

FAST = {"n_models": 3, "n_estimators": 60, "learning_rate": 0.1}


def test_conformal_intervals_cover_unseen_points():
    X, y = synthetic(400, seed=1)
    surrogate = GBDTEnsemble(random_state=0, **FAST).fit(X[:250], y[:250])
    p = surrogate.predict(X[250:], level=0.9)
    coverage = ((p.lower <= y[250:]) & (y[250:] <= p.upper)).mean()
    assert coverage >= 0.85  # valid; conservative, see the closing note of issue 7
    assert conformal_quantile(np.arange(1.0, 11.0), 0.9) == 10.0


def test_nn_surrogate_is_seeded_and_leaves_the_global_rng_alone():
    X, y = synthetic(40, seed=3)
    before = torch.get_rng_state()
    fits = [HeteroscedasticNN(epochs=5, calibration_folds=2, random_state=seed).fit(X, y)
            for seed in (0, 0, 1)]  # fmt: skip
    assert torch.equal(torch.get_rng_state(), before)
    first, again, other = (fit.predict(X) for fit in fits)
    assert np.array_equal(first.mean, again.mean) and np.array_equal(first.std, again.std)
    assert not np.array_equal(first.mean, other.mean)


@pytest.mark.parametrize(
    ("X", "y", "message"),
    [
        (np.ones((5, 2)), np.ones(5), "too few measurements"),
        (np.ones((10, 2)), np.r_[np.ones(9), np.nan], "NaN"),
        (np.ones((10, 2)), np.r_[np.ones(9), -1.0], "positive"),
    ],
)
def test_bad_training_data(X, y, message):
    with pytest.raises(SurrogateError, match=message):
        GBDTEnsemble(**FAST).fit(X, y)


def test_predict_before_fit_and_wrong_shape():
    with pytest.raises(SurrogateError, match="not fitted"):
        GBDTEnsemble().predict(np.ones((1, 3)))
    X, y = synthetic(30)
    with pytest.raises(SurrogateError, match="expected"):
        GBDTEnsemble(**FAST).fit(X, y).predict(np.ones((1, 3)))


def test_features_cover_any_architecture(tiny_hetero):
    X = feature_matrix([tiny_hetero, *sample(3, method="random", seed=2)], batch_size=4)
    assert X.shape == (4, len(feature_names())) and np.isfinite(X).all()
    assert X[:, :37].max() <= 1.0  # the embedding is normalised


def test_device_surrogate_cv_with_and_without_priors(tmp_path):
    target = fake_device(40, "target", 2.0, seed=1)
    prior = fake_device(60, "prior", 1.0, seed=2)
    own = cross_validate(target, folds=3, seed=0, model_options=FAST)
    stacked = cross_validate(target, folds=3, seed=0, priors={"prior": prior}, model_options=FAST)
    for result in (own, stacked):
        assert set(result) == {"latency", "energy", "peak_power"}
        assert result["latency"]["n"] == 40
        assert 0 <= result["latency"]["mape"] < 0.5 and -1 <= result["latency"]["spearman"] <= 1
    surrogate = DeviceSurrogate(model_options=FAST).fit(target, priors={"prior": prior})
    surrogate.save(tmp_path / "s.pkl")
    loaded = DeviceSurrogate.load(tmp_path / "s.pkl")
    arch = sample(1, seed=9)[0]
    assert loaded.predict([arch])["latency"].mean == pytest.approx(
        surrogate.predict([arch])["latency"].mean
    )


def test_unreadable_surrogate_files(tmp_path):
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"not a pickle")
    with pytest.raises(SurrogateError, match="not a surrogate file"):
        DeviceSurrogate.load(bad)
    other = tmp_path / "other.pkl"
    other.write_bytes(pickle.dumps({"something": 1}))
    with pytest.raises(SurrogateError, match="not an edgetran surrogate"):
        DeviceSurrogate.load(other)
    older = tmp_path / "older.pkl"
    older.write_bytes(pickle.dumps({"format": 1, "surrogate": None}))
    with pytest.raises(SurrogateError, match="format 1; this edgetran reads formats 4 and 5"):
        DeviceSurrogate.load(older)


def test_active_learning_mechanics():
    table = fake_device(60, "replay", seed=3)
    device = ReplayDevice(table)
    initial = [device.archs[m.hash] for m in table[:12]]
    seen = []
    result = active_learning(
        device.profile,
        initial=initial,
        candidates=device.candidates,
        budget=16,
        seed=0,
        pool_size=16,
        on_measured=seen.append,
    )
    assert len(result.measurements) == 16 == len(seen)
    assert len({m.hash for m in result.measurements}) == 16
    resumed = active_learning(
        device.profile,
        initial=initial,
        candidates=device.candidates,
        budget=18,
        seed=0,
        existing=result.measurements,
    )
    assert len(resumed.measurements) == 18
    stopped = active_learning(
        device.profile,
        initial=initial,
        candidates=device.candidates,
        budget=40,
        target_mape=10.0,
        seed=0,
    )
    assert stopped.stopped_because == "target" and len(stopped.measurements) < 40


def test_surrogate_cli(run_cli, protran_files, tmp_path):
    # the commands' plumbing, on the first 60 of the board's measurements (the quality of the
    # fits is test_protran_cv_beats_the_reference_baseline_on_rpi's)
    full = next(p for p in protran_files if "rpi" in p.name)
    rpi = tmp_path / full.name
    rpi.write_text(json.dumps(dict(list(json.loads(full.read_text()).items())[:60])))
    code, out, err = run_cli(
        "surrogate",
        "cv",
        "--measurements",
        rpi,
        "--format",
        "protran",
        "--device",
        rpi.stem,
        "--folds",
        3,
        "--json",
    )
    assert code == 0, err
    report = json.loads(out)
    for metric in ("latency", "energy", "peak_power"):
        assert set(report[metric]) == {
            "n",
            "mape",
            "within_10pct",
            "r2",
            "spearman",
            "coverage_90",
        }
    model = tmp_path / "rpi.pkl"
    code, _, err = run_cli(
        "surrogate",
        "fit",
        "--measurements",
        rpi,
        "--format",
        "protran",
        "--device",
        rpi.stem,
        "--out",
        model,
    )
    assert code == 0, err
    code, out, err = run_cli(
        "surrogate", "predict", "--surrogate", model, "--arch", "bert-mini", "--json"
    )
    record = json.loads(out)
    assert code == 0 and record["predicted"] is True
    assert record["latency"]["lower"] <= record["latency"]["mean"] <= record["latency"]["upper"]


def test_surrogate_cli_bad_input(run_cli, protran_files, tmp_path):
    rpi = next(p for p in protran_files if "rpi" in p.name)
    code, _, err = run_cli(
        "surrogate", "cv", "--measurements", rpi, "--format", "protran", "--device", "a100"
    )
    assert code == 2 and "device 'a100' is not in" in err
    few = tmp_path / "few.json"
    data = json.loads(rpi.read_text())
    few.write_text(json.dumps(dict(list(data.items())[:5])))
    code, _, err = run_cli(
        "surrogate",
        "fit",
        "--measurements",
        few,
        "--format",
        "protran",
        "--device",
        "few",
        "--out",
        tmp_path / "x.pkl",
    )
    assert code == 2 and "too few measurements" in err
    nan = tmp_path / "nan.json"
    nan.write_text(rpi.read_text().replace('"energy": ', '"energy": -', 1))
    code, _, err = run_cli(
        "surrogate", "cv", "--measurements", nan, "--format", "protran", "--device", "nan"
    )
    assert code == 2 and "expected a finite value" in err
    junk = tmp_path / "junk.pkl"
    junk.write_text("junk")
    code, _, err = run_cli("surrogate", "predict", "--surrogate", junk, "--arch", "bert-mini")
    assert code == 2 and "not a surrogate file" in err


@pytest.mark.slow  # a quality figure (BENCHMARKS.md, surrogates), 15 s on 2 cores
def test_protran_cv_beats_the_reference_baseline_on_rpi(protran_files):
    rpi = next(p for p in protran_files if "rpi" in p.name)
    result = cross_validate(
        read_measurements(rpi, "protran", None), folds=5, seed=0, metrics=("latency",)
    )
    assert result["latency"]["mape"] < 0.25  # reference-style GBR: 0.44 in the same setting


@pytest.mark.slow
def test_active_learning_beats_random_sampling_on_a_replayed_device(protran_files):
    """Jetson Nano CPU replay: after 60 measurements, uncertainty-driven active learning has a
    lower held-out latency MAPE than random sampling (mean of 3 seeds; BENCHMARKS.md)."""
    from edgetran.surrogate.active import _fit
    from edgetran.surrogate.device import targets

    jetson = next(p for p in protran_files if "jetson" in p.name)
    items = read_measurements(jetson, "protran", None)
    errors: dict[str, list[float]] = {"random": [], "uncertainty": []}
    for seed in range(3):
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(items))
        test = [items[i] for i in order[: len(items) // 4]]
        offered = [items[i] for i in order[len(items) // 4 :]]
        device = ReplayDevice(offered)
        start = [device.archs[offered[i].hash] for i in rng.choice(len(offered), 10, False)]
        for acquisition in errors:
            result = active_learning(
                device.profile, initial=start, candidates=device.candidates, budget=60,
                acquisition=acquisition, metrics=("latency",), seed=seed,
            )  # fmt: skip
            surrogate = _fit(result.measurements, seed, metrics=("latency",))
            archs = [Architecture.from_dict(m.model_dict) for m in test]
            predicted = surrogate.predict(archs)["latency"].mean
            y = targets(test, "latency")
            errors[acquisition].append(float(np.mean(np.abs(predicted - y) / y)))
    assert np.mean(errors["uncertainty"]) < np.mean(errors["random"])
