"""Timing and metering on every accelerator torch exposes, checked on the CPU with fakes: a
device whose kernels finish only when synchronised, an ONNX Runtime session on CUDA, and zeus
modules that say which SoC or GPU reading this machine has."""

import json
import sys
import time
import types

import numpy as np
import pytest
import torch

from edgetran.export.runners import OnnxRuntimeRunner, TorchRunner, synchronize
from edgetran.profile import FunctionMeter, MeterError, ProfileSettings, create_meter, protocol
from edgetran.profile.meters import explain_auto_meter


# -- the torch runner waits for the device before the timer stops -------------------------------
class QueuedKernels:
    """A fake accelerator: a forward pass queues kernels that only ``synchronize`` finishes;
    the profiler's timer fails the test when it is read while kernels are still queued."""

    def __init__(self) -> None:
        self.queued = 0
        self.synchronized: list[str] = []

    def synchronize(self, device=None) -> None:
        self.synchronized.append(str(device))
        self.queued = 0

    def perf_counter(self) -> float:
        if self.queued:
            pytest.fail("the timer stopped before the device finished its kernels")
        return time.perf_counter()


class QueueingModel(torch.nn.Module):
    """A model 'on' the fake device: it computes on the CPU and queues one kernel per run."""

    def __init__(self, kernels: QueuedKernels) -> None:
        super().__init__()
        self.kernels = kernels
        self.embedding = torch.nn.Embedding(10, 4)

    def forward(self, input_ids, attention_mask):
        self.kernels.queued += 1
        return self.embedding(input_ids)

    def to(self, *args, **kwargs):
        return self  # the fake device holds no tensors


@pytest.mark.parametrize("device", ["cuda", "mps", "xpu:1"])
def test_torch_runner_synchronises_its_device_before_the_timer_stops(monkeypatch, device):
    kernels = QueuedKernels()
    monkeypatch.setattr(torch.accelerator, "synchronize", kernels.synchronize)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(protocol, "time", types.SimpleNamespace(perf_counter=kernels.perf_counter))
    runner = TorchRunner(QueueingModel(kernels), device)
    prepared = (torch.ones(1, 3, dtype=torch.int64), torch.ones(1, 3, dtype=torch.int64))
    settings = ProfileSettings(warmup=1, min_repeats=3, max_repeats=3, idle_s=0)

    result = protocol.profile_runner(runner, prepared, FunctionMeter(lambda t: 1.0), settings)

    assert result.repeats == 3
    assert kernels.synchronized == [str(torch.device(device))] * 4  # the warm-up run too


@pytest.mark.parametrize("device", ["cuda:0", "mps", "xpu"])
def test_before_torch_2_6_each_backend_synchronises_its_own_device(monkeypatch, device):
    kernels = QueuedKernels()
    monkeypatch.setattr(torch, "accelerator", None)  # torch.accelerator came in torch 2.6
    backend = torch.device(device).type
    monkeypatch.setattr(getattr(torch, backend), "synchronize", kernels.synchronize)
    kernels.queued = 1
    synchronize(torch.device(device))
    assert kernels.queued == 0
    assert kernels.synchronized == ["None" if backend == "mps" else str(torch.device(device))]


def test_torch_runner_on_the_cpu_does_not_synchronise(monkeypatch):
    kernels = QueuedKernels()
    monkeypatch.setattr(torch.accelerator, "synchronize", kernels.synchronize)
    runner = TorchRunner(QueueingModel(kernels), "cpu")
    runner.run(runner.prepare(np.ones((1, 3)), np.ones((1, 3))))
    assert kernels.synchronized == []


# -- ONNX Runtime on CUDA: I/O binding, outputs synchronised before the timer stops ---------------
class FakeBinding:
    """onnxruntime's ``IOBinding`` on a GPU whose kernels finish only when synchronised."""

    def __init__(self, kernels: QueuedKernels) -> None:
        self.kernels = kernels
        self.inputs: dict[str, tuple] = {}
        self.outputs: dict[str, tuple] = {}

    def bind_ortvalue_input(self, name, value) -> None:
        self.inputs[name] = value

    def bind_output(self, name, device_type="cpu", device_id=0) -> None:
        self.outputs[name] = (device_type, device_id)

    def synchronize_outputs(self) -> None:
        self.kernels.synchronize("outputs")

    def get_outputs(self):
        (array, *_), _ = self.inputs["input_ids"]
        return [types.SimpleNamespace(numpy=lambda: np.zeros((*array.shape, 4), np.float64))]


class FakeCudaSession:
    """An ONNX Runtime session on CUDA: a run queues kernels and returns at once."""

    kernels = QueuedKernels()

    def __init__(self, path, options, providers) -> None:
        self.providers = providers
        self.bindings: list[FakeBinding] = []

    def get_providers(self):
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]

    def get_outputs(self):
        return [types.SimpleNamespace(name="last_hidden_state")]

    def io_binding(self) -> FakeBinding:
        self.bindings.append(FakeBinding(self.kernels))
        return self.bindings[-1]

    def run_with_iobinding(self, binding, run_options=None) -> None:
        self.kernels.queued += 1

    def run(self, *args):
        pytest.fail("a CUDA session is run through its I/O binding")


def test_onnxruntime_on_cuda_binds_inputs_on_the_gpu_and_synchronises_the_outputs(
    monkeypatch, tmp_path
):
    ort = pytest.importorskip("onnxruntime")
    kernels = FakeCudaSession.kernels = QueuedKernels()
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider"])
    monkeypatch.setattr(ort, "InferenceSession", FakeCudaSession)
    on_device = types.SimpleNamespace(ortvalue_from_numpy=lambda *value: (value, "copied"))
    monkeypatch.setattr(ort, "OrtValue", on_device)
    monkeypatch.setattr(protocol, "time", types.SimpleNamespace(perf_counter=kernels.perf_counter))
    artifact = tmp_path / "model.onnx"
    artifact.write_bytes(b"")
    runner = OnnxRuntimeRunner(artifact, "cuda:1")
    prepared = runner.prepare(np.ones((2, 3)), np.ones((2, 3)))
    settings = ProfileSettings(warmup=1, min_repeats=3, max_repeats=3, idle_s=0)

    result = protocol.profile_runner(runner, prepared, FunctionMeter(lambda t: 1.0), settings)

    assert result.repeats == 3 and kernels.synchronized == ["outputs"] * 4
    assert runner.device == "cuda:1"
    assert runner.session.providers[0] == ("CUDAExecutionProvider", {"device_id": 1})
    (binding,) = runner.session.bindings  # bound once, before timing
    assert {name: value[0][1:] for name, value in binding.inputs.items()} == {
        "input_ids": ("cuda", 1),
        "attention_mask": ("cuda", 1),
    }
    assert binding.outputs == {"last_hidden_state": ("cuda", 1)}
    output = runner.to_numpy(runner.run(prepared))
    assert output.dtype == np.float32 and output.shape == (2, 3, 4)


# -- which meter auto picks: fake zeus modules ---------------------------------------------------
class FakeSoc:
    def get_total_energy_consumption(self):
        # a Jetson without a total rail: its CPU and GPU rails
        return types.SimpleNamespace(total_energy_mj=None, cpu_energy_mj=1e3, gpu_energy_mj=500.0)


Jetson = type("Jetson", (FakeSoc,), {})
AppleSilicon = type("AppleSilicon", (FakeSoc,), {})


class FakeGpus:
    def __len__(self) -> int:
        return 1

    def supports_get_total_energy_consumption(self, index):
        return True

    def get_instant_power_usage(self, index):
        return 7000.0

    def get_total_energy_consumption(self, index):
        return 1e6


def fake_zeus(monkeypatch, soc=None, gpu=False, soc_modules=True):
    """Install fake ``zeus.device`` modules: ``soc`` is the class ``get_soc`` finds (None: no
    SoC), ``gpu`` whether NVML finds a GPU, ``soc_modules`` whether this zeus has the Jetson
    and Apple readings at all."""

    def unavailable(what):
        def fail():
            raise RuntimeError(f"{what} unavailable")

        return fail

    device = types.ModuleType("zeus.device")
    device.get_cpus = unavailable("RAPL")
    device.get_gpus = FakeGpus if gpu else unavailable("NVML")
    device.get_soc = soc if soc else unavailable("SoC")
    jetson = types.ModuleType("zeus.device.soc.jetson")
    jetson.jetson_is_available = lambda: soc is Jetson
    apple = types.ModuleType("zeus.device.soc.apple")
    apple.apple_silicon_is_available = lambda: soc is AppleSilicon
    apple.zeus_apple_available = True
    monkeypatch.setitem(sys.modules, "zeus.device", device)
    monkeypatch.setitem(sys.modules, "zeus.device.soc.jetson", jetson if soc_modules else None)
    monkeypatch.setitem(sys.modules, "zeus.device.soc.apple", apple if soc_modules else None)


def test_auto_reads_a_jetson_gpu_from_the_soc_before_nvml(monkeypatch):
    fake_zeus(monkeypatch, soc=Jetson, gpu=True)
    meter = create_meter("auto", "cuda:0")
    assert meter.name == "zeus:soc:Jetson" and not meter.estimated
    assert meter.read().energy_j == 1.5  # its CPU and GPU rails: no total rail here
    assert explain_auto_meter("cuda:0")["why"] == "soc:jetson, the first choice for cuda:0"


def test_auto_reads_a_desktop_gpu_through_nvml_saying_why_not_the_soc(monkeypatch):
    fake_zeus(monkeypatch, gpu=True)
    assert create_meter("auto", "cuda:0").name == "zeus:gpu0"
    explained = explain_auto_meter("cuda")
    assert explained["tried"] == ["soc:jetson", "gpu:0", "estimate"]
    assert explained["why"].startswith("gpu:0, after soc:jetson: no Jetson here")


def test_auto_reads_apple_silicon_for_mps(monkeypatch):
    fake_zeus(monkeypatch, soc=AppleSilicon)
    assert create_meter("auto", "mps").name == "zeus:soc:AppleSilicon"
    assert create_meter("soc:apple").name == "zeus:soc:AppleSilicon"
    with pytest.raises(MeterError, match="no Jetson here"):
        create_meter("soc:jetson")


def test_on_a_mac_without_zeus_apple_silicon_auto_says_what_to_install(monkeypatch):
    fake_zeus(monkeypatch)
    sys.modules["zeus.device.soc.apple"].zeus_apple_available = False
    assert "no AppleSilicon here" in explain_auto_meter("mps")["why"]
    monkeypatch.setattr(sys, "platform", "darwin")
    assert "pip install 'zeus[apple]'" in explain_auto_meter("mps")["why"]


def test_a_zeus_without_soc_readings_falls_back_saying_why(monkeypatch):
    fake_zeus(monkeypatch, gpu=True, soc_modules=False)
    assert create_meter("auto", "cuda").name == "zeus:gpu0"
    assert "this zeus has no Jetson reading" in explain_auto_meter("cuda")["why"]
    assert create_meter("auto", "mps").estimated
    explained = explain_auto_meter("mps")
    assert explained["kind"] == "estimated"
    assert explained["why"].startswith("no sensor: soc:apple: this zeus has no AppleSilicon")
    with pytest.raises(MeterError, match="no zeus meter for mps: soc:apple: this zeus has no"):
        create_meter("zeus", "mps")


@pytest.mark.parametrize("device", ["cuda:0", "mps", "cpu"])
def test_without_zeus_auto_estimates_saying_zeus_is_missing(monkeypatch, device):
    for module in ("zeus.device", "zeus.device.soc.jetson", "zeus.device.soc.apple"):
        monkeypatch.setitem(sys.modules, module, None)  # import raises ImportError
    assert create_meter("auto", device).estimated
    explained = explain_auto_meter(device)
    assert explained["kind"] == "estimated" and explained["why"].startswith("no sensor: ")
    assert "zeus is unavailable" in explained["why"]


def test_env_says_which_meter_each_device_gets_and_why(monkeypatch, run_cli):
    fake_zeus(monkeypatch, soc=AppleSilicon)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: True)
    code, out, _ = run_cli("env", "--json")
    assert code == 0
    meters = {row["device"]: row for row in json.loads(out)["meters"]}
    assert list(meters) == ["cpu", "cuda", "mps", "xpu"]  # every kind, present here or not
    assert meters["mps"]["meter"] == "zeus:soc:AppleSilicon"
    assert meters["cuda"]["why"].startswith("no sensor: soc:jetson: no Jetson here")
    assert meters["cpu"]["why"].startswith("soc, after rapl: no CPU meter")
    code, out, _ = run_cli("env")
    assert "meter   mps: zeus:soc:AppleSilicon (measured): soc:apple, the first choice" in out
