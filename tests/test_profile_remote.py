"""Profiling on a lab node's device worker: measured there, stored here under the node's name."""

from __future__ import annotations

import pickle

from edgetran.profile import ProfileSettings, profile_into_store, stored_measurements
from edgetran.profile.remote import remote_profiler
from edgetran.space import REFERENCE_SPACE
from edgetran.store import Store
from edgetran.surrogate.active import profile_actively
from tests.conftest import read_machine_as_quiet
from tests.test_profile import FAST, TINY


class InProcessCluster:
    """A cluster stand-in: the job's inputs and output go through pickle, as to a worker."""

    def __init__(self) -> None:
        self.jobs: list[str] = []

    def offered_devices(self):
        return {"rpi4/torch": ["pi"], "jetson": ["nano"]}

    def run_profile(self, device, fn, /, *args, **kwargs):
        fn, args, kwargs = pickle.loads(pickle.dumps((fn, args, kwargs)))
        self.jobs.append(device)
        return pickle.loads(pickle.dumps(fn(*args, **kwargs)))


def test_a_node_measurement_is_stored_under_the_node_name_and_reused(tmp_path, monkeypatch):
    read_machine_as_quiet(monkeypatch)  # reuse is what is tested
    cluster = InProcessCluster()
    settings = ProfileSettings(**FAST)
    profiler = remote_profiler(cluster, "rpi4")
    with Store(tmp_path / "db.sqlite") as store:
        ((m, cached),) = profile_into_store(
            [TINY], settings, store, profiler=profiler, device="rpi4"
        )
        assert not cached and m.device == "rpi4" and cluster.jobs == ["rpi4/torch"]
        assert m.extra["runner_device"] == "cpu"  # what ran on the node
        assert [x.hash for x in stored_measurements(store, settings, "rpi4")] == [TINY.hash]
        assert stored_measurements(store, settings) == []  # this machine's cpu: not measured
        ((_, cached),) = profile_into_store(
            [TINY], settings, store, profiler=profiler, device="rpi4"
        )
        assert cached and cluster.jobs == ["rpi4/torch"]


def test_active_profiling_on_a_node(tmp_path):
    cluster = InProcessCluster()
    settings = ProfileSettings(**FAST)
    with Store(tmp_path / "db.sqlite") as store:
        result = profile_actively(
            settings, None, REFERENCE_SPACE, store, budget=2, initial=2,
            profiler=remote_profiler(cluster, "jetson"), device="jetson",
        )  # fmt: skip
        assert len(result.measurements) == 2 and cluster.jobs == ["jetson", "jetson"]
        assert {m.device for m in store.measurements("jetson")} == {"jetson"}


def test_a_worker_meter_replaces_auto_only(monkeypatch):
    from edgetran.profile.meters import WORKER_METER_ENV
    from edgetran.profile.protocol import worker_settings

    monkeypatch.setenv(WORKER_METER_ENV, "estimate")
    assert worker_settings(ProfileSettings().to_dict()).meter == "estimate"
    chosen = ProfileSettings(meter="rapl").to_dict()
    assert worker_settings(chosen).meter == "rapl"


def test_a_lab_node_name_is_no_runner_device_for_the_worker_snapshot():
    from edgetran.cli.cluster_cmds import _environment

    snapshot = _environment("rpi4/onnxruntime", "estimate")
    assert snapshot["node"] == "rpi4"
