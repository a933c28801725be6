"""Surrogates at several input shapes (issue 44, item 4): one shape behaves exactly as before,
several shapes enter as features, and predictions name the shape."""

import json
import pickle

import numpy as np
import pytest

from edgetran.space import sample
from edgetran.store import Measurement
from edgetran.surrogate import (
    DeviceSurrogate,
    InputShapeError,
    SurrogateError,
    cross_validate,
    feature_matrix,
    feature_names,
    predict_measured,
    shaped_feature_matrix,
)
from edgetran.surrogate.device import targets

FAST = {"n_models": 3, "n_estimators": 60, "learning_rate": 0.1}
LOG_FLOPS = feature_names().index("log_flops")
#: Predictions of the table below at (1, 128), by the surrogate before issue 44 (main at
#: 072e0ca): latency mean and upper bound, energy and peak power means.
BEFORE = {
    ("latency", "mean"): [0.6890316071829006, 0.44788928226865626, 0.6935371285809586],
    ("latency", "upper"): [1.2449657833599306, 2.2778922936250416, 2.495211090692938],
    ("energy", "mean"): [2.066486222562928, 1.3644376400122435, 2.081024801124375],
    ("peak_power", "mean"): [5.674569062297783, 5.661058142602861, 6.011254414632899],
}


def table(shapes, n=16, seed=0):
    """Measurements of ``n`` architectures at each shape: a fixed overhead plus FLOPs at a
    fixed rate, with 5% noise."""
    rng = np.random.default_rng(seed)
    archs = sample(n, method="random", seed=seed)
    items = []
    for batch, seq in shapes:
        flops = np.expm1(feature_matrix(archs, batch, seq)[:, LOG_FLOPS])
        for arch, f in zip(archs, flops, strict=True):
            latency = (2e-3 + f / 2e10) * rng.lognormal(0, 0.05)
            items.append(
                Measurement(
                    hash=arch.hash,
                    model_dict=arch.to_model_dict(),
                    device="dev",
                    runtime="sim",
                    batch_size=batch,
                    seq_len=seq,
                    latency_s=latency,
                    latency_s_per_seq=latency / batch,
                    energy_j=3 * latency,
                    energy_j_per_seq=3 * latency / batch,
                    peak_power_w=5 + latency,
                    meter="sim",
                    meter_kind="estimated",
                )
            )
    return items


def mape(measurements, prediction) -> float:
    y = targets(measurements, "latency")
    return float(np.mean(np.abs(prediction.mean - y) / y))


@pytest.fixture(scope="module")
def three_shapes():
    """A surrogate fitted at 1×32, 1×64 and 8×64, and the table's 1×128 rows it never saw."""
    items = table([(1, 32), (1, 64), (1, 128), (8, 64)], n=20)
    train = [m for m in items if m.seq_len != 128]
    unseen = [m for m in items if m.seq_len == 128]
    return DeviceSurrogate(model_options=FAST).fit(train), unseen


def test_one_shape_predicts_exactly_as_before():
    surrogate = DeviceSurrogate(model_options=FAST).fit(table([(1, 128)]))
    new = sample(3, method="random", seed=99)
    predictions = surrogate.predict(new)
    for (metric, field), expected in BEFORE.items():
        got = getattr(predictions[metric], field)
        np.testing.assert_allclose(got, expected, rtol=1e-12, atol=0)
    named = surrogate.predict(new, shape=(1, 128))
    assert all(np.array_equal(named[m].mean, predictions[m].mean) for m in predictions)
    assert surrogate.shapes_ == ((1, 128),)
    assert (surrogate.batch_size_, surrogate.seq_len_) == (1, 128)


def test_one_shape_refuses_another_shape():
    surrogate = DeviceSurrogate(metrics=("latency",), model_options=FAST)
    surrogate.fit(table([(1, 128)]))
    with pytest.raises(InputShapeError, match=r"shape=8×64 is invalid; allowed: 1×128") as err:
        surrogate.predict(sample(1, seed=1), shape=(8, 64))
    assert err.value.allowed == ((1, 128),) and isinstance(err.value, SurrogateError)


def test_several_shapes_need_a_valid_shape(three_shapes):
    surrogate, _ = three_shapes
    assert surrogate.shapes_ == ((1, 32), (1, 64), (8, 64))
    assert surrogate.batch_size_ is None and surrogate.seq_len_ is None
    arch = sample(1, seed=1)
    with pytest.raises(InputShapeError, match="learned input shapes 1×32, 1×64, 8×64; name"):
        surrogate.predict(arch)
    for bad in [(0, 64), (1,), (1.5, 64), "1x64"]:
        with pytest.raises(InputShapeError, match=r"is invalid; allowed: \(batch_size, seq_len\)"):
            surrogate.predict(arch, shape=bad)


def test_an_unseen_shape_is_predicted_from_three_others(three_shapes):
    surrogate, unseen = three_shapes
    predictions = predict_measured(surrogate, unseen)
    assert mape(unseen, predictions["latency"]) < 0.10
    # Longer sequences cost more, beyond the measured range too (the trend extrapolates).
    archs = sample(5, method="random", seed=7)
    by_seq = [surrogate.predict(archs, shape=(1, seq))["latency"].mean for seq in (64, 128, 256)]
    assert (by_seq[0] < by_seq[1]).all() and (by_seq[1] < by_seq[2]).all()


def test_the_saved_form_keeps_the_shapes(three_shapes, tmp_path):
    surrogate, unseen = three_shapes
    surrogate.save(tmp_path / "s.pkl")
    loaded = DeviceSurrogate.load(tmp_path / "s.pkl")
    assert loaded.shapes_ == surrogate.shapes_
    again, before = predict_measured(loaded, unseen), predict_measured(surrogate, unseen)
    assert all(np.array_equal(again[m].upper, before[m].upper) for m in before)


def test_a_format_4_file_of_one_shape_still_loads(tmp_path):
    surrogate = DeviceSurrogate(metrics=("latency",), model_options=FAST)
    surrogate.fit(table([(4, 64)]))
    state = {k: v for k, v in vars(surrogate).items() if k != "shapes_"}  # as before issue 44
    old = DeviceSurrogate.__new__(DeviceSurrogate)
    old.__dict__.update(state)
    (tmp_path / "old.pkl").write_bytes(pickle.dumps({"format": 4, "surrogate": old}))
    loaded = DeviceSurrogate.load(tmp_path / "old.pkl")
    arch = sample(2, seed=3)
    assert loaded.shapes_ == ((4, 64),)
    assert np.array_equal(
        loaded.predict(arch)["latency"].mean, surrogate.predict(arch)["latency"].mean
    )


def test_cross_validation_over_shapes_and_priors_refused():
    items = table([(1, 32), (1, 64)], n=12)
    scores = cross_validate(items, folds=3, metrics=("latency",), model_options=FAST)
    assert scores["latency"]["n"] == len(items) and scores["latency"]["mape"] < 0.2
    with pytest.raises(SurrogateError, match=r"several input shapes \(1×32, 1×64\) cannot take"):
        DeviceSurrogate(model_options=FAST).fit(items, priors={"other": table([(1, 128)])})


def test_shaped_features_add_batch_and_sequence_to_the_costs_at_that_shape():
    archs = sample(2, method="random", seed=4)
    X = shaped_feature_matrix(archs, [(2, 32), (8, 256)])
    assert np.array_equal(X[0, :-2], feature_matrix(archs[:1], 2, 32)[0])
    assert np.array_equal(X[1, :-2], feature_matrix(archs[1:], 8, 256)[0])
    assert np.allclose(X[:, -2:], np.log([[2, 32], [8, 256]]))


def test_cli_predicts_at_the_shape_named(three_shapes, run_cli, tmp_path):
    surrogate, _ = three_shapes
    surrogate.save(tmp_path / "s.pkl")
    predict = ("surrogate", "predict", "--surrogate", tmp_path / "s.pkl", "--arch", "bert-mini")
    code, out, err = run_cli(*predict, "--batch-size", "1", "--seq-len", "128", "--json")
    record = json.loads(out)
    assert code == 0, err
    assert (record["batch_size"], record["seq_len"]) == (1, 128) and record["latency"]["mean"] > 0
    code, _, err = run_cli(*predict)
    assert code == 2 and "error: the surrogate learned input shapes 1×32, 1×64, 8×64" in err
    code, _, err = run_cli(*predict, "--seq-len", "128")
    assert code == 2 and "--batch-size and --seq-len go together" in err
