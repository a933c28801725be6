"""Shared fixtures: tiny architectures and the reference data in ../shared/data."""

from __future__ import annotations

import json
import os
import sys
import warnings
from pathlib import Path

# Under pytest-xdist (`make test` runs two workers), each worker's torch, ONNX Runtime and
# OpenVINO get one thread: two workers with a thread per core each oversubscribe the cores,
# and OpenMP's spinning threads then made single tests 8-16× slower. Before any import of them.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from edgetran.space import Architecture, Layer, sample
from edgetran.store import Measurement
from edgetran.surrogate.features import feature_matrix, feature_names

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# Fuzzing (tests/test_fuzz.py): `ci` keeps `make test` fast and deterministic, `slow` runs
# the same tests on many more inputs under `make test-slow`, `explore` draws fresh random
# inputs (`pytest -m slow tests/test_fuzz.py --hypothesis-profile=explore`). Inputs are tiny
# files, so no deadline; the fixtures used across examples hold no per-example state.
settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                           HealthCheck.data_too_large, HealthCheck.filter_too_much],
)  # fmt: skip
settings.register_profile("slow", settings.get_profile("ci"), max_examples=300)
settings.register_profile("explore", settings.get_profile("slow"), derandomize=False)
settings.load_profile("ci")


@pytest.fixture
def shared_data() -> Path:
    """The reference data folder; tests that need it skip cleanly when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip("../shared/data is not available")
    return SHARED_DATA


@pytest.fixture
def reference_models(shared_data: Path) -> list[dict]:
    return json.loads((shared_data / "reference_models.json").read_text())


@pytest.fixture
def protran_files(shared_data: Path) -> list[Path]:
    return sorted((shared_data / "protran").glob("*.json"))


def tiny_hetero_architecture() -> Architecture:
    """All seven head operations, three hidden sizes, FF stacks of depth 1–2, n·d ≠ h."""
    return Architecture(
        (
            Layer(32, ("sa_sdp", "sa_wma", "l_dft", "l_dct"), 8, (64,)),
            Layer(48, ("c_5", "c_9", "c_13", "sa_sdp", "c_5"), 12, (64, 32)),
            Layer(16, ("l_dft", "sa_wma"), 8, (32,)),
        )
    )


@pytest.fixture
def tiny_hetero() -> Architecture:
    return tiny_hetero_architecture()


@pytest.fixture
def run_cli(monkeypatch, capsys):
    """Run the ``edgetran`` console entry point in-process → (exit code, stdout, stderr)."""
    from edgetran.cli.main import main

    def run(*args: str) -> tuple[int, str, str]:
        monkeypatch.setattr(sys, "argv", ["edgetran", *map(str, args)])
        try:
            main()
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else 1
        out = capsys.readouterr()
        return code, out.out, out.err

    return run


def profile_under_torch(monkeypatch) -> None:
    """Live profiling measures each model as PyTorch runs it, whatever the device's runtime:
    for tests whose claim is not a runtime's cost. Exporting a candidate (the dynamo ONNX
    exporter, OpenVINO's converter) takes 5-15 s on 2 cores, and a tiny co-design profiles 8
    or more; the answer's export, final measurement and int8 scoring stay real."""
    from dataclasses import replace

    from edgetran.profile import protocol

    real = protocol.build_runner

    def torch_runner(arch, settings, workdir, threads=None):
        return real(arch, replace(settings, runtime="torch", device="cpu"), workdir, threads)

    monkeypatch.setattr(protocol, "build_runner", torch_runner)


def onnx_by_torchscript(monkeypatch) -> None:
    """ONNX artifacts come from torch's TorchScript exporter (about 1 s a tiny model) instead
    of the dynamo one (5-20 s on 2 cores): for tests whose claim is what happens to an ONNX
    artifact (quantised, scored, cached, resumed), not how it is exported. The quantiser,
    ONNX Runtime and the label check stay real; tests/test_export.py and tests/test_int8.py
    keep the dynamo exporter."""
    import tempfile

    import onnx
    import torch

    from edgetran.export import exporters

    class Program:  # what the dynamo exporter returns, as far as edgetran reads it
        def __init__(self, model) -> None:
            self.model = model

        def save(self, path: str) -> None:
            onnx.save(self.model, path)

    def export(wrapper, example, spec):
        names = [*exporters.INPUT_NAMES, wrapper.output_name]
        batch = {name: {0: "batch"} for name in names} if spec.dynamic_batch else None
        with tempfile.TemporaryDirectory() as tmp, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            path = Path(tmp) / "model.onnx"
            torch.onnx.export(
                wrapper, example, str(path), dynamo=False, opset_version=spec.opset,
                input_names=names[:2], output_names=names[2:], dynamic_axes=batch,
            )  # fmt: skip
            return Program(onnx.load(str(path)))

    monkeypatch.setattr(exporters, "_dynamo_export", export)


def read_machine_as_quiet(monkeypatch) -> None:
    """Profiling reads the machine as free of other work: a test of what happens after a
    measurement (reuse, storage) must not be decided by a busy CI machine, where a contended
    measurement is rightly not reused (nor one given fewer threads than the cores)."""
    from edgetran import cores
    from edgetran.profile.contention import Contention

    monkeypatch.setattr(Contention, "contended", lambda self, threads, cores=None: False)
    monkeypatch.setattr(cores, "free_cores", lambda probe_s=0.0: cores.usable_cores())


@pytest.fixture
def one_torch_thread(monkeypatch):
    """Training on one torch thread, as a busy 2-core CI machine leaves free: two threads beside
    other work spin-wait (a tiny 16-step fine-tuning: 9-29 s on two, under 1 s on one). The
    oracle's own choice (free cores, ``OMP_NUM_THREADS``) is tested in tests/test_cores.py;
    one count also keeps a seed's accuracy the same between the calls a test compares."""
    from edgetran.cores import torch_threads

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    with torch_threads(1):
        yield


def fake_device(n: int, device: str = "dev", scale: float = 1.0, seed: int = 0):
    """Measurements whose cost follows the analytic FLOPs, with noise."""
    rng = np.random.default_rng(seed)
    archs = sample(n, method="random", seed=seed)
    flops = feature_matrix(archs)[:, feature_names().index("log_flops")]
    items = []
    for arch, log_flops in zip(archs, flops, strict=True):
        latency = scale * np.exp(log_flops - 20) * rng.lognormal(0, 0.05)
        items.append(
            Measurement(
                hash=arch.hash,
                model_dict=arch.to_model_dict(),
                device=device,
                runtime="sim",
                batch_size=1,
                seq_len=128,
                latency_s=latency,
                latency_s_per_seq=latency,
                energy_j=3 * latency,
                energy_j_per_seq=3 * latency,
                peak_power_w=5 + latency,
                meter="sim",
                meter_kind="estimated",
            )
        )
    return items


def search_resumed_after(evaluator, settings, storage: str, crash_at: int):
    """A stored search interrupted (KeyboardInterrupt) after its ``crash_at``-th evaluation,
    then resumed: the resumed :class:`~edgetran.search.SearchResult`."""
    from edgetran.search import run_search

    def crash(n: int, _record) -> None:
        if n == crash_at:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_search(evaluator, settings, storage=storage, study_name="s", on_evaluation=crash)
    return run_search(evaluator, settings, storage=storage, study_name="s", resume=True)
