"""The profiling protocol, meters and power arithmetic."""

import json
import threading
import time

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from edgetran.export import random_inputs
from edgetran.plugins import METERS
from edgetran.profile import (
    CommandMeter,
    CpuTimeEstimateMeter,
    CsvMeter,
    FunctionMeter,
    MeterError,
    ProfileSettings,
    Reading,
    create_meter,
    profile_architecture,
    profile_job,
    profile_runner,
)
from edgetran.profile.protocol import build_runner, converged, median_ci95
from edgetran.profile.sampler import (
    mean_power_w,
    peak_power_w,
    power_samples,
    run_costs,
    window_energy_j,
)
from edgetran.space import Architecture, Layer

TINY = Architecture(
    (Layer(32, ("sa_sdp", "l_dft"), 16, (64,)), Layer(32, ("c_5", "sa_wma"), 16, (64,)))
)


# -- exact arithmetic on known traces -----------------------------------------------------------
def test_trapezoid_energy_and_peak_on_a_known_power_trace():
    # 0–1 s: power rises linearly 10 → 30 W, then stays 30 W until 2 s.
    readings = [Reading(t, power_w=10 + 20 * min(t, 1.0)) for t in (0, 0.25, 0.5, 0.75, 1.0, 2.0)]
    assert window_energy_j(readings) == pytest.approx(20.0 + 30.0, abs=1e-12)
    assert peak_power_w(readings) == 30.0
    assert mean_power_w(readings) == pytest.approx(25.0)


def test_counter_meters_are_differenced():
    readings = [
        Reading(0.0, energy_j=100.0),
        Reading(0.5, energy_j=105.0),
        Reading(1.0, energy_j=125.0),
    ]
    assert window_energy_j(readings) == 25.0
    assert power_samples(readings) == [(0.25, 10.0), (0.75, 40.0)]
    assert peak_power_w(readings) == 40.0


class SleepRunner:
    """A runner that 'infers' by sleeping; power is high while it runs."""

    runtime, device = "fake", "cpu"

    def __init__(self, seconds: float) -> None:
        self.seconds, self.busy = seconds, threading.Event()

    def prepare(self, ids, mask):
        return None

    def run(self, prepared):
        self.busy.set()
        time.sleep(self.seconds)
        self.busy.clear()


def test_idle_subtraction_and_peak_with_a_fake_meter():
    runner = SleepRunner(0.02)
    meter = FunctionMeter(lambda _t: 25.0 if runner.busy.is_set() else 5.0)
    settings = ProfileSettings(
        warmup=1, min_repeats=10, max_repeats=10, idle_s=0.2, sample_period_s=0.002
    )
    result = profile_runner(runner, None, meter, settings)
    assert result.idle_power_w == 5.0
    assert result.peak_power_w == 25.0
    assert result.repeats == 10
    assert result.latency_s == pytest.approx(0.02, rel=0.5)
    # Total ≈ 25 W × latency; dynamic ≈ (25 − 5) W × latency (gaps between runs are idle).
    assert result.energy_j == pytest.approx(25.0 * result.latency_s, rel=0.25)
    assert result.dynamic_energy_j == pytest.approx(20.0 * result.latency_s, rel=0.25)
    assert result.energy_j - result.dynamic_energy_j == pytest.approx(
        5.0 * result.latency_s, rel=1e-9
    )


def test_constant_power_gives_exact_energy():
    runner = SleepRunner(0.005)
    settings = ProfileSettings(
        warmup=0, min_repeats=5, max_repeats=5, idle_s=0.05, sample_period_s=0.01
    )
    result = profile_runner(runner, None, FunctionMeter(lambda _t: 12.0), settings)
    assert result.energy_j == pytest.approx(12.0 * result.latency_s, rel=1e-9)
    assert result.dynamic_energy_j == pytest.approx(0.0, abs=1e-9)


class SkewedRunner(SleepRunner):
    """Every fourth run is ten times slower (a descheduled thread): the mean run lies far
    above the median."""

    def __init__(self, seconds: float) -> None:
        super().__init__(seconds)
        self.runs = 0

    def run(self, prepared):
        self.runs += 1
        self.busy.set()
        time.sleep(self.seconds * (10 if self.runs % 4 == 0 else 1))
        self.busy.clear()


def test_energy_is_the_reported_median_runs_not_the_mean_runs():
    runner = SkewedRunner(0.004)
    meter = FunctionMeter(lambda _t: 6.0 if runner.busy.is_set() else 1.0)
    settings = ProfileSettings(
        warmup=0, min_repeats=12, max_repeats=12, idle_s=0.05, sample_period_s=0.002
    )
    result = profile_runner(runner, None, meter, settings)
    mean_run_s = result.window_s / result.repeats
    assert mean_run_s > 2 * result.latency_s  # the skew this test is about
    # window energy / repeats (the mean run's) would read far above the peak
    assert result.energy_j / result.latency_s <= result.peak_power_w
    assert result.energy_j / result.latency_s == pytest.approx(6.0, rel=0.2)


_watts = st.floats(0, 500, allow_nan=False)
_gaps = st.floats(1e-3, 1.0, allow_nan=False)


@st.composite
def _power_windows(draw) -> list[Reading]:
    """A window as a live meter gives it: instantaneous power, or a cumulative counter."""
    gaps = draw(st.lists(_gaps, min_size=1, max_size=30))
    times = np.concatenate([[0.0], np.cumsum(gaps)])
    if draw(st.booleans()):
        return [Reading(float(t), power_w=draw(_watts)) for t in times]
    energies = np.cumsum([0.0] + [draw(_watts) * g for g in gaps])
    return [Reading(float(t), energy_j=float(e)) for t, e in zip(times, energies, strict=True)]


@given(_power_windows(), st.floats(1e-6, 10.0), st.floats(0, 50, allow_nan=False))
def test_energy_over_latency_never_exceeds_the_peak(readings, latency_s, idle_w):
    energy, dynamic, peak = run_costs(readings, latency_s, idle_w)
    assert 0.0 <= dynamic <= energy
    assert energy / latency_s <= peak * (1 + 1e-9) + 1e-12
    assert energy == pytest.approx(mean_power_w(readings) * latency_s)


def test_csv_meter_is_aligned_by_timestamps(tmp_path):
    runner = SleepRunner(0.01)
    trace = tmp_path / "watts.csv"
    now = time.time()
    rows = ["timestamp,watts"] + [f"{now - 5 + i * 0.01:.3f},7.5" for i in range(2000)]
    trace.write_text("\n".join(rows))
    settings = ProfileSettings(warmup=0, min_repeats=5, max_repeats=5, idle_s=0.1)
    result = profile_runner(runner, None, CsvMeter(trace), settings)
    assert result.peak_power_w == 7.5 and result.idle_power_w == pytest.approx(7.5)
    assert result.power_samples > 3


def test_csv_meter_rejects_bad_rows(tmp_path):
    trace = tmp_path / "bad.csv"
    trace.write_text("timestamp,watts\n1.0,3\nabc,4\n")
    with pytest.raises(Exception, match="line 3"):
        CsvMeter(trace).recorded(0, 10)


def test_command_meter(tmp_path):
    assert CommandMeter("echo 12.5").read().power_w == 12.5
    with pytest.raises(MeterError, match="gave no watts"):
        CommandMeter("echo not-a-number").read()


def test_estimate_meter_is_flagged_and_bounded():
    meter = CpuTimeEstimateMeter(per_core_w=4.0, idle_w=1.0)
    assert meter.estimated and meter.kind == "estimated"
    meter.read()
    end = time.process_time() + 0.05
    while time.process_time() < end:
        pass
    assert 1.0 <= meter.read().power_w <= 1.0 + 4.0 * meter.cores


def test_meter_discovery_survives_a_broken_vendor_import(monkeypatch):
    import importlib

    real = importlib.import_module

    def broken(name, *args, **kwargs):
        if name.startswith("zeus"):
            raise RuntimeError("amdsmi: library not found")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(importlib, "import_module", broken)
    found = {row.name: row for row in METERS.describe()}
    assert [found[name].usable for name in ("gpu", "rapl", "soc")] == [False, False, False]
    assert "amdsmi" in found["gpu"].why_not
    assert found["estimate"].usable
    assert create_meter("auto").estimated


def test_create_meter_specs(tmp_path):
    assert isinstance(create_meter("estimate"), CpuTimeEstimateMeter)
    assert isinstance(create_meter("command:echo 3"), CommandMeter)
    assert isinstance(create_meter(f"csv:{tmp_path / 'x.csv'}"), CsvMeter)
    with pytest.raises(MeterError, match="allowed: auto"):
        create_meter("powermetrics")


def test_median_confidence_interval():
    samples = [float(x) for x in range(1, 101)]
    low, high = median_ci95(samples)
    assert (low, high) == (40.0, 61.0)  # the textbook interval for n = 100
    assert converged([1.0] * 20, 0.02)
    assert not converged([1.0, 2.0] * 10, 0.02)


def test_settings_validation_names_the_field():
    with pytest.raises(Exception, match="batch_size=0"):
        ProfileSettings(batch_size=0)
    with pytest.raises(Exception, match="runtime='tvm'"):
        ProfileSettings(runtime="tvm")
    with pytest.raises(Exception, match="min_repeats=5 exceeds max_repeats=2"):
        ProfileSettings(min_repeats=5, max_repeats=2)
    settings = ProfileSettings(seq_len=64, threads=1)
    assert ProfileSettings.from_dict(settings.to_dict()) == settings


# -- real CPU profiles --------------------------------------------------------------------------
FAST = dict(
    warmup=2,
    min_repeats=5,
    max_repeats=30,
    max_time_s=1.0,
    idle_s=0.1,
    seq_len=32,
    vocab_size=512,
    meter="estimate",
    threads=1,
)


def test_real_cpu_latency_of_a_tiny_model():
    threads = torch.get_num_threads()
    m = profile_architecture(TINY, ProfileSettings(**FAST))
    # the run pinned 1 thread; training later in this process keeps its own count
    assert torch.get_num_threads() == threads
    assert 0 < m.latency_s < 1.0 and m.latency_s_per_seq == m.latency_s
    low, high = m.latency_ci95_s
    assert low <= m.latency_s <= high
    assert m.meter_kind == "estimated" and m.meter.startswith("estimate:")
    assert m.threads == 1 and m.repeats >= 5 and m.power_samples >= 2
    assert m.energy_j >= m.dynamic_energy_j >= 0 and m.peak_power_w > 0
    assert m.environment["cpu_model"] and m.environment["versions"]["torch"]


def test_runner_weights_are_seeded_and_leave_the_global_rng_alone(tmp_path):
    threads, before = torch.get_num_threads(), torch.get_rng_state()
    try:
        runners = [build_runner(TINY, ProfileSettings(seed=seed, **FAST), tmp_path)
                   for seed in (0, 0, 1)]  # fmt: skip
    finally:
        torch.set_num_threads(threads)  # build_runner pins the profile's threads
    assert torch.equal(torch.get_rng_state(), before)
    inputs = random_inputs(1, FAST["seq_len"], FAST["vocab_size"], seed=0)
    first, again, other = (runner(*inputs) for runner in runners)
    assert np.array_equal(first, again) and not np.array_equal(first, other)


@pytest.mark.parametrize(("runtime", "device"), [("onnxruntime", "cpu"), ("openvino", "CPU")])
def test_other_runtimes(runtime, device):
    pytest.importorskip(runtime)
    m = profile_architecture(TINY, ProfileSettings(runtime=runtime, device=device, **FAST))
    assert m.runtime == runtime and m.latency_s > 0
    assert m.extra["runner_device"] in ("cpu", "CPU")


def test_profile_job_is_plain_and_serialisable():
    settings = ProfileSettings(batch_size=2, **FAST).to_dict()
    record = profile_job(TINY.to_model_dict(), settings)
    assert json.loads(json.dumps(record))["hash"] == TINY.hash
    assert record["latency_s_per_seq"] == pytest.approx(record["latency_s"] / 2)
