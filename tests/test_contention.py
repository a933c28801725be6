"""Contended measurements: sampled during the timed window, stored, refused under
``require_quiet``, and left out of surrogate fits."""

import dataclasses
import json
import sqlite3
import subprocess
import sys
import time

import pytest

from edgetran.errors import InvalidInputError
from edgetran.profile import FunctionMeter, ProfileSettings, profile_runner
from edgetran.profile.contention import (
    Contention,
    ContentionError,
    ContentionMonitor,
    wait_until_quiet,
)
from edgetran.profile.environment import usable_cores
from edgetran.profile.protocol import _profile_quietly
from edgetran.space import NAMED_ARCHITECTURES, Architecture
from edgetran.store import Measurement, Store
from edgetran.surrogate import DeviceSurrogate
from tests.conftest import fake_device

FAST = {"n_models": 2, "n_estimators": 40, "learning_rate": 0.1}
BUSY_LOOP = "import time\nend = time.time() + 20\nwhile time.time() < end: pass\n"


@pytest.fixture
def busy_cpus():
    """One busy-looping subprocess per usable core (killed after the test)."""
    loops = [subprocess.Popen([sys.executable, "-c", BUSY_LOOP]) for _ in range(usable_cores())]
    time.sleep(0.3)
    yield
    for loop in loops:
        loop.kill()
        loop.wait()


class SleepRunner:
    """A runner whose inference sleeps: it leaves the CPUs to whoever else wants them."""

    def run(self, prepared):
        time.sleep(0.01)


def quick(**overrides) -> ProfileSettings:
    return ProfileSettings(warmup=0, min_repeats=40, max_repeats=40, idle_s=0, **overrides)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_a_busy_loop_beside_the_window_is_seen_and_flagged(busy_cpus):
    result = profile_runner(SleepRunner(), None, FunctionMeter(lambda _t: 1.0), quick())
    assert result.contention.other_cpu_cores > 0.5 * usable_cores()
    assert result.contention.contended(threads=usable_cores())
    with pytest.raises(ContentionError, match="other processes used"):
        wait_until_quiet(usable_cores(), max_wait_s=0, probe_s=0.3)
    with pytest.raises(ContentionError, match="stop them or profile without --require-quiet"):
        _profile_quietly(
            SleepRunner(),
            None,
            FunctionMeter(lambda _t: 1.0),
            quick(require_quiet=True, quiet_wait_s=0),
        )


def test_a_tick_rounded_reading_never_exceeds_the_cpus(monkeypatch):
    """/proc/stat's 10-ms ticks can make a short, fully loaded window read above the CPUs."""
    from edgetran import cores

    readings = iter([100.0, 100.0 + 10.0])  # 10 busy CPU-seconds in a ~0.3 s window
    monkeypatch.setattr(cores, "busy_cpu_s", lambda cpus: next(readings))
    monitor = ContentionMonitor().start()
    time.sleep(0.3)
    sample = monitor.stop()
    assert sample.other_cpu_cores == pytest.approx(usable_cores())


def test_the_monitor_reports_a_bounded_share_of_the_cpus():
    monitor = ContentionMonitor().start()
    end = time.perf_counter() + 0.3
    while time.perf_counter() < end:
        pass
    sample = monitor.stop()
    # This process kept a core busy (subtracted as its own time); what the others did on a
    # shared machine is unknown, so only the bounds are checked.
    assert sample.window_s >= 0.3
    assert sample.other_cpu_cores is None or sample.other_cpu_cores <= usable_cores()


def test_a_window_of_a_few_clock_ticks_is_not_judged():
    sample = ContentionMonitor().start().stop()  # /proc/stat's 10-ms ticks: rounding, not load
    assert sample.other_cpu_cores is None and not sample.contended(threads=1)


def test_contended_threshold_leaves_room_for_free_cores():
    assert not Contention(0.2, 1.0).contended(threads=4, cores=4)
    assert Contention(0.3, 1.0).contended(threads=4, cores=4)
    assert not Contention(1.2, 1.0).contended(threads=1, cores=2)
    assert not Contention(None, 1.0).contended(threads=1, cores=1)


def test_require_quiet_must_be_a_bool():
    with pytest.raises(InvalidInputError, match="require_quiet"):
        ProfileSettings(require_quiet="yes")


def test_contention_is_stored_and_an_old_database_gains_the_columns(tmp_path):
    db = tmp_path / "old.db"
    quiet = fake_device(1, "dev")[0]
    with Store(db) as store:
        store.add(quiet)
    with sqlite3.connect(db) as conn:  # a database made before the columns existed
        conn.execute("ALTER TABLE measurements DROP COLUMN other_cpu_cores")
        conn.execute("ALTER TABLE measurements DROP COLUMN contended")
    busy = dataclasses.replace(quiet, other_cpu_cores=1.5, contended=True)
    with Store(db) as store:
        store.add(busy)
        old, new = store.measurements("dev")
    assert (old.other_cpu_cores, old.contended) == (None, None)
    assert (new.other_cpu_cores, new.contended) == (1.5, True)
    with pytest.raises(InvalidInputError, match="contended='maybe'; expected true or false"):
        dataclasses.replace(quiet, contended="maybe")
    assert dataclasses.replace(quiet, contended="False").contended is False


def test_surrogate_fits_leave_contended_measurements_out():
    items = fake_device(24, "dev", seed=4)
    # A contended run measured the contention: 10× slower, as in issue 19.
    crowded = [
        dataclasses.replace(m, latency_s=10 * m.latency_s, contended=True) for m in items[:8]
    ]
    surrogate = DeviceSurrogate(metrics=("latency",), model_options=FAST)
    surrogate.fit(crowded + items[8:])
    assert surrogate.contended_left_out_ == 8
    clean = DeviceSurrogate(metrics=("latency",), model_options=FAST).fit(items[8:])
    archs = [fake_arch(m) for m in items[:3]]
    assert surrogate.predict(archs)["latency"].mean == pytest.approx(
        clean.predict(archs)["latency"].mean
    )
    # Too few quiet ones to fit on: all are kept, and counted.
    few = DeviceSurrogate(metrics=("latency",), model_options=FAST).fit(crowded + items[8:12])
    assert (few.contended_left_out_, few.contended_kept_) == (0, 8)


def fake_arch(m: Measurement) -> Architecture:
    return Architecture.from_dict(m.model_dict)


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc/stat")
def test_profile_require_quiet_refuses_a_busy_machine(busy_cpus, run_cli, tmp_path):
    code, _, err = run_cli(
        "profile", "--arch", "bert-tiny", "--seq-len", 16, "--meter", "estimate",
        "--require-quiet", "--quiet-wait", 0, "--db", tmp_path / "p.db",
    )  # fmt: skip
    assert code == 2 and "stop them or profile without --require-quiet" in err


def test_a_contended_stored_measurement_is_measured_again(tmp_path, monkeypatch):
    import edgetran.profile.resumable as resumable

    quiet, busy_arch = (dataclasses.replace(m, runtime="torch") for m in fake_device(2, "cpu"))
    busy = dataclasses.replace(busy_arch, latency_s=10 * busy_arch.latency_s, contended=True)
    settings = ProfileSettings(device="cpu", runtime="torch", batch_size=1, seq_len=128)
    profiled: list[str] = []

    def profile_again(arch, settings, meter=None):
        profiled.append(arch.hash)
        return dataclasses.replace(busy_arch, contended=False)

    monkeypatch.setattr(resumable, "profile_architecture", profile_again)
    archs = [Architecture.from_dict(m.model_dict) for m in (quiet, busy)]
    with Store(tmp_path / "ws.db") as store:
        store.add(quiet)
        store.add(busy)
        results = list(resumable.profile_into_store(archs, settings, store))
    assert profiled == [busy.hash]  # the quiet one is reused, the contended one re-measured
    assert [cached for _, cached in results] == [True, False]
    assert results[1][0].contended is False


# -- contention carried into the search, the winner's measurement, result.json and the CLI ------
def test_a_contended_stored_measurement_is_flagged_in_the_search_and_after_a_resume(tmp_path):
    from edgetran.search import LiveEvaluator, Pair, SearchSettings, run_search
    from edgetran.search.live import measured_costs

    items = fake_device(20, "board", seed=4)
    crowded = dataclasses.replace(items[0], contended=True)
    measured, contended = measured_costs("board", [crowded, items[1]])
    assert contended == {(crowded.hash, "board")}
    # measured again, quietly: the last measurement of an architecture counts
    assert measured_costs("board", [crowded, items[0]])[1] == set()
    surrogate = DeviceSurrogate(model_options=FAST).fit(items)
    evaluator = LiveEvaluator(
        lambda arch: 0.5, measured, {"board": surrogate}, contended=contended
    )
    start = tuple(Pair(fake_arch(m), "board") for m in (crowded, items[1]))
    settings = SearchSettings(sampler="random", budget=3, seed=0, start=start)
    storage = f"sqlite:///{tmp_path / 'search.db'}"
    first = run_search(evaluator, settings, storage=storage, study_name="s")
    # read back from the study, not evaluated again: an evaluator that knows no contention
    evaluator.contended = frozenset()
    resumed = run_search(evaluator, settings, storage=storage, study_name="s", resume=True)
    for result in (first, resumed):
        flags = [r.evaluation.contended for r in result.records]
        assert flags == [True, False, False]  # the third is predicted: never contended
    assert isinstance(resumed.to_dict()["best"]["contended"], bool)


def _window(other_cpu_cores: float, latency_s: float):
    from edgetran.profile.protocol import RunnerProfile

    return RunnerProfile(
        latency_s=latency_s, latency_ci95_s=(latency_s, latency_s), repeats=10, window_s=1.0,
        energy_j=latency_s, dynamic_energy_j=0.0, idle_power_w=0.0, peak_power_w=1.0,
        power_samples=10, power_period_s=0.05, contention=Contention(other_cpu_cores, 1.0),
    )  # fmt: skip


@pytest.mark.parametrize(
    "windows, kept, contended",
    [
        ([(99.0, 0.3), (0.0, 0.002)], "second", False),  # crowded, then quiet: the quiet one
        ([(5.0, 0.05), (99.0, 0.3)], "first", True),  # both crowded: the less crowded one
        ([(0.0, 0.002)], None, False),  # quiet at once: measured once
    ],
)
def test_a_contended_final_measurement_is_measured_again_and_says_which_was_kept(
    tmp_path, monkeypatch, windows, kept, contended
):
    from edgetran.codesign.measure import contention_note, measure_artifact

    class Runner:
        device = "cpu"

        def prepare(self, ids, mask):
            return None

    (tmp_path / "metadata.json").write_text(json.dumps({"config": {"vocab_size": 50}}))
    monkeypatch.setattr("edgetran.export.create_timed_runner", lambda *args, **options: Runner())
    given = iter(_window(*w) for w in windows)
    monkeypatch.setattr("edgetran.profile.protocol.profile_runner", lambda *args: next(given))
    settings = ProfileSettings(threads=1, seq_len=8, meter="estimate")
    measured = measure_artifact(tmp_path / "model.pt2", settings, FunctionMeter(lambda _t: 1.0))
    assert measured["contended"] is contended
    note = contention_note(measured)
    if kept is None:
        assert "remeasured" not in measured and note is None
        return
    assert measured["remeasured"]["kept"] == kept
    assert measured["latency_s"] == measured["remeasured"][kept]["latency_s"]
    assert f"kept the {kept} window" in note
    assert ("still contended" in note) is contended


def test_contention_reaches_the_report_and_the_final_line(run_cli, monkeypatch, tmp_path):
    from edgetran.codesign.pipeline import CodesignResult
    from edgetran.codesign.report import _estimated

    best = {
        "device": "cpu/torch", "measured": ["accuracy", "latency_s"], "contended": True,
        "metrics": {"accuracy": 0.7, "latency_s": 0.303, "energy_j": 0.1, "peak_power_w": 5.0},
        "meter": "estimate", "meter_kind": "estimated",
    }  # fmt: skip
    tiny = NAMED_ARCHITECTURES["bert-tiny"].to_model_dict()
    result = {
        "best": best,
        "evaluations": [
            {"arch": tiny, "device": "cpu/onnxruntime", "predicted": [], "contended": crowded}
            for crowded in (True, False)
        ],
        "references": [
            {"name": "bert-tiny", "arch": tiny, "device": "cpu/torch", "contended": True}
        ],
        "final_measurement": {"remeasured": {"kept": "first"}},
        "devices": {}, "skipped": {},
    }  # fmt: skip
    page = _estimated(result)
    assert "final measurement was contended" in page and "bert-tiny on cpu/torch" in page
    monkeypatch.setattr(
        "edgetran.codesign.run_codesign",
        lambda config, **kwargs: CodesignResult(tmp_path, {"best": best}),
    )
    code, out, err = run_cli("codesign", "--devices", "cpu/torch", "--out", tmp_path / "out")
    assert code == 0, err
    assert out.splitlines()[0].endswith(
        "(measured while other processes crowded the cores: contended)"
    )
