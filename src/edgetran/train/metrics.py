"""Task metrics as the reference scores GLUE (``flexibert-gptran.md`` §5), as fractions."""

from __future__ import annotations

import numpy as np
from scipy.stats import pearsonr, spearmanr
from sklearn.metrics import accuracy_score, f1_score, matthews_corrcoef

METRICS = ("accuracy", "mcc", "max_accuracy_f1", "max_pearson_spearman")


def score(metric: str, labels: np.ndarray, predictions: np.ndarray) -> float:
    """The task metric of ``predictions`` (class ids, or values for regression)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    if metric == "accuracy":
        return float(accuracy_score(labels, predictions))
    if metric == "mcc":
        return float(matthews_corrcoef(labels, predictions))
    if metric == "max_accuracy_f1":
        return max(
            float(accuracy_score(labels, predictions)),
            float(f1_score(labels, predictions, zero_division=0)),
        )
    if metric == "max_pearson_spearman":
        if np.std(predictions) == 0 or np.std(labels) == 0:
            return 0.0  # a constant prediction has no correlation (scipy would return NaN)
        return max(
            float(pearsonr(labels, predictions).statistic),
            float(spearmanr(labels, predictions).statistic),
        )
    raise ValueError(f"metric {metric!r} is unknown; allowed: {', '.join(METRICS)}")


def bootstrap_std(
    metric: str, labels: np.ndarray, predictions: np.ndarray, resamples: int = 200, seed: int = 0
) -> float:
    """Standard deviation of the metric over bootstrap resamples of the scored examples: the
    noise that scoring on a finite test set adds (seed-to-seed training noise comes on top)."""
    labels, predictions = np.asarray(labels), np.asarray(predictions)
    rng = np.random.default_rng(seed)
    draws = [
        score(metric, labels[rows], predictions[rows])
        for rows in rng.integers(0, len(labels), size=(resamples, len(labels)))
    ]
    return float(np.std(draws, ddof=1))


def glue_score(task_scores: dict[str, float]) -> float:
    """GLUE = mean of the eight task scores (WNLI excluded), as the reference computes it."""
    from edgetran.train.tasks import GLUE_TASKS

    missing = sorted(set(GLUE_TASKS) - set(task_scores))
    if missing:
        raise ValueError(f"GLUE needs all eight tasks; missing {', '.join(missing)}")
    return float(np.mean([task_scores[t] for t in GLUE_TASKS]))
