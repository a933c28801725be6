"""``codesign`` on a cluster: measurements on the devices' workers, trainings on training
workers, this process the one writer; a device whose worker stops answering is left out."""

from __future__ import annotations

import json
import pickle

import pytest

from edgetran.codesign import run_codesign
from edgetran.errors import ClusterError, EdgeTranError, JobTimeoutError
from edgetran.store import Store
from tests.test_codesign import _config, _inputs, _no_parity_folds, _no_report, _tiny


class InProcessCluster:
    """A cluster stand-in that runs each job here, its inputs and output through pickle (as
    to a worker); ``gone`` devices' jobs time out, as when their worker disappears."""

    def __init__(self, devices: tuple[str, ...], gone: tuple[str, ...] = ()) -> None:
        self.devices, self.gone = devices, set(gone)
        self.jobs: list[tuple[str, str]] = []

    def offered_devices(self) -> dict[str, list[str]]:
        return {d: [f"worker-{d}"] for d in self.devices if d not in self.gone}

    def check_devices(self, devices) -> None:
        missing = [d for d in devices if d not in self.devices]
        if missing:
            raise ClusterError(f"no worker offers device {missing[0]}")

    def run_profile(self, device, fn, /, *args, **kwargs):
        if device in self.gone:
            raise JobTimeoutError(f"profile on device {device}: no result after 1 s")
        return self._run(device, fn, args, kwargs)

    def run_training(self, fn, /, *args, **kwargs):
        return self._run("training", fn, args, kwargs)

    def _run(self, where, fn, args, kwargs):
        fn, args, kwargs = pickle.loads(pickle.dumps((fn, args, kwargs)))
        self.jobs.append((where, fn.__name__))
        return pickle.loads(pickle.dumps(fn(*args, **kwargs)))


@pytest.mark.slow  # ~20 s; the next test routes the same jobs on a smaller run
def test_codesign_runs_its_jobs_on_the_cluster(tmp_path, monkeypatch):
    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    cluster = InProcessCluster(("cpu/torch",))
    config = _config(tmp_path, task, board, compare=None, growprune=False)
    result = run_codesign(config, cluster=cluster, parallel=2)
    kinds = {job for job in cluster.jobs}
    assert ("cpu/torch", "profile_job") in kinds and ("training", "training_job") in kinds
    assert result.best is not None
    if result.best["device"] == "cpu/torch":  # the winner's artifact measured on its worker
        assert ("cpu/torch", "measure_artifact_job") in kinds
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:  # stored here, under cpu
        # the profile's 8 and the reference BERT-Tiny (outside this space)
        assert len(store.measurements("cpu", runtime="torch")) == 9


def test_a_device_whose_worker_is_gone_is_left_out(tmp_path, monkeypatch):
    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    _no_parity_folds(monkeypatch)
    _no_report(monkeypatch)
    cluster = InProcessCluster(("cpu/torch", "cpu/onnxruntime"), gone=("cpu/onnxruntime",))
    config = _config(
        tmp_path, task, board, devices=("cpu/torch", "cpu/onnxruntime", str(board)),
        compare=None, growprune=False, evaluations=3,
    )  # fmt: skip
    events: list[str] = []
    run_codesign(config, cluster=cluster, on_event=events.append)
    data = json.loads((tmp_path / "out" / "result.json").read_text())
    assert "cpu/onnxruntime" not in {e["device"] for e in data["evaluations"]}
    assert any("cpu/onnxruntime: left out of the search" in line for line in events)
    kinds = set(cluster.jobs)  # every measurement and training ran as a job
    assert ("cpu/torch", "profile_job") in kinds and ("training", "training_job") in kinds


def test_a_device_no_worker_offers_is_refused_before_any_measurement(tmp_path, monkeypatch):
    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, devices=("cpu/openvino", str(board)))
    with pytest.raises(ClusterError, match="cpu/openvino"):
        run_codesign(config, cluster=InProcessCluster(("cpu/torch",)))
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:  # checked before any measurement
        assert store.measurements("cpu") == []


@pytest.mark.parametrize(
    ("changes", "cluster", "message"),
    [
        ({}, None, "needs a cluster"),
        ({"eval_timeout_s": 60.0}, InProcessCluster(("cpu/torch",)), "job time limit"),
    ],
)
def test_parallel_needs_a_cluster_and_no_alarm(tmp_path, changes, cluster, message):
    task, board, _ = _inputs(tmp_path)
    config = _config(tmp_path, task, board, **changes)
    with pytest.raises(EdgeTranError, match=message):
        run_codesign(config, cluster=cluster, parallel=2)


def test_one_architecture_asked_from_two_threads_trains_once(monkeypatch, tmp_path):
    import threading
    import time

    import edgetran.train
    from edgetran.search.live import oracle_accuracy
    from edgetran.space import NAMED_ARCHITECTURES

    calls: list[str] = []
    cache: dict[str, dict] = {}

    def evaluate(arch, *args, **kwargs):  # the oracle: trains once, then reads its cache
        if arch.hash not in cache:
            calls.append(arch.hash)
            time.sleep(0.2)
            cache[arch.hash] = {"accuracy": 0.5, "accuracy_std": 0.01}
        return cache[arch.hash]

    monkeypatch.setattr(edgetran.train, "evaluate", evaluate, raising=False)
    accuracy = oracle_accuracy("tweet-sentiment", None)
    arch = NAMED_ARCHITECTURES["bert-tiny"]
    threads = [threading.Thread(target=accuracy, args=(arch,)) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert calls == [arch.hash]


def test_a_lab_node_is_measured_on_its_worker_and_stored_under_its_name(tmp_path, monkeypatch):
    task, board, _ = _inputs(tmp_path)
    _tiny(monkeypatch)
    _no_parity_folds(monkeypatch)
    _no_report(monkeypatch)
    config = _config(tmp_path, task, board, devices=("rpi4/torch", str(board)), compare=None,
                     growprune=False, evaluations=3)  # fmt: skip
    with pytest.raises(EdgeTranError, match="pass --scheduler"):
        run_codesign(config)  # this machine has no rpi4
    cluster = InProcessCluster(("rpi4/torch",))
    run_codesign(config, cluster=cluster)
    assert {where for where, _ in cluster.jobs} >= {"rpi4/torch", "training"}
    with Store(f"sqlite:///{tmp_path / 'w.db'}") as store:
        assert len(store.measurements("rpi4", runtime="torch")) >= 8
        assert store.measurements("cpu") == []
