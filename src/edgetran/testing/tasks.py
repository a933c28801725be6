"""The contract check of tasks."""

from __future__ import annotations

import numpy as np

from edgetran.testing._contract import Clauses
from edgetran.train.metrics import METRICS
from edgetran.train.tasks import Examples, Task

SPLITS = ("train", "dev", "test")


def check_task(task: Task) -> None:
    """Assert that ``task`` keeps the :class:`~edgetran.train.tasks.Task` contract: a known
    metric, three non-empty splits of aligned texts, pairs and labels, and labels that are
    class indices (or floats for a regression task without label names).

    Raises:
        ContractError: naming the clause that failed.
    """
    c = Clauses("Task", repr(getattr(task, "name", task)))
    c.require(isinstance(task, Task), "a task is an edgetran.train.tasks.Task")
    c.require(isinstance(task.name, str) and bool(task.name), "name is a non-empty string")
    c.require(task.metric in METRICS, f"metric is one of {', '.join(METRICS)}", repr(task.metric))
    names = task.label_names
    c.require(
        isinstance(names, tuple)
        and len(names) != 1
        and all(isinstance(n, str) for n in names)
        and len(set(names)) == len(names),
        "label_names is () (regression) or ≥ 2 distinct class names",
        repr(names),
    )
    for split in SPLITS:
        _check_split(split, getattr(task, split), names, c)
    if names:
        seen = np.unique(task.train.labels)
        c.require(len(seen) >= 2, "the train split holds at least two classes", repr(seen))


def _check_split(split: str, examples: Examples, names: tuple[str, ...], c: Clauses) -> None:
    c.require(isinstance(examples, Examples), f"{split} is an Examples")
    n = len(examples.texts)
    c.require(n > 0, f"the {split} split is not empty")
    c.require(all(isinstance(t, str) for t in examples.texts), f"{split} texts are strings")
    labels = np.asarray(examples.labels)
    c.require(labels.shape == (n,), f"{split} has one label per text", f"{labels.shape} vs {n}")
    if examples.pairs is not None:
        c.require(
            len(examples.pairs) == n and all(isinstance(p, str) for p in examples.pairs),
            f"{split} pairs are strings, one per text",
        )
    if names:
        c.require(
            np.issubdtype(labels.dtype, np.integer)
            and bool(((labels >= 0) & (labels < len(names))).all()),
            f"{split} labels are class indices in [0, {len(names)})",
            f"{labels.dtype} in [{labels.min()}, {labels.max()}]",
        )
    else:
        c.require(
            np.issubdtype(labels.dtype, np.floating) and bool(np.isfinite(labels).all()),
            f"{split} labels of a regression task are finite floats",
            str(labels.dtype),
        )
