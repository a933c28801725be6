"""A new device from a few measurements (issue 19): the blend's guard, the robust prior map
and the robust (Huber) fit, on small synthetic devices."""

import dataclasses

import numpy as np
import pytest

from edgetran.space import Architecture
from edgetran.surrogate import DeviceSurrogate, device
from edgetran.surrogate.device import blend_weight, fit_priors, inliers, robust_map, targets
from tests.conftest import fake_device

FAST = {"n_models": 2, "n_estimators": 60, "learning_rate": 0.1}


def test_blend_weight_needs_a_clear_gain():
    rng = np.random.default_rng(0)
    z = np.zeros(15)
    own = rng.normal(0, 0.3, 15)
    # A transferred model no better than own data: half of it looks a little better out of
    # fold by chance (the lowest error alone would give it weight 0.5).
    noisy = own + rng.normal(0, 0.1, 15)
    errors = [np.abs(w * noisy + (1 - w) * own).mean() for w in (0.0, 0.5)]
    assert errors[1] < errors[0]
    assert blend_weight(z, own, noisy) == 0.0
    # A transferred model ten times closer is taken.
    assert blend_weight(z, own, own / 10) >= 0.8


def test_robust_map_is_not_tilted_by_outliers():
    rng = np.random.default_rng(1)
    P = rng.normal(0, 1, (15, 1))
    z = 2 * P[:, 0] + 1 + rng.normal(0, 0.05, 15)
    z[[2, 7]] += np.log(4)  # two contended recordings
    base, weights = robust_map(P, z)
    assert base.coef_[0] == pytest.approx(2, abs=0.15)
    assert base.intercept_ == pytest.approx(1, abs=0.15)
    assert weights[[2, 7]].max() < 0.3 and np.median(weights) == 1.0


def with_latency(items, latency):
    return [
        dataclasses.replace(m, latency_s=v, latency_s_per_seq=v, energy_j=3 * v)
        for m, v in zip(items, latency, strict=True)
    ]


def held_out_mape(surrogate, test) -> float:
    archs = [Architecture.from_dict(m.model_dict) for m in test]
    y = targets(test, "latency")
    return float(np.mean(np.abs(surrogate.predict(archs)["latency"].mean - y) / y))


@pytest.mark.parametrize("kind", ["helpful", "unrelated"])
def test_transfer_at_15_points_helps_or_stays_out_of_the_way(kind):
    target = fake_device(60, "target", seed=1)
    prior = fake_device(50, "prior", 3.0, seed=2)
    if kind == "unrelated":  # costs that have nothing to do with the architecture
        prior = with_latency(prior, np.random.default_rng(3).lognormal(0, 1, len(prior)))
    priors = fit_priors({"prior": prior}, ("latency",), model_options=FAST)
    train, test = target[:15], target[15:]
    own = DeviceSurrogate(metrics=("latency",), model_options=FAST).fit(train)
    transfer = DeviceSurrogate(metrics=("latency",), model_options=FAST)
    transfer.priors_ = priors
    transfer._fit_targets(train)
    weight = transfer.models_["latency"].weight
    if kind == "helpful":
        assert weight >= 0.5
        assert held_out_mape(transfer, test) < 0.8 * held_out_mape(own, test)
    else:  # the map is then a constant, and the "transferred" model one more own-data fit
        assert held_out_mape(transfer, test) <= 1.02 * held_out_mape(own, test)


def test_inliers_leave_out_only_far_residuals_and_never_too_many():
    honest = np.random.default_rng(6).normal(0, 0.1, 18)
    # Only slower than expected (a contended run) counts, and by more than a factor of 2.
    assert np.flatnonzero(~inliers(np.r_[honest, 1.4, -1.4])).tolist() == [18]
    assert inliers(np.r_[honest, 0.6]).all()
    assert inliers(np.r_[np.zeros(7), 5.0]).all()  # 8 points: none may go


@pytest.mark.parametrize("left_out", [True, False])
def test_outlying_recordings_are_left_out_and_intervals_still_cover(left_out, monkeypatch):
    items = fake_device(80, "dev", seed=7)
    clean = targets(items, "latency")
    factors = np.where(np.random.default_rng(8).random(len(items)) < 0.1, 4.0, 1.0)
    noisy = with_latency(items, clean * factors)
    if not left_out:
        monkeypatch.setattr(device, "OUTLIER_SHARE", 0.0)
    surrogate = DeviceSurrogate(metrics=("latency",), model_options=FAST).fit(noisy[:40])
    archs = [Architecture.from_dict(m.model_dict) for m in noisy[40:]]
    p = surrogate.predict(archs)["latency"]
    error = np.mean(np.abs(p.mean - clean[40:]) / clean[40:])
    y = clean[40:] * factors[40:]
    coverage = np.mean((p.lower <= y) & (y <= p.upper))
    if left_out:
        assert surrogate.outliers_left_out_["latency"] >= 2
        assert error < 0.2 and 0.8 <= coverage <= 0.97  # 40 test points: ±0.05
    else:  # the regression this guards against: the outliers drag the fit
        assert surrogate.outliers_left_out_["latency"] == 0 and error > 0.2


def test_probe_set_is_fixed_on_grid_and_spans_the_costs():
    from edgetran.space import REFERENCE_SPACE
    from edgetran.space.costs import estimate_costs
    from edgetran.space.probes import PROBE_HASHES, PROBES

    assert len(PROBES) == len(PROBE_HASHES) == 12
    assert all(REFERENCE_SPACE.contains(a) for a in PROBES)
    flops = [estimate_costs(a, batch_size=1, seq_len=128).flops for a in PROBES]
    assert max(flops) / min(flops) > 100
    assert {a.num_layers for a in PROBES} >= {2, 4, 6, 8, 10, 12}
    ops = {op for a in PROBES for layer in a.layers for op in layer.ops}
    assert ops == set(REFERENCE_SPACE.operations)


def test_probe_cli_refuses_other_selections(run_cli, tmp_path):
    code, _, err = run_cli("profile", "--probe", "--arch", "bert-tiny", "--db", tmp_path / "p.db")
    assert code == 2 and "--probe profiles the fixed probe set" in err


def quirky_devices(n: int = 60, shared: int = 45, plain: int = 15):
    """A target and a prior device whose costs share a per-architecture quirk that the
    features do not see (a kernel every library runs badly) on all but the first ``plain``
    architectures: the prior's measured value of an architecture carries it, its surrogate's
    prediction hardly can. The prior measured the first ``shared`` architectures."""
    quirk = np.r_[np.ones(plain), np.random.default_rng(11).lognormal(0, 0.5, n - plain)]
    target = fake_device(n, "target", seed=1)
    prior = fake_device(n, "prior", 3.0, seed=1)[:shared]
    target = with_latency(target, targets(target, "latency") * quirk)
    return target, with_latency(prior, targets(prior, "latency") * quirk[:shared])


def test_predictions_use_what_a_prior_device_measured():
    target, prior = quirky_devices()
    priors = fit_priors({"prior": prior}, ("latency",), model_options=FAST)
    # The regression this guards: the prior's predictions only.
    predicted = [dataclasses.replace(p, measured={"latency": {}}) for p in priors]
    errors = []
    for given in (priors, predicted):
        surrogate = DeviceSurrogate(metrics=("latency",), model_options=FAST)
        surrogate.priors_ = given
        surrogate._fit_targets(target[:15])
        # New architectures that the prior measured: its measured values carry the quirk.
        errors.append(held_out_mape(surrogate, target[15:45]))
    assert errors[0] < 0.6 * errors[1]
    # The map is fitted on predictions, as it is applied to them.
    archs = [Architecture.from_dict(m.model_dict) for m in target[15:45]]
    P = priors[0].columns(archs, "latency", fitting=True)
    assert np.allclose(P, predicted[0].columns(archs, "latency", fitting=False))


def test_surrogate_fit_says_how_many_probes_and_shared_architectures_it_used(
    run_cli, tmp_path, monkeypatch
):
    from edgetran.profile.formats import write_measurements
    from edgetran.space.probes import PROBES

    make = device.make_surrogate  # the CLI's default trees take seconds; these suffice here
    monkeypatch.setattr(device, "make_surrogate", lambda *a, **kw: make(*a, **{**kw, **FAST}))
    target, prior = quirky_devices(12, 10, plain=12)
    # Two of the target's architectures are probes that the prior measured too.
    for i, probe in enumerate(PROBES[:2]):
        for items in (target, prior):
            items[i] = dataclasses.replace(
                items[i], hash=probe.hash, model_dict=probe.to_model_dict()
            )
    write_measurements(target, tmp_path / "target.csv", "csv")
    write_measurements(prior, tmp_path / "prior.csv", "csv")
    code, _, err = run_cli(
        "surrogate", "fit", "--measurements", tmp_path / "target.csv", "--format", "csv",
        "--device", "target", "--prior", tmp_path / "prior.csv", "--out", tmp_path / "t.pkl",
    )  # fmt: skip
    assert code == 0, err
    assert "measurements of architectures a prior device measured too: 10 (probes: 2)" in err
