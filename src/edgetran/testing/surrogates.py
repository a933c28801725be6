"""The contract check of surrogate models (scikit-learn habits, calibrated intervals)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from edgetran.surrogate.base import Prediction, Surrogate, SurrogateError
from edgetran.testing._contract import Clauses

N_TRAIN = 40
N_FEATURES = 4


def synthetic_regression(n: int = N_TRAIN, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``X`` uniform in ``[0, 1]^4`` and a positive ``y`` spanning a decade, with 10% noise."""
    rng = np.random.default_rng(seed)
    X = rng.uniform(0, 1, (n, N_FEATURES))
    y = np.exp(1 + 2 * X[:, 0] + X[:, 1] ** 2 + rng.normal(0, 0.1, n))
    return X, y


def check_surrogate(estimator: Callable[..., Surrogate], **options: Any) -> None:
    """Assert that ``estimator(random_state=0, **options)`` keeps the
    :class:`~edgetran.surrogate.base.Surrogate` contract: ``__init__`` only stores its
    arguments, ``fit`` returns ``self`` and names its state with a trailing ``_``, ``predict``
    returns ordered, calibrated intervals that widen with the level, the same seed gives the
    same predictions, and misuse raises :class:`~edgetran.surrogate.base.SurrogateError`.

    ``options`` are passed to the constructor (e.g. fewer epochs, so the check is fast).

    Raises:
        ContractError: naming the clause that failed.
    """
    X, y = synthetic_regression()
    surrogate = estimator(random_state=0, **options)
    c = Clauses("Surrogate", type(surrogate).__name__)
    c.require(
        isinstance(surrogate, Surrogate), "a surrogate subclasses edgetran.surrogate.Surrogate"
    )
    params = dict(vars(surrogate))
    fitted = [k for k in params if k.endswith("_") and not k.startswith("_")]
    c.require(not fitted, "__init__ only stores its arguments (no fitted state)", repr(fitted))
    c.require(
        _raises(lambda: surrogate.predict(X[:2]), SurrogateError),
        "predict before fit raises SurrogateError",
    )
    c.require(surrogate.fit(X, y) is surrogate, "fit(X, y) returns self")
    learned = sorted(set(vars(surrogate)) - set(params))
    c.require(
        bool(learned) and all(k.endswith("_") for k in learned),
        "fit stores what it learns in attributes whose names end in '_'",
        repr(learned),
    )
    c.require(
        all(vars(surrogate)[k] is v for k, v in params.items()),
        "fit does not change the constructor's arguments",
    )
    narrow = surrogate.predict(X[:5], level=0.5)
    wide = surrogate.predict(X[:5], level=0.9)
    for prediction in (narrow, wide):
        _check_prediction(prediction, 5, c)
    c.require(
        bool((wide.lower <= narrow.lower).all() and (narrow.upper <= wide.upper).all()),
        "a higher level gives a wider interval",
    )
    again = estimator(random_state=0, **options).fit(X, y).predict(X[:5], level=0.9)
    c.require(
        bool(np.allclose(again.mean, wide.mean) and np.allclose(again.std, wide.std)),
        "the same random_state and data give the same predictions",
        f"max |Δ mean| {np.abs(again.mean - wide.mean).max():.3g}",
    )
    c.require(
        _raises(lambda: surrogate.predict(np.ones((1, N_FEATURES + 1))), SurrogateError),
        "predict with another number of features raises SurrogateError",
    )
    c.require(
        _raises(lambda: surrogate.predict(X[:1], level=1.5), SurrogateError),
        "a level outside (0, 1) raises SurrogateError",
    )
    c.require(
        _raises(lambda: estimator(random_state=0, **options).fit(X[:3], y[:3]), SurrogateError),
        "fit on too few rows raises SurrogateError",
    )


def _check_prediction(prediction: Prediction, n: int, c: Clauses) -> None:
    c.require(isinstance(prediction, Prediction), "predict returns a Prediction")
    fields = ("mean", "std", "lower", "upper")
    shapes = {f: np.shape(getattr(prediction, f)) for f in fields}
    c.require(
        all(s == (n,) for s in shapes.values()), f"predictions have shape ({n},)", str(shapes)
    )
    c.require(
        all(np.isfinite(getattr(prediction, f)).all() for f in fields), "predictions are finite"
    )
    c.require(bool((prediction.std > 0).all()), "std is positive")
    c.require(
        bool((prediction.lower <= prediction.mean).all())
        and bool((prediction.mean <= prediction.upper).all()),
        "lower ≤ mean ≤ upper",
    )


def _raises(action: Callable[[], object], error: type[Exception]) -> bool:
    try:
        action()
    except error:
        return True
    except Exception:
        return False
    return False
