"""Threads chosen from the cores other processes leave free: trainings and measurements take
them unless the user gave a count (``--threads``, ``OMP_NUM_THREADS``), and record them."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import torch

from edgetran import cores
from edgetran.cores import WORKER_THREADS_ENV, choose_threads, free_cores, usable_cores
from edgetran.profile import ProfileSettings, profile_architecture
from edgetran.space import Architecture, Layer

BUSY_LOOP = "import time\nend = time.time() + 30\nwhile time.time() < end: pass\n"
TINY = Architecture((Layer(16, ("sa_sdp", "l_dft"), 8, (32,)),))
QUICK = {"seq_len": 8, "warmup": 0, "min_repeats": 3, "max_repeats": 3, "idle_s": 0}


@pytest.fixture(autouse=True)
def no_thread_count_from_outside(monkeypatch):
    """The tests decide the environment: no count the user (or Dask) set."""
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.delenv(WORKER_THREADS_ENV, raising=False)


@pytest.fixture
def one_busy_process():
    """A child process spinning on one core (killed after the test)."""
    loop = subprocess.Popen([sys.executable, "-c", BUSY_LOOP])
    time.sleep(0.5)
    yield
    loop.kill()
    loop.wait()


def _others_use(monkeypatch, cores_busy: float, usable: int) -> None:
    """``/proc/stat`` as if other processes kept ``cores_busy`` cores busy, of ``usable``."""
    clock = iter([100.0, 100.0 + cores_busy * cores.FREE_CORES_PROBE_S])
    monkeypatch.setattr(cores, "busy_cpu_s", lambda cpus: next(clock))
    monkeypatch.setattr(cores, "cpu_set", lambda: set(range(usable)))
    monkeypatch.setattr(cores, "usable_cores", lambda: usable)


@pytest.mark.parametrize(
    "busy, free", [(0.0, 4), (0.2, 4), (0.9, 3), (1.0, 3), (2.6, 1), (4.0, 1)]
)
def test_free_cores_leave_the_others_their_cores(monkeypatch, busy, free):
    _others_use(monkeypatch, busy, usable=4)
    assert free_cores() == free


def test_a_count_the_user_gives_wins_and_a_worker_keeps_to_its_share(monkeypatch):
    monkeypatch.setattr(cores, "free_cores", lambda probe_s=0: 3)
    assert choose_threads() == (3, "free cores")
    assert choose_threads(2) == (2, "requested")
    monkeypatch.setenv(WORKER_THREADS_ENV, "2")
    assert choose_threads() == (2, "free cores")  # a training of a worker: its share
    assert choose_threads(share=False) == (3, "free cores")  # a profile holds its host alone
    monkeypatch.setenv("OMP_NUM_THREADS", "5,2")
    assert choose_threads() == (5, "OMP_NUM_THREADS")
    assert choose_threads(1) == (1, "requested")
    monkeypatch.setenv("OMP_NUM_THREADS", "many")  # not a count: ignored
    assert choose_threads(share=False) == (3, "free cores")


@pytest.mark.skipif(
    not sys.platform.startswith("linux") or usable_cores() < 2, reason="reads /proc/stat"
)
def test_a_measurement_beside_a_busy_process_takes_the_free_cores(one_busy_process, monkeypatch):
    measured = profile_architecture(TINY, ProfileSettings(meter="estimate", **QUICK))
    assert measured.threads < usable_cores()
    assert measured.extra["threads_from"] == "free cores"
    # fewer threads than the device has: not the device at its thread count
    assert measured.contended is True
    given = profile_architecture(TINY, ProfileSettings(meter="estimate", threads=2, **QUICK))
    assert given.threads == 2 and given.extra["threads_from"] == "requested"
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    told = profile_architecture(TINY, ProfileSettings(meter="estimate", **QUICK))
    assert told.threads == 2 and told.extra["threads_from"] == "OMP_NUM_THREADS"


def test_a_training_records_its_threads_and_leaves_torchs_as_they_were(tmp_path, monkeypatch):
    from edgetran.store import Store
    from edgetran.train import oracle
    from tests.test_train import TINY_BUDGETS, tiny_arch, write_task

    monkeypatch.setitem(oracle.BUDGETS, "quick", TINY_BUDGETS["quick"])
    task = str(write_task(tmp_path / "task.csv", n=60))
    before = torch.get_num_threads()
    seen = []
    with Store(tmp_path / "ws.db") as store:
        kwargs = {"store": store, "workspace": tmp_path / "ws"}
        on_step = lambda *args, **kwargs: seen.append(torch.get_num_threads())  # noqa: E731
        result = oracle.train_classifier(tiny_arch(), task, threads=1, on_step=on_step, **kwargs)
        assert (result["threads"], result["threads_from"]) == (1, "requested")
        assert set(seen) == {1} and torch.get_num_threads() == before
        monkeypatch.setenv("OMP_NUM_THREADS", "1")
        told = oracle.evaluate(tiny_arch(48), task, **kwargs)
        assert (told["threads"], told["threads_from"]) == (1, "OMP_NUM_THREADS")
