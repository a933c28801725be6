"""Training on a cluster's worker: the job sees a snapshot, the client stays the one writer."""

from __future__ import annotations

import pickle

import pytest

from edgetran.store import Store
from edgetran.train import evaluate
from edgetran.train.pretrain import TrainingError
from edgetran.train.remote import SnapshotStore
from edgetran.train.tasks import task_key
from tests.test_train import tiny_arch, tiny_budgets, write_task  # noqa: F401 (fixture)


class InProcessCluster:
    """A cluster stand-in: the job's inputs and output go through pickle, as to a worker."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def run_training(self, fn, /, *args, **kwargs):
        fn, args, kwargs = pickle.loads(pickle.dumps((fn, args, kwargs)))
        assert not any(isinstance(a, Store) for a in (*args, *kwargs.values()))
        self.jobs.append(fn.__name__)
        return pickle.loads(pickle.dumps(fn(*args, **kwargs)))


def test_training_on_a_cluster_is_stored_by_the_client(tmp_path, tiny_budgets):  # noqa: F811
    task = str(write_task(tmp_path / "task.csv"))
    cluster = InProcessCluster()
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws", "cluster": cluster}
        first = evaluate(tiny_arch(), task, "standard", **kwargs)
        assert cluster.jobs == ["training_job"] and first["cached"] is False
        assert first["device"] == "cpu"  # "auto" on a worker without a GPU
        # the worker's pretraining was registered here, by the client
        assert [m["hash"] for m in store.trained_models()] == [tiny_arch().hash]
        assert evaluate(tiny_arch(), task, "standard", **kwargs)["cached"] is True
        assert len(cluster.jobs) == 1  # the cache is the client's
        # the next job's snapshot holds the first model: weight transfer works remotely
        second = evaluate(tiny_arch(48), task, "standard", **kwargs)
        assert second["transferred_from"] == tiny_arch().hash
        assert store.evaluation(tiny_arch(48).hash, task=task_key(task), budget="standard", seed=0)


def test_a_cluster_trains_a_task_object_never(tmp_path, tiny_budgets):  # noqa: F811
    from edgetran.train import load_task

    task = load_task(str(write_task(tmp_path / "task.csv")))
    with Store(tmp_path / "ws.db") as store, pytest.raises(TrainingError, match="by name"):
        evaluate(
            tiny_arch(), task, "quick", store=store, workspace=tmp_path / "ws",
            cluster=InProcessCluster(),
        )  # fmt: skip


def test_a_snapshot_store_reads_its_snapshot_and_its_own_writes():
    store = SnapshotStore([{"tokenizer": "a", "hash": "h1", "model_dict": {}, "path": "p1"}])
    assert store.trained_models("b") == []
    store.add_trained_model({}, "h2", tokenizer="b", path="p2", steps=3, loss=1.0)
    assert [m["hash"] for m in store.trained_models()] == ["h1", "h2"]
    assert store.writes == [
        (
            "add_trained_model",
            {"model_dict": {}, "hash": "h2", "tokenizer": "b", "path": "p2", "steps": 3,
             "loss": 1.0},
        )
    ]  # fmt: skip
