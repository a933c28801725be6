"""Training on a cluster's worker while the client stays the workspace database's one writer.

A training job (:func:`training_job`) runs :func:`~edgetran.train.oracle.train_classifier` on
a worker against a :class:`SnapshotStore`: the pretrained models the client's store knew when
the job was sent, for weight transfer, and a list that collects what the training would have
written. The client (:func:`train_on_cluster`) applies those writes to its own store when the
result comes back, so no worker ever opens the database.

The workspace folder (tokenizers, pretraining checkpoints) must be the same path on the
workers as on the client: a shared filesystem in a lab, the same disk for ``local:N``. An
interrupted pretraining resumes from its checkpoint there when Dask re-runs a job whose
worker was lost; a budget without MLM steps (``quick``) fine-tunes again from the start.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from edgetran.space import Architecture
from edgetran.store import Store
from edgetran.train.tasks import TaskOptions


class TrainingCluster(Protocol):
    """What training needs of a cluster (:class:`edgetran.cluster.Cluster` is one)."""

    def run_training(self, fn, /, *args: Any, **kwargs: Any) -> Any:
        """Run ``fn(*args, **kwargs)`` on a training worker; its return value."""


class SnapshotStore:
    """The part of :class:`~edgetran.store.Store` that training uses, for a worker: reads
    come from ``trained`` (the client's :meth:`~edgetran.store.Store.trained_models`),
    writes are kept in :attr:`writes` (method name and keyword arguments) for the client."""

    def __init__(self, trained: list[dict[str, Any]]) -> None:
        self._trained = list(trained)
        self.writes: list[tuple[str, dict[str, Any]]] = []

    def trained_models(self, tokenizer: str | None = None) -> list[dict[str, Any]]:
        """The client's trained models, and those added in this job."""
        return [t for t in self._trained if tokenizer is None or t["tokenizer"] == tokenizer]

    def add_trained_model(self, model_dict: dict[str, Any], hash: str, **fields: Any) -> None:
        """Record a trained model, kept for the client and seen by later reads."""
        entry = {"model_dict": model_dict, "hash": hash, **fields}
        self._trained.append(entry)  # a later read in the same job sees it, as in a Store
        self.writes.append(("add_trained_model", entry))


def training_job(
    model_dict: dict[str, Any],
    task: str,
    budget: str,
    workspace: str,
    seed: int,
    trained: list[dict[str, Any]],
    device: str = "auto",
    out: str | None = None,
    options: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Serialisable job for a training worker: ``{"result": …, "writes": […]}``.

    ``device="auto"`` trains on this worker's GPU when it has one, else on its CPU;
    ``options`` are :func:`~edgetran.train.oracle.train_classifier`'s ``tokenizer``,
    ``transfer`` and ``task_options``."""
    from edgetran.train.oracle import train_classifier

    store = SnapshotStore(trained)
    result = train_classifier(
        Architecture.from_dict(model_dict), task, budget, store=store,  # type: ignore[arg-type]
        workspace=workspace, seed=seed, device=_worker_device(device), out=out,
        **(options or {}),
    )  # fmt: skip
    return {"result": result, "writes": store.writes}


def train_on_cluster(
    cluster: TrainingCluster,
    arch: Architecture,
    task: str,
    budget: str,
    *,
    store: Store,
    workspace: str | Path,
    seed: int = 0,
    device: str = "auto",
    out: str | Path | None = None,
    tokenizer: str | None = None,
    transfer: bool = True,
    task_options: TaskOptions | None = None,
) -> dict[str, Any]:
    """:func:`~edgetran.train.oracle.train_classifier` run on ``cluster``'s training worker;
    what it wrote is applied to ``store`` here. Returns the training's result. A tokenizer
    given as a file path must be readable at that path on the worker."""
    options = {"tokenizer": tokenizer, "transfer": transfer, "task_options": task_options}
    # a task file given relative to this process's folder travels as an absolute path
    where = str(Path(task).resolve()) if Path(task).is_file() else task
    reply = cluster.run_training(
        training_job, arch.to_dict(), where, budget, str(Path(workspace).resolve()), seed,
        store.trained_models() if transfer else [], device,
        None if out is None else str(Path(out).resolve()), options,
    )  # fmt: skip
    for method, entry in reply["writes"]:
        if method == "add_trained_model":
            fields = {k: v for k, v in entry.items() if k not in ("model_dict", "hash")}
            store.add_trained_model(entry["model_dict"], entry["hash"], **fields)
    return {**reply["result"], "task": task}  # the task as this process names it


def _worker_device(device: str) -> str:
    from edgetran.train.oracle import check_training_device

    return check_training_device(device)
