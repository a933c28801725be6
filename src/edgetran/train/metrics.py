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


def glue_score(task_scores: dict[str, float]) -> float:
    """GLUE = mean of the eight task scores (WNLI excluded), as the reference computes it."""
    from edgetran.train.tasks import GLUE_TASKS

    missing = sorted(set(GLUE_TASKS) - set(task_scores))
    if missing:
        raise ValueError(f"GLUE needs all eight tasks; missing {', '.join(missing)}")
    return float(np.mean([task_scores[t] for t in GLUE_TASKS]))
