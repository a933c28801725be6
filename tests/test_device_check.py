"""The prepared GPU device check (benchmarks/device_check.sh, issue 44): every part is
time-limited and failure-tolerant, so one run always leaves a summary; the dry run works here."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "device_check.sh"


def load_check_module():
    spec = importlib.util.spec_from_file_location("device_check", SCRIPT.with_suffix(".py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules["device_check"] = module
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def device_check():
    return load_check_module()


def test_a_failing_or_hanging_part_is_recorded_and_the_next_one_runs(device_check, tmp_path):
    args = device_check.parse(["--dry-run", "--work", str(tmp_path / "work"),
                               str(tmp_path / "summary.json")])  # fmt: skip
    check = device_check.Check(args)

    def broken(limit):
        raise RuntimeError("a bug in a part")

    def hangs(limit):
        done = device_check.run_limited(["sleep", "30"], 0.5, dict(os.environ), tmp_path)
        assert done.timed_out
        raise device_check.PartTimeout()

    began = time.monotonic()
    check.part("gpu_tests", broken)
    check.part("profile_cuda_torch", hangs)
    check.part("train_bert_mini", lambda limit: {"accuracy": 0.7})
    assert time.monotonic() - began < 10
    parts = json.loads((tmp_path / "summary.json").read_text())["parts"]
    assert parts["gpu_tests"]["status"] == "error"
    assert "a bug in a part" in parts["gpu_tests"]["reason"]
    assert parts["profile_cuda_torch"]["status"] == "timeout"
    assert parts["train_bert_mini"] | {"seconds": 0} == {
        "status": "ok", "limit_s": 180, "accuracy": 0.7, "seconds": 0,
    }  # fmt: skip
    assert parts["codesign"] == {"status": "pending"}


def test_a_part_past_the_deadline_is_skipped_saying_why(device_check, tmp_path):
    args = device_check.parse(["--dry-run", "--deadline-s", "1", str(tmp_path / "s.json")])
    check = device_check.Check(args)
    check.part("codesign", lambda limit: pytest.fail("ran past the deadline"))
    assert check.summary["parts"]["codesign"]["status"] == "skipped"
    assert "deadline" in check.summary["parts"]["codesign"]["reason"]


def test_profile_statistics_take_the_idle_power_off(device_check):
    runs = [
        {"latency_s": 0.010 + i / 1000, "latency_ci95_s": [0.009, 0.011], "energy_j": 2.0 + i,
         "dynamic_energy_j": 1.0 + i, "idle_power_w": 60.0, "peak_power_w": 100.0 + i,
         "meter": "zeus:gpu0", "meter_kind": "measured", "power_samples": 40}
        for i in range(3)
    ]  # fmt: skip
    stats = device_check.profile_statistics(runs)
    assert stats["latency_s"] == pytest.approx(0.011)
    assert stats["dynamic_peak_power_w"]["mean"] == pytest.approx(41.0)
    low, high = stats["dynamic_energy_j"]["ci95"]
    assert low < 2.0 < high and high - 2.0 == pytest.approx(4.303 / 3**0.5)
    assert device_check.profile_statistics([]) == {"repeats": 0}


def test_wheel_names_compare_as_pip_does(device_check):
    wheel = Path("SQLAlchemy-2.1.9-cp312-cp312-manylinux_2_17_x86_64.whl")
    assert device_check.wheel_distribution(wheel) == device_check.normalise("sqlalchemy")
    assert device_check.normalise("typing_extensions") == "typing-extensions"


@pytest.mark.slow
def test_the_dry_run_writes_a_whole_summary_on_this_cpu(tmp_path):
    summary = tmp_path / "device-check.json"
    env = os.environ | {"PYTHON": sys.executable}
    cmd = ["bash", str(SCRIPT), "--dry-run", "--work", str(tmp_path / "work"), str(summary)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=900)
    result = json.loads(summary.read_text())
    statuses = result["statuses"]
    assert set(statuses) == set(load_check_module().PARTS), done.stdout[-3000:]
    assert done.returncode == 0, json.dumps(result["parts"], indent=1)[-4000:]
    assert result["dry_run"] and result["setup"]["probe"]["model_hashes"]
    parts = result["parts"]
    assert parts["latency_vs_cuda_events"]["status"] == "skipped"
    assert "CUDA" in parts["latency_vs_cuda_events"]["reason"]
    assert parts["gpu_tests"]["counts"]["skipped"] >= 1  # no CUDA here
    for runtime in ("torch", "onnxruntime"):
        models = parts[f"profile_cuda_{runtime}"]["models"]
        assert set(models) == {"bert-tiny", "bert-mini", "bert-small"}
        assert all(m["repeats"] == 2 and m["energy_j"]["ci95"] for m in models.values())
    assert 0 <= parts["train_bert_mini"]["accuracy"] <= 1
    assert parts["train_bert_mini"]["steps_per_s"] > 0
    assert parts["codesign"]["status"] == "ok"
